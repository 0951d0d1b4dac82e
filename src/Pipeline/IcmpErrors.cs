using System.Buffers.Binary;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline;

/// <summary>
/// Builds the ICMP errors a router owes (RFC 792, RFC 1812 §4.3.2) in place, in the buffer of the packet that caused
/// them: a new Ethernet and IPv4 header back to the sender and an ICMP header quoting the offending datagram.
/// </summary>
public static class IcmpErrors
{
    /// <summary>Quote as much of the original as fits a 576-byte datagram (RFC 1812 §4.3.2.3).</summary>
    public const int MaxQuote = 576 - Ipv4View.MinHeaderSize - IcmpView.HeaderSize;

    /// <summary>
    /// RFC 1812 §4.3.2.7: no error about an ICMP error, a non-initial fragment, a packet to a broadcast or multicast
    /// address, or from an address that does not name one host.
    /// </summary>
    public static bool MayAnswer(Ipv4View ip, bool linkBroadcast)
    {
        if (linkBroadcast) return false;
        Ipv4Address src = ip.Source, dst = ip.Destination;
        if (src.IsUnspecified || src.IsBroadcast || src.IsMulticast || src.IsLoopback || (src.Value >> 24) == 0) return false;
        if (dst.IsBroadcast || dst.IsMulticast) return false;
        if (ip.FragmentOffset != 0) return false;
        if (ip.Protocol == IpProtocol.Icmp)
        {
            ReadOnlySpan<byte> payload = ip.Payload;
            if (payload.Length < 1) return false;
            byte type = payload[0];
            // Only query messages (echo, timestamp, ...) may be answered with an error.
            if (type is not (IcmpType.EchoRequest or IcmpType.EchoReply or 13 or 14 or 17 or 18)) return false;
        }
        return true;
    }

    /// <summary>
    /// Rewrites the frame at <paramref name="m"/> into an ICMP error from <paramref name="source"/> to the original
    /// sender, addressed at L2 to the original source MAC from <paramref name="routerMac"/>. The caller checked
    /// <see cref="MayAnswer"/>. Returns the original sender's address.
    /// </summary>
    public static unsafe uint Build(PacketSlab slab, int slot, byte type, byte code, uint restOfHeader, Ipv4Address source, ulong routerMac)
    {
        ref PacketMeta m = ref slab.Meta[slot];
        int l3 = m.L3Offset;
        byte* frame = slab.SlotPointer(slot) + m.Offset;
        var orig = new Span<byte>(frame + l3, m.Length - l3);
        Ipv4View.TryCreate(orig, out Ipv4View ip);
        int quote = Math.Min(ip.TotalLength, MaxQuote);
        uint to = ip.Source.Value;
        ulong origSrcMac = m.SrcMac;
        int room = slab.SizeOf(slot) - m.Offset;
        int newLength = EthernetView.HeaderSize + Ipv4View.MinHeaderSize + IcmpView.HeaderSize + quote;
        if (newLength > room) quote -= newLength - room;
        newLength = EthernetView.HeaderSize + Ipv4View.MinHeaderSize + IcmpView.HeaderSize + quote;
        var f = new Span<byte>(frame, newLength);
        // Move the quoted datagram behind the new headers first (the spans overlap; CopyTo handles that).
        new Span<byte>(frame + l3, quote).CopyTo(f[(EthernetView.HeaderSize + Ipv4View.MinHeaderSize + IcmpView.HeaderSize)..]);
        new MacAddress(origSrcMac).Write(f);
        new MacAddress(routerMac).Write(f[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(f[12..], EtherType.Ipv4);
        Span<byte> icmp = f[(EthernetView.HeaderSize + Ipv4View.MinHeaderSize)..];
        icmp[0] = type;
        icmp[1] = code;
        icmp[2] = icmp[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(icmp[4..], restOfHeader);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum.Compute(icmp[..(IcmpView.HeaderSize + quote)]));
        new Ipv4Repr(source, new Ipv4Address(to), IpProtocol.Icmp, IcmpView.HeaderSize + quote, Ttl: 64, Dscp: 48 /* internetwork control, as Linux sends its ICMP errors */)
            .Emit(f[EthernetView.HeaderSize..]);
        m.Length = newLength;
        m.L3Offset = EthernetView.HeaderSize;
        m.DstMac = origSrcMac;
        m.SrcMac = routerMac;
        m.EtherType = EtherType.Ipv4;
        m.Flags &= ~(PacketFlags.Tagged | PacketFlags.ChecksumPartial | PacketFlags.ChecksumValid);
        m.Gso = GsoType.None;
        m.GsoSize = 0;
        m.VlanId = 0;
        return to;
    }
}

/// <summary>The ICMP error budget: a token bucket refilled every 100 ms, like the kernel's icmp_msgs_per_sec.
/// Worker-owned (not thread-safe).</summary>
public sealed class IcmpRateLimiter(int perSecond, long ticksPerSecond)
{
    private long _tokens = perSecond;
    private long _lastRefill;

    public int PerSecond { get; } = perSecond;

    /// <summary>Takes one token; false when the budget is exhausted (the error is not sent).</summary>
    public bool TryTake(long now)
    {
        if (now - _lastRefill >= ticksPerSecond / 10)
        {
            long add = (now - _lastRefill) * PerSecond / ticksPerSecond;
            _tokens = Math.Min(PerSecond, _tokens + add);
            _lastRefill = now;
        }
        if (_tokens <= 0) return false;
        _tokens--;
        return true;
    }
}

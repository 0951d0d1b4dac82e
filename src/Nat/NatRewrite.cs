using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>
/// Header rewrites for NAT with incremental checksum updates (RFC 1624): addresses in the IPv4 header and the TCP/UDP
/// pseudo-header, ports (or the ICMP query id), and the quoted datagram inside ICMP errors.
/// </summary>
public static class NatRewrite
{
    /// <summary>Offset of the L4 checksum within the transport header, or -1 when the packet carries none we update.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ChecksumOffset(byte proto) => proto switch
    {
        IpProtocol.Tcp => 16,
        IpProtocol.Udp => 6,
        IpProtocol.Icmp => 2,
        _ => -1,
    };

    /// <summary>
    /// Rewrites the packet so it carries <paramref name="to"/>'s addresses and ports. <paramref name="ip"/> spans the
    /// whole IPv4 packet. Non-first fragments get their addresses only. With <paramref name="partial"/> (the packet's
    /// TCP/UDP checksum is left to the transmitter, <see cref="VSwitch.Pipeline.PacketFlags.ChecksumPartial"/>), the
    /// checksum field holds only the pseudo-header sum: address changes are applied to that sum and port changes not
    /// at all (the kernel's inet_proto_csum_replace with CHECKSUM_PARTIAL).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Apply(Span<byte> ip, in FlowKey to, bool partial = false)
    {
        int ihl = (ip[0] & 0x0F) * 4;
        bool first = (BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x1FFF) == 0;
        Apply(ip, ihl, first ? ip.Length - ihl : 0, to, partial);
    }

    /// <summary>The rewrite with the transport header found by the caller: <paramref name="l4Available"/> is how many
    /// transport bytes are present (fewer than the datagram inside an ICMP quote; 0 for a non-first fragment).</summary>
    internal static void Apply(Span<byte> ip, int ihl, int l4Available, in FlowKey to, bool partial = false)
    {
        uint oldSrc = BinaryPrimitives.ReadUInt32BigEndian(ip[12..]);
        uint oldDst = BinaryPrimitives.ReadUInt32BigEndian(ip[16..]);
        ushort hc = BinaryPrimitives.ReadUInt16BigEndian(ip[10..]);
        byte proto = ip[9];
        Span<byte> l4 = ip[ihl..];
        int co = ChecksumOffset(proto);
        bool hasL4 = co >= 0 && l4Available >= co + 2 && l4Available >= 4;
        ushort lc = hasL4 ? BinaryPrimitives.ReadUInt16BigEndian(l4[co..]) : (ushort)0;
        partial &= hasL4 && proto is IpProtocol.Tcp or IpProtocol.Udp;
        // A UDP checksum of 0 means "none": it stays 0 (a partial one is a pseudo-header sum, never "none").
        bool updateL4 = hasL4 && (partial || !(proto == IpProtocol.Udp && lc == 0));
        // TCP and UDP checksums cover the addresses (pseudo-header); ICMP's does not.
        bool addrInL4 = proto != IpProtocol.Icmp;
        // A partial checksum is the uncomplemented pseudo-header sum: update its complement, complement back.
        if (partial) lc = (ushort)~lc;
        if (oldSrc != to.Src)
        {
            hc = Checksum.Update(hc, oldSrc, to.Src);
            if (updateL4 && addrInL4) lc = Checksum.Update(lc, oldSrc, to.Src);
            BinaryPrimitives.WriteUInt32BigEndian(ip[12..], to.Src);
        }
        if (oldDst != to.Dst)
        {
            hc = Checksum.Update(hc, oldDst, to.Dst);
            if (updateL4 && addrInL4) lc = Checksum.Update(lc, oldDst, to.Dst);
            BinaryPrimitives.WriteUInt32BigEndian(ip[16..], to.Dst);
        }
        if (partial)
        {
            lc = (ushort)~lc;
            updateL4 = false; // ports are summed by whoever completes the checksum
            BinaryPrimitives.WriteUInt16BigEndian(l4[co..], lc);
        }
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], hc);
        if (l4Available < 4) return;
        if (proto == IpProtocol.Icmp)
        {
            // Query id at offset 4 (echo); errors are handled by the caller.
            if (l4Available < 8) return;
            ushort oldId = BinaryPrimitives.ReadUInt16BigEndian(l4[4..]);
            if (oldId != to.SrcPort)
            {
                if (updateL4) lc = Checksum.Update(lc, oldId, to.SrcPort);
                BinaryPrimitives.WriteUInt16BigEndian(l4[4..], to.SrcPort);
            }
        }
        else if (proto is IpProtocol.Tcp or IpProtocol.Udp)
        {
            ushort oldSp = BinaryPrimitives.ReadUInt16BigEndian(l4);
            ushort oldDp = BinaryPrimitives.ReadUInt16BigEndian(l4[2..]);
            if (oldSp != to.SrcPort)
            {
                if (updateL4) lc = Checksum.Update(lc, oldSp, to.SrcPort);
                BinaryPrimitives.WriteUInt16BigEndian(l4, to.SrcPort);
            }
            if (oldDp != to.DstPort)
            {
                if (updateL4) lc = Checksum.Update(lc, oldDp, to.DstPort);
                BinaryPrimitives.WriteUInt16BigEndian(l4[2..], to.DstPort);
            }
        }
        if (updateL4)
        {
            if (proto == IpProtocol.Udp && lc == 0) lc = 0xFFFF;
            BinaryPrimitives.WriteUInt16BigEndian(l4[co..], lc);
        }
    }

    /// <summary>Reads the tuple of an IPv4 packet or a quoted datagram (<see cref="FlowKey.TryRead"/>).</summary>
    public static bool TryReadKey(ReadOnlySpan<byte> ip, out FlowKey key, out int ihl) => FlowKey.TryRead(ip, out key, out ihl);

    /// <summary>
    /// NAT of an ICMP error RELATED to a tracked flow: the quoted datagram (which went the other way after translation)
    /// is put back to what its sender sent (<paramref name="other"/>), the outer destination likewise, and the outer source
    /// when the far end itself sent the error. <paramref name="arrived"/> is the tuple of the error's direction as a
    /// packet of the flow would arrive. The ICMP checksum is recomputed (errors are rare and short).
    /// </summary>
    public static void ApplyToError(Span<byte> ip, in FlowKey arrived, in FlowKey other)
    {
        int ihl = (ip[0] & 0x0F) * 4;
        int total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
        Span<byte> icmp = ip[ihl..Math.Min(total, ip.Length)];
        Span<byte> inner = icmp[IcmpView.HeaderSize..];
        int innerIhl = (inner[0] & 0x0F) * 4;
        // The quoted datagram: back to the tuple its sender used. Its transport checksum is updated when quoted whole
        // enough; its pseudo-header counts the addresses.
        Apply(inner, innerIhl, inner.Length - innerIhl, other);
        uint outerSrc = BinaryPrimitives.ReadUInt32BigEndian(ip[12..]);
        uint newSrc = outerSrc == arrived.Src ? other.Dst : outerSrc, newDst = other.Src;
        uint oldDst = BinaryPrimitives.ReadUInt32BigEndian(ip[16..]);
        ushort hc = BinaryPrimitives.ReadUInt16BigEndian(ip[10..]);
        hc = Checksum.Update(hc, outerSrc, newSrc);
        hc = Checksum.Update(hc, oldDst, newDst);
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], newSrc);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], newDst);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], hc);
        icmp[2] = icmp[3] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum.Compute(icmp));
    }

    /// <summary>Turns a TCP segment into the RST that refuses it (RFC 9293 §3.10.7.1), in place: addresses and ports
    /// swapped, no options or payload. Returns the new IPv4 length.</summary>
    public static int BuildTcpReset(Span<byte> ip)
    {
        int ihl = (ip[0] & 0x0F) * 4;
        int total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
        Span<byte> tcp = ip[ihl..];
        int thl = (tcp[12] >> 4) * 4;
        var flags = (TcpFlags)(((tcp[12] & 0x01) << 8) | tcp[13]);
        uint seq = BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]);
        uint ack = BinaryPrimitives.ReadUInt32BigEndian(tcp[8..]);
        uint segLen = (uint)(total - ihl - thl) + ((flags & TcpFlags.Syn) != 0 ? 1u : 0) + ((flags & TcpFlags.Fin) != 0 ? 1u : 0);
        ushort sp = BinaryPrimitives.ReadUInt16BigEndian(tcp), dp = BinaryPrimitives.ReadUInt16BigEndian(tcp[2..]);
        uint src = BinaryPrimitives.ReadUInt32BigEndian(ip[12..]), dst = BinaryPrimitives.ReadUInt32BigEndian(ip[16..]);
        // Move the TCP header to right after a 20-byte IP header (drops IP options).
        Span<byte> t = ip[Ipv4View.MinHeaderSize..];
        t[..TcpView.MinHeaderSize].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(t, dp);
        BinaryPrimitives.WriteUInt16BigEndian(t[2..], sp);
        bool hadAck = (flags & TcpFlags.Ack) != 0;
        BinaryPrimitives.WriteUInt32BigEndian(t[4..], hadAck ? ack : 0);
        BinaryPrimitives.WriteUInt32BigEndian(t[8..], hadAck ? 0 : seq + segLen);
        t[12] = 5 << 4;
        t[13] = (byte)(hadAck ? TcpFlags.Rst : TcpFlags.Rst | TcpFlags.Ack);
        const int len = Ipv4View.MinHeaderSize + TcpView.MinHeaderSize;
        new Ipv4Repr(new Ipv4Address(dst), new Ipv4Address(src), IpProtocol.Tcp, TcpView.MinHeaderSize, Ttl: 64).Emit(ip);
        ushort sum = Checksum.PseudoHeaderSum(new Ipv4Address(dst), new Ipv4Address(src), IpProtocol.Tcp, TcpView.MinHeaderSize);
        BinaryPrimitives.WriteUInt16BigEndian(t[16..], Checksum.Compute(t[..TcpView.MinHeaderSize], sum));
        return len;
    }
}

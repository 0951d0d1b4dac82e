using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline;

/// <summary>
/// A connection tuple as it appears on the wire in one direction: source and destination address and port and the IP
/// protocol. For ICMP queries the "source port" is the query id and the destination port the query type (echo request
/// 8 in the original direction, echo reply 0 in the reply direction), as the kernel keys ICMP by (type, code, id).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct FlowKey : IEquatable<FlowKey>
{
    public uint Src;
    public uint Dst;
    public ushort SrcPort;
    public ushort DstPort;
    public byte Proto;
    private readonly byte _pad0;
    private readonly ushort _pad1;

    public FlowKey(uint src, uint dst, ushort srcPort, ushort dstPort, byte proto)
    {
        Src = src;
        Dst = dst;
        SrcPort = srcPort;
        DstPort = dstPort;
        Proto = proto;
    }

    /// <summary>The tuple of a packet going the other way (ports swapped; for ICMP echo the reply type).</summary>
    public readonly FlowKey Inverse() => Proto == IpProtocol.Icmp
        ? new FlowKey(Dst, Src, SrcPort, InverseIcmpType(DstPort), Proto)
        : new FlowKey(Dst, Src, DstPort, SrcPort, Proto);

    private static ushort InverseIcmpType(ushort type) => type switch
    {
        IcmpType.EchoRequest => IcmpType.EchoReply,
        IcmpType.EchoReply => IcmpType.EchoRequest,
        _ => type,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool Equals(FlowKey other) =>
        Unsafe.As<uint, ulong>(ref Unsafe.AsRef(in Src)) == Unsafe.As<uint, ulong>(ref other.Src)
        && Unsafe.As<ushort, ulong>(ref Unsafe.AsRef(in SrcPort)) == Unsafe.As<ushort, ulong>(ref other.SrcPort);

    public override readonly bool Equals(object? obj) => obj is FlowKey k && Equals(k);
    public override readonly int GetHashCode() => (int)FlowHash.Symmetric(this, 0);
    public static bool operator ==(FlowKey a, FlowKey b) => a.Equals(b);
    public static bool operator !=(FlowKey a, FlowKey b) => !a.Equals(b);

    /// <summary>Reads the tuple of an IPv4 packet (or of the datagram quoted in an ICMP error, whose transport header may
    /// be cut to 8 bytes). False when the header is too short for its protocol's ports.</summary>
    public static bool TryRead(ReadOnlySpan<byte> ip, out FlowKey key, out int ihl)
    {
        key = default;
        ihl = 0;
        if (ip.Length < Ipv4View.MinHeaderSize || ip[0] >> 4 != 4) return false;
        ihl = (ip[0] & 0x0F) * 4;
        if (ihl < Ipv4View.MinHeaderSize || ip.Length < ihl + 4) return false;
        byte proto = ip[9];
        uint src = BinaryPrimitives.ReadUInt32BigEndian(ip[12..]);
        uint dst = BinaryPrimitives.ReadUInt32BigEndian(ip[16..]);
        ReadOnlySpan<byte> l4 = ip[ihl..];
        switch (proto)
        {
            case IpProtocol.Tcp:
            case IpProtocol.Udp:
                key = new FlowKey(src, dst, BinaryPrimitives.ReadUInt16BigEndian(l4), BinaryPrimitives.ReadUInt16BigEndian(l4[2..]), proto);
                return true;
            case IpProtocol.Icmp:
                if (l4.Length < 8 || l4[0] is not (IcmpType.EchoRequest or IcmpType.EchoReply)) return false;
                key = new FlowKey(src, dst, BinaryPrimitives.ReadUInt16BigEndian(l4[4..]), l4[0], proto);
                return true;
            default:
                return false;
        }
    }

    /// <summary>The tuple a packet's flow is known by (its hash steers it to a worker and finds its connection): TCP and
    /// UDP by addresses and ports, ICMP echo by addresses and id, an ICMP error by the tuple it quotes (so it meets the
    /// connection it is about), anything else (other protocols, later fragments, malformed headers) by addresses.</summary>
    public static FlowKey OfPacket(ReadOnlySpan<byte> ip)
    {
        if (ip.Length < Ipv4View.MinHeaderSize) return default;
        uint src = BinaryPrimitives.ReadUInt32BigEndian(ip[12..]);
        uint dst = BinaryPrimitives.ReadUInt32BigEndian(ip[16..]);
        byte proto = ip[9];
        int ihl = (ip[0] & 0x0F) * 4;
        bool first = (BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x1FFF) == 0;
        if (first && ihl >= Ipv4View.MinHeaderSize && ip.Length >= ihl + 8)
        {
            ReadOnlySpan<byte> l4 = ip[ihl..];
            if (proto == IpProtocol.Icmp && l4[0] is IcmpType.DestinationUnreachable or IcmpType.TimeExceeded or 12
                && TryRead(l4[IcmpView.HeaderSize..], out FlowKey quoted, out _))
                return quoted;
            if (TryRead(ip, out FlowKey key, out _)) return key;
        }
        return new FlowKey(src, dst, 0, 0, proto);
    }

    public override readonly string ToString()
    {
        string p = Proto switch { IpProtocol.Tcp => "tcp", IpProtocol.Udp => "udp", IpProtocol.Icmp => "icmp", _ => $"proto {Proto}" };
        return Proto == IpProtocol.Icmp
            ? $"{p} src={new Ipv4Address(Src)} dst={new Ipv4Address(Dst)} type={DstPort} id={SrcPort}"
            : $"{p} src={new Ipv4Address(Src)} dst={new Ipv4Address(Dst)} sport={SrcPort} dport={DstPort}";
    }
}

/// <summary>
/// Salted, symmetric flow hash: a packet and its reply (addresses and ports swapped) hash alike, so both directions of
/// an un-NATed flow meet the same bucket and, later, the same worker. The salt is random per process, so nobody outside
/// can aim traffic at one bucket.
/// </summary>
public static class FlowHash
{
    public static readonly ulong ProcessSalt = (ulong)Random.Shared.NextInt64() | 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Symmetric(in FlowKey k, ulong salt)
    {
        // ICMP queries: both directions carry the same id and differ in type; hash the id on both sides.
        ushort dstPort = k.Proto == IpProtocol.Icmp ? k.SrcPort : k.DstPort;
        ulong a = Mix(((ulong)k.Src << 16 | k.SrcPort) ^ salt);
        ulong b = Mix(((ulong)k.Dst << 16 | dstPort) ^ salt);
        // Addition is commutative: (a, b) and (b, a) give the same sum. The protocol is mixed in after.
        return Mix(a + b + k.Proto);
    }

    /// <summary>The murmur3 64-bit finaliser.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mix(ulong x)
    {
        x ^= x >> 33;
        x *= 0xFF51AFD7ED558CCDUL;
        x ^= x >> 33;
        x *= 0xC4CEB9FE1A85EC53UL;
        x ^= x >> 33;
        return x;
    }

    public static int Log2Ceiling(int n) => n <= 1 ? 0 : 32 - BitOperations.LeadingZeroCount((uint)(n - 1));
}

using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

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

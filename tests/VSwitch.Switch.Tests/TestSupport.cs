using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.Tests;

/// <summary>A clock the test moves by hand.</summary>
public sealed class ManualClock : TimeProvider
{
    private long _ticks = 1_000_000_000;

    public override long TimestampFrequency => 1_000_000_000;
    public override long GetTimestamp() => _ticks;
    public void Advance(TimeSpan by) => _ticks += (long)(by.TotalSeconds * TimestampFrequency);
}

public static class Frames
{
    public const ushort TestEtherType = 0x88B5; // IEEE local experimental

    public static MacAddress Mac(int n) => new(0x0200_0000_0000UL | (uint)n);

    /// <summary>A minimum-size Ethernet frame (60 bytes) with a recognisable payload.</summary>
    public static byte[] Make(MacAddress dst, MacAddress src, int length = 60, ushort etherType = TestEtherType, byte fill = 0x5A, ushort? vlan = null)
    {
        byte[] f = new byte[length];
        int h = new EthernetRepr(dst, src, etherType, vlan).Emit(f);
        for (int i = h; i < f.Length; i++) f[i] = (byte)(fill + i);
        return f;
    }
}

public static class L3Frames
{
    public static Ipv4Address Ip(string s) => Ipv4Address.Parse(s);

    /// <summary>An Ethernet/IPv4/ICMP echo request of <paramref name="payload"/> data bytes with valid checksums.</summary>
    public static byte[] Echo(MacAddress dst, MacAddress src, string srcIp, string dstIp, int payload = 32, byte ttl = 64, bool df = false, ushort id = 7)
    {
        int ipLen = 20 + 8 + payload;
        byte[] f = new byte[Math.Max(60, 14 + ipLen)];
        int o = new EthernetRepr(dst, src, EtherType.Ipv4).Emit(f);
        new Ipv4Repr(Ip(srcIp), Ip(dstIp), IpProtocol.Icmp, 8 + payload, Ttl: ttl, Identification: id, DontFragment: df).Emit(f.AsSpan(o));
        Span<byte> icmp = f.AsSpan(o + 20, 8 + payload);
        for (int i = 8; i < icmp.Length; i++) icmp[i] = (byte)i;
        new IcmpRepr(IcmpType.EchoRequest, 0, 0, (0x1234u << 16) | 1).Emit(icmp);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Pipeline.Checksum.Compute(icmp));
        return f;
    }

    /// <summary>An Ethernet/IPv4/UDP datagram with valid checksums.</summary>
    public static byte[] Udp(MacAddress dst, MacAddress src, string srcIp, string dstIp, ushort sport, ushort dport, int payload = 18, byte ttl = 64)
    {
        byte[] f = new byte[Math.Max(60, 14 + 28 + payload)];
        int o = new EthernetRepr(dst, src, EtherType.Ipv4).Emit(f);
        new Ipv4Repr(Ip(srcIp), Ip(dstIp), IpProtocol.Udp, 8 + payload, Ttl: ttl).Emit(f.AsSpan(o));
        new UdpRepr(sport, dport, (ushort)(8 + payload)).Emit(f.AsSpan(o + 20));
        Ipv4View.TryCreate(f.AsSpan(o), out Ipv4View ip);
        Pipeline.Checksum.TryUpdateTransport(ip);
        return f;
    }

    /// <summary>An Ethernet/IPv4/TCP segment with valid checksums.</summary>
    public static byte[] Tcp(MacAddress dst, MacAddress src, string srcIp, string dstIp, ushort sport, ushort dport, TcpFlags flags,
        uint seq = 1000, uint ack = 0, int payload = 0, bool df = true)
    {
        byte[] f = new byte[Math.Max(60, 14 + 40 + payload)];
        int o = new EthernetRepr(dst, src, EtherType.Ipv4).Emit(f);
        new Ipv4Repr(Ip(srcIp), Ip(dstIp), IpProtocol.Tcp, 20 + payload, DontFragment: df).Emit(f.AsSpan(o));
        new TcpRepr(sport, dport, seq, ack, flags, 64240).Emit(f.AsSpan(o + 20));
        for (int i = 0; i < payload; i++) f[o + 40 + i] = (byte)(i * 7);
        Ipv4View.TryCreate(f.AsSpan(o), out Ipv4View ip);
        Pipeline.Checksum.TryUpdateTransport(ip);
        return f;
    }

    public static byte[] ArpRequest(MacAddress src, string senderIp, string targetIp)
    {
        byte[] f = new byte[60];
        int o = new EthernetRepr(MacAddress.Broadcast, src, EtherType.Arp).Emit(f);
        new ArpRepr(ArpOperation.Request, src, Ip(senderIp), MacAddress.Zero, Ip(targetIp)).Emit(f.AsSpan(o));
        return f;
    }
}

internal static class SharedFixtures
{
    public static string PathOf(string name)
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "VSwitch.sln")))
            dir = Path.GetDirectoryName(dir.TrimEnd(Path.DirectorySeparatorChar));
        Assert.True(dir is not null, $"no VSwitch.sln above {AppContext.BaseDirectory}");
        string path = Path.GetFullPath(Path.Combine(dir!, "tests", "fixtures", name));
        Assert.True(File.Exists(path), $"fixture {path} is missing");
        return path;
    }
}

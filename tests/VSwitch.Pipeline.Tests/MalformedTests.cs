using System.Buffers.Binary;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline.Tests;

/// <summary>Every view refuses truncated and lying headers, at every length.</summary>
public class MalformedTests
{
    private static byte[] IpOf(byte[] frame) => frame.AsSpan(14).ToArray();

    [Fact]
    public void Ethernet_truncations()
    {
        for (int n = 0; n < 14; n++) Assert.False(EthernetView.TryCreate(Frames.EchoRequest.AsSpan(0, n), out _), $"untagged length {n}");
        Assert.True(EthernetView.TryCreate(Frames.EchoRequest.AsSpan(0, 14), out _));
        for (int n = 0; n < 18; n++) Assert.False(EthernetView.TryCreate(Frames.UdpTagged.AsSpan(0, n), out _), $"tagged length {n}");
        Assert.True(EthernetView.TryCreate(Frames.UdpTagged.AsSpan(0, 18), out _));
        Assert.False(EthernetRepr.TryParse(Frames.UdpTagged.AsSpan(0, 17), out _));
    }

    [Fact]
    public void Arp_truncations_and_non_ethernet_ipv4()
    {
        byte[] arp = Frames.ArpRequest.AsSpan(14).ToArray();
        for (int n = 0; n < ArpView.Size; n++)
        {
            Assert.False(ArpView.TryCreate(arp.AsSpan(0, n), out _), $"length {n}");
            Assert.False(ArpRepr.TryParse(arp.AsSpan(0, n), out _));
        }
        Assert.True(ArpView.TryCreate(arp, out _));
        // Hardware type, protocol type, hardware length, protocol length: any other value is refused.
        (int offset, byte value)[] lies = [(1, 6), (0, 1), (2, 0x86), (3, 0x06), (4, 8), (5, 16), (4, 0), (5, 0)];
        foreach ((int offset, byte value) in lies)
        {
            byte[] bad = (byte[])arp.Clone();
            bad[offset] = value;
            Assert.False(ArpView.TryCreate(bad, out _), $"byte {offset} = {value}");
        }
    }

    [Fact]
    public void Ipv4_every_truncation_below_total_length_is_refused()
    {
        foreach (byte[] frame in new[] { Frames.EchoRequest, Frames.IgmpWithRouterAlert, Frames.Udp, Frames.TcpSyn })
        {
            byte[] ip = IpOf(frame);
            int total = BinaryPrimitives.ReadUInt16BigEndian(ip.AsSpan(2));
            Assert.Equal(ip.Length, total);
            for (int n = 0; n < total; n++)
            {
                Assert.False(Ipv4View.TryCreate(ip.AsSpan(0, n), out _), $"length {n} of {total}");
                Assert.False(Ipv4Repr.TryParse(ip.AsSpan(0, n), out _));
            }
            Assert.True(Ipv4View.TryCreate(ip, out _));
        }
    }

    [Fact]
    public void Ipv4_bad_version()
    {
        byte[] ip = IpOf(Frames.EchoRequest);
        for (int version = 0; version < 16; version++)
        {
            ip[0] = (byte)((version << 4) | 5);
            Assert.Equal(version == 4, Ipv4View.TryCreate(ip, out _));
        }
    }

    [Fact]
    public void Ipv4_bad_ihl()
    {
        byte[] ip = IpOf(Frames.EchoRequest); // total length 84, 64 bytes of ICMP after a 20-byte header
        for (int ihl = 0; ihl < 16; ihl++)
        {
            ip[0] = (byte)(0x40 | ihl);
            // IHL below 5 is invalid; any IHL from 5 to 15 fits inside the 84-byte datagram.
            Assert.Equal(ihl >= 5, Ipv4View.TryCreate(ip, out Ipv4View v));
            if (ihl >= 5) Assert.Equal(84 - ihl * 4, v.Payload.Length);
        }
        // A header longer than the span, and a header longer than the total length.
        byte[] shortIp = IpOf(Frames.Udp); // total 30
        shortIp[0] = 0x48; // 32-byte header > 30
        Assert.False(Ipv4View.TryCreate(shortIp, out _));
        byte[] padded = new byte[60];
        IpOf(Frames.Udp).CopyTo(padded, 0);
        padded[0] = 0x48; // 32-byte header fits the 60-byte span but not total length 30
        Assert.False(Ipv4View.TryCreate(padded, out _));
    }

    [Fact]
    public void Ipv4_total_length_lies()
    {
        byte[] ip = IpOf(Frames.EchoRequest); // 84 bytes
        foreach (int lie in new[] { 0, 1, 19, 85, 1500, 65535 })
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(2), (ushort)lie);
            Assert.False(Ipv4View.TryCreate(ip, out _), $"total length {lie}");
        }
        foreach (int ok in new[] { 20, 21, 84 })
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(2), (ushort)ok);
            Assert.True(Ipv4View.TryCreate(ip, out Ipv4View v), $"total length {ok}");
            Assert.Equal(ok - 20, v.Payload.Length);
        }
    }

    [Fact]
    public void Icmp_truncations()
    {
        byte[] icmp = Frames.EchoRequest.AsSpan(34).ToArray();
        for (int n = 0; n < IcmpView.HeaderSize; n++)
        {
            Assert.False(IcmpView.TryCreate(icmp.AsSpan(0, n), out _), $"length {n}");
            Assert.False(IcmpRepr.TryParse(icmp.AsSpan(0, n), out _));
        }
        Assert.True(IcmpView.TryCreate(icmp.AsSpan(0, 8), out IcmpView v));
        Assert.Equal(0, v.Payload.Length);
    }

    [Fact]
    public void Udp_truncations_and_length_lies()
    {
        byte[] udp = Frames.Udp.AsSpan(34).ToArray(); // Length 10
        for (int n = 0; n < 10; n++)
        {
            Assert.False(UdpView.TryCreate(udp.AsSpan(0, n), out _), $"length {n}");
            Assert.False(UdpRepr.TryParse(udp.AsSpan(0, n), out _));
        }
        foreach (int lie in new[] { 0, 1, 7, 11, 65535 })
        {
            byte[] bad = (byte[])udp.Clone();
            BinaryPrimitives.WriteUInt16BigEndian(bad.AsSpan(4), (ushort)lie);
            Assert.False(UdpView.TryCreate(bad, out _), $"UDP length {lie}");
        }
        // A UDP length shorter than the span (trailing bytes) is fine; the payload stops at Length.
        byte[] longer = new byte[20];
        udp.CopyTo(longer, 0);
        Assert.True(UdpView.TryCreate(longer, out UdpView v));
        Assert.Equal(2, v.Payload.Length);
        BinaryPrimitives.WriteUInt16BigEndian(longer.AsSpan(4), 8);
        Assert.True(UdpView.TryCreate(longer, out v));
        Assert.Equal(0, v.Payload.Length);
    }

    [Fact]
    public void Tcp_truncations_and_data_offset_lies()
    {
        byte[] tcp = Frames.TcpSyn.AsSpan(34).ToArray(); // data offset 10 = 40 bytes
        for (int n = 0; n < 40; n++)
        {
            Assert.False(TcpView.TryCreate(tcp.AsSpan(0, n), out _), $"length {n}");
            Assert.False(TcpRepr.TryParse(tcp.AsSpan(0, n), out _));
        }
        for (int offset = 0; offset < 16; offset++)
        {
            byte[] bad = (byte[])tcp.Clone();
            bad[12] = (byte)(offset << 4);
            Assert.Equal(offset is >= 5 and <= 10, TcpView.TryCreate(bad, out _));
        }
    }

    [Fact]
    public void Transport_checksum_helpers_refuse_what_they_cannot_check()
    {
        // First fragment: the checksum covers bytes this packet does not carry.
        byte[] first = new byte[1444];
        Frames.FirstFragmentHeader.CopyTo(first, 0);
        Assert.True(Ipv4View.TryCreate(first, out Ipv4View frag));
        Assert.False(Checksum.TryComputeTransport(frag, out _));
        Assert.False(Checksum.VerifyTransport(frag));
        // IGMP is not a transport the helpers know.
        byte[] igmp = IpOf(Frames.IgmpWithRouterAlert);
        Assert.True(Ipv4View.TryCreate(igmp, out Ipv4View ig));
        Assert.False(Checksum.TryComputeTransport(ig, out _));
        // A TCP "segment" too short to hold its checksum field.
        var r = new Ipv4Repr(Ipv4Address.Parse("10.0.0.1"), Ipv4Address.Parse("10.0.0.2"), IpProtocol.Tcp, 10);
        byte[] tiny = new byte[r.TotalLength];
        r.Emit(tiny);
        Assert.True(Ipv4View.TryCreate(tiny, out Ipv4View t));
        Assert.False(Checksum.TryComputeTransport(t, out _));
        Assert.False(Checksum.TryUpdateTransport(t));
    }
}

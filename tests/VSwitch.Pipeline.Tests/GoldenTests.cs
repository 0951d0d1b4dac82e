using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline.Tests;

/// <summary>Every field parsed from known bytes, and every Repr emitted back to exactly those bytes (into a 0xA5-filled buffer).</summary>
public class GoldenTests
{
    private static readonly MacAddress PodA = MacAddress.Parse("3a:5c:29:82:94:d1");
    private static readonly MacAddress PodB = MacAddress.Parse("9e:9e:a0:7d:fc:03");
    private static readonly Ipv4Address IpA = Ipv4Address.Parse("10.244.0.11");
    private static readonly Ipv4Address IpB = Ipv4Address.Parse("10.244.0.12");

    private static void AssertEmits(ReadOnlySpan<byte> expected, Func<byte[], int> emit)
    {
        byte[] buf = Frames.Filled(expected.Length + 16);
        int n = emit(buf);
        Assert.Equal(expected.Length, n);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(buf, 0, n));
        Frames.AssertAllA5(buf.AsSpan(n));
    }

    [Fact]
    public void Ethernet_untagged()
    {
        byte[] f = (byte[])Frames.EchoRequest.Clone();
        Assert.True(EthernetView.TryCreate(f, out EthernetView eth));
        Assert.False(eth.IsTagged);
        Assert.Equal(PodB, eth.Destination);
        Assert.Equal(PodA, eth.Source);
        Assert.Equal(EtherType.Ipv4, eth.EtherType);
        Assert.Equal(0, eth.TagControl);
        Assert.Equal(14, eth.HeaderLength);
        Assert.Equal(f.Length - 14, eth.Payload.Length);
        Assert.Equal(0x45, eth.Payload[0]);

        AssertEmits(f.AsSpan(0, 14), b => new EthernetRepr(PodB, PodA, EtherType.Ipv4).Emit(b));
        Assert.True(EthernetRepr.TryParse(f, out EthernetRepr r));
        Assert.Equal(new EthernetRepr(PodB, PodA, EtherType.Ipv4), r);
    }

    [Fact]
    public void Ethernet_8021q()
    {
        byte[] f = (byte[])Frames.UdpTagged.Clone();
        Assert.True(EthernetView.TryCreate(f, out EthernetView eth));
        Assert.True(eth.IsTagged);
        Assert.Equal(PodB, eth.Destination);
        Assert.Equal(PodA, eth.Source);
        Assert.Equal(0x2064, eth.TagControl);
        Assert.Equal(100, eth.VlanId);
        Assert.Equal(EtherType.Ipv4, eth.EtherType);
        Assert.Equal(18, eth.HeaderLength);
        Assert.Equal(Frames.Udp.AsSpan(14).ToArray(), eth.Payload.ToArray());

        AssertEmits(f.AsSpan(0, 18), b => new EthernetRepr(PodB, PodA, EtherType.Ipv4, 0x2064).Emit(b));
    }

    [Fact]
    public void Arp_request_and_reply()
    {
        byte[] f = (byte[])Frames.ArpRequest.Clone();
        Assert.True(ArpView.TryCreate(f.AsSpan(14), out ArpView arp));
        Assert.Equal(ArpOperation.Request, arp.Operation);
        Assert.Equal(PodA, arp.SenderHardwareAddress);
        Assert.Equal(IpA, arp.SenderProtocolAddress);
        Assert.Equal(MacAddress.Zero, arp.TargetHardwareAddress);
        Assert.Equal(IpB, arp.TargetProtocolAddress);
        AssertEmits(f.AsSpan(14), b => new ArpRepr(ArpOperation.Request, PodA, IpA, MacAddress.Zero, IpB).Emit(b));

        byte[] g = (byte[])Frames.ArpReply.Clone();
        Assert.True(ArpRepr.TryParse(g.AsSpan(14), out ArpRepr reply));
        Assert.Equal(new ArpRepr(ArpOperation.Reply, PodB, IpB, PodA, IpA), reply);
        AssertEmits(g.AsSpan(14), b => reply.Emit(b));
    }

    [Fact]
    public void Ipv4_plain_header_of_echo_request()
    {
        byte[] f = (byte[])Frames.EchoRequest.Clone();
        Assert.True(Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip));
        Assert.Equal(4, ip.Version);
        Assert.Equal(20, ip.HeaderLength);
        Assert.Equal(0, ip.Options.Length);
        Assert.Equal(0, ip.Dscp);
        Assert.Equal(0, ip.Ecn);
        Assert.Equal(84, ip.TotalLength);
        Assert.Equal(0x8a4a, ip.Identification);
        Assert.True(ip.DontFragment);
        Assert.False(ip.MoreFragments);
        Assert.Equal(0, ip.FragmentOffset);
        Assert.False(ip.IsFragment);
        Assert.Equal(64, ip.Ttl);
        Assert.Equal(IpProtocol.Icmp, ip.Protocol);
        Assert.Equal(0x9a60, ip.HeaderChecksum);
        Assert.Equal(IpA, ip.Source);
        Assert.Equal(IpB, ip.Destination);
        Assert.Equal(64, ip.Payload.Length);
        Assert.True(ip.IsChecksumValid);

        var repr = new Ipv4Repr(IpA, IpB, IpProtocol.Icmp, 64, Ttl: 64, Identification: 0x8a4a, DontFragment: true);
        AssertEmits(f.AsSpan(14, 20), b => repr.Emit(b));
        Assert.True(Ipv4Repr.TryParse(f.AsSpan(14), out Ipv4Repr parsed));
        Assert.Equal(repr, parsed);
    }

    [Fact]
    public void Ipv4_with_router_alert_option()
    {
        byte[] f = (byte[])Frames.IgmpWithRouterAlert.Clone();
        Assert.True(Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip));
        Assert.Equal(24, ip.HeaderLength);
        Assert.Equal("94040000", Convert.ToHexString(ip.Options));
        Assert.Equal(48, ip.Dscp); // CS6 (0xc0 >> 2)
        Assert.Equal(0, ip.Ecn);
        Assert.Equal(40, ip.TotalLength);
        Assert.Equal(0, ip.Identification);
        Assert.True(ip.DontFragment);
        Assert.False(ip.IsFragment);
        Assert.Equal(1, ip.Ttl);
        Assert.Equal(IpProtocol.Igmp, ip.Protocol);
        Assert.Equal(0x03fa, ip.HeaderChecksum);
        Assert.Equal(Ipv4Address.Any, ip.Source);
        Assert.Equal(Ipv4Address.Parse("224.0.0.22"), ip.Destination);
        Assert.Equal(16, ip.Payload.Length);
        Assert.Equal(0x22, ip.Payload[0]); // IGMPv3 membership report
        Assert.True(ip.IsChecksumValid);

        var repr = new Ipv4Repr(Ipv4Address.Any, Ipv4Address.Parse("224.0.0.22"), IpProtocol.Igmp, 16,
            Ttl: 1, DontFragment: true, Dscp: 48, Options: new byte[] { 0x94, 0x04, 0x00, 0x00 });
        AssertEmits(f.AsSpan(14, 24), b => repr.Emit(b));
        Assert.True(Ipv4Repr.TryParse(f.AsSpan(14), out Ipv4Repr parsed));
        Assert.Equal(repr, parsed);
    }

    [Fact]
    public void Ipv4_fragment_fields()
    {
        // The headers are taken alone, so give the view a span as long as the datagram claims (contents irrelevant).
        byte[] first = new byte[1444];
        Frames.FirstFragmentHeader.CopyTo(first, 0);
        Assert.True(Ipv4View.TryCreate(first, out Ipv4View a));
        Assert.Equal(1444, a.TotalLength);
        Assert.Equal(0x8afd, a.Identification);
        Assert.False(a.DontFragment);
        Assert.True(a.MoreFragments);
        Assert.Equal(0, a.FragmentOffset);
        Assert.True(a.IsFragment);
        Assert.Equal(1424, a.Payload.Length);
        Assert.True(a.IsChecksumValid);
        AssertEmits(Frames.FirstFragmentHeader,
            b => new Ipv4Repr(IpA, IpB, IpProtocol.Icmp, 1424, Identification: 0x8afd, MoreFragments: true).Emit(b));

        byte[] last = new byte[104];
        Frames.LastFragmentHeader.CopyTo(last, 0);
        Assert.True(Ipv4View.TryCreate(last, out Ipv4View z));
        Assert.Equal(104, z.TotalLength);
        Assert.False(z.MoreFragments);
        Assert.Equal(1424, z.FragmentOffset); // 0xb2 × 8
        Assert.True(z.IsFragment);
        Assert.True(z.IsChecksumValid);
        AssertEmits(Frames.LastFragmentHeader,
            b => new Ipv4Repr(IpA, IpB, IpProtocol.Icmp, 84, Identification: 0x8afd, FragmentOffset: 1424).Emit(b));
    }

    [Fact]
    public void Ipv4_payload_stops_at_total_length_before_ethernet_padding()
    {
        // The UDP frame padded to the 60-byte Ethernet minimum, as a switch receives it from the wire.
        byte[] f = new byte[60];
        Frames.Udp.CopyTo(f, 0);
        Assert.True(Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip));
        Assert.Equal(46, ip.Bytes.Length);
        Assert.Equal(30, ip.TotalLength);
        Assert.Equal(10, ip.Payload.Length);
        Assert.True(Checksum.VerifyTransport(ip));
    }

    [Fact]
    public void Icmp_echo_request()
    {
        byte[] f = (byte[])Frames.EchoRequest.Clone();
        Assert.True(IcmpView.TryCreate(f.AsSpan(34), out IcmpView icmp));
        Assert.Equal(IcmpType.EchoRequest, icmp.Type);
        Assert.Equal(0, icmp.Code);
        Assert.Equal(0x70cc, icmp.Checksum);
        Assert.Equal(0x284a, icmp.Identifier);
        Assert.Equal(1, icmp.SequenceNumber);
        Assert.Equal(0x284a0001u, icmp.RestOfHeader);
        Assert.False(icmp.IsError);
        Assert.Equal(56, icmp.Payload.Length);
        Assert.True(icmp.IsChecksumValid);

        IcmpRepr repr = IcmpRepr.EchoRequest(0x284a, 1, 0x70cc);
        AssertEmits(f.AsSpan(34, 8), b => repr.Emit(b));
        Assert.True(IcmpRepr.TryParse(f.AsSpan(34), out IcmpRepr parsed));
        Assert.Equal(repr, parsed);
        Assert.Equal(0x284a, parsed.Identifier);
        Assert.Equal(1, parsed.SequenceNumber);

        // Recomputing from scratch gives the checksum the kernel sent.
        icmp.Checksum = 0xdead;
        icmp.UpdateChecksum();
        Assert.Equal(0x70cc, icmp.Checksum);
    }

    [Fact]
    public void Icmp_fragmentation_needed()
    {
        byte[] f = (byte[])Frames.FragmentationNeeded.Clone();
        Assert.True(Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip));
        Assert.True(ip.IsChecksumValid);
        Assert.True(IcmpView.TryCreate(ip.Payload, out IcmpView icmp));
        Assert.Equal(IcmpType.DestinationUnreachable, icmp.Type);
        Assert.Equal(IcmpUnreachableCode.FragmentationNeeded, icmp.Code);
        Assert.Equal(0xb90f, icmp.Checksum);
        Assert.Equal(1400, icmp.NextHopMtu);
        Assert.True(icmp.IsError);
        Assert.True(icmp.IsChecksumValid);
        Assert.True(Checksum.VerifyTransport(ip));
        // The quoted header is the first fragment's.
        Assert.Equal(Frames.FirstFragmentHeader, icmp.Payload[..20].ToArray());

        IcmpRepr repr = IcmpRepr.FragmentationNeeded(1400, 0xb90f);
        Assert.Equal(1400, repr.NextHopMtu);
        AssertEmits(f.AsSpan(34, 8), b => repr.Emit(b));

        // Build the whole IP+ICMP message from Reprs plus the quote, and get the composed bytes back.
        byte[] buf = Frames.Filled(56);
        int n = new Ipv4Repr(Ipv4Address.Parse("10.244.0.1"), IpA, IpProtocol.Icmp, 36).Emit(buf);
        n += IcmpRepr.FragmentationNeeded(1400).Emit(buf.AsSpan(n));
        f.AsSpan(42, 28).CopyTo(buf.AsSpan(n));
        Assert.True(Ipv4View.TryCreate(buf, out Ipv4View built));
        Assert.True(Checksum.TryUpdateTransport(built));
        Assert.Equal(Convert.ToHexString(f.AsSpan(14)), Convert.ToHexString(buf));
    }

    [Fact]
    public void Udp_datagram()
    {
        byte[] f = (byte[])Frames.Udp.Clone();
        Assert.True(Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip));
        Assert.True(UdpView.TryCreate(ip.Payload, out UdpView udp));
        Assert.Equal(54569, udp.SourcePort);
        Assert.Equal(9999, udp.DestinationPort);
        Assert.Equal(10, udp.Length);
        Assert.Equal(0x7598, udp.Checksum);
        Assert.Equal("780A", Convert.ToHexString(udp.Payload));
        Assert.True(Checksum.VerifyTransport(ip));
        Assert.True(Checksum.TryComputeTransport(ip, out ushort c));
        Assert.Equal(0x7598, c);

        var repr = new UdpRepr(54569, 9999, 10, 0x7598);
        Assert.Equal(2, repr.PayloadLength);
        AssertEmits(f.AsSpan(34, 8), b => repr.Emit(b));
        Assert.True(UdpRepr.TryParse(ip.Payload, out UdpRepr parsed));
        Assert.Equal(repr, parsed);
    }

    [Fact]
    public void Tcp_syn_with_options()
    {
        byte[] f = (byte[])Frames.TcpSyn.Clone();
        Assert.True(Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip));
        Assert.Equal(IpProtocol.Tcp, ip.Protocol);
        Assert.True(TcpView.TryCreate(ip.Payload, out TcpView tcp));
        Assert.Equal(60394, tcp.SourcePort);
        Assert.Equal(8080, tcp.DestinationPort);
        Assert.Equal(0xfb4688dcu, tcp.SequenceNumber);
        Assert.Equal(0u, tcp.AcknowledgmentNumber);
        Assert.Equal(40, tcp.HeaderLength);
        Assert.Equal(TcpFlags.Syn, tcp.Flags);
        Assert.Equal(64860, tcp.WindowSize);
        Assert.Equal(0x68f1, tcp.Checksum);
        Assert.Equal(0, tcp.UrgentPointer);
        Assert.Equal(20, tcp.Options.Length);
        Assert.Equal(new byte[] { 2, 4, 0x05, 0x82 }, tcp.Options[..4].ToArray()); // MSS 1410
        Assert.Equal(new byte[] { 3, 3, 10 }, tcp.Options[17..].ToArray()); // window scale 10
        Assert.Equal(0, tcp.Payload.Length);
        Assert.True(Checksum.VerifyTransport(ip));

        byte[] options = Frames.Hex("020405820402080a08c5337f000000000103030a");
        var repr = new TcpRepr(60394, 8080, 0xfb4688dc, 0, TcpFlags.Syn, 64860, 0x68f1, 0, options);
        AssertEmits(f.AsSpan(34, 40), b => repr.Emit(b));
        Assert.True(TcpRepr.TryParse(ip.Payload, out TcpRepr parsed));
        Assert.Equal(repr, parsed);
    }

    [Fact]
    public void Tcp_flags_include_the_ns_bit()
    {
        var repr = new TcpRepr(1, 2, 3, 4, TcpFlags.Ns | TcpFlags.Cwr | TcpFlags.Ece | TcpFlags.Urg | TcpFlags.Ack | TcpFlags.Psh
            | TcpFlags.Rst | TcpFlags.Syn | TcpFlags.Fin, 5);
        byte[] b = Frames.Filled(20);
        repr.Emit(b);
        Assert.Equal(0x51, b[12]); // data offset 5, reserved 0, NS
        Assert.Equal(0xFF, b[13]);
        Assert.True(TcpView.TryCreate(b, out TcpView v));
        Assert.Equal(repr.Flags, v.Flags);
    }

    [Fact]
    public void Setters_write_the_wire_fields()
    {
        byte[] f = (byte[])Frames.EchoRequest.Clone();
        Assert.True(Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip));
        ip.Ttl = 63;
        ip.Source = Ipv4Address.Parse("192.0.2.1");
        ip.Destination = Ipv4Address.Parse("198.51.100.2");
        Assert.False(ip.IsChecksumValid);
        ip.UpdateChecksum();
        Assert.True(ip.IsChecksumValid);
        Assert.Equal("3F01", Convert.ToHexString(f, 22, 2));
        Assert.Equal("C0000201C6336402", Convert.ToHexString(f, 26, 8));
    }
}

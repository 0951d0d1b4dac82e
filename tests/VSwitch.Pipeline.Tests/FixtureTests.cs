using System.Buffers.Binary;
using System.Globalization;
using VSwitch.Pipeline.Pcap;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline.Tests;

/// <summary>
/// The kernel-made captures in tests/fixtures read through <see cref="PcapReader"/> and the wire views, cross-checked
/// against tshark. Frame counts were taken with <c>tshark -r FILE | wc -l</c> (53 and 54); the fixture README's
/// "51 VXLAN frames" is out of date — tshark dissects 53 VXLAN frames in kernel-vxlan-4789.pcap.
/// </summary>
public class FixtureTests
{
    private const string Underlay = "kernel-vxlan-4789.pcap";
    private const string PodSide = "pod-side.pcap";
    private const int VxlanPort = 4789;
    private const int VxlanHeaderSize = 8;

    private static List<PcapRecord> Read(string name)
    {
        using PcapReader r = PcapReader.Open(Fixtures.PathOf(name));
        Assert.Equal(PcapFormat.LinkTypeEthernet, r.LinkType);
        Assert.False(r.IsNanosecond);
        return r.ReadAll();
    }

    [Theory]
    [InlineData(Underlay, 53)]
    [InlineData(PodSide, 54)]
    public void Frame_count_lengths_and_timestamps_match_tshark(string name, int expectedCount)
    {
        List<PcapRecord> records = Read(name);
        Assert.Equal(expectedCount, records.Count);

        string[] lines = Tshark.Run("-r", Fixtures.PathOf(name), "-T", "fields", "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.time_epoch")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(expectedCount, lines.Length);
        for (int i = 0; i < records.Count; i++)
        {
            string[] f = lines[i].Split('\t');
            Assert.Equal(int.Parse(f[0], CultureInfo.InvariantCulture), records[i].OriginalLength);
            Assert.Equal(int.Parse(f[1], CultureInfo.InvariantCulture), records[i].Data.Length);
            decimal epoch = decimal.Parse(f[2], CultureInfo.InvariantCulture);
            Assert.Equal(epoch, records[i].TimestampNanoseconds / 1_000_000_000m);
        }
    }

    [Theory]
    [InlineData(Underlay)]
    [InlineData(PodSide)]
    public void Every_frame_parses_as_ethernet(string name)
    {
        foreach (PcapRecord r in Read(name))
        {
            Assert.True(EthernetView.TryCreate(r.Data, out EthernetView eth));
            Assert.True(eth.EtherType is EtherType.Ipv4 or EtherType.Arp or EtherType.Ipv6, $"ethertype 0x{eth.EtherType:x4}");
            if (eth.EtherType == EtherType.Ipv4) Assert.True(Ipv4View.TryCreate(eth.Payload, out _));
            if (eth.EtherType == EtherType.Arp) Assert.True(ArpView.TryCreate(eth.Payload, out _));
        }
    }

    /// <summary>The inner Ethernet frame of a VXLAN-in-UDP/IPv4 frame, after checking the outer headers.</summary>
    private static byte[] Decapsulate(byte[] frame)
    {
        Assert.True(EthernetView.TryCreate(frame, out EthernetView eth));
        Assert.Equal(EtherType.Ipv4, eth.EtherType);
        Assert.True(Ipv4View.TryCreate(eth.Payload, out Ipv4View ip));
        Assert.Equal(IpProtocol.Udp, ip.Protocol);
        Assert.True(UdpView.TryCreate(ip.Payload, out UdpView udp));
        Assert.Equal(VxlanPort, udp.DestinationPort);
        Span<byte> vx = udp.Payload;
        Assert.Equal(0x08, vx[0]); // I flag: VNI valid
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(vx[4..]) >> 8); // VNI 1
        return vx[VxlanHeaderSize..].ToArray();
    }

    [Fact]
    public void Every_ipv4_header_checksum_verifies()
    {
        int outer = 0, inner = 0, pod = 0, quoted = 0;
        foreach (PcapRecord r in Read(Underlay))
        {
            Assert.True(EthernetView.TryCreate(r.Data, out EthernetView eth));
            Assert.True(Ipv4View.TryCreate(eth.Payload, out Ipv4View ip));
            Assert.True(ip.IsChecksumValid, $"outer header of {r.Timestamp:O}");
            outer++;
            byte[] f = Decapsulate(r.Data);
            Assert.True(EthernetView.TryCreate(f, out EthernetView ie));
            if (ie.EtherType != EtherType.Ipv4) continue;
            Assert.True(Ipv4View.TryCreate(ie.Payload, out Ipv4View iip));
            Assert.True(iip.IsChecksumValid);
            inner++;
        }
        foreach (PcapRecord r in Read(PodSide))
        {
            Assert.True(EthernetView.TryCreate(r.Data, out EthernetView eth));
            if (eth.EtherType != EtherType.Ipv4) continue;
            Assert.True(Ipv4View.TryCreate(eth.Payload, out Ipv4View ip));
            Assert.True(ip.IsChecksumValid);
            pod++;
            if (ip.Protocol == IpProtocol.Icmp && !ip.IsFragment && IcmpView.TryCreate(ip.Payload, out IcmpView icmp) && icmp.IsError)
            {
                // Linux quotes the whole 30-byte UDP datagram here (RFC 1812 allows up to 576 bytes), so it parses whole.
                Assert.True(Ipv4View.TryCreate(icmp.Payload, out Ipv4View q));
                Assert.True(q.IsChecksumValid, "quoted header");
                Assert.True(Checksum.VerifyTransport(q), "quoted UDP");
                quoted++;
            }
        }
        // tshark -Y ip: 53 outer headers; 22 inner IPv4 frames; 22 IPv4 frames on the pod side, one an ICMP error quoting a header.
        Assert.Equal((53, 22, 22, 1), (outer, inner, pod, quoted));
    }

    /// <summary>Checks the transport checksum of every IPv4 frame; fragments are reassembled and checked whole.</summary>
    private static (int Tcp, int Udp, int Icmp, int Igmp, int Reassembled) VerifyTransportChecksums(IEnumerable<byte[]> frames)
    {
        int tcp = 0, udp = 0, icmp = 0, igmp = 0, reassembled = 0;
        var fragments = new Dictionary<(uint, uint, ushort), SortedDictionary<int, byte[]>>();
        foreach (byte[] frame in frames)
        {
            Assert.True(EthernetView.TryCreate(frame, out EthernetView eth));
            if (eth.EtherType != EtherType.Ipv4) continue;
            Assert.True(Ipv4View.TryCreate(eth.Payload, out Ipv4View ip));
            if (ip.IsFragment)
            {
                Assert.False(Checksum.VerifyTransport(ip)); // cannot be checked piecewise
                var key = (ip.Source.Value, ip.Destination.Value, ip.Identification);
                if (!fragments.TryGetValue(key, out SortedDictionary<int, byte[]>? parts)) fragments[key] = parts = [];
                parts[ip.FragmentOffset] = ip.Payload.ToArray();
                if (!ip.MoreFragments)
                {
                    // Last fragment seen (the fixtures carry them in order): concatenate and check the ICMP message.
                    byte[] whole = parts.Values.SelectMany(p => p).ToArray();
                    Assert.Equal(ip.FragmentOffset + ip.Payload.Length, whole.Length);
                    Assert.Equal(IpProtocol.Icmp, ip.Protocol);
                    Assert.True(IcmpView.TryCreate(whole, out IcmpView m));
                    Assert.True(m.IsChecksumValid, "reassembled ICMP");
                    reassembled++;
                }
                continue;
            }
            switch (ip.Protocol)
            {
                case IpProtocol.Tcp: tcp++; break;
                case IpProtocol.Udp: udp++; break;
                case IpProtocol.Icmp: icmp++; break;
                case IpProtocol.Igmp:
                    Assert.True(Checksum.IsValid(ip.Payload), "IGMP");
                    igmp++;
                    continue;
                default: Assert.Fail($"unexpected protocol {ip.Protocol}"); break;
            }
            Assert.True(Checksum.VerifyTransport(ip), $"protocol {ip.Protocol}");
            Assert.True(Checksum.TryComputeTransport(ip, out ushort c));
            Assert.Equal(BinaryPrimitives.ReadUInt16BigEndian(ip.Payload[Checksum.TransportChecksumOffset(ip.Protocol)..]), c);
        }
        return (tcp, udp, icmp, igmp, reassembled);
    }

    [Fact]
    public void Every_transport_checksum_on_the_pod_side_verifies()
    {
        // The pod veth had tx checksum offload off, so every checksum is complete.
        var counts = VerifyTransportChecksums(Read(PodSide).Select(r => r.Data));
        Assert.Equal((Tcp: 8, Udp: 1, Icmp: 7, Igmp: 2, Reassembled: 2), counts);
    }

    [Fact]
    public void Inner_frames_of_the_underlay_verify_too()
    {
        var counts = VerifyTransportChecksums(Read(Underlay).Select(r => Decapsulate(r.Data)));
        Assert.Equal((Tcp: 8, Udp: 1, Icmp: 7, Igmp: 2, Reassembled: 2), counts);
    }

    [Fact]
    public void Outer_vxlan_udp_checksums_are_checksum_partial()
    {
        // The kernel VXLAN device asked for a UDP checksum but left it to offload (CHECKSUM_PARTIAL): the field holds the
        // folded, uncomplemented pseudo-header sum, and the veth never completed it. tshark reports these checksums as bad;
        // a receiver on a veth trusts them. Assert exactly that, so a change in the capture setup is noticed.
        foreach (PcapRecord r in Read(Underlay))
        {
            Assert.True(EthernetView.TryCreate(r.Data, out EthernetView eth));
            Assert.True(Ipv4View.TryCreate(eth.Payload, out Ipv4View ip));
            Assert.True(UdpView.TryCreate(ip.Payload, out UdpView udp));
            Assert.Equal(ip.Payload.Length, udp.Length);
            ushort partial = Checksum.PseudoHeaderSum(ip.Source, ip.Destination, IpProtocol.Udp, udp.Length);
            Assert.Equal(partial, udp.Checksum);
            Assert.False(Checksum.VerifyTransport(ip));
            // Completing it the way a NIC would gives a checksum that verifies.
            Assert.True(Checksum.TryUpdateTransport(ip));
            Assert.True(Checksum.VerifyTransport(ip));
        }
    }

    [Fact]
    public void Decapsulated_frames_are_the_frames_the_pod_saw()
    {
        // All inner IPv4 and ARP frames, and everything node 2 (198.18.0.2) sent, reached pod 10.244.0.11 byte for byte.
        // Three frames node 1 sent are not on the pod side: IPv6 link-up chatter (DAD NS, MLD) from 42:a2:04:8a:8d:6f,
        // a node-1 device of its own that sends straight into the tunnel, so they never cross the pod's veth.
        var podFrames = new HashSet<string>(Read(PodSide).Select(r => Convert.ToHexString(r.Data)));
        var missing = new List<(Ipv4Address OuterSource, MacAddress InnerSource, ushort EtherType)>();
        int found = 0;
        foreach (PcapRecord r in Read(Underlay))
        {
            byte[] inner = Decapsulate(r.Data);
            if (podFrames.Contains(Convert.ToHexString(inner)))
            {
                found++;
                continue;
            }
            Assert.True(EthernetView.TryCreate(r.Data, out EthernetView eth));
            Assert.True(Ipv4View.TryCreate(eth.Payload, out Ipv4View ip));
            Assert.True(EthernetView.TryCreate(inner, out EthernetView ie));
            missing.Add((ip.Source, ie.Source, ie.EtherType));
        }
        Assert.Equal(50, found);
        var node1 = Ipv4Address.Parse("198.18.0.1");
        var node1Device = MacAddress.Parse("42:a2:04:8a:8d:6f");
        Assert.Equal([(node1, node1Device, EtherType.Ipv6), (node1, node1Device, EtherType.Ipv6), (node1, node1Device, EtherType.Ipv6)], missing);
    }
}

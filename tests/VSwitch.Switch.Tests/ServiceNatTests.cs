using System.Buffers.Binary;
using VSwitch.Encap;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L3;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.L3Frames;

namespace VSwitch.Switch.Tests;

/// <summary>Conntrack and Service NAT through the whole pipeline over memory ports.</summary>
public sealed class ServiceNatTests
{
    internal static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");
    internal static readonly MacAddress HostMac = MacAddress.Parse("0e:01:0a:f4:01:01");
    internal static readonly MacAddress PeerVtep = MacAddress.Parse("0e:00:0a:f4:02:01");
    internal static readonly MacAddress PodA = MacAddress.Parse("02:00:0a:f4:01:02");
    internal static readonly MacAddress PodB = MacAddress.Parse("02:00:0a:f4:01:03");
    internal static readonly MacAddress PodC = MacAddress.Parse("02:00:0a:f4:01:04");
    internal const string Vip = "10.96.0.10";
    private readonly ManualClock _clock = new();

    private sealed record Node(Datapath Dp, MemoryPort A, MemoryPort B, MemoryPort C, MemoryPort Host, MemoryPort Tunnel)
    {
        /// <summary>The uplink, when built with one.</summary>
        public MemoryPort Up { get; init; } = new("unused");

        public NatEngine Nat => Dp.Nat!;
        public ConntrackStage Stage => (ConntrackStage)Dp.Graph.Stages.First(s => s.Name == "conntrack");
        public LoadBalanceStage Lb => (LoadBalanceStage)Dp.Graph.Stages.First(s => s.Name == "lb");

        public void Apply(params object[] objects) => Nat.Apply(Nat.Compile(new ClusterObjects
        {
            Services = objects.OfType<ServiceObject>().ToList(),
            EndpointSlices = objects.OfType<EndpointSliceObject>().ToList(),
        }));

        public void ClearTx()
        {
            foreach (MemoryPort p in new[] { A, B, C, Host, Tunnel, Up }) p.ClearTransmitted();
        }
    }

    private Node Build(Func<NatOptions, NatOptions>? tweak = null, bool uplink = false)
    {
        // Pod and cluster CIDRs, gateway and router MAC come from the router's options.
        var nat = new NatOptions
        {
            ServiceCidr = new Ipv4Prefix(Ip("10.96.0.0"), 12),
            NodeAddress = Ip("198.18.0.1"),
            NodeName = "node-1",
            MaxConnections = 4096,
        };
        var dp = new Datapath(new DatapathOptions
        {
            Slots = 1024,
            Router = new RouterOptions { PodCidr = new Ipv4Prefix(Ip("10.244.1.0"), 24), RouterMac = RouterMac },
            Overlay = new OverlayOptions { LocalAddress = Ip("198.18.0.1") },
            Nat = tweak is null ? nat : tweak(nat),
        }, _clock);
        var a = new MemoryPort("pod-a");
        var b = new MemoryPort("pod-b");
        var c = new MemoryPort("pod-c");
        var host = new MemoryPort("host");
        var tunnel = new MemoryPort("vxlan");
        ushort ida = dp.AddPort(a), idb = dp.AddPort(b), idc = dp.AddPort(c);
        ushort idh = dp.AddPort(host, PortRole.Host);
        dp.AddPort(tunnel, PortRole.Tunnel);
        dp.AddPeer("node-2", Ip("198.18.0.2"), new Ipv4Prefix(Ip("10.244.2.0"), 24), PeerVtep);
        var up = new MemoryPort("uplink");
        if (uplink)
        {
            dp.Router!.UplinkMtu = 1500;
            dp.AddPort(up, PortRole.Uplink);
        }
        dp.Router!.HostMac = HostMac;
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.1"), HostMac, idh);
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.2"), PodA, ida);
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.3"), PodB, idb);
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.4"), PodC, idc);
        // Let the bridge learn every pod's port.
        a.Inject(ArpRequest(PodA, "10.244.1.2", "10.244.1.1"));
        b.Inject(ArpRequest(PodB, "10.244.1.3", "10.244.1.1"));
        c.Inject(ArpRequest(PodC, "10.244.1.4", "10.244.1.1"));
        host.Inject(ArpRequest(HostMac, "10.244.1.1", "10.244.1.2"));
        dp.RunOnce();
        var n = new Node(dp, a, b, c, host, tunnel) { Up = up };
        n.ClearTx();
        return n;
    }

    internal static ServiceObject Svc(string name, string ip, ushort port, ushort target = 0, byte proto = IpProtocol.Tcp,
        ServiceType type = ServiceType.ClusterIP, ushort nodePort = 0, bool affinity = false, int affinitySeconds = 10800,
        TrafficPolicy etp = TrafficPolicy.Cluster, TrafficPolicy itp = TrafficPolicy.Cluster, string[]? externalIPs = null) => new()
    {
        Namespace = "default",
        Name = name,
        Type = type,
        ClusterIPs = [Ip(ip)],
        Ports = [new ServicePortSpec { Name = "p", Protocol = proto, Port = port, TargetPort = target == 0 ? port : target, NodePort = nodePort }],
        ClientIPAffinity = affinity,
        AffinityTimeoutSeconds = affinitySeconds,
        ExternalTrafficPolicy = etp,
        InternalTrafficPolicy = itp,
        ExternalIPs = (externalIPs ?? []).Select(Ip).ToList(),
    };

    internal static EndpointSliceObject Slice(string svc, ushort port, byte proto = IpProtocol.Tcp, params (string Ip, string Node, bool Ready)[] eps) => new()
    {
        Namespace = "default",
        Name = svc + "-abc",
        ServiceName = svc,
        Ports = [new EndpointPortSpec { Name = "p", Protocol = proto, Port = port }],
        Endpoints = eps.Select(e => new EndpointSpec { Addresses = [Ip(e.Ip)], NodeName = e.Node, Ready = e.Ready, Serving = e.Ready }).ToList(),
    };

    private static Ipv4View Checked(byte[] frame)
    {
        Assert.True(Ipv4View.TryCreate(frame.AsSpan(14), out Ipv4View ip));
        Assert.True(ip.IsChecksumValid, "IPv4 header checksum");
        Assert.True(Checksum.VerifyTransport(ip), "transport checksum");
        return ip;
    }

    private static (string Src, ushort Sport, string Dst, ushort Dport) Tuple(Ipv4View ip)
    {
        Span<byte> l4 = ip.Payload;
        return (ip.Source.ToString(), BinaryPrimitives.ReadUInt16BigEndian(l4), ip.Destination.ToString(), BinaryPrimitives.ReadUInt16BigEndian(l4[2..]));
    }

    private static long Drops(Datapath dp, string reason) =>
        dp.Graph.Drop.NonZero().Where(d => d.Stage is "conntrack" or "lb" && d.Reason == reason).Sum(d => d.Count);

    [Fact]
    public void ClusterIP_tcp_is_dnated_to_a_local_endpoint_and_the_bridged_reply_is_reversed()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Syn, seq: 1));
        n.Dp.RunOnce();
        byte[] syn = Assert.Single(n.B.Transmitted);
        Assert.Equal(("10.244.1.2", (ushort)40000, "10.244.1.3", (ushort)8080), Tuple(Checked(syn)));
        Assert.Equal(63, Checked(syn).Ttl);

        // The endpoint answers the client directly on the pod subnet (bridged, never routed): still un-NATed.
        n.B.Inject(Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 8080, 40000, TcpFlags.Syn | TcpFlags.Ack, seq: 500, ack: 2));
        n.Dp.RunOnce();
        byte[] synAck = Assert.Single(n.A.Transmitted);
        Assert.Equal((Vip, (ushort)80, "10.244.1.2", (ushort)40000), Tuple(Checked(synAck)));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Ack, seq: 2, ack: 501, payload: 100));
        n.Dp.RunOnce();
        Assert.Equal(2, n.B.Transmitted.Count);
        Assert.Equal(("10.244.1.2", (ushort)40000, "10.244.1.3", (ushort)8080), Tuple(Checked(n.B.Transmitted[1])));

        (int _, CtEntry e) = Assert.Single(n.Nat.Conntrack.Snapshot());
        Assert.Equal(CtState.Established, e.State);
        Assert.True(e.Status.HasFlag(CtStatus.DstNat | CtStatus.Assured));
        Assert.False(e.Status.HasFlag(CtStatus.SrcNat));
        Assert.Equal(24 * 3600.0, (e.Expires - _clock.GetTimestamp()) / (double)_clock.TimestampFrequency, 3);
    }

    [Fact]
    public void ClusterIP_udp_to_a_remote_endpoint_goes_through_the_tunnel_with_the_inner_destination_rewritten()
    {
        Node n = Build();
        n.Apply(Svc("dns", Vip, 53, 5353, IpProtocol.Udp), Slice("dns", 5353, IpProtocol.Udp, ("10.244.2.7", "node-2", true)));
        n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", Vip, 33333, 53));
        n.Dp.RunOnce();
        byte[] outer = Assert.Single(n.Tunnel.Transmitted);
        byte[] inner = outer.AsSpan(OverlayPeer.OuterSize).ToArray();
        Assert.Equal(("10.244.1.2", (ushort)33333, "10.244.2.7", (ushort)5353), Tuple(Checked(inner)));

        // The reply comes back decapsulated from node 2 and leaves with the Service address.
        byte[] reply = Udp(RouterMac, PeerVtep, "10.244.2.7", "10.244.1.2", 5353, 33333);
        n.Tunnel.Inject(VxlanFrame(reply), Ip("198.18.0.2").Value);
        n.Dp.RunOnce();
        Assert.Equal((Vip, (ushort)53, "10.244.1.2", (ushort)33333), Tuple(Checked(Assert.Single(n.A.Transmitted))));
        (int _, CtEntry e) = Assert.Single(n.Nat.Conntrack.Snapshot());
        Assert.Equal(CtState.Replied, e.State);
    }

    /// <summary>What the UDP tunnel port delivers: the VXLAN header and the inner frame (VNI 1).</summary>
    private static byte[] VxlanFrame(byte[] inner)
    {
        byte[] vx = new byte[VxlanView.Size + inner.Length];
        new VxlanRepr(1).Emit(vx);
        inner.CopyTo(vx, VxlanView.Size);
        return vx;
    }

    [Fact]
    public void Service_without_endpoints_refuses_tcp_with_rst_and_udp_with_port_unreachable()
    {
        Node n = Build();
        n.Apply(Svc("empty", Vip, 80), Svc("empty-udp", "10.96.0.11", 53, proto: IpProtocol.Udp));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40001, 80, TcpFlags.Syn, seq: 77));
        n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", "10.96.0.11", 40002, 53));
        n.Dp.RunOnce();
        Assert.Equal(2, n.A.Transmitted.Count);
        Ipv4View rst = Checked(n.A.Transmitted[0]);
        Assert.Equal((Vip, (ushort)80, "10.244.1.2", (ushort)40001), Tuple(rst));
        Assert.True(TcpView.TryCreate(rst.Payload, out TcpView t));
        Assert.Equal(TcpFlags.Rst | TcpFlags.Ack, t.Flags);
        Assert.Equal(78u, t.AcknowledgmentNumber);
        Assert.Equal(PodA, MacAddress.Read(n.A.Transmitted[0]));
        Ipv4View icmp = Checked(n.A.Transmitted[1]);
        Assert.Equal("10.96.0.11", icmp.Source.ToString());
        Assert.Equal(IcmpType.DestinationUnreachable, icmp.Payload[0]);
        Assert.Equal(IcmpUnreachableCode.Port, icmp.Payload[1]);
        Assert.Equal(2, n.Lb.Counters[(int)LoadBalanceStage.Counter.Rejected]);
        Assert.Empty(n.Nat.Conntrack.Snapshot());
        // An address in the Service CIDR no Service owns is refused too, not routed to the host (it would loop).
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "10.96.5.5", 40003, 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        Assert.Equal(3, n.A.Transmitted.Count);
        Assert.Empty(n.Host.Transmitted);
    }

    [Fact]
    public void Hairpin_masquerades_to_the_gateway_and_the_reply_returns_through_the_switch()
    {
        Node n = Build();
        n.Apply(Svc("self", Vip, 80, 8080), Slice("self", 8080, IpProtocol.Tcp, ("10.244.1.2", "node-1", true)));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        var (src, sport, dst, dport) = Tuple(Checked(Assert.Single(n.A.Transmitted)));
        Assert.Equal(("10.244.1.1", "10.244.1.2", (ushort)8080), (src, dst, dport));
        n.A.ClearTransmitted();
        // The pod answers the gateway (its ARP for 10.244.1.1 resolves to the router MAC).
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "10.244.1.1", 8080, sport, TcpFlags.Syn | TcpFlags.Ack, ack: 1001));
        n.Dp.RunOnce();
        Assert.Equal((Vip, (ushort)80, "10.244.1.2", (ushort)40000), Tuple(Checked(Assert.Single(n.A.Transmitted))));
        Assert.Empty(n.Host.Transmitted);
        Assert.Equal(1, n.Lb.Counters[(int)LoadBalanceStage.Counter.GatewaySnat]);
    }

    [Fact]
    public void New_connections_spread_uniformly_over_three_endpoints()
    {
        Node n = Build(o => o with { MaxConnections = 8192 });
        n.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp,
            ("10.244.1.3", "node-1", true), ("10.244.1.4", "node-1", true), ("10.244.2.9", "node-2", true)));
        const int flows = 3000;
        for (int i = 0; i < flows; i++)
        {
            n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, (ushort)(20000 + i), 80, TcpFlags.Syn));
            if (i % 32 == 31) n.Dp.RunOnce();
        }
        n.Dp.RunOnce();
        double[] counts = [n.B.Transmitted.Count, n.C.Transmitted.Count, n.Tunnel.Transmitted.Count];
        Assert.Equal(flows, counts.Sum());
        double expected = flows / 3.0;
        double chi2 = counts.Sum(c => (c - expected) * (c - expected) / expected);
        // 2 degrees of freedom: p = 0.001 at 13.8.
        Assert.True(chi2 < 13.8, $"chi-square {chi2:F1} for {string.Join(",", counts)}");
    }

    [Fact]
    public void ClientIP_affinity_sticks_until_its_timeout()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080, affinity: true, affinitySeconds: 60), Slice("web", 8080, IpProtocol.Tcp,
            ("10.244.1.3", "node-1", true), ("10.244.1.4", "node-1", true), ("10.244.2.9", "node-2", true)));
        for (int i = 0; i < 60; i++) n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, (ushort)(20000 + i), 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        int[] counts = [n.B.Transmitted.Count, n.C.Transmitted.Count, n.Tunnel.Transmitted.Count];
        Assert.Equal(60, counts.Max());
        Assert.Equal(59, n.Lb.Counters[(int)LoadBalanceStage.Counter.AffinityHits]);
        ServiceTable t = n.Nat.Services;
        ulong key = t.Frontends[0].AffinityKey;
        Assert.True(n.Nat.Affinity.TryGet(key, Ip("10.244.1.2").Value, _clock.GetTimestamp(), 60 * _clock.TimestampFrequency, out _, out _));
        _clock.Advance(TimeSpan.FromSeconds(61));
        Assert.False(n.Nat.Affinity.TryGet(key, Ip("10.244.1.2").Value, _clock.GetTimestamp(), 60 * _clock.TimestampFrequency, out _, out _));
        // After expiry the next connection is chosen at random again (and sticks again).
        n.ClearTx();
        for (int i = 0; i < 30; i++) n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, (ushort)(30000 + i), 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        Assert.Equal(59 + 29, n.Lb.Counters[(int)LoadBalanceStage.Counter.AffinityHits]);
    }

    [Fact]
    public void Removing_an_endpoint_evicts_its_udp_flows_and_the_next_packets_go_to_a_remaining_one()
    {
        Node n = Build();
        n.Apply(Svc("dns", Vip, 53, 5353, IpProtocol.Udp), Slice("dns", 5353, IpProtocol.Udp, ("10.244.1.3", "node-1", true)));
        n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", Vip, 33333, 53));
        n.Dp.RunOnce();
        Assert.Single(n.B.Transmitted);
        // A second endpoint appears: the existing flow is untouched.
        n.Apply(Svc("dns", Vip, 53, 5353, IpProtocol.Udp), Slice("dns", 5353, IpProtocol.Udp, ("10.244.1.3", "node-1", true), ("10.244.1.4", "node-1", true)));
        Assert.Equal(0, n.Nat.Evicted);
        for (int i = 0; i < 5; i++) n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", Vip, 33333, 53));
        n.Dp.RunOnce();
        Assert.Equal(6, n.B.Transmitted.Count);
        // The first endpoint goes away: its flow is evicted and the stream continues to the other one.
        n.Apply(Svc("dns", Vip, 53, 5353, IpProtocol.Udp), Slice("dns", 5353, IpProtocol.Udp, ("10.244.1.4", "node-1", true)));
        Assert.Equal(1, n.Nat.Evicted);
        for (int i = 0; i < 5; i++) n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", Vip, 33333, 53));
        n.Dp.RunOnce();
        Assert.Equal(6, n.B.Transmitted.Count);
        Assert.Equal(5, n.C.Transmitted.Count);
        Assert.Equal("10.244.1.4", Checked(n.C.Transmitted[4]).Destination.ToString());
    }

    [Theory]
    [InlineData(IpProtocol.Tcp)]
    [InlineData(IpProtocol.Udp)]
    public void A_terminating_endpoint_keeps_its_tcp_connections_and_loses_its_udp_flows(byte proto)
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080, proto), Slice("web", 8080, proto, ("10.244.1.3", "node-1", true)));
        byte[] Packet(ushort port) => proto == IpProtocol.Tcp
            ? Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Syn)
            : Udp(RouterMac, PodA, "10.244.1.2", Vip, port, 80);
        n.A.Inject(Packet(40000));
        n.Dp.RunOnce();
        Assert.Single(n.B.Transmitted);
        // The pod is shutting down: still listed, not ready, serving, terminating; a new ready endpoint appears.
        EndpointSliceObject slice = Slice("web", 8080, proto, ("10.244.1.4", "node-1", true));
        slice = slice with
        {
            Endpoints = [.. slice.Endpoints, new EndpointSpec { Addresses = [Ip("10.244.1.3")], Ready = false, Serving = true, Terminating = true, NodeName = "node-1" }],
        };
        n.Apply(Svc("web", Vip, 80, 8080, proto), slice);
        if (proto == IpProtocol.Tcp)
        {
            Assert.Equal(0, n.Nat.Evicted);
            n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Ack, payload: 10));
            n.Dp.RunOnce();
            Assert.Equal(2, n.B.Transmitted.Count);
        }
        else
        {
            Assert.Equal(1, n.Nat.Evicted);
            n.A.Inject(Packet(40000));
            n.Dp.RunOnce();
            Assert.Single(n.B.Transmitted);
            Assert.Single(n.C.Transmitted);
        }
        // New connections go to the ready endpoint only.
        n.A.Inject(Packet(40001));
        n.Dp.RunOnce();
        Assert.Equal("10.244.1.4", Checked(n.C.Transmitted[^1]).Destination.ToString());
    }

    [Fact]
    public void Egress_to_outside_the_cluster_is_masqueraded_to_the_node_address_with_distinct_ports()
    {
        Node n = Build();
        // Every pod uses the same source port to the same server: the masquerade ports must all differ.
        var seen = new HashSet<ushort>();
        foreach ((MemoryPort port, MacAddress mac, string ip) in new[] { (n.A, PodA, "10.244.1.2"), (n.B, PodB, "10.244.1.3"), (n.C, PodC, "10.244.1.4") })
        {
            port.Inject(Udp(RouterMac, mac, ip, "198.18.0.200", 5000, 53));
            n.Dp.RunOnce();
            byte[] f = Assert.Single(n.Host.Transmitted);
            n.Host.ClearTransmitted();
            var (src, sport, dst, _) = Tuple(Checked(f));
            Assert.Equal(("198.18.0.1", "198.18.0.200"), (src, dst));
            Assert.InRange(sport, (ushort)61440, (ushort)65535);
            Assert.True(seen.Add(sport));
        }
        // The server's reply to the second pod's port is un-NATed to that pod.
        ushort p = seen.ElementAt(1);
        n.Host.Inject(Udp(RouterMac, HostMac, "198.18.0.200", "198.18.0.1", 53, p));
        n.Dp.RunOnce();
        Assert.Equal(("198.18.0.200", (ushort)53, "10.244.1.3", (ushort)5000), Tuple(Checked(Assert.Single(n.B.Transmitted))));
        // Pod-to-pod and node-to-pod are never translated.
        n.ClearTx();
        n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", "10.244.2.5", 5000, 53));
        n.Host.Inject(Udp(PodB, HostMac, "10.244.1.1", "10.244.1.3", 5001, 53));
        n.Dp.RunOnce();
        Assert.Equal("10.244.1.2", Checked(n.Tunnel.Transmitted[0].AsSpan(OverlayPeer.OuterSize).ToArray()).Source.ToString());
        Assert.Equal("10.244.1.1", Checked(Assert.Single(n.B.Transmitted)).Source.ToString());
    }

    [Fact]
    public void With_an_uplink_egress_leaves_through_it_masqueraded_and_the_node_address_stays_the_hosts()
    {
        Node n = Build(o => o with { Masquerade = true }, uplink: true);
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "198.18.0.200", 40000, 443, TcpFlags.Syn));
        n.Dp.RunOnce();
        Assert.Empty(n.Host.Transmitted);
        byte[] f = Assert.Single(n.Up.Transmitted);
        var (src, sport, dst, dport) = Tuple(Checked(f));
        Assert.Equal(("198.18.0.1", "198.18.0.200", (ushort)443), (src, dst, dport));
        Assert.InRange(sport, (ushort)61440, (ushort)65535);
        Assert.Equal(63, Checked(f).Ttl);
        // The reply arrives on the uplink (steered there by nftables, destination MAC already the router's).
        n.Up.Inject(Tcp(RouterMac, MacAddress.Parse("02:00:c6:12:00:c8"), "198.18.0.200", "198.18.0.1", 443, sport, TcpFlags.Syn | TcpFlags.Ack));
        n.Dp.RunOnce();
        Assert.Equal(("198.18.0.200", (ushort)443, "10.244.1.2", (ushort)40000), Tuple(Checked(Assert.Single(n.A.Transmitted))));
        // The node's own address is the host's, untranslated; broadcasts never go out the uplink.
        n.ClearTx();
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "198.18.0.1", 40001, 22, TcpFlags.Syn));
        n.A.Inject(Udp(MacAddress.Broadcast, PodA, "10.244.1.2", "10.244.1.255", 68, 67));
        n.Dp.RunOnce();
        Assert.Empty(n.Up.Transmitted);
        Assert.Contains(n.Host.Transmitted, x => Tuple(Checked(x)) == ("10.244.1.2", 40001, "198.18.0.1", 22));
        // A DF packet larger than the uplink's MTU gets fragmentation needed with that MTU.
        n.ClearTx();
        n.Dp.Router!.UplinkMtu = 1000;
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "198.18.0.200", 40000, 443, TcpFlags.Ack, payload: 1200));
        n.Dp.RunOnce();
        Assert.Empty(n.Up.Transmitted);
        Ipv4View err = Checked(Assert.Single(n.A.Transmitted));
        Assert.Equal((IpProtocol.Icmp, (byte)3, (byte)4, 1000), (err.Protocol, err.Payload[0], err.Payload[1], (int)BinaryPrimitives.ReadUInt16BigEndian(err.Payload[6..])));
    }

    [Fact]
    public void Node_port_from_an_external_client_on_the_uplink_is_answered_through_the_uplink()
    {
        Node n = Build(o => o with { Masquerade = true }, uplink: true);
        n.Apply(Svc("web", Vip, 80, 8080, type: ServiceType.NodePort, nodePort: 30080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        MacAddress client = MacAddress.Parse("02:00:c6:12:00:64");
        n.Up.Inject(Tcp(RouterMac, client, "198.18.0.100", "198.18.0.1", 45000, 30080, TcpFlags.Syn));
        n.Dp.RunOnce();
        // externalTrafficPolicy Cluster: the client is SNATed to the gateway.
        var (src, sport, dst, dport) = Tuple(Checked(Assert.Single(n.B.Transmitted)));
        Assert.Equal(("10.244.1.1", "10.244.1.3", (ushort)8080), (src, dst, dport));
        n.B.Inject(Tcp(RouterMac, PodB, "10.244.1.3", "10.244.1.1", 8080, sport, TcpFlags.Syn | TcpFlags.Ack));
        n.Dp.RunOnce();
        Assert.Equal(("198.18.0.1", (ushort)30080, "198.18.0.100", (ushort)45000), Tuple(Checked(Assert.Single(n.Up.Transmitted))));
        Assert.Empty(n.Host.Transmitted);
    }

    [Fact]
    public void Icmp_port_unreachable_from_the_endpoint_is_related_and_translated_back_to_the_service()
    {
        Node n = Build();
        n.Apply(Svc("dns", Vip, 53, 5353, IpProtocol.Udp), Slice("dns", 5353, IpProtocol.Udp, ("10.244.1.3", "node-1", true)));
        n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", Vip, 33333, 53));
        n.Dp.RunOnce();
        byte[] dnated = Assert.Single(n.B.Transmitted);
        // B's kernel answers port unreachable quoting what it received.
        byte[] err = IcmpError(PodA, PodB, "10.244.1.3", "10.244.1.2", dnated.AsSpan(14, 20 + 8 + 18).ToArray());
        n.B.Inject(err);
        n.Dp.RunOnce();
        Ipv4View ip = Checked(Assert.Single(n.A.Transmitted));
        Assert.Equal((Vip, "10.244.1.2"), (ip.Source.ToString(), ip.Destination.ToString()));
        Assert.True(Checksum.IsValid(ip.Payload));
        Assert.True(Ipv4View.TryCreate(ip.Payload[8..], out Ipv4View quoted));
        Assert.True(quoted.IsChecksumValid);
        Assert.Equal(("10.244.1.2", (ushort)33333, Vip, (ushort)53), Tuple(quoted));
        Assert.True(Checksum.VerifyTransport(quoted), "quoted UDP checksum restored");
        Assert.Equal(1, n.Stage.Counters[(int)ConntrackStage.Counter.Related]);
        // An error quoting nothing we track is INVALID.
        n.B.Inject(IcmpError(PodA, PodB, "10.244.1.3", "10.244.1.2", Udp(PodB, PodA, "10.244.1.2", "10.244.1.3", 1, 2).AsSpan(14, 46).ToArray()));
        n.Dp.RunOnce();
        Assert.Equal(1, Drops(n.Dp, "invalid-icmp-error"));
    }

    private static byte[] IcmpError(MacAddress dst, MacAddress src, string from, string to, byte[] quote)
    {
        byte[] f = new byte[Math.Max(60, 14 + 20 + 8 + quote.Length)];
        int o = new EthernetRepr(dst, src, EtherType.Ipv4).Emit(f);
        new Ipv4Repr(Ip(from), Ip(to), IpProtocol.Icmp, 8 + quote.Length).Emit(f.AsSpan(o));
        Span<byte> icmp = f.AsSpan(o + 20, 8 + quote.Length);
        icmp[0] = IcmpType.DestinationUnreachable;
        icmp[1] = IcmpUnreachableCode.Port;
        quote.CopyTo(icmp[8..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum.Compute(icmp));
        return f;
    }

    [Fact]
    public void Frag_needed_for_a_dnated_packet_quotes_the_service_address()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.2.9", "node-2", true)));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        n.ClearTx();
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Ack, payload: 1460));
        n.Dp.RunOnce();
        Ipv4View ip = Checked(Assert.Single(n.A.Transmitted));
        Assert.Equal(4, ip.Payload[1]);
        // The quote is cut short of the datagram's total length: read it by hand.
        Span<byte> q = ip.Payload[8..];
        Assert.True(Checksum.IsValid(q[..20]), "quoted header checksum");
        Assert.Equal("10.244.1.2", Ipv4Address.Read(q[12..]).ToString());
        Assert.Equal(Vip, Ipv4Address.Read(q[16..]).ToString());
        Assert.Equal((40000, 80), (BinaryPrimitives.ReadUInt16BigEndian(q[20..]), BinaryPrimitives.ReadUInt16BigEndian(q[22..])));
    }

    [Fact]
    public void Invalid_tcp_is_dropped_and_counted()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Ack, payload: 10));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "10.244.1.3", 40001, 80, TcpFlags.Syn | TcpFlags.Fin));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "10.244.1.3", 40002, 80, TcpFlags.None));
        n.Dp.RunOnce();
        Assert.Empty(n.B.Transmitted);
        Assert.Equal(1, Drops(n.Dp, "invalid-no-syn"));
        Assert.Equal(2, Drops(n.Dp, "invalid-tcp-flags"));
        // Mid-stream traffic between pods is picked up (loose), not dropped.
        n.A.Inject(Tcp(PodB, PodA, "10.244.1.2", "10.244.1.3", 40003, 80, TcpFlags.Ack, payload: 10));
        n.Dp.RunOnce();
        Assert.Single(n.B.Transmitted);
        Assert.Equal(1, n.Lb.Counters[(int)LoadBalanceStage.Counter.Loose]);
    }

    [Fact]
    public void Internal_traffic_policy_local_uses_local_endpoints_and_drops_without_one()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080, itp: TrafficPolicy.Local), Slice("web", 8080, IpProtocol.Tcp,
            ("10.244.1.3", "node-1", true), ("10.244.2.9", "node-2", true)));
        for (int i = 0; i < 20; i++) n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, (ushort)(20000 + i), 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        Assert.Equal(20, n.B.Transmitted.Count);
        Assert.Empty(n.Tunnel.Transmitted);
        n.Apply(Svc("web", Vip, 80, 8080, itp: TrafficPolicy.Local), Slice("web", 8080, IpProtocol.Tcp, ("10.244.2.9", "node-2", true)));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, 30000, 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        Assert.Equal(1, Drops(n.Dp, "no-local-endpoint"));
    }

    [Fact]
    public void External_ip_from_outside_is_snated_to_the_gateway_with_policy_cluster_and_keeps_the_client_with_policy_local()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080, externalIPs: ["198.18.1.10"]), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        n.Host.Inject(Tcp(RouterMac, HostMac, "198.18.0.100", "198.18.1.10", 45000, 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        var (src, _, dst, dport) = Tuple(Checked(Assert.Single(n.B.Transmitted)));
        Assert.Equal(("10.244.1.1", "10.244.1.3", (ushort)8080), (src, dst, dport));

        n.Apply(Svc("web", Vip, 80, 8080, etp: TrafficPolicy.Local, externalIPs: ["198.18.1.10"]), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true), ("10.244.2.9", "node-2", true)));
        n.ClearTx();
        for (int i = 0; i < 10; i++) n.Host.Inject(Tcp(RouterMac, HostMac, "198.18.0.100", "198.18.1.10", (ushort)(46000 + i), 80, TcpFlags.Syn));
        n.Dp.RunOnce();
        Assert.Equal(10, n.B.Transmitted.Count);
        Assert.All(n.B.Transmitted, f => Assert.Equal("198.18.0.100", Checked(f).Source.ToString()));
    }

    [Fact]
    public void Node_port_on_the_node_address_reaches_the_service()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080, type: ServiceType.NodePort, nodePort: 30080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        n.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "198.18.0.1", 41000, 30080, TcpFlags.Syn));
        n.Dp.RunOnce();
        Assert.Equal(("10.244.1.2", (ushort)41000, "10.244.1.3", (ushort)8080), Tuple(Checked(Assert.Single(n.B.Transmitted))));
    }

    [Fact]
    public void Table_full_refuses_new_connections_and_counts_them()
    {
        Node n = Build(o => o with { MaxConnections = 16 });
        for (int i = 0; i < 20; i++) n.A.Inject(Udp(PodB, PodA, "10.244.1.2", "10.244.1.3", (ushort)(1000 + i), 53));
        n.Dp.RunOnce();
        Assert.Equal(16, n.B.Transmitted.Count);
        Assert.Equal(4, Drops(n.Dp, "table-full"));
        _clock.Advance(TimeSpan.FromSeconds(31));
        n.Dp.Housekeeping();
        Assert.Equal(0, n.Nat.Conntrack.Count);
        Assert.Equal(16, n.Nat.Expired);
    }

    [Fact]
    public void Steady_state_service_nat_allocates_nothing()
    {
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        n.A.RecordTx = n.B.RecordTx = false;
        byte[] syn = Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Syn);
        byte[] synAck = Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 8080, 40000, TcpFlags.Syn | TcpFlags.Ack);
        byte[] data = Tcp(RouterMac, PodA, "10.244.1.2", Vip, 40000, 80, TcpFlags.Ack, payload: 200);
        n.A.Inject(syn);
        n.Dp.RunOnce();
        n.B.Inject(synAck);
        n.Dp.RunOnce();
        n.A.SetReplay([data]);
        for (int i = 0; i < 50; i++) n.Dp.RunOnce();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 500; i++) n.Dp.RunOnce();
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, after - before);
        Assert.True(n.Stage.Counters[(int)ConntrackStage.Counter.Hits] > 500);
    }

    [Fact]
    public void Steady_state_service_nat_through_the_overlay_allocates_nothing()
    {
        // The whole path of ServicePipelineBenchmarks: conntrack hit + DNAT to a remote endpoint, route, VXLAN encap.
        Node n = Build();
        n.Apply(Svc("dns", Vip, 53, 5353, IpProtocol.Udp), Slice("dns", 5353, IpProtocol.Udp, ("10.244.2.3", "node-2", true), ("10.244.2.4", "node-2", true)));
        n.Tunnel.RecordTx = false;
        n.A.SetReplay([.. Enumerable.Range(0, 64).Select(i => Udp(RouterMac, PodA, "10.244.1.2", Vip, (ushort)(40000 + i), 53))]);
        for (int i = 0; i < 50; i++) n.Dp.RunOnce();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 500; i++) n.Dp.RunOnce();
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, after - before);
        Assert.True(n.Tunnel.Counters[(int)PortCounter.TxPackets] >= 550 * 64, "every datagram left through the tunnel");
        Assert.Equal(64, n.Lb.Counters[(int)LoadBalanceStage.Counter.New]);
    }

    [Fact]
    public void Uplink_steering_rules_and_set_updates_pass_nfts_own_check()
    {
        // nft -c parses and validates against the kernel without changing anything: the oracle for our rule text.
        string nft = new[] { "/usr/sbin/nft", "/sbin/nft" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("nft is not installed (apt-get install nftables; ./run.sh test installs it)");
        Node n = Build();
        n.Apply(Svc("web", Vip, 80, 8080, type: ServiceType.NodePort, nodePort: 30080, externalIPs: ["198.18.1.10"]),
            Svc("dns", "10.96.0.11", 53, 5353, proto: IpProtocol.Udp, type: ServiceType.NodePort, nodePort: 30053));
        string sets = Switch.UplinkSteering.SetCommands(n.Nat.Services.Frontends, out int nodePorts, out int external);
        Assert.Equal((2, 1), (nodePorts, external));
        Assert.Contains("nodeports_tcp { 30080 }", sets, StringComparison.Ordinal);
        Assert.Contains("external { 198.18.1.10 . tcp . 80 }", sets, StringComparison.Ordinal);
        string rules = Switch.UplinkSteering.Ruleset("lo", "lo", Ip("198.18.0.1"), 61440, 65535) + sets;
        var psi = new System.Diagnostics.ProcessStartInfo(nft, "-c -f -") { RedirectStandardInput = true, RedirectStandardError = true, RedirectStandardOutput = true };
        using System.Diagnostics.Process p = System.Diagnostics.Process.Start(psi)!;
        p.StandardInput.Write(rules);
        p.StandardInput.Close();
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(20_000), "nft -c did not finish");
        Assert.True(p.ExitCode == 0, $"nft -c rejected the rules: {err}\n{rules}");
    }
}

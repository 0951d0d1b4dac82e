using System.Buffers.Binary;
using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L3;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.Frames;
using static VSwitch.Switch.Tests.L3Frames;

namespace VSwitch.Switch.Tests;

public sealed class RoutingTests
{
    private static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");
    private static readonly MacAddress HostMac = MacAddress.Parse("0e:01:0a:f4:01:01");
    private static readonly MacAddress PeerVtep = MacAddress.Parse("0e:00:0a:f4:02:01");
    private static readonly MacAddress PodA = MacAddress.Parse("02:00:0a:f4:01:02");
    private static readonly MacAddress PodB = MacAddress.Parse("02:00:0a:f4:01:03");
    private static readonly uint Node2 = Ipv4Address.Parse("198.18.0.2").Value;
    private readonly ManualClock _clock = new();

    private sealed record Node(Datapath Dp, MemoryPort A, MemoryPort B, MemoryPort Host, MemoryPort Tunnel);

    private Node Build(bool recordTx = true)
    {
        var dp = new Datapath(new DatapathOptions
        {
            Slots = 1024,
            Router = new RouterOptions
            {
                PodCidr = new Ipv4Prefix(Ip("10.244.1.0"), 24),
                RouterMac = RouterMac,
            },
            Overlay = new OverlayOptions { LocalAddress = Ip("198.18.0.1") },
        }, _clock);
        var a = new MemoryPort("pod-a", recordTx);
        var b = new MemoryPort("pod-b", recordTx);
        var host = new MemoryPort("host", recordTx);
        var tunnel = new MemoryPort("vxlan", recordTx);
        ushort ida = dp.AddPort(a);
        ushort idb = dp.AddPort(b);
        ushort idh = dp.AddPort(host, PortRole.Host);
        dp.AddPort(tunnel, PortRole.Tunnel);
        dp.AddPeer("node-2", new Ipv4Address(Node2), new Ipv4Prefix(Ip("10.244.2.0"), 24), PeerVtep);
        dp.Router!.HostMac = HostMac;
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.1"), HostMac, idh);
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.2"), PodA, ida);
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.3"), PodB, idb);
        return new Node(dp, a, b, host, tunnel);
    }

    private static long Drops(Datapath dp, string stage, string reason) =>
        dp.Graph.Drop.NonZero().Where(d => d.Stage == stage && d.Reason == reason).Sum(d => d.Count);

    private static Ipv4View IpOf(byte[] frame, int offset = 14)
    {
        Assert.True(Ipv4View.TryCreate(frame.AsSpan(offset), out Ipv4View ip));
        Assert.True(ip.IsChecksumValid, "IPv4 header checksum");
        return ip;
    }

    [Fact]
    public void Pod_arp_for_the_gateway_is_answered_with_the_router_mac_and_the_pod_is_learned()
    {
        Node n = Build();
        n.A.Inject(ArpRequest(PodA, "10.244.1.2", "10.244.1.1"));
        n.A.Inject(ArpRequest(Mac(0x77), "10.244.1.77", "10.244.1.1"));
        n.Dp.RunOnce();
        Assert.Equal(2, n.A.Transmitted.Count);
        Assert.Empty(n.B.Transmitted);
        Assert.Empty(n.Host.Transmitted);
        Assert.True(ArpRepr.TryParse(n.A.Transmitted[0].AsSpan(14), out ArpRepr reply));
        Assert.Equal(new ArpRepr(ArpOperation.Reply, RouterMac, Ip("10.244.1.1"), PodA, Ip("10.244.1.2")), reply);
        Assert.Equal(PodA, MacAddress.Read(n.A.Transmitted[0]));
        Assert.Equal(RouterMac, MacAddress.Read(n.A.Transmitted[0].AsSpan(6)));
        ref Neighbor learned = ref n.Dp.Router!.Neighbors.Find(Ip("10.244.1.77").Value);
        Assert.Equal(Mac(0x77).Value, learned.Mac);
    }

    [Fact]
    public void Host_arp_for_any_cluster_address_is_proxied_but_pod_arp_for_another_pod_is_bridged()
    {
        Node n = Build();
        n.Host.Inject(ArpRequest(HostMac, "10.244.1.1", "10.244.2.9"));
        n.A.Inject(ArpRequest(PodA, "10.244.1.2", "10.244.1.3"));
        n.Dp.RunOnce();
        // The host port sees the pod's flooded request and the proxied answer to its own.
        byte[] answer = Assert.Single(n.Host.Transmitted, t => BinaryPrimitives.ReadUInt16BigEndian(t.AsSpan(20)) == ArpOperation.Reply);
        Assert.True(ArpRepr.TryParse(answer.AsSpan(14), out ArpRepr proxied));
        Assert.Equal(RouterMac, proxied.SenderHardwareAddress);
        Assert.Equal(Ip("10.244.2.9"), proxied.SenderProtocolAddress);
        // The pod's request for its neighbor floods like any broadcast (the neighbor answers itself).
        Assert.Equal(ArpOperation.Request, BinaryPrimitives.ReadUInt16BigEndian(Assert.Single(n.B.Transmitted).AsSpan(20)));
    }

    [Fact]
    public void Pod_to_remote_pod_is_routed_and_encapsulated_to_the_peer()
    {
        Node n = Build();
        byte[] f = Echo(RouterMac, PodA, "10.244.1.2", "10.244.2.5", ttl: 64);
        n.A.Inject(f);
        n.Dp.RunOnce();
        byte[] d = Assert.Single(n.Tunnel.Transmitted);
        Assert.Equal(Node2, Assert.Single(n.Tunnel.TransmittedPeers));
        Ipv4View outer = IpOf(d, 0);
        Assert.Equal(Ip("198.18.0.1"), outer.Source);
        Assert.Equal(new Ipv4Address(Node2), outer.Destination);
        Assert.Equal(d.Length, outer.TotalLength);
        Assert.True(UdpRepr.TryParse(d.AsSpan(20), out UdpRepr udp));
        Assert.Equal(4789, udp.DestinationPort);
        Assert.Equal(d.Length - 20, udp.Length);
        Assert.True(VxlanRepr.TryParse(d.AsSpan(28), out VxlanRepr vx));
        Assert.Equal(1u, vx.Vni);
        byte[] inner = d[36..];
        Assert.Equal(PeerVtep, MacAddress.Read(inner));
        Assert.Equal(RouterMac, MacAddress.Read(inner.AsSpan(6)));
        Ipv4View ip = IpOf(inner);
        Assert.Equal(63, ip.Ttl);
        Assert.Equal(f.AsSpan(14 + 20).ToArray(), inner.AsSpan(14 + 20).ToArray()); // payload untouched
    }

    [Fact]
    public void Frames_from_a_peer_to_the_router_reach_the_local_pod()
    {
        Node n = Build();
        byte[] f = Echo(RouterMac, PeerVtep, "10.244.2.5", "10.244.1.3", ttl: 63);
        byte[] d = new byte[8 + f.Length];
        new VxlanRepr(1).Emit(d);
        f.CopyTo(d, 8);
        n.Tunnel.Inject(d, Node2);
        n.Dp.RunOnce();
        byte[] got = Assert.Single(n.B.Transmitted);
        Assert.Equal(PodB, MacAddress.Read(got));
        Assert.Equal(RouterMac, MacAddress.Read(got.AsSpan(6)));
        Assert.Equal(62, IpOf(got).Ttl);
        Assert.Empty(n.A.Transmitted);
        Assert.Empty(n.Tunnel.Transmitted);
    }

    [Fact]
    public void Node_and_pods_reach_each_other_through_the_host_port()
    {
        Node n = Build();
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.1.1"));
        n.Host.Inject(Echo(RouterMac, HostMac, "10.244.1.1", "10.244.1.2"));
        n.Host.Inject(Echo(RouterMac, HostMac, "10.244.1.1", "10.244.2.7"));
        n.A.Inject(Udp(RouterMac, PodA, "10.244.1.2", "198.18.5.5", 1000, 53));
        n.Dp.RunOnce();
        Assert.Equal(2, n.Host.Transmitted.Count);
        Assert.Equal(HostMac, MacAddress.Read(n.Host.Transmitted[0]));
        Assert.Equal(64, IpOf(n.Host.Transmitted[0]).Ttl); // to the node's own address: no routing hop
        Assert.Equal(63, IpOf(n.Host.Transmitted[1]).Ttl); // default route: routed to the host
        Assert.Equal(64, IpOf(Assert.Single(n.A.Transmitted)).Ttl); // node -> pod shares the subnet
        Assert.Single(n.Tunnel.Transmitted);
    }

    [Fact]
    public void Ttl_expiry_gets_icmp_time_exceeded_from_the_gateway()
    {
        Node n = Build();
        byte[] f = Echo(RouterMac, PodA, "10.244.1.2", "10.244.2.5", ttl: 1);
        n.A.Inject(f);
        n.Dp.RunOnce();
        Assert.Empty(n.Tunnel.Transmitted);
        byte[] e = Assert.Single(n.A.Transmitted);
        Assert.Equal(PodA, MacAddress.Read(e));
        Ipv4View ip = IpOf(e);
        Assert.Equal(Ip("10.244.1.1"), ip.Source);
        Assert.Equal(Ip("10.244.1.2"), ip.Destination);
        Assert.Equal(IpProtocol.Icmp, ip.Protocol);
        Assert.True(Checksum.IsValid(ip.Payload), "ICMP checksum");
        Assert.True(IcmpRepr.TryParse(ip.Payload, out IcmpRepr icmp));
        Assert.Equal((IcmpType.TimeExceeded, IcmpTimeExceededCode.TtlExceeded), (icmp.Type, icmp.Code));
        // The quote is the original datagram as received.
        Assert.Equal(f.AsSpan(14, f.Length - 14).ToArray(), ip.Payload[8..].ToArray());
    }

    [Fact]
    public void Df_packet_too_big_for_the_tunnel_gets_frag_needed_with_the_overlay_mtu()
    {
        Node n = Build();
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.2.5", payload: 1472, df: true));
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.2.5", payload: 1422, df: true));
        n.Dp.RunOnce();
        Ipv4View ip = IpOf(Assert.Single(n.A.Transmitted));
        Assert.True(IcmpRepr.TryParse(ip.Payload, out IcmpRepr icmp));
        Assert.Equal((IcmpType.DestinationUnreachable, IcmpUnreachableCode.FragmentationNeeded), (icmp.Type, icmp.Code));
        Assert.Equal(1450, icmp.NextHopMtu);
        Assert.True(ip.TotalLength <= 576);
        Assert.Single(n.Tunnel.Transmitted); // the 1450-byte one fits
    }

    [Fact]
    public void Address_no_node_owns_gets_net_unreachable_and_errors_about_errors_are_never_sent()
    {
        Node n = Build();
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.99.2"));
        n.Dp.RunOnce();
        Ipv4View ip = IpOf(Assert.Single(n.A.Transmitted));
        Assert.True(IcmpRepr.TryParse(ip.Payload, out IcmpRepr icmp));
        Assert.Equal((IcmpType.DestinationUnreachable, IcmpUnreachableCode.Network), (icmp.Type, icmp.Code));
        // Feed that error back towards the same black hole: no error about an error.
        byte[] err = n.A.Transmitted[0];
        n.A.ClearTransmitted();
        byte[] back = (byte[])err.Clone();
        new MacAddress(RouterMac.Value).Write(back);
        new MacAddress(PodA.Value).Write(back.AsSpan(6));
        Ipv4View.TryCreate(back.AsSpan(14), out Ipv4View bip);
        bip.Source = Ip("10.244.1.2");
        bip.Destination = Ip("10.244.99.3");
        bip.UpdateChecksum();
        n.A.Inject(back);
        n.Dp.RunOnce();
        Assert.Empty(n.A.Transmitted);
        Assert.Equal(1, Drops(n.Dp, "ip4-route", "no-route"));
    }

    [Fact]
    public void Unknown_pod_address_is_resolved_by_arp_then_reported_unreachable()
    {
        Node n = Build();
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.1.50"));
        n.Dp.RunOnce();
        // The packet became an ARP request from the gateway, flooded to the local ports but not the overlay.
        byte[] req = Assert.Single(n.B.Transmitted);
        Assert.True(ArpRepr.TryParse(req.AsSpan(14), out ArpRepr arp));
        Assert.Equal((ArpOperation.Request, Ip("10.244.1.1"), Ip("10.244.1.50")), (arp.Operation, arp.SenderProtocolAddress, arp.TargetProtocolAddress));
        Assert.Empty(n.Tunnel.Transmitted);
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.1.50"));
        n.Dp.RunOnce();
        Assert.Equal(1, Drops(n.Dp, "ip4-route", "neighbor-incomplete"));
        _clock.Advance(TimeSpan.FromSeconds(3.5));
        n.A.ClearTransmitted();
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.1.50")); // re-asks (one per second)
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.1.50")); // overdue: host unreachable
        n.Dp.RunOnce();
        byte[] e = n.A.Transmitted.Single(t => BinaryPrimitives.ReadUInt16BigEndian(t.AsSpan(12)) == EtherType.Ipv4);
        Assert.True(IcmpRepr.TryParse(IpOf(e).Payload, out IcmpRepr icmp));
        Assert.Equal((IcmpType.DestinationUnreachable, IcmpUnreachableCode.Host), (icmp.Type, icmp.Code));
        // The pod shows up and answers: traffic flows.
        byte[] reply = new byte[60];
        new EthernetRepr(RouterMac, Mac(0x50), EtherType.Arp).Emit(reply);
        new ArpRepr(ArpOperation.Reply, Mac(0x50), Ip("10.244.1.50"), RouterMac, Ip("10.244.1.1")).Emit(reply.AsSpan(14));
        n.B.Inject(reply);
        n.Dp.RunOnce();
        n.B.ClearTransmitted();
        n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.1.50"));
        n.Dp.RunOnce();
        Assert.Equal(Mac(0x50), MacAddress.Read(Assert.Single(n.B.Transmitted)));
    }

    [Fact]
    public void Bad_ip_headers_are_counted_drops()
    {
        Node n = Build();
        byte[] bad = Echo(RouterMac, PodA, "10.244.1.2", "10.244.2.5");
        bad[24] ^= 0xFF; // checksum
        n.A.Inject(bad);
        byte[] trunc = Echo(RouterMac, PodA, "10.244.1.2", "10.244.2.5");
        BinaryPrimitives.WriteUInt16BigEndian(trunc.AsSpan(16), 4000);
        n.A.Inject(trunc);
        n.Dp.RunOnce();
        Assert.Equal(1, Drops(n.Dp, "ip4-route", "bad-checksum"));
        Assert.Equal(1, Drops(n.Dp, "ip4-route", "malformed"));
        Assert.Empty(n.Tunnel.Transmitted);
        Assert.Equal(n.Dp.Slab.Capacity, n.Dp.Slab.FreeCount);
    }

    [Fact]
    public void Icmp_errors_are_rate_limited()
    {
        Node n = Build();
        for (int i = 0; i < 1500; i++)
        {
            n.A.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.99.2"));
            if (i % 64 == 63) n.Dp.RunOnce();
        }
        while (n.A.PendingRx > 0) n.Dp.RunOnce();
        Assert.Equal(1000, n.A.Transmitted.Count);
        Assert.Equal(500, Drops(n.Dp, "ip4-route", "no-route"));
    }

    [Fact]
    public void Steady_state_routing_and_encapsulation_allocate_nothing()
    {
        Node n = Build(recordTx: false);
        n.A.SetReplay([Udp(RouterMac, PodA, "10.244.1.2", "10.244.2.5", 1000, 80), Udp(RouterMac, PodA, "10.244.1.2", "10.244.1.3", 1000, 80)]);
        byte[] inner = Udp(RouterMac, PeerVtep, "10.244.2.5", "10.244.1.2", 80, 1000);
        byte[] d = new byte[8 + inner.Length];
        new VxlanRepr(1).Emit(d);
        inner.CopyTo(d, 8);
        n.Tunnel.SetReplay([d]);
        n.Tunnel.ReplayPeer = Node2;
        for (int i = 0; i < 2000; i++) n.Dp.RunOnce();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++) n.Dp.RunOnce();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.InRange(n.Tunnel.Counters[(int)PortCounter.TxPackets], 300_000, long.MaxValue);
        Assert.InRange(n.A.Counters[(int)PortCounter.TxPackets], 300_000, long.MaxValue);
    }
}

public sealed class RouteTableTests
{
    [Fact]
    public void Longest_prefix_match_agrees_with_a_linear_scan()
    {
        var rng = new Random(2024);
        for (int round = 0; round < 50; round++)
        {
            var routes = new Dictionary<Ipv4Prefix, Route>();
            int n = rng.Next(1, 200);
            for (int i = 0; i < n; i++)
            {
                int len = rng.Next(0, 5) switch { 0 => 24, 1 => 16, 2 => 32, 3 => 8, _ => rng.Next(0, 33) };
                // Cluster-like addresses so prefixes overlap often.
                uint a = 0x0AF4_0000u | (uint)rng.Next(0, 1 << 16);
                if (rng.Next(4) == 0) a = (uint)rng.Next();
                var p = new Ipv4Prefix(new Ipv4Address(a), len);
                routes[p] = new Route(p, RouteKind.Peer, i);
            }
            var table = new RouteTable(routes.Values);
            Route[] list = [.. routes.Values];
            for (int q = 0; q < 2000; q++)
            {
                uint addr = rng.Next(3) == 0 ? (uint)rng.Next() : 0x0AF4_0000u | (uint)rng.Next(0, 1 << 16);
                Route? best = null;
                foreach (Route r in list)
                    if (r.Prefix.Contains(new Ipv4Address(addr)) && (best is null || r.Prefix.Length > best.Prefix.Length)) best = r;
                int got = table.Lookup(addr);
                if (best is null) Assert.Equal(-1, got);
                else Assert.Equal(best, table[got]);
            }
        }
    }

    [Fact]
    public void Duplicate_prefixes_are_rejected()
    {
        var p = new Ipv4Prefix(Ipv4Address.Parse("10.244.1.0"), 24);
        Assert.Throws<ArgumentException>(() => new RouteTable([new Route(p, RouteKind.Connected), new Route(p, RouteKind.Peer)]));
    }
}

using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L3;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.Frames;
using static VSwitch.Switch.Tests.L3Frames;

namespace VSwitch.Switch.Tests;

/// <summary>Ports and peers changed on a datapath that has forwarded: the tables follow, nothing stale is left behind,
/// and ids are reused only after their state is gone.</summary>
public sealed class LiveChangeTests
{
    private static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");
    private static readonly MacAddress PeerVtep = MacAddress.Parse("0e:00:0a:f4:02:01");
    private static readonly MacAddress PodA = MacAddress.Parse("02:00:0a:f4:01:02");
    private static readonly MacAddress PodB = MacAddress.Parse("02:00:0a:f4:01:03");
    private readonly ManualClock _clock = new();

    private (Datapath Dp, MemoryPort A, MemoryPort B, MemoryPort Tunnel) Build()
    {
        var dp = new Datapath(new DatapathOptions
        {
            Slots = 1024,
            Router = new RouterOptions { PodCidr = new Ipv4Prefix(Ip("10.244.1.0"), 24), RouterMac = RouterMac },
            Overlay = new OverlayOptions { LocalAddress = Ip("198.18.0.1"), AcceptUnknownPeers = true, FdbAging = TimeSpan.FromSeconds(60) },
        }, _clock);
        var a = new MemoryPort("pod-a");
        var b = new MemoryPort("pod-b");
        var tunnel = new MemoryPort("vxlan");
        dp.Router!.Neighbors.AddPermanent(Ip("10.244.1.2"), PodA, dp.AddPort(a));
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.3"), PodB, dp.AddPort(b));
        dp.AddPort(tunnel, PortRole.Tunnel);
        dp.AddPeer("node-2", Ip("198.18.0.2"), new Ipv4Prefix(Ip("10.244.2.0"), 24), PeerVtep);
        return (dp, a, b, tunnel);
    }

    [Fact]
    public void A_removed_port_takes_its_mac_and_neighbor_entries_and_its_id_is_reused_last()
    {
        (Datapath dp, MemoryPort a, MemoryPort b, _) = Build();
        a.Inject(Make(PodB, PodA));
        b.Inject(Make(PodA, PodB));
        dp.RunOnce();
        Assert.Equal(2, dp.Macs.Count);
        var c = new MemoryPort("pod-c");
        ushort idc = dp.AddPort(c);
        Assert.Equal(3, idc);

        Datapath.PortFlush f = dp.RemovePort(b.Id, [Ip("10.244.1.3").Value]);
        Assert.Equal(1, f.MacEntries);
        Assert.Equal(1, f.Neighbors);
        Assert.Equal(1, dp.Macs.Count);
        Assert.True(System.Runtime.CompilerServices.Unsafe.IsNullRef(ref dp.Router!.Neighbors.Find(Ip("10.244.1.3").Value)));
        Assert.Null(dp.Ports[1]);

        // A frame to the removed pod's MAC floods to the ports that remain (it is unknown now), not to a hole.
        a.Inject(Make(PodB, PodA));
        dp.RunOnce();
        Assert.Single(c.Transmitted);
        Assert.Equal(3, dp.Ports.Count);

        // The freed id is taken again only after every id freed before it.
        var d = new MemoryPort("pod-d");
        Assert.Equal(1, dp.AddPort(d));
        Assert.Equal(4, dp.AddPort(new MemoryPort("pod-e")));
        Assert.Throws<InvalidOperationException>(() => dp.RemovePort(2, []));
    }

    [Fact]
    public void A_peer_removed_and_added_again_takes_its_route_and_forwarding_entries_with_it()
    {
        (Datapath dp, MemoryPort a, _, MemoryPort tunnel) = Build();
        byte[] toPeer = Echo(RouterMac, PodA, "10.244.1.2", "10.244.2.5");
        a.Inject(toPeer);
        dp.RunOnce();
        Assert.Single(tunnel.Transmitted);
        Assert.Equal(Ip("198.18.0.2").Value, tunnel.TransmittedPeers[0]);

        Assert.Equal(1, dp.RemovePeer("node-2"));
        Assert.Empty(dp.Overlay!.Peers);
        Assert.DoesNotContain(dp.Router!.Routes.Routes, r => r.Kind == RouteKind.Peer);
        Assert.Equal(0, dp.Overlay.FdbCount);
        tunnel.ClearTransmitted();
        a.Inject(toPeer);
        dp.RunOnce();
        Assert.Empty(tunnel.Transmitted); // the cluster CIDR's unreachable route answers now

        dp.AddPeer("node-2", Ip("198.18.0.2"), new Ipv4Prefix(Ip("10.244.2.0"), 24), PeerVtep);
        a.Inject(toPeer);
        dp.RunOnce();
        Assert.Single(tunnel.Transmitted);

        // The node moved to another underlay address: the next packet goes there.
        dp.UpdatePeer("node-2", Ip("198.18.0.12"), new Ipv4Prefix(Ip("10.244.2.0"), 24), PeerVtep);
        tunnel.ClearTransmitted();
        a.Inject(toPeer);
        dp.RunOnce();
        Assert.Equal(Ip("198.18.0.12").Value, Assert.Single(tunnel.TransmittedPeers));
        Assert.Equal(2, dp.Overlay.Peers[0].TxPackets); // counters carried over
        Assert.Throws<KeyNotFoundException>(() => dp.RemovePeer("node-9"));
    }

    [Fact]
    public void Learned_peers_age_out_so_unknown_underlay_addresses_cannot_fill_the_table()
    {
        (Datapath dp, _, _, MemoryPort tunnel) = Build();
        byte[] inner = Make(Mac(0x42), Mac(0x99));
        byte[] vxlan = new byte[8 + inner.Length];
        new VxlanRepr(1).Emit(vxlan);
        inner.CopyTo(vxlan.AsSpan(8));
        for (uint i = 0; i < 20; i++) tunnel.Inject(vxlan, peer: Ip("198.18.1.0").Value + i);
        dp.RunOnce();
        Assert.Equal(21, dp.Overlay!.Peers.Count);
        _clock.Advance(TimeSpan.FromSeconds(61));
        dp.Housekeeping();
        Assert.Equal("node-2", Assert.Single(dp.Overlay.Peers).Name);
        Assert.Equal(20, dp.Overlay.PeersAgedOut);
        Assert.Equal(1, dp.Overlay.FdbCount); // node-2's static VTEP entry stays; the learned MAC went with its peer
    }
}

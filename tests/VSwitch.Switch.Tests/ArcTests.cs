using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L3;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.L3Frames;

namespace VSwitch.Switch.Tests;

/// <summary>The datapath's arcs: a stage of one's own registered into an arc sees that arc's traffic (bridged and
/// routed in forward, the node's own in local-in and local-out), and the graph says where everything sits.</summary>
public sealed class ArcTests
{
    private static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");
    private static readonly MacAddress HostMac = MacAddress.Parse("0e:01:0a:f4:01:01");
    private static readonly MacAddress PodA = MacAddress.Parse("02:00:0a:f4:01:02");
    private static readonly MacAddress PodB = MacAddress.Parse("02:00:0a:f4:01:03");

    /// <summary>Counts the packets it sees and passes them on.</summary>
    private sealed class Tap(string name) : Stage(name, [ArcNext])
    {
        public int Packets { get; private set; }

        public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
        {
            Packets += batch.Count;
            next[..batch.Count].Fill(1);
        }
    }

    [Fact]
    public void Stages_registered_into_arcs_see_their_traffic()
    {
        var fwd = new Tap("my-forward");
        var localIn = new Tap("my-local-in");
        var localOut = new Tap("my-local-out");
        var pre = new Tap("my-prerouting");
        var dp = new Datapath(new DatapathOptions
        {
            Slots = 512,
            Router = new RouterOptions { PodCidr = new Ipv4Prefix(Ip("10.244.1.0"), 24), RouterMac = RouterMac },
            Overlay = new OverlayOptions { LocalAddress = Ip("198.18.0.1") },
            Features = (g, _) => g
                .AddFeature(Arcs.Forward, fwd)
                .AddFeature(Arcs.LocalIn, localIn)
                .AddFeature(Arcs.LocalOut, localOut)
                .AddFeature(Arcs.Prerouting, pre),
        }, new ManualClock());
        var a = new MemoryPort("pod-a");
        var b = new MemoryPort("pod-b");
        var host = new MemoryPort("host");
        ushort ida = dp.AddPort(a), idb = dp.AddPort(b);
        ushort idh = dp.AddPort(host, PortRole.Host);
        dp.AddPort(new MemoryPort("vxlan"), PortRole.Tunnel);
        dp.Router!.HostMac = HostMac;
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.1"), HostMac, idh);
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.2"), PodA, ida);
        dp.Router.Neighbors.AddPermanent(Ip("10.244.1.3"), PodB, idb);
        dp.Macs.AddStatic(PodB, 0, idb);

        a.Inject(Echo(PodB, PodA, "10.244.1.2", "10.244.1.3"));      // bridged pod to pod: forward
        a.Inject(Echo(RouterMac, PodA, "10.244.1.2", "10.244.1.1"));  // routed to the node: local-in
        host.Inject(Echo(RouterMac, HostMac, "10.244.1.1", "10.244.1.3")); // from the node: local-out, then forward
        dp.RunOnce();
        Assert.Equal(3, pre.Packets);
        Assert.Equal(1, localOut.Packets);
        Assert.Equal(1, localIn.Packets);
        Assert.Equal(2, fwd.Packets);
        Assert.Equal(2, b.Transmitted.Count);
        Assert.Single(host.Transmitted);

        // The graph knows where each stage sits: local-out before prerouting, forward and local-in before postrouting.
        StageGraph graph = dp.Graph;
        Assert.Equal(["my-forward"], graph.Arcs.Single(x => x.Arc == Arcs.Forward).Features);
        Assert.Equal(["my-prerouting"], graph.Arcs.Single(x => x.Arc == Arcs.Prerouting).Features);
        Assert.Equal(["vxlan-encap"], graph.Arcs.Single(x => x.Arc == Arcs.Postrouting).Features);
        int Pos(string n) => graph.Find(n)!.Index;
        Assert.True(Pos("l2-learn") < Pos("my-local-out") && Pos("my-local-out") < Pos("my-prerouting") && Pos("my-prerouting") < Pos("l2-forward"));
        Assert.True(Pos("ip4-route") < Pos("my-forward") && Pos("my-forward") < Pos("vxlan-encap") && Pos("my-local-in") < Pos("vxlan-encap"));
    }
}

/// <summary>The flow hash is computed once, by ethernet-parse, and is what steering and connection tracking use.</summary>
public sealed class FlowHashAtParseTests
{
    private static ulong HashOf(byte[] frame)
    {
        var slab = new PacketSlab(16);
        Assert.True(slab.TryAllocFrame(frame, out int s));
        var batch = new PacketBatch(4);
        batch.Add(s);
        var parse = new Pipeline.Stages.EthernetParseStage("next");
        _ = new StageGraph([parse, new Sink("next"), new DropStage()], 4);
        parse.Process(new WorkerContext(slab, TimeProvider.System), batch, new byte[4]);
        return slab.Meta[s].FlowHash;
    }

    private sealed class Sink(string name) : Stage(name, [])
    {
        public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next) { }
    }

    [Fact]
    public void Both_directions_and_the_errors_about_a_flow_hash_alike_as_the_connection_table_does()
    {
        MacAddress a = MacAddress.Parse("02:00:00:00:00:01"), b = MacAddress.Parse("02:00:00:00:00:02");
        byte[] there = Udp(b, a, "10.244.1.2", "10.244.1.3", 40000, 53);
        byte[] back = Udp(a, b, "10.244.1.3", "10.244.1.2", 53, 40000);
        ulong h = HashOf(there);
        Assert.NotEqual(0UL, h);
        Assert.Equal(h, HashOf(back));
        var key = new FlowKey(Ip("10.244.1.2").Value, Ip("10.244.1.3").Value, 40000, 53, IpProtocol.Udp);
        Assert.Equal(FlowHash.Symmetric(key, FlowHash.ProcessSalt), h);
        Assert.NotEqual(h, HashOf(Udp(b, a, "10.244.1.2", "10.244.1.3", 40001, 53)));
        // Not IPv4: no flow hash.
        Assert.Equal(0UL, HashOf(Frames.Make(b, a)));
    }
}

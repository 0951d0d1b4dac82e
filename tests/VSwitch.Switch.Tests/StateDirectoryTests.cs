using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.Control;

namespace VSwitch.Switch.Tests;

/// <summary>The state directory: what it saves comes back whole; a damaged or foreign file is refused with a reason and
/// moved aside, never thrown.</summary>
public sealed class StateDirectoryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsstate").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static NatEngine Engine(long tps) => new(new NatOptions
    {
        PodCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.1.0"), 24),
        ClusterCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.0.0"), 16),
        Gateway = Ipv4Address.Parse("10.244.1.1"),
        RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01"),
        MaxConnections = 4096,
    }, tps, new IcmpRateLimiter(1000, tps));

    [Fact]
    public void Node_state_comes_back_as_it_was_saved()
    {
        var d = new StateDirectory(_dir);
        var state = new NodeState
        {
            Node = "n1",
            Ports = [new SavedPort(new PortSpec { Name = "p", Interface = "t", Namespace = "ns", Address = "10.244.1.9/24", Routes = ["10.96.0.0/12 via 10.244.1.1"] }, "02:00:00:00:00:09")],
            Peers = [new PeerSpec { Name = "node-2", Address = "198.18.0.2", PodCIDR = "10.244.2.0/24" }],
            Services = [new ServiceObject
            {
                Namespace = "default",
                Name = "web",
                Type = ServiceType.NodePort,
                ClusterIPs = [Ipv4Address.Parse("10.96.0.10")],
                Ports = [new ServicePortSpec { Name = "http", Protocol = 6, Port = 80, TargetPort = 8080, NodePort = 30080 }],
                ClientIPAffinity = true,
            }],
            EndpointSlices = [new EndpointSliceObject
            {
                Namespace = "default",
                Name = "web-1",
                ServiceName = "web",
                Endpoints = [new EndpointSpec { Addresses = [Ipv4Address.Parse("10.244.1.5")], NodeName = "n1", Ready = false, Serving = true, Terminating = true }],
                Ports = [new EndpointPortSpec { Name = "http", Port = 8080 }],
            }],
        };
        d.Save(state);
        NodeState back = Assert.IsType<NodeState>(d.Load("n1", out string? rejected));
        Assert.Null(rejected);
        Assert.Equal("10.244.1.9/24", back.Ports[0].Spec.Address);
        Assert.Equal("02:00:00:00:00:09", back.Ports[0].Mac);
        Assert.Equal(["10.96.0.0/12 via 10.244.1.1"], back.Ports[0].Spec.Routes!);
        Assert.Equal("10.244.2.0/24", Assert.Single(back.Peers!).PodCIDR);
        ServiceObject svc = Assert.Single(back.Services);
        Assert.Equal((ServiceType.NodePort, "10.96.0.10", (ushort)30080, true), (svc.Type, svc.ClusterIPs[0].ToString(), svc.Ports[0].NodePort, svc.ClientIPAffinity));
        EndpointSpec ep = Assert.Single(Assert.Single(back.EndpointSlices).Endpoints);
        Assert.Equal(("10.244.1.5", false, true, true, "n1"), (ep.Addresses[0].ToString(), ep.Ready, ep.Serving, ep.Terminating, ep.NodeName));
    }

    [Theory]
    [InlineData("{\"kind\": \"VSwitchNodeState\", \"version\": 1, \"node\": \"n1\", \"ports\": [", "not a readable state file")]
    [InlineData("{\"kind\": \"Something\", \"version\": 1, \"node\": \"n1\"}", "not a VSwitch node state")]
    [InlineData("{\"kind\": \"VSwitchNodeState\", \"version\": 7, \"node\": \"n1\"}", "state version 7")]
    [InlineData("{\"kind\": \"VSwitchNodeState\", \"version\": 1, \"node\": \"other\"}", "the state of node 'other', this is node 'n1'")]
    [InlineData("\u0000\u0001garbage", "not a readable state file")]
    public void A_bad_or_foreign_state_file_is_refused_and_moved_aside(string text, string why)
    {
        var d = new StateDirectory(_dir);
        File.WriteAllText(d.StateFile, text);
        Assert.Null(d.Load("n1", out string? rejected));
        Assert.Contains(why, rejected, StringComparison.Ordinal);
        Assert.False(File.Exists(d.StateFile));
        Assert.True(File.Exists(d.StateFile + ".rejected"));
    }

    [Fact]
    public void Connections_saved_at_shutdown_are_restored_once_with_what_they_had_left()
    {
        const long Tps = 1_000_000_000;
        NatEngine a = Engine(Tps);
        var orig = new FlowKey(Ipv4Address.Parse("10.244.1.2").Value, Ipv4Address.Parse("10.96.0.10").Value, 40000, 80, IpProtocol.Tcp);
        var reply = new FlowKey(Ipv4Address.Parse("10.244.1.5").Value, Ipv4Address.Parse("10.244.1.2").Value, 8080, 40000, IpProtocol.Tcp);
        int e = a.Conntrack.Create(orig, reply, CtState.Established, 0);
        ref CtEntry x = ref a.Conntrack[e];
        x.Status |= CtStatus.DstNat | CtStatus.SeenReply | CtStatus.Assured;
        x.Rule = CtRule.Affinity;
        x.Packets0 = 10;
        x.Bytes1 = 999;
        x.Expires = 90 * Tps;
        var d = new StateDirectory(_dir);
        d.SaveConntrack("n1", a.Export(30 * Tps));

        NatEngine b = Engine(Tps);
        List<SavedConnection> saved = d.TakeConntrack("n1", out string? rejected);
        Assert.Null(rejected);
        Assert.True(b.Import(Assert.Single(saved), 1000 * Tps));
        int r = b.Conntrack.Lookup(reply, b.Conntrack.Hash(reply));
        Assert.True(r >= 0);
        CtEntry y = b.Conntrack[r >> 1];
        Assert.Equal((orig, CtState.Established, CtRule.Affinity, 10L, 999L), (y.Orig, y.State, y.Rule, y.Packets0, y.Bytes1));
        Assert.True((y.Status & CtStatus.DstNat) != 0);
        Assert.Equal(1060 * Tps, y.Expires); // the 60 s it had left, from the new start
        Assert.False(File.Exists(d.ConntrackFile)); // taken once
    }

    [Fact]
    public void A_damaged_or_foreign_connection_file_is_refused()
    {
        var d = new StateDirectory(_dir);
        d.SaveConntrack("n1", [new SavedConnection(new FlowKey(1, 2, 3, 4, 6), new FlowKey(2, 1, 4, 3, 6), CtState.Established, CtStatus.None, CtRule.None, 0, 1000, 0, 0, 0, 0)]);
        Assert.Empty(d.TakeConntrack("n2", out string? rejected));
        Assert.Contains("the connections of node 'n1', this is node 'n2'", rejected, StringComparison.Ordinal);

        d.SaveConntrack("n1", [new SavedConnection(new FlowKey(1, 2, 3, 4, 6), new FlowKey(2, 1, 4, 3, 6), CtState.Established, CtStatus.None, CtRule.None, 0, 1000, 0, 0, 0, 0)]);
        byte[] bytes = File.ReadAllBytes(d.ConntrackFile);
        File.WriteAllBytes(d.ConntrackFile, bytes[..^5]);
        Assert.Empty(d.TakeConntrack("n1", out rejected));
        Assert.Contains("damaged", rejected, StringComparison.Ordinal);

        File.WriteAllBytes(d.ConntrackFile, [1, 2, 3]);
        Assert.Empty(d.TakeConntrack("n1", out rejected));
        Assert.Contains("not a VSwitch connection table", rejected, StringComparison.Ordinal);
    }
}

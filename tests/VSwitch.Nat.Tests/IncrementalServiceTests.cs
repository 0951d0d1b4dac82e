using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat.Tests;

/// <summary>Services changed one at a time: the store finds what changed, the worker's table takes only that, and the
/// connections to endpoints that left are found through the address index, not a table scan.</summary>
public sealed class IncrementalServiceTests
{
    private const long Tps = 1_000_000_000;
    private static uint A(string s) => Ipv4Address.Parse(s).Value;

    private static NatEngine Engine() => new(new NatOptions
    {
        PodCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.1.0"), 24),
        ClusterCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.0.0"), 16),
        ServiceCidr = new Ipv4Prefix(Ipv4Address.Parse("10.96.0.0"), 12),
        Gateway = Ipv4Address.Parse("10.244.1.1"),
        RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01"),
        NodeAddress = Ipv4Address.Parse("198.18.0.1"),
        MaxConnections = 4096,
    }, Tps, new IcmpRateLimiter(1000, Tps));

    private static ServiceObject Svc(string name, string ip, ushort port = 80, byte proto = IpProtocol.Tcp) => new()
    {
        Namespace = "default",
        Name = name,
        ClusterIPs = [Ipv4Address.Parse(ip)],
        Ports = [new ServicePortSpec { Name = "p", Protocol = proto, Port = port, TargetPort = 8080 }],
    };

    private static EndpointSliceObject Slice(string service, params string[] addresses) => new()
    {
        Namespace = "default",
        Name = service + "-1",
        ServiceName = service,
        Ports = [new EndpointPortSpec { Name = "p", Port = 8080, Protocol = IpProtocol.Tcp }],
        Endpoints = [.. addresses.Select(a => new EndpointSpec { Addresses = [Ipv4Address.Parse(a)] })],
    };

    private static EndpointSliceObject UdpSlice(string service, params string[] addresses) =>
        Slice(service, addresses) with { Ports = [new EndpointPortSpec { Name = "p", Port = 8080, Protocol = IpProtocol.Udp }] };

    private static ClusterObjects Objects(params object[] o) => new()
    {
        Services = o.OfType<ServiceObject>().ToList(),
        EndpointSlices = o.OfType<EndpointSliceObject>().ToList(),
    };

    /// <summary>A DNATed connection client:sport -> vip:80 to endpoint:8080, as the conntrack stage creates it.</summary>
    private static int Connect(NatEngine nat, string client, ushort sport, string vip, string endpoint, byte proto = IpProtocol.Tcp)
    {
        var orig = new FlowKey(A(client), A(vip), sport, 80, proto);
        var reply = new FlowKey(A(endpoint), A(client), 8080, sport, proto);
        int e = nat.Conntrack.Create(orig, reply, proto == IpProtocol.Tcp ? CtState.Established : CtState.Replied, 0);
        Assert.True(e >= 0);
        nat.Conntrack[e].Status |= CtStatus.DstNat;
        return e;
    }

    [Fact]
    public void The_store_compiles_only_the_services_that_changed()
    {
        NatEngine nat = Engine();
        var store = new ServiceStore();
        var objects = new List<object>();
        for (int i = 0; i < 100; i++)
        {
            objects.Add(Svc($"s{i}", $"10.96.1.{i}"));
            objects.Add(Slice($"s{i}", "10.244.1.5", "10.244.1.6"));
        }
        List<ServiceDelta> first = store.Compile(store.Replace("dir", Objects([.. objects])), nat.CompileService);
        Assert.Equal(100, first.Count);
        foreach (ServiceDelta d in first) nat.ApplyDelta(d);
        Assert.Equal(100, nat.Services.ServiceCount);
        Assert.Equal(100, nat.Services.Count);

        // The same set again: nothing to do. One slice changed: one Service.
        Assert.Empty(store.Compile(store.Replace("dir", Objects([.. objects])), nat.CompileService));
        objects[2 * 42 + 1] = Slice("s42", "10.244.1.5");
        List<ServiceDelta> one = store.Compile(store.Replace("dir", Objects([.. objects])), nat.CompileService);
        Assert.Equal("default/s42", Assert.Single(one).Service);
        long version = nat.Services.Version;
        nat.ApplyDelta(one[0]);
        Assert.Equal(version + 1, nat.Services.Version);
        Assert.Single(nat.Services.Lookup(A("10.96.1.42"), IpProtocol.Tcp, 80)!.Endpoints);
        Assert.Equal(2, nat.Services.Lookup(A("10.96.1.41"), IpProtocol.Tcp, 80)!.Endpoints.Length);

        // A Service that leaves the set leaves the table.
        objects.RemoveRange(0, 2);
        ServiceDelta gone = Assert.Single(store.Compile(store.Replace("dir", Objects([.. objects])), nat.CompileService));
        Assert.True(gone.Removed);
        nat.ApplyDelta(gone);
        Assert.Null(nat.Services.Lookup(A("10.96.1.0"), IpProtocol.Tcp, 80));
        Assert.Equal(99, nat.Services.ServiceCount);
    }

    [Fact]
    public void Sources_own_their_objects_and_node_ports()
    {
        var store = new ServiceStore();
        store.Replace("dir", Objects(Svc("a", "10.96.0.1") with { Type = ServiceType.NodePort, Ports = [new ServicePortSpec { Protocol = 6, Port = 80, TargetPort = 80, NodePort = 30080 }] }));
        Assert.Contains("Service default/a is owned by dir", store.Conflicts("api", Objects(Svc("a", "10.96.0.9"))));
        List<string> np = store.Conflicts("api", Objects(Svc("b", "10.96.0.2") with { Type = ServiceType.NodePort, Ports = [new ServicePortSpec { Protocol = 6, Port = 81, TargetPort = 81, NodePort = 30080 }] }));
        Assert.Contains("Service default/b: node port 30080/TCP is already used by Service default/a", np);
        // The directory re-read may move its own node port between its own Services.
        Assert.Empty(store.Conflicts("dir", Objects(Svc("c", "10.96.0.3") with { Type = ServiceType.NodePort, Ports = [new ServicePortSpec { Protocol = 6, Port = 80, TargetPort = 80, NodePort = 30080 }] }), replaceAll: true));
        Assert.Empty(store.DeleteService("api", "default/a"));
        Assert.Equal("dir", store.OwnerOfService("default/a"));
    }

    [Fact]
    public void Removing_an_endpoint_evicts_only_its_connections_through_the_address_index()
    {
        NatEngine nat = Engine();
        var store = new ServiceStore();
        ServiceObject web = Svc("web", "10.96.0.10");
        foreach (ServiceDelta d in store.Compile(store.Replace("dir", Objects(web, Slice("web", "10.244.1.5", "10.244.1.6"))), nat.CompileService)) nat.ApplyDelta(d);
        int toGone = Connect(nat, "10.244.1.2", 40000, "10.96.0.10", "10.244.1.5");
        int toKept = Connect(nat, "10.244.1.2", 40001, "10.96.0.10", "10.244.1.6");
        // A direct (un-NATed) connection to the same pod is none of the Service's business.
        int direct = nat.Conntrack.Create(new FlowKey(A("10.244.1.3"), A("10.244.1.5"), 5000, 8080, IpProtocol.Tcp),
            new FlowKey(A("10.244.1.5"), A("10.244.1.3"), 8080, 5000, IpProtocol.Tcp), CtState.Established, 0);

        ServiceDelta d2 = Assert.Single(store.Compile(store.Replace("dir", Objects(web, Slice("web", "10.244.1.6"))), nat.CompileService));
        Assert.Equal(1, nat.ApplyDelta(d2));
        Assert.Equal(0, nat.Conntrack[toGone].Live);
        Assert.Equal(1, nat.Conntrack[toKept].Live);
        Assert.Equal(1, nat.Conntrack[direct].Live);
        Assert.Equal(1, nat.EvictedByDelta);
    }

    [Fact]
    public void PublishNotReadyAddresses_holds_when_the_slices_come_one_by_one()
    {
        // From the cluster store or the API, a Service and its slices arrive as separate changes: the Service's
        // publishNotReadyAddresses must still make its not-ready endpoints usable.
        NatEngine nat = Engine();
        var store = new ServiceStore();
        ServiceObject svc = Svc("db", "10.96.0.7") with { PublishNotReadyAddresses = true };
        foreach (ServiceDelta d in store.Compile(store.Upsert("store", Objects(svc)), nat.CompileService)) nat.ApplyDelta(d);
        EndpointSliceObject starting = Slice("db", "10.244.1.5") with
        {
            Endpoints = [new EndpointSpec { Addresses = [Ipv4Address.Parse("10.244.1.5")], Ready = false, Serving = false }],
        };
        ServiceDelta delta = Assert.Single(store.Compile(store.Upsert("store", Objects(starting)), nat.CompileService));
        Frontend f = Assert.Single(delta.Frontends);
        Assert.Contains(f.Endpoints, e => e.Address == A("10.244.1.5") && e.Ready);
    }

    [Fact]
    public void A_udp_flow_leaves_an_endpoint_that_is_no_longer_ready_and_tcp_finishes()
    {
        NatEngine nat = Engine();
        var store = new ServiceStore();
        ServiceObject dns = Svc("dns", "10.96.0.53", 80, IpProtocol.Udp);
        foreach (ServiceDelta d in store.Compile(store.Replace("dir", Objects(dns, UdpSlice("dns", "10.244.1.5", "10.244.1.6"))), nat.CompileService)) nat.ApplyDelta(d);
        int udp = Connect(nat, "10.244.1.2", 40000, "10.96.0.53", "10.244.1.5", IpProtocol.Udp);
        EndpointSliceObject notReady = UdpSlice("dns", "10.244.1.6") with
        {
            Endpoints = [new EndpointSpec { Addresses = [Ipv4Address.Parse("10.244.1.5")], Ready = false, Serving = true, Terminating = true },
                new EndpointSpec { Addresses = [Ipv4Address.Parse("10.244.1.6")] }],
        };
        ServiceDelta d2 = Assert.Single(store.Compile(store.Replace("dir", Objects(dns, notReady)), nat.CompileService));
        Assert.Equal(1, nat.ApplyDelta(d2));
        Assert.Equal(0, nat.Conntrack[udp].Live);
    }

    [Fact]
    public void The_address_index_finds_every_connection_of_an_address_once()
    {
        var ct = new Conntrack(256, new ConntrackTimeouts(), Tps, salt: 3);
        var rng = new Random(5);
        var live = new List<int>();
        for (int i = 0; i < 200; i++)
        {
            uint src = A("10.244.1.0") + (uint)rng.Next(1, 8), dst = A("10.244.1.0") + (uint)rng.Next(1, 8);
            int e = ct.Create(new FlowKey(src, dst, (ushort)(1000 + i), 80, IpProtocol.Tcp), new FlowKey(dst, src, 80, (ushort)(1000 + i), IpProtocol.Tcp), CtState.Established, 0);
            if (e >= 0) live.Add(e);
            if (i % 3 == 0 && live.Count > 0)
            {
                int k = rng.Next(live.Count);
                ct.Delete(live[k]);
                live.RemoveAt(k);
            }
        }
        for (uint a = A("10.244.1.1"); a < A("10.244.1.8"); a++)
        {
            List<int> expected = live.Where(e => ct[e].Orig.Src == a || ct[e].Reply.Src == a).Order().ToList();
            Assert.Equal(expected, ct.EntriesOf(a).Order().ToList());
        }
        int n = ct.DeleteAddresses([A("10.244.1.3")]);
        Assert.Empty(ct.EntriesOf(A("10.244.1.3")));
        Assert.Equal(live.Count - n, ct.Count);
    }
}

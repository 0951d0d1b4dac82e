using VSwitch.Nat.Cluster;
using static VSwitch.Nat.Tests.ManifestTestKit;

namespace VSwitch.Nat.Tests;

public class NodePortAllocationTests
{
    private const byte Tcp = 6, Udp = 17;

    private static string NodePortService(string name, string ports, string type = "NodePort", string extra = "") =>
        Service($"type: {type}\nclusterIP: 10.96.0.1\n{extra}ports:\n{ports}", name: name);

    private static string Port(int port, int nodePort = 0, string protocol = "TCP", string? name = null) =>
        (name is null ? $"- port: {port}\n" : $"- name: {name}\n  port: {port}\n")
        + $"  protocol: {protocol}\n"
        + (nodePort == 0 ? "" : $"  nodePort: {nodePort}\n");

    /// <summary>Names svc-0, svc-1, ... whose preferred node port for TCP 80 in [min, max] satisfies the predicate.</summary>
    private static IEnumerable<string> Names(int min, int max, Func<int, bool> preferred) =>
        Enumerable.Range(0, 10_000).Select(i => $"svc-{i}").Where(n => preferred(NodePortAllocator.Preferred("default", n, 80, Tcp, min, max)));

    [Fact]
    public void PreferredNodePort_IsAStableHash()
    {
        // Pinned: changing the hash would move every allocated node port of existing manifests.
        Assert.Equal(30540, NodePortAllocator.Preferred("default", "web", 80, Tcp, 30000, 32767));
        Assert.Equal(32629, NodePortAllocator.Preferred("default", "web", 443, Tcp, 30000, 32767));
        Assert.NotEqual(NodePortAllocator.Hash("default", "web", 80, Tcp), NodePortAllocator.Hash("default", "web", 80, Udp));
        Assert.NotEqual(NodePortAllocator.Hash("default", "web", 80, Tcp), NodePortAllocator.Hash("shop", "web", 80, Tcp));

        ServicePortSpec p = Assert.Single(Read(NodePortService("web", Port(80))).Services[0].Ports);
        Assert.Equal(30540, p.NodePort);
    }

    [Fact]
    public void Allocation_DoesNotDependOnDocumentOrder()
    {
        string[] docs =
        [
            NodePortService("a", Port(80, name: "http") + Port(443, name: "https")),
            NodePortService("b", Port(80)),
            NodePortService("c", Port(53, protocol: "UDP")),
            NodePortService("d", Port(80), type: "LoadBalancer"),
        ];
        var options = new ManifestOptions { NodePortMin = 30000, NodePortMax = 30004 }; // 5 ports for 5: collisions certain
        string Allocated(IEnumerable<string> order) => string.Join(' ',
            Read(string.Join("---\n", order), options).Services.OrderBy(s => s.Key, StringComparer.Ordinal)
                .SelectMany(s => s.Ports.Select(p => $"{s.Name}:{p.Port}={p.NodePort}")));
        string expected = Allocated(docs);
        Assert.Equal(expected, Allocated(docs.Reverse()));
        Assert.Equal(expected, Allocated([docs[2], docs[0], docs[3], docs[1]]));
        int[] ports = [.. Read(string.Join("---\n", docs), options).Services.SelectMany(s => s.Ports).Select(p => (int)p.NodePort)];
        Assert.Equal(5, ports.Distinct().Count());
        Assert.All(ports, p => Assert.InRange(p, 30000, 30004));
    }

    [Fact]
    public void ExplicitNodePorts_AreAvoided()
    {
        int preferred = NodePortAllocator.Preferred("default", "web", 80, Tcp, 30000, 32767);
        string text = NodePortService("web", Port(80)) + "---\n" + NodePortService("taken", Port(8080, nodePort: preferred));
        ClusterObjects o = Read(text);
        Assert.Equal(preferred, o.Svc("default/taken").Ports[0].NodePort);
        Assert.Equal(preferred + 1, o.Svc("default/web").Ports[0].NodePort);
    }

    [Fact]
    public void ExplicitNodePortOfTheOtherProtocol_IsAvoidedToo()
    {
        int preferred = NodePortAllocator.Preferred("default", "web", 80, Tcp, 30000, 32767);
        string text = NodePortService("web", Port(80)) + "---\n" + NodePortService("taken", Port(8080, nodePort: preferred, protocol: "UDP"));
        Assert.Equal(preferred + 1, Read(text).Svc("default/web").Ports[0].NodePort);
    }

    [Fact]
    public void HealthCheckNodePorts_AreAvoided()
    {
        int preferred = NodePortAllocator.Preferred("default", "web", 80, Tcp, 30000, 32767);
        string text = NodePortService("web", Port(80)) + "---\n"
            + NodePortService("gw", Port(443, nodePort: 30443), type: "LoadBalancer", extra: $"externalTrafficPolicy: Local\nhealthCheckNodePort: {preferred}\n");
        Assert.Equal(preferred + 1, Read(text).Svc("default/web").Ports[0].NodePort);
    }

    [Fact]
    public void TwoServicesWithTheSamePreferredPort_ProbeInNameOrder()
    {
        const int min = 30000, max = 30009;
        // Two names hashing to the same slot, the first not at the end of the range (no wrap here).
        IGrouping<int, string> pair = Names(min, max, p => p < max)
            .GroupBy(n => NodePortAllocator.Preferred("default", n, 80, Tcp, min, max)).First(g => g.Count() >= 2);
        string[] names = [.. pair.Take(2).Order(StringComparer.Ordinal)];
        var options = new ManifestOptions { NodePortMin = min, NodePortMax = max };
        ClusterObjects o = Read(NodePortService(names[1], Port(80)) + "---\n" + NodePortService(names[0], Port(80)), options);
        Assert.Equal(pair.Key, o.Svc($"default/{names[0]}").Ports[0].NodePort);
        Assert.Equal(pair.Key + 1, o.Svc($"default/{names[1]}").Ports[0].NodePort);
    }

    [Fact]
    public void Probing_WrapsAroundTheRange()
    {
        const int min = 30000, max = 30002;
        string name = Names(min, max, p => p == max).First();
        var options = new ManifestOptions { NodePortMin = min, NodePortMax = max };
        string text = NodePortService(name, Port(80)) + "---\n" + NodePortService("zz-taken", Port(81, nodePort: max));
        Assert.Equal(min, Read(text, options).Svc($"default/{name}").Ports[0].NodePort);
    }

    [Fact]
    public void FullRange_IsAnError()
    {
        var options = new ManifestOptions { NodePortMin = 30000, NodePortMax = 30001 };
        string text = NodePortService("a", Port(80)) + "---\n" + NodePortService("b", Port(80)) + "---\n" + NodePortService("c", Port(80));
        // a and b (name order) take the two ports; c gets none.
        FailsWith(text, "port: 80", "Service default/c: spec.ports[0].nodePort: no free node port left in 30000-30001 to allocate (all are in use)", occurrence: 3, options: options);
    }

    [Fact]
    public void SamePortNumberOverTcpAndUdp_SharesTheNodePort()
    {
        ServiceObject dns = Read(NodePortService("dns", Port(53, protocol: "UDP", name: "dns") + Port(53, name: "dns-tcp"))).Services[0];
        Assert.NotEqual(0, dns.Ports[0].NodePort);
        Assert.Equal(dns.Ports[0].NodePort, dns.Ports[1].NodePort);

        // An explicit node port on either is taken over by the other.
        ServiceObject given = Read(NodePortService("dns", Port(53, protocol: "UDP", name: "dns") + Port(53, name: "dns-tcp", nodePort: 30053))).Services[0];
        Assert.Equal([30053, 30053], given.Ports.Select(p => (int)p.NodePort));
    }

    [Fact]
    public void SharedNodePort_IsNotTakenWhenAnotherServiceHoldsItForThatProtocol()
    {
        string text = NodePortService("dns", Port(53, protocol: "UDP", name: "dns", nodePort: 30053) + Port(53, name: "dns-tcp")) + "---\n"
            + NodePortService("other", Port(8080, nodePort: 30053));
        ServiceObject dns = Read(text).Svc("default/dns");
        Assert.Equal(30053, dns.Ports[0].NodePort);
        Assert.NotEqual(0, dns.Ports[1].NodePort);
        Assert.NotEqual(30053, dns.Ports[1].NodePort);
    }

    [Fact]
    public void LoadBalancer_WithoutNodePortAllocation_KeepsOnlyExplicitOnes()
    {
        string text = NodePortService("lb", Port(80, name: "a") + Port(81, name: "b", nodePort: 31081), type: "LoadBalancer", extra: "allocateLoadBalancerNodePorts: false\n");
        Assert.Equal([0, 31081], Read(text).Services[0].Ports.Select(p => (int)p.NodePort));
        string allocating = NodePortService("lb", Port(80, name: "a"), type: "LoadBalancer", extra: "allocateLoadBalancerNodePorts: true\n");
        Assert.InRange(Read(allocating).Services[0].Ports[0].NodePort, 30000, 32767);
    }

    [Fact]
    public void AllocatedPorts_StayInACustomRange()
    {
        var options = new ManifestOptions { NodePortMin = 40000, NodePortMax = 40099 };
        string text = string.Join("---\n", Enumerable.Range(0, 50).Select(i => NodePortService($"s{i}", Port(80, name: "a") + Port(443, name: "b"))));
        int[] ports = [.. Read(text, options).Services.SelectMany(s => s.Ports).Select(p => (int)p.NodePort)];
        Assert.Equal(100, ports.Distinct().Count());
        Assert.All(ports, p => Assert.InRange(p, 40000, 40099));
    }

    [Fact]
    public void ClusterIPAndExternalNameServices_GetNoNodePorts()
    {
        string text = Service("clusterIP: 10.96.0.9\nports:\n- port: 80", name: "c") + "---\n"
            + Service("type: ExternalName\nexternalName: x.example.com\nports:\n- port: 80", name: "e");
        Assert.All(Read(text).Services, s => Assert.Equal(0, s.Ports[0].NodePort));
    }
}

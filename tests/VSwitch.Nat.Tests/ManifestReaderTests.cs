using VSwitch.Nat.Cluster;
using VSwitch.Pipeline.Wire;
using static VSwitch.Nat.Tests.ManifestTestKit;

namespace VSwitch.Nat.Tests;

public class ManifestReaderTests
{
    private static Ipv4Address Ip(string s) => Ipv4Address.Parse(s);

    [Fact]
    public void KubectlList_ReadsEveryServiceField()
    {
        ClusterObjects o = Read(ManifestFixtures.KubectlList);
        Assert.Equal(["default/kubernetes", "shop/web", "shop/gateway", "kube-system/kube-dns", "shop/db"], o.Services.Select(s => s.Key));

        ServiceObject api = o.Svc("default/kubernetes");
        Assert.Equal(ServiceType.ClusterIP, api.Type);
        Assert.Equal([Ip("10.96.0.1")], api.ClusterIPs);
        Assert.False(api.Headless);
        ServicePortSpec https = Assert.Single(api.Ports);
        Assert.Equal(new ServicePortSpec { Name = "https", Protocol = 6, Port = 443, TargetPort = 6443 }, https);
        Assert.False(api.ClientIPAffinity);
        Assert.Empty(api.LoadBalancerIngress);

        ServiceObject web = o.Svc("shop/web");
        Assert.Equal(ServiceType.NodePort, web.Type);
        Assert.Equal(new ServicePortSpec { Name = "http", Protocol = 6, Port = 80, TargetPort = 0, TargetPortName = "http", NodePort = 31380 }, Assert.Single(web.Ports));

        ServiceObject gw = o.Svc("shop/gateway");
        Assert.Equal(ServiceType.LoadBalancer, gw.Type);
        Assert.Equal([Ip("10.96.200.7")], gw.ClusterIPs);
        Assert.Equal(
            [
                new ServicePortSpec { Name = "http", Protocol = 6, Port = 80, TargetPort = 8080, NodePort = 30080 },
                new ServicePortSpec { Name = "quic", Protocol = 17, Port = 443, TargetPort = 8443, NodePort = 30443 },
            ],
            gw.Ports);
        Assert.Equal([Ip("192.0.2.50")], gw.ExternalIPs);
        Assert.Equal([Ip("203.0.113.10")], gw.LoadBalancerIngress);
        Assert.True(gw.ClientIPAffinity);
        Assert.Equal(3600, gw.AffinityTimeoutSeconds);
        Assert.Equal(TrafficPolicy.Local, gw.ExternalTrafficPolicy);
        Assert.Equal(TrafficPolicy.Local, gw.InternalTrafficPolicy);

        ServiceObject dns = o.Svc("kube-system/kube-dns");
        Assert.Equal([(17, 53, "dns"), (6, 53, "dns-tcp"), (6, 9153, "metrics")], dns.Ports.Select(p => ((int)p.Protocol, (int)p.Port, p.Name)));
        Assert.All(dns.Ports, p => Assert.Equal(0, p.NodePort));

        ServiceObject db = o.Svc("shop/db");
        Assert.True(db.Headless);
        Assert.Empty(db.ClusterIPs);
        Assert.True(db.PublishNotReadyAddresses);
    }

    [Fact]
    public void KubectlList_ReadsEverySliceField()
    {
        ClusterObjects o = Read(ManifestFixtures.KubectlList);
        Assert.Equal(["kubernetes", "web-7xk2p", "kube-dns-8x2fz", "db-q9w8e"], o.EndpointSlices.Select(s => s.Name));

        EndpointSliceObject api = o.Eps("kubernetes");
        Assert.Equal(("default", "kubernetes"), (api.Namespace, api.ServiceName));
        EndpointSpec apiEp = Assert.Single(api.Endpoints);
        Assert.Equal([Ip("172.18.0.2")], apiEp.Addresses);
        Assert.True(apiEp.Ready && apiEp.Serving && !apiEp.Terminating);
        Assert.Null(apiEp.NodeName);
        Assert.Equal(new EndpointPortSpec { Name = "https", Protocol = 6, Port = 6443 }, Assert.Single(api.Ports));

        EndpointSliceObject web = o.Eps("web-7xk2p");
        Assert.Equal(("shop", "web"), (web.Namespace, web.ServiceName));
        Assert.Equal(2, web.Endpoints.Count);
        Assert.Equal((true, true, false, "node-1"), (web.Endpoints[0].Ready, web.Endpoints[0].Serving, web.Endpoints[0].Terminating, web.Endpoints[0].NodeName));
        Assert.Equal((false, true, true, "node-2"), (web.Endpoints[1].Ready, web.Endpoints[1].Serving, web.Endpoints[1].Terminating, web.Endpoints[1].NodeName));
        Assert.Equal([Ip("10.244.2.7")], web.Endpoints[1].Addresses);

        EndpointSliceObject dns = o.Eps("kube-dns-8x2fz");
        Assert.Equal([("dns-tcp", 6, 53), ("dns", 17, 53), ("metrics", 6, 9153)], dns.Ports.Select(p => (p.Name, (int)p.Protocol, (int)p.Port)));
    }

    [Fact]
    public void KubectlList_CountsSkippedObjectsByKind()
    {
        ClusterObjects o = Read(ManifestFixtures.KubectlList);
        Assert.Equal(
            new Dictionary<string, int> { ["EndpointSlice (IPv6)"] = 1, ["NetworkPolicy"] = 1, ["Pod"] = 1 },
            o.Skipped.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary());
        Assert.DoesNotContain(o.EndpointSlices, s => s.Name == "web-v6abc");
    }

    [Fact]
    public void PublishNotReadyAddresses_MarksTheServicesEndpointsReady()
    {
        ClusterObjects o = Read(ManifestFixtures.KubectlList);
        EndpointSpec db = Assert.Single(o.Eps("db-q9w8e").Endpoints);
        // ready: false in the slice, serving defaults to the written ready (false) and stays as written.
        Assert.Equal((true, false, false), (db.Ready, db.Serving, db.Terminating));
        // Other Services' slices are untouched.
        Assert.False(o.Eps("web-7xk2p").Endpoints[1].Ready);
    }

    [Fact]
    public void PublishNotReadyAddresses_AppliesAcrossDocumentsAndOnlyToTheSameNamespace()
    {
        string text = Service("clusterIP: None\npublishNotReadyAddresses: true\nports:\n- port: 80", name: "db", ns: "a") + "---\n"
            + Slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.1]\n  conditions: {ready: false}", name: "db-1", ns: "a", service: "db") + "---\n"
            + Slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.2]\n  conditions: {ready: false}", name: "db-1", ns: "b", service: "db");
        ClusterObjects o = Read(text);
        Assert.True(Assert.Single(o.EndpointSlices, s => s.Namespace == "a").Endpoints[0].Ready);
        Assert.False(Assert.Single(o.EndpointSlices, s => s.Namespace == "b").Endpoints[0].Ready);
    }

    [Fact]
    public void Json_ReadsTheSameObjectsAsYaml()
    {
        ClusterObjects json = ManifestReader.Read(ManifestFixtures.KubectlJson, "svc.json");
        ClusterObjects yaml = Read(ManifestFixtures.KubectlList);
        var web = new ClusterObjects
        {
            Services = [yaml.Svc("shop/web")],
            EndpointSlices = [yaml.Eps("web-7xk2p")],
        };
        Assert.Equal(Dump(web), Dump(json));
    }

    [Fact]
    public void Json_WithTabIndentationAndEscapes()
    {
        string json = "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Service\",\n\t\"metadata\": {\"name\": \"w\\u0065b\", \"annotations\": {\"a\": \"x\\/y\"}},\n"
            + "\t\"spec\": {\"clusterIP\": \"10.96.0.9\", \"ports\": [{\"port\": 80, \"targetPort\": 8080}]}\n}\n";
        ServiceObject s = Assert.Single(ManifestReader.Read(json, "svc.json").Services);
        Assert.Equal("default/web", s.Key);
        Assert.Equal(8080, s.Ports[0].TargetPort);
    }

    [Fact]
    public void MultiDocument_HandWrittenWithDefaults()
    {
        ClusterObjects o = Read(ManifestFixtures.HandWritten);
        ServiceObject echo = o.Svc("default/echo");
        Assert.Equal(ServiceType.NodePort, echo.Type);
        ServicePortSpec p = Assert.Single(echo.Ports);
        Assert.Equal((null, (byte)6, (ushort)7, (ushort)7, (string?)null), (p.Name, p.Protocol, p.Port, p.TargetPort, p.TargetPortName));
        Assert.InRange(p.NodePort, 30000, 32767);
        Assert.Equal(10800, echo.AffinityTimeoutSeconds);
        Assert.Equal((TrafficPolicy.Cluster, TrafficPolicy.Cluster), (echo.ExternalTrafficPolicy, echo.InternalTrafficPolicy));

        EndpointSliceObject eps = o.Eps("echo-1");
        Assert.Equal(("default", "echo"), (eps.Namespace, eps.ServiceName));
        Assert.Equal([(true, true), (false, false)], eps.Endpoints.Select(e => (e.Ready, e.Serving)));
        Assert.Equal(new EndpointPortSpec { Name = null, Protocol = 6, Port = 7 }, Assert.Single(eps.Ports));
    }

    [Theory]
    [InlineData("", true, true, false)]
    [InlineData("conditions: {}", true, true, false)]
    [InlineData("conditions: {ready: null, serving: ~, terminating: }", true, true, false)]
    [InlineData("conditions: {ready: false}", false, false, false)]
    [InlineData("conditions: {ready: true}", true, true, false)]
    [InlineData("conditions: {serving: false}", true, false, false)]
    [InlineData("conditions: {ready: false, serving: true}", false, true, false)]
    [InlineData("conditions: {ready: false, terminating: true}", false, false, true)]
    [InlineData("conditions: {ready: false, serving: true, terminating: true}", false, true, true)]
    [InlineData("conditions: {terminating: true}", true, true, true)]
    public void EndpointConditions_FollowTheNilRules(string conditions, bool ready, bool serving, bool terminating)
    {
        string text = Slice($"addressType: IPv4\nendpoints:\n- addresses: [10.244.1.2]\n  {conditions}");
        EndpointSpec e = Assert.Single(Assert.Single(Read(text).EndpointSlices).Endpoints);
        Assert.Equal((ready, serving, terminating), (e.Ready, e.Serving, e.Terminating));
    }

    [Theory]
    [InlineData("targetPort: http", 0, "http")]
    [InlineData("targetPort: metrics-2", 0, "metrics-2")]
    [InlineData("targetPort: 8080", 8080, null)]
    [InlineData("targetPort: 0", 80, null)]
    [InlineData("targetPort: ''", 80, null)]
    [InlineData("targetPort: null", 80, null)]
    [InlineData("", 80, null)]
    public void TargetPort_NumberNameOrDefault(string targetPort, int number, string? name)
    {
        ServicePortSpec p = Assert.Single(Read(Service($"clusterIP: 10.96.0.9\nports:\n- port: 80\n  {targetPort}")).Services[0].Ports);
        Assert.Equal((number, name), (p.TargetPort, p.TargetPortName));
    }

    [Theory]
    [InlineData("", TrafficPolicy.Cluster)]
    [InlineData("Cluster", TrafficPolicy.Cluster)]
    [InlineData("Global", TrafficPolicy.Cluster)]
    [InlineData("Local", TrafficPolicy.Local)]
    public void ExternalTrafficPolicy_AcceptsTheLegacyGlobalSpelling(string value, TrafficPolicy expected)
    {
        string policy = value.Length == 0 ? "" : $"externalTrafficPolicy: {value}\n";
        string spec = $"type: NodePort\n{policy}clusterIP: 10.96.0.9\nports:\n- port: 80";
        Assert.Equal(expected, Read(Service(spec)).Services[0].ExternalTrafficPolicy);
    }

    [Fact]
    public void ExternalName_NeedsNoClusterIP()
    {
        ServiceObject s = Assert.Single(Read(Service("type: ExternalName\nexternalName: db.example.com.\nports:\n- port: 5432")).Services);
        Assert.Equal((ServiceType.ExternalName, "db.example.com."), (s.Type, s.ExternalName));
        Assert.Empty(s.ClusterIPs);
        Assert.False(s.Headless);
        Assert.Equal(0, s.Ports[0].NodePort);
    }

    [Fact]
    public void ExternalName_IsOnlyKeptForExternalNameServices()
    {
        Assert.Null(Read(Service("clusterIP: 10.96.0.9\nexternalName: x.example.com\nports:\n- port: 80")).Services[0].ExternalName);
    }

    [Fact]
    public void ClusterIPsAlone_AndNoneInClusterIPs()
    {
        Assert.Equal([Ip("10.96.3.3")], Read(Service("clusterIPs: [10.96.3.3]\nports:\n- port: 80")).Services[0].ClusterIPs);
        ServiceObject h = Read(Service("clusterIPs: [None]")).Services[0];
        Assert.True(h.Headless);
        Assert.Empty(h.Ports);
    }

    [Fact]
    public void LoadBalancerIngress_IsKeptForLoadBalancersOnly()
    {
        const string status = "status:\n  loadBalancer:\n    ingress:\n    - ip: 198.51.100.1\n    - hostname: lb.example.com\n    - ip: 198.51.100.2\n";
        ServiceObject lb = Read(Service("type: LoadBalancer\nclusterIP: 10.96.0.9\nports:\n- port: 80") + status).Services[0];
        Assert.Equal([Ip("198.51.100.1"), Ip("198.51.100.2")], lb.LoadBalancerIngress);
        Assert.Empty(Read(Service("clusterIP: 10.96.0.9\nports:\n- port: 80") + status).Services[0].LoadBalancerIngress);
    }

    [Fact]
    public void AcceptedAndIgnoredFields()
    {
        string text = Service("""
            clusterIP: 10.96.0.9
            selector: {app: web}
            ipFamilies: [IPv4]
            ipFamilyPolicy: PreferDualStack
            loadBalancerClass: example.com/lb
            loadBalancerIP: 198.51.100.7
            loadBalancerSourceRanges: []
            trafficDistribution: PreferClose
            allocateLoadBalancerNodePorts: false
            sessionAffinity: None
            publishNotReadyAddresses: no
            ports:
            - port: 80
              appProtocol: kubernetes.io/h2c
            """).Replace("metadata:\n", "metadata:\n  finalizers: [x]\n  generation: 4\n  somethingNew: {a: 1}\n", StringComparison.Ordinal);
        ServiceObject s = Assert.Single(Read(text).Services);
        Assert.False(s.PublishNotReadyAddresses);
        Assert.Empty(Read(text).Skipped);
    }

    [Fact]
    public void SkippedKinds_AreCountedNotRead()
    {
        string text = """
            apiVersion: v1
            kind: Namespace
            metadata: {name: shop}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: c}
            data: {a: b}
            ---
            apiVersion: v1
            kind: Node
            metadata: {name: node-1}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: d}
            ---
            apiVersion: serving.knative.dev/v1
            kind: Service
            metadata: {name: hello}
            spec: {template: {spec: {containers: [{image: x}]}}}
            ---
            apiVersion: v1
            kind: Endpoints
            metadata: {name: web}
            subsets: []
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: {name: ext}
            addressType: FQDN
            endpoints: [{addresses: [db.example.com]}]
            """;
        ClusterObjects o = Read(text);
        Assert.Empty(o.Services);
        Assert.Empty(o.EndpointSlices);
        Assert.Equal(
            new Dictionary<string, int>
            {
                ["ConfigMap"] = 2, ["EndpointSlice (FQDN)"] = 1, ["Endpoints"] = 1, ["Namespace"] = 1, ["Node"] = 1,
                ["Service (serving.knative.dev/v1)"] = 1,
            },
            o.Skipped.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary());
    }

    [Fact]
    public void TypedListsFromTheApi_ItemsWithoutKind()
    {
        string text = """
            apiVersion: v1
            kind: ServiceList
            items:
            - metadata: {name: a, namespace: x}
              spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSliceList
            items:
            - metadata: {name: a-1, namespace: x, labels: {kubernetes.io/service-name: a}}
              addressType: IPv4
              endpoints: [{addresses: [10.244.0.5]}]
            ---
            apiVersion: v1
            kind: PodList
            items:
            - metadata: {name: p1}
            - metadata: {name: p2}
            """;
        ClusterObjects o = Read(text);
        Assert.Equal("x/a", Assert.Single(o.Services).Key);
        Assert.Equal("a", Assert.Single(o.EndpointSlices).ServiceName);
        Assert.Equal(2, o.Skipped["Pod"]);
    }

    [Theory]
    [InlineData("")]
    [InlineData("# only a comment\n")]
    [InlineData("---\n---\n...\n")]
    [InlineData("apiVersion: v1\nkind: List\nitems: []\n")]
    [InlineData("apiVersion: v1\nkind: List\n")]
    public void EmptyInput_IsAnEmptySet(string text)
    {
        ClusterObjects o = Read(text);
        Assert.Empty(o.Services);
        Assert.Empty(o.EndpointSlices);
        Assert.Empty(o.Skipped);
    }

    [Fact]
    public void ByteOrderMark_IsIgnored()
    {
        Assert.Single(Read("\uFEFF" + Service("clusterIP: 10.96.0.9\nports:\n- port: 80")).Services);
    }

    [Fact]
    public void YamlBooleansAndAnchors()
    {
        string text = Service("""
            type: NodePort
            clusterIP: 10.96.0.9
            publishNotReadyAddresses: yes
            ports:
            - &p {name: a, port: 80, nodePort: 30001}
            - {name: b, port: 81, nodePort: 30002}
            """);
        ServiceObject s = Assert.Single(Read(text).Services);
        Assert.True(s.PublishNotReadyAddresses);
        Assert.Equal(30001, s.Ports[0].NodePort);
    }

    [Fact]
    public void Options_MustDescribeAValidRange()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ManifestReader.Read("", "x", new ManifestOptions { NodePortMin = 40000, NodePortMax = 30000 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ManifestReader.Read("", "x", new ManifestOptions { NodePortMin = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ManifestReader.Read("", "x", new ManifestOptions { NodePortMax = 65536 }));
    }
}

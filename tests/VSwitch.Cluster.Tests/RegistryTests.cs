using k8s;
using k8s.Models;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Cluster.Tests;

public sealed class RegistryTests(EtcdServer etcd) : IClassFixture<EtcdServer>
{
    private ObjectRegistry New(EtcdStore s, out string prefix)
    {
        prefix = "/r" + Guid.NewGuid().ToString("N")[..8];
        _ = Ipv4Prefix.TryParse("10.96.0.0/12", out Ipv4Prefix svc, out _);
        return new ObjectRegistry(s, prefix, ManifestOptions.Default, svc);
    }

    private const string Web = """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          type: NodePort
          ports: [{name: http, port: 80, targetPort: 8080}]
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        ports: [{name: http, port: 8080}]
        endpoints: [{addresses: [10.244.1.2], nodeName: n1}]
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop, labels: {team: blue}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: web-1, namespace: shop, labels: {app: web}}
        spec: {nodeName: n1, containers: [{name: web, image: busybox, ports: [{name: http, containerPort: 8080}]}]}
        status: {podIP: 10.244.1.2, podIPs: [{ip: 10.244.1.2}]}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {}}], ports: [{port: http}]}]
        """;

    [Fact]
    public async Task Apply_keeps_each_kind_at_its_key_with_the_real_field_names()
    {
        using EtcdStore s = etcd.Open();
        ObjectRegistry r = New(s, out string prefix);
        List<AppliedObject> done = await r.ApplyAsync(Web, "web.yaml", default);
        Assert.Equal(["created"], done.Select(d => d.Action).Distinct());
        Assert.Equal(5, done.Count);
        Assert.All(done, d => Assert.True(d.ResourceVersion > 0));
        (List<StoreEntry> all, _) = await s.ListAsync(prefix + "/registry/");
        Assert.Equal(
            [$"{prefix}/registry/endpointslices/shop/web-1", $"{prefix}/registry/namespaces/shop", $"{prefix}/registry/networkpolicies/shop/web",
             $"{prefix}/registry/pods/shop/web-1", $"{prefix}/registry/services/shop/web"],
            all.Select(e => e.Key).Order(StringComparer.Ordinal));
        string svc = all.Single(e => e.Key.EndsWith("services/shop/web", StringComparison.Ordinal)).Text;
        // What the API server would have added: a ClusterIP from the range, a node port, identity; never the resourceVersion.
        var stored = KubernetesJson.Deserialize<V1Service>(svc);
        Assert.True(Ipv4Address.TryParse(stored.Spec.ClusterIP, out Ipv4Address ip) && ip.Value >> 20 == Ipv4Address.Parse("10.96.0.0").Value >> 20);
        Assert.InRange(stored.Spec.Ports[0].NodePort ?? 0, 30000, 32767);
        Assert.False(string.IsNullOrEmpty(stored.Metadata.Uid));
        Assert.Null(stored.Metadata.ResourceVersion);
        Assert.Contains("\"targetPort\":8080", svc, StringComparison.Ordinal);
        Assert.Contains("\"addressType\":\"IPv4\"", all.Single(e => e.Key.Contains("endpointslices", StringComparison.Ordinal)).Text, StringComparison.Ordinal);
        // Reads give the etcd revision as resourceVersion.
        var got = (V1Service?)await r.GetAsync(KubeObjects.Find("svc")!, "shop", "web", default);
        Assert.Equal(all.Single(e => e.Key.EndsWith("services/shop/web", StringComparison.Ordinal)).ModRevision.ToString(), got!.Metadata.ResourceVersion);
    }

    [Fact]
    public async Task Reapplying_keeps_identity_address_and_node_port_and_reports_unchanged()
    {
        using EtcdStore s = etcd.Open();
        ObjectRegistry r = New(s, out _);
        await r.ApplyAsync(Web, "web.yaml", default);
        var before = (V1Service?)await r.GetAsync(KubeObjects.Find("services")!, "shop", "web", default);
        List<AppliedObject> again = await r.ApplyAsync(Web, "web.yaml", default);
        Assert.Equal(["unchanged"], again.Select(d => d.Action).Distinct());
        List<AppliedObject> changed = await r.ApplyAsync(Web.Replace("targetPort: 8080", "targetPort: 9090", StringComparison.Ordinal), "web.yaml", default);
        Assert.Equal("configured", changed.Single(c => c.Kind == "Service").Action);
        var after = (V1Service?)await r.GetAsync(KubeObjects.Find("services")!, "shop", "web", default);
        Assert.Equal(before!.Metadata.Uid, after!.Metadata.Uid);
        Assert.Equal(before.Spec.ClusterIP, after.Spec.ClusterIP);
        Assert.Equal(before.Spec.Ports[0].NodePort, after.Spec.Ports[0].NodePort);
        Assert.Equal(2, after.Metadata.Generation);
    }

    [Fact]
    public async Task A_stale_resourceVersion_is_a_conflict_and_nothing_is_written()
    {
        using EtcdStore s = etcd.Open();
        ObjectRegistry r = New(s, out string prefix);
        await r.ApplyAsync(Web, "web.yaml", default);
        var ns = (V1Namespace?)await r.GetAsync(KubeObjects.Find("ns")!, null, "shop", default);
        string rv = ns!.Metadata.ResourceVersion;
        // Someone else changes it first.
        await r.ApplyAsync("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: red}}\n", "x", default);
        long revBefore = await s.RevisionAsync();
        string stale = $"apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, resourceVersion: \"{rv}\", labels: {{team: green}}}}\n---\n"
            + "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n";
        ConflictException e = await Assert.ThrowsAsync<ConflictException>(() => r.ApplyAsync(stale, "x", default));
        Assert.Contains("Namespace shop: the object has been modified", e.Message, StringComparison.Ordinal);
        Assert.Equal(revBefore, await s.RevisionAsync());
        Assert.Null(await s.GetAsync($"{prefix}/registry/namespaces/other"));
        // Deleting at a stale version is a conflict too; at the current one it works.
        var cur = (V1Namespace?)await r.GetAsync(KubeObjects.Find("ns")!, null, "shop", default);
        await Assert.ThrowsAsync<ConflictException>(() => r.DeleteAsync(KubeObjects.Find("ns")!, null, "shop", long.Parse(rv), default));
        Assert.True(await r.DeleteAsync(KubeObjects.Find("ns")!, null, "shop", long.Parse(cur!.Metadata.ResourceVersion), default));
        Assert.False(await r.DeleteAsync(KubeObjects.Find("ns")!, null, "shop", null, default));
    }

    [Theory]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 70000}]}\n", "Service default/a: spec.ports[0].port")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {portz: 1}\n", "Service a: unknown field 'portz' (in ServiceSpec)")]
    [InlineData("apiVersion: v1\nkind: Namespace\nmetadata: {name: Not_A_Label}\n", "Namespace Not_A_Label: metadata.name: 'Not_A_Label' is not valid")]
    [InlineData("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n", "Pod default/p: spec.containers: required")]
    [InlineData("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 80, protocol: ICMP}]}]}\n", "Pod default/p: spec.containers[0].ports[0].protocol: 'ICMP' is not TCP, UDP or SCTP")]
    [InlineData("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.1.2}\n", "Pod default/p: status.podIP: '10.1.2' is not an IPv4 address")]
    [InlineData("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDR: 10.244.1.1/24}\n", "Node n1: spec.podCIDR: '10.244.1.1/24' is not an IPv4 network")]
    [InlineData("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}\n", "NetworkPolicy default/p: spec.podSelector: required")]
    [InlineData("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}, policyTypes: [Sideways]}\n", "NetworkPolicy default/p: spec.policyTypes[0]: 'Sideways' is not Ingress or Egress")]
    [InlineData("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {matchExpressions: [{key: a, operator: In}]}}\n", "NetworkPolicy default/p: spec.podSelector.matchExpressions[0].values: must be non-empty for operator In")]
    [InlineData("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}\n", "NetworkPolicy default/p: spec.egress[0].to[0]: ipBlock may not be combined")]
    [InlineData("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}\n", "NetworkPolicy default/p: spec.ingress[0].ports[0].endPort: 80 must be between port 90 and 65535")]
    [InlineData("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "kind: ConfigMap (v1) is not kept by the cluster store")]
    [InlineData("apiVersion: apps/v1\nkind: Service\nmetadata: {name: c}\n", "apiVersion: 'apps/v1' is not supported for Service (use v1)")]
    [InlineData("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n", "Namespace a: metadata.name: given twice in one request")]
    public async Task Invalid_objects_are_refused_with_object_field_and_reason_and_nothing_is_applied(string manifest, string message)
    {
        using EtcdStore s = etcd.Open();
        ObjectRegistry r = New(s, out string prefix);
        // A valid object in the same request is not written either.
        ManifestException e = await Assert.ThrowsAsync<ManifestException>(() =>
            r.ApplyAsync("apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n---\n" + manifest, "bad.yaml", default));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        (List<StoreEntry> all, _) = await s.ListAsync(prefix + "/");
        Assert.Empty(all);
    }

    [Fact]
    public async Task A_node_port_taken_by_a_stored_Service_is_refused()
    {
        using EtcdStore s = etcd.Open();
        ObjectRegistry r = New(s, out _);
        await r.ApplyAsync("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}\n", "a", default);
        ManifestException e = await Assert.ThrowsAsync<ManifestException>(() =>
            r.ApplyAsync("apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}\n", "b", default));
        Assert.Contains("Service default/b: spec.ports[0].nodePort: 30080 is already allocated to Service default/a", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_ClusterIP_is_allocated_once_and_freed_with_its_Service()
    {
        using EtcdStore s = etcd.Open();
        ObjectRegistry r = New(s, out string prefix);
        await r.ApplyAsync("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n", "a", default);
        Assert.Equal("default/a", (await s.GetAsync($"{prefix}/ranges/serviceips/10.96.0.10"))!.Value.Text);
        ManifestException e = await Assert.ThrowsAsync<ManifestException>(() =>
            r.ApplyAsync("apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n", "b", default));
        Assert.Contains("Service default/b: spec.clusterIP: 10.96.0.10 is already allocated to Service default/a", e.Message, StringComparison.Ordinal);
        Assert.True(await r.DeleteAsync(KubeObjects.Find("svc")!, "default", "a", null, default));
        Assert.Null(await s.GetAsync($"{prefix}/ranges/serviceips/10.96.0.10"));
        await r.ApplyAsync("apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n", "b", default);
        // A changed address frees the old one.
        await r.ApplyAsync("apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}\n", "b", default);
        Assert.Null(await s.GetAsync($"{prefix}/ranges/serviceips/10.96.0.10"));
        Assert.Equal("default/b", (await s.GetAsync($"{prefix}/ranges/serviceips/10.96.0.11"))!.Value.Text);
    }

    [Fact]
    public async Task Applies_racing_for_one_node_port_do_not_both_get_it()
    {
        using EtcdStore s = etcd.Open();
        ObjectRegistry r = New(s, out string prefix);
        Task<Exception?>[] racers = Enumerable.Range(0, 4).Select(i => Task.Run<Exception?>(async () =>
        {
            try
            {
                await r.ApplyAsync($"apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{type: NodePort, ports: [{{port: 80, nodePort: 31000}}]}}\n", "x", default);
                return null;
            }
            catch (Exception e) when (e is ManifestException or ConflictException)
            {
                return e;
            }
        })).ToArray();
        Exception?[] outcomes = await Task.WhenAll(racers);
        Assert.Single(outcomes, o => o is null);
        Assert.All(outcomes.Where(o => o is not null), o => Assert.Contains("31000 is already allocated", o!.Message, StringComparison.Ordinal));
        (List<StoreEntry> services, _) = await s.ListAsync($"{prefix}/registry/services/");
        Assert.Single(services);
    }

    [Theory]
    [InlineData(100_000, "collections nested deeper than 64 levels")]
    [InlineData(0, "invalid YAML")]
    public void Hostile_manifests_are_errors_not_crashes(int depth, string message)
    {
        string text = depth > 0 ? "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: " + new string('[', depth) : "kind: [\n  - {";
        ManifestException e = Assert.Throws<ManifestException>(() => KubeObjects.Read(text, "hostile.yaml"));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Keys_follow_the_registry_layout()
    {
        KubeKind svc = KubeObjects.Find("svc")!, node = KubeObjects.Find("nodes")!, np = KubeObjects.Find("NetworkPolicy")!;
        Assert.Equal("/p/registry/services/ns1/web", KubeObjects.Key("/p", svc, "ns1", "web"));
        Assert.Equal("/p/registry/nodes/n1", KubeObjects.Key("/p", node, null, "n1"));
        Assert.Equal((np, "ns1", "deny"), KubeObjects.ParseKey("/p", "/p/registry/networkpolicies/ns1/deny"));
        Assert.Null(KubeObjects.ParseKey("/p", "/p/registry/services/onlyns"));
        Assert.Null(KubeObjects.ParseKey("/p", "/p/registry/configmaps/a/b"));
    }
}

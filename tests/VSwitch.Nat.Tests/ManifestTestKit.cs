using VSwitch.Nat.Cluster;

namespace VSwitch.Nat.Tests;

/// <summary>Helpers for manifest tests: building documents, locating text, failing reads, dumping objects.</summary>
internal static class ManifestTestKit
{
    /// <summary>A Service document with the given spec body (written without indentation).</summary>
    public static string Service(string spec, string name = "web", string ns = "default") =>
        $"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{Indent(spec, 2)}\n";

    /// <summary>An EndpointSlice document with the given body (addressType, endpoints, ports; no indentation).</summary>
    public static string Slice(string body, string name = "web-abc", string ns = "default", string service = "web") =>
        $"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: {service}\n{body}\n";

    public static string Indent(string text, int spaces) =>
        string.Join('\n', text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n').Select(l => l.Length == 0 ? l : new string(' ', spaces) + l));

    /// <summary>"line:col" (1-based) of the <paramref name="occurrence"/>-th <paramref name="needle"/> in <paramref name="text"/>.</summary>
    public static string At(string text, string needle, int occurrence = 1)
    {
        int index = -1;
        for (int i = 0; i < occurrence; i++)
        {
            index = text.IndexOf(needle, index + 1, StringComparison.Ordinal);
            Assert.True(index >= 0, $"'{needle}' (occurrence {occurrence}) is not in the test text");
        }
        int line = 1 + text.AsSpan(0, index).Count('\n');
        int lineStart = index == 0 ? -1 : text.LastIndexOf('\n', index - 1);
        int col = index - lineStart;
        return $"{line}:{col}";
    }

    public static ManifestException Fails(string text, string source = "svc.yaml", ManifestOptions? options = null) =>
        Assert.Throws<ManifestException>(() => ManifestReader.Read(text, source, options ?? ManifestOptions.Default));

    /// <summary>Asserts that reading fails with exactly one error, <c>svc.yaml:{position of needle}: {message}</c>.</summary>
    public static void FailsWith(string text, string needle, string message, int occurrence = 1, ManifestOptions? options = null)
    {
        ManifestException e = Fails(text, "svc.yaml", options);
        Assert.Equal([$"svc.yaml:{At(text, needle, occurrence)}: {message}"], e.Errors);
        Assert.Equal(e.Errors[0], e.Message);
    }

    public static ClusterObjects Read(string text, ManifestOptions? options = null) =>
        ManifestReader.Read(text, "svc.yaml", options ?? ManifestOptions.Default);

    public static ServiceObject Svc(this ClusterObjects o, string key) => Assert.Single(o.Services, s => s.Key == key);

    public static EndpointSliceObject Eps(this ClusterObjects o, string name) => Assert.Single(o.EndpointSlices, s => s.Name == name);

    /// <summary>Every field of every object, one line each, for comparing two reads.</summary>
    public static string Dump(ClusterObjects o) => string.Join('\n',
        o.Services.Select(s =>
            $"svc {s.Key} {s.Type} ips=[{string.Join(',', s.ClusterIPs)}] headless={s.Headless} ports=[" +
            string.Join(';', s.Ports.Select(p => $"{p.Name}/{p.Protocol}/{p.Port}->{p.TargetPort}|{p.TargetPortName}/np{p.NodePort}")) +
            $"] ext=[{string.Join(',', s.ExternalIPs)}] lb=[{string.Join(',', s.LoadBalancerIngress)}] affinity={s.ClientIPAffinity}/{s.AffinityTimeoutSeconds}" +
            $" etp={s.ExternalTrafficPolicy} itp={s.InternalTrafficPolicy} en={s.ExternalName} pna={s.PublishNotReadyAddresses}")
        .Concat(o.EndpointSlices.Select(e =>
            $"eps {e.Namespace}/{e.Name} svc={e.ServiceName} eps=[" +
            string.Join(';', e.Endpoints.Select(x => $"{string.Join(',', x.Addresses)} r={x.Ready} s={x.Serving} t={x.Terminating} n={x.NodeName}")) +
            "] ports=[" + string.Join(';', e.Ports.Select(p => $"{p.Name}/{p.Protocol}/{p.Port}")) + "]"))
        .Concat(o.Skipped.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => $"skipped {k.Key}={k.Value}")));
}

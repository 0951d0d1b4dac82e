using VSwitch.Nat.Cluster;
using static VSwitch.Nat.Tests.ManifestTestKit;

namespace VSwitch.Nat.Tests;

public sealed class ManifestDirectoryTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), $"vswitch-manifests-{Guid.NewGuid():N}");

    public ManifestDirectoryTests() => Directory.CreateDirectory(dir);

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    private static string Svc(string name, string ip) => Service($"clusterIP: {ip}\nports:\n- port: 80", name: name);

    [Fact]
    public void ReadsManifestFilesSortedByNameAndNothingElse()
    {
        Write("b-web.yaml", Svc("web", "10.96.0.2") + "---\n" + Slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.2]"));
        Write("a-dns.json", """{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}}""");
        Write("c-misc.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n");
        Write("UPPER.YAML", Svc("upper", "10.96.0.3"));
        Write("notes.txt", "not: [valid");
        Write(".#b-web.yaml", "not: [valid");
        Write("sub/d.yaml", "not: [valid");
        Directory.CreateDirectory(Path.Combine(dir, "..data"));

        Assert.Equal(["UPPER.YAML", "a-dns.json", "b-web.yaml", "c-misc.yml"], ManifestReader.ManifestFiles(dir).Select(Path.GetFileName));
        ClusterObjects o = ManifestReader.ReadPath(dir);
        Assert.Equal(["default/upper", "default/dns", "default/web"], o.Services.Select(s => s.Key));
        Assert.Equal("web", Assert.Single(o.EndpointSlices).ServiceName);
        Assert.Equal(1, o.Skipped["ConfigMap"]);
    }

    [Fact]
    public void ObjectsInDifferentFiles_AreOneSet()
    {
        Write("1-svc.yaml", Service("type: NodePort\nclusterIP: 10.96.0.2\npublishNotReadyAddresses: true\nports:\n- port: 80\n  nodePort: 30080"));
        Write("2-eps.yaml", Slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.2]\n  conditions: {ready: false}"));
        ClusterObjects o = ManifestReader.ReadPath(dir);
        Assert.True(o.EndpointSlices[0].Endpoints[0].Ready);

        string other = Write("3-other.yaml", Service("type: NodePort\nclusterIP: 10.96.0.3\nports:\n- port: 80\n  nodePort: 30080", name: "other"));
        ManifestException e = Assert.Throws<ManifestException>(() => ManifestReader.ReadPath(dir));
        Assert.Equal(
            $"{other}:{At(File.ReadAllText(other), "30080")}: Service default/other: spec.ports[0].nodePort: node port 30080/TCP is already used by Service default/web (spec.ports[0])",
            Assert.Single(e.Errors));
    }

    [Fact]
    public void ErrorsNameTheirFiles_InFileOrder()
    {
        string b = Write("b.yaml", Service("clusterIP: 10.96.0.300\nports:\n- port: 80", name: "b"));
        string a = Write("a.yaml", Service("clusterIP: 10.96.0.2\nports:\n- port: 70000", name: "a"));
        string dup = Write("c.yaml", Service("clusterIP: 10.96.0.4\nports:\n- port: 80", name: "a"));
        string broken = Write("d.json", "{\"apiVersion\": \"v1\",\n \"kind\": \"Service\",,}");
        ManifestException e = Assert.Throws<ManifestException>(() => ManifestReader.ReadPath(dir));
        Assert.Equal(4, e.Errors.Count);
        Assert.Equal($"{a}:{At(File.ReadAllText(a), "70000")}: Service default/a: spec.ports[0].port: 70000 is not a port (1-65535)", e.Errors[0]);
        Assert.Equal($"{b}:{At(File.ReadAllText(b), "10.96.0.300")}: Service default/b: spec.clusterIP: '10.96.0.300' is not an IPv4 address", e.Errors[1]);
        Assert.Equal($"{dup}:4:9: Service default/a: metadata.name: duplicate Service default/a: already defined at {a}:4:9", e.Errors[2]);
        Assert.StartsWith($"{broken}:2:", e.Errors[3], StringComparison.Ordinal);
        Assert.Contains("invalid YAML", e.Errors[3], StringComparison.Ordinal);
    }

    [Fact]
    public void ReadsASingleFile_WithOptions()
    {
        string path = Write("svc.txt", Service("type: NodePort\nclusterIP: 10.96.0.2\nports:\n- port: 80"));
        var options = new ManifestOptions { NodePortMin = 31000, NodePortMax = 31009 };
        Assert.InRange(ManifestReader.ReadPath(path, options).Services[0].Ports[0].NodePort, 31000, 31009);
    }

    [Fact]
    public void MissingPath_IsAManifestException()
    {
        string missing = Path.Combine(dir, "nope.yaml");
        ManifestException e = Assert.Throws<ManifestException>(() => ManifestReader.ReadPath(missing));
        Assert.Equal($"{missing}: no such file or directory", Assert.Single(e.Errors));
        e = Assert.Throws<ManifestException>(() => ManifestReader.ReadPath(Path.Combine(dir, "no-dir", "x.yaml")));
        Assert.EndsWith(": no such file or directory", Assert.Single(e.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyDirectory_IsAnEmptySet()
    {
        ClusterObjects o = ManifestReader.ReadPath(dir);
        Assert.Empty(o.Services);
        Assert.Empty(o.EndpointSlices);
    }
}

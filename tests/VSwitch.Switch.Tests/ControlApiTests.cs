using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using VSwitch.Switch.Cli;
using VSwitch.Switch.Config;
using VSwitch.Switch.Control;
using VSwitch.Tap;

namespace VSwitch.Switch.Tests;

/// <summary>
/// A running switch (root: it creates TAP devices and a network namespace) with no ports in its config, a Service
/// manifest directory, the control socket in a private directory and the metrics listener on loopback. Ports come and
/// go through the API.
/// </summary>
public sealed class ApiFixture : IDisposable
{
    public ApiFixture()
    {
        Dir = Directory.CreateTempSubdirectory("vsapi").FullName;
        Socket = Path.Combine(Dir, "ctl", "vswitch.sock");
        Manifests = Path.Combine(Dir, "cluster");
        Directory.CreateDirectory(Manifests);
        File.WriteAllText(Path.Combine(Manifests, "web.yaml"), """
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: default}
            spec:
              clusterIP: 10.96.0.10
              ports: [{name: http, port: 80, targetPort: 8080}]
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
            addressType: IPv4
            endpoints: [{addresses: [10.244.9.5]}]
            ports: [{name: http, port: 8080}]
            """);
        MetricsPort = FreePort();
        Namespace = $"vsapi{Environment.ProcessId % 100000}";
        NetNs.Ip("netns", "add", Namespace);
        SwitchConfig config = ConfigLoader.Parse($$"""
            node: {name: api-test, podCIDR: 10.244.9.0/24}
            control: {socket: {{Socket}}}
            state: {directory: {{Dir}}/state}
            metrics: {listen: "127.0.0.1:{{MetricsPort}}"}
            services: {manifests: {{Manifests}}, reloadSeconds: 3600}
            overlay:
              localAddress: 127.0.0.1
              port: {{FreePort()}}
              learning: false
              peers: [{name: node-2, address: 127.0.0.2, podCIDR: 10.244.10.0/24}]
            ports: []
            """, "api-test.yaml");
        Host = new SwitchHost(config, NullLogger.Instance);
        Host.Start();
        Client = new ControlClient(Socket);
    }

    public string Dir { get; }
    public string Socket { get; }
    public string Manifests { get; }
    public int MetricsPort { get; }
    public string Namespace { get; }
    public SwitchHost Host { get; }
    public ControlClient Client { get; }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        Client.Dispose();
        Host.Dispose();
        NetNs.Delete(Namespace);
        Directory.Delete(Dir, recursive: true);
    }
}

/// <summary>The control API's contract: every resource answers with its JSON shape, errors are Kubernetes Status
/// objects with the right codes, and what the CLI prints with -o json or -o yaml is the API's resource itself.</summary>
public sealed class ControlApiTests : IClassFixture<ApiFixture>
{
    private readonly ApiFixture _f;

    public ControlApiTests(ApiFixture f)
    {
        _f = f;
    }

    private ControlClient C => _f.Client;

    private static int _seq;

    private string NewName() => $"api{Environment.ProcessId % 10000}{Interlocked.Increment(ref _seq)}";

    /// <summary>Sends a raw request; returns the status code and the body.</summary>
    private (int Code, string Body) Raw(string method, string path, string? body = null)
    {
        using var http = new HttpClient(new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(new UnixDomainSocketEndPoint(_f.Socket), ct);
                return new NetworkStream(s, ownsSocket: true);
            },
        }) { BaseAddress = new Uri("http://localhost") };
        using var req = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null) req.Content = new StringContent(body, Encoding.UTF8, "application/json");
        using HttpResponseMessage resp = http.Send(req);
        return ((int)resp.StatusCode, resp.Content.ReadAsStringAsync().GetAwaiter().GetResult());
    }

    private static ApiStatus Status(string body)
    {
        ApiStatus s = JsonSerializer.Deserialize<ApiStatus>(body, ApiJson.Options)!;
        Assert.Equal("Status", s.Kind);
        Assert.Equal("v1", s.ApiVersion);
        Assert.Equal("Failure", s.Status);
        Assert.False(string.IsNullOrWhiteSpace(s.Message));
        return s;
    }

    /// <summary>The JSON parses into the resource, and writing that back gives the same JSON (no field lost or invented).</summary>
    private static T RoundTrip<T>(string json)
    {
        T value = ControlClient.Parse<T>(json);
        string again = JsonSerializer.Serialize(value, ApiJson.Options);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(json), JsonNode.Parse(again)), $"{typeof(T).Name} did not round-trip:\n{json}\n---\n{again}");
        // -o yaml is the same tree.
        object? yaml = new YamlDotNet.Serialization.DeserializerBuilder().Build().Deserialize<object?>(Render.Yaml(json));
        Assert.NotNull(yaml);
        return value;
    }

    [Fact]
    public void Socket_directory_is_private_and_the_socket_root_only()
    {
        UnixFileMode dir = File.GetUnixFileMode(Path.GetDirectoryName(_f.Socket)!);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, dir);
        UnixFileMode sock = File.GetUnixFileMode(_f.Socket);
        Assert.Equal(UnixFileMode.None, sock & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite));
    }

    [Fact]
    public void Every_read_resource_answers_with_its_json_shape()
    {
        StatusInfo st = RoundTrip<StatusInfo>(C.Send(HttpMethod.Get, "/v1/status"));
        Assert.Equal("api-test", st.Node);
        Assert.Equal("10.244.9.1", st.Routing!.Gateway);
        Assert.Equal("adaptive", st.Polling.Mode);
        Assert.Contains("node:       api-test", Render.Status(st), StringComparison.Ordinal);

        RoundTrip<List<PortInfo>>(C.Send(HttpMethod.Get, "/v1/ports"));
        MacList macs = RoundTrip<MacList>(C.Send(HttpMethod.Get, "/v1/mac"));
        Assert.Equal(8192, macs.Capacity);
        RouteTableInfo routes = RoundTrip<RouteTableInfo>(C.Send(HttpMethod.Get, "/v1/routes"));
        Assert.Contains(routes.Routes, r => r.Prefix == "10.244.9.0/24" && r.Kind == "connected");
        RoundTrip<NeighborList>(C.Send(HttpMethod.Get, "/v1/neighbors"));
        PeerList peers = RoundTrip<PeerList>(C.Send(HttpMethod.Get, "/v1/peers"));
        Assert.Contains(peers.Peers, p => p.Name == "node-2" && p.Address == "127.0.0.2" && p.PodCIDR == "10.244.10.0/24" && p.Static);
        ConntrackList ct = RoundTrip<ConntrackList>(C.Send(HttpMethod.Get, "/v1/conntrack?max=10"));
        Assert.Equal(262_144, ct.Capacity);
        ServiceList svc = RoundTrip<ServiceList>(C.Send(HttpMethod.Get, "/v1/services"));
        FrontendInfo web = Assert.Single(svc.Frontends);
        Assert.Equal(("default/web", "10.96.0.10", 80, "TCP"), (web.Service, web.Address, web.Port, web.Protocol));
        Assert.Equal("10.244.9.5", Assert.Single(web.Endpoints).Address);
        CounterReport counters = RoundTrip<CounterReport>(C.Send(HttpMethod.Get, "/v1/counters"));
        Assert.Contains(counters.Stages, s => s.Name == "conntrack");
        GraphInfo graph = RoundTrip<GraphInfo>(C.Send(HttpMethod.Get, "/v1/graph"));
        Assert.Equal("port-rx", graph.Stages[0].Name);
        Assert.Equal("drop", graph.Stages[^1].Name);
        RoundTrip<TraceReport>(C.Send(HttpMethod.Get, "/v1/trace?last=5"));
        string metrics = C.Send(HttpMethod.Get, "/v1/metrics");
        Assert.Contains("# TYPE vswitch_drops_total counter", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public void Errors_are_status_objects_with_codes()
    {
        (int code, string body) = Raw("GET", "/v1/nothing");
        Assert.Equal(404, code);
        Assert.Equal(("NotFound", 404), (Status(body).Reason, Status(body).Code));

        (code, body) = Raw("GET", "/v1/ports/no-such-port");
        Assert.Equal(404, code);
        Assert.Contains("no-such-port", Status(body).Message, StringComparison.Ordinal);

        (code, body) = Raw("GET", "/v1/conntrack?max=0");
        Assert.Equal(400, code);
        Assert.Equal("BadRequest", Status(body).Reason);

        (code, body) = Raw("GET", "/v1/uplink");
        Assert.Equal(404, code);
        Assert.Contains("no uplink", Status(body).Message, StringComparison.Ordinal);

        (code, body) = Raw("POST", "/v1/ports", "{not json");
        Assert.Equal(400, code);
        Assert.Equal("BadRequest", Status(body).Reason);

        (code, body) = Raw("POST", "/v1/ports", """{"name":"x","interfaces":"y"}""");
        Assert.Equal(400, code);
        Assert.Contains("interfaces", Status(body).Message, StringComparison.Ordinal);

        (code, body) = Raw("POST", "/v1/ports", """{"name":"x","interface":"x1","address":"10.244.9.300/24"}""");
        Assert.Equal(422, code);
        ApiStatus s = Status(body);
        Assert.Equal("Invalid", s.Reason);
        Assert.Contains("port.address: '10.244.9.300/24' is not an IPv4 address", s.Message, StringComparison.Ordinal);

        (code, body) = Raw("POST", "/v1/ports", $$"""{"name":"x","interface":"x1","namespace":"{{_f.Namespace}}-absent"}""");
        Assert.Equal(422, code);
        Assert.Contains("does not exist", Status(body).Message, StringComparison.Ordinal);

        (code, body) = Raw("DELETE", "/v1/ports/no-such-port");
        Assert.Equal(404, code);

        (code, body) = Raw("POST", "/v1/trace", """{"count":0}""");
        Assert.Equal(422, code);
        Assert.Equal("Invalid", Status(body).Reason);

        (code, body) = Raw("GET", "/v1/trace?last=abc");
        Assert.Equal(400, code);
    }

    [Fact]
    public void A_port_added_through_the_api_forwards_and_goes_with_its_state()
    {
        string name = NewName();
        string json = C.Send(HttpMethod.Post, "/v1/ports", JsonSerializer.Serialize(new PortSpec
        {
            Name = name,
            Interface = name,
            Namespace = _f.Namespace,
            Address = "10.244.9.20/24",
            Mac = "02:00:0a:f4:09:14",
            Routes = ["10.96.0.0/12 via 10.244.9.1"],
        }, ApiJson.Options));
        PortAdded added = RoundTrip<PortAdded>(json);
        Assert.Equal((name, "api", "access", "tap"), (added.Port.Name, added.Port.Origin, added.Port.Role, added.Port.Kind));
        Assert.Equal("10.244.9.20/24", added.Port.Spec!.Address);

        // Inside the pod: the address, the default route via the gateway, the extra route.
        string routes = Run("ip", "-n", _f.Namespace, "route");
        Assert.Contains("default via 10.244.9.1 dev eth0", routes, StringComparison.Ordinal);
        Assert.Contains("10.96.0.0/12 via 10.244.9.1 dev eth0", routes, StringComparison.Ordinal);
        // The pod is a permanent neighbor from the start.
        NeighborList n = C.Get<NeighborList>("/v1/neighbors");
        Assert.Contains(n.Neighbors, x => x.Address == "10.244.9.20" && x.Port == name && x.State == "permanent");
        // The pod reaches its gateway through the switch.
        Run("ip", "netns", "exec", _f.Namespace, "ping", "-c", "2", "-W", "1", "10.244.9.1");
        Assert.Contains(C.Get<MacList>("/v1/mac").Entries, e => e.Mac == "02:00:0a:f4:09:14" && e.Port == name);

        // Adding the same name again is a conflict.
        (int code, string body) = Raw("POST", "/v1/ports", JsonSerializer.Serialize(new PortSpec { Name = name, Interface = name + "x" }, ApiJson.Options));
        Assert.Equal(409, code);
        Assert.Equal("AlreadyExists", Status(body).Reason);

        // -o json round-trip: the port's resource gives back a spec that adds the same port again.
        PortInfo info = RoundTrip<PortInfo>(C.Send(HttpMethod.Get, $"/v1/ports/{name}"));
        PortRemoved removed = RoundTrip<PortRemoved>(C.Send(HttpMethod.Delete, $"/v1/ports/{name}"));
        Assert.Equal(name, removed.Name);
        Assert.True(removed.MacEntries >= 1, "the pod's MAC entry is flushed");
        Assert.True(removed.Neighbors >= 1, "the pod's neighbor entry is flushed");
        Assert.Contains("10.244.9.20", removed.Addresses);
        Assert.DoesNotContain(C.Get<MacList>("/v1/mac").Entries, e => e.Port == name);
        Assert.DoesNotContain(C.Get<NeighborList>("/v1/neighbors").Neighbors, x => x.Address == "10.244.9.20");
        Assert.DoesNotContain(name, Run("ip", "-n", _f.Namespace, "link"), StringComparison.Ordinal);
        Assert.Equal(404, Raw("GET", $"/v1/ports/{name}").Code);

        PortAdded again = ControlClient.Parse<PortAdded>(C.Send(HttpMethod.Post, "/v1/ports", JsonSerializer.Serialize(info.Spec, ApiJson.Options)));
        Assert.Equal(JsonSerializer.Serialize(info.Spec, ApiJson.Options), JsonSerializer.Serialize(again.Port.Spec, ApiJson.Options));
        C.Send(HttpMethod.Delete, $"/v1/ports/{name}");
    }

    [Fact]
    public void Peers_are_added_changed_and_removed_through_the_api()
    {
        string name = NewName();
        PeerChanged added = RoundTrip<PeerChanged>(C.Send(HttpMethod.Post, "/v1/peers",
            JsonSerializer.Serialize(new PeerSpec { Name = name, Address = "127.0.0.3", PodCIDR = "10.244.11.0/24" }, ApiJson.Options)));
        Assert.Equal("added", added.Action);
        Assert.Contains(C.Get<RouteTableInfo>("/v1/routes").Routes, r => r.Prefix == "10.244.11.0/24" && r.Kind == "peer" && r.Via!.Contains("127.0.0.3", StringComparison.Ordinal));
        // Its default VTEP MAC (0e:00 + its gateway) is a static forwarding entry.
        Assert.Contains(C.Get<PeerList>("/v1/peers").ForwardingTable, e => e.Mac == "0e:00:0a:f4:0b:01" && e.Peer == name && e.Static);

        (int code, string body) = Raw("POST", "/v1/peers", JsonSerializer.Serialize(new PeerSpec { Name = name, Address = "127.0.0.5" }, ApiJson.Options));
        Assert.Equal(409, code);
        Assert.Equal("AlreadyExists", Status(body).Reason);
        (code, body) = Raw("POST", "/v1/peers", JsonSerializer.Serialize(new PeerSpec { Name = name + "x", Address = "127.0.0.6", PodCIDR = "10.244.11.0/24" }, ApiJson.Options));
        Assert.Equal(422, code);
        Assert.Contains("peer.podCIDR: 10.244.11.0/24 overlaps", Status(body).Message, StringComparison.Ordinal);
        (code, body) = Raw("POST", "/v1/peers", JsonSerializer.Serialize(new PeerSpec { Name = name + "y", Address = "127.0.0.2" }, ApiJson.Options));
        Assert.Equal(422, code);
        Assert.Contains("is used by two peers", Status(body).Message, StringComparison.Ordinal);

        PeerChanged moved = RoundTrip<PeerChanged>(C.Send(HttpMethod.Put, $"/v1/peers/{name}", """{"address":"127.0.0.4"}"""));
        Assert.Equal(("updated", "127.0.0.4", "10.244.11.0/24"), (moved.Action, moved.Peer.Address, moved.Peer.PodCIDR));
        Assert.Contains(C.Get<PeerList>("/v1/peers").Peers, p => p.Name == name && p.Address == "127.0.0.4");

        PeerChanged removed = RoundTrip<PeerChanged>(C.Send(HttpMethod.Delete, $"/v1/peers/{name}"));
        Assert.Equal(1, removed.ForwardingEntriesRemoved);
        Assert.DoesNotContain(C.Get<RouteTableInfo>("/v1/routes").Routes, r => r.Prefix == "10.244.11.0/24");
        Assert.Equal(404, Raw("DELETE", $"/v1/peers/{name}").Code);
        Assert.Equal(404, Raw("PUT", $"/v1/peers/{name}", """{"address":"127.0.0.9"}""").Code);
    }

    [Fact]
    public void Services_are_applied_and_deleted_through_the_api()
    {
        string name = NewName();
        string manifest = $$$"""
            apiVersion: v1
            kind: Service
            metadata: {name: {{{name}}}, namespace: default}
            spec: {clusterIP: 10.96.0.30, ports: [{name: http, port: 80, targetPort: 8080}]}
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: {name: {{{name}}}-1, namespace: default, labels: {kubernetes.io/service-name: {{{name}}}}}
            addressType: IPv4
            endpoints: [{addresses: [10.244.9.7]}, {addresses: [10.244.9.8]}]
            ports: [{name: http, port: 8080}]
            """;
        ServiceChangeInfo applied = RoundTrip<ServiceChangeInfo>(C.Send(HttpMethod.Put, "/v1/services", manifest, "application/yaml"));
        Assert.Equal($"default/{name}", Assert.Single(applied.Changed));
        FrontendInfo f = Assert.Single(C.Get<ServiceList>("/v1/services").Frontends, x => x.Service == $"default/{name}");
        Assert.Equal(("10.96.0.30", 2), (f.Address, f.Endpoints.Count));
        // The same objects again change nothing; one endpoint less changes that one Service.
        Assert.Empty(ControlClient.Parse<ServiceChangeInfo>(C.Send(HttpMethod.Put, "/v1/services", manifest, "application/yaml")).Changed);
        ServiceChangeInfo one = ControlClient.Parse<ServiceChangeInfo>(C.Send(HttpMethod.Put, "/v1/services",
            manifest.Replace("{addresses: [10.244.9.7]}, ", "", StringComparison.Ordinal), "application/yaml"));
        Assert.Single(one.Changed);
        Assert.Single(C.Get<ServiceList>("/v1/services").Frontends, x => x.Service == $"default/{name}").Endpoints.ToList().ForEach(e => Assert.Equal("10.244.9.8", e.Address));

        // The manifest directory's objects are its own; a bad manifest names its field.
        (int code, string body) = Raw("PUT", "/v1/services", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}\n");
        Assert.Equal(422, code);
        Assert.Contains("Service default/web is owned by the manifest directory", Status(body).Message, StringComparison.Ordinal);
        (code, body) = Raw("PUT", "/v1/services", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: 10.96.0.12, ports: [{port: 70000}]}\n");
        Assert.Equal(422, code);
        Assert.Contains("70000 is not a port", Status(body).Message, StringComparison.Ordinal);
        Assert.Equal(409, Raw("DELETE", "/v1/services/default/web").Code);

        ServiceChangeInfo deleted = RoundTrip<ServiceChangeInfo>(C.Send(HttpMethod.Delete, $"/v1/services/default/{name}"));
        Assert.Equal($"default/{name}", Assert.Single(deleted.Changed));
        Assert.DoesNotContain(C.Get<ServiceList>("/v1/services").Frontends, x => x.Service == $"default/{name}");
        Assert.Equal(404, Raw("DELETE", $"/v1/services/default/{name}").Code);
        Assert.Equal(200, Raw("DELETE", $"/v1/endpointslices/default/{name}-1").Code);
        Assert.Equal(404, Raw("DELETE", $"/v1/endpointslices/default/{name}-1").Code);
    }

    [Fact]
    public void Trace_is_started_and_cleared_through_the_api()
    {
        TraceState t = RoundTrip<TraceState>(C.Send(HttpMethod.Post, "/v1/trace", """{"count":7}"""));
        Assert.True(t.Remaining >= 7);
        TraceState cleared = RoundTrip<TraceState>(C.Send(HttpMethod.Delete, "/v1/trace"));
        Assert.Equal(0, cleared.Remaining);
    }

    [Fact]
    public void Reload_reports_what_was_applied_and_a_broken_manifest_as_invalid()
    {
        ReloadResult r = RoundTrip<ReloadResult>(C.Send(HttpMethod.Post, "/v1/services/reload"));
        Assert.True(r.Applied);
        Assert.Contains("read 1 Service(s)", r.Result, StringComparison.Ordinal);
        string broken = Path.Combine(_f.Manifests, "zz-broken.yaml");
        File.WriteAllText(broken, "apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec:\n  clusterIP: 10.96.0.99\n  ports: [{port: 70000}]\n");
        try
        {
            (int code, string body) = Raw("POST", "/v1/services/reload");
            Assert.Equal(422, code);
            Assert.Contains("zz-broken.yaml", Status(body).Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(broken);
            C.Send(HttpMethod.Post, "/v1/services/reload");
        }
        Assert.Single(C.Get<ServiceList>("/v1/services").Frontends);
    }

    [Fact]
    public async Task Metrics_listener_serves_prometheus_text_and_probes()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{_f.MetricsPort}") };
        using HttpResponseMessage m = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, m.StatusCode);
        Assert.StartsWith("text/plain", m.Content.Headers.ContentType!.ToString(), StringComparison.Ordinal);
        Assert.Contains("vswitch_stage_packets_total{node=\"api-test\",stage=\"port-rx\"}", await m.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal("ok\n", await http.GetStringAsync("/healthz"));
        Assert.Equal("ok\n", await http.GetStringAsync("/readyz"));
        // The API itself is not on the TCP listener.
        using HttpResponseMessage api = await http.GetAsync("/v1/status");
        Assert.Equal(HttpStatusCode.NotFound, api.StatusCode);
    }

    [Fact]
    public void The_cli_renders_the_resources_as_before()
    {
        string ports = Render.Ports(C.Get<List<PortInfo>>("/v1/ports"), wide: false);
        Assert.StartsWith("PORT", ports, StringComparison.Ordinal);
        string routes = Render.Routes(C.Get<RouteTableInfo>("/v1/routes"));
        Assert.StartsWith("gateway 10.244.9.1, router MAC 0e:00:0a:f4:09:01, tunnel MTU 1450", routes, StringComparison.Ordinal);
        string services = Render.Services(C.Get<ServiceList>("/v1/services"));
        Assert.Contains("default/web  http  ClusterIP  10.96.0.10:80/TCP  10.244.9.5:8080*", services, StringComparison.Ordinal);
        string ct = Render.Conntrack(C.Get<ConntrackList>("/v1/conntrack"));
        Assert.Contains("connection(s) tracked (max 262144)", ct, StringComparison.Ordinal);
    }

    private static string Run(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)} failed: {err}");
        return output;
    }
}

using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using VSwitch.Switch;
using VSwitch.Switch.Cli;
using VSwitch.Switch.Config;
using VSwitch.Switch.Control;
using VSwitch.Tap;

/// <summary>The <c>vswitch</c> command: the daemon (<c>run</c>) and the control CLI.</summary>
internal static partial class Cli
{
    public const int ExitOk = 0;
    public const int ExitFailure = 1;
    public const int ExitConfig = 2;
    public const int ExitEnvironment = 3;
    public const int ExitUnreachable = 4;

    public static int Main(string[] args)
    {
        Option<string> socket = new("--socket", "-s")
        {
            Description = "Control socket of the running switch",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VSWITCH_SOCKET") ?? ControlConfig.DefaultSocket,
            Recursive = true,
        };
        RootCommand root = new("VSwitch: a userspace virtual switch for a Kubernetes-style node. " +
            "'vswitch run' starts the data plane; the other commands talk to a running switch over its control socket.");
        root.Options.Add(socket);

        Option<string?> config = new("--config", "-c") { Description = "YAML config file; without it the embedded default (a three-pod demo node) is used" };
        Command run = new("run", "Run the switch (the node's data plane) until SIGINT/SIGTERM") { config };
        run.SetAction(pr => Run(pr.GetValue(config)));
        root.Subcommands.Add(run);

        Command cfg = new("config", "Show or check configuration");
        Command cfgDefault = new("default", "Print the embedded default config");
        cfgDefault.SetAction(_ =>
        {
            Console.Out.WriteLine(ConfigLoader.EmbeddedDefault);
            return ExitOk;
        });
        Argument<string> file = new("file") { Description = "Config file to check" };
        Command cfgCheck = new("check", "Validate a config file and exit (0 = valid, 2 = invalid)") { file };
        cfgCheck.SetAction(pr => Check(pr.GetValue(file)!));
        cfg.Subcommands.Add(cfgDefault);
        cfg.Subcommands.Add(cfgCheck);
        root.Subcommands.Add(cfg);

        Option<string> output = new("--output", "-o")
        {
            Description = "Output format: table (default), wide (more columns), json or yaml (the API's own resource)",
            DefaultValueFactory = _ => "table",
        };

        AddGet<StatusInfo>(root, socket, output, "status", "Node, uptime, workers, polling, table sizes, routing and overlay summary", "/v1/status", (x, _) => Render.Status(x));
        AddGet<List<PortInfo>>(root, socket, output, "ports", "Ports with rx/tx/drop/error counters (wide: super-frames, role, origin, namespace, address)", "/v1/ports", Render.Ports);
        AddGet<MacList>(root, socket, output, "mac", "The MAC table: MAC, VLAN, port, age", "/v1/mac", (x, _) => Render.Macs(x));
        AddGet<RouteTableInfo>(root, socket, output, "routes", "The IPv4 route table: prefix, kind (local, connected, peer, host, uplink, unreachable), next hop", "/v1/routes", (x, _) => Render.Routes(x));
        AddGet<NeighborList>(root, socket, output, "neighbors", "The ARP neighbor table: address, MAC, port, state, age", "/v1/neighbors", (x, _) => Render.Neighbors(x));
        AddGet<PeerList>(root, socket, output, "peers", "Overlay peers (address, pod CIDR, VTEP MAC, traffic) and the overlay forwarding table (inner MAC -> peer)", "/v1/peers", (x, _) => Render.Peers(x));
        Argument<int> ctMax = new("max") { Description = "Show at most MAX connections", DefaultValueFactory = _ => 1000 };
        Command conntrack = new("conntrack", "Tracked connections like conntrack -L: protocol, timeout, state, original and reply tuples, packets, NAT, the rule that chose the endpoint") { ctMax, output };
        conntrack.SetAction(pr => Show<ConntrackList>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Get, $"/v1/conntrack?max={pr.GetValue(ctMax)}", null, (x, _) => Render.Conntrack(x)));
        root.Subcommands.Add(conntrack);
        AddGet<ServiceList>(root, socket, output, "services", "Services as compiled: frontends (ClusterIP, node port, external and load-balancer IPs), endpoints, traffic policies, affinity", "/v1/services",
            (x, _) => x.Enabled ? Render.Services(x) : throw ApiException.NotFound("Service NAT is off (no services: section in the config)"));
        AddGet<UplinkInfo>(root, socket, output, "uplink", "The uplink's nftables steering rules (node ports, masquerade replies, external IPs) with packet counters", "/v1/uplink", (x, _) => Render.Uplink(x));
        Command reload = new("reload", "Re-read the Service manifests now and report what was applied (or the errors; the running Services stay)") { output };
        reload.SetAction(pr => Show<ReloadResult>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Post, "/v1/services/reload", null, (x, _) => x.Result + "\n"));
        root.Subcommands.Add(reload);
        AddGet<CounterReport>(root, socket, output, "counters", "Per-stage packet counts, stage events and drops by (stage, reason) (wide: what each counter means)", "/v1/counters", Render.Counters);
        AddGet<GraphInfo>(root, socket, output, "graph", "The stage graph: each stage's position, its next stages, calls, packets and drops", "/v1/graph", (x, _) => Render.Graph(x));
        Command metrics = new("metrics", "All counters in Prometheus text format");
        metrics.SetAction(pr => Text(pr.GetValue(socket)!, "/v1/metrics"));
        root.Subcommands.Add(metrics);

        Command trace = new("trace", "Per-stage packet traces");
        Argument<int> count = new("count") { Description = "Number of packets", DefaultValueFactory = _ => 10 };
        Command traceAdd = new("add", "Trace the next COUNT packets received") { count, output };
        traceAdd.SetAction(pr => Show<TraceState>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Post, "/v1/trace",
            JsonSerializer.Serialize(new TraceRequest(pr.GetValue(count)), ApiJson.Options),
            (x, _) => $"tracing the next {x.Remaining} packet(s){(x.PerWorker ? " on each worker" : "")}\n"));
        Argument<int> last = new("count") { Description = "Show the last COUNT traced packets", DefaultValueFactory = _ => 10 };
        Command traceShow = new("show", "Show traced packets stage by stage") { last, output };
        traceShow.SetAction(pr => Show<TraceReport>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Get, $"/v1/trace?last={pr.GetValue(last)}", null, (x, _) => Render.Trace(x)));
        Command traceClear = new("clear", "Forget traced packets and stop tracing") { output };
        traceClear.SetAction(pr => Show<TraceState>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Delete, "/v1/trace", null, (_, _) => "trace cleared\n"));
        trace.Subcommands.Add(traceAdd);
        trace.Subcommands.Add(traceShow);
        trace.Subcommands.Add(traceClear);
        root.Subcommands.Add(trace);

        root.Subcommands.Add(PortCommand(socket, output));
        root.Subcommands.Add(PeerCommand(socket, output));
        root.Subcommands.Add(ServiceCommand(socket, output));
        AddGet<ClusterInfo>(root, socket, output, "cluster", "The cluster store: this node's subnet lease, the peers found in the others' leases, the watches, the objects", "/v1/cluster", (x, _) => Render.Cluster(x));
        AddObjectCommands(root, socket, output);

        return root.Parse(args).Invoke();
    }

    private static void AddGet<T>(RootCommand root, Option<string> socket, Option<string> output, string name, string description, string path, Func<T, bool, string> table)
    {
        Command c = new(name, description) { output };
        c.SetAction(pr => Show(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Get, path, null, table));
        root.Subcommands.Add(c);
    }

    /// <summary>The <c>port</c> commands: add, del, get.</summary>
    private static Command PortCommand(Option<string> socket, Option<string> output)
    {
        Command port = new("port", "Add, remove or show one pod port while the switch forwards");
        Argument<string?> name = new("name") { Description = "Port name (unique)", Arity = ArgumentArity.ZeroOrOne };
        Option<string?> file = new("--file", "-f") { Description = "A port spec in JSON or YAML (the fields of a config file's ports[] entry, or 'vswitch port get NAME -o json' output)" };
        Option<string?> type = new("--type") { Description = "tap (default) or af-packet" };
        Option<string?> iface = new("--interface", "-i") { Description = "TAP device to create, or the existing interface an af-packet port attaches to" };
        Option<string?> ns = new("--namespace", "-n") { Description = "TAP: network namespace (under /run/netns) to move the device into" };
        Option<string?> ifName = new("--ifname") { Description = "TAP: interface name inside the namespace (default eth0)" };
        Option<string?> address = new("--address") { Description = "TAP: address/prefix inside the namespace, e.g. 10.244.1.7/24" };
        Option<string?> mac = new("--mac") { Description = "MAC address of the pod's interface" };
        Option<int?> mtu = new("--mtu") { Description = "MTU (default: the pods' MTU)" };
        Option<string?> gateway = new("--gateway") { Description = "TAP: default route inside the namespace (default: the node's gateway for a pod-subnet address)" };
        Option<string[]> routes = new("--route") { Description = "TAP: another route inside the namespace, 'prefix' or 'prefix via address' (repeatable)" };
        Option<bool?> offloads = new("--offloads") { Description = "Checksum offload and TSO across the port (default true)" };
        Option<int?> qlen = new("--tx-queue-length") { Description = "TAP: the pod's transmit queue length" };
        Command add = new("add", "Add a pod port: create a TAP (moved into a namespace, addressed and routed) or attach an af-packet socket")
        {
            name, file, type, iface, ns, ifName, address, mac, mtu, gateway, routes, offloads, qlen, output,
        };
        add.SetAction(pr =>
        {
            PortSpec spec;
            try
            {
                spec = pr.GetValue(file) is { } f ? ReadPortSpec(f) : new PortSpec();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or YamlDotNet.Core.YamlException or ApiException)
            {
                Console.Error.WriteLine($"vswitch: {pr.GetValue(file)}: {e.Message}");
                return ExitConfig;
            }
            string[] r = pr.GetValue(routes) ?? [];
            spec = spec with
            {
                Name = pr.GetValue(name) ?? spec.Name,
                Type = pr.GetValue(type) ?? spec.Type,
                Interface = pr.GetValue(iface) ?? spec.Interface,
                Namespace = pr.GetValue(ns) ?? spec.Namespace,
                IfName = pr.GetValue(ifName) ?? spec.IfName,
                Address = pr.GetValue(address) ?? spec.Address,
                Mac = pr.GetValue(mac) ?? spec.Mac,
                Mtu = pr.GetValue(mtu) ?? spec.Mtu,
                Gateway = pr.GetValue(gateway) ?? spec.Gateway,
                Routes = r.Length > 0 ? [.. r] : spec.Routes,
                Offloads = pr.GetValue(offloads) ?? spec.Offloads,
                TxQueueLength = pr.GetValue(qlen) ?? spec.TxQueueLength,
            };
            return Show<PortAdded>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Post, "/v1/ports", JsonSerializer.Serialize(spec, ApiJson.Options), (x, _) => Render.PortAdded(x));
        });
        Argument<string> delName = new("name") { Description = "Port name" };
        Command del = new("del", "Remove a pod port: its TAP goes, and its MAC, neighbor and connection entries are flushed") { delName, output };
        del.Aliases.Add("delete");
        del.SetAction(pr => Show<PortRemoved>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Delete, $"/v1/ports/{Uri.EscapeDataString(pr.GetValue(delName)!)}", null, (x, _) => Render.PortRemoved(x)));
        Argument<string> getName = new("name") { Description = "Port name" };
        Command get = new("get", "Show one port (-o json gives a spec 'port add -f' takes back)") { getName, output };
        get.SetAction(pr => Show<PortInfo>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Get, $"/v1/ports/{Uri.EscapeDataString(pr.GetValue(getName)!)}", null, (x, w) => Render.Ports([x], w)));
        port.Subcommands.Add(add);
        port.Subcommands.Add(del);
        port.Subcommands.Add(get);
        return port;
    }

    /// <summary>The <c>peer</c> commands: add, set, del.</summary>
    private static Command PeerCommand(Option<string> socket, Option<string> output)
    {
        Command peer = new("peer", "Add, change or remove an overlay peer while the switch forwards");
        Option<string?> address = new("--address") { Description = "The peer node's underlay address" };
        Option<string?> podCidr = new("--pod-cidr") { Description = "The pod subnet routed to the peer" };
        Option<string?> vtepMac = new("--vtep-mac") { Description = "The peer's VTEP MAC (default 0e:00 + the peer's gateway address bytes)" };
        Argument<string> addName = new("name") { Description = "Peer name (unique)" };
        Command add = new("add", "Add a peer: its route and static forwarding entry apply between two batches") { addName, address, podCidr, vtepMac, output };
        add.SetAction(pr => Show<PeerChanged>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Post, "/v1/peers",
            JsonSerializer.Serialize(new PeerSpec { Name = pr.GetValue(addName), Address = pr.GetValue(address), PodCIDR = pr.GetValue(podCidr), VtepMac = pr.GetValue(vtepMac) }, ApiJson.Options),
            (x, _) => Render.PeerChanged(x)));
        Argument<string> setName = new("name") { Description = "Peer name" };
        Command set = new("set", "Change a peer's underlay address, pod subnet or VTEP MAC (options left out keep their value)") { setName, address, podCidr, vtepMac, output };
        set.SetAction(pr => Show<PeerChanged>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Put, $"/v1/peers/{Uri.EscapeDataString(pr.GetValue(setName)!)}",
            JsonSerializer.Serialize(new PeerSpec { Address = pr.GetValue(address), PodCIDR = pr.GetValue(podCidr), VtepMac = pr.GetValue(vtepMac) }, ApiJson.Options),
            (x, _) => Render.PeerChanged(x)));
        Argument<string> delName = new("name") { Description = "Peer name" };
        Command del = new("del", "Remove a peer, its route and the forwarding entries behind it") { delName, output };
        del.Aliases.Add("delete");
        del.SetAction(pr => Show<PeerChanged>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Delete, $"/v1/peers/{Uri.EscapeDataString(pr.GetValue(delName)!)}", null,
            (x, _) => Render.PeerChanged(x)));
        peer.Subcommands.Add(add);
        peer.Subcommands.Add(set);
        peer.Subcommands.Add(del);
        return peer;
    }

    /// <summary>The <c>service</c> commands: apply a manifest, delete a Service or an EndpointSlice the API gave.</summary>
    private static Command ServiceCommand(Option<string> socket, Option<string> output)
    {
        Command service = new("service", "Apply or delete Services and EndpointSlices through the API, next to the manifest directory's");
        Option<string> file = new("--file", "-f") { Description = "A manifest (YAML or JSON, any number of Service and EndpointSlice objects); - reads standard input", Required = true };
        Command apply = new("apply", "Apply the objects of a manifest: only the Services that change are recompiled, each worker takes them between two batches") { file, output };
        apply.SetAction(pr =>
        {
            string path = pr.GetValue(file)!;
            string text;
            try
            {
                text = path == "-" ? Console.In.ReadToEnd() : File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"vswitch: {path}: {e.Message}");
                return ExitConfig;
            }
            return Show<ServiceChangeInfo>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Put, "/v1/services", text, (x, _) => x.Summary + "\n", contentType: "application/yaml");
        });
        Argument<string> name = new("name") { Description = "NAMESPACE/NAME (namespace default when left out)" };
        Command delete = new("delete", "Delete a Service the API gave (its EndpointSlices stay until deleted)") { name, output };
        delete.Aliases.Add("del");
        delete.SetAction(pr => Show<ServiceChangeInfo>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Delete, "/v1/services/" + NsName(pr.GetValue(name)!), null, (x, _) => x.Summary + "\n"));
        Argument<string> sliceName = new("name") { Description = "NAMESPACE/NAME of the EndpointSlice" };
        Command deleteSlice = new("delete-endpointslice", "Delete an EndpointSlice the API gave") { sliceName, output };
        deleteSlice.SetAction(pr => Show<ServiceChangeInfo>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Delete, "/v1/endpointslices/" + NsName(pr.GetValue(sliceName)!), null, (x, _) => x.Summary + "\n"));
        service.Subcommands.Add(apply);
        service.Subcommands.Add(delete);
        service.Subcommands.Add(deleteSlice);
        return service;
    }

    /// <summary>kubectl's verbs on the cluster store: apply -f, get, delete.</summary>
    private static void AddObjectCommands(RootCommand root, Option<string> socket, Option<string> output)
    {
        Option<string> file = new("--filename", "-f") { Description = "A manifest file (YAML or JSON, any number of objects), a directory of them (*.yaml, *.yml, *.json), or - for standard input", Required = true };
        Command apply = new("apply", $"Apply Kubernetes objects ({VSwitch.Cluster.KubeObjects.KindList}) to the cluster store in one transaction: all or nothing; without a store, Services and EndpointSlices go to this node") { file, output };
        apply.SetAction(pr =>
        {
            string path = pr.GetValue(file)!;
            string text;
            try
            {
                text = path == "-" ? Console.In.ReadToEnd()
                    : Directory.Exists(path) ? string.Join("\n---\n", VSwitch.Nat.Cluster.ManifestReader.ManifestFiles(path).Select(File.ReadAllText))
                    : File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"vswitch: {path}: {e.Message}");
                return ExitConfig;
            }
            return Show<ApplyResult>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Post, "/v1/objects", text,
                (x, _) => string.Concat(x.Items.Select(i => $"{i.Kind.ToLowerInvariant()}/{i.Name} {i.Action}\n")), contentType: "application/yaml");
        });
        root.Subcommands.Add(apply);

        Argument<string> kind = new("kind") { Description = $"The kind: {string.Join(", ", VSwitch.Cluster.KubeObjects.Kinds.Select(k => k.Resource))} (or the singular, or a short name: svc, po, ns, no, netpol)" };
        Argument<string?> name = new("name") { Description = "One object (all of the kind when left out)", Arity = ArgumentArity.ZeroOrOne };
        Option<string?> ns = new("--namespace", "-n") { Description = "The namespace (default: 'default' for one object, every namespace for a list)" };
        Command get = new("get", "Show objects of the cluster store with their resourceVersion (-o yaml|json gives what apply takes back)") { kind, name, ns, output };
        get.SetAction(pr =>
        {
            string k = Uri.EscapeDataString(pr.GetValue(kind)!);
            string? n = pr.GetValue(name), nsv = pr.GetValue(ns);
            string q = nsv is null ? "" : "?namespace=" + Uri.EscapeDataString(nsv);
            string path = n is null ? $"/v1/objects/{k}{q}" : $"/v1/objects/{k}/{Uri.EscapeDataString(n)}{q}";
            return Show<System.Text.Json.Nodes.JsonObject>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Get, path, null, (x, _) => Render.Objects(x));
        });
        root.Subcommands.Add(get);

        Argument<string> delName = new("name") { Description = "The object's name" };
        Option<long?> rv = new("--resource-version") { Description = "Delete only if the object is still at this resourceVersion" };
        Command delete = new("delete", "Delete an object from the cluster store") { kind, delName, ns, rv, output };
        delete.SetAction(pr =>
        {
            string? nsv = pr.GetValue(ns);
            var q = new List<string>();
            if (nsv is not null) q.Add("namespace=" + Uri.EscapeDataString(nsv));
            if (pr.GetValue(rv) is { } v) q.Add("resourceVersion=" + v.ToString(System.Globalization.CultureInfo.InvariantCulture));
            string path = $"/v1/objects/{Uri.EscapeDataString(pr.GetValue(kind)!)}/{Uri.EscapeDataString(pr.GetValue(delName)!)}{(q.Count > 0 ? "?" + string.Join("&", q) : "")}";
            return Show<DeleteResult>(pr.GetValue(socket)!, pr.GetValue(output), HttpMethod.Delete, path, null, (x, _) => $"{x.Kind.ToLowerInvariant()}/{x.Name} {x.Action}\n");
        });
        root.Subcommands.Add(delete);
    }

    private static string NsName(string s)
    {
        int slash = s.IndexOf('/', StringComparison.Ordinal);
        return slash < 0 ? "default/" + Uri.EscapeDataString(s) : Uri.EscapeDataString(s[..slash]) + "/" + Uri.EscapeDataString(s[(slash + 1)..]);
    }

    /// <summary>A port spec from a file: JSON or YAML, either the spec itself or a port resource holding one.</summary>
    private static PortSpec ReadPortSpec(string path)
    {
        string text = File.ReadAllText(path);
        if (!text.TrimStart().StartsWith('{'))
        {
            object? yaml = new YamlDotNet.Serialization.DeserializerBuilder().Build().Deserialize<object?>(text);
            text = JsonSerializer.Serialize(JsonTyped(yaml));
        }
        var node = System.Text.Json.Nodes.JsonNode.Parse(text) as System.Text.Json.Nodes.JsonObject
                   ?? throw ApiException.BadRequest("not a JSON or YAML object");
        if (node["spec"] is System.Text.Json.Nodes.JsonObject inner) node = inner;
        return node.Deserialize<PortSpec>(ApiJson.Options) ?? throw ApiException.BadRequest("empty port spec");
    }

    /// <summary>YAML scalars come as strings: numbers and booleans become JSON numbers and booleans again.</summary>
    private static object? JsonTyped(object? y) => y switch
    {
        Dictionary<object, object?> d => d.ToDictionary(kv => kv.Key.ToString()!, kv => JsonTyped(kv.Value)),
        List<object?> l => l.Select(JsonTyped).ToList(),
        string s when long.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long n) => n,
        string s when s is "true" or "false" => s == "true",
        _ => y,
    };

    /// <summary>One request; prints the answer as a table (or wide), or the API's JSON or YAML.</summary>
    private static int Show<T>(string socketPath, string? format, HttpMethod method, string path, string? body, Func<T, bool, string> table, string contentType = "application/json")
    {
        if (!Render.TryParseFormat(format, out OutputFormat f))
        {
            Console.Error.WriteLine($"vswitch: -o {format}: not one of table, wide, json, yaml");
            return ExitConfig;
        }
        try
        {
            using var client = new ControlClient(socketPath);
            string json = client.Send(method, path, body, contentType);
            Console.Out.Write(f switch
            {
                OutputFormat.Json => json.EndsWith('\n') ? json : json + "\n",
                OutputFormat.Yaml => Render.Yaml(json),
                _ => table(ControlClient.Parse<T>(json), f == OutputFormat.Wide),
            });
            return ExitOk;
        }
        catch (UnreachableException e)
        {
            Console.Error.WriteLine($"vswitch: {e.Message}");
            return ExitUnreachable;
        }
        catch (ApiException e)
        {
            Console.Error.WriteLine($"vswitch: {e.Message}");
            return e.Code is 400 or 422 ? ExitConfig : ExitFailure;
        }
        catch (JsonException e)
        {
            Console.Error.WriteLine($"vswitch: the switch's answer is not what this CLI expects ({e.Message}); are the switch and the CLI the same version?");
            return ExitFailure;
        }
    }

    /// <summary>A text resource (Prometheus metrics) printed as it comes.</summary>
    private static int Text(string socketPath, string path)
    {
        try
        {
            using var client = new ControlClient(socketPath);
            Console.Out.Write(client.Send(HttpMethod.Get, path));
            return ExitOk;
        }
        catch (UnreachableException e)
        {
            Console.Error.WriteLine($"vswitch: {e.Message}");
            return ExitUnreachable;
        }
        catch (ApiException e)
        {
            Console.Error.WriteLine($"vswitch: {e.Message}");
            return ExitFailure;
        }
    }

    private static int Check(string path)
    {
        try
        {
            SwitchConfig c = ConfigLoader.LoadFile(path);
            Console.Out.WriteLine($"{path}: valid ({ConfigLoader.Describe(c)})");
            return ExitOk;
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"vswitch: config error: {e.Message}");
            return ExitConfig;
        }
    }

    private static int Run(string? configPath)
    {
        using ILoggerFactory factory = LoggerFactory.Create(b => b
            .SetMinimumLevel(Environment.GetEnvironmentVariable("VSWITCH_LOG") == "debug" ? LogLevel.Debug : LogLevel.Information)
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.IncludeScopes = false;
            })
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
        ILogger log = factory.CreateLogger("vswitch");
        SwitchConfig config;
        try
        {
            config = configPath is null ? ConfigLoader.Parse(ConfigLoader.EmbeddedDefault, "(embedded default)") : ConfigLoader.LoadFile(configPath);
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"vswitch: config error: {e.Message}");
            return ExitConfig;
        }
        if (!Privileges.IsRoot)
            LogNotRoot(log);
        using var stopped = new ManualResetEventSlim();
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stopped.Set();
        });
        using PosixSignalRegistration intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            c.Cancel = true;
            stopped.Set();
        });
        ClusterAgent? cluster = null;
        SwitchHost host;
        try
        {
            if (config.Cluster is not null)
            {
                // The node's subnet comes from its lease: claimed before the data plane is built around it.
                cluster = new ClusterAgent(config, log);
                cluster.Prepare();
                List<string> errors = ConfigLoader.Validate(config);
                if (errors.Count > 0) throw new ConfigException(string.Join("; ", errors));
            }
            host = new SwitchHost(config, log) { Cluster = cluster };
            host.Start();
            cluster?.Attach(host);
        }
        catch (PortException e)
        {
            cluster?.Dispose();
            Console.Error.WriteLine($"vswitch: cannot start: {e.Message}");
            return ExitEnvironment;
        }
        catch (ConfigException e)
        {
            cluster?.Dispose();
            Console.Error.WriteLine($"vswitch: config error: {e.Message}");
            return ExitConfig;
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            cluster?.Dispose();
            Console.Error.WriteLine($"vswitch: cluster: cannot read the TLS files: {e.Message}");
            return ExitConfig;
        }
        LogReady(log, host.NodeName, host.Datapath.Ports.Count, config.Control.Socket,
            (DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime).TotalMilliseconds);
        stopped.Wait();
        LogStopping(log);
        cluster?.Dispose();
        host.Dispose();
        LogStopped(log);
        return ExitOk;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "not running as root: creating TAP devices and AF_PACKET sockets needs CAP_NET_ADMIN and CAP_NET_RAW")]
    private static partial void LogNotRoot(ILogger log);

    [LoggerMessage(Level = LogLevel.Information, Message = "ready: node {Node}, {Ports} port(s), control socket {Socket}, {Ms:F0} ms after the process started")]
    private static partial void LogReady(ILogger log, string node, int ports, string socket, double ms);

    [LoggerMessage(Level = LogLevel.Information, Message = "stopping: removing ports and namespaces this switch created")]
    private static partial void LogStopping(ILogger log);

    [LoggerMessage(Level = LogLevel.Information, Message = "stopped")]
    private static partial void LogStopped(ILogger log);
}

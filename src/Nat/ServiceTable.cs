using System.Collections.Frozen;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>How a frontend is reached: kube-proxy treats ClusterIP as internal traffic and the rest as external.</summary>
public enum FrontendKind : byte
{
    ClusterIP,
    NodePort,
    ExternalIP,
    LoadBalancer,
}

/// <summary>A Service endpoint after target-port resolution.</summary>
public readonly record struct ServiceEndpoint(uint Address, ushort Port, bool Local, bool Ready, bool Serving, bool Terminating, string? NodeName)
{
    public override string ToString() => $"{new Ipv4Address(Address)}:{Port}";
}

/// <summary>
/// One address:port/protocol the switch answers for a Service port (a ClusterIP, the node port on every node address,
/// an external IP, a load-balancer IP), with the endpoints it may pick from, already filtered the way kube-proxy does:
/// ready endpoints, or when none is ready the serving terminating ones.
/// </summary>
public sealed class Frontend
{
    public required string Service { get; init; }
    public required string? PortName { get; init; }
    public required FrontendKind Kind { get; init; }
    /// <summary>0 for a node port (matches every node address).</summary>
    public required uint Address { get; init; }
    public required ushort Port { get; init; }
    public required byte Protocol { get; init; }
    /// <summary>Endpoints any client may get (cluster-wide policy).</summary>
    public required ServiceEndpoint[] Endpoints { get; init; }
    /// <summary>Endpoints on this node (Local policy).</summary>
    public required ServiceEndpoint[] LocalEndpoints { get; init; }
    /// <summary>True when <see cref="Endpoints"/> are the terminating fallback (no endpoint was ready).</summary>
    public bool UsingTerminating { get; init; }
    public TrafficPolicy ExternalPolicy { get; init; }
    public TrafficPolicy InternalPolicy { get; init; }
    public bool Affinity { get; init; }
    public int AffinitySeconds { get; init; }
    /// <summary>Identity of the Service port shared by all its frontends (session affinity is per Service port).</summary>
    public required ulong AffinityKey { get; init; }
    /// <summary>Every endpoint address:port of the Service port, ready or not (used to evict flows to removed ones).</summary>
    public required FrozenSet<ulong> Known { get; init; }

    public bool IsExternal => Kind != FrontendKind.ClusterIP;

    /// <summary>Unique among every frontend this process compiled (the trace names a frontend by it).</summary>
    public int Id { get; } = Interlocked.Increment(ref _nextId);

    private static int _nextId;

    /// <summary>The table key: (address, protocol, port).</summary>
    public ulong Key => ServiceTable.Key(Address, Protocol, Port);

    public override string ToString() =>
        $"{Service}{(PortName is null ? "" : ":" + PortName)} {Kind} {(Address == 0 ? "<node>" : new Ipv4Address(Address).ToString())}:{Port}/{(Protocol == IpProtocol.Tcp ? "TCP" : "UDP")}";
}

/// <summary>Where the node is: its name (EndpointSlice nodeName), its pod subnet and addresses (for node ports).</summary>
public sealed record NodeIdentity
{
    public string? Name { get; init; }
    public required Ipv4Prefix PodCidr { get; init; }
    public IReadOnlyList<Ipv4Address> Addresses { get; init; } = [];
}

/// <summary>One Service compiled for this node: its frontends (none when it is deleted, headless or ExternalName). What
/// the control plane hands every worker for one change.</summary>
public sealed record ServiceDelta(string Service, Frontend[] Frontends)
{
    /// <summary>The Service is deleted (it leaves the table).</summary>
    public bool Removed { get; init; }
}

/// <summary>
/// The compiled Services of one worker: a lookup from (address, protocol, port) to <see cref="Frontend"/>. Frontends are
/// immutable and compiled off the worker, one Service at a time; the worker's table is changed only on the worker's
/// thread, between two batches, a Service at a time (<see cref="Replace"/>), so a change costs what that Service has
/// and a batch sees the Service before or after it, never a mix. Lookups are one hash probe whatever the number of
/// Services.
/// </summary>
public sealed class ServiceTable
{
    public static ServiceTable Empty => new([]);

    private readonly Dictionary<ulong, Frontend> _byKey = [];
    private readonly Dictionary<string, Frontend[]> _byService = new(StringComparer.Ordinal);
    private readonly Dictionary<int, Frontend> _byId = [];
    private readonly HashSet<uint> _nodeAddresses;

    public ServiceTable(IEnumerable<uint> nodeAddresses)
    {
        _nodeAddresses = [.. nodeAddresses];
    }

    /// <summary>Changes applied so far.</summary>
    public long Version { get; private set; }
    /// <summary>Services in the table (with or without frontends).</summary>
    public int ServiceCount => _byService.Count;
    public int Count => _byKey.Count;
    /// <summary>Frontends not taken because another Service already answers on the same address, port and protocol
    /// (the first one keeps it).</summary>
    public long Conflicts { get; private set; }
    public IReadOnlySet<uint> NodeAddresses => _nodeAddresses;

    /// <summary>Every frontend, in the order they were compiled (control plane).</summary>
    public IReadOnlyList<Frontend> Frontends => [.. _byId.Values.OrderBy(f => f.Id)];

    public static ulong Key(uint address, byte protocol, ushort port) => (ulong)address << 32 | (uint)protocol << 16 | port;

    public static ulong EndpointKey(uint address, ushort port) => (ulong)address << 16 | port;

    /// <summary>The frontend a new connection to <paramref name="dst"/>:<paramref name="port"/> hits, or null.</summary>
    public Frontend? Lookup(uint dst, byte protocol, ushort port)
    {
        if (_byKey.TryGetValue(Key(dst, protocol, port), out Frontend? f)) return f;
        if (_nodeAddresses.Contains(dst) && _byKey.TryGetValue(Key(0, protocol, port), out f)) return f;
        return null;
    }

    /// <summary>The frontend under exactly this key (a node port is keyed with address 0), or null.</summary>
    public Frontend? Find(ulong key) => _byKey.GetValueOrDefault(key);

    /// <summary>A frontend by its <see cref="Frontend.Id"/>, while it is in the table (trace).</summary>
    public Frontend? FindById(int id) => _byId.GetValueOrDefault(id);

    /// <summary>The frontends of a Service in the table, or null when the table has no such Service.</summary>
    public Frontend[]? Of(string service) => _byService.GetValueOrDefault(service);

    /// <summary>Puts a Service's frontends in place of what it had (an empty array with <paramref name="remove"/> deletes
    /// it). Returns what it had. Costs what the Service has, not what the table has.</summary>
    public Frontend[] Replace(string service, Frontend[] frontends, bool remove = false)
    {
        Frontend[] old = _byService.GetValueOrDefault(service) ?? [];
        foreach (Frontend f in old)
        {
            if (_byKey.TryGetValue(f.Key, out Frontend? cur) && ReferenceEquals(cur, f)) _byKey.Remove(f.Key);
            _byId.Remove(f.Id);
        }
        if (remove)
        {
            _byService.Remove(service);
        }
        else
        {
            var kept = new List<Frontend>(frontends.Length);
            foreach (Frontend f in frontends)
            {
                if (!_byKey.TryAdd(f.Key, f))
                {
                    Conflicts++;
                    continue;
                }
                _byId[f.Id] = f;
                kept.Add(f);
            }
            _byService[service] = [.. kept];
        }
        Version++;
        return old;
    }

    /// <summary>A table of its own with the same frontends (each worker changes its own).</summary>
    public ServiceTable Clone()
    {
        var t = new ServiceTable(_nodeAddresses) { Version = Version, Conflicts = Conflicts };
        foreach (KeyValuePair<ulong, Frontend> kv in _byKey) t._byKey.Add(kv.Key, kv.Value);
        foreach (KeyValuePair<string, Frontend[]> kv in _byService) t._byService.Add(kv.Key, kv.Value);
        foreach (KeyValuePair<int, Frontend> kv in _byId) t._byId.Add(kv.Key, kv.Value);
        return t;
    }

    /// <summary>Compiles Services and EndpointSlices for this node into a new table. Headless and ExternalName Services
    /// get no frontends; named target ports are resolved per EndpointSlice.</summary>
    public static ServiceTable Compile(ClusterObjects objects, NodeIdentity node, long version = 0)
    {
        var slicesByService = objects.EndpointSlices.GroupBy(s => $"{s.Namespace}/{s.ServiceName}").ToDictionary(g => g.Key, g => g.ToList());
        var t = new ServiceTable(node.Addresses.Select(a => a.Value));
        foreach (ServiceObject svc in objects.Services)
            t.Replace(svc.Key, CompileService(svc, slicesByService.GetValueOrDefault(svc.Key) ?? [], node));
        t.Version = version;
        return t;
    }

    /// <summary>Compiles one Service with its EndpointSlices: a frontend for each ClusterIP, node port, external IP and
    /// load-balancer IP of each port, with the endpoints already filtered as kube-proxy does.</summary>
    public static Frontend[] CompileService(ServiceObject svc, IReadOnlyList<EndpointSliceObject> slices, NodeIdentity node)
    {
        var frontends = new List<Frontend>();
        if (svc.Headless || svc.Type == ServiceType.ExternalName || svc.ClusterIPs.Count == 0) return [];
        foreach (ServicePortSpec port in svc.Ports)
        {
            var all = new List<ServiceEndpoint>();
            foreach (EndpointSliceObject slice in slices)
            {
                EndpointPortSpec? ep = port.TargetPortName is { } named
                    ? slice.Ports.FirstOrDefault(p => p.Name == named && p.Protocol == port.Protocol)
                    : slice.Ports.FirstOrDefault(p => p.Name == port.Name && p.Protocol == port.Protocol)
                      ?? (slice.Ports.Count == 1 && slice.Ports[0].Protocol == port.Protocol ? slice.Ports[0] : null);
                ushort target = ep?.Port ?? port.TargetPort;
                if (port.TargetPortName is not null && ep is null) continue; // the named port is not in this slice
                if (target == 0) continue;
                foreach (EndpointSpec e in slice.Endpoints)
                {
                    foreach (Ipv4Address a in e.Addresses)
                    {
                        bool local = e.NodeName is { } nn && node.Name is not null ? nn == node.Name : node.PodCidr.Contains(a);
                        // publishNotReadyAddresses: every endpoint counts as ready, however the Service and its slices
                        // arrived (together in one manifest, or one by one from the store or the API).
                        all.Add(new ServiceEndpoint(a.Value, target, local, e.Ready || svc.PublishNotReadyAddresses, e.Serving, e.Terminating, e.NodeName));
                    }
                }
            }
            all = all.DistinctBy(e => EndpointKey(e.Address, e.Port)).ToList();
            (ServiceEndpoint[] usable, bool terminating) = Usable(all);
            (ServiceEndpoint[] localEndpoints, _) = Usable(all.Where(e => e.Local).ToList());
            FrozenSet<ulong> known = all.Select(e => EndpointKey(e.Address, e.Port)).ToFrozenSet();
            ulong affinityKey = Key(svc.ClusterIPs[0].Value, port.Protocol, port.Port);
            Frontend Make(FrontendKind kind, uint address, ushort p) => new()
            {
                Service = svc.Key,
                PortName = port.Name,
                Kind = kind,
                Address = address,
                Port = p,
                Protocol = port.Protocol,
                Endpoints = usable,
                LocalEndpoints = localEndpoints,
                UsingTerminating = terminating,
                ExternalPolicy = svc.ExternalTrafficPolicy,
                InternalPolicy = svc.InternalTrafficPolicy,
                Affinity = svc.ClientIPAffinity,
                AffinitySeconds = svc.AffinityTimeoutSeconds,
                AffinityKey = affinityKey,
                Known = known,
            };
            foreach (Ipv4Address ip in svc.ClusterIPs) frontends.Add(Make(FrontendKind.ClusterIP, ip.Value, port.Port));
            if (port.NodePort != 0 && svc.Type is ServiceType.NodePort or ServiceType.LoadBalancer)
                frontends.Add(Make(FrontendKind.NodePort, 0, port.NodePort));
            foreach (Ipv4Address ip in svc.ExternalIPs) frontends.Add(Make(FrontendKind.ExternalIP, ip.Value, port.Port));
            if (svc.Type == ServiceType.LoadBalancer)
                foreach (Ipv4Address ip in svc.LoadBalancerIngress) frontends.Add(Make(FrontendKind.LoadBalancer, ip.Value, port.Port));
        }
        // Within one Service the first definition of an address:port wins.
        return [.. frontends.DistinctBy(f => f.Key)];
    }

    /// <summary>Ready endpoints; when none is ready, the serving terminating ones (kube-proxy's fallback).</summary>
    private static (ServiceEndpoint[], bool) Usable(List<ServiceEndpoint> all)
    {
        ServiceEndpoint[] ready = all.Where(e => e.Ready).ToArray();
        if (ready.Length > 0) return (ready, false);
        ServiceEndpoint[] terminating = all.Where(e => e.Serving && e.Terminating).ToArray();
        return (terminating, terminating.Length > 0);
    }
}

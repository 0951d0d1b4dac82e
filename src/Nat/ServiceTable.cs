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

/// <summary>
/// The compiled Services: an immutable lookup from (address, protocol, port) to <see cref="Frontend"/>. Built off the
/// worker and swapped whole, so a change applies atomically between two batches.
/// </summary>
public sealed class ServiceTable
{
    public static readonly ServiceTable Empty = new([], [], 0, ClusterObjects.Empty);

    private readonly FrozenDictionary<ulong, Frontend> _byKey;
    private readonly FrozenSet<uint> _nodeAddresses;

    private ServiceTable(List<Frontend> frontends, IEnumerable<uint> nodeAddresses, long version, ClusterObjects source)
    {
        Frontends = frontends;
        _byKey = frontends.ToFrozenDictionary(f => Key(f.Address, f.Protocol, f.Port));
        _nodeAddresses = nodeAddresses.ToFrozenSet();
        Version = version;
        Source = source;
    }

    public IReadOnlyList<Frontend> Frontends { get; }
    public long Version { get; }
    public ClusterObjects Source { get; }
    public int Count => Frontends.Count;

    public static ulong Key(uint address, byte protocol, ushort port) => (ulong)address << 32 | (uint)protocol << 16 | port;

    public static ulong EndpointKey(uint address, ushort port) => (ulong)address << 16 | port;

    /// <summary>The frontend a new connection to <paramref name="dst"/>:<paramref name="port"/> hits, or null.</summary>
    public Frontend? Lookup(uint dst, byte protocol, ushort port)
    {
        if (_byKey.TryGetValue(Key(dst, protocol, port), out Frontend? f)) return f;
        if (_nodeAddresses.Contains(dst) && _byKey.TryGetValue(Key(0, protocol, port), out f)) return f;
        return null;
    }

    /// <summary>Compiles Services and EndpointSlices for this node. Headless and ExternalName Services get no
    /// frontends; named target ports are resolved per EndpointSlice.</summary>
    public static ServiceTable Compile(ClusterObjects objects, NodeIdentity node, long version)
    {
        var frontends = new List<Frontend>();
        var slicesByService = objects.EndpointSlices.GroupBy(s => $"{s.Namespace}/{s.ServiceName}").ToDictionary(g => g.Key, g => g.ToList());
        foreach (ServiceObject svc in objects.Services)
        {
            if (svc.Headless || svc.Type == ServiceType.ExternalName || svc.ClusterIPs.Count == 0) continue;
            slicesByService.TryGetValue(svc.Key, out List<EndpointSliceObject>? slices);
            foreach (ServicePortSpec port in svc.Ports)
            {
                var all = new List<ServiceEndpoint>();
                foreach (EndpointSliceObject slice in slices ?? [])
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
                            all.Add(new ServiceEndpoint(a.Value, target, local, e.Ready, e.Serving, e.Terminating, e.NodeName));
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
        }
        // The first definition of an address:port wins (the manifest reader reports real conflicts).
        frontends = frontends.DistinctBy(f => Key(f.Address, f.Protocol, f.Port)).ToList();
        return new ServiceTable(frontends, node.Addresses.Select(a => a.Value), version, objects);
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

using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat.Cluster;

/// <summary>Kubernetes <c>spec.type</c> of a Service.</summary>
public enum ServiceType
{
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

/// <summary><c>externalTrafficPolicy</c> / <c>internalTrafficPolicy</c>.</summary>
public enum TrafficPolicy
{
    Cluster,
    Local,
}

/// <summary>A Service port (<c>spec.ports[]</c>). <see cref="Protocol"/> is the IP protocol number (6 TCP, 17 UDP).</summary>
public sealed record ServicePortSpec
{
    public string? Name { get; init; }
    public required byte Protocol { get; init; }
    public required ushort Port { get; init; }
    /// <summary>Numeric targetPort; 0 when the target port is named (see <see cref="TargetPortName"/>).</summary>
    public ushort TargetPort { get; init; }
    /// <summary>Named targetPort, resolved through the EndpointSlice port of the same name; null when numeric.</summary>
    public string? TargetPortName { get; init; }
    /// <summary>0 when the Service has no node port.</summary>
    public ushort NodePort { get; init; }
}

/// <summary>A Service (<c>v1/Service</c>), IPv4 only.</summary>
public sealed record ServiceObject
{
    public required string Namespace { get; init; }
    public required string Name { get; init; }
    public ServiceType Type { get; init; } = ServiceType.ClusterIP;
    /// <summary><c>spec.clusterIPs</c> (or <c>clusterIP</c>); empty for a headless Service (<c>None</c>) and ExternalName.</summary>
    public IReadOnlyList<Ipv4Address> ClusterIPs { get; init; } = [];
    public bool Headless { get; init; }
    public IReadOnlyList<ServicePortSpec> Ports { get; init; } = [];
    public IReadOnlyList<Ipv4Address> ExternalIPs { get; init; } = [];
    /// <summary><c>status.loadBalancer.ingress[].ip</c>.</summary>
    public IReadOnlyList<Ipv4Address> LoadBalancerIngress { get; init; } = [];
    /// <summary><c>sessionAffinity: ClientIP</c>.</summary>
    public bool ClientIPAffinity { get; init; }
    /// <summary><c>sessionAffinityConfig.clientIP.timeoutSeconds</c> (default 10800).</summary>
    public int AffinityTimeoutSeconds { get; init; } = 10800;
    public TrafficPolicy ExternalTrafficPolicy { get; init; } = TrafficPolicy.Cluster;
    public TrafficPolicy InternalTrafficPolicy { get; init; } = TrafficPolicy.Cluster;
    public string? ExternalName { get; init; }
    /// <summary><c>spec.publishNotReadyAddresses</c>. The manifest reader has already marked every endpoint of this
    /// Service's slices ready, as the EndpointSlice controller does.</summary>
    public bool PublishNotReadyAddresses { get; init; }

    public string Key => $"{Namespace}/{Name}";
}

/// <summary>One endpoint of an EndpointSlice (<c>endpoints[]</c>). Conditions follow the API's nil rules already
/// applied: ready nil → true, serving nil → ready, terminating nil → false.</summary>
public sealed record EndpointSpec
{
    public required IReadOnlyList<Ipv4Address> Addresses { get; init; }
    public bool Ready { get; init; } = true;
    public bool Serving { get; init; } = true;
    public bool Terminating { get; init; }
    public string? NodeName { get; init; }
}

/// <summary>An EndpointSlice port (<c>ports[]</c>).</summary>
public sealed record EndpointPortSpec
{
    public string? Name { get; init; }
    public byte Protocol { get; init; } = 6;
    public required ushort Port { get; init; }
}

/// <summary>An EndpointSlice (<c>discovery.k8s.io/v1</c>, addressType IPv4), owned by the Service named in its
/// <c>kubernetes.io/service-name</c> label.</summary>
public sealed record EndpointSliceObject
{
    public required string Namespace { get; init; }
    public required string Name { get; init; }
    public required string ServiceName { get; init; }
    public IReadOnlyList<EndpointSpec> Endpoints { get; init; } = [];
    public IReadOnlyList<EndpointPortSpec> Ports { get; init; } = [];
}

/// <summary>Everything read from the manifests at one moment.</summary>
public sealed record ClusterObjects
{
    public static readonly ClusterObjects Empty = new();
    public IReadOnlyList<ServiceObject> Services { get; init; } = [];
    public IReadOnlyList<EndpointSliceObject> EndpointSlices { get; init; } = [];
    /// <summary>Objects the manifest reader skipped, counted by kind (<c>Pod</c>, <c>ConfigMap</c>, ...). A kind whose
    /// name matches one that is read but from another API group is keyed <c>Kind (apiVersion)</c>, like
    /// <c>Service (serving.knative.dev/v1)</c>; IPv6 and FQDN slices are keyed <c>EndpointSlice (IPv6)</c> and
    /// <c>EndpointSlice (FQDN)</c>.</summary>
    public IReadOnlyDictionary<string, int> Skipped { get; init; } = System.Collections.ObjectModel.ReadOnlyDictionary<string, int>.Empty;
}

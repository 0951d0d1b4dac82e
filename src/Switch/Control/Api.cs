using System.Text.Json;
using System.Text.Json.Serialization;

namespace VSwitch.Switch.Control;

// The control API's resources (HTTP/1.1 + JSON under /v1/ on the control socket). Field names are camelCase, as
// Kubernetes and most JSON APIs spell them; absent values are left out rather than written as null.

/// <summary>JSON settings shared by the server and the CLI.</summary>
public static class ApiJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        // Plain quotes and non-ASCII in messages (the API is JSON for programs and people, never embedded in HTML).
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}

/// <summary>An error, in the shape of a Kubernetes <c>Status</c>: <c>code</c> is the HTTP status, <c>reason</c> a word
/// that says what kind of failure it is (NotFound, AlreadyExists, Invalid, BadRequest, Conflict, Timeout,
/// InternalError, MethodNotAllowed), <c>message</c> the text for people.</summary>
public sealed record ApiStatus
{
    public string Kind { get; init; } = "Status";
    public string ApiVersion { get; init; } = "v1";
    public string Status { get; init; } = "Failure";
    public required string Message { get; init; }
    public required string Reason { get; init; }
    public required int Code { get; init; }
}

/// <summary>An error a request handler raises; the server answers it as an <see cref="ApiStatus"/>.</summary>
public sealed class ApiException : Exception
{
    public ApiException(int code, string reason, string message) : base(message)
    {
        Code = code;
        Reason = reason;
    }

    public ApiException() : this(500, "InternalError", "internal error") { }
    public ApiException(string message) : this(400, "BadRequest", message) { }
    public ApiException(string message, Exception inner) : base(message, inner)
    {
        Code = 500;
        Reason = "InternalError";
    }

    public int Code { get; }
    public string Reason { get; }

    public static ApiException NotFound(string message) => new(404, "NotFound", message);
    public static ApiException Invalid(string message) => new(422, "Invalid", message);
    public static ApiException BadRequest(string message) => new(400, "BadRequest", message);
    public static ApiException AlreadyExists(string message) => new(409, "AlreadyExists", message);
    public static ApiException Conflict(string message) => new(409, "Conflict", message);
    public static ApiException Timeout(string message) => new(504, "Timeout", message);
    public static ApiException Unavailable(string message) => new(503, "ServiceUnavailable", message);
}

public sealed record StatusInfo
{
    public required string Node { get; init; }
    public required double UptimeSeconds { get; init; }
    public required int Ports { get; init; }
    public required int Workers { get; init; }
    public required int BatchSize { get; init; }
    public required PollingInfo Polling { get; init; }
    /// <summary>The CPUs pods take in on (datapath.podRxCpus), null when unset.</summary>
    public string? PodRxCpus { get; init; }
    public required TableFill MacTable { get; init; }
    public required double MacAgingSeconds { get; init; }
    public required TableFill Buffers { get; init; }
    public RoutingInfo? Routing { get; init; }
    public OverlayInfo? Overlay { get; init; }
    public required string Socket { get; init; }
    public string? StateDirectory { get; init; }
    /// <summary>The cluster membership; null without a cluster store.</summary>
    public ClusterBrief? Cluster { get; init; }
}

/// <summary>The cluster part of the status: ready, degraded or connecting, and why.</summary>
public sealed record ClusterBrief(string State, string Subnet, string? LastError);

/// <summary><c>GET /v1/cluster</c>: this node's lease, the store, the peers found there and the watches.</summary>
public sealed record ClusterInfo
{
    public required string State { get; init; }
    public string? LastError { get; init; }
    public required string Node { get; init; }
    public required IReadOnlyList<string> Endpoints { get; init; }
    /// <summary>The member requests go to now.</summary>
    public string? Member { get; init; }
    /// <summary>Times requests moved to another member after one failed.</summary>
    public long Failovers { get; init; }
    public required string Prefix { get; init; }
    public required string Subnet { get; init; }
    public required string PublicIP { get; init; }
    public required string VtepMac { get; init; }
    public string? LeaseId { get; init; }
    public required int LeaseTTLSeconds { get; init; }
    public string? Network { get; init; }
    public long Vni { get; init; }
    public int Port { get; init; }
    public required long Revision { get; init; }
    public required List<ClusterPeerInfo> Peers { get; init; }
    public required List<WatchInfo> Watches { get; init; }
    public required Dictionary<string, int> Objects { get; init; }
    public long Renewals { get; init; }
    public long RenewFailures { get; init; }
    /// <summary>Times every connection to the members was dropped and dialled again after failing for long.</summary>
    public long Reconnects { get; init; }
    public long BadLeases { get; init; }
    public long BadObjects { get; init; }
    public double LastObjectApplyMs { get; init; }
}

public sealed record ClusterPeerInfo(string Name, string Subnet, string PublicIP, string VtepMac);

public sealed record WatchInfo(string Prefix, bool Watching, long Revision, int Keys, long Lists, long Relists, long Events, long Breaks, string? LastError,
    long HandlerErrors = 0, string? LastHandlerError = null);

/// <summary><c>POST /v1/objects</c>: what applying a manifest did to each object.</summary>
public sealed record ApplyResult(List<VSwitch.Cluster.AppliedObject> Items, double Milliseconds);

/// <summary><c>DELETE /v1/objects/...</c>.</summary>
public sealed record DeleteResult(string Kind, string? Namespace, string Name, string Action);

public sealed record TableFill(int Entries, int Capacity);

public sealed record PollingInfo
{
    /// <summary>adaptive, busy or off.</summary>
    public required string Mode { get; init; }
    public double LimitMicros { get; init; }
    public List<PollWorker>? Workers { get; init; }
}

public sealed record PollWorker(double WindowMicros, bool Streaming, long Grown, long Shrunk, long Probed);

public sealed record RoutingInfo(string PodCIDR, string Gateway, string RouterMac, string ClusterCIDR, int Routes, int Neighbors);

public sealed record OverlayInfo(string LocalAddress, int Port, uint Vni, int UnderlayMtu, bool Learning, int Peers, int ForwardingEntries);

/// <summary>A port: what it is, where it came from, its counters summed over the workers.</summary>
public sealed record PortInfo
{
    public required string Name { get; init; }
    public required int Id { get; init; }
    /// <summary>tap, af-packet, vxlan, uplink, memory.</summary>
    public required string Kind { get; init; }
    /// <summary>access (a pod), host, tunnel or uplink.</summary>
    public required string Role { get; init; }
    public string? Interface { get; init; }
    public required List<string> Offloads { get; init; }
    /// <summary>config (from the config file, removed at shutdown), api (added while running; persistent), or
    /// internal (host interface, tunnel, uplink).</summary>
    public required string Origin { get; init; }
    /// <summary>How the port was asked for (config and API ports): what <c>POST /v1/ports</c> takes.</summary>
    public PortSpec? Spec { get; init; }
    public required PortCounters Counters { get; init; }
}

public sealed record PortCounters(long RxPackets, long RxBytes, long RxDropped, long RxErrors, long TxPackets, long TxBytes,
    long TxDropped, long TxErrors, long RxSuperFrames, long TxSuperFrames);

/// <summary>A pod port to add (<c>POST /v1/ports</c>, <c>vswitch port add</c>): the fields of a config file's
/// <c>ports[]</c> entry.</summary>
public sealed record PortSpec
{
    public string? Name { get; init; }
    /// <summary>tap (default) or af-packet.</summary>
    public string? Type { get; init; }
    /// <summary>TAP device name (created), or the existing interface an af-packet port attaches to.</summary>
    public string? Interface { get; init; }
    /// <summary>TAP: the network namespace (a name under /run/netns) to move the device into.</summary>
    public string? Namespace { get; init; }
    /// <summary>TAP: the interface name inside the namespace (default eth0).</summary>
    public string? IfName { get; init; }
    /// <summary>TAP: address with prefix length inside the namespace, e.g. 10.244.1.7/24.</summary>
    public string? Address { get; init; }
    public string? Mac { get; init; }
    public int? Mtu { get; init; }
    /// <summary>TAP: the default route inside the namespace; default the node's gateway when the address is in the pod subnet.</summary>
    public string? Gateway { get; init; }
    /// <summary>TAP: more routes inside the namespace, as "prefix" or "prefix via address".</summary>
    public List<string>? Routes { get; init; }
    public bool? Offloads { get; init; }
    public int? TxQueueLength { get; init; }
}

/// <summary>What removing a port flushed from the tables (summed over the workers).</summary>
public sealed record PortRemoved
{
    public required string Name { get; init; }
    public required int MacEntries { get; init; }
    public required int Neighbors { get; init; }
    public required int Connections { get; init; }
    /// <summary>The pod addresses whose connections were flushed.</summary>
    public required List<string> Addresses { get; init; }
    public required double Milliseconds { get; init; }
}

public sealed record PortAdded
{
    public required PortInfo Port { get; init; }
    public required double Milliseconds { get; init; }
}

public sealed record MacList(List<MacEntryInfo> Entries, int Capacity);

public sealed record MacEntryInfo(string Mac, int Vlan, string Port, bool Static, double AgeSeconds);

public sealed record RouteTableInfo
{
    public required bool Enabled { get; init; }
    public string? Gateway { get; init; }
    public string? RouterMac { get; init; }
    public int? TunnelMtu { get; init; }
    public List<RouteInfo> Routes { get; init; } = [];
}

public sealed record RouteInfo(string Prefix, string Kind, string? Via);

public sealed record NeighborList(bool Enabled, List<NeighborInfo> Neighbors);

public sealed record NeighborInfo(string Address, string? Mac, string? Port, string State, double? AgeSeconds);

public sealed record PeerList
{
    public required bool Enabled { get; init; }
    public string? LocalAddress { get; init; }
    public int? Port { get; init; }
    public uint? Vni { get; init; }
    public int? UnderlayMtu { get; init; }
    public bool? Learning { get; init; }
    public List<PeerInfo> Peers { get; init; } = [];
    public List<FdbEntryInfo> ForwardingTable { get; init; } = [];
}

public sealed record PeerInfo(string Name, string Address, string? PodCIDR, string? VtepMac, bool Static, long RxPackets, long TxPackets,
    double? LastSeenSecondsAgo);

/// <summary>An overlay peer to add or change (<c>POST /v1/peers</c>, <c>PUT /v1/peers/{name}</c>): the fields of a config
/// file's <c>overlay.peers[]</c> entry.</summary>
public sealed record PeerSpec
{
    public string? Name { get; init; }
    /// <summary>The peer node's underlay address.</summary>
    public string? Address { get; init; }
    /// <summary>The pod subnet routed to it (optional for pure flood-and-learn).</summary>
    public string? PodCIDR { get; init; }
    /// <summary>Default: 0e:00 followed by the four bytes of the peer's gateway.</summary>
    public string? VtepMac { get; init; }
}

/// <summary>What a peer change did.</summary>
public sealed record PeerChanged
{
    public required PeerSpec Peer { get; init; }
    /// <summary>added, updated or removed.</summary>
    public required string Action { get; init; }
    /// <summary>Overlay forwarding entries that went with it (removal).</summary>
    public int ForwardingEntriesRemoved { get; init; }
    public required double Milliseconds { get; init; }
}

public sealed record FdbEntryInfo(string Mac, string Peer, string Address, bool Static, double? AgeSeconds);

public sealed record ConntrackList
{
    public required List<ConnectionInfo> Connections { get; init; }
    public required int Count { get; init; }
    public required int Capacity { get; init; }
    public required bool CapacityPerWorker { get; init; }
    public required long Expired { get; init; }
    public required long Evicted { get; init; }
}

public sealed record ConnectionInfo
{
    public required string Protocol { get; init; }
    public required int ProtocolNumber { get; init; }
    public required long TimeoutSeconds { get; init; }
    public string? State { get; init; }
    public required TupleInfo Original { get; init; }
    public required TupleInfo Reply { get; init; }
    public required bool Unreplied { get; init; }
    public required bool Assured { get; init; }
    public EndpointRef? Dnat { get; init; }
    public EndpointRef? Snat { get; init; }
    public string? Rule { get; init; }
    public bool? PickedUpMidStream { get; init; }
}

public sealed record TupleInfo
{
    public required string Src { get; init; }
    public required string Dst { get; init; }
    public int? Sport { get; init; }
    public int? Dport { get; init; }
    public int? Type { get; init; }
    public int? Id { get; init; }
    public required long Packets { get; init; }
    public required long Bytes { get; init; }
}

public sealed record EndpointRef(string Address, int Port, string? Service = null);

public sealed record ServiceList
{
    public required bool Enabled { get; init; }
    public string? ServiceCIDR { get; init; }
    public string? NodeAddress { get; init; }
    public int Services { get; init; }
    public long Version { get; init; }
    public string? LastLoad { get; init; }
    public string? LastError { get; init; }
    public List<FrontendInfo> Frontends { get; init; } = [];
}

public sealed record FrontendInfo
{
    public required string Service { get; init; }
    public string? PortName { get; init; }
    public required string Kind { get; init; }
    /// <summary>Null for a node port (it answers on every node address).</summary>
    public string? Address { get; init; }
    public required int Port { get; init; }
    public required string Protocol { get; init; }
    public required List<FrontendEndpoint> Endpoints { get; init; }
    public bool TerminatingFallback { get; init; }
    public required string ExternalTrafficPolicy { get; init; }
    public required string InternalTrafficPolicy { get; init; }
    public int? AffinityTimeoutSeconds { get; init; }
}

public sealed record FrontendEndpoint(string Address, int Port, bool Local);

public sealed record ReloadResult(bool Applied, string Result);

/// <summary>What a change to the Services did: the Services that changed, the connections evicted, the milliseconds spent
/// compiling (off the workers), applying (the longest any worker took) and in all.</summary>
public sealed record ServiceChangeInfo(List<string> Changed, int Evicted, double CompileMilliseconds, double WorkerMilliseconds, double TotalMilliseconds, string Summary);

public sealed record UplinkInfo(string Underlay, string NodeAddress, int NodePorts, int ExternalFrontends, string Tap, string? LastError, string Rules);

public sealed record CounterReport
{
    public required List<StageRuntime> Stages { get; init; }
    public required List<DropCount> Drops { get; init; }
    public List<WorkerCounters>? Workers { get; init; }
}

public sealed record StageRuntime(string Name, long Calls, long Packets, List<NamedCount> Counters);

public sealed record NamedCount(string Name, long Value, string? Help = null);

public sealed record DropCount(string Stage, string Reason, long Packets);

public sealed record WorkerCounters(int Worker, long HandOffsRefused, long CopiesDropped, long MessagesDropped, long? Redirects, long? RedirectsDropped);

public sealed record TraceRequest(int Count);

public sealed record TraceState(int Remaining, bool PerWorker);

public sealed record TraceReport(List<WorkerTrace> Workers);

public sealed record WorkerTrace(int Worker, int Remaining, List<TracedPacket> Packets);

public sealed record TracedPacket(uint Id, double OffsetSeconds, List<TraceStep> Steps);

public sealed record TraceStep(string Stage, string Text);

public sealed record GraphInfo(List<GraphStage> Stages, List<ArcInfo> Arcs);

public sealed record GraphStage(int Index, string Name, string? Arc, List<string> Next, long Calls, long Packets, long Drops);

public sealed record ArcInfo(string Name, List<string> Features, string End);

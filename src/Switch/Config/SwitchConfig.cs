using System.Globalization;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L2;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace VSwitch.Switch.Config;

/// <summary>The switch's YAML configuration (camelCase field names, Kubernetes style).</summary>
public sealed class SwitchConfig
{
    public NodeConfig Node { get; set; } = new();
    public ControlConfig Control { get; set; } = new();
    public BridgeConfig Bridge { get; set; } = new();
    public DatapathConfig Datapath { get; set; } = new();
    public HostConfig? Host { get; set; }
    public OverlayConfig? Overlay { get; set; }
    /// <summary>Kubernetes Services (kube-proxy's job); present = connection tracking and Service NAT on.</summary>
    public ServicesConfig? Services { get; set; }
    /// <summary>The way out of the cluster on the node address: node ports from outside, egress masquerade.</summary>
    public UplinkConfig? Uplink { get; set; }
    public ConntrackConfig Conntrack { get; set; } = new();
    /// <summary>Where the switch keeps what must outlive it: pods, peers and Services changed through the API, and the
    /// connections saved at shutdown.</summary>
    public StateConfig State { get; set; } = new();
    /// <summary>Optional plain-HTTP listener for Prometheus and probes.</summary>
    public MetricsConfig? Metrics { get; set; }
    /// <summary>The cluster store (etcd): this node leases its pod subnet there, finds its peers and follows the
    /// Kubernetes objects. Absent: a node configured by its file, its manifest directory and the API alone.</summary>
    public ClusterConfig? Cluster { get; set; }
    public List<PortConfig> Ports { get; set; } = [];
}

/// <summary>The <c>cluster:</c> section: where the cluster store is and how this node takes part.</summary>
public sealed class ClusterConfig
{
    /// <summary>The key prefix: the network config and subnet leases live under PREFIX/network/ (flannel's
    /// <c>-etcd-prefix</c> is PREFIX/network), the Kubernetes objects under PREFIX/registry/.</summary>
    public string Prefix { get; set; } = "/vswitch";
    public EtcdConfig Etcd { get; set; } = new();
    /// <summary>The TTL of this node's subnet lease: a node that stops renewing it (stopped, crashed, cut off) is dropped
    /// by every other node this long after its last renewal.</summary>
    [YamlMember(Alias = "leaseTTLSeconds")]
    public int LeaseTtlSeconds { get; set; } = 60;
    /// <summary>The size of the subnet a node leases, written to the network config when this node creates it.</summary>
    public int SubnetLen { get; set; } = 24;
    /// <summary>How long the switch waits at start for the store when it has no saved subnet to start from.</summary>
    public int StartTimeoutSeconds { get; set; } = 60;
}

public sealed class EtcdConfig
{
    /// <summary>Client URLs of the members, like https://198.18.0.11:2379.</summary>
    public List<string> Endpoints { get; set; } = [];
    /// <summary>PEM: the CA that signed the members' certificates.</summary>
    public string? CaFile { get; set; }
    /// <summary>PEM: this node's client certificate and key (mutual TLS).</summary>
    public string? CertFile { get; set; }
    public string? KeyFile { get; set; }
}

/// <summary>A TCP listener serving /metrics (Prometheus text), /healthz and /readyz over plain HTTP, as kube-proxy
/// (:10249, :10256) and Cilium do. Off unless set.</summary>
public sealed class MetricsConfig
{
    /// <summary>address:port, e.g. 198.18.0.1:10249 or 127.0.0.1:10249.</summary>
    public string? Listen { get; set; }
}

public sealed class ServicesConfig
{
    /// <summary>A manifest file or a directory of them (*.yaml, *.yml, *.json): Services and EndpointSlices. Watched:
    /// changes apply while traffic flows.</summary>
    public string? Manifests { get; set; }
    /// <summary>The Service ClusterIP range (kube-apiserver --service-cluster-ip-range).</summary>
    [YamlMember(Alias = "serviceCIDR")]
    public string ServiceCidr { get; set; } = "10.96.0.0/12";
    /// <summary>kube-apiserver --service-node-port-range.</summary>
    public string NodePortRange { get; set; } = "30000-32767";
    /// <summary>The node's own address, on which node ports answer. Default: overlay.localAddress.</summary>
    public string? NodeAddress { get; set; }
    /// <summary>How often the manifests are checked for changes.</summary>
    public double ReloadSeconds { get; set; } = 1;
}

/// <summary>
/// The node's uplink: an nftables ingress rule on <see cref="Interface"/> steers the traffic that belongs to the switch
/// (node ports, replies to masqueraded connections, external IPs) into the TAP <see cref="Tap"/>; the switch answers
/// through a raw socket on the node address. Pod traffic leaving the cluster goes out this way, masqueraded.
/// </summary>
public sealed class UplinkConfig
{
    /// <summary>The interface that carries the node address (services.nodeAddress, else overlay.localAddress).</summary>
    public string? Interface { get; set; }
    /// <summary>Name of the TAP the steered frames arrive on (created by the switch).</summary>
    public string Tap { get; set; } = "vsw-uplink";
    /// <summary>SNAT pod traffic leaving the cluster CIDR to the node address (ports 61440-65535).</summary>
    public bool Masquerade { get; set; } = true;
}

public sealed class ConntrackConfig
{
    public int MaxEntries { get; set; } = 262_144;
    /// <summary>Seconds, per protocol and state; unset fields keep the Kubernetes node defaults.</summary>
    public ConntrackTimeoutsConfig Timeouts { get; set; } = new();
}

public sealed class ConntrackTimeoutsConfig
{
    public int? TcpSynSent { get; set; }
    public int? TcpSynRecv { get; set; }
    public int? TcpEstablished { get; set; }
    public int? TcpFinWait { get; set; }
    public int? TcpCloseWait { get; set; }
    public int? TcpLastAck { get; set; }
    public int? TcpTimeWait { get; set; }
    public int? TcpClose { get; set; }
    public int? UdpUnreplied { get; set; }
    public int? UdpAssured { get; set; }
    public int? Icmp { get; set; }
}

public sealed class NodeConfig
{
    public string? Name { get; set; }
    /// <summary>This node's pod subnet (Kubernetes Node spec.podCIDR); the switch routes and owns its gateway (.1).
    /// Unset: a plain L2 switch.</summary>
    [YamlMember(Alias = "podCIDR")]
    public string? PodCidr { get; set; }
    /// <summary>The whole cluster's pod network; addresses in it that no node owns get ICMP net unreachable.</summary>
    [YamlMember(Alias = "clusterCIDR")]
    public string ClusterCidr { get; set; } = "10.244.0.0/16";
    /// <summary>MAC of the gateway and VTEP; default 0e:00 followed by the gateway's four address bytes.</summary>
    public string? RouterMac { get; set; }
    /// <summary>The node's labels (its Node object's, like topology.kubernetes.io/zone); kubernetes.io/hostname defaults
    /// to the node name.</summary>
    public Dictionary<string, string> Labels { get; set; } = [];
}

/// <summary>The host-side interface: a TAP in the switch's namespace carrying the gateway address (like cni0/flannel.1).</summary>
public sealed class HostConfig
{
    public string? Interface { get; set; }
    /// <summary>Default 0e:01 followed by the gateway's four address bytes.</summary>
    public string? Mac { get; set; }
    /// <summary>Default: the pods' MTU.</summary>
    public int? Mtu { get; set; }
    /// <summary>Checksum offload and TSO across the TAP (virtio-net header); default true.</summary>
    public bool Offloads { get; set; } = true;
}

public sealed class OverlayConfig
{
    /// <summary>The node's underlay address: the overlay socket binds to it and it is the outer source address.</summary>
    public string? LocalAddress { get; set; }
    public int Port { get; set; } = 4789;
    public long Vni { get; set; } = 1;
    public int UnderlayMtu { get; set; } = 1500;
    /// <summary>Flood-and-learn (Weave sleeve): learn inner MAC → peer, replicate broadcast/unknown to all peers.</summary>
    public bool Learning { get; set; } = true;
    public bool AcceptUnknownPeers { get; set; }
    public int FdbAgingSeconds { get; set; } = 300;
    public List<PeerConfig> Peers { get; set; } = [];
}

public sealed class PeerConfig
{
    public string? Name { get; set; }
    /// <summary>The peer node's underlay address.</summary>
    public string? Address { get; set; }
    [YamlMember(Alias = "podCIDR")]
    public string? PodCidr { get; set; }
    /// <summary>Default: 0e:00 followed by the four bytes of the peer's gateway (first address of its pod CIDR + 1).</summary>
    public string? VtepMac { get; set; }
}

public sealed class StateConfig
{
    public const string DefaultDirectory = "/var/lib/vswitch";
    /// <summary>The state directory (created 0700).</summary>
    public string Directory { get; set; } = DefaultDirectory;
}

public sealed class ControlConfig
{
    public const string DefaultSocket = "/run/vswitch/vswitch.sock";
    public string Socket { get; set; } = DefaultSocket;
}

public sealed class BridgeConfig
{
    public int MacAgingSeconds { get; set; } = 300;
    public int MacTableSize { get; set; } = 8192;
    public string MacTableFullPolicy { get; set; } = "flood";
    public List<StaticMacConfig> StaticMacs { get; set; } = [];
}

public sealed class StaticMacConfig
{
    public string? Mac { get; set; }
    public string? Port { get; set; }
    public int Vlan { get; set; }
}

public sealed class DatapathConfig
{
    public int BatchSize { get; set; } = 64;
    public int Slots { get; set; } = 4096;
    /// <summary>Microseconds to keep polling after traffic before sleeping in epoll (0 = always sleep).</summary>
    public int BusyPollMicros { get; set; }
    /// <summary>With busyPollMicros 0: the longest the worker may learn to keep polling after traffic (adaptive polling:
    /// the window grows while packets come back within it and closes when gaps are longer). 0 sleeps at once.</summary>
    public int AdaptivePollMicros { get; set; } = 200;
    /// <summary>Worker threads, each with its own queue of every port and its own tables; flows are steered so both
    /// directions of one meet one worker. 1..64; several need TAP ports only (no af-packet ports, no uplink yet).</summary>
    public int Workers { get; set; } = 1;
    /// <summary>The CPUs (a list like "0-3,6") on which a pod's kernel takes in what the switch writes to the pod's TAP:
    /// receive packet steering (rps_cpus) on every TAP port the switch creates. Unset: in the switch's own write, on
    /// the switch's CPU (the pod's IP and TCP input then costs the switch's CPU, not the pod's).</summary>
    public string? PodRxCpus { get; set; }
}

public sealed class PortConfig
{
    public string? Name { get; set; }
    /// <summary>tap | af-packet</summary>
    public string Type { get; set; } = "tap";
    /// <summary>TAP device name (created if absent), or the existing interface an af-packet port attaches to.</summary>
    public string? Interface { get; set; }
    /// <summary>TAP only: network namespace to move the device into (a pod).</summary>
    public string? Namespace { get; set; }
    /// <summary>Create the namespace if it does not exist (and delete it at shutdown).</summary>
    public bool CreateNamespace { get; set; }
    /// <summary>Name of the interface inside the namespace.</summary>
    public string IfName { get; set; } = "eth0";
    /// <summary>Address with prefix length for the interface inside the namespace, e.g. 10.244.1.2/24.</summary>
    public string? Address { get; set; }
    /// <summary>Default: the overlay's underlayMtu - 50 when an overlay is configured, else 1500.</summary>
    public int? Mtu { get; set; }
    public string? Mac { get; set; }
    /// <summary>Default route inside the namespace; default: the node's gateway when the address is in the node's podCIDR.</summary>
    public string? Gateway { get; set; }
    /// <summary>Checksum offload and TSO across the port (a virtio-net header on every frame: IFF_VNET_HDR on a TAP,
    /// PACKET_VNET_HDR on an af-packet socket), so TCP crosses it in 64 KB super-frames. Default true.</summary>
    public bool? Offloads { get; set; }
    /// <summary>TAP only: the length of the pod's transmit queue (what `ip link` shows as qlen on the pod's interface):
    /// frames the pod has sent that the switch has not read yet. The kernel drops what does not fit (the pod's TX
    /// dropped counter). Default: the kernel's 1000.</summary>
    public int? TxQueueLength { get; set; }
    /// <summary>TAP in a namespace: more routes inside it, each "prefix" (on the interface) or "prefix via address".</summary>
    public List<string>? Routes { get; set; }
}

/// <summary>A configuration problem: which file, which field, what is wrong.</summary>
public sealed class ConfigException : Exception
{
    public ConfigException(string message) : base(message) { }
    public ConfigException() { }
    public ConfigException(string message, Exception inner) : base(message, inner) { }
}

public static class ConfigLoader
{
    /// <summary>Bounds of ports[].txQueueLength: below 16 a TAP drops at the smallest burst; above 2^20 the queue's ring
    /// alone is 8 MB of pointers per queue.</summary>
    public const int MinTxQueueLength = 16, MaxTxQueueLength = 1 << 20;

    /// <summary>The embedded default: a demo node with three pod namespaces on TAP ports (created and removed by the switch).</summary>
    public const string EmbeddedDefault = """
        # VSwitch embedded default: one node, three pods on TAP ports.
        # The switch creates the pod namespaces and TAP devices, and removes them at shutdown.
        # It routes the pod subnet: the pods get a default route via the gateway 10.244.1.1, which the switch owns
        # (no host interface and no overlay here, so nothing changes outside the pod namespaces).
        node:
          name: node-1
          podCIDR: 10.244.1.0/24
        control:
          socket: /run/vswitch/vswitch.sock
        bridge:
          macAgingSeconds: 300
          macTableSize: 8192
          macTableFullPolicy: flood
        datapath:
          batchSize: 64
        ports:
          - name: pod-a
            type: tap
            interface: vd-tap-a
            namespace: vd-pod-a
            createNamespace: true
            ifName: eth0
            address: 10.244.1.2/24
            mac: 02:00:0a:f4:01:02
          - name: pod-b
            type: tap
            interface: vd-tap-b
            namespace: vd-pod-b
            createNamespace: true
            ifName: eth0
            address: 10.244.1.3/24
            mac: 02:00:0a:f4:01:03
          - name: pod-c
            type: tap
            interface: vd-tap-c
            namespace: vd-pod-c
            createNamespace: true
            ifName: eth0
            address: 10.244.1.4/24
            mac: 02:00:0a:f4:01:04
        """;

    public static SwitchConfig LoadFile(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (FileNotFoundException)
        {
            throw new ConfigException($"{path}: config file not found");
        }
        catch (DirectoryNotFoundException)
        {
            throw new ConfigException($"{path}: config file not found");
        }
        catch (UnauthorizedAccessException)
        {
            throw new ConfigException($"{path}: permission denied reading the config file");
        }
        catch (IOException e)
        {
            throw new ConfigException($"{path}: cannot read the config file: {e.Message}");
        }
        return Parse(text, path);
    }

    public static SwitchConfig Parse(string yaml, string source)
    {
        IDeserializer d = new DeserializerBuilder()
            .WithNamingConvention(CamelCaseNamingConvention.Instance)
            .Build();
        SwitchConfig? cfg;
        try
        {
            cfg = d.Deserialize<SwitchConfig?>(yaml);
        }
        catch (YamlException e)
        {
            string msg = (e.InnerException?.Message ?? e.Message).Trim();
            msg = System.Text.RegularExpressions.Regex.Replace(msg, @"Property '(\w+)' not found on type '[\w.]+\.(\w+)Config'\.?", m =>
                $"unknown field '{m.Groups[1].Value}' in {CounterCase(m.Groups[2].Value)} (check spelling; fields are camelCase)");
            throw new ConfigException($"{source}:{e.Start.Line}:{e.Start.Column}: {msg}");
        }
        cfg ??= new SwitchConfig();
        List<string> errors = Validate(cfg);
        if (errors.Count > 0)
            throw new ConfigException(string.Join(Environment.NewLine, errors.Select(e => $"{source}: {e}")));
        return cfg;
    }

    private static string CounterCase(string typeStem) => typeStem switch
    {
        "Switch" => "the top level",
        "Port" => "a port (ports[])",
        "StaticMac" => "bridge.staticMacs[]",
        "Peer" => "a peer (overlay.peers[])",
        "ConntrackTimeouts" => "conntrack.timeouts",
        _ => char.ToLowerInvariant(typeStem[0]) + typeStem[1..],
    };

    /// <summary>Checks every field; returns "field.path: problem" lines.</summary>
    public static List<string> Validate(SwitchConfig c)
    {
        var errors = new List<string>();
        if (c.Node.Name is { } n && (n.Length == 0 || n.Length > 63)) errors.Add("node.name: must be 1-63 characters");
        if (string.IsNullOrWhiteSpace(c.Control.Socket) || !c.Control.Socket.StartsWith('/')) errors.Add("control.socket: must be an absolute path");
        if (string.IsNullOrWhiteSpace(c.State.Directory) || !c.State.Directory.StartsWith('/')) errors.Add("state.directory: must be an absolute path");
        else if (System.Text.Encoding.UTF8.GetByteCount(c.Control.Socket) > 107) errors.Add("control.socket: path longer than 107 bytes (a Unix socket limit)");
        if (c.Bridge.MacAgingSeconds is < 1 or > 1_000_000) errors.Add($"bridge.macAgingSeconds: {c.Bridge.MacAgingSeconds} is out of range 1..1000000");
        if (c.Bridge.MacTableSize is < 1 or > 1 << 22) errors.Add($"bridge.macTableSize: {c.Bridge.MacTableSize} is out of range 1..4194304");
        if (!TryParsePolicy(c.Bridge.MacTableFullPolicy, out _)) errors.Add($"bridge.macTableFullPolicy: '{c.Bridge.MacTableFullPolicy}' is not one of flood, drop");
        if (c.Datapath.BatchSize is < 1 or > 256) errors.Add($"datapath.batchSize: {c.Datapath.BatchSize} is out of range 1..256");
        if (c.Datapath.BusyPollMicros is < 0 or > 1_000_000) errors.Add($"datapath.busyPollMicros: {c.Datapath.BusyPollMicros} is out of range 0..1000000");
        if (c.Datapath.AdaptivePollMicros is < 0 or > 10_000) errors.Add($"datapath.adaptivePollMicros: {c.Datapath.AdaptivePollMicros} is out of range 0..10000");
        if (c.Datapath.Slots is < 256 or > 1 << 20) errors.Add($"datapath.slots: {c.Datapath.Slots} is out of range 256..1048576");
        if (c.Datapath.PodRxCpus is { } rx)
        {
            if (!CpuList.TryParse(rx, out int[] cpus, out string why)) errors.Add($"datapath.podRxCpus: {why}");
            else if (CpuList.Online() is { } online && cpus.FirstOrDefault(x => !online.Contains(x), -1) is int off and >= 0)
                errors.Add($"datapath.podRxCpus: CPU {off} is not online here (online: {CpuList.Format(online)})");
        }
        if (c.Datapath.Workers is < 1 or > 64) errors.Add($"datapath.workers: {c.Datapath.Workers} is out of range 1..64");
        else if (c.Datapath.Workers > 1)
        {
            // Each worker needs a queue of its own on every port: multi-queue TAP and SO_REUSEPORT give that; an AF_PACKET
            // fanout group and the uplink's TAP and raw sender are not built for it yet.
            if (c.Ports.Any(p => p is { Type: "af-packet" })) errors.Add("datapath.workers: several workers need TAP ports; af-packet ports take one worker (set workers: 1)");
            if (c.Uplink is not null) errors.Add("datapath.workers: several workers are not supported with an uplink yet (set workers: 1)");
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        var ifaces = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < c.Ports.Count; i++) ValidatePort(c.Ports[i], $"ports[{i}]", names, ifaces, errors);
        if (c.Metrics is { } m && (m.Listen is null || !System.Net.IPEndPoint.TryParse(m.Listen, out System.Net.IPEndPoint? ep) || ep.Port == 0
                                   || ep.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork))
            errors.Add($"metrics.listen: '{m.Listen}' is not an IPv4 address:port (like 127.0.0.1:10249)");
        ValidateL3(c, errors, ifaces);
        ValidateCluster(c, errors);
        ValidateServices(c, errors);
        ValidateUplink(c, errors, ifaces);
        for (int i = 0; i < c.Bridge.StaticMacs.Count; i++)
        {
            StaticMacConfig s = c.Bridge.StaticMacs[i];
            string at = $"bridge.staticMacs[{i}]";
            if (!MacAddress.TryParse(s.Mac, out MacAddress mac) || mac.IsMulticast || mac.IsZero) errors.Add($"{at}.mac: '{s.Mac}' is not a unicast MAC address");
            if (s.Port is null || !names.Contains(s.Port)) errors.Add($"{at}.port: '{s.Port}' is not the name of a configured port");
            if (s.Vlan is < 0 or > 4094) errors.Add($"{at}.vlan: {s.Vlan} is out of range 0..4094");
        }
        return errors;
    }

    /// <summary>Checks one port entry (a config file's ports[] or a port added through the API); <paramref name="names"/>
    /// and <paramref name="ifaces"/> hold the names and interfaces already taken and get this port's.</summary>
    public static void ValidatePort(PortConfig? p, string at, HashSet<string> names, HashSet<string> ifaces, List<string> errors)
    {
        if (p is null)
        {
            errors.Add($"{at}: empty port entry");
            return;
        }
        if (string.IsNullOrWhiteSpace(p.Name)) errors.Add($"{at}.name: required");
        else if (!names.Add(p.Name)) errors.Add($"{at}.name: duplicate port name '{p.Name}'");
        if (p.Type is not ("tap" or "af-packet")) errors.Add($"{at}.type: '{p.Type}' is not one of tap, af-packet");
        if (string.IsNullOrWhiteSpace(p.Interface)) errors.Add($"{at}.interface: required");
        else
        {
            if (!IsValidIfName(p.Interface)) errors.Add($"{at}.interface: '{p.Interface}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
            if (!ifaces.Add(p.Interface)) errors.Add($"{at}.interface: '{p.Interface}' is used by two ports");
        }
        if (p.Type == "af-packet" && (p.Namespace is not null || p.Address is not null))
            errors.Add($"{at}: namespace/address apply to tap ports only (an af-packet port attaches to an existing interface)");
        if (p.Namespace is not null && (p.Namespace.Length is 0 or > 64 || p.Namespace.Contains('/')))
            errors.Add($"{at}.namespace: '{p.Namespace}' is not a valid namespace name");
        if (p.Namespace is null && p.CreateNamespace) errors.Add($"{at}.createNamespace: set without namespace");
        if (!IsValidIfName(p.IfName)) errors.Add($"{at}.ifName: '{p.IfName}' is not a valid interface name");
        if (p.Address is not null && !Ipv4Prefix.TryParse(p.Address, out _, out _))
            errors.Add($"{at}.address: '{p.Address}' is not an IPv4 address with prefix length (like 10.244.1.2/24)");
        if (p.Mtu is < 68 or > 9000) errors.Add($"{at}.mtu: {p.Mtu} is out of range 68..9000");
        if (p.TxQueueLength is { } qlen)
        {
            if (p.Type != "tap") errors.Add($"{at}.txQueueLength: applies to tap ports only (an af-packet port's interface keeps its own)");
            else if (qlen is < MinTxQueueLength or > MaxTxQueueLength)
                errors.Add($"{at}.txQueueLength: {qlen} is out of range {MinTxQueueLength}..{MaxTxQueueLength}");
        }
        if (p.Gateway is not null && !Ipv4Address.TryParse(p.Gateway, out _)) errors.Add($"{at}.gateway: '{p.Gateway}' is not an IPv4 address");
        if (p.Gateway is not null && p.Namespace is null) errors.Add($"{at}.gateway: applies to ports moved into a namespace only");
        if (p.Mac is not null && (!MacAddress.TryParse(p.Mac, out MacAddress mac) || mac.IsMulticast || mac.IsZero))
            errors.Add($"{at}.mac: '{p.Mac}' is not a unicast MAC address (like 02:00:00:00:00:01)");
        if (p.Routes is { } routes)
        {
            if (p.Namespace is null && routes.Count > 0) errors.Add($"{at}.routes: apply to ports moved into a namespace only");
            for (int r = 0; r < routes.Count; r++)
                if (!TryParseRoute(routes[r], out _, out _)) errors.Add($"{at}.routes[{r}]: '{routes[r]}' is not 'prefix' or 'prefix via address' (like 10.96.0.0/12 via 10.244.1.1)");
        }
    }

    /// <summary>Parses a pod route: "a.b.c.d/len" or "a.b.c.d/len via e.f.g.h".</summary>
    public static bool TryParseRoute(string? s, out Ipv4Prefix prefix, out Ipv4Address? via)
    {
        via = null;
        prefix = default;
        string[] parts = (s ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length is not (1 or 3) || !TryParseNetwork(parts[0], out prefix)) return false;
        if (parts.Length == 1) return true;
        if (parts[1] != "via" || !Ipv4Address.TryParse(parts[2], out Ipv4Address v)) return false;
        via = v;
        return true;
    }

    /// <summary>The cluster section: the store's endpoints and files, the prefix, the lease TTL; a node in a cluster needs
    /// its underlay address (overlay.localAddress), which its lease announces.</summary>
    private static void ValidateCluster(SwitchConfig c, List<string> errors)
    {
        if (c.Cluster is not { } cl) return;
        if (string.IsNullOrEmpty(cl.Prefix) || !cl.Prefix.StartsWith('/') || cl.Prefix.EndsWith('/') || cl.Prefix.Contains("//", StringComparison.Ordinal))
            errors.Add($"cluster.prefix: '{cl.Prefix}' must start with '/' and not end with one (like /vswitch)");
        if (cl.LeaseTtlSeconds is < 2 or > 86_400) errors.Add($"cluster.leaseTTLSeconds: {cl.LeaseTtlSeconds} is out of range 2..86400");
        if (cl.SubnetLen is < 16 or > 30) errors.Add($"cluster.subnetLen: {cl.SubnetLen} is out of range 16..30");
        if (cl.StartTimeoutSeconds is < 1 or > 3600) errors.Add($"cluster.startTimeoutSeconds: {cl.StartTimeoutSeconds} is out of range 1..3600");
        errors.AddRange(new VSwitch.Cluster.EtcdOptions { Endpoints = cl.Etcd.Endpoints, CaFile = cl.Etcd.CaFile, CertFile = cl.Etcd.CertFile, KeyFile = cl.Etcd.KeyFile }
            .Validate("cluster.etcd"));
        if (c.Overlay?.LocalAddress is null) errors.Add("cluster: needs overlay.localAddress (the underlay address this node's subnet lease announces)");
        if (c.Overlay?.Peers is { Count: > 0 }) errors.Add("overlay.peers: not with a cluster store (the peers come from the other nodes' subnet leases)");
    }

    private static void ValidateL3(SwitchConfig c, List<string> errors, HashSet<string> ifaces)
    {
        Ipv4Prefix pod = default, cluster = default;
        // With a cluster store and no podCIDR, the subnet is leased at start: what needs one is checked then.
        bool leased = c.Cluster is not null && c.Node.PodCidr is null;
        bool hasPod = c.Node.PodCidr is not null;
        if (hasPod && !TryParseNetwork(c.Node.PodCidr, out pod))
        {
            errors.Add($"node.podCIDR: '{c.Node.PodCidr}' is not an IPv4 network (like 10.244.1.0/24; host bits zero, /8../30)");
            hasPod = false;
        }
        else if (hasPod && pod.Length is < 8 or > 30)
        {
            errors.Add($"node.podCIDR: /{pod.Length} is out of range /8../30");
            hasPod = false;
        }
        bool hasCluster = TryParseNetwork(c.Node.ClusterCidr, out cluster);
        if (!hasCluster) errors.Add($"node.clusterCIDR: '{c.Node.ClusterCidr}' is not an IPv4 network (like 10.244.0.0/16; host bits zero)");
        if (hasPod && hasCluster && (pod.Length < cluster.Length || !cluster.Contains(pod.Address)))
            errors.Add($"node.podCIDR: {pod} is not inside node.clusterCIDR {cluster}");
        if (c.Node.RouterMac is not null && (!MacAddress.TryParse(c.Node.RouterMac, out MacAddress rm) || rm.IsMulticast || rm.IsZero))
            errors.Add($"node.routerMac: '{c.Node.RouterMac}' is not a unicast MAC address");
        foreach ((string k, string v) in c.Node.Labels)
            if (k.Length is 0 or > 316 || v.Length > 63) errors.Add($"node.labels[{k}]: not a valid label (key at most 253+63 characters, value at most 63)");
        if (c.Node.RouterMac is not null && !hasPod && !leased) errors.Add("node.routerMac: set without node.podCIDR (the router needs a pod subnet)");
        if (c.Host is { } h)
        {
            if (!hasPod && !leased) errors.Add("host: needs node.podCIDR (the host interface carries the pod subnet's gateway address)");
            if (string.IsNullOrWhiteSpace(h.Interface)) errors.Add("host.interface: required (name of the TAP to create, like vsw0)");
            else if (!IsValidIfName(h.Interface)) errors.Add($"host.interface: '{h.Interface}' is not a valid interface name");
            else if (!ifaces.Add(h.Interface)) errors.Add($"host.interface: '{h.Interface}' is also used by a port");
            if (h.Mac is not null && (!MacAddress.TryParse(h.Mac, out MacAddress hm) || hm.IsMulticast || hm.IsZero)) errors.Add($"host.mac: '{h.Mac}' is not a unicast MAC address");
            if (h.Mtu is < 68 or > 9000) errors.Add($"host.mtu: {h.Mtu} is out of range 68..9000");
        }
        if (c.Overlay is not { } o) return;
        Ipv4Address local = default;
        if (o.LocalAddress is null) errors.Add("overlay.localAddress: required (this node's underlay address, like 198.18.0.1)");
        else if (!Ipv4Address.TryParse(o.LocalAddress, out local) || local.IsUnspecified || local.IsMulticast || local.IsBroadcast)
            errors.Add($"overlay.localAddress: '{o.LocalAddress}' is not a unicast IPv4 address");
        if (o.Port is < 1 or > 65535) errors.Add($"overlay.port: {o.Port} is out of range 1..65535");
        if (o.Vni is < 0 or > 0xFFFFFF) errors.Add($"overlay.vni: {o.Vni} is out of range 0..16777215 (24 bits)");
        if (o.UnderlayMtu is < 576 or > 9000) errors.Add($"overlay.underlayMtu: {o.UnderlayMtu} is out of range 576..9000");
        if (o.FdbAgingSeconds is < 1 or > 1_000_000) errors.Add($"overlay.fdbAgingSeconds: {o.FdbAgingSeconds} is out of range 1..1000000");
        var addrs = new HashSet<uint>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var subnets = new List<(Ipv4Prefix P, string At)>();
        if (hasPod) subnets.Add((pod, "node.podCIDR"));
        for (int i = 0; i < o.Peers.Count; i++)
        {
            PeerConfig p = o.Peers[i];
            string at = $"overlay.peers[{i}]";
            if (p is null)
            {
                errors.Add($"{at}: empty peer entry");
                continue;
            }
            if (string.IsNullOrWhiteSpace(p.Name)) errors.Add($"{at}.name: required");
            else if (!names.Add(p.Name)) errors.Add($"{at}.name: duplicate peer name '{p.Name}'");
            if (!Ipv4Address.TryParse(p.Address, out Ipv4Address pa) || pa.IsUnspecified || pa.IsMulticast || pa.IsBroadcast)
                errors.Add($"{at}.address: '{p.Address}' is not a unicast IPv4 address");
            else if (pa == local) errors.Add($"{at}.address: {pa} is this node's own overlay.localAddress");
            else if (!addrs.Add(pa.Value)) errors.Add($"{at}.address: {pa} is used by two peers");
            if (p.PodCidr is not null)
            {
                if (!TryParseNetwork(p.PodCidr, out Ipv4Prefix pp) || pp.Length is < 8 or > 30)
                    errors.Add($"{at}.podCIDR: '{p.PodCidr}' is not an IPv4 network /8../30 with host bits zero");
                else
                {
                    if (!hasPod) errors.Add($"{at}.podCIDR: routes to peers need node.podCIDR (routing) on this node");
                    if (hasCluster && (pp.Length < cluster.Length || !cluster.Contains(pp.Address))) errors.Add($"{at}.podCIDR: {pp} is not inside node.clusterCIDR {cluster}");
                    foreach ((Ipv4Prefix other, string otherAt) in subnets)
                        if (other.Contains(pp.Address) || pp.Contains(other.Address)) errors.Add($"{at}.podCIDR: {pp} overlaps {otherAt} {other}");
                    subnets.Add((pp, $"{at}.podCIDR"));
                }
            }
            if (p.VtepMac is not null && (!MacAddress.TryParse(p.VtepMac, out MacAddress vm) || vm.IsMulticast || vm.IsZero))
                errors.Add($"{at}.vtepMac: '{p.VtepMac}' is not a unicast MAC address");
        }
    }

    private static void ValidateServices(SwitchConfig c, List<string> errors)
    {
        if (c.Conntrack.MaxEntries is < 16 or > 1 << 24) errors.Add($"conntrack.maxEntries: {c.Conntrack.MaxEntries} is out of range 16..16777216");
        foreach (System.Reflection.PropertyInfo p in typeof(ConntrackTimeoutsConfig).GetProperties())
        {
            if (p.GetValue(c.Conntrack.Timeouts) is int v && v is < 1 or > 30 * 86400)
                errors.Add($"conntrack.timeouts.{char.ToLowerInvariant(p.Name[0])}{p.Name[1..]}: {v} is out of range 1..2592000 seconds");
        }
        if (c.Services is not { } s) return;
        if (c.Node.PodCidr is null && c.Cluster is null) errors.Add("services: needs node.podCIDR (Service NAT runs in the node's router)");
        if (!TryParseNetwork(s.ServiceCidr, out Ipv4Prefix sc)) errors.Add($"services.serviceCIDR: '{s.ServiceCidr}' is not an IPv4 network (like 10.96.0.0/12; host bits zero)");
        else if (TryParseNetwork(c.Node.ClusterCidr, out Ipv4Prefix cl) && (sc.Contains(cl.Address) || cl.Contains(sc.Address)))
            errors.Add($"services.serviceCIDR: {sc} overlaps node.clusterCIDR {cl}");
        if (!TryParsePortRange(s.NodePortRange, out _, out _)) errors.Add($"services.nodePortRange: '{s.NodePortRange}' is not a port range (like 30000-32767)");
        if (s.NodeAddress is not null && (!Ipv4Address.TryParse(s.NodeAddress, out Ipv4Address na) || na.IsUnspecified || na.IsMulticast || na.IsBroadcast))
            errors.Add($"services.nodeAddress: '{s.NodeAddress}' is not a unicast IPv4 address");
        if (s.ReloadSeconds is < 0.1 or > 3600) errors.Add($"services.reloadSeconds: {s.ReloadSeconds} is out of range 0.1..3600");
        if (s.Manifests is not null && s.Manifests.Length == 0) errors.Add("services.manifests: empty path");
        if (TryParsePortRange(s.NodePortRange, out ushort npMin, out ushort npMax) && npMax >= Nat.NatOptions.DefaultMasqueradePortMin)
            errors.Add($"services.nodePortRange: {npMin}-{npMax} overlaps the masquerade ports {Nat.NatOptions.DefaultMasqueradePortMin}-65535");
    }

    private static void ValidateUplink(SwitchConfig c, List<string> errors, HashSet<string> ifaces)
    {
        if (c.Uplink is not { } u) return;
        if (c.Services is null) errors.Add("uplink: needs services (the uplink carries node ports and masqueraded traffic through connection tracking)");
        if (c.Host is null) errors.Add("uplink: needs host (packets from pods to the node address go to the node through the host interface)");
        if ((c.Services?.NodeAddress ?? c.Overlay?.LocalAddress) is null)
            errors.Add("uplink: needs the node address (services.nodeAddress or overlay.localAddress)");
        if (string.IsNullOrWhiteSpace(u.Interface)) errors.Add("uplink.interface: required (the interface carrying the node address, like eth0)");
        else if (!IsValidIfName(u.Interface)) errors.Add($"uplink.interface: '{u.Interface}' is not a valid interface name");
        else if (ifaces.Contains(u.Interface)) errors.Add($"uplink.interface: '{u.Interface}' is also used by a port");
        if (!IsValidIfName(u.Tap)) errors.Add($"uplink.tap: '{u.Tap}' is not a valid interface name");
        else if (!ifaces.Add(u.Tap)) errors.Add($"uplink.tap: '{u.Tap}' is also used by a port or the host interface");
        else if (u.Tap == u.Interface) errors.Add($"uplink.tap: '{u.Tap}' is the uplink interface itself");
    }

    /// <summary>Parses "min-max" (1..65535, min ≤ max).</summary>
    public static bool TryParsePortRange(string? s, out ushort min, out ushort max)
    {
        min = max = 0;
        string[] parts = (s ?? "").Split('-');
        if (parts.Length != 2) return false;
        if (!ushort.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out min) || !ushort.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out max)) return false;
        return min >= 1 && min <= max;
    }

    /// <summary>Parses "a.b.c.d/len" and requires the host bits to be zero.</summary>
    public static bool TryParseNetwork(string? s, out Ipv4Prefix prefix) =>
        Ipv4Prefix.TryParse(s, out prefix, out Ipv4Address host) && host == prefix.Address;

    public static bool TryParsePolicy(string s, out MacTableFullPolicy policy)
    {
        switch (s)
        {
            case "flood":
                policy = MacTableFullPolicy.Flood;
                return true;
            case "drop":
                policy = MacTableFullPolicy.Drop;
                return true;
            default:
                policy = default;
                return false;
        }
    }

    private static bool IsValidIfName(string? s) =>
        s is { Length: >= 1 and <= 15 } && !s.Any(ch => ch is '/' or ':' || char.IsWhiteSpace(ch)) && s is not ("." or "..");

    public static string Describe(SwitchConfig c) => string.Create(CultureInfo.InvariantCulture,
        $"node {c.Node.Name ?? "(unnamed)"}, {c.Ports.Count} port(s), control socket {c.Control.Socket}");
}

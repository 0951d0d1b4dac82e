using Microsoft.Extensions.Logging;
using System.Globalization;
using VSwitch.Encap;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.Config;
using VSwitch.Switch.L3;
using VSwitch.Tap;

namespace VSwitch.Switch;

/// <summary>
/// Brings a configured node up (namespaces, ports, datapath, control socket) and down again, removing everything it
/// created in reverse order — also when start-up fails half way.
/// </summary>
public sealed partial class SwitchHost : IDisposable
{
    private readonly ILogger _log;
    private readonly Stack<(string What, Action Undo)> _undo = new();

    public SwitchHost(SwitchConfig config, ILogger log)
    {
        Config = config;
        _log = log;
        _ = ConfigLoader.TryParsePolicy(config.Bridge.MacTableFullPolicy, out L2.MacTableFullPolicy policy);
        int n = Math.Max(1, config.Datapath.Workers);
        WorkerMesh? mesh = n > 1 ? new WorkerMesh(n) : null;
        var workers = new Datapath[n];
        for (int i = 0; i < n; i++) workers[i] = new Datapath(new DatapathOptions
        {
            BatchSize = config.Datapath.BatchSize,
            Slots = config.Datapath.Slots,
            LargeSlots = UsesOffloads(config) ? 2 * config.Datapath.BatchSize : 0,
            BusyPoll = TimeSpan.FromMicroseconds(config.Datapath.BusyPollMicros),
            AdaptivePollLimit = TimeSpan.FromMicroseconds(config.Datapath.AdaptivePollMicros),
            MacTableSize = config.Bridge.MacTableSize,
            MacAging = TimeSpan.FromSeconds(config.Bridge.MacAgingSeconds),
            MacTableFullPolicy = policy,
            Router = BuildRouterOptions(config),
            Overlay = BuildOverlayOptions(config),
            Nat = BuildNatOptions(config),
            Mesh = mesh,
            WorkerIndex = i,
        });
        Workers = workers;
        NodeName = config.Node.Name ?? Environment.MachineName;
        PodRxCpus = config.Datapath.PodRxCpus is { } rx && CpuList.TryParse(rx, out int[] cpus, out _) ? cpus : null;
    }

    /// <summary>datapath.podRxCpus parsed (validated by the config loader); null when unset.</summary>
    public int[]? PodRxCpus { get; }

    /// <summary>A TAP or af-packet port with offloads on (the default).</summary>
    private static bool HasOffloads(PortConfig p) => p.Type is "tap" or "af-packet" && (p.Offloads ?? true);

    private static bool UsesOffloads(SwitchConfig c) => c.Ports.Any(HasOffloads) || c.Host is { Offloads: true };

    private static RouterOptions? BuildRouterOptions(SwitchConfig c)
    {
        if (c.Node.PodCidr is null) return null;
        _ = ConfigLoader.TryParseNetwork(c.Node.PodCidr, out Ipv4Prefix pod);
        _ = ConfigLoader.TryParseNetwork(c.Node.ClusterCidr, out Ipv4Prefix cluster);
        return new RouterOptions
        {
            PodCidr = pod,
            ClusterCidr = cluster,
            RouterMac = c.Node.RouterMac is { } m ? MacAddress.Parse(m) : RouterOptions.DefaultRouterMac(pod),
        };
    }

    private static NatOptions? BuildNatOptions(SwitchConfig c)
    {
        if (c.Services is not { } s || c.Node.PodCidr is null) return null;
        _ = ConfigLoader.TryParseNetwork(s.ServiceCidr, out Ipv4Prefix services);
        string? nodeAddress = s.NodeAddress ?? c.Overlay?.LocalAddress;
        ConntrackTimeoutsConfig t = c.Conntrack.Timeouts;
        var d = new ConntrackTimeouts();
        static TimeSpan Or(int? seconds, TimeSpan dflt) => seconds is { } v ? TimeSpan.FromSeconds(v) : dflt;
        // The pod and cluster CIDRs, gateway and router MAC come from the router (the Datapath fills them in).
        return new NatOptions
        {
            MaxConnections = c.Conntrack.MaxEntries,
            Timeouts = new ConntrackTimeouts
            {
                TcpSynSent = Or(t.TcpSynSent, d.TcpSynSent),
                TcpSynRecv = Or(t.TcpSynRecv, d.TcpSynRecv),
                TcpEstablished = Or(t.TcpEstablished, d.TcpEstablished),
                TcpFinWait = Or(t.TcpFinWait, d.TcpFinWait),
                TcpCloseWait = Or(t.TcpCloseWait, d.TcpCloseWait),
                TcpLastAck = Or(t.TcpLastAck, d.TcpLastAck),
                TcpTimeWait = Or(t.TcpTimeWait, d.TcpTimeWait),
                TcpClose = Or(t.TcpClose, d.TcpClose),
                UdpUnreplied = Or(t.UdpUnreplied, d.UdpUnreplied),
                UdpAssured = Or(t.UdpAssured, d.UdpAssured),
                Icmp = Or(t.Icmp, d.Icmp),
            },
            ServiceCidr = services,
            NodeAddress = nodeAddress is null ? null : Ipv4Address.Parse(nodeAddress),
            NodeName = c.Node.Name,
            // Masquerade needs an uplink to send from the node address; without one, egress goes to the host untranslated.
            Masquerade = c.Uplink is { Masquerade: true },
        };
    }

    private static OverlayOptions? BuildOverlayOptions(SwitchConfig c)
    {
        if (c.Overlay is not { } o) return null;
        return new OverlayOptions
        {
            LocalAddress = Ipv4Address.Parse(o.LocalAddress!),
            UdpPort = (ushort)o.Port,
            Vni = (uint)o.Vni,
            UnderlayMtu = o.UnderlayMtu,
            Learning = o.Learning,
            AcceptUnknownPeers = o.AcceptUnknownPeers,
            FdbAging = TimeSpan.FromSeconds(o.FdbAgingSeconds),
        };
    }

    /// <summary>The MTU pods get unless their port says otherwise: the overlay's inner MTU, else 1500.</summary>
    public int DefaultPodMtu => Config.Overlay is { } o ? o.UnderlayMtu - OverlayPeer.Overhead : 1500;

    public SwitchConfig Config { get; }
    /// <summary>Worker 0: holds what every worker holds alike (configuration, routes, Services).</summary>
    public Datapath Datapath => Workers[0];
    /// <summary>Every worker, each with its own queue of every port.</summary>
    public IReadOnlyList<Datapath> Workers { get; }
    public string NodeName { get; }
    public Control.ControlServer? Control { get; private set; }
    /// <summary>The Service manifests being watched (null when services.manifests is unset).</summary>
    public ServiceManifests? Manifests { get; private set; }
    /// <summary>The nftables rules steering the uplink's traffic (null without an uplink).</summary>
    public UplinkSteering? Steering { get; private set; }

    /// <summary>Creates namespaces and ports, starts the control socket and the worker. Throws <see cref="PortException"/>
    /// (environment) or <see cref="ConfigException"/>; on failure everything created so far is already removed.</summary>
    public void Start()
    {
        try
        {
            StartCore();
        }
        catch
        {
            Teardown();
            throw;
        }
    }

    private void StartCore()
    {
        for (int i = 0; i < Config.Ports.Count; i++)
        {
            PortConfig pc = Config.Ports[i];
            IPacketPort[] queues = OpenPort(pc, $"ports[{i}]");
            for (int w = 0; w < Workers.Count; w++)
            {
                ushort id = Workers[w].AddPort(queues[w]);
                // Pods the switch created are its neighbors from the start (as a CNI plugin knows what it configured).
                if (Workers[w].Router is { } r && pc.Address is not null && pc.Mac is not null
                    && Ipv4Prefix.TryParse(pc.Address, out _, out Ipv4Address ip) && r.Options.PodCidr.Contains(ip))
                    r.Neighbors.AddPermanent(ip, MacAddress.Parse(pc.Mac), id);
            }
        }
        if (Config.Host is { } host) OpenHostPort(host);
        if (Config.Overlay is { } overlay) OpenOverlay(overlay);
        if (Config.Uplink is { } uplink) OpenUplink(uplink);
        for (int i = 0; i < Config.Bridge.StaticMacs.Count; i++)
        {
            StaticMacConfig s = Config.Bridge.StaticMacs[i];
            foreach (Datapath w in Workers)
            {
                IPacketPort p = w.Ports.Find(s.Port!)!;
                if (!w.Macs.AddStatic(MacAddress.Parse(s.Mac!), (ushort)s.Vlan, p.Id))
                    throw new ConfigException($"bridge.staticMacs[{i}]: MAC table full (bridge.macTableSize {Config.Bridge.MacTableSize})");
            }
        }
        if (Config.Services is { Manifests: { } manifests } sc)
        {
            _ = ConfigLoader.TryParsePortRange(sc.NodePortRange, out ushort npMin, out ushort npMax);
            Manifests = new ServiceManifests(manifests, new ManifestOptions { NodePortMin = npMin, NodePortMax = npMax }, Workers,
                TimeSpan.FromSeconds(sc.ReloadSeconds), _log);
            if (Steering is not null) Manifests.Installed = UpdateSteering;
            try
            {
                Manifests.LoadInitial();
            }
            catch (ManifestException e)
            {
                throw new ConfigException($"services.manifests: {e.Message}");
            }
            catch (IOException e)
            {
                throw new ConfigException($"services.manifests: {manifests}: {e.Message}");
            }
            _undo.Push(("manifest watcher", Manifests.Dispose));
        }
        Control = new Control.ControlServer(Config.Control.Socket, new Control.ControlHandler(this), _log);
        Control.Start();
        _undo.Push(("control socket", () => Control.Dispose()));
        foreach (Datapath w in Workers)
        {
            w.Start();
            _undo.Push(($"worker {w.WorkerIndex}", w.Dispose));
        }
        Manifests?.StartWatching();
    }

    private void OpenHostPort(HostConfig host)
    {
        Router router = Datapath.Router!;
        RouterOptions ro = router.Options;
        string ifName = host.Interface!;
        MacAddress mac = host.Mac is { } m ? MacAddress.Parse(m) : new MacAddress(0x0E01_0000_0000UL | ro.Gateway.Value);
        int mtu = host.Mtu ?? DefaultPodMtu;
        TapPort[] taps;
        try
        {
            taps = OpenTapQueues("host", ifName, host.Offloads);
        }
        catch (PortException e)
        {
            throw new PortException($"host.interface: {e.Message}", e.Errno);
        }
        NetNs.Ip("link", "set", "dev", ifName, "address", mac.ToString());
        NetNs.Ip("addr", "add", $"{ro.Gateway}/{ro.PodCidr.Length}", "dev", ifName);
        NetNs.BringUp(ifName, mtu);
        if (ro.ClusterCidr != ro.PodCidr)
            NetNs.Ip("route", "replace", ro.ClusterCidr.ToString(), "dev", ifName, "src", ro.Gateway.ToString());
        // The node reaches ClusterIPs through the switch too (kube-proxy's OUTPUT chain does this in the kernel).
        if (Datapath.Nat?.Options.ServiceCidr is { } svc)
            NetNs.Ip("route", "replace", svc.ToString(), "dev", ifName, "src", ro.Gateway.ToString());
        for (int w = 0; w < Workers.Count; w++)
        {
            ushort id = Workers[w].AddPort(taps[w], PortRole.Host);
            Router r = Workers[w].Router!;
            r.HostMac = mac;
            r.Neighbors.AddPermanent(ro.Gateway, mac, id);
        }
        LogPortOpened("host", "tap", ifName, $" {ro.Gateway}/{ro.PodCidr.Length}, route {ro.ClusterCidr}");
    }

    private void OpenOverlay(OverlayConfig o)
    {
        OverlayOptions oo = Datapath.Overlay!.Options;
        UdpTunnelPort tunnel = null!;
        foreach (Datapath w in Workers)
        {
            try
            {
                tunnel = UdpTunnelPort.Open("vxlan", oo.LocalAddress.Value, oo.UdpPort, reusePort: Workers.Count > 1);
            }
            catch (PortException e)
            {
                throw new PortException($"overlay: {e.Message}", e.Errno);
            }
            _undo.Push(("overlay socket", tunnel.Dispose));
            w.AddPort(tunnel, PortRole.Tunnel);
            w.Overlay!.UseSourcePorts(tunnel.SourcePorts);
            foreach (PeerConfig p in o.Peers)
            {
                Ipv4Prefix? cidr = null;
                if (p.PodCidr is not null && ConfigLoader.TryParseNetwork(p.PodCidr, out Ipv4Prefix pc)) cidr = pc;
                MacAddress vtep = p.VtepMac is { } v ? MacAddress.Parse(v)
                    : cidr is { } c ? RouterOptions.DefaultRouterMac(c) : MacAddress.Zero;
                w.AddPeer(p.Name!, Ipv4Address.Parse(p.Address!), cidr, vtep);
            }
        }
        LogOverlay(oo.LocalAddress.ToString(), oo.UdpPort, oo.Vni, o.Peers.Count, oo.Learning ? "on" : "off",
            tunnel.Gso ? $"udp gso from {tunnel.SourcePorts.Count} source ports" : "udp gso unavailable", tunnel.Gro ? "on" : "unavailable");
    }

    /// <summary>The uplink: a TAP fed by nftables steering on the node's interface, a raw socket to send, and the
    /// default route.</summary>
    private void OpenUplink(UplinkConfig u)
    {
        Router router = Datapath.Router!;
        NatOptions nat = Datapath.Nat!.Options;
        Ipv4Address node = nat.NodeAddress!.Value;
        string underlay = u.Interface!;
        if (!NetNs.InterfaceExists(underlay))
            throw new PortException($"uplink.interface: interface '{underlay}' does not exist in the switch's network namespace");
        if (!NetNs.HasAddress(underlay, node.ToString()))
            throw new PortException($"uplink.interface: {underlay} does not carry the node address {node} (set services.nodeAddress to the address of {underlay})");
        int mtu = NetNs.Mtu(underlay);
        UplinkPort port;
        try
        {
            port = UplinkPort.Open("uplink", u.Tap, router.RouterMac, underlay);
        }
        catch (PortException e)
        {
            throw new PortException($"uplink.tap: {e.Message}", e.Errno);
        }
        _undo.Push(($"uplink tap {u.Tap}", port.Dispose));
        // The TAP is a one-way door into the switch: no addresses, no IPv6 chatter from the node's kernel.
        NetNs.TrySysctl($"net/ipv6/conf/{u.Tap}/disable_ipv6", "1");
        NetNs.BringUp(u.Tap, mtu);
        router.UplinkMtu = mtu > 0 ? mtu : 1500;
        Datapath.AddPort(port, PortRole.Uplink);
        Steering = UplinkSteering.Load(underlay, u.Tap, node, nat.MasqueradePortMin, nat.MasqueradePortMax);
        _undo.Push(("uplink steering", Steering.Dispose));
        WarnIfEphemeralPortsOverlap(nat.MasqueradePortMin, nat.MasqueradePortMax);
        LogPortOpened("uplink", "uplink", u.Tap, $" <- nftables ingress on {underlay} for {node}; masquerade {(nat.Masquerade ? $"to {node}:{nat.MasqueradePortMin}-{nat.MasqueradePortMax}" : "off")}");
    }

    /// <summary>The node's own connections use ports from ip_local_port_range; any of those in the masquerade range
    /// would have their replies taken by the switch.</summary>
    private void WarnIfEphemeralPortsOverlap(ushort min, ushort max)
    {
        const string path = "/proc/sys/net/ipv4/ip_local_port_range";
        if (!File.Exists(path)) return;
        string[] parts = File.ReadAllText(path).Split((char[])[' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 2 && int.TryParse(parts[0], CultureInfo.InvariantCulture, out int lo) && int.TryParse(parts[1], CultureInfo.InvariantCulture, out int hi)
            && lo <= max && hi >= min)
            LogEphemeralOverlap(lo, hi, min, max);
    }

    private void UpdateSteering(ServiceTable table)
    {
        try
        {
            Steering!.Update(table);
        }
        catch (PortException e)
        {
            LogSteeringFailed(e.Message);
        }
    }

    /// <summary>One queue of the TAP per worker (a plain TAP with one worker).</summary>
    private TapPort[] OpenTapQueues(string name, string ifName, bool offloads)
    {
        var queues = new TapPort[Workers.Count];
        for (int i = 0; i < queues.Length; i++)
        {
            TapPort q = TapPort.Open(name, ifName, offloads, multiQueue: queues.Length > 1);
            _undo.Push(($"tap {ifName}{(queues.Length > 1 ? $" queue {i}" : "")}", q.Dispose));
            queues[i] = q;
        }
        return queues;
    }

    private IPacketPort[] OpenPort(PortConfig pc, string at)
    {
        string ifName = pc.Interface!;
        if (pc.Type == "af-packet")
        {
            if (!NetNs.InterfaceExists(ifName))
                throw new PortException($"{at}.interface: interface '{ifName}' does not exist in the switch's network namespace");
            NetNs.BringUp(ifName);
            AfPacketPort ap = AfPacketPort.Open(pc.Name!, ifName, HasOffloads(pc));
            _undo.Push(($"af-packet {ifName}", ap.Dispose));
            LogPortOpened(pc.Name!, "af-packet", ifName, "");
            return [ap];
        }
        if (pc.Namespace is { } ns && !NetNs.Exists(ns))
        {
            if (!pc.CreateNamespace)
                throw new PortException($"{at}.namespace: network namespace '{ns}' does not exist (create it with 'ip netns add {ns}' or set createNamespace: true)");
            NetNs.Create(ns);
            _undo.Push(($"namespace {ns}", () => NetNs.Delete(ns)));
            LogNamespaceCreated(ns);
        }
        TapPort[] taps;
        try
        {
            taps = OpenTapQueues(pc.Name!, ifName, HasOffloads(pc));
        }
        catch (PortException e)
        {
            throw new PortException($"{at}: {e.Message}", e.Errno);
        }
        // Both settings are made before the TAP moves into the pod's namespace and move with the device (tun resizes
        // the ring of every queue already attached).
        string tuning = "";
        if (pc.TxQueueLength is { } qlen)
        {
            Tune($"{at}.txQueueLength", () => NetNs.Ip("link", "set", "dev", ifName, "txqueuelen", qlen.ToString(CultureInfo.InvariantCulture)));
            tuning = $", tx queue {qlen}";
        }
        if (PodRxCpus is { } cpus)
        {
            Tune($"{at} (datapath.podRxCpus)", () => NetNs.SetRps(ifName, CpuList.ToMask(cpus)));
            tuning += $", rx on CPUs {CpuList.Format(cpus)}";
        }
        int mtu = pc.Mtu ?? DefaultPodMtu;
        if (pc.Namespace is { } target)
        {
            NetNs.PlugIntoNamespace(ifName, target, pc.IfName, pc.Address, mtu, pc.Mac, PodGateway(pc));
            LogPortOpened(pc.Name!, "tap", ifName, $" -> {target}/{pc.IfName} {pc.Address}{tuning}");
        }
        else
        {
            if (pc.Mac is not null) NetNs.Ip("link", "set", "dev", ifName, "address", pc.Mac);
            if (pc.Address is not null) NetNs.Ip("addr", "add", pc.Address, "dev", ifName);
            NetNs.BringUp(ifName, mtu);
            LogPortOpened(pc.Name!, "tap", ifName, (pc.Address is null ? "" : $" {pc.Address}") + tuning);
        }
        return taps;
    }

    /// <summary>Applies a device setting; a refusal names the config field it came from.</summary>
    private static void Tune(string field, Action apply)
    {
        try
        {
            apply();
        }
        catch (PortException e)
        {
            throw new PortException($"{field}: {e.Message}", e.Errno);
        }
    }

    /// <summary>The pod's default route: as configured, else the node's gateway when the pod's address is in the pod subnet.</summary>
    private string? PodGateway(PortConfig pc)
    {
        if (pc.Gateway is not null) return pc.Gateway;
        if (Datapath.Router is not { } r || pc.Address is null || !Ipv4Prefix.TryParse(pc.Address, out _, out Ipv4Address ip)) return null;
        return r.Options.PodCidr.Contains(ip) ? r.Options.Gateway.ToString() : null;
    }

    private void Teardown()
    {
        while (_undo.TryPop(out (string What, Action Undo) u))
        {
            try
            {
                u.Undo();
            }
            catch (Exception e) when (e is PortException or IOException or InvalidOperationException or ObjectDisposedException)
            {
                LogCleanupFailed(u.What, e.Message);
            }
        }
    }

    public void Dispose() => Teardown();

    [LoggerMessage(Level = LogLevel.Information, Message = "port {Name}: {Kind} {Interface}{Detail}")]
    private partial void LogPortOpened(string name, string kind, string @interface, string detail);

    [LoggerMessage(Level = LogLevel.Information, Message = "overlay: vxlan on {Local}:{Port} vni {Vni}, {Peers} peer(s), flood-and-learn {Learning}, {Gso}, udp gro {Gro}")]
    private partial void LogOverlay(string local, int port, uint vni, int peers, string learning, string gso, string gro);

    [LoggerMessage(Level = LogLevel.Information, Message = "created network namespace {Namespace}")]
    private partial void LogNamespaceCreated(string @namespace);

    [LoggerMessage(Level = LogLevel.Warning, Message = "uplink: the node's ephemeral ports {Low}-{High} (net.ipv4.ip_local_port_range) overlap the masquerade ports {Min}-{Max}: replies to the node's own connections on those ports would reach the switch; narrow ip_local_port_range")]
    private partial void LogEphemeralOverlap(int low, int high, int min, int max);

    [LoggerMessage(Level = LogLevel.Error, Message = "uplink: steering rules not updated for the new Services: {Error}")]
    private partial void LogSteeringFailed(string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cleanup of {What} failed: {Error}")]
    private partial void LogCleanupFailed(string what, string error);
}

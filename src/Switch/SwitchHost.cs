using Microsoft.Extensions.Logging;
using System.Diagnostics;
using System.Globalization;
using VSwitch.Encap;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.Config;
using VSwitch.Switch.Control;
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
            // Ports added while running may take super-frames too (offloads are on by default): always keep large slots.
            LargeSlots = 2 * config.Datapath.BatchSize,
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
    public ControlServer? Control { get; private set; }
    /// <summary>The node's Services, from the watched manifests and the API (null without a services: section).</summary>
    public ServiceCatalog? Services { get; private set; }
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
        State = new StateDirectory(Config.State.Directory);
        _restored = State.Load(NodeName, out string? rejected);
        if (rejected is not null) LogStateRejected(rejected);
        // Peers the API changed win over the config file's list.
        if (_restored?.Peers is { } peers)
        {
            _peerConfigs = peers.Select(PeerConfigOf).ToList();
            _peersChanged = true;
        }
        _undo.Push(("pod ports", ClosePodPorts));
        for (int i = 0; i < Config.Ports.Count; i++)
        {
            PortConfig pc = Config.Ports[i];
            var rec = new PodPort { Name = pc.Name!, Origin = "config", Config = pc };
            _pods[rec.Name] = rec;
            _podOrder.Add(rec);
            rec.Queues = OpenPort(pc, $"ports[{i}]", rec.Undo);
            for (int w = 0; w < Workers.Count; w++) AttachToWorker(Workers[w], rec, w == 0 ? -1 : rec.Queues[0].Id);
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
        // Pods added through the API before a restart: their TAPs outlived the switch; take them up again.
        foreach (SavedPort sp in _restored?.Ports ?? []) Reattach(sp);
        if (Config.Services is { } sc)
        {
            _ = ConfigLoader.TryParsePortRange(sc.NodePortRange, out ushort npMin, out ushort npMax);
            Services = new ServiceCatalog(sc.Manifests, new ManifestOptions { NodePortMin = npMin, NodePortMax = npMax }, Workers,
                TimeSpan.FromSeconds(sc.ReloadSeconds), _log);
            if (Steering is not null) Services.Installed = UpdateSteering;
            try
            {
                Services.LoadInitial();
            }
            catch (ManifestException e)
            {
                throw new ConfigException($"services.manifests: {e.Message}");
            }
            catch (IOException e)
            {
                throw new ConfigException($"services.manifests: {sc.Manifests}: {e.Message}");
            }
            _undo.Push(("manifest watcher", Services.Dispose));
            if (_restored is { } r && (r.Services.Count > 0 || r.EndpointSlices.Count > 0))
                Services.Restore(new ClusterObjects { Services = r.Services, EndpointSlices = r.EndpointSlices });
            RestoreConnections();
        }
        // Forwarding first: after a restart, every millisecond until the workers run is a pause for the pods; the control
        // API (Kestrel) and the state file come right after.
        foreach (Datapath w in Workers)
        {
            w.Start();
            _undo.Push(($"worker {w.WorkerIndex}", w.Dispose));
        }
        LogForwarding(Workers.Count, (DateTime.Now - Process.GetCurrentProcess().StartTime).TotalMilliseconds);
        if (_reattached > 0) AnnounceNeighbors();
        Control = new ControlServer(Config.Control.Socket, new ControlService(this), _log, Config.Metrics?.Listen)
        {
            Ready = () => _ready,
            Degraded = () => Cluster is { State: not "ready" } c ? $"cluster store {c.State}: {c.LastError}" : null,
            Unhealthy = Unhealthy,
        };
        Control.Start();
        _undo.Push(("control socket", () => Control.Dispose()));
        SaveState();
        Services?.StartWatching();
        _ready = true;
    }

    private volatile bool _ready;
    private int _reattached;

    /// <summary>At most this many neighbors are announced to each pod after a restart.</summary>
    private const int MaxAnnounced = 256;

    /// <summary>
    /// After a restart, tells every pod that kept its interface where its neighbors are: one ARP reply per neighbor (the
    /// gateway and the other pods of the node), from that neighbor to the pod. While the switch was down the pod's
    /// interface had no carrier, and its kernel flushed its neighbor entries; the packets it sent since left entries
    /// waiting for an ARP answer, retried once a second. The announcement completes them at once, so traffic resumes
    /// when the switch does, not at the pod's next ARP retry. (An entry the pod does not have is left alone.)
    /// </summary>
    private void AnnounceNeighbors()
    {
        if (Datapath.Router is not { } router) return;
        Datapath w0 = Datapath;
        int sent = w0.InvokeAsync(() =>
        {
            var known = new List<(uint Ip, ulong Mac)> { (router.Options.Gateway.Value, router.RouterMac) };
            foreach ((Ipv4Address ip, L3.Neighbor n) in router.Neighbors.Entries())
                if (n.State == L3.NeighborState.Permanent && ip != router.Options.Gateway) known.Add((ip.Value, n.Mac));
            int count = 0;
            Span<int> one = stackalloc int[1];
            foreach ((uint podIp, L3.Neighbor pod) in router.Neighbors.Entries().Select(e => (e.Ip.Value, e.Entry)))
            {
                if (pod.State != L3.NeighborState.Permanent || w0.Ports.Role(pod.Port) != PortRole.Access || w0.Ports[pod.Port] is not { } port) continue;
                foreach ((uint ip, ulong mac) in known.Where(k => k.Ip != podIp).Take(MaxAnnounced))
                {
                    if (!w0.Slab.TryAlloc(out int slot)) return count;
                    w0.Slab.Meta[slot].Length = 60;
                    Span<byte> f = w0.Slab.Frame(slot);
                    int o = new EthernetRepr(new MacAddress(pod.Mac), new MacAddress(mac), EtherType.Arp).Emit(f);
                    o += new ArpRepr(ArpOperation.Reply, new MacAddress(mac), new Ipv4Address(ip), new MacAddress(pod.Mac), new Ipv4Address(podIp)).Emit(f[o..]);
                    f[o..].Clear();
                    one[0] = slot;
                    count += port.Send(w0.Slab, one);
                    w0.Slab.Free(slot);
                }
            }
            return count;
        }).GetAwaiter().GetResult();
        LogNeighborsAnnounced(sent, _reattached);
    }
    private NodeState? _restored;
    private bool _peersChanged;

    /// <summary>The state directory: what the API changed, and the connections saved at shutdown.</summary>
    public StateDirectory? State { get; private set; }

    /// <summary>Writes what the API changed (pods, peers, Services) to the state directory; a failure is logged, the
    /// change stands.</summary>
    internal void SaveState()
    {
        if (State is null) return;
        // Port, peer and Service changes save from their own threads: one writer at a time, each writing everything.
        lock (_stateGate) SaveStateLocked();
    }

    private readonly Lock _stateGate = new();

    private void SaveStateLocked()
    {
        List<SavedPort> ports;
        lock (_pods) ports = _podOrder.Where(p => p.Origin == "api").Select(p => new SavedPort(SpecOf(p.Config), _podMacs.GetValueOrDefault(p.Name))).ToList();
        ClusterObjects api = Services?.ApiObjects() ?? ClusterObjects.Empty;
        var state = new NodeState
        {
            Node = NodeName,
            Ports = ports,
            Peers = _peersChanged ? PeerConfigs.Select(SpecOf).ToList() : null,
            Services = [.. api.Services],
            EndpointSlices = [.. api.EndpointSlices],
        };
        try
        {
            State!.Save(state);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogStateNotSaved(State!.StateFile, e.Message);
        }
    }

    /// <summary>Puts the connections saved at the last shutdown back, each on the worker that keeps it, before the workers
    /// start: NATed connections (a ClusterIP, masquerade) go on where they were.</summary>
    private void RestoreConnections()
    {
        if (State is null || Datapath.Nat is null) return;
        List<SavedConnection> saved = State.TakeConntrack(NodeName, out string? rejected);
        if (rejected is not null) LogStateRejected(rejected);
        if (saved.Count == 0) return;
        long now = Datapath.Time.GetTimestamp();
        int restored = 0;
        for (int i = 0; i < saved.Count; i++)
        {
            SavedConnection c = saved[i];
            Datapath w = Datapath.Mesh is { } mesh ? Workers[Datapath.Nat.Steering!.Home(c.Reply)] : Datapath;
            if (w.Nat!.Import(c, now)) restored++;
            // Redirect messages queue between workers that do not run yet: apply them as they come.
            if (Datapath.Mesh is not null && i % 256 == 255) foreach (Datapath x in Workers) x.ApplyMessages();
        }
        foreach (Datapath x in Workers) x.ApplyMessages();
        LogConnectionsRestored(restored, saved.Count, State.ConntrackFile);
    }

    /// <summary>Saves the tracked connections of every worker (at shutdown, before the workers stop).</summary>
    private void SaveConnections()
    {
        if (State is null || Datapath.Nat is null || !Datapath.IsRunning) return;
        try
        {
            Task<List<SavedConnection>>[] parts = Workers.Select(w => w.InvokeAsync(() => w.Nat!.Export(w.Time.GetTimestamp()))).ToArray();
            if (!Task.WaitAll(parts, TimeSpan.FromSeconds(5))) return;
            List<SavedConnection> all = parts.SelectMany(t => t.Result).ToList();
            State.SaveConntrack(NodeName, all);
            LogConnectionsSaved(all.Count, State.ConntrackFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or AggregateException or InvalidOperationException)
        {
            LogStateNotSaved(State.ConntrackFile, e.Message);
        }
    }

    /// <summary>Takes up a pod port added through the API before a restart: its persistent TAP is attached again where it
    /// is (in the pod's namespace), untouched, so the pod keeps its interface, address and routes. A pod whose namespace
    /// or interface is gone is dropped (logged).</summary>
    private void Reattach(SavedPort sp)
    {
        PortConfig pc = ConfigOf(sp.Spec);
        var rec = new PodPort { Name = pc.Name!, Origin = "api", Config = pc };
        try
        {
            if (pc.Type == "af-packet")
            {
                rec.Queues = OpenPort(pc, $"port {pc.Name}", rec.Undo);
            }
            else
            {
                if (pc.Namespace is { } ns && !NetNs.Exists(ns)) throw new PortException($"its network namespace '{ns}' is gone");
                string ifName = pc.Namespace is null ? pc.Interface! : pc.IfName;
                var queues = new IPacketPort[Workers.Count];
                for (int i = 0; i < queues.Length; i++)
                {
                    TapPort q = pc.Namespace is { } inNs
                        ? NetNs.Inside(inNs, () => TapPort.Open(pc.Name!, ifName, HasOffloads(pc), multiQueue: true))
                        : TapPort.Open(pc.Name!, ifName, HasOffloads(pc), multiQueue: true);
                    rec.Undo.Push(($"tap {ifName} queue {i}", q.Dispose));
                    queues[i] = q;
                    if (q.Created) throw new PortException($"its interface {ifName} is gone");
                }
                ((TapPort)queues[0]).SetPersistent(true);
                rec.Queues = queues;
            }
        }
        catch (PortException e)
        {
            RunUndo(rec.Undo);
            LogPortNotReattached(pc.Name!, e.Message);
            return;
        }
        _podMacs[rec.Name] = sp.Mac;
        lock (_pods)
        {
            _pods[rec.Name] = rec;
            _podOrder.Add(rec);
        }
        for (int w = 0; w < Workers.Count; w++) AttachToWorker(Workers[w], rec, w == 0 ? -1 : rec.Queues[0].Id);
        _reattached++;
        LogPortReattached(rec.Name, pc.Namespace ?? "-");
    }

    /// <summary>Null while every worker goes round its loop (it sweeps at least once a second), else which one is stuck.</summary>
    private string? Unhealthy()
    {
        long now = Datapath.Time.GetTimestamp();
        foreach (Datapath w in Workers)
            if (w.IsRunning && now - w.Heartbeat > 5 * w.Time.TimestampFrequency) return $"worker {w.WorkerIndex} has not gone round its loop for over 5 s";
        return null;
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
            foreach (PeerConfig p in PeerConfigs)
            {
                Ipv4Prefix? cidr = null;
                if (p.PodCidr is not null && ConfigLoader.TryParseNetwork(p.PodCidr, out Ipv4Prefix pc)) cidr = pc;
                MacAddress vtep = p.VtepMac is { } v ? MacAddress.Parse(v)
                    : cidr is { } c ? RouterOptions.DefaultRouterMac(c) : MacAddress.Zero;
                w.AddPeer(p.Name!, Ipv4Address.Parse(p.Address!), cidr, vtep);
            }
        }
        LogOverlay(oo.LocalAddress.ToString(), oo.UdpPort, oo.Vni, PeerConfigs.Count, oo.Learning ? "on" : "off",
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

    private void UpdateSteering(IReadOnlyList<Frontend> table)
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
    private TapPort[] OpenTapQueues(string name, string ifName, bool offloads, Stack<(string What, Action Undo)>? undo = null, bool multiQueue = false)
    {
        undo ??= _undo;
        var queues = new TapPort[Workers.Count];
        for (int i = 0; i < queues.Length; i++)
        {
            TapPort q = TapPort.Open(name, ifName, offloads, multiQueue: multiQueue || queues.Length > 1);
            undo.Push(($"tap {ifName}{(queues.Length > 1 ? $" queue {i}" : "")}", q.Dispose));
            queues[i] = q;
        }
        return queues;
    }

    private IPacketPort[] OpenPort(PortConfig pc, string at, Stack<(string What, Action Undo)> undo, bool persistent = false)
    {
        string ifName = pc.Interface!;
        if (pc.Type == "af-packet")
        {
            if (!NetNs.InterfaceExists(ifName))
                throw new PortException($"{at}.interface: interface '{ifName}' does not exist in the switch's network namespace");
            NetNs.BringUp(ifName);
            AfPacketPort ap = AfPacketPort.Open(pc.Name!, ifName, HasOffloads(pc));
            undo.Push(($"af-packet {ifName}", ap.Dispose));
            LogPortOpened(pc.Name!, "af-packet", ifName, "");
            return [ap];
        }
        if (pc.Namespace is { } ns && !NetNs.Exists(ns))
        {
            if (!pc.CreateNamespace)
                throw new PortException($"{at}.namespace: network namespace '{ns}' does not exist (create it with 'ip netns add {ns}' or set createNamespace: true)");
            NetNs.Create(ns);
            undo.Push(($"namespace {ns}", () => NetNs.Delete(ns)));
            LogNamespaceCreated(ns);
        }
        TapPort[] taps;
        try
        {
            taps = OpenTapQueues(pc.Name!, ifName, HasOffloads(pc), undo, multiQueue: persistent);
            // A pod added through the API keeps its interface when the switch stops (a restart or upgrade takes it up
            // again); it is a multi-queue TAP whatever the worker count, so any worker count can attach to it.
            if (persistent) taps[0].SetPersistent(true);
        }
        catch (PortException e)
        {
            throw new PortException($"{at}: {e.Message}", e.Errno);
        }
        try
        {
            return SetUpTap(pc, at, taps);
        }
        catch (PortException) when (persistent)
        {
            // Set-up failed half way: the device must go with the descriptors the caller's undo closes.
            try
            {
                taps[0].SetPersistent(false);
            }
            catch (PortException)
            {
            }
            throw;
        }
    }

    /// <summary>Queue length, receive steering, then the move into the pod's namespace with its address and routes.</summary>
    private TapPort[] SetUpTap(PortConfig pc, string at, TapPort[] taps)
    {
        string ifName = pc.Interface!;
        // The pod's MAC as the kernel chose it, unless configured: the switch knows its pods' neighbor entries from the start.
        _podMacs[pc.Name!] = pc.Mac ?? NetNs.MacOf(ifName);
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
            foreach (string route in pc.Routes ?? [])
                NetNs.Ip(["-n", target, "route", "replace", .. route.Split(' ', StringSplitOptions.RemoveEmptyEntries), "dev", pc.IfName]);
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

    /// <summary>A pod port the switch opened: from the config file or added through the API.</summary>
    private sealed class PodPort
    {
        public required string Name { get; init; }
        /// <summary>config or api.</summary>
        public required string Origin { get; init; }
        public required PortConfig Config { get; init; }
        /// <summary>One queue per worker (the same port everywhere: one id on every worker).</summary>
        public IPacketPort[] Queues { get; set; } = [];
        /// <summary>What to undo to remove it, newest last.</summary>
        public Stack<(string What, Action Undo)> Undo { get; } = new();
        /// <summary>The pod's address (its connections are flushed with the port).</summary>
        public uint[] Addresses => Config.Address is { } a && Ipv4Prefix.TryParse(a, out _, out Ipv4Address ip) ? [ip.Value] : [];
    }

    private readonly Dictionary<string, PodPort> _pods = new(StringComparer.Ordinal);
    private readonly List<PodPort> _podOrder = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string?> _podMacs = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _portGate = new(1, 1);

    /// <summary>Adds a pod port to one worker (on its thread once it runs) under <paramref name="id"/> (-1: the next
    /// free one), with a permanent neighbor entry for the pod's address. Returns the id.</summary>
    private ushort AttachToWorker(Datapath w, PodPort rec, int id)
    {
        IPacketPort q = rec.Queues[w.WorkerIndex < rec.Queues.Length ? w.WorkerIndex : 0];
        ushort got = w.AddPort(q, PortRole.Access, id);
        // Pods the switch created are its neighbors from the start (as a CNI plugin knows what it configured).
        PortConfig pc = rec.Config;
        if (w.Router is { } r && pc.Address is not null && _podMacs.GetValueOrDefault(rec.Name) is { } mac
            && Ipv4Prefix.TryParse(pc.Address, out _, out Ipv4Address ip) && r.Options.PodCidr.Contains(ip))
            r.Neighbors.AddPermanent(ip, MacAddress.Parse(mac), got);
        return got;
    }

    /// <summary>Closes every pod port still open (shutdown), newest first.</summary>
    private void ClosePodPorts()
    {
        for (int i = _podOrder.Count - 1; i >= 0; i--) RunUndo(_podOrder[i].Undo);
        _podOrder.Clear();
        _pods.Clear();
    }

    /// <summary>Where a port came from (config, api, or internal for the host interface, tunnel and uplink) and, for pod
    /// ports, how it was asked for.</summary>
    internal (string Origin, PortSpec? Spec) PortOrigin(string name, PortRole role)
    {
        if (role != PortRole.Access) return ("internal", null);
        lock (_pods)
        {
            return _pods.TryGetValue(name, out PodPort? rec) ? (rec.Origin, SpecOf(rec.Config)) : ("internal", null);
        }
    }

    private static PortSpec SpecOf(PortConfig c) => new()
    {
        Name = c.Name,
        Type = c.Type,
        Interface = c.Interface,
        Namespace = c.Namespace,
        IfName = c.Namespace is null ? null : c.IfName,
        Address = c.Address,
        Mac = c.Mac,
        Mtu = c.Mtu,
        Gateway = c.Gateway,
        Routes = c.Routes,
        Offloads = c.Offloads,
        TxQueueLength = c.TxQueueLength,
    };

    private static PortConfig ConfigOf(PortSpec s) => new()
    {
        Name = s.Name,
        Type = s.Type ?? "tap",
        Interface = s.Interface,
        Namespace = s.Namespace,
        IfName = s.IfName ?? "eth0",
        Address = s.Address,
        Mac = s.Mac,
        Mtu = s.Mtu,
        Gateway = s.Gateway,
        Routes = s.Routes,
        Offloads = s.Offloads,
        TxQueueLength = s.TxQueueLength,
    };

    /// <summary>
    /// Adds a pod port while the switch forwards: the TAP is created (moved into its namespace and set up there) or the
    /// af-packet socket opened off the workers; then every worker takes the port between two batches, under one id.
    /// Traffic on the other ports does not wait for any of it. Errors come back as <see cref="ApiException"/>.
    /// </summary>
    public async Task<PortAdded> AddPortAsync(PortSpec spec)
    {
        var sw = Stopwatch.StartNew();
        PortConfig pc = ConfigOf(spec);
        return await Serialized(async () =>
        {
            var names = new HashSet<string>(Datapath.Ports.All().Select(p => p.Name), StringComparer.Ordinal);
            if (pc.Name is { } n && names.Contains(n)) throw ApiException.AlreadyExists($"a port named '{n}' exists");
            var ifaces = new HashSet<string>(Datapath.Ports.All().Select(p => p.InterfaceName).Where(i => i.Length > 0), StringComparer.Ordinal);
            if (Config.Uplink is { } u)
            {
                ifaces.Add(u.Interface!);
                ifaces.Add(u.Tap);
            }
            var errors = new List<string>();
            ConfigLoader.ValidatePort(pc, "port", names, ifaces, errors);
            if (pc.Type == "af-packet" && Workers.Count > 1) errors.Add("port.type: af-packet ports need datapath.workers 1");
            if (pc.CreateNamespace) errors.Add("port.createNamespace: not available through the API (create the namespace first, as a container runtime does)");
            if (errors.Count > 0) throw ApiException.Invalid(string.Join("; ", errors));
            var rec = new PodPort { Name = pc.Name!, Origin = "api", Config = pc };
            try
            {
                rec.Queues = OpenPort(pc, "port", rec.Undo, persistent: true);
            }
            catch (PortException e)
            {
                RunUndo(rec.Undo);
                throw ApiException.Invalid(e.Message);
            }
            int id = -1;
            var added = new List<Datapath>();
            try
            {
                foreach (Datapath w in Workers)
                {
                    int want = id;
                    id = await w.InvokeAsync(() => (int)AttachToWorker(w, rec, want)).ConfigureAwait(false);
                    added.Add(w);
                }
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException)
            {
                foreach (Datapath w in added) await w.InvokeAsync(() => w.RemovePort(id, [])).ConfigureAwait(false);
                // The TAP must go with the descriptors: it was made persistent when it was opened.
                if (rec.Queues.Length > 0 && rec.Queues[0] is TapPort { Persistent: true } tap)
                {
                    try
                    {
                        tap.SetPersistent(false);
                    }
                    catch (PortException)
                    {
                    }
                }
                RunUndo(rec.Undo);
                throw ApiException.Conflict(e.Message);
            }
            lock (_pods)
            {
                _pods[rec.Name] = rec;
                _podOrder.Add(rec);
            }
            sw.Stop();
            LogPortAdded(rec.Name, id, sw.Elapsed.TotalMilliseconds);
            SaveState();
            var service = new ControlService(this);
            PortInfo info = await Datapath.InvokeAsync(() => service.PortOf(Datapath.Ports[id]!)).ConfigureAwait(false);
            return new PortAdded { Port = info, Milliseconds = Math.Round(sw.Elapsed.TotalMilliseconds, 2) };
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// Removes a pod port while the switch forwards: every worker drops it between two batches and flushes its MAC and
    /// neighbor entries and the connections of its addresses; then its TAP is closed (the device goes with it) or its
    /// socket released. Returns what was flushed.
    /// </summary>
    public async Task<PortRemoved> RemovePortAsync(string name)
    {
        var sw = Stopwatch.StartNew();
        return await Serialized(async () =>
        {
            PodPort? rec;
            lock (_pods) _pods.TryGetValue(name, out rec);
            if (rec is null)
            {
                if (Datapath.Ports.Find(name) is { } p)
                    throw ApiException.Conflict($"port '{name}' is the switch's {Datapath.Ports.Role(p.Id).ToString().ToLowerInvariant()} port; only pod ports can be removed");
                throw ApiException.NotFound($"no port named '{name}'");
            }
            int id = rec.Queues[0].Id;
            uint[] addresses = rec.Addresses;
            int macs = 0, neighbors = 0, connections = 0;
            var flushed = new HashSet<uint>();
            foreach (Datapath w in Workers)
            {
                Datapath.PortFlush f = await w.InvokeAsync(() => w.RemovePort(id, addresses)).ConfigureAwait(false);
                macs += f.MacEntries;
                neighbors += f.Neighbors;
                connections += f.Connections;
                flushed.UnionWith(f.Addresses);
            }
            lock (_pods)
            {
                _pods.Remove(name);
                _podOrder.Remove(rec);
            }
            _podMacs.TryRemove(name, out _);
            // The pod's TAP goes with its port.
            if (rec.Queues.Length > 0 && rec.Queues[0] is TapPort { Persistent: true } tap)
            {
                try
                {
                    tap.SetPersistent(false);
                }
                catch (PortException e)
                {
                    LogCleanupFailed($"tap {tap.InterfaceName}", e.Message);
                }
            }
            RunUndo(rec.Undo);
            if (rec.Origin == "api") SaveState();
            sw.Stop();
            LogPortRemoved(name, macs, neighbors, connections, sw.Elapsed.TotalMilliseconds);
            return new PortRemoved
            {
                Name = name,
                MacEntries = macs,
                Neighbors = neighbors,
                Connections = connections,
                Addresses = flushed.Order().Select(a => new Ipv4Address(a).ToString()).ToList(),
                Milliseconds = Math.Round(sw.Elapsed.TotalMilliseconds, 2),
            };
        }).ConfigureAwait(false);
    }

    private List<PeerConfig>? _peerConfigs;

    /// <summary>The configured peers as they stand (config file, then API changes).</summary>
    private List<PeerConfig> PeerConfigs => _peerConfigs ??= [.. Config.Overlay?.Peers ?? []];

    /// <summary>Checks a changed peer list as the config loader would; throws <see cref="ApiException"/> (Invalid) naming
    /// the peer's fields.</summary>
    private void ValidatePeers(List<PeerConfig> peers, int changed)
    {
        if (Config.Overlay is not { } o) throw ApiException.NotFound("no overlay configured (overlay: section in the config)");
        var probe = new SwitchConfig
        {
            Node = Config.Node,
            Overlay = new OverlayConfig
            {
                LocalAddress = o.LocalAddress,
                Port = o.Port,
                Vni = o.Vni,
                UnderlayMtu = o.UnderlayMtu,
                Learning = o.Learning,
                AcceptUnknownPeers = o.AcceptUnknownPeers,
                FdbAgingSeconds = o.FdbAgingSeconds,
                Peers = peers,
            },
        };
        string at = $"overlay.peers[{changed}]";
        List<string> errors = ConfigLoader.Validate(probe).Where(e => e.StartsWith(at, StringComparison.Ordinal)).Select(e => "peer" + e[at.Length..]).ToList();
        if (errors.Count > 0) throw ApiException.Invalid(string.Join("; ", errors));
    }

    private static PeerConfig PeerConfigOf(PeerSpec s) => new() { Name = s.Name, Address = s.Address, PodCidr = s.PodCIDR, VtepMac = s.VtepMac };

    private static PeerSpec SpecOf(PeerConfig c) => new() { Name = c.Name, Address = c.Address, PodCIDR = c.PodCidr, VtepMac = c.VtepMac };

    private static (Ipv4Address Address, Ipv4Prefix? Cidr, MacAddress Vtep) Resolve(PeerConfig p)
    {
        Ipv4Prefix? cidr = p.PodCidr is not null && ConfigLoader.TryParseNetwork(p.PodCidr, out Ipv4Prefix pc) ? pc : null;
        MacAddress vtep = p.VtepMac is { } v ? MacAddress.Parse(v) : cidr is { } c ? RouterOptions.DefaultRouterMac(c) : MacAddress.Zero;
        return (Ipv4Address.Parse(p.Address!), cidr, vtep);
    }

    /// <summary>Adds an overlay peer while the switch forwards: every worker takes it, its route and its static
    /// forwarding entry between two batches.</summary>
    public async Task<PeerChanged> AddPeerAsync(PeerSpec spec)
    {
        var sw = Stopwatch.StartNew();
        return await Serialized(async () =>
        {
            PeerConfig pc = PeerConfigOf(spec);
            if (pc.Name is { } n && PeerConfigs.Any(p => p.Name == n)) throw ApiException.AlreadyExists($"a peer named '{n}' exists");
            List<PeerConfig> candidate = [.. PeerConfigs, pc];
            ValidatePeers(candidate, candidate.Count - 1);
            (Ipv4Address address, Ipv4Prefix? cidr, MacAddress vtep) = Resolve(pc);
            foreach (Datapath w in Workers) await w.InvokeAsync(() => w.AddPeer(pc.Name!, address, cidr, vtep)).ConfigureAwait(false);
            _peerConfigs = candidate;
            _peersChanged = true;
            SaveState();
            LogPeerChanged(pc.Name!, "added", pc.Address!, pc.PodCidr ?? "-");
            return new PeerChanged { Peer = SpecOf(pc), Action = "added", Milliseconds = Math.Round(sw.Elapsed.TotalMilliseconds, 2) };
        }).ConfigureAwait(false);
    }

    /// <summary>Changes a peer's underlay address, pod subnet or VTEP MAC (fields left out keep their value).</summary>
    public async Task<PeerChanged> UpdatePeerAsync(string name, PeerSpec spec)
    {
        var sw = Stopwatch.StartNew();
        return await Serialized(async () =>
        {
            int at = PeerConfigs.FindIndex(p => p.Name == name);
            if (at < 0) throw ApiException.NotFound($"no configured peer named '{name}'");
            if (spec.Name is { } other && other != name) throw ApiException.Invalid($"peer.name: '{other}' differs from the peer being changed ('{name}'); remove and add to rename");
            PeerConfig old = PeerConfigs[at];
            var pc = new PeerConfig { Name = name, Address = spec.Address ?? old.Address, PodCidr = spec.PodCIDR ?? old.PodCidr, VtepMac = spec.VtepMac ?? old.VtepMac };
            List<PeerConfig> candidate = [.. PeerConfigs];
            candidate[at] = pc;
            ValidatePeers(candidate, at);
            (Ipv4Address address, Ipv4Prefix? cidr, MacAddress vtep) = Resolve(pc);
            foreach (Datapath w in Workers) await w.InvokeAsync(() => { w.UpdatePeer(name, address, cidr, vtep); return 0; }).ConfigureAwait(false);
            _peerConfigs = candidate;
            _peersChanged = true;
            SaveState();
            LogPeerChanged(name, "updated", pc.Address!, pc.PodCidr ?? "-");
            return new PeerChanged { Peer = SpecOf(pc), Action = "updated", Milliseconds = Math.Round(sw.Elapsed.TotalMilliseconds, 2) };
        }).ConfigureAwait(false);
    }

    /// <summary>Removes a peer (configured, or learned from an unknown underlay address), its route and the forwarding
    /// entries behind it.</summary>
    public async Task<PeerChanged> RemovePeerAsync(string name)
    {
        var sw = Stopwatch.StartNew();
        return await Serialized(async () =>
        {
            if (Datapath.Overlay is null) throw ApiException.NotFound("no overlay configured (overlay: section in the config)");
            int at = PeerConfigs.FindIndex(p => p.Name == name);
            bool anywhere = false;
            foreach (Datapath w in Workers) anywhere |= await w.InvokeAsync(() => w.Overlay!.IndexOf(name) >= 0).ConfigureAwait(false);
            if (at < 0 && !anywhere) throw ApiException.NotFound($"no peer named '{name}'");
            int fdb = 0;
            foreach (Datapath w in Workers) fdb += await w.InvokeAsync(() => w.Overlay!.IndexOf(name) >= 0 ? w.RemovePeer(name) : 0).ConfigureAwait(false);
            PeerSpec removed = at >= 0 ? SpecOf(PeerConfigs[at]) : new PeerSpec { Name = name };
            if (at >= 0)
            {
                _peerConfigs = PeerConfigs.Where((_, i) => i != at).ToList();
                _peersChanged = true;
                SaveState();
            }
            LogPeerChanged(name, "removed", removed.Address ?? "-", removed.PodCIDR ?? "-");
            return new PeerChanged { Peer = removed, Action = "removed", ForwardingEntriesRemoved = fdb, Milliseconds = Math.Round(sw.Elapsed.TotalMilliseconds, 2) };
        }).ConfigureAwait(false);
    }

    private readonly HashSet<string> _clusterPeers = new(StringComparer.Ordinal);

    /// <summary>The cluster membership (subnet lease, peers and objects from the store); null without a cluster section.</summary>
    public ClusterAgent? Cluster { get; set; }

    /// <summary>Adds or changes a peer found in the cluster store (another node's subnet lease). Refused (ArgumentException)
    /// when its subnet overlaps this node's or its address is this node's.</summary>
    public async Task SetClusterPeerAsync(string name, Ipv4Address address, Ipv4Prefix subnet, MacAddress vtep)
    {
        await Serialized(async () =>
        {
            if (Datapath.Overlay is null) throw new InvalidOperationException("no overlay configured");
            if (Datapath.Router is { } r && (r.Options.PodCidr.Contains(subnet.Address) || subnet.Contains(r.Options.PodCidr.Address)))
                throw new ArgumentException($"its subnet {subnet} overlaps this node's {r.Options.PodCidr}");
            if (address == Datapath.Overlay.Options.LocalAddress) throw new ArgumentException($"its address {address} is this node's");
            if (PeerConfigs.Any(p => p.Name == name)) throw new ArgumentException($"a configured peer is named '{name}'");
            bool update = _clusterPeers.Contains(name);
            foreach (Datapath w in Workers)
                await w.InvokeAsync(() =>
                {
                    if (update) w.UpdatePeer(name, address, subnet, vtep);
                    else w.AddPeer(name, address, subnet, vtep);
                    return 0;
                }).ConfigureAwait(false);
            _clusterPeers.Add(name);
            return 0;
        }).ConfigureAwait(false);
    }

    /// <summary>Removes a peer whose lease left the cluster store, with its route and forwarding entries.</summary>
    public async Task RemoveClusterPeerAsync(string name)
    {
        await Serialized(async () =>
        {
            if (!_clusterPeers.Remove(name)) return 0;
            foreach (Datapath w in Workers) await w.InvokeAsync(() => w.Overlay!.IndexOf(name) >= 0 ? w.RemovePeer(name) : 0).ConfigureAwait(false);
            return 0;
        }).ConfigureAwait(false);
    }

    /// <summary>Runs one change of ports or peers at a time, so every worker's tables go through the same changes in the
    /// same order (and give a port the same id).</summary>
    private async Task<T> Serialized<T>(Func<Task<T>> change)
    {
        await _portGate.WaitAsync().ConfigureAwait(false);
        try
        {
            return await change().ConfigureAwait(false);
        }
        finally
        {
            _portGate.Release();
        }
    }

    private void RunUndo(Stack<(string What, Action Undo)> undo)
    {
        while (undo.TryPop(out (string What, Action Undo) u))
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

    private void Teardown() => RunUndo(_undo);

    /// <summary>Stops the switch: saves the tracked connections and the state, then removes what it created (pods added
    /// through the API keep their interfaces).</summary>
    public void Dispose()
    {
        try
        {
            SaveConnections();
        }
        finally
        {
            Teardown();
        }
    }

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

    [LoggerMessage(Level = LogLevel.Information, Message = "port {Name} added (id {Id}) in {Ms:F1} ms")]
    private partial void LogPortAdded(string name, int id, double ms);

    [LoggerMessage(Level = LogLevel.Information, Message = "port {Name} removed: flushed {Macs} MAC entries, {Neighbors} neighbors, {Connections} connections in {Ms:F1} ms")]
    private partial void LogPortRemoved(string name, int macs, int neighbors, int connections, double ms);

    [LoggerMessage(Level = LogLevel.Information, Message = "peer {Name} {Action}: {Address}, pod CIDR {PodCidr}")]
    private partial void LogPeerChanged(string name, string action, string address, string podCidr);

    [LoggerMessage(Level = LogLevel.Information, Message = "forwarding: {Workers} worker(s) running, {Ms:F0} ms after the process started")]
    private partial void LogForwarding(int workers, double ms);

    [LoggerMessage(Level = LogLevel.Information, Message = "announced {Frames} neighbor(s) by ARP to the {Pods} pod(s) taken up again")]
    private partial void LogNeighborsAnnounced(int frames, int pods);

    [LoggerMessage(Level = LogLevel.Error, Message = "state: {Reason}; starting clean")]
    private partial void LogStateRejected(string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "state: cannot write {File}: {Error}")]
    private partial void LogStateNotSaved(string file, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "state: restored {Restored} of {Saved} connection(s) from {File}")]
    private partial void LogConnectionsRestored(int restored, int saved, string file);

    [LoggerMessage(Level = LogLevel.Information, Message = "state: saved {Count} connection(s) to {File}")]
    private partial void LogConnectionsSaved(int count, string file);

    [LoggerMessage(Level = LogLevel.Information, Message = "port {Name}: taken up again in namespace {Namespace} (its TAP outlived the last run)")]
    private partial void LogPortReattached(string name, string @namespace);

    [LoggerMessage(Level = LogLevel.Warning, Message = "port {Name}: not taken up again: {Error}; dropped")]
    private partial void LogPortNotReattached(string name, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cleanup of {What} failed: {Error}")]
    private partial void LogCleanupFailed(string what, string error);
}

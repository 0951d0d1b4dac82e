using System.Globalization;
using System.Text;
using VSwitch.Encap;
using VSwitch.Nat;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.Config;
using VSwitch.Switch.L2;
using VSwitch.Switch.L3;

namespace VSwitch.Switch.Control;

/// <summary>
/// The control API's resources, built from the data plane. Every read of a worker's tables runs on that worker's thread
/// between batches (<see cref="Datapath.InvokeAsync{T}"/>), so it sees a consistent state and the workers take no lock.
/// </summary>
public sealed class ControlService
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);
    private readonly SwitchHost _host;

    public ControlService(SwitchHost host)
    {
        _host = host;
        NodeName = host.NodeName;
    }

    public SwitchHost Host => _host;
    public Datapath Datapath => _host.Datapath;
    public string NodeName { get; }
    private IReadOnlyList<Datapath> Workers => _host.Workers;

    private T OnWorker<T>(Func<T> f)
    {
        Task<T> t = Datapath.InvokeAsync(f);
        if (!((IAsyncResult)t).AsyncWaitHandle.WaitOne(Timeout)) throw ApiException.Timeout("the worker did not answer within 5 s");
        return t.GetAwaiter().GetResult();
    }

    /// <summary>Runs <paramref name="f"/> on every worker's thread (each owns its tables) and returns the answers in worker order.</summary>
    private List<T> OnEach<T>(Func<Datapath, T> f)
    {
        Task<T>[] tasks = Workers.Select(w => w.InvokeAsync(() => f(w))).ToArray();
        try
        {
            if (!Task.WaitAll(tasks, Timeout)) throw ApiException.Timeout("a worker did not answer within 5 s");
        }
        catch (AggregateException e) when (e.InnerException is ApiException api)
        {
            throw api;
        }
        return tasks.Select(t => t.GetAwaiter().GetResult()).ToList();
    }

    // Counters are written by their worker only and read here as they stand (64-bit reads are atomic): summed over workers.
    private long PortCounterSum(int port, PortCounter c) => Workers.Sum(w => w.Ports[port] is { } p ? p.Counters[(int)c] : 0);

    private long StageCounterSum(int stage, int k) => Workers.Sum(w => w.Graph.Stages[stage].Counters[k]);

    private (long Calls, long Packets) RuntimeSum(int stage)
    {
        long calls = 0, packets = 0;
        foreach (Datapath w in Workers)
        {
            (long c, long p) = w.Graph.Runtime(stage);
            calls += c;
            packets += p;
        }
        return (calls, packets);
    }

    private List<(string Stage, string Reason, long Count)> DropSums()
    {
        List<(string Stage, string Reason, long Count)> sum = Datapath.Graph.Drop.All().ToList();
        foreach (Datapath w in Workers.Skip(1))
        {
            int i = 0;
            foreach ((string _, string _, long c) in w.Graph.Drop.All())
            {
                sum[i] = (sum[i].Stage, sum[i].Reason, sum[i].Count + c);
                i++;
            }
        }
        return sum;
    }

    public StatusInfo Status() => OnWorker(() =>
    {
        double up = (Datapath.Time.GetTimestamp() - Datapath.StartedAt) / (double)Datapath.Time.TimestampFrequency;
        return new StatusInfo
        {
            Node = NodeName,
            UptimeSeconds = Math.Round(up, 1),
            Ports = Datapath.Ports.Count,
            Workers = Workers.Count,
            BatchSize = Datapath.Options.BatchSize,
            Polling = Polling(),
            PodRxCpus = _host.PodRxCpus is { } rx ? CpuList.Format(rx) : null,
            MacTable = new TableFill(Datapath.Macs.Count, Datapath.Macs.MaxEntries),
            MacAgingSeconds = Datapath.Options.MacAging.TotalSeconds,
            Buffers = new TableFill(Datapath.Slab.FreeCount, Datapath.Slab.Capacity),
            Routing = Datapath.Router is { } r
                ? new RoutingInfo(r.Options.PodCidr.ToString(), r.Options.Gateway.ToString(), r.Options.RouterMac.ToString(), r.Options.ClusterCidr.ToString(),
                    r.Routes.Routes.Count, r.Neighbors.Count)
                : null,
            Overlay = Datapath.Overlay is { } o
                ? new OverlayInfo(o.Options.LocalAddress.ToString(), o.Options.UdpPort, o.Options.Vni, o.Options.UnderlayMtu, o.Options.Learning, o.Peers.Count, o.FdbCount)
                : null,
            Socket = _host.Config.Control.Socket,
            Cluster = _host.Cluster is { } c ? new ClusterBrief(c.State, c.Subnet.ToString(), c.LastError) : null,
        };
    });

    private ClusterAgent ClusterOrThrow() =>
        _host.Cluster ?? throw ApiException.NotFound("no cluster store configured (cluster: section in the config)");

    public ClusterInfo ClusterStatus()
    {
        ClusterAgent c = ClusterOrThrow();
        static WatchInfo W(VSwitch.Cluster.PrefixWatcher? w, string prefix) => w is null
            ? new WatchInfo(prefix, false, 0, 0, 0, 0, 0, 0, null)
            : new WatchInfo(w.Prefix, w.Watching, w.Revision, w.Keys, w.Lists, w.Relists, w.Events, w.Breaks, w.LastError, w.HandlerErrors, w.LastHandlerError);
        return new ClusterInfo
        {
            State = c.State,
            LastError = c.LastError,
            Node = c.NodeName,
            Endpoints = c.Store.Endpoints,
            Member = c.Store.CurrentMember,
            Failovers = c.Store.Failovers,
            Prefix = _host.Config.Cluster!.Prefix,
            Subnet = c.Subnet.ToString(),
            PublicIP = _host.Config.Overlay!.LocalAddress!,
            VtepMac = (Datapath.Router?.Options.RouterMac ?? default).ToString(),
            LeaseId = c.Leaser.Current is null ? null : c.Leaser.LeaseId.ToString("x", CultureInfo.InvariantCulture),
            LeaseTTLSeconds = c.Leaser.TtlSeconds,
            Network = c.Network?.Network,
            Vni = _host.Config.Overlay.Vni,
            Port = _host.Config.Overlay.Port,
            Revision = Math.Max(c.LeaseWatch?.Revision ?? 0, c.ObjectWatch?.Revision ?? 0),
            Peers = [.. c.Peers.Values.OrderBy(p => p.Subnet.Address.Value).Select(p => new ClusterPeerInfo(VSwitch.Cluster.FlannelLayout.SubnetName(p.Subnet), p.Subnet.ToString(), p.PublicIP.ToString(), p.VtepMac.ToString()))],
            Watches = [W(c.LeaseWatch, "leases"), W(c.ObjectWatch, "objects")],
            Objects = c.ObjectCounts(),
            Renewals = c.Renewals,
            RenewFailures = c.RenewFailures,
            Reconnects = c.Store.Resets,
            BadLeases = c.BadLeases,
            BadObjects = c.BadObjects,
            LastObjectApplyMs = Math.Round(c.LastObjectApplyMs, 2),
        };
    }

    /// <summary>Applies a manifest: to the cluster store when there is one (every kind it keeps, in one transaction),
    /// else its Services and EndpointSlices to this node as <c>service apply</c> does.</summary>
    public async Task<ApplyResult> ApplyObjectsAsync(string manifest)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        if (_host.Cluster is not { } c)
        {
            ServiceChangeInfo info = ApplyServices(manifest);
            return new ApplyResult([new VSwitch.Cluster.AppliedObject("Service", null, string.Join(",", info.Changed), "applied to this node", 0)], Math.Round(sw.Elapsed.TotalMilliseconds, 2));
        }
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            List<VSwitch.Cluster.AppliedObject> items = await c.Registry.ApplyAsync(manifest, "manifest", cts.Token).ConfigureAwait(false);
            return new ApplyResult(items, Math.Round(sw.Elapsed.TotalMilliseconds, 2));
        }
        catch (VSwitch.Nat.Cluster.ManifestException e)
        {
            throw ApiException.Invalid(e.Message);
        }
        catch (VSwitch.Cluster.ConflictException e)
        {
            throw ApiException.Conflict(e.Message);
        }
        catch (VSwitch.Cluster.StoreRejectedException e)
        {
            throw ApiException.Invalid($"{e.Message} (split the manifest into smaller applies, or raise the limit on the etcd members)");
        }
        catch (VSwitch.Cluster.StoreUnavailableException e)
        {
            throw ApiException.Unavailable($"the cluster store: {e.Message}");
        }
    }

    private static readonly System.Text.Json.JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static VSwitch.Cluster.KubeKind KindOrThrow(string resource) =>
        VSwitch.Cluster.KubeObjects.Find(resource) ?? throw ApiException.NotFound($"the cluster store keeps no '{resource}' (it keeps {VSwitch.Cluster.KubeObjects.KindList})");

    /// <summary>Objects of a kind as a Kubernetes List (JSON with the real field names), or one object.</summary>
    public async Task<string> GetObjectsAsync(string resource, string? name, string? ns)
    {
        ClusterAgent c = ClusterOrThrow();
        VSwitch.Cluster.KubeKind kind = KindOrThrow(resource);
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            if (name is not null)
            {
                var one = await c.Registry.GetAsync(kind, ns, name, cts.Token).ConfigureAwait(false)
                    ?? throw ApiException.NotFound($"{kind.Resource} \"{name}\" not found{(kind.Namespaced ? $" in namespace {ns ?? "default"}" : "")}");
                return System.Text.Json.Nodes.JsonNode.Parse(k8s.KubernetesJson.Serialize(one))!.ToJsonString(Indented);
            }
            List<object> items = await c.Registry.ListAsync<object>(kind, ns, cts.Token).ConfigureAwait(false);
            var list = new System.Text.Json.Nodes.JsonObject
            {
                ["apiVersion"] = "v1",
                ["kind"] = "List",
                ["items"] = new System.Text.Json.Nodes.JsonArray([.. items.Select(i => System.Text.Json.Nodes.JsonNode.Parse(k8s.KubernetesJson.Serialize(i)))]),
            };
            return list.ToJsonString(Indented);
        }
        catch (VSwitch.Cluster.StoreUnavailableException e)
        {
            throw ApiException.Unavailable($"the cluster store: {e.Message}");
        }
    }

    public async Task<DeleteResult> DeleteObjectAsync(string resource, string name, string? ns, long? resourceVersion)
    {
        ClusterAgent c = ClusterOrThrow();
        VSwitch.Cluster.KubeKind kind = KindOrThrow(resource);
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            if (!await c.Registry.DeleteAsync(kind, ns, name, resourceVersion, cts.Token).ConfigureAwait(false))
                throw ApiException.NotFound($"{kind.Resource} \"{name}\" not found{(kind.Namespaced ? $" in namespace {ns ?? "default"}" : "")}");
            return new DeleteResult(kind.Kind, kind.Namespaced ? ns ?? "default" : null, name, "deleted");
        }
        catch (VSwitch.Cluster.ConflictException e)
        {
            throw ApiException.Conflict(e.Message);
        }
        catch (VSwitch.Cluster.StoreUnavailableException e)
        {
            throw ApiException.Unavailable($"the cluster store: {e.Message}");
        }
    }

    /// <summary>How the workers wait: a fixed polling window, the adaptive one (each worker's current window and how
    /// often it changed), or none.</summary>
    private PollingInfo Polling()
    {
        DatapathOptions o = Datapath.Options;
        if (o.BusyPoll > TimeSpan.Zero) return new PollingInfo { Mode = "busy", LimitMicros = o.BusyPoll.TotalMicroseconds };
        if (o.AdaptivePollLimit <= TimeSpan.Zero) return new PollingInfo { Mode = "off" };
        double f = Datapath.Time.TimestampFrequency / 1e6;
        return new PollingInfo
        {
            Mode = "adaptive",
            LimitMicros = o.AdaptivePollLimit.TotalMicroseconds,
            Workers = Workers.Select(w => w.PollState).Select(p => new PollWorker(Math.Round(p.Window / f), p.Streaming, p.Grown, p.Shrunk, p.Probed)).ToList(),
        };
    }

    public List<PortInfo> Ports() => OnWorker(() => Datapath.Ports.All().Select(PortOf).ToList());

    public PortInfo Port(string name) => OnWorker(() =>
        Datapath.Ports.Find(name) is { } p ? PortOf(p) : throw ApiException.NotFound($"no port named '{name}'"));

    internal PortInfo PortOf(IPacketPort p)
    {
        long C(PortCounter c) => PortCounterSum(p.Id, c);
        PortRole role = Datapath.Ports.Role(p.Id);
        (string origin, PortSpec? spec) = _host.PortOrigin(p.Name, role);
        return new PortInfo
        {
            Name = p.Name,
            Id = p.Id,
            Kind = p.Kind,
            Role = role.ToString().ToLowerInvariant(),
            Interface = p.InterfaceName.Length == 0 ? null : p.InterfaceName,
            Offloads = OffloadNames(p.Offloads),
            Origin = origin,
            Spec = spec,
            Counters = new PortCounters(C(PortCounter.RxPackets), C(PortCounter.RxBytes), C(PortCounter.RxDropped), C(PortCounter.RxErrors),
                C(PortCounter.TxPackets), C(PortCounter.TxBytes), C(PortCounter.TxDropped), C(PortCounter.TxErrors),
                C(PortCounter.RxSuperFrames), C(PortCounter.TxSuperFrames)),
        };
    }

    /// <summary>As ethtool names them: tx-checksumming, tcp-segmentation-offload (IPv4, IPv6).</summary>
    private static List<string> OffloadNames(PortOffloads o) =>
        new[] { (PortOffloads.Checksum, "csum"), (PortOffloads.Tso4, "tso4"), (PortOffloads.Tso6, "tso6") }
            .Where(x => (o & x.Item1) != 0).Select(x => x.Item2).ToList();

    /// <summary>The MAC table; with several workers, what any of them learned (each learns from the flows it serves), the
    /// most recent sighting of each address.</summary>
    public MacList Macs()
    {
        List<(MacTable.View View, string Port)> entries = OnEach(w =>
                w.Macs.Entries(w.Time.GetTimestamp(), w.Time.TimestampFrequency).Select(v => (v, w.Ports.PortName(v.Port))).ToList())
            .SelectMany(x => x)
            .GroupBy(e => (e.v.Mac, e.v.Vlan)).Select(g => g.OrderBy(e => e.v.IsStatic ? -1 : e.v.AgeSeconds).First())
            .OrderBy(e => e.v.Vlan).ThenBy(e => e.v.Mac.Value).ToList();
        return new MacList(entries.Select(e => new MacEntryInfo(e.View.Mac.ToString(), e.View.Vlan, e.Port, e.View.IsStatic,
            e.View.IsStatic ? 0 : Math.Round(e.View.AgeSeconds, 1))).ToList(), Datapath.Macs.MaxEntries);
    }

    public RouteTableInfo Routes() => OnWorker(() =>
    {
        if (Datapath.Router is not { } r) return new RouteTableInfo { Enabled = false };
        return new RouteTableInfo
        {
            Enabled = true,
            Gateway = r.Options.Gateway.ToString(),
            RouterMac = r.Options.RouterMac.ToString(),
            TunnelMtu = r.Overlay?.Options.OverlayMtu,
            Routes = r.Routes.Routes.OrderByDescending(x => x.Prefix.Length).ThenBy(x => x.Prefix.Address)
                .Select(x => new RouteInfo(x.Prefix.ToString(), x.Kind.ToString().ToLowerInvariant(), x.Via.Length == 0 ? null : x.Via)).ToList(),
        };
    });

    public NeighborList Neighbors() => OnWorker(() =>
    {
        if (Datapath.Router is not { } r) return new NeighborList(false, []);
        long now = Datapath.Time.GetTimestamp();
        double f = Datapath.Time.TimestampFrequency;
        var list = new List<NeighborInfo>();
        foreach ((Ipv4Address ip, Neighbor n) in r.Neighbors.Entries())
        {
            double? age = n.State switch
            {
                NeighborState.Permanent => null,
                NeighborState.Incomplete => Math.Round((now - n.FirstAsked) / f, 1),
                _ => Math.Round((now - n.Updated) / f, 1),
            };
            bool incomplete = n.State == NeighborState.Incomplete;
            list.Add(new NeighborInfo(ip.ToString(), incomplete ? null : new MacAddress(n.Mac).ToString(), incomplete ? null : Datapath.Ports.PortName(n.Port),
                n.State.ToString().ToLowerInvariant(), age));
        }
        return new NeighborList(true, list);
    });

    /// <summary>Overlay peers and forwarding entries. Configured peers are on every worker; one learned from an unknown
    /// underlay address is on the workers that heard from it. Packet counts are summed, the newest sighting kept.</summary>
    public PeerList Peers()
    {
        if (Datapath.Overlay is not { } o) return new PeerList { Enabled = false };
        double f = Datapath.Time.TimestampFrequency;
        var parts = OnEach(w => (
            Peers: w.Overlay!.Peers.Select(p => (p.Name, p.Address, p.PodCidr, p.VtepMac, p.IsStatic, p.RxPackets, p.TxPackets, p.LastSeen)).ToList(),
            Fdb: w.Overlay.FdbEntries().Select(e => (e.Mac, e.Peer.Name, e.Peer.Address, e.IsStatic, e.Updated)).ToList(),
            Now: w.Time.GetTimestamp()));
        long now = parts.Max(x => x.Now);
        var peers = parts.SelectMany(x => x.Peers).GroupBy(p => p.Address.Value).Select(g =>
        {
            var p = g.First();
            long seen = g.Max(x => x.LastSeen);
            return new PeerInfo(p.Name, p.Address.ToString(), p.PodCidr?.ToString(), p.VtepMac.IsZero ? null : p.VtepMac.ToString(), p.IsStatic,
                g.Sum(x => x.RxPackets), g.Sum(x => x.TxPackets), seen == 0 ? null : Math.Round((now - seen) / f, 1));
        }).ToList();
        var fdb = parts.SelectMany(x => x.Fdb).GroupBy(e => e.Mac).Select(g => g.OrderByDescending(e => e.IsStatic).ThenByDescending(e => e.Updated).First())
            .OrderBy(e => e.Mac).Select(e => new FdbEntryInfo(e.Mac.ToString(), e.Name, e.Address.ToString(), e.IsStatic,
                e.IsStatic ? null : Math.Round((now - e.Updated) / f, 1))).ToList();
        return new PeerList
        {
            Enabled = true,
            LocalAddress = o.Options.LocalAddress.ToString(),
            Port = o.Options.UdpPort,
            Vni = o.Options.Vni,
            UnderlayMtu = o.Options.UnderlayMtu,
            Learning = o.Options.Learning,
            Peers = peers,
            ForwardingTable = fdb,
        };
    }

    private NatEngine Nat => Datapath.Nat ?? throw ApiException.NotFound("Service NAT is off (no services: section in the config)");

    /// <summary>Tracked connections, in the shape of <c>conntrack -L</c>, plus packet counts and the NAT decision.</summary>
    public ConntrackList Connections(int max)
    {
        NatEngine nat = Nat;
        long tps = Datapath.Time.TimestampFrequency;
        // Each worker holds the connections whose flows it serves.
        var parts = OnEach(w => (List: w.Nat!.Conntrack.Snapshot(max), w.Nat.Conntrack.Count, w.Nat.Expired, w.Nat.Evicted, Now: w.Time.GetTimestamp()));
        var list = new List<ConnectionInfo>();
        foreach (var part in parts)
        {
            foreach ((int _, CtEntry e) in part.List)
            {
                if (list.Count >= max) break;
                list.Add(Connection(nat, e, part.Now, tps));
            }
        }
        return new ConntrackList
        {
            Connections = list,
            Count = parts.Sum(x => x.Count),
            Capacity = nat.Conntrack.Capacity,
            CapacityPerWorker = Workers.Count > 1,
            Expired = parts.Sum(x => x.Expired),
            Evicted = parts.Sum(x => x.Evicted),
        };
    }

    private static ConnectionInfo Connection(NatEngine nat, in CtEntry e, long now, long tps)
    {
        string proto = e.Orig.Proto switch { IpProtocol.Tcp => "tcp", IpProtocol.Udp => "udp", IpProtocol.Icmp => "icmp", _ => "unknown" };
        EndpointRef? dnat = null, snat = null;
        if ((e.Status & CtStatus.DstNat) != 0)
        {
            Frontend? f = nat.Services.Lookup(e.Orig.Dst, e.Orig.Proto, e.Orig.DstPort);
            dnat = new EndpointRef(new Ipv4Address(e.Reply.Src).ToString(), e.Reply.SrcPort, f is null ? null : f.Service + (f.PortName is null ? "" : ":" + f.PortName));
        }
        if ((e.Status & CtStatus.SrcNat) != 0)
            snat = new EndpointRef(new Ipv4Address(e.Reply.Dst).ToString(), e.Orig.Proto == IpProtocol.Icmp ? e.Reply.SrcPort : e.Reply.DstPort);
        return new ConnectionInfo
        {
            Protocol = proto,
            ProtocolNumber = e.Orig.Proto,
            TimeoutSeconds = Math.Max(0, (e.Expires - now) / tps),
            State = e.Orig.Proto == IpProtocol.Tcp ? ConntrackStage.StateName(e.State) : null,
            Original = Tuple(e.Orig, e.Packets0, e.Bytes0),
            Reply = Tuple(e.Reply, e.Packets1, e.Bytes1),
            Unreplied = (e.Status & CtStatus.SeenReply) == 0,
            Assured = (e.Status & CtStatus.Assured) != 0,
            Dnat = dnat,
            Snat = snat,
            Rule = e.Rule == CtRule.None ? null : e.Rule.ToString().ToLowerInvariant(),
            PickedUpMidStream = (e.Status & CtStatus.Loose) != 0 ? true : null,
        };
    }

    private static TupleInfo Tuple(FlowKey k, long packets, long bytes) => k.Proto == IpProtocol.Icmp
        ? new TupleInfo { Src = new Ipv4Address(k.Src).ToString(), Dst = new Ipv4Address(k.Dst).ToString(), Type = k.DstPort, Id = k.SrcPort, Packets = packets, Bytes = bytes }
        : new TupleInfo { Src = new Ipv4Address(k.Src).ToString(), Dst = new Ipv4Address(k.Dst).ToString(), Sport = k.SrcPort, Dport = k.DstPort, Packets = packets, Bytes = bytes };

    /// <summary>Services as compiled: every frontend with its endpoints and policies.</summary>
    public ServiceList Services()
    {
        if (Datapath.Nat is not { } nat) return new ServiceList { Enabled = false };
        (IReadOnlyList<Frontend> frontends, int count, long version) = OnWorker(() => (nat.Services.Frontends, nat.Services.ServiceCount, nat.Services.Version));
        return new ServiceList
        {
            Enabled = true,
            ServiceCIDR = nat.Options.ServiceCidr?.ToString(),
            NodeAddress = nat.Options.NodeAddress?.ToString(),
            Services = count,
            Version = version,
            LastLoad = _host.Services?.LastResult,
            LastError = _host.Services?.LastError,
            Frontends = frontends.Select(f => new FrontendInfo
            {
                Service = f.Service,
                PortName = f.PortName,
                Kind = f.Kind.ToString(),
                Address = f.Address == 0 ? null : new Ipv4Address(f.Address).ToString(),
                Port = f.Port,
                Protocol = f.Protocol == IpProtocol.Tcp ? "TCP" : "UDP",
                Endpoints = f.Endpoints.Select(e => new FrontendEndpoint(new Ipv4Address(e.Address).ToString(), e.Port, e.Local)).ToList(),
                TerminatingFallback = f.UsingTerminating,
                ExternalTrafficPolicy = f.ExternalPolicy.ToString(),
                InternalTrafficPolicy = f.InternalPolicy.ToString(),
                AffinityTimeoutSeconds = f.Affinity ? f.AffinitySeconds : null,
            }).ToList(),
        };
    }

    /// <summary>Re-reads the Service manifests now.</summary>
    public ReloadResult Reload()
    {
        if (_host.Services is not { HasManifests: true } mf) throw ApiException.NotFound("no services.manifests configured");
        mf.Reload();
        return mf.LastError is null ? new ReloadResult(true, mf.LastResult) : throw ApiException.Invalid($"{mf.LastError}\n(kept the Services in force)");
    }

    /// <summary>Applies Services and EndpointSlices from a manifest (YAML or JSON, any number of objects) given to the API.</summary>
    public ServiceChangeInfo ApplyServices(string manifest)
    {
        ServiceCatalog c = Catalog();
        try
        {
            ServiceChange change = c.Apply(manifest);
            _host.SaveState();
            return Info(change);
        }
        catch (VSwitch.Nat.Cluster.ManifestException e)
        {
            throw ApiException.Invalid(e.Message);
        }
    }

    /// <summary>Deletes a Service or an EndpointSlice the API gave.</summary>
    public ServiceChangeInfo DeleteServiceObject(string kind, string ns, string name)
    {
        ServiceCatalog c = Catalog();
        try
        {
            ServiceChange change = c.Delete(kind, $"{ns}/{name}");
            _host.SaveState();
            return Info(change);
        }
        catch (KeyNotFoundException e)
        {
            throw ApiException.NotFound(e.Message);
        }
        catch (InvalidOperationException e)
        {
            throw ApiException.Conflict(e.Message);
        }
    }

    private ServiceCatalog Catalog() => _host.Services ?? throw ApiException.NotFound("Service NAT is off (no services: section in the config)");

    private static ServiceChangeInfo Info(ServiceChange c) =>
        new(c.Changed, c.Evicted, Math.Round(c.CompileMs, 3), Math.Round(c.WorkerMs, 3), Math.Round(c.TotalMs, 3), c.Summary);

    /// <summary>The uplink's steering rules as the kernel has them, with their packet counters.</summary>
    public UplinkInfo Uplink()
    {
        if (_host.Steering is not { } s) throw ApiException.NotFound("no uplink configured");
        string rules;
        try
        {
            rules = s.List();
        }
        catch (VSwitch.Tap.PortException ex)
        {
            rules = ex.Message + "\n";
        }
        return new UplinkInfo(s.Underlay, s.NodeAddress.ToString(), s.NodePorts, s.ExternalFrontends, s.Tap, s.LastError, rules);
    }

    public CounterReport Counters() => OnWorker(() =>
    {
        StageGraph g = Datapath.Graph;
        var stages = new List<StageRuntime>();
        for (int i = 0; i < g.Stages.Count; i++)
        {
            Stage s = g.Stages[i];
            (long calls, long pkts) = RuntimeSum(i);
            var counters = new List<NamedCount>();
            for (int k = 0; k < s.Counters.Count; k++) counters.Add(new NamedCount(s.Counters.Names[k], StageCounterSum(s.Index, k), s.Counters.Help[k]));
            stages.Add(new StageRuntime(s.Name, calls, pkts, counters));
        }
        List<WorkerCounters>? workers = null;
        if (Datapath.Mesh is { } mesh)
        {
            // What crosses between workers: refused hand-offs and copies are packets lost; lost messages can leave a NATed
            // connection's replies unredirected or a neighbor unknown to a worker.
            workers = Workers.Select(d => new WorkerCounters(d.WorkerIndex, mesh.HandOffsRefused(d.WorkerIndex), mesh.CopiesDropped(d.WorkerIndex),
                mesh.MessagesDropped(d.WorkerIndex), d.Nat?.Steering?.Redirects, d.Nat?.Steering?.RedirectsDropped)).ToList();
        }
        return new CounterReport
        {
            Stages = stages,
            Drops = DropSums().Where(d => d.Count != 0).Select(d => new DropCount(d.Stage, d.Reason, d.Count)).ToList(),
            Workers = workers,
        };
    });

    /// <summary>The stage graph as the workers run it: each stage's position, its next stages, calls, packets and drops.</summary>
    public GraphInfo Graph() => OnWorker(() =>
    {
        StageGraph g = Datapath.Graph;
        List<(string Stage, string Reason, long Count)> drops = DropSums();
        return new GraphInfo(g.Stages.Select((s, i) =>
        {
            (long calls, long pkts) = RuntimeSum(i);
            string? arc = g.Arcs.FirstOrDefault(a => a.Features.Contains(s.Name)).Arc;
            return new GraphStage(i, s.Name, arc, s.NextNames.ToList(), calls, pkts, drops.Where(d => d.Stage == s.Name).Sum(d => d.Count));
        }).ToList(), g.Arcs.Select(a => new ArcInfo(a.Arc, [.. a.Features], a.End)).ToList());
    });

    public TraceState TraceAdd(int count)
    {
        if (count is < 1 or > 100_000) throw ApiException.Invalid($"count: {count} is not between 1 and 100000");
        return OnWorker(() =>
        {
            foreach (Datapath w in Workers) w.Context.Trace.Remaining += count;
            return new TraceState(Datapath.Context.Trace.Remaining, Workers.Count > 1);
        });
    }

    public TraceState TraceClear() => OnWorker(() =>
    {
        foreach (Datapath w in Workers) w.Context.Trace.Clear();
        return new TraceState(0, Workers.Count > 1);
    });

    public TraceReport Trace(int last)
    {
        if (last is < 1 or > 100_000) throw ApiException.Invalid($"last: {last} is not between 1 and 100000");
        return new TraceReport(OnEach(w => TraceOf(w, last)));
    }

    private static WorkerTrace TraceOf(Datapath dp, int lastPackets)
    {
        TraceRecord[] records = dp.Context.Trace.Snapshot();
        var ids = new List<uint>();
        var seen = new HashSet<uint>();
        for (int i = records.Length - 1; i >= 0 && ids.Count < lastPackets; i--)
            if (seen.Add(records[i].TraceId)) ids.Add(records[i].TraceId);
        ids.Reverse();
        StageGraph g = dp.Graph;
        double freq = dp.Time.TimestampFrequency;
        long first = -1;
        var packets = new List<TracedPacket>();
        foreach (uint id in ids)
        {
            var steps = new List<TraceStep>();
            double offset = 0;
            foreach (TraceRecord r in records)
            {
                if (r.TraceId != id) continue;
                if (steps.Count == 0)
                {
                    if (first < 0) first = r.Timestamp;
                    offset = (r.Timestamp - first) / freq;
                }
                Stage s = g.Stages[r.Stage];
                steps.Add(new TraceStep(s.Name, s.DescribeTrace(r, dp.Ports)));
            }
            packets.Add(new TracedPacket(id, Math.Round(offset, 6), steps));
        }
        return new WorkerTrace(dp.WorkerIndex, dp.Context.Trace.Remaining, packets);
    }

    public string MetricsText() => OnWorker(Metrics);

    /// <summary>Prometheus text exposition format (version 0.0.4).</summary>
    private string Metrics()
    {
        var sb = new StringBuilder();
        string node = Escape(NodeName);
        string[] names = CounterSet.Describe<PortCounter>().Names;
        string[] help = CounterSet.Describe<PortCounter>().Help;
        for (int k = 0; k < names.Length; k++)
        {
            string metric = $"vswitch_port_{names[k].Replace('-', '_')}_total";
            sb.Append(CultureInfo.InvariantCulture, $"# HELP {metric} {help[k]}\n# TYPE {metric} counter\n");
            foreach (IPacketPort p in Datapath.Ports.All())
                sb.Append(CultureInfo.InvariantCulture, $"{metric}{{node=\"{node}\",port=\"{Escape(p.Name)}\",kind=\"{p.Kind}\",interface=\"{Escape(p.InterfaceName)}\"}} {PortCounterSum(p.Id, (PortCounter)k)}\n");
        }
        StageGraph g = Datapath.Graph;
        sb.Append("# HELP vswitch_stage_packets_total Packets processed by each pipeline stage\n# TYPE vswitch_stage_packets_total counter\n");
        for (int i = 0; i < g.Stages.Count; i++)
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_stage_packets_total{{node=\"{node}\",stage=\"{g.Stages[i].Name}\"}} {RuntimeSum(i).Packets}\n");
        sb.Append("# HELP vswitch_stage_calls_total Batches processed by each pipeline stage\n# TYPE vswitch_stage_calls_total counter\n");
        for (int i = 0; i < g.Stages.Count; i++)
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_stage_calls_total{{node=\"{node}\",stage=\"{g.Stages[i].Name}\"}} {RuntimeSum(i).Calls}\n");
        sb.Append("# HELP vswitch_stage_events_total Stage-specific events (see 'vswitch counters' for descriptions)\n# TYPE vswitch_stage_events_total counter\n");
        foreach (Stage s in g.Stages)
            for (int k = 0; k < s.Counters.Count; k++)
                sb.Append(CultureInfo.InvariantCulture, $"vswitch_stage_events_total{{node=\"{node}\",stage=\"{s.Name}\",event=\"{s.Counters.Names[k]}\"}} {StageCounterSum(s.Index, k)}\n");
        sb.Append("# HELP vswitch_drops_total Packets dropped, by stage and reason\n# TYPE vswitch_drops_total counter\n");
        foreach ((string stage, string reason, long count) in DropSums())
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_drops_total{{node=\"{node}\",stage=\"{stage}\",reason=\"{reason}\"}} {count}\n");
        if (Datapath.Mesh is { } mesh)
        {
            (string Name, string Help, Func<int, long> Value)[] ws =
            [
                ("vswitch_worker_handoffs_refused_total", "Packets a worker could not hand to the worker owning their flow (its ring was full)", mesh.HandOffsRefused),
                ("vswitch_worker_copies_dropped_total", "Packets handed to a worker that had no free buffer for them", mesh.CopiesDropped),
                ("vswitch_worker_messages_dropped_total", "Messages (redirects, neighbors, affinity) a worker could not send (ring full)", mesh.MessagesDropped),
            ];
            foreach ((string name, string h, Func<int, long> value) in ws)
            {
                sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {h}\n# TYPE {name} counter\n");
                foreach (Datapath d in Workers)
                    sb.Append(CultureInfo.InvariantCulture, $"{name}{{node=\"{node}\",worker=\"{d.WorkerIndex}\"}} {value(d.WorkerIndex)}\n");
            }
        }
        sb.Append("# HELP vswitch_mac_table_entries Entries in the MAC table (including expired ones not yet swept)\n# TYPE vswitch_mac_table_entries gauge\n");
        sb.Append(CultureInfo.InvariantCulture, $"vswitch_mac_table_entries{{node=\"{node}\"}} {Datapath.Macs.Count}\n");
        sb.Append("# HELP vswitch_mac_table_capacity Maximum entries in the MAC table\n# TYPE vswitch_mac_table_capacity gauge\n");
        sb.Append(CultureInfo.InvariantCulture, $"vswitch_mac_table_capacity{{node=\"{node}\"}} {Datapath.Macs.MaxEntries}\n");
        sb.Append("# HELP vswitch_mac_aged_out_total MAC entries removed by aging\n# TYPE vswitch_mac_aged_out_total counter\n");
        sb.Append(CultureInfo.InvariantCulture, $"vswitch_mac_aged_out_total{{node=\"{node}\"}} {Datapath.AgedOut}\n");
        if (_host.Cluster is { } cl)
        {
            sb.Append("# HELP vswitch_cluster_ready 1 when the cluster store answers and every watch is current, 0 when degraded\n# TYPE vswitch_cluster_ready gauge\n");
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_ready{{node=\"{node}\"}} {(cl.State == "ready" ? 1 : 0)}\n");
            sb.Append("# HELP vswitch_cluster_peers Overlay peers found in the cluster store's subnet leases\n# TYPE vswitch_cluster_peers gauge\n");
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_peers{{node=\"{node}\"}} {cl.Peers.Count}\n");
            sb.Append("# HELP vswitch_cluster_lease_renewals_total Renewals of this node's subnet lease\n# TYPE vswitch_cluster_lease_renewals_total counter\n");
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_lease_renewals_total{{node=\"{node}\"}} {cl.Renewals}\n");
            sb.Append("# HELP vswitch_cluster_lease_renew_failures_total Renewals that failed (store unreachable or without quorum)\n# TYPE vswitch_cluster_lease_renew_failures_total counter\n");
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_lease_renew_failures_total{{node=\"{node}\"}} {cl.RenewFailures}\n");
            sb.Append("# HELP vswitch_cluster_watch_events_total Changes received from the store, per watch\n# TYPE vswitch_cluster_watch_events_total counter\n");
            sb.Append("# HELP vswitch_cluster_relists_total Lists after the watched history was compacted\n# TYPE vswitch_cluster_relists_total counter\n");
            foreach ((string w, VSwitch.Cluster.PrefixWatcher? pw) in new[] { ("leases", cl.LeaseWatch), ("objects", cl.ObjectWatch) })
            {
                sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_watch_events_total{{node=\"{node}\",watch=\"{w}\"}} {pw?.Events ?? 0}\n");
                sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_relists_total{{node=\"{node}\",watch=\"{w}\"}} {pw?.Relists ?? 0}\n");
            }
            sb.Append("# HELP vswitch_cluster_objects Kubernetes objects in the cluster store, per resource\n# TYPE vswitch_cluster_objects gauge\n");
            foreach ((string r, int n) in cl.ObjectCounts().OrderBy(x => x.Key, StringComparer.Ordinal))
                sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_objects{{node=\"{node}\",resource=\"{r}\"}} {n}\n");
            sb.Append("# HELP vswitch_cluster_invalid_total Leases and objects in the store that could not be used\n# TYPE vswitch_cluster_invalid_total counter\n");
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_invalid_total{{node=\"{node}\",what=\"lease\"}} {cl.BadLeases}\n");
            sb.Append(CultureInfo.InvariantCulture, $"vswitch_cluster_invalid_total{{node=\"{node}\",what=\"object\"}} {cl.BadObjects}\n");
        }
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);
}

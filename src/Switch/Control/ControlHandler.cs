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

/// <summary>Answers control requests. Every read of datapath state runs on the worker thread between batches.</summary>
public sealed class ControlHandler
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);
    private readonly SwitchHost _host;

    public ControlHandler(SwitchHost host)
    {
        _host = host;
        Datapath = host.Datapath;
        NodeName = host.NodeName;
    }

    public Datapath Datapath { get; }
    public string NodeName { get; }

    public const string Usage = """
        commands: status | ports | mac | routes | neighbors | peers | conntrack [N] | services | reload | uplink | counters | metrics | trace add N | trace show [N] | trace clear
        """;

    public string Handle(string[] args)
    {
        if (args.Length == 0) throw new ControlException("empty command; " + Usage);
        return args[0] switch
        {
            "status" => OnWorker(Status),
            "ports" => OnWorker(Ports),
            "mac" => Macs(),
            "routes" => OnWorker(Routes),
            "neighbors" => OnWorker(Neighbors),
            "peers" => OnWorker(Peers),
            "conntrack" => Connections(args.Length > 1 ? ParseCount(args[1]) : 1000),
            "services" => OnWorker(Services),
            "reload" => _host.Manifests is { } mf ? mf.Reload() : throw new ControlException("no services.manifests configured"),
            "uplink" => Uplink(),
            "counters" => OnWorker(CountersText),
            "metrics" => OnWorker(Metrics),
            "trace" => TraceCommand(args),
            _ => throw new ControlException($"unknown command '{args[0]}'; " + Usage),
        };
    }

    /// <summary>The uplink's steering rules as the kernel has them, with their packet counters.</summary>
    private string Uplink()
    {
        if (_host.Steering is not { } s) throw new ControlException("no uplink configured");
        string head = $"uplink: nftables ingress on {s.Underlay} steers {s.NodeAddress}'s node ports ({s.NodePorts}), masquerade replies and external IPs ({s.ExternalFrontends} frontend(s)) to TAP {s.Tap}\n"
            + (s.LastError is { } e ? $"last update failed: {e}\n" : "");
        try
        {
            return head + s.List();
        }
        catch (VSwitch.Tap.PortException ex)
        {
            return head + ex.Message + "\n";
        }
    }

    private string OnWorker(Func<string> f)
    {
        Task<string> t = Datapath.InvokeAsync(f);
        if (!t.Wait(Timeout)) throw new ControlException("the worker did not answer within 5 s");
        return t.Result;
    }

    private IReadOnlyList<Datapath> Workers => _host.Workers;

    /// <summary>Runs <paramref name="f"/> on every worker's thread (each owns its tables) and returns the answers in worker order.</summary>
    private List<T> OnEach<T>(Func<Datapath, T> f)
    {
        Task<T>[] tasks = Workers.Select(w => w.InvokeAsync(() => f(w))).ToArray();
        if (!Task.WaitAll(tasks, Timeout)) throw new ControlException("a worker did not answer within 5 s");
        return tasks.Select(t => t.Result).ToList();
    }

    // Counters are written by their worker only and read here as they stand (64-bit reads are atomic): summed over workers.
    private long PortCounterSum(int port, PortCounter c) => Workers.Sum(w => w.Ports[port]!.Counters[(int)c]);

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

    private string TraceCommand(string[] args)
    {
        string sub = args.Length > 1 ? args[1] : "show";
        switch (sub)
        {
            case "add":
                int n = args.Length > 2 ? ParseCount(args[2]) : 10;
                return OnWorker(() =>
                {
                    foreach (Datapath w in Workers) w.Context.Trace.Remaining += n;
                    return $"tracing the next {Datapath.Context.Trace.Remaining} packet(s){(Workers.Count > 1 ? " on each worker" : "")}\n";
                });
            case "clear":
                return OnWorker(() =>
                {
                    foreach (Datapath w in Workers) w.Context.Trace.Clear();
                    return "trace cleared\n";
                });
            case "show":
                int last = args.Length > 2 ? ParseCount(args[2]) : 10;
                return Workers.Count == 1 ? OnWorker(() => TraceText(Datapath, last))
                    : string.Concat(OnEach(w => $"worker {w.WorkerIndex}:\n{TraceText(w, last)}"));
            default:
                throw new ControlException($"unknown trace command '{sub}' (add N | show [N] | clear)");
        }
    }

    private static int ParseCount(string s) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n is > 0 and <= 100_000
            ? n
            : throw new ControlException($"'{s}' is not a count between 1 and 100000");

    private string Status()
    {
        double up = (Datapath.Time.GetTimestamp() - Datapath.StartedAt) / (double)Datapath.Time.TimestampFrequency;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"node:       {NodeName}\n");
        sb.Append(CultureInfo.InvariantCulture, $"uptime:     {up:F0} s\n");
        sb.Append(CultureInfo.InvariantCulture, $"ports:      {Datapath.Ports.Count}\n");
        sb.Append(CultureInfo.InvariantCulture, $"workers:    {Workers.Count}{(Workers.Count > 1 ? ", flows steered by symmetric hash" : "")}\n");
        sb.Append(CultureInfo.InvariantCulture, $"batch size: {Datapath.Options.BatchSize}\n");
        sb.Append(CultureInfo.InvariantCulture, $"polling:    {PollingText()}\n");
        sb.Append(CultureInfo.InvariantCulture, $"pod rx:     {(_host.PodRxCpus is { } rx ? $"CPUs {CpuList.Format(rx)} (receive packet steering on the pods' TAPs)" : "in the switch's writes")}\n");
        sb.Append(CultureInfo.InvariantCulture, $"mac table:  {Datapath.Macs.Count}/{Datapath.Macs.MaxEntries}, aging {Datapath.Options.MacAging.TotalSeconds:F0} s\n");
        sb.Append(CultureInfo.InvariantCulture, $"buffers:    {Datapath.Slab.FreeCount}/{Datapath.Slab.Capacity} free\n");
        if (Datapath.Router is { } r)
            sb.Append(CultureInfo.InvariantCulture, $"routing:    pod CIDR {r.Options.PodCidr}, gateway {r.Options.Gateway} ({r.Options.RouterMac}), cluster {r.Options.ClusterCidr}, {r.Routes.Routes.Count} routes, {r.Neighbors.Count} neighbors\n");
        else
            sb.Append("routing:    off (L2 only)\n");
        if (Datapath.Overlay is { } o)
            sb.Append(CultureInfo.InvariantCulture, $"overlay:    vxlan {o.Options.LocalAddress}:{o.Options.UdpPort} vni {o.Options.Vni}, {o.Peers.Count} peers, {o.FdbCount} forwarding entries\n");
        sb.Append(CultureInfo.InvariantCulture, $"socket:     {_host.Config.Control.Socket}\n");
        return sb.ToString();
    }

    /// <summary>How the workers wait: a fixed polling window, the adaptive one (each worker's current window and how
    /// often it changed), or none.</summary>
    private string PollingText()
    {
        DatapathOptions o = Datapath.Options;
        if (o.BusyPoll > TimeSpan.Zero) return $"busy, {o.BusyPoll.TotalMicroseconds:F0} µs after traffic (datapath.busyPollMicros)";
        if (o.AdaptivePollLimit <= TimeSpan.Zero) return "off (sleeps in epoll as soon as the ports are empty)";
        double f = Datapath.Time.TimestampFrequency / 1e6;
        var parts = Workers.Select(w => w.PollState).Select(p =>
            string.Create(CultureInfo.InvariantCulture, $"{p.Window / f:F0} µs{(p.Streaming ? " (stream)" : "")}, grown {p.Grown}, shrunk {p.Shrunk}, probed {p.Probed}"));
        return string.Create(CultureInfo.InvariantCulture, $"adaptive, up to {o.AdaptivePollLimit.TotalMicroseconds:F0} µs; now {string.Join("; ", parts)}");
    }

    private string Ports()
    {
        var rows = new List<string[]> { new[] { "PORT", "ID", "KIND", "INTERFACE", "OFFLOADS", "RX-PKTS", "RX-BYTES", "RX-DROP", "RX-ERR", "TX-PKTS", "TX-BYTES", "TX-DROP", "TX-ERR" } };
        foreach (IPacketPort p in Datapath.Ports.All())
        {
            long C(PortCounter c) => PortCounterSum(p.Id, c);
            rows.Add([p.Name, p.Id.ToString(CultureInfo.InvariantCulture), p.Kind, p.InterfaceName.Length == 0 ? "-" : p.InterfaceName,
                OffloadNames(p.Offloads), N(C(PortCounter.RxPackets)), N(C(PortCounter.RxBytes)), N(C(PortCounter.RxDropped)), N(C(PortCounter.RxErrors)),
                N(C(PortCounter.TxPackets)), N(C(PortCounter.TxBytes)), N(C(PortCounter.TxDropped)), N(C(PortCounter.TxErrors))]);
        }
        return Table(rows);
    }

    /// <summary>As ethtool names them: tx-checksumming, tcp-segmentation-offload (IPv4, IPv6).</summary>
    private static string OffloadNames(PortOffloads o) => o == PortOffloads.None ? "-" : string.Join(',',
        new[] { (PortOffloads.Checksum, "csum"), (PortOffloads.Tso4, "tso4"), (PortOffloads.Tso6, "tso6") }
            .Where(x => (o & x.Item1) != 0).Select(x => x.Item2));

    /// <summary>The MAC table; with several workers, what any of them learned (each learns from the flows it serves), the
    /// most recent sighting of each address.</summary>
    private string Macs()
    {
        List<MacTable.View> entries = OnEach(w => w.Macs.Entries(w.Time.GetTimestamp(), w.Time.TimestampFrequency)).SelectMany(x => x)
            .GroupBy(e => (e.Mac, e.Vlan)).Select(g => g.OrderBy(e => e.IsStatic ? -1 : e.AgeSeconds).First())
            .OrderBy(e => e.Vlan).ThenBy(e => e.Mac.Value).ToList();
        var rows = new List<string[]> { new[] { "MAC", "VLAN", "PORT", "AGE" } };
        foreach (MacTable.View e in entries)
            rows.Add([e.Mac.ToString(), e.Vlan.ToString(CultureInfo.InvariantCulture), Datapath.Ports.PortName(e.Port),
                e.IsStatic ? "static" : e.AgeSeconds.ToString("F1", CultureInfo.InvariantCulture) + "s"]);
        return Table(rows) + $"{entries.Count} entries (capacity {Datapath.Macs.MaxEntries})\n";
    }

    private string Routes()
    {
        if (Datapath.Router is not { } r) return "routing is off (no node.podCIDR): a plain L2 switch\n";
        var rows = new List<string[]> { new[] { "PREFIX", "KIND", "VIA" } };
        foreach (Route route in r.Routes.Routes.OrderByDescending(x => x.Prefix.Length).ThenBy(x => x.Prefix.Address))
            rows.Add([route.Prefix.ToString(), route.Kind.ToString().ToLowerInvariant(), route.Via.Length == 0 ? "-" : route.Via]);
        return $"gateway {r.Options.Gateway}, router MAC {r.Options.RouterMac}, tunnel MTU {(r.Overlay is { } ov ? ov.Options.OverlayMtu.ToString(CultureInfo.InvariantCulture) : "- (no overlay)")}\n" + Table(rows);
    }

    private string Neighbors()
    {
        if (Datapath.Router is not { } r) return "routing is off (no node.podCIDR): no neighbor table\n";
        long now = Datapath.Time.GetTimestamp();
        double f = Datapath.Time.TimestampFrequency;
        var rows = new List<string[]> { new[] { "ADDRESS", "MAC", "PORT", "STATE", "AGE" } };
        foreach ((Ipv4Address ip, Neighbor n) in r.Neighbors.Entries())
        {
            string age = n.State switch
            {
                NeighborState.Permanent => "-",
                NeighborState.Incomplete => ((now - n.FirstAsked) / f).ToString("F1", CultureInfo.InvariantCulture) + "s",
                _ => ((now - n.Updated) / f).ToString("F1", CultureInfo.InvariantCulture) + "s",
            };
            rows.Add([ip.ToString(), n.State == NeighborState.Incomplete ? "(incomplete)" : new MacAddress(n.Mac).ToString(),
                n.State == NeighborState.Incomplete ? "-" : Datapath.Ports.PortName(n.Port), n.State.ToString().ToLowerInvariant(), age]);
        }
        return Table(rows);
    }

    private string Peers()
    {
        if (Datapath.Overlay is not { } o) return "no overlay configured\n";
        long now = Datapath.Time.GetTimestamp();
        double f = Datapath.Time.TimestampFrequency;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"vxlan local {o.Options.LocalAddress} port {o.Options.UdpPort} vni {o.Options.Vni} underlay MTU {o.Options.UnderlayMtu}, flood-and-learn {(o.Options.Learning ? "on" : "off")}\n");
        var rows = new List<string[]> { new[] { "PEER", "ADDRESS", "POD-CIDR", "VTEP-MAC", "TYPE", "RX-PKTS", "TX-PKTS", "LAST-SEEN" } };
        for (int i = 0; i < o.Peers.Count; i++)
        {
            OverlayPeer p = o.Peers[i];
            // Every worker has the configured peers in the same order; packet counts are summed over workers.
            long rx = Workers.Sum(w => w.Overlay!.Peers.Count > i ? w.Overlay.Peers[i].RxPackets : 0);
            long tx = Workers.Sum(w => w.Overlay!.Peers.Count > i ? w.Overlay.Peers[i].TxPackets : 0);
            long seen = Workers.Max(w => w.Overlay!.Peers.Count > i ? w.Overlay.Peers[i].LastSeen : 0);
            rows.Add([p.Name, p.Address.ToString(), p.PodCidr?.ToString() ?? "-", p.VtepMac.IsZero ? "-" : p.VtepMac.ToString(), p.IsStatic ? "static" : "learned",
                N(rx), N(tx), seen == 0 ? "never" : ((now - seen) / f).ToString("F1", CultureInfo.InvariantCulture) + "s ago"]);
        }
        sb.Append(Table(rows)).Append('\n');
        var fdb = new List<string[]> { new[] { "INNER-MAC", "PEER", "ADDRESS", "TYPE", "AGE" } };
        foreach ((MacAddress mac, OverlayPeer peer, bool isStatic, long updated) in o.FdbEntries())
            fdb.Add([mac.ToString(), peer.Name, peer.Address.ToString(), isStatic ? "static" : "learned",
                isStatic ? "-" : ((now - updated) / f).ToString("F1", CultureInfo.InvariantCulture) + "s"]);
        sb.Append(Table(fdb)).Append(CultureInfo.InvariantCulture, $"{o.FdbCount} overlay forwarding entries\n");
        return sb.ToString();
    }

    private NatEngine Nat => Datapath.Nat ?? throw new ControlException("Service NAT is off (no services: section in the config)");

    /// <summary>Tracked connections, in the shape of <c>conntrack -L</c>, plus packet counts and the NAT decision.</summary>
    private string Connections(int max)
    {
        NatEngine nat = Nat;
        long now = Datapath.Time.GetTimestamp();
        long tps = Datapath.Time.TimestampFrequency;
        var sb = new StringBuilder();
        // Each worker holds the connections whose flows it serves.
        List<(List<(int Index, CtEntry Entry)> List, int Count, long Expired, long Evicted)> parts =
            OnEach(w => (w.Nat!.Conntrack.Snapshot(max), w.Nat.Conntrack.Count, w.Nat.Expired, w.Nat.Evicted));
        List<(int Index, CtEntry Entry)> list = parts.SelectMany(x => x.List).Take(max).ToList();
        int count = parts.Sum(x => x.Count);
        foreach ((int _, CtEntry e) in list)
        {
            string proto = e.Orig.Proto switch { IpProtocol.Tcp => "tcp", IpProtocol.Udp => "udp", IpProtocol.Icmp => "icmp", _ => "unknown" };
            long left = Math.Max(0, (e.Expires - now) / tps);
            sb.Append(CultureInfo.InvariantCulture, $"{proto,-8}{e.Orig.Proto,-3}{left,-7}");
            if (e.Orig.Proto == IpProtocol.Tcp) sb.Append(ConntrackStage.StateName(e.State)).Append(' ');
            sb.Append(Tuple(e.Orig)).Append(CultureInfo.InvariantCulture, $" packets={e.Packets0} bytes={e.Bytes0} ");
            if ((e.Status & CtStatus.SeenReply) == 0) sb.Append("[UNREPLIED] ");
            sb.Append(Tuple(e.Reply)).Append(CultureInfo.InvariantCulture, $" packets={e.Packets1} bytes={e.Bytes1}");
            if ((e.Status & CtStatus.Assured) != 0) sb.Append(" [ASSURED]");
            var nats = new List<string>();
            if ((e.Status & CtStatus.DstNat) != 0)
            {
                Frontend? f = nat.Services.Lookup(e.Orig.Dst, e.Orig.Proto, e.Orig.DstPort);
                nats.Add($"dnat={new Ipv4Address(e.Reply.Src)}:{e.Reply.SrcPort}" + (f is null ? "" : $" service={f.Service}{(f.PortName is null ? "" : ":" + f.PortName)}"));
            }
            if ((e.Status & CtStatus.SrcNat) != 0) nats.Add($"snat={new Ipv4Address(e.Reply.Dst)}:{(e.Orig.Proto == IpProtocol.Icmp ? e.Reply.SrcPort : e.Reply.DstPort)}");
            if (e.Rule != CtRule.None) nats.Add($"rule={e.Rule.ToString().ToLowerInvariant()}");
            if ((e.Status & CtStatus.Loose) != 0) nats.Add("picked-up-mid-stream");
            if (nats.Count > 0) sb.Append(' ').Append(string.Join(' ', nats));
            sb.Append('\n');
        }
        sb.Append(CultureInfo.InvariantCulture, $"{count} connection(s) tracked (max {nat.Conntrack.Capacity}{(Workers.Count > 1 ? " per worker" : "")}){(list.Count < count ? $", {list.Count} shown" : "")}; {parts.Sum(x => x.Expired)} expired, {parts.Sum(x => x.Evicted)} evicted by endpoint changes\n");
        return sb.ToString();
    }

    private static string Tuple(FlowKey k) => k.Proto == IpProtocol.Icmp
        ? $"src={new Ipv4Address(k.Src)} dst={new Ipv4Address(k.Dst)} type={k.DstPort} code=0 id={k.SrcPort}"
        : $"src={new Ipv4Address(k.Src)} dst={new Ipv4Address(k.Dst)} sport={k.SrcPort} dport={k.DstPort}";

    /// <summary>Services as compiled: every frontend with its endpoints and policies.</summary>
    private string Services()
    {
        NatEngine nat = Nat;
        ServiceTable t = nat.Services;
        var rows = new List<string[]> { new[] { "SERVICE", "PORT", "KIND", "FRONTEND", "ENDPOINTS", "POLICY", "AFFINITY" } };
        foreach (Frontend f in t.Frontends)
        {
            string addr = f.Address == 0 ? "<node>" : new Ipv4Address(f.Address).ToString();
            string eps = f.Endpoints.Length == 0 ? "(none: refused)" : string.Join(",", f.Endpoints.Select(e => e + (e.Local ? "*" : "")));
            if (f.UsingTerminating) eps += " (terminating fallback)";
            string policy = $"ext={f.ExternalPolicy} int={f.InternalPolicy}";
            rows.Add([f.Service, f.PortName ?? "-", f.Kind.ToString(), $"{addr}:{f.Port}/{(f.Protocol == IpProtocol.Tcp ? "TCP" : "UDP")}", eps, policy,
                f.Affinity ? $"ClientIP {f.AffinitySeconds}s" : "None"]);
        }
        string head = $"service CIDR {(nat.Options.ServiceCidr?.ToString() ?? "-")}, node address {(nat.Options.NodeAddress?.ToString() ?? "-")}; {t.Source.Services.Count} Service(s), {t.Count} frontend(s), version {t.Version}\n";
        string last = _host.Manifests is { } m ? $"manifests: {m.LastResult}{(m.LastError is null ? "" : $"\nlast reload failed (kept the Services above): {m.LastError}")}\n" : "";
        return head + last + Table(rows) + "(* = endpoint on this node)\n";
    }

    private string CountersText()
    {
        var sb = new StringBuilder();
        StageGraph g = Datapath.Graph;
        var rows = new List<string[]> { new[] { "STAGE", "CALLS", "PACKETS", "PKTS/CALL" } };
        for (int i = 0; i < g.Stages.Count; i++)
        {
            (long calls, long pkts) = RuntimeSum(i);
            rows.Add([g.Stages[i].Name, N(calls), N(pkts), calls == 0 ? "-" : (pkts / (double)calls).ToString("F1", CultureInfo.InvariantCulture)]);
        }
        sb.Append(Table(rows)).Append('\n');
        var events = new List<string[]> { new[] { "STAGE", "COUNTER", "VALUE" } };
        foreach (Stage s in g.Stages)
            for (int k = 0; k < s.Counters.Count; k++)
                events.Add([s.Name, s.Counters.Names[k], N(StageCounterSum(s.Index, k))]);
        sb.Append(Table(events)).Append('\n');
        var drops = new List<string[]> { new[] { "STAGE", "DROP-REASON", "PACKETS" } };
        foreach ((string stage, string reason, long count) in DropSums().Where(d => d.Count != 0)) drops.Add([stage, reason, N(count)]);
        if (Datapath.Mesh is { } mesh)
        {
            // What crosses between workers: refused hand-offs and copies are packets lost; lost messages can leave a NATed
            // connection's replies unredirected or a neighbor unknown to a worker.
            var w = new List<string[]> { new[] { "WORKER", "HAND-OFFS-REFUSED", "COPIES-DROPPED", "MESSAGES-DROPPED", "REDIRECTS", "REDIRECTS-DROPPED" } };
            foreach (Datapath d in Workers)
            {
                ConnectionSteering? st = d.Nat?.Steering;
                w.Add([d.WorkerIndex.ToString(CultureInfo.InvariantCulture), N(mesh.HandOffsRefused(d.WorkerIndex)), N(mesh.CopiesDropped(d.WorkerIndex)),
                    N(mesh.MessagesDropped(d.WorkerIndex)), st is null ? "-" : N(st.Redirects), st is null ? "-" : N(st.RedirectsDropped)]);
            }
            sb.Append(Table(w)).Append('\n');
        }
        if (drops.Count == 1) sb.Append("no drops\n");
        else sb.Append(Table(drops));
        return sb.ToString();
    }

    private static string TraceText(Datapath dp, int lastPackets)
    {
        TraceRecord[] records = dp.Context.Trace.Snapshot();
        if (records.Length == 0)
            return dp.Context.Trace.Remaining > 0
                ? $"no packet traced yet ({dp.Context.Trace.Remaining} still to trace)\n"
                : "no trace records (start one with 'vswitch trace add N')\n";
        var ids = new List<uint>();
        var seen = new HashSet<uint>();
        for (int i = records.Length - 1; i >= 0 && ids.Count < lastPackets; i--)
            if (seen.Add(records[i].TraceId)) ids.Add(records[i].TraceId);
        ids.Reverse();
        var sb = new StringBuilder();
        StageGraph g = dp.Graph;
        double freq = dp.Time.TimestampFrequency;
        long first = -1;
        foreach (uint id in ids)
        {
            bool header = false;
            foreach (TraceRecord r in records)
            {
                if (r.TraceId != id) continue;
                if (!header)
                {
                    if (first < 0) first = r.Timestamp;
                    sb.Append(CultureInfo.InvariantCulture, $"Packet {id}  (+{(r.Timestamp - first) / freq:F6} s)\n");
                    header = true;
                }
                Stage s = g.Stages[r.Stage];
                sb.Append(CultureInfo.InvariantCulture, $"  {s.Name,-15} {s.DescribeTrace(r, dp.Ports)}\n");
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

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
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);

    private static string N(long v) => v.ToString(CultureInfo.InvariantCulture);

    private static string Table(List<string[]> rows)
    {
        int cols = rows[0].Length;
        int[] w = new int[cols];
        foreach (string[] r in rows)
            for (int c = 0; c < cols; c++) w[c] = Math.Max(w[c], r[c].Length);
        var sb = new StringBuilder();
        foreach (string[] r in rows)
        {
            for (int c = 0; c < cols; c++)
            {
                sb.Append(r[c]);
                if (c < cols - 1) sb.Append(' ', w[c] - r[c].Length + 2);
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using VSwitch.Switch.Control;
using YamlDotNet.Serialization;

namespace VSwitch.Switch.Cli;

/// <summary>How a list command prints: the table people read, a wider one, or the API's own JSON / YAML.</summary>
public enum OutputFormat
{
    Table,
    Wide,
    Json,
    Yaml,
}

/// <summary>Turns the control API's resources into the text the CLI prints (tables like <c>kubectl get</c>, and
/// <c>conntrack -L</c>'s line format for connections).</summary>
public static class Render
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static bool TryParseFormat(string? s, out OutputFormat f)
    {
        switch (s)
        {
            case null or "" or "table":
                f = OutputFormat.Table;
                return true;
            case "wide":
                f = OutputFormat.Wide;
                return true;
            case "json":
                f = OutputFormat.Json;
                return true;
            case "yaml":
                f = OutputFormat.Yaml;
                return true;
            default:
                f = default;
                return false;
        }
    }

    /// <summary>The API's JSON as YAML (same fields, same order).</summary>
    public static string Yaml(string json)
    {
        object? tree = Plain(JsonNode.Parse(json));
        // Strings that would read back as another type (a resourceVersion "8", a label "true") keep their quotes.
        return new SerializerBuilder().WithQuotingNecessaryStrings().Build().Serialize(tree);
    }

    private static object? Plain(JsonNode? n) => n switch
    {
        null => null,
        JsonObject o => o.ToDictionary(kv => kv.Key, kv => Plain(kv.Value)),
        JsonArray a => a.Select(Plain).ToList(),
        JsonValue v when v.TryGetValue(out bool b) => b,
        JsonValue v when v.TryGetValue(out long l) => l,
        JsonValue v when v.TryGetValue(out double d) => d,
        _ => n.ToString(),
    };

    public static string Table(List<string[]> rows)
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

    private static string N(long v) => v.ToString(Inv);

    private static string F1(double v) => v.ToString("F1", Inv);

    public static string Status(StatusInfo s)
    {
        var sb = new StringBuilder();
        sb.Append(Inv, $"node:       {s.Node}\n");
        sb.Append(Inv, $"uptime:     {s.UptimeSeconds:F0} s\n");
        sb.Append(Inv, $"ports:      {s.Ports}\n");
        sb.Append(Inv, $"workers:    {s.Workers}{(s.Workers > 1 ? ", flows steered by symmetric hash" : "")}\n");
        sb.Append(Inv, $"batch size: {s.BatchSize}\n");
        sb.Append(Inv, $"polling:    {Polling(s.Polling)}\n");
        sb.Append(Inv, $"pod rx:     {(s.PodRxCpus is { } rx ? $"CPUs {rx} (receive packet steering on the pods' TAPs)" : "in the switch's writes")}\n");
        sb.Append(Inv, $"mac table:  {s.MacTable.Entries}/{s.MacTable.Capacity}, aging {s.MacAgingSeconds:F0} s\n");
        sb.Append(Inv, $"buffers:    {s.Buffers.Entries}/{s.Buffers.Capacity} free\n");
        if (s.Routing is { } r)
            sb.Append(Inv, $"routing:    pod CIDR {r.PodCIDR}, gateway {r.Gateway} ({r.RouterMac}), cluster {r.ClusterCIDR}, {r.Routes} routes, {r.Neighbors} neighbors\n");
        else
            sb.Append("routing:    off (L2 only)\n");
        if (s.Overlay is { } o)
            sb.Append(Inv, $"overlay:    vxlan {o.LocalAddress}:{o.Port} vni {o.Vni}, {o.Peers} peers, {o.ForwardingEntries} forwarding entries\n");
        sb.Append(Inv, $"socket:     {s.Socket}\n");
        return sb.ToString();
    }

    private static string Polling(PollingInfo p) => p.Mode switch
    {
        "busy" => string.Create(Inv, $"busy, {p.LimitMicros:F0} µs after traffic (datapath.busyPollMicros)"),
        "off" => "off (sleeps in epoll as soon as the ports are empty)",
        _ => string.Create(Inv, $"adaptive, up to {p.LimitMicros:F0} µs; now ") + string.Join("; ", (p.Workers ?? []).Select(w =>
            string.Create(Inv, $"{w.WindowMicros:F0} µs{(w.Streaming ? " (stream)" : "")}, grown {w.Grown}, shrunk {w.Shrunk}, probed {w.Probed}"))),
    };

    public static string Ports(List<PortInfo> ports, bool wide)
    {
        var head = new List<string> { "PORT", "ID", "KIND", "INTERFACE", "OFFLOADS", "RX-PKTS", "RX-BYTES", "RX-DROP", "RX-ERR", "TX-PKTS", "TX-BYTES", "TX-DROP", "TX-ERR" };
        if (wide) head.AddRange(["RX-SUPER", "TX-SUPER", "ROLE", "ORIGIN", "NAMESPACE", "ADDRESS"]);
        var rows = new List<string[]> { head.ToArray() };
        foreach (PortInfo p in ports)
        {
            PortCounters c = p.Counters;
            var row = new List<string>
            {
                p.Name, N(p.Id), p.Kind, p.Interface ?? "-", p.Offloads.Count == 0 ? "-" : string.Join(',', p.Offloads),
                N(c.RxPackets), N(c.RxBytes), N(c.RxDropped), N(c.RxErrors), N(c.TxPackets), N(c.TxBytes), N(c.TxDropped), N(c.TxErrors),
            };
            if (wide) row.AddRange([N(c.RxSuperFrames), N(c.TxSuperFrames), p.Role, p.Origin, p.Spec?.Namespace ?? "-", p.Spec?.Address ?? "-"]);
            rows.Add(row.ToArray());
        }
        return Table(rows);
    }

    public static string PortAdded(PortAdded a) =>
        string.Create(Inv, $"port {a.Port.Name} added (id {a.Port.Id}, {a.Port.Kind} {a.Port.Interface ?? "-"}{(a.Port.Spec?.Namespace is { } ns ? $" in {ns}" : "")}) in {a.Milliseconds:F1} ms\n");

    public static string PortRemoved(PortRemoved r) =>
        string.Create(Inv, $"port {r.Name} removed in {r.Milliseconds:F1} ms: flushed {r.MacEntries} MAC entries, {r.Neighbors} neighbors, {r.Connections} connections{(r.Addresses.Count > 0 ? $" of {string.Join(", ", r.Addresses)}" : "")}\n");

    public static string PeerChanged(PeerChanged c) =>
        string.Create(Inv, $"peer {c.Peer.Name} {c.Action}{(c.Peer.Address is { } a ? $": {a}" : "")}{(c.Peer.PodCIDR is { } p ? $", pod CIDR {p}" : "")}{(c.Action == "removed" ? $", {c.ForwardingEntriesRemoved} forwarding entries flushed" : "")} in {c.Milliseconds:F1} ms\n");

    public static string Macs(MacList m)
    {
        var rows = new List<string[]> { new[] { "MAC", "VLAN", "PORT", "AGE" } };
        foreach (MacEntryInfo e in m.Entries)
            rows.Add([e.Mac, N(e.Vlan), e.Port, e.Static ? "static" : F1(e.AgeSeconds) + "s"]);
        return Table(rows) + string.Create(Inv, $"{m.Entries.Count} entries (capacity {m.Capacity})\n");
    }

    public static string Routes(RouteTableInfo r)
    {
        if (!r.Enabled) return "routing is off (no node.podCIDR): a plain L2 switch\n";
        var rows = new List<string[]> { new[] { "PREFIX", "KIND", "VIA" } };
        foreach (RouteInfo x in r.Routes) rows.Add([x.Prefix, x.Kind, x.Via ?? "-"]);
        return $"gateway {r.Gateway}, router MAC {r.RouterMac}, tunnel MTU {(r.TunnelMtu is { } mtu ? N(mtu) : "- (no overlay)")}\n" + Table(rows);
    }

    public static string Neighbors(NeighborList n)
    {
        if (!n.Enabled) return "routing is off (no node.podCIDR): no neighbor table\n";
        var rows = new List<string[]> { new[] { "ADDRESS", "MAC", "PORT", "STATE", "AGE" } };
        foreach (NeighborInfo e in n.Neighbors)
            rows.Add([e.Address, e.Mac ?? "(incomplete)", e.Port ?? "-", e.State, e.AgeSeconds is { } a ? F1(a) + "s" : "-"]);
        return Table(rows);
    }

    public static string Cluster(ClusterInfo c)
    {
        var sb = new StringBuilder();
        sb.Append(Inv, $"node {c.Node}: {c.State}{(c.LastError is { } e ? $" ({e})" : "")}\n");
        sb.Append(Inv, $"store {string.Join(",", c.Endpoints)} (using {c.Member}, {c.Failovers} failover(s)) prefix {c.Prefix}, revision {c.Revision}\n");
        sb.Append(Inv, $"lease {c.Subnet} for {c.PublicIP} VTEP {c.VtepMac}, TTL {c.LeaseTTLSeconds}s, lease id {c.LeaseId ?? "(none)"}, renewed {c.Renewals} time(s), {c.RenewFailures} failure(s), {c.Reconnects} reconnect(s)\n");
        sb.Append(Inv, $"network {c.Network ?? "?"} vxlan VNI {c.Vni} port {c.Port}\n\n");
        var rows = new List<string[]> { new[] { "PEER", "SUBNET", "PUBLIC-IP", "VTEP-MAC" } };
        foreach (ClusterPeerInfo p in c.Peers) rows.Add([p.Name, p.Subnet, p.PublicIP, p.VtepMac]);
        sb.Append(Table(rows)).Append('\n');
        var w = new List<string[]> { new[] { "WATCH", "STATE", "REVISION", "KEYS", "EVENTS", "LISTS", "RELISTS", "BREAKS" } };
        foreach (WatchInfo x in c.Watches)
            w.Add([x.Prefix, x.Watching ? "watching" : x.LastError is null ? "starting" : "broken", N(x.Revision), N(x.Keys), N(x.Events), N(x.Lists), N(x.Relists), N(x.Breaks)]);
        sb.Append(Table(w));
        sb.Append(Inv, $"objects: {(c.Objects.Count == 0 ? "none" : string.Join(", ", c.Objects.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Value} {o.Key}")))}; unusable: {c.BadLeases} lease(s), {c.BadObjects} object(s)\n");
        return sb.ToString();
    }

    /// <summary>Objects of the cluster store (a List or one object): namespace, name, resourceVersion, age.</summary>
    public static string Objects(System.Text.Json.Nodes.JsonObject o)
    {
        IEnumerable<System.Text.Json.Nodes.JsonNode?> items = o["items"] is System.Text.Json.Nodes.JsonArray a ? a : [o];
        var rows = new List<string[]> { new[] { "KIND", "NAMESPACE", "NAME", "RESOURCEVERSION", "AGE" } };
        foreach (System.Text.Json.Nodes.JsonNode? i in items)
        {
            if (i is null) continue;
            string age = "-";
            if (DateTime.TryParse((string?)i["metadata"]?["creationTimestamp"], Inv, System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal, out DateTime t))
            {
                TimeSpan d = DateTime.UtcNow - t;
                age = d.TotalDays >= 1 ? $"{(int)d.TotalDays}d" : d.TotalHours >= 1 ? $"{(int)d.TotalHours}h" : d.TotalMinutes >= 1 ? $"{(int)d.TotalMinutes}m" : $"{Math.Max(0, (int)d.TotalSeconds)}s";
            }
            rows.Add([(string?)i["kind"] ?? "?", (string?)i["metadata"]?["namespace"] ?? "-", (string?)i["metadata"]?["name"] ?? "?", (string?)i["metadata"]?["resourceVersion"] ?? "-", age]);
        }
        return rows.Count == 1 ? "no objects\n" : Table(rows);
    }

    public static string Peers(PeerList p)
    {
        if (!p.Enabled) return "no overlay configured\n";
        var sb = new StringBuilder();
        sb.Append(Inv, $"vxlan local {p.LocalAddress} port {p.Port} vni {p.Vni} underlay MTU {p.UnderlayMtu}, flood-and-learn {(p.Learning == true ? "on" : "off")}\n");
        var rows = new List<string[]> { new[] { "PEER", "ADDRESS", "POD-CIDR", "VTEP-MAC", "TYPE", "RX-PKTS", "TX-PKTS", "LAST-SEEN" } };
        foreach (PeerInfo x in p.Peers)
            rows.Add([x.Name, x.Address, x.PodCIDR ?? "-", x.VtepMac ?? "-", x.Static ? "static" : "learned", N(x.RxPackets), N(x.TxPackets),
                x.LastSeenSecondsAgo is { } ago ? F1(ago) + "s ago" : "never"]);
        sb.Append(Table(rows)).Append('\n');
        var fdb = new List<string[]> { new[] { "INNER-MAC", "PEER", "ADDRESS", "TYPE", "AGE" } };
        foreach (FdbEntryInfo e in p.ForwardingTable)
            fdb.Add([e.Mac, e.Peer, e.Address, e.Static ? "static" : "learned", e.AgeSeconds is { } a ? F1(a) + "s" : "-"]);
        sb.Append(Table(fdb)).Append(Inv, $"{p.ForwardingTable.Count} overlay forwarding entries\n");
        return sb.ToString();
    }

    /// <summary>One line per connection, as <c>conntrack -L</c> prints them, with the NAT decision after.</summary>
    public static string Conntrack(ConntrackList c)
    {
        var sb = new StringBuilder();
        foreach (ConnectionInfo e in c.Connections)
        {
            sb.Append(Inv, $"{e.Protocol,-8}{e.ProtocolNumber,-3}{e.TimeoutSeconds,-7}");
            if (e.State is { } st) sb.Append(st).Append(' ');
            sb.Append(Tuple(e.Original)).Append(Inv, $" packets={e.Original.Packets} bytes={e.Original.Bytes} ");
            if (e.Unreplied) sb.Append("[UNREPLIED] ");
            sb.Append(Tuple(e.Reply)).Append(Inv, $" packets={e.Reply.Packets} bytes={e.Reply.Bytes}");
            if (e.Assured) sb.Append(" [ASSURED]");
            var nats = new List<string>();
            if (e.Dnat is { } d) nats.Add($"dnat={d.Address}:{d.Port}" + (d.Service is null ? "" : $" service={d.Service}"));
            if (e.Snat is { } s) nats.Add($"snat={s.Address}:{s.Port}");
            if (e.Rule is { } r) nats.Add($"rule={r}");
            if (e.PickedUpMidStream == true) nats.Add("picked-up-mid-stream");
            if (nats.Count > 0) sb.Append(' ').Append(string.Join(' ', nats));
            sb.Append('\n');
        }
        sb.Append(Inv, $"{c.Count} connection(s) tracked (max {c.Capacity}{(c.CapacityPerWorker ? " per worker" : "")}){(c.Connections.Count < c.Count ? $", {c.Connections.Count} shown" : "")}; {c.Expired} expired, {c.Evicted} evicted by endpoint changes\n");
        return sb.ToString();
    }

    private static string Tuple(TupleInfo t) => t.Type is { } type
        ? $"src={t.Src} dst={t.Dst} type={type} code=0 id={t.Id}"
        : $"src={t.Src} dst={t.Dst} sport={t.Sport} dport={t.Dport}";

    public static string Services(ServiceList s)
    {
        string head = string.Create(Inv, $"service CIDR {s.ServiceCIDR ?? "-"}, node address {s.NodeAddress ?? "-"}; {s.Services} Service(s), {s.Frontends.Count} frontend(s), version {s.Version}\n");
        string last = s.LastLoad is { } l ? $"last change: {l}{(s.LastError is { } err ? $"\nlast reload failed (kept the Services above): {err}" : "")}\n" : "";
        var rows = new List<string[]> { new[] { "SERVICE", "PORT", "KIND", "FRONTEND", "ENDPOINTS", "POLICY", "AFFINITY" } };
        foreach (FrontendInfo f in s.Frontends)
        {
            string eps = f.Endpoints.Count == 0 ? "(none: refused)" : string.Join(",", f.Endpoints.Select(e => $"{e.Address}:{e.Port}{(e.Local ? "*" : "")}"));
            if (f.TerminatingFallback) eps += " (terminating fallback)";
            rows.Add([f.Service, f.PortName ?? "-", f.Kind, $"{f.Address ?? "<node>"}:{f.Port}/{f.Protocol}", eps,
                $"ext={f.ExternalTrafficPolicy} int={f.InternalTrafficPolicy}", f.AffinityTimeoutSeconds is { } a ? $"ClientIP {a}s" : "None"]);
        }
        return head + last + Table(rows) + "(* = endpoint on this node)\n";
    }

    public static string Uplink(UplinkInfo u) =>
        $"uplink: nftables ingress on {u.Underlay} steers {u.NodeAddress}'s node ports ({u.NodePorts}), masquerade replies and external IPs ({u.ExternalFrontends} frontend(s)) to TAP {u.Tap}\n"
        + (u.LastError is { } e ? $"last update failed: {e}\n" : "") + u.Rules;

    public static string Counters(CounterReport r, bool wide)
    {
        var sb = new StringBuilder();
        var rows = new List<string[]> { new[] { "STAGE", "CALLS", "PACKETS", "PKTS/CALL" } };
        foreach (StageRuntime s in r.Stages)
            rows.Add([s.Name, N(s.Calls), N(s.Packets), s.Calls == 0 ? "-" : (s.Packets / (double)s.Calls).ToString("F1", Inv)]);
        sb.Append(Table(rows)).Append('\n');
        var events = new List<string[]> { wide ? ["STAGE", "COUNTER", "VALUE", "DESCRIPTION"] : ["STAGE", "COUNTER", "VALUE"] };
        foreach (StageRuntime s in r.Stages)
            foreach (NamedCount c in s.Counters)
                events.Add(wide ? [s.Name, c.Name, N(c.Value), c.Help ?? ""] : [s.Name, c.Name, N(c.Value)]);
        sb.Append(Table(events)).Append('\n');
        if (r.Workers is { } workers)
        {
            var w = new List<string[]> { new[] { "WORKER", "HAND-OFFS-REFUSED", "COPIES-DROPPED", "MESSAGES-DROPPED", "REDIRECTS", "REDIRECTS-DROPPED" } };
            foreach (WorkerCounters d in workers)
                w.Add([N(d.Worker), N(d.HandOffsRefused), N(d.CopiesDropped), N(d.MessagesDropped), d.Redirects is { } x ? N(x) : "-", d.RedirectsDropped is { } y ? N(y) : "-"]);
            sb.Append(Table(w)).Append('\n');
        }
        if (r.Drops.Count == 0) sb.Append("no drops\n");
        else
        {
            var drops = new List<string[]> { new[] { "STAGE", "DROP-REASON", "PACKETS" } };
            foreach (DropCount d in r.Drops) drops.Add([d.Stage, d.Reason, N(d.Packets)]);
            sb.Append(Table(drops));
        }
        return sb.ToString();
    }

    public static string Graph(GraphInfo g)
    {
        var rows = new List<string[]> { new[] { "#", "STAGE", "ARC", "NEXT", "CALLS", "PACKETS", "DROPS" } };
        foreach (GraphStage s in g.Stages)
            rows.Add([N(s.Index), s.Name, s.Arc ?? "-", s.Next.Count <= 1 ? "-" : string.Join(",", s.Next.Skip(1).Distinct()), N(s.Calls), N(s.Packets), N(s.Drops)]);
        var arcs = new List<string[]> { new[] { "ARC", "FEATURES", "THEN" } };
        foreach (ArcInfo a in g.Arcs) arcs.Add([a.Name, a.Features.Count == 0 ? "(none)" : string.Join(" -> ", a.Features), a.End.Replace("arc:", "arc ", StringComparison.Ordinal)]);
        return Table(rows) + "\n" + Table(arcs);
    }

    public static string Trace(TraceReport r)
    {
        if (r.Workers.Count == 1) return WorkerTrace(r.Workers[0]);
        return string.Concat(r.Workers.Select(w => $"worker {w.Worker}:\n{WorkerTrace(w)}"));
    }

    private static string WorkerTrace(WorkerTrace w)
    {
        if (w.Packets.Count == 0)
            return w.Remaining > 0
                ? $"no packet traced yet ({w.Remaining} still to trace)\n"
                : "no trace records (start one with 'vswitch trace add N')\n";
        var sb = new StringBuilder();
        foreach (TracedPacket p in w.Packets)
        {
            sb.Append(Inv, $"Packet {p.Id}  (+{p.OffsetSeconds:F6} s)\n");
            foreach (TraceStep s in p.Steps) sb.Append(Inv, $"  {s.Stage,-15} {s.Text}\n");
            sb.Append('\n');
        }
        return sb.ToString();
    }
}

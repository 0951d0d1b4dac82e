using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>Settings of connection tracking and Service NAT on a node.</summary>
public sealed record NatOptions
{
    /// <summary>Most connections tracked at once; new ones beyond are refused and counted.</summary>
    public int MaxConnections { get; init; } = 262_144;
    public ConntrackTimeouts Timeouts { get; init; } = new();
    // PodCidr, ClusterCidr, Gateway and RouterMac are the router's: a Datapath fills them from its RouterOptions.
    public Ipv4Prefix PodCidr { get; init; }
    public Ipv4Prefix ClusterCidr { get; init; }
    /// <summary>Service ClusterIP range; traffic to an address in it that no Service owns is refused.</summary>
    public Ipv4Prefix? ServiceCidr { get; init; }
    /// <summary>Source address for hairpin and external-client SNAT: the node's gateway address on the pod network, which
    /// every node routes back here.</summary>
    public Ipv4Address Gateway { get; init; }
    public MacAddress RouterMac { get; init; }
    /// <summary>The node's address on its external network: node ports answer on it, and egress is masqueraded to it.
    /// Null when the node has no uplink (no node ports, no masquerade).</summary>
    public Ipv4Address? NodeAddress { get; init; }
    public string? NodeName { get; init; }
    /// <summary>Masquerade pod traffic leaving the cluster CIDR to <see cref="NodeAddress"/>.</summary>
    public bool Masquerade { get; init; } = true;
    /// <summary>Source ports (and ICMP ids) masquerade uses on the node address: above the kernel's default ephemeral
    /// range (32768–60999), so the node's own sockets never collide with them.</summary>
    public ushort MasqueradePortMin { get; init; } = DefaultMasqueradePortMin;

    /// <summary>Clear of Linux's ephemeral ports (32768-60999), so replies to the node's own connections stay the node's.</summary>
    public const ushort DefaultMasqueradePortMin = 61440;
    public ushort MasqueradePortMax { get; init; } = 65535;
    public int AffinityCapacity { get; init; } = 65_536;
}

/// <summary>
/// Connection tracking and Service NAT state of one worker: the conntrack table, the current compiled Services (swapped
/// whole by the control plane), the ClientIP affinity table, and the ICMP budget shared with the router.
/// </summary>
public sealed class NatEngine
{
    private ServiceTable _services;

    public NatEngine(NatOptions options, long ticksPerSecond, IcmpRateLimiter icmpBudget)
    {
        if (options.RouterMac.IsZero || options.Gateway.IsUnspecified)
            throw new ArgumentException("NAT needs the router's MAC and gateway address", nameof(options));
        Options = options;
        TicksPerSecond = ticksPerSecond;
        IcmpBudget = icmpBudget;
        Conntrack = new Conntrack(options.MaxConnections, options.Timeouts, ticksPerSecond);
        Affinity = new AffinityTable(options.AffinityCapacity);
        Node = new NodeIdentity
        {
            Name = options.NodeName,
            PodCidr = options.PodCidr,
            Addresses = options.NodeAddress is { } a ? [a] : [],
        };
        _services = new ServiceTable(Node.Addresses.Select(x => x.Value));
    }

    public NatOptions Options { get; }
    public long TicksPerSecond { get; }
    public IcmpRateLimiter IcmpBudget { get; }
    public Conntrack Conntrack { get; }
    public AffinityTable Affinity { get; }
    public NodeIdentity Node { get; }
    public ServiceTable Services => _services;
    /// <summary>Flow affinity between workers; null with one worker.</summary>
    public ConnectionSteering? Steering { get; private set; }

    /// <summary>Makes this engine one worker's among several (before traffic).</summary>
    public ConnectionSteering EnableSteering(WorkerMesh mesh, int self)
    {
        var st = new ConnectionSteering(mesh, self, Options.MaxConnections);
        Steering = st;
        Conntrack.Removing = st.Removed;
        return st;
    }
    /// <summary>Connections evicted because their endpoint left the Service.</summary>
    public long Evicted { get; private set; }
    public long Expired { get; private set; }

    /// <summary>Compiles <paramref name="objects"/> for this node into a new table (any thread).</summary>
    public ServiceTable Compile(ClusterObjects objects) => ServiceTable.Compile(objects, Node, _services.Version + 1);

    /// <summary>Compiles one Service with its EndpointSlices for this node (any thread); null <paramref name="svc"/>:
    /// the Service is gone.</summary>
    public ServiceDelta CompileService(string key, ServiceObject? svc, IReadOnlyList<EndpointSliceObject> slices) =>
        new(key, svc is null ? [] : ServiceTable.CompileService(svc, slices, Node)) { Removed = svc is null };

    /// <summary>Connections evicted by incremental Service changes (part of <see cref="Evicted"/>).</summary>
    public long EvictedByDelta { get; private set; }

    /// <summary>
    /// Applies one Service's change on the worker, between batches: its frontends replace what it had, and the
    /// connections it made to endpoints it no longer has are evicted (UDP ones also from endpoints that are listed but
    /// no longer usable), found through the connection table's address index. Costs what the Service has and what its
    /// removed endpoints hold, not what the table holds. Returns the connections evicted.
    /// </summary>
    public int ApplyDelta(ServiceDelta d)
    {
        Frontend[] old = _services.Replace(d.Service, d.Frontends, d.Removed);
        int n = 0;
        foreach (Frontend o in old)
        {
            Frontend? now = _services.Find(o.Key);
            if (now is not null && now.Service != o.Service) now = null;
            foreach (ulong ek in o.Known)
            {
                uint addr = (uint)(ek >> 16);
                ushort port = (ushort)ek;
                bool gone = now is null || !now.Known.Contains(ek);
                if (!gone && (o.Protocol == IpProtocol.Tcp || IsUsable(now!, addr, port))) continue;
                n += EvictTo(o, addr, port, gone);
            }
        }
        Evicted += n;
        EvictedByDelta += n;
        return n;
    }

    /// <summary>Deletes the connections frontend <paramref name="f"/> made to endpoint addr:port (TCP ones only when the
    /// endpoint is gone: a terminating TCP endpoint finishes what it has).</summary>
    private int EvictTo(Frontend f, uint addr, ushort port, bool gone)
    {
        int n = 0;
        foreach (int e in Conntrack.EntriesOf(addr))
        {
            ref CtEntry x = ref Conntrack[e];
            if (x.Live == 0 || (x.Status & CtStatus.DstNat) == 0 || x.Reply.Src != addr || x.Reply.SrcPort != port) continue;
            if (x.Orig.Proto != f.Protocol || x.Orig.DstPort != f.Port) continue;
            if (x.Orig.Dst != f.Address && !(f.Address == 0 && _services.NodeAddresses.Contains(x.Orig.Dst))) continue;
            if (!gone && x.Orig.Proto == IpProtocol.Tcp) continue;
            Conntrack.Delete(e);
            n++;
        }
        return n;
    }

    /// <summary>
    /// Installs a new Service table (on the worker, between batches) and evicts the connections whose endpoint left the
    /// frontend they were made for — TCP and UDP alike, so nothing keeps sending to a pod that is gone. A UDP flow is
    /// also moved off an endpoint that is still listed but no longer usable (not ready); TCP connections to a
    /// terminating endpoint are left to finish (graceful termination). Connections to remaining endpoints are untouched.
    /// Returns the number evicted.
    /// </summary>
    public int Apply(ServiceTable table)
    {
        // The table becomes this worker's own (each worker changes its table on its thread): give every worker its own.
        _services = table;
        int n = Conntrack.DeleteWhere(e =>
        {
            if ((e.Status & CtStatus.DstNat) == 0) return false;
            Frontend? f = table.Lookup(e.Orig.Dst, e.Orig.Proto, e.Orig.DstPort);
            if (f is null || !f.Known.Contains(ServiceTable.EndpointKey(e.Reply.Src, e.Reply.SrcPort))) return true;
            return e.Orig.Proto != IpProtocol.Tcp && !IsUsable(f, e.Reply.Src, e.Reply.SrcPort);
        });
        Evicted += n;
        return n;
    }

    /// <summary>Deletes every connection that has one of <paramref name="addresses"/> at either end, before or after NAT
    /// (a pod whose port is removed: its address may come back on another pod, which must not inherit its connections).
    /// Returns how many.</summary>
    public int FlushAddresses(IReadOnlySet<uint> addresses)
    {
        if (addresses.Count == 0) return 0;
        int n = Conntrack.DeleteAddresses(addresses);
        Flushed += n;
        return n;
    }

    /// <summary>The live connections with the seconds each has left, for saving across a restart (on the worker).</summary>
    public List<SavedConnection> Export(long now)
    {
        var list = new List<SavedConnection>(Conntrack.Count);
        foreach ((int _, CtEntry e) in Conntrack.Snapshot())
        {
            long left = e.Expires - now;
            if (left <= 0) continue;
            list.Add(new SavedConnection(e.Orig, e.Reply, e.State, e.Status & ~(CtStatus.Redirected | CtStatus.RedirectedOrig), e.Rule, e.Fins,
                left * 1000 / TicksPerSecond, e.Packets0, e.Bytes0, e.Packets1, e.Bytes1));
        }
        return list;
    }

    /// <summary>Puts a saved connection back (on the worker that will keep it: with several workers, the one its reply
    /// tuple hashes to), with its timeout counted from <paramref name="now"/>; other workers are told to hand it its
    /// packets. False when the table has no room or the tuple is taken.</summary>
    public bool Import(in SavedConnection c, long now)
    {
        int e = Conntrack.Create(c.Orig, c.Reply, c.State, now);
        if (e < 0) return false;
        ref CtEntry x = ref Conntrack[e];
        x.Status = c.Status;
        x.Rule = c.Rule;
        x.Fins = c.Fins;
        x.Packets0 = c.Packets0;
        x.Bytes0 = c.Bytes0;
        x.Packets1 = c.Packets1;
        x.Bytes1 = c.Bytes1;
        x.Expires = now + Math.Max(1, c.MillisecondsLeft * TicksPerSecond / 1000);
        Steering?.Created(ref x);
        return true;
    }

    /// <summary>Connections deleted because a pod port went away.</summary>
    public long Flushed { get; private set; }

    private static bool IsUsable(Frontend f, uint addr, ushort port)
    {
        foreach (ServiceEndpoint e in f.Endpoints)
            if (e.Address == addr && e.Port == port) return true;
        foreach (ServiceEndpoint e in f.LocalEndpoints)
            if (e.Address == addr && e.Port == port) return true;
        return false;
    }

    /// <summary>Entries one expiry step looks at: the whole table in about a second under traffic (a step every 10 ms).</summary>
    public int SweepBudget => Math.Clamp(Conntrack.Capacity / 100, 256, 8192);

    /// <summary>One bounded expiry step (between batches).</summary>
    public int Sweep(long now)
    {
        int n = Conntrack.SweepStep(now, SweepBudget);
        Expired += n;
        return n;
    }

    /// <summary>Deletes an entry a packet found expired before the sweep did (the packet then starts afresh).</summary>
    public void Expire(int e)
    {
        Conntrack.Delete(e);
        Expired++;
    }

    /// <summary>
    /// Puts a translated packet back to the tuple it arrived with, so an ICMP error the router builds about it quotes
    /// what its sender sent (path MTU discovery and TTL errors through Service NAT).
    /// </summary>
    public void RevertForQuote(Span<byte> ip, int ctRef)
    {
        if (ctRef < 0) return;
        ref CtEntry e = ref Conntrack[ctRef >> 1];
        if (e.Live == 0 || !e.IsNat) return;
        NatRewrite.Apply(ip, (ctRef & 1) == 0 ? e.Orig : e.Reply);
    }
}

/// <summary>A tracked connection as saved across a restart of the switch (conntrackd's and Cilium's pinned maps' job).</summary>
public readonly record struct SavedConnection(FlowKey Orig, FlowKey Reply, CtState State, CtStatus Status, CtRule Rule, byte Fins,
    long MillisecondsLeft, long Packets0, long Bytes0, long Packets1, long Bytes1);

/// <summary>
/// sessionAffinity: ClientIP — which endpoint a client got, per Service port, until the timeout passes without use.
/// Fixed-size open addressing (bounded; the oldest entry in a full probe window is replaced).
/// </summary>
public sealed class AffinityTable
{
    private const int Window = 8;

    private struct Slot
    {
        public ulong Service;
        public uint Client;
        public uint Endpoint;
        public ushort Port;
        public long Expires;
    }

    private readonly Slot[] _slots;
    private readonly int _mask;

    public AffinityTable(int capacity)
    {
        int n = 1 << FlowHash.Log2Ceiling(Math.Max(capacity, Window));
        _slots = new Slot[n];
        _mask = n - 1;
    }

    private int Home(ulong service, uint client) => (int)FlowHash.Mix(service * 31 + client) & _mask;

    /// <summary>The endpoint the client was given and whose affinity has not expired; refreshes the timeout.</summary>
    public bool TryGet(ulong service, uint client, long now, long timeout, out uint endpoint, out ushort port)
    {
        int h = Home(service, client);
        for (int i = 0; i < Window; i++)
        {
            ref Slot s = ref _slots[(h + i) & _mask];
            if (s.Expires > now && s.Service == service && s.Client == client)
            {
                s.Expires = now + timeout;
                endpoint = s.Endpoint;
                port = s.Port;
                return true;
            }
        }
        endpoint = 0;
        port = 0;
        return false;
    }

    public void Set(ulong service, uint client, uint endpoint, ushort port, long expires)
    {
        int h = Home(service, client);
        int victim = h;
        long oldest = long.MaxValue;
        for (int i = 0; i < Window; i++)
        {
            int j = (h + i) & _mask;
            ref Slot s = ref _slots[j];
            if (s.Service == service && s.Client == client)
            {
                victim = j;
                break;
            }
            if (s.Expires < oldest)
            {
                oldest = s.Expires;
                victim = j;
            }
        }
        _slots[victim] = new Slot { Service = service, Client = client, Endpoint = endpoint, Port = port, Expires = expires };
    }

    public void Clear() => Array.Clear(_slots);

    /// <summary>Live entries (CLI).</summary>
    public List<(ulong Service, Ipv4Address Client, Ipv4Address Endpoint, ushort Port, long Expires)> Snapshot(long now)
    {
        var list = new List<(ulong, Ipv4Address, Ipv4Address, ushort, long)>();
        foreach (Slot s in _slots)
            if (s.Expires > now) list.Add((s.Service, new Ipv4Address(s.Client), new Ipv4Address(s.Endpoint), s.Port, s.Expires));
        return list;
    }
}

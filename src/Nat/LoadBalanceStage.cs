using System.Buffers.Binary;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>
/// Service load balancing, and the commit of every new connection (the <c>ct_lb</c>/<c>ct(commit)</c> of OVS): for a
/// packet <c>conntrack</c> marked new, a Service frontend is matched and an endpoint chosen (kube-proxy's random choice,
/// ClientIP affinity, traffic policies, the terminating fallback), hairpin and external clients are SNATed to the
/// gateway, egress is masqueraded, and the entry is created under both tuples with its rewrite (a clashing reply tuple
/// gets its source port remapped). A Service with no endpoint is refused at once: TCP RST, or ICMP port unreachable,
/// back out the ingress port. The <c>nat</c> stage then rewrites the packet from the entry.
/// </summary>
public sealed class LoadBalanceStage : Stage
{
    public enum Counter
    {
        [Description("Connections created")] New,
        [Description("Connections created with Service DNAT")] Dnat,
        [Description("Connections masqueraded to the node address (egress)")] Masquerade,
        [Description("Connections SNATed to the gateway (hairpin or external client)")] GatewaySnat,
        [Description("Connections whose source port was remapped to avoid a tuple clash")] PortRemap,
        [Description("Endpoints chosen by ClientIP affinity")] AffinityHits,
        [Description("Packets not tracked (a TCP RST of no connection)")] Untracked,
        [Description("Connections refused because the Service has no endpoint (TCP RST / ICMP port unreachable sent)")] Rejected,
        [Description("TCP connections picked up mid-stream")] Loose,
        [Description("New Service connections decided here and handed, with the decision, to the worker their reply tuple hashes to (several workers)")] HandedToReplyOwner,
    }

    public enum Reason
    {
        [Description("TCP flags no stack sends (INVALID)")] InvalidTcpFlags,
        [Description("TCP packet to a Service without a connection (not a SYN; INVALID)")] InvalidNoSyn,
        [Description("ICMP echo reply without a request (INVALID)")] InvalidEchoReply,
        [Description("Connection table full")] TableFull,
        [Description("No free source port for SNAT")] PortsExhausted,
        [Description("externalTrafficPolicy/internalTrafficPolicy Local and no endpoint on this node")] NoLocalEndpoint,
        [Description("Service has no endpoint and the refusal was rate-limited")] NoEndpoint,
        [Description("Address in the Service CIDR that no Service port owns")] NoService,
        [Description("The worker owning the connection held a full ring of this worker's packets")] HandOffRefused,
    }

    private enum Code
    {
        New = 1,
        NewService = 2,
        Rejected = 4,
    }

    private readonly NatEngine _nat;
    private readonly ulong _routerMac;
    private ulong _rng;

    /// <param name="next">Stage for packets that continue (in the prerouting arc: <see cref="Stage.ArcNext"/>).</param>
    /// <param name="output">Where refusals go: straight out (the postrouting arc).</param>
    public LoadBalanceStage(NatEngine nat, string next, string output)
        : base("lb", [next, output], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _nat = nat;
        _routerMac = nat.Options.RouterMac.Value;
        _rng = FlowHash.ProcessSalt ^ 0x9E3779B97F4A7C15UL;
    }

    public NatEngine Nat => _nat;

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
    }

    private unsafe void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        Conntrack ct = _nat.Conntrack;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            next[i] = 1;
            if ((m.Flags & PacketFlags.CtNew) == 0) continue;
            m.Flags &= ~PacketFlags.CtNew;
            int carried = m.CtIndex;
            m.CtIndex = -1;
            // conntrack checked the headers: an IPv4 first fragment with a whole TCP, UDP or ICMP echo header.
            var ip = new Span<byte>(slab.SlotPointer(s) + m.Offset + m.L3Offset, BinaryPrimitives.ReadUInt16BigEndian(
                new ReadOnlySpan<byte>(slab.SlotPointer(s) + m.Offset + m.L3Offset + 2, 2)));
            byte proto = ip[9];
            Span<byte> l4 = ip[((ip[0] & 0x0F) * 4)..];
            FlowKey key;
            TcpFlags tcpFlags = 0;
            if (proto == IpProtocol.Icmp)
            {
                key = new FlowKey(Read32(ip, 12), Read32(ip, 16), Read16(l4, 4), l4[0], proto);
            }
            else
            {
                if (proto == IpProtocol.Tcp) tcpFlags = (TcpFlags)(((l4[12] & 0x01) << 8) | l4[13]);
                key = new FlowKey(Read32(ip, 12), Read32(ip, 16), Read16(l4, 0), Read16(l4, 2), proto);
            }
            ulong hash = ct.Hash(key);
            // An earlier packet of this batch may have committed the connection: this one then belongs to it.
            int r = ct.Lookup(key, hash);
            if (r >= 0)
            {
                ConntrackStage.Track(ct, ref ct[r >> 1], r & 1, proto, tcpFlags, ip.Length, ctx.Now);
                m.CtIndex = r;
                continue;
            }
            next[i] = New<T>(ctx, s, ref m, ip, key, hash, tcpFlags, carried);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Read32(Span<byte> b, int o) => BinaryPrimitives.ReadUInt32BigEndian(b[o..]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort Read16(Span<byte> b, int o) => BinaryPrimitives.ReadUInt16BigEndian(b[o..]);

    private uint NextRandom()
    {
        // xorshift64*
        ulong x = _rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        _rng = x;
        return (uint)((x * 0x2545F4914F6CDD1DUL) >> 32);
    }

    /// <summary>A packet of no known connection: Service DNAT, masquerade, or plain tracking.</summary>
    private byte New<T>(WorkerContext ctx, int s, ref PacketMeta m, Span<byte> ip, FlowKey key, ulong hash, TcpFlags tcpFlags, int carried)
        where T : struct, ITraceMode
    {
        Conntrack ct = _nat.Conntrack;
        NatOptions o = _nat.Options;
        long now = ctx.Now;
        byte proto = key.Proto;
        bool tcp = proto == IpProtocol.Tcp;
        if (tcp && !Conntrack.ValidTcpFlags(tcpFlags)) return Drop(ref m, (int)Reason.InvalidTcpFlags);
        bool syn = (tcpFlags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn;
        if (proto == IpProtocol.Icmp && key.DstPort != IcmpType.EchoRequest) return Drop(ref m, (int)Reason.InvalidEchoReply);

        Frontend? fe = proto != IpProtocol.Icmp ? _nat.Services.Lookup(key.Dst, proto, key.DstPort) : null;
        if (fe is not null) return NewService<T>(ctx, s, ref m, ip, key, hash, fe, syn, carried);
        if (o.ServiceCidr is { } sc && sc.Contains(new Ipv4Address(key.Dst)))
            return Refuse<T>(ctx, s, ref m, ip, null, Reason.NoService);

        if (tcp && !syn)
        {
            // Mid-stream pickup (nf_conntrack_tcp_loose): an RST is not worth an entry.
            if ((tcpFlags & TcpFlags.Rst) != 0)
            {
                Counters.Add((int)Counter.Untracked);
                return 1;
            }
        }
        CtState state = tcp ? (syn ? CtState.SynSent : CtState.Established) : CtState.Unreplied;
        FlowKey reply = key.Inverse();
        CtStatus status = tcp && !syn ? CtStatus.Loose | CtStatus.SeenReply | CtStatus.Assured : CtStatus.None;
        CtRule rule = CtRule.None;
        bool masq = o.Masquerade && o.NodeAddress is { } node && o.ClusterCidr.Contains(new Ipv4Address(key.Src))
                    && !o.ClusterCidr.Contains(new Ipv4Address(key.Dst)) && key.Dst != node.Value
                    && !(tcp && !syn);
        if (masq)
        {
            reply.Dst = o.NodeAddress!.Value.Value;
            if (!AllocatePort(ref reply, o.MasqueradePortMin, o.MasqueradePortMax, key.SrcPort, hash))
                return Drop(ref m, (int)Reason.PortsExhausted);
            status |= CtStatus.SrcNat;
            rule = CtRule.Masquerade;
            Counters.Add((int)Counter.Masquerade);
        }
        // A clashing reply tuple is remapped unless the source port is already chosen (masquerade) or fixed (mid-stream).
        bool remappable = !masq && proto != IpProtocol.Icmp && !(tcp && !syn);
        int e = CreateEntry(key, hash, ref reply, state, ref status, remappable, now, out Reason failure);
        if (e < 0) return Drop(ref m, (int)failure);
        ref CtEntry x = ref Commit(e, status, rule, ip.Length, ref m);
        if ((status & CtStatus.Loose) != 0) Counters.Add((int)Counter.Loose);
        if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
            ctx.Trace.Add(m, Index, (int)Code.New, e, (int)rule | (int)x.Status << 16,
                (ulong)key.Src << 32 | key.Dst, (ulong)key.SrcPort << 48 | (ulong)key.DstPort << 32 | (ulong)reply.Dst << 0, now);
        return 1;
    }

    /// <summary>A decision carried in <see cref="PacketMeta.CtIndex"/> by a packet handed to the worker that will keep its
    /// connection: this marker, the rule in bits 24–26 and the endpoint's index among the candidates in bits 0–23.</summary>
    private const int Decided = unchecked((int)0x8000_0000);
    private const int DecidedMask = unchecked((int)0xF800_0000);
    private const int MaxDecidedIndex = 0x00FF_FFFF;

    private byte NewService<T>(WorkerContext ctx, int s, ref PacketMeta m, Span<byte> ip, FlowKey key, ulong hash, Frontend fe, bool syn, int carried)
        where T : struct, ITraceMode
    {
        Conntrack ct = _nat.Conntrack;
        NatOptions o = _nat.Options;
        long now = ctx.Now;
        if (key.Proto == IpProtocol.Tcp && !syn) return Drop(ref m, (int)Reason.InvalidNoSyn);
        bool fromCluster = o.ClusterCidr.Contains(new Ipv4Address(key.Src));
        ServiceEndpoint[] cands;
        bool snat = false;
        CtRule rule = CtRule.Random;
        if (fe.IsExternal)
        {
            if (fe.ExternalPolicy == TrafficPolicy.Local && !fromCluster)
            {
                cands = fe.LocalEndpoints;
                rule = CtRule.LocalPolicy;
            }
            else
            {
                cands = fe.Endpoints;
                // Cluster policy: the client is masqueraded so the reply comes back through this node.
                snat = !fromCluster;
            }
        }
        else if (fe.InternalPolicy == TrafficPolicy.Local)
        {
            cands = fe.LocalEndpoints;
            rule = CtRule.LocalPolicy;
        }
        else
        {
            cands = fe.Endpoints;
        }
        if (cands.Length == 0)
        {
            if (fe.Endpoints.Length == 0 && fe.LocalEndpoints.Length == 0) return Refuse<T>(ctx, s, ref m, ip, fe, Reason.NoEndpoint);
            return Drop(ref m, (int)Reason.NoLocalEndpoint);
        }
        if (fe.UsingTerminating && rule == CtRule.Random) rule = CtRule.Fallback;

        ServiceEndpoint ep = default;
        int index = -1;
        // A packet handed here with a decision is kept here, even when the decision no longer fits this worker's
        // Services snapshot (a reload in between) and is made again: it is never handed on a second time.
        bool handedIn = (carried & DecidedMask) == Decided;
        if (handedIn && (carried & MaxDecidedIndex) < cands.Length)
        {
            // The worker the original tuple hashes to chose (and told every worker of any affinity choice).
            index = carried & MaxDecidedIndex;
            ep = cands[index];
            rule = (CtRule)((carried >> 24) & 7);
        }
        else
        {
            long affinityTicks = fe.AffinitySeconds * _nat.TicksPerSecond;
            if (fe.Affinity && _nat.Affinity.TryGet(fe.AffinityKey, key.Src, now, affinityTicks, out uint aAddr, out ushort aPort))
            {
                for (int c = 0; c < cands.Length; c++)
                {
                    if (cands[c].Address == aAddr && cands[c].Port == aPort)
                    {
                        index = c;
                        rule = CtRule.Affinity;
                        Counters.Add((int)Counter.AffinityHits);
                        break;
                    }
                }
            }
            if (index < 0)
            {
                index = (int)(((ulong)NextRandom() * (ulong)cands.Length) >> 32);
                if (fe.Affinity) _nat.Affinity.Set(fe.AffinityKey, key.Src, cands[index].Address, cands[index].Port, now + affinityTicks);
            }
            ep = cands[index];
            // Other workers serve this client's other connections: they learn the choice (and its renewed timeout).
            if (fe.Affinity) _nat.Steering?.AffinitySet(fe.AffinityKey, key.Src, ep.Address, ep.Port, now + affinityTicks);
        }
        // Hairpin: a pod reaching itself through its Service is masqueraded so its reply returns through the switch.
        if (ep.Address == key.Src) snat = true;

        var reply = new FlowKey(ep.Address, key.Src, ep.Port, key.SrcPort, key.Proto);
        // With several workers the connection is kept where its reply tuple hashes, so that a clash with any other
        // connection's reply tuple (another Service or a direct connection to the same endpoint, from the same client
        // port) is seen in one table and remapped. SNAT picks its port to hash here instead.
        if (!snat && !handedIn && index <= MaxDecidedIndex && _nat.Steering is { } st)
        {
            int owner = st.Home(reply);
            if (owner != st.Self)
            {
                // The decision rides in the metadata, which the receiver copies: written before the hand-off.
                m.CtIndex = Decided | (int)rule << 24 | index;
                if (!st.HandTo(owner, s))
                {
                    m.CtIndex = -1;
                    return Drop(ref m, (int)Reason.HandOffRefused);
                }
                Counters.Add((int)Counter.HandedToReplyOwner);
                return StageGraph.Consumed;
            }
        }
        CtStatus status = CtStatus.DstNat;
        if (snat)
        {
            reply.Dst = o.Gateway.Value;
            if (!AllocatePort(ref reply, 1024, 65535, key.SrcPort, hash)) return Drop(ref m, (int)Reason.PortsExhausted);
            status |= CtStatus.SrcNat;
            Counters.Add((int)Counter.GatewaySnat);
        }
        int e = CreateEntry(key, hash, ref reply, key.Proto == IpProtocol.Tcp ? CtState.SynSent : CtState.Unreplied, ref status,
            remappable: !snat, now, out Reason failure);
        if (e < 0) return Drop(ref m, (int)failure);
        ref CtEntry x = ref Commit(e, status, rule, ip.Length, ref m);
        Counters.Add((int)Counter.Dnat);
        if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
        {
            int fi = IndexOf(fe);
            // A: frontend; X: client, endpoint; Y: client port, endpoint port. A second record carries the SNAT.
            ctx.Trace.Add(m, Index, (int)Code.NewService, fi, (int)rule | Math.Min(cands.Length, 255) << 8 | (int)status << 16,
                (ulong)key.Src << 32 | ep.Address, (ulong)key.SrcPort << 48 | (ulong)ep.Port << 32, now);
            if ((status & CtStatus.SrcNat) != 0) ctx.Trace.Add(m, Index, (int)Code.NewService + 100, fi, 0, reply.Dst, reply.DstPort, now);
        }
        return 1;
    }

    /// <summary>Creates the entry. When another connection owns the reply tuple (e.g. a Service flow SNATed to this
    /// address and port) and the source port may move, it is remapped, as the kernel does for clashing tuples.
    /// Returns the entry, or -1 with the drop reason.</summary>
    private int CreateEntry(in FlowKey key, ulong hash, ref FlowKey reply, CtState state, ref CtStatus status, bool remappable, long now, out Reason failure)
    {
        Conntrack ct = _nat.Conntrack;
        int e = ct.Create(key, hash, reply, state, now);
        if (e == Conntrack.Full && _nat.Sweep(now) > 0) e = ct.Create(key, hash, reply, state, now);
        if (e == Conntrack.ReplyInUse && remappable)
        {
            if (!AllocatePort(ref reply, 1024, 65535, key.SrcPort, hash))
            {
                failure = Reason.PortsExhausted;
                return -1;
            }
            status |= CtStatus.SrcNat;
            Counters.Add((int)Counter.PortRemap);
            e = ct.Create(key, hash, reply, state, now);
        }
        failure = e == Conntrack.Full ? Reason.TableFull : Reason.PortsExhausted;
        return e < 0 ? -1 : e;
    }

    /// <summary>Completes a created entry: its status and rule, the first packet counted, the other workers told where it
    /// lives; the packet carries it on (original direction) to the nat stage.</summary>
    private ref CtEntry Commit(int e, CtStatus status, CtRule rule, int length, ref PacketMeta m)
    {
        ref CtEntry x = ref _nat.Conntrack[e];
        x.Status |= status;
        x.Rule = rule;
        x.Packets0 = 1;
        x.Bytes0 = length;
        _nat.Steering?.Created(ref x);
        m.CtIndex = e * 2;
        Counters.Add((int)Counter.New);
        return ref x;
    }

    private static int IndexOf(Frontend fe) => fe.Id;

    /// <summary>Most candidate ports one SNAT allocation looks at after the preferred one.</summary>
    public const int MaxPortTries = 128;

    /// <summary>Finds a source port (ICMP: id) on the reply's destination address so that the reply tuple is unused.
    /// Tries the client's own port first, then up to <see cref="MaxPortTries"/> more from a hash-chosen start: collision-free while the
    /// range has a free port for this remote address and port.</summary>
    private bool AllocatePort(ref FlowKey reply, ushort min, ushort max, ushort preferred, ulong hash)
    {
        Conntrack ct = _nat.Conntrack;
        // With several workers, only ports whose reply hashes to this worker: the reply then needs no redirect, and any
        // other connection that could clash with the tuple lives in this worker's table.
        ConnectionSteering? st = _nat.Steering;
        bool icmp = reply.Proto == IpProtocol.Icmp;
        if (preferred >= min && preferred <= max)
        {
            if (icmp) reply.SrcPort = preferred;
            else reply.DstPort = preferred;
            if (!ct.InUse(reply) && (st is null || st.IsLocal(reply))) return true;
        }
        int n = max - min + 1;
        int start = (int)(hash % (ulong)n);
        // Bounded like the kernel's unique-tuple search (at most 128 tries): a new connection costs at most that many
        // lookups whatever the range's fill; past them the connection is refused and counted (ports-exhausted).
        for (int i = 0; i < Math.Min(n, MaxPortTries); i++)
        {
            ushort p = (ushort)(min + (start + i) % n);
            if (icmp) reply.SrcPort = p;
            else reply.DstPort = p;
            if (!ct.InUse(reply) && (st is null || st.IsLocal(reply))) return true;
        }
        return false;
    }

    /// <summary>Refuses a connection at once: TCP RST, or ICMP port unreachable from the address the client asked for.</summary>
    private unsafe byte Refuse<T>(WorkerContext ctx, int s, ref PacketMeta m, Span<byte> ip, Frontend? fe, Reason reason) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        byte proto = ip[9];
        if (proto == IpProtocol.Tcp)
        {
            if ((ip[(ip[0] & 0x0F) * 4 + 13] & (byte)TcpFlags.Rst) != 0) return Drop(ref m, (int)reason);
            int len = NatRewrite.BuildTcpReset(ip);
            byte* f = slab.SlotPointer(s) + m.Offset;
            var eth = new Span<byte>(f, EthernetView.HeaderSize);
            new MacAddress(m.SrcMac).Write(eth);
            new MacAddress(_routerMac).Write(eth[6..]);
            m.Length = m.L3Offset + len;
            (m.DstMac, m.SrcMac) = (m.SrcMac, _routerMac);
        }
        else
        {
            Ipv4View.TryCreate(ip, out Ipv4View view);
            if (!IcmpErrors.MayAnswer(view, (m.Flags & PacketFlags.GroupDestination) != 0) || !_nat.IcmpBudget.TryTake(ctx.Now))
                return Drop(ref m, (int)reason);
            IcmpErrors.Build(slab, s, IcmpType.DestinationUnreachable, IcmpUnreachableCode.Port, 0, view.Destination, _routerMac);
        }
        m.OutPort = m.InPort;
        Counters.Add((int)Counter.Rejected);
        if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
            ctx.Trace.Add(m, Index, (int)Code.Rejected, fe is null ? -1 : IndexOf(fe), (int)reason, 0, 0, ctx.Now);
        return 2;
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        static string A(ulong v) => new Ipv4Address((uint)v).ToString();
        switch ((Code)(r.Code % 100))
        {
            case Code.New:
            {
                var rule = (CtRule)(r.B & 0xFF);
                var status = (CtStatus)((r.B >> 16) & 0xFF);
                string nat = rule == CtRule.Masquerade ? $", masquerade to {A(r.Y)}:?"
                    : (status & CtStatus.SrcNat) != 0 ? ", source port remapped (tuple clash)" : ", no NAT";
                return $"new connection #{r.A} {A(r.X >> 32)}:{r.Y >> 48} -> {A(r.X)}:{(r.Y >> 32) & 0xFFFF}{nat}{((status & CtStatus.Loose) != 0 ? " (picked up mid-stream)" : "")}";
            }
            case Code.NewService when r.Code >= 100:
                return r.X == 0 ? "" : $"  SNAT to {A(r.X)}:{r.Y}";
            case Code.NewService:
            {
                string svc = _nat.Services.FindById(r.A)?.ToString() ?? "(a Service since replaced)";
                var rule = (CtRule)(r.B & 0xFF);
                int n = (r.B >> 8) & 0xFF;
                string why = rule switch
                {
                    CtRule.Affinity => "ClientIP affinity",
                    CtRule.LocalPolicy => $"random of {n} local endpoint(s) (traffic policy Local)",
                    CtRule.Fallback => $"random of {n} terminating endpoint(s) (none ready)",
                    _ => $"random of {n}",
                };
                return $"new connection: Service {svc}: DNAT to endpoint {A(r.X)}:{(r.Y >> 32) & 0xFFFF} by {why}";
            }
            case Code.Rejected:
            {
                string svc = _nat.Services.FindById(r.A) is { } f ? $"Service {f}" : "no Service";
                return $"refused: {svc} ({DropReasonName(r.B)}): TCP RST / ICMP port unreachable back out the ingress port";
            }
            default:
                return $"code {r.Code}";
        }
    }
}

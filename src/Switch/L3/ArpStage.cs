using System.Buffers.Binary;
using System.ComponentModel;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.L3;

/// <summary>
/// The router's ARP: learns pod and host neighbors from ARP they send, answers requests for the gateway on pod ports
/// and, on the host port, for every cluster address (proxy ARP: the node reaches all pods through the switch), and
/// takes replies addressed to the router. Anything else passes on as the L2 forwarder decided.
/// </summary>
public sealed class ArpStage : Stage
{
    public enum Counter
    {
        [Description("Requests for the gateway answered")] GatewayAnswered,
        [Description("Requests from the host answered by proxy for cluster addresses")] ProxyAnswered,
        [Description("Replies to the router's own requests received")] RepliesReceived,
        [Description("Neighbors learned or refreshed from ARP")] NeighborsLearned,
        [Description("Neighbors not learned: table full")] NeighborTableFull,
        [Description("ARP frames passed on to L2 forwarding")] PassedOn,
    }

    public enum Reason
    {
        [Description("Not an Ethernet/IPv4 ARP packet")] Malformed,
    }

    private enum Code
    {
        Answered,
        Proxied,
        Consumed,
        PassedOn,
    }

    private readonly Router _router;
    private readonly PortTable _ports;

    /// <param name="toHostNext">Frames leaving to the host port (proxy-ARP answers to the node) take this edge: the
    /// local-in arc.</param>
    public ArpStage(Router router, PortTable ports, string next, string? toHostNext = null)
        : base("arp", toHostNext is null ? [next] : [next, toHostNext], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _router = router;
        _ports = ports;
        _split = toHostNext is not null;
    }

    private readonly bool _split;

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
        if (_split) SplitHostTraffic(batch, next, ctx.Slab.Meta, _ports, byInPort: false, 1, 2);
    }

    private void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        Router router = _router;
        RouterOptions o = router.Options;
        uint gateway = router.Gateway;
        ulong routerMac = router.RouterMac;
        long now = ctx.Now;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            Span<byte> frame = slab.Frame(s);
            if (!ArpView.TryCreate(frame[m.L3Offset..], out ArpView arp))
            {
                next[i] = Drop(ref m, (int)Reason.Malformed);
                continue;
            }
            PortRole role = _ports.Role(m.InPort);
            uint spa = arp.SenderProtocolAddress.Value;
            uint tpa = arp.TargetProtocolAddress.Value;
            ulong sha = arp.SenderHardwareAddress.Value;
            ushort op = arp.Operation;
            bool untagged = m.VlanId == 0;
            if (role != PortRole.Tunnel && untagged && sha != 0 && (sha & 0x0100_0000_0000UL) == 0 && sha != routerMac
                && ((o.PodCidr.Contains(new Ipv4Address(spa)) && spa != gateway) || (role == PortRole.Host && spa == gateway)))
            {
                if (router.Neighbors.Learn(spa, sha, m.InPort, now))
                {
                    Counters.Add((int)Counter.NeighborsLearned);
                    router.NeighborLearned?.Invoke(spa, sha, m.InPort);
                }
                else Counters.Add((int)Counter.NeighborTableFull);
            }
            Code code;
            if (op == ArpOperation.Request && untagged && spa != tpa && ShouldAnswer(role, tpa, gateway, o, _router.Nat?.Options.ServiceCidr))
            {
                // Turn the request into the reply, in place, back out of the port it came in on.
                arp.Operation = ArpOperation.Reply;
                arp.TargetHardwareAddress = new MacAddress(sha);
                arp.TargetProtocolAddress = new Ipv4Address(spa);
                arp.SenderHardwareAddress = new MacAddress(routerMac);
                arp.SenderProtocolAddress = new Ipv4Address(tpa);
                new MacAddress(sha).Write(frame);
                new MacAddress(routerMac).Write(frame[6..]);
                m.DstMac = sha;
                m.SrcMac = routerMac;
                m.Flags &= ~PacketFlags.GroupDestination;
                m.OutPort = m.InPort;
                code = role == PortRole.Host ? Code.Proxied : Code.Answered;
                Counters.Add(role == PortRole.Host ? (int)Counter.ProxyAnswered : (int)Counter.GatewayAnswered);
                next[i] = 1;
            }
            else if (m.DstMac == routerMac)
            {
                if (op == ArpOperation.Reply) Counters.Add((int)Counter.RepliesReceived);
                code = Code.Consumed;
                slab.Free(s);
                next[i] = StageGraph.Consumed;
            }
            else
            {
                code = Code.PassedOn;
                Counters.Add((int)Counter.PassedOn);
                next[i] = 1;
            }
            if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, (int)code, op, m.OutPort, ((ulong)spa << 32) | tpa, sha, now);
        }
    }

    private static bool ShouldAnswer(PortRole role, uint tpa, uint gateway, RouterOptions o, Ipv4Prefix? services) => role switch
    {
        PortRole.Access => tpa == gateway,
        // The node reaches pods and Service addresses through the switch (both are routed to the host interface).
        PortRole.Host => tpa != gateway && (o.ClusterCidr.Contains(new Ipv4Address(tpa)) || services is { } sc && sc.Contains(new Ipv4Address(tpa))),
        _ => false,
    };

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        var spa = new Ipv4Address((uint)(r.X >> 32));
        var tpa = new Ipv4Address((uint)r.X);
        string op = r.A == ArpOperation.Request ? "request" : r.A == ArpOperation.Reply ? "reply" : $"op {r.A}";
        return (Code)r.Code switch
        {
            Code.Answered => $"arp {op} who-has {tpa} from {spa}: answered (gateway) on port {names.PortName(r.B)}",
            Code.Proxied => $"arp {op} who-has {tpa} from the host {spa}: answered by proxy (cluster address)",
            Code.Consumed => $"arp {op} {spa} is-at {new MacAddress(r.Y)}: for the router, neighbor learned",
            _ => $"arp {op} {spa} -> {tpa}: not for the router, passed on",
        };
    }
}

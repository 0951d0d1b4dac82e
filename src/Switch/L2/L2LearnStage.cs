using System.ComponentModel;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.L2;

public enum MacTableFullPolicy
{
    /// <summary>Forward frames from unlearned sources anyway (replies to them flood as unknown unicast).</summary>
    Flood,
    /// <summary>Drop frames from sources that cannot be learned (port-security style).</summary>
    Drop,
}

/// <summary>Learns source MAC → ingress port. Learning is apart from forwarding (its own stage).</summary>
public sealed class L2LearnStage : Stage
{
    public enum Counter
    {
        [Description("New MAC addresses learned")] Learned,
        [Description("MAC addresses that moved to another port")] Moved,
        [Description("New MAC addresses not learned because the table was full")] TableFull,
        [Description("Frames whose source MAC is a static entry of another port")] StaticMismatch,
    }

    public enum Reason
    {
        [Description("MAC table full and the full policy is drop")] TableFull,
        [Description("Source MAC is static on another port (spoofing)")] StaticMacSpoof,
    }

    private readonly MacTable _table;
    private readonly MacTableFullPolicy _fullPolicy;
    private readonly PortTable? _ports;

    /// <param name="fromHostNext">When given (with <paramref name="ports"/>), frames from the host port (the node's own
    /// stack) take this edge instead of <paramref name="next"/>: the local-out arc.</param>
    public L2LearnStage(MacTable table, MacTableFullPolicy fullPolicy, string next = "l2-forward", PortTable? ports = null, string? fromHostNext = null)
        : base("l2-learn", fromHostNext is null || ports is null ? [next] : [next, fromHostNext], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _table = table;
        _fullPolicy = fullPolicy;
        _ports = fromHostNext is null ? null : ports;
    }

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
        if (_ports is not null) SplitHostTraffic(batch, next, ctx.Slab.Meta, _ports, byInPort: true, 1, 2);
    }

    private void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketMeta[] meta = ctx.Slab.Meta;
        int[] slots = batch.Slots;
        long now = ctx.Now;
        long refresh = ctx.TicksPerSecond;
        MacTable table = _table;
        ulong lastMac = ulong.MaxValue;
        ushort lastPort = ushort.MaxValue, lastVlan = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            ref PacketMeta m = ref meta[slots[i]];
            next[i] = 1;
            // A batch from one port is mostly one or two sources: skip repeated lookups of the same learned source.
            if (m.SrcMac == lastMac && m.InPort == lastPort && m.VlanId == lastVlan && !T.Enabled) continue;
            LearnResult r = table.Learn(m.SrcMac, m.VlanId, m.InPort, now, refresh, out ushort oldPort);
            switch (r)
            {
                case LearnResult.Learned:
                    Counters.Add((int)Counter.Learned);
                    break;
                case LearnResult.Moved:
                    Counters.Add((int)Counter.Moved);
                    break;
                case LearnResult.Full:
                    Counters.Add((int)Counter.TableFull);
                    if (_fullPolicy == MacTableFullPolicy.Drop) next[i] = Drop(ref m, (int)Reason.TableFull);
                    break;
                case LearnResult.StaticMismatch:
                    Counters.Add((int)Counter.StaticMismatch);
                    next[i] = Drop(ref m, (int)Reason.StaticMacSpoof);
                    break;
            }
            if (r == LearnResult.Refreshed)
            {
                lastMac = m.SrcMac;
                lastPort = m.InPort;
                lastVlan = m.VlanId;
            }
            if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, (int)r, m.InPort, oldPort, m.SrcMac, m.VlanId, now);
        }
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        var mac = new MacAddress(r.X);
        string vlan = r.Y != 0 ? $" vlan {r.Y}" : "";
        return (LearnResult)r.Code switch
        {
            LearnResult.Refreshed => $"source {mac}{vlan} known on port {names.PortName(r.A)} (refreshed)",
            LearnResult.Learned => $"source {mac}{vlan} learned on port {names.PortName(r.A)}",
            LearnResult.Moved => $"source {mac}{vlan} moved from port {names.PortName(r.B)} to {names.PortName(r.A)}",
            LearnResult.Full => $"source {mac}{vlan} not learned: MAC table full",
            LearnResult.StaticMismatch => $"source {mac}{vlan} is static on port {names.PortName(r.B)}, seen on {names.PortName(r.A)}",
            _ => $"code {r.Code}",
        };
    }
}

/// <summary>Chooses the output port by destination MAC: known unicast to its port, everything else floods.</summary>
public sealed class L2ForwardStage : Stage
{
    public enum Counter
    {
        [Description("Known unicast destinations forwarded to their port")] Hit,
        [Description("Unknown unicast destinations flooded")] UnknownUnicast,
        [Description("Broadcast frames flooded")] Broadcast,
        [Description("Multicast frames flooded")] Multicast,
        [Description("IPv4 frames to the router's MAC handed to routing")] Routed,
    }

    public enum Reason
    {
        [Description("Destination is behind the ingress port (a bridge never sends a frame back where it came from)")] SamePort,
        [Description("Frame to the router's MAC that is neither IPv4 nor ARP")] NotRoutable,
    }

    private enum Code
    {
        Hit,
        Broadcast,
        Multicast,
        Unknown,
        SamePort,
        ToRouter,
    }

    private readonly MacTable _table;
    private readonly ulong _routerMac;
    private readonly PortTable? _ports;

    /// <param name="routerMac">When not 0, the node routes: IPv4 to this MAC goes to edge <c>routeNext</c> and every ARP
    /// frame also visits edge <c>arpNext</c> (after the L2 decision, which it keeps unless it answers).</param>
    /// <param name="toHostNext">When given (routing, with <paramref name="ports"/>), frames bridged to the host port take
    /// this edge instead of <paramref name="next"/>: the local-in arc.</param>
    public L2ForwardStage(MacTable table, string next = "port-tx", ulong routerMac = 0, string arpNext = "arp", string routeNext = "ip4-route",
        PortTable? ports = null, string? toHostNext = null)
        : base("l2-forward", routerMac == 0 ? [next] : toHostNext is null || ports is null ? [next, arpNext, routeNext] : [next, arpNext, routeNext, toHostNext],
            CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _table = table;
        _routerMac = routerMac;
        _ports = routerMac == 0 || toHostNext is null ? null : ports;
    }

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
        if (_ports is not null) SplitHostTraffic(batch, next, ctx.Slab.Meta, _ports, byInPort: false, 1, 4);
    }

    private void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketMeta[] meta = ctx.Slab.Meta;
        int[] slots = batch.Slots;
        long now = ctx.Now;
        MacTable table = _table;
        ulong routerMac = _routerMac;
        ulong lastMac = ulong.MaxValue;
        ushort lastVlan = 0, lastOut = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            ref PacketMeta m = ref meta[slots[i]];
            Code code;
            next[i] = 1;
            if (routerMac != 0 && m.DstMac == routerMac)
            {
                if (m.EtherType == EtherType.Ipv4)
                {
                    Counters.Add((int)Counter.Routed);
                    next[i] = 3;
                }
                else if (m.EtherType == EtherType.Arp)
                {
                    m.OutPort = PortIds.None;
                    next[i] = 2;
                }
                else
                {
                    next[i] = Drop(ref m, (int)Reason.NotRoutable);
                }
                if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                    ctx.Trace.Add(m, Index, (int)Code.ToRouter, m.OutPort, m.InPort, m.DstMac, m.VlanId, now);
                continue;
            }
            if ((m.Flags & PacketFlags.GroupDestination) != 0)
            {
                bool bcast = m.DstMac == MacAddress.Broadcast.Value;
                Counters.Add(bcast ? (int)Counter.Broadcast : (int)Counter.Multicast);
                m.OutPort = PortIds.Flood;
                code = bcast ? Code.Broadcast : Code.Multicast;
            }
            else if ((m.DstMac == lastMac && m.VlanId == lastVlan) || LookupInto(table, ref m, now, ref lastMac, ref lastVlan, ref lastOut))
            {
                if (lastOut == m.InPort)
                {
                    next[i] = Drop(ref m, (int)Reason.SamePort);
                    code = Code.SamePort;
                }
                else
                {
                    Counters.Add((int)Counter.Hit);
                    m.OutPort = lastOut;
                    code = Code.Hit;
                }
            }
            else
            {
                Counters.Add((int)Counter.UnknownUnicast);
                m.OutPort = PortIds.Flood;
                code = Code.Unknown;
            }
            if (routerMac != 0 && m.EtherType == EtherType.Arp && next[i] == 1) next[i] = 2;
            if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, (int)code, m.OutPort, m.InPort, m.DstMac, m.VlanId, now);
        }
    }

    /// <summary>Looks up the destination and, on a hit, makes it the one-entry cache for the rest of the batch.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static bool LookupInto(MacTable table, ref PacketMeta m, long now, ref ulong lastMac, ref ushort lastVlan, ref ushort lastOut)
    {
        if (!table.TryLookup(m.DstMac, m.VlanId, now, out ushort port)) return false;
        lastMac = m.DstMac;
        lastVlan = m.VlanId;
        lastOut = port;
        return true;
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        var mac = new MacAddress(r.X);
        return (Code)r.Code switch
        {
            Code.Hit => $"destination {mac} known on port {names.PortName(r.A)}: forward",
            Code.Broadcast => "destination broadcast: flood",
            Code.Multicast => $"destination {mac} multicast: flood",
            Code.Unknown => $"destination {mac} unknown: flood",
            Code.SamePort => $"destination {mac} is behind the ingress port {names.PortName(r.B)}: filtered",
            Code.ToRouter => $"destination {mac} is the router: route",
            _ => $"code {r.Code}",
        };
    }
}

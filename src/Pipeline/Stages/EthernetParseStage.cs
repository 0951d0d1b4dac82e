using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline.Stages;

/// <summary>Parses the Ethernet header once and keeps MACs, EtherType, VLAN and the L3 offset in the metadata.</summary>
public sealed class EthernetParseStage : Stage
{
    public enum Reason
    {
        [System.ComponentModel.Description("Frame shorter than an Ethernet header")] Runt,
        [System.ComponentModel.Description("Source MAC is multicast/broadcast (never valid as a source)")] GroupSource,
        [System.ComponentModel.Description("Source MAC is all zeros")] ZeroSource,
    }

    private static readonly string[] ReasonNames = CounterSet.Describe<Reason>().Names;

    public EthernetParseStage(string next = "l2-learn") : base("ethernet-parse", [next], dropReasons: ReasonNames) { }

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
    }

    private void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            if (!EthernetView.TryCreate(slab.Frame(s), out EthernetView eth))
            {
                next[i] = Drop(ref m, (int)Reason.Runt);
                continue;
            }
            ulong src = eth.Source.Value;
            ulong dst = eth.Destination.Value;
            m.SrcMac = src;
            m.DstMac = dst;
            m.EtherType = eth.EtherType;
            m.L3Offset = (ushort)eth.HeaderLength;
            if (eth.IsTagged)
            {
                m.Flags |= PacketFlags.Tagged;
                m.VlanId = eth.VlanId;
            }
            if ((dst & 0x0100_0000_0000UL) != 0) m.Flags |= PacketFlags.GroupDestination;
            // The flow hash, once for every later stage (steering, connection tracking, the VXLAN source port).
            m.FlowHash = m.EtherType == EtherType.Ipv4 && !eth.IsTagged
                ? FlowHash.Symmetric(FlowKey.OfPacket(slab.Frame(s)[m.L3Offset..]), FlowHash.ProcessSalt)
                : 0;
            if ((src & 0x0100_0000_0000UL) != 0) next[i] = Drop(ref m, (int)Reason.GroupSource);
            else if (src == 0) next[i] = Drop(ref m, (int)Reason.ZeroSource);
            else next[i] = 1;
            if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, 0, m.EtherType, m.VlanId, src, dst, ctx.Now);
        }
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        string type = r.A switch
        {
            EtherType.Ipv4 => "IPv4",
            EtherType.Arp => "ARP",
            EtherType.Ipv6 => "IPv6",
            _ => $"0x{r.A:x4}",
        };
        string vlan = r.B != 0 ? $" vlan {r.B}" : "";
        return $"{new MacAddress(r.X)} -> {new MacAddress(r.Y)} {type}{vlan}";
    }
}

namespace VSwitch.Pipeline.Stages;

/// <summary>
/// Entry stage: samples packets for tracing and records where they came in. Frames from a tunnel port (VXLAN
/// underlay) go to the decapsulation stage first when one is configured; everything else to Ethernet parsing.
/// </summary>
public sealed class PortRxStage : Stage
{
    private readonly PortTable? _ports;
    private readonly bool _hasTunnelEdge;

    public PortRxStage(string next = "ethernet-parse", PortTable? ports = null, string? tunnelNext = null)
        : base("port-rx", tunnelNext is null ? [next] : [next, tunnelNext])
    {
        _ports = ports;
        _hasTunnelEdge = tunnelNext is not null && ports is not null;
    }

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        TraceRing trace = ctx.Trace;
        int[] slots = batch.Slots;
        PacketMeta[] meta = ctx.Slab.Meta;
        int count = batch.Count;
        if (trace.Remaining > 0)
        {
            for (int i = 0; i < count; i++)
            {
                ref PacketMeta m = ref meta[slots[i]];
                if (trace.TrySample(ref m))
                {
                    batch.HasTraced = true;
                    trace.Add(m, Index, 0, m.InPort, m.Length, m.PeerAddr, timestamp: ctx.Now);
                }
            }
        }
        if (!_hasTunnelEdge)
        {
            next[..count].Fill(1);
            return;
        }
        PortTable ports = _ports!;
        for (int i = 0; i < count; i++)
            next[i] = ports.Role(meta[slots[i]].InPort) == PortRole.Tunnel ? (byte)2 : (byte)1;
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names) => r.X != 0
        ? $"rx on port {names.PortName(r.A)}, {r.B} bytes from underlay {new Wire.Ipv4Address((uint)r.X)}"
        : $"rx on port {names.PortName(r.A)}, {r.B} bytes";
}

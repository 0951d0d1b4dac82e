namespace VSwitch.Pipeline.Stages;

/// <summary>Entry stage: samples packets for tracing and records where they came in.</summary>
public sealed class PortRxStage : Stage
{
    public PortRxStage(string next = "ethernet-parse") : base("port-rx", [next]) { }

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
                    trace.Add(m, Index, 0, m.InPort, m.Length, timestamp: ctx.Now);
                }
            }
        }
        next[..count].Fill(1);
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names) => $"rx on port {names.PortName(r.A)}, {r.B} bytes";
}

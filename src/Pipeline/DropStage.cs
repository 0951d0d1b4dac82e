namespace VSwitch.Pipeline;

/// <summary>
/// The one drop path: counts every dropped packet by (stage, reason), records the drop in the trace, and frees the buffer.
/// </summary>
public sealed class DropStage : Stage
{
    public const int MaxReasons = 32;

    private long[] _counts = [];
    private Stage[] _stages = [];

    public DropStage() : base("drop", []) { }

    internal void Bind(Stage[] stages)
    {
        _stages = stages;
        _counts = new long[stages.Length * MaxReasons + 16];
    }

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        PacketMeta[] meta = ctx.Slab.Meta;
        int[] slots = batch.Slots;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            _counts[8 + m.DropStage * MaxReasons + Math.Min((int)m.DropReason, MaxReasons - 1)]++;
            if (batch.HasTraced && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, 0, m.DropStage, m.DropReason, timestamp: ctx.Now);
            ctx.Slab.Free(s);
            next[i] = StageGraph.Consumed;
        }
    }

    public long Count(int stage, int reason) => Volatile.Read(ref _counts[8 + stage * MaxReasons + reason]);

    /// <summary>Non-zero drop counters as (stage name, reason name, count).</summary>
    public IEnumerable<(string Stage, string Reason, long Count)> NonZero()
    {
        for (int s = 0; s < _stages.Length; s++)
        {
            for (int r = 0; r < MaxReasons; r++)
            {
                long c = Count(s, r);
                if (c != 0) yield return (_stages[s].Name, _stages[s].DropReasonName(r), c);
            }
        }
    }

    /// <summary>Every declared (stage, reason) with its count, zero or not (for metrics).</summary>
    public IEnumerable<(string Stage, string Reason, long Count)> All()
    {
        for (int s = 0; s < _stages.Length; s++)
            for (int r = 0; r < _stages[s].DropReasons.Length; r++)
                yield return (_stages[s].Name, _stages[s].DropReasons[r], Count(s, r));
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        int s = r.A;
        string stage = s < _stages.Length ? _stages[s].Name : $"stage-{s}";
        string reason = s < _stages.Length ? _stages[s].DropReasonName(r.B) : $"reason-{r.B}";
        return $"dropped by {stage}: {reason}";
    }
}

namespace VSwitch.Pipeline;

/// <summary>What stages see of their worker: the slab, the clock reading for this batch, trace and ports.</summary>
public sealed class WorkerContext
{
    public WorkerContext(PacketSlab slab, TimeProvider time, TraceRing? trace = null)
    {
        Slab = slab;
        Time = time;
        Trace = trace ?? new TraceRing();
    }

    public PacketSlab Slab { get; }
    public TimeProvider Time { get; }
    public TraceRing Trace { get; }
    /// <summary>Timestamp (<see cref="TimeProvider.GetTimestamp"/> units) read once per input batch.</summary>
    public long Now { get; set; }
    public long TicksPerSecond => Time.TimestampFrequency;
}

/// <summary>Names the trace formatter may need (ports by id).</summary>
public interface ITraceNames
{
    string PortName(int port);
}

/// <summary>
/// A pipeline stage: one call per batch (never per packet), filling <c>next[i]</c> with the edge index of each packet's
/// next stage. Edge 0 is always <c>drop</c>; a stage drops a packet by <see cref="Drop"/>, which records (stage, reason).
/// Stages are per worker; shared tables they read are immutable snapshots or lock-free.
/// </summary>
public abstract class Stage
{
    public const byte DropEdge = 0;

    /// <summary>An edge name meaning "the next feature of my arc" (or the arc's end): see <see cref="PipelineBuilder"/>.</summary>
    public const string ArcNext = "@next";

    protected Stage(string name, string[] nexts, CounterSet? counters = null, string[]? dropReasons = null)
    {
        Name = name;
        NextNames = ["drop", .. nexts];
        Counters = counters ?? CounterSet.Empty;
        DropReasons = dropReasons ?? [];
        if (DropReasons.Length > 255) throw new ArgumentException("at most 255 drop reasons per stage", nameof(dropReasons));
    }

    public string Name { get; }
    /// <summary>Position in the graph; assigned by <see cref="StageGraph"/>.</summary>
    public int Index { get; internal set; } = -1;
    /// <summary>Edge names; index 0 is "drop".</summary>
    public IReadOnlyList<string> NextNames { get; private set; }

    /// <summary>Replaces the edge names with what they resolve to (arc names and <see cref="ArcNext"/> become stages).</summary>
    internal void ResolveNext(string[] names)
    {
        if (names.Length != NextNames.Count || names[0] != "drop") throw new ArgumentException("edges must keep their number and drop first", nameof(names));
        NextNames = names;
    }
    public CounterSet Counters { get; }
    public string[] DropReasons { get; }

    public abstract void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next);

    /// <summary>Marks a packet dropped by this stage for <paramref name="reason"/>; returns the drop edge.</summary>
    protected byte Drop(ref PacketMeta meta, int reason)
    {
        meta.DropStage = (byte)Index;
        meta.DropReason = (byte)reason;
        return DropEdge;
    }

    /// <summary>Moves the packets on edge <paramref name="from"/> whose port (ingress with <paramref name="byInPort"/>, else
    /// egress) is the host port to edge <paramref name="to"/>: traffic from or to the node's own stack takes the local-out
    /// or local-in arc. Nothing to do (one comparison per batch) when both edges lead to the same stage.</summary>
    protected void SplitHostTraffic(PacketBatch batch, Span<byte> next, PacketMeta[] meta, Stages.PortTable ports, bool byInPort, byte from, byte to)
    {
        if (string.Equals(NextNames[from], NextNames[to], StringComparison.Ordinal)) return;
        int[] slots = batch.Slots;
        for (int i = 0; i < batch.Count; i++)
        {
            if (next[i] != from) continue;
            ref PacketMeta m = ref meta[slots[i]];
            if (ports.Role(byInPort ? m.InPort : m.OutPort) == Stages.PortRole.Host) next[i] = to;
        }
    }

    /// <summary>Formats one trace record of this stage (control plane only).</summary>
    public virtual string DescribeTrace(in TraceRecord r, ITraceNames names) => $"code {r.Code}";

    /// <summary>Formats a drop reason this stage declared.</summary>
    public string DropReasonName(int reason) => reason < DropReasons.Length ? DropReasons[reason] : $"reason-{reason}";
}

namespace VSwitch.Pipeline;

/// <summary>
/// The dispatcher. Stages are given in topological order (every edge points forward, <c>drop</c> last); a batch enters
/// at stage 0 and each stage's output is sorted onto the pending batches of its next stages, which run in order.
/// One virtual call per stage per batch; the per-packet work is plain loops inside the stages.
/// </summary>
public sealed class StageGraph
{
    private readonly Stage[] _stages;
    private readonly int[][] _edges;
    private readonly PacketBatch[] _pending;
    private readonly byte[] _next;
    private readonly long[] _calls;
    private readonly long[] _packets;

    /// <param name="stages">The stages, in topological order, drop last.</param>
    /// <param name="batchCapacity">Most packets one input batch holds.</param>
    /// <param name="pendingCapacity">Most packets a stage's pending batch holds: more than <paramref name="batchCapacity"/>
    /// when a stage may turn one packet into several (a super-frame into its segments); the slab's slot count is a
    /// bound that can never be exceeded. Defaults to <paramref name="batchCapacity"/>.</param>
    public StageGraph(IReadOnlyList<Stage> stages, int batchCapacity = PacketBatch.DefaultCapacity, int pendingCapacity = 0)
    {
        pendingCapacity = Math.Max(pendingCapacity, batchCapacity);
        if (stages.Count < 2) throw new ArgumentException("a graph needs an entry stage and drop", nameof(stages));
        if (stages[^1] is not DropStage) throw new ArgumentException("the last stage must be drop", nameof(stages));
        _stages = [.. stages];
        var byName = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < _stages.Length; i++)
        {
            if (!byName.TryAdd(_stages[i].Name, i)) throw new ArgumentException($"duplicate stage name '{_stages[i].Name}'", nameof(stages));
            _stages[i].Index = i;
        }
        _edges = new int[_stages.Length][];
        for (int i = 0; i < _stages.Length; i++)
        {
            IReadOnlyList<string> names = _stages[i].NextNames;
            _edges[i] = new int[names.Count];
            for (int e = 0; e < names.Count; e++)
            {
                if (!byName.TryGetValue(names[e], out int target))
                    throw new ArgumentException($"stage '{_stages[i].Name}' names unknown next stage '{names[e]}'", nameof(stages));
                if (target <= i && _stages[i] is not DropStage)
                    throw new ArgumentException($"edge '{_stages[i].Name}' -> '{names[e]}' points backwards; give stages in topological order", nameof(stages));
                _edges[i][e] = target;
            }
        }
        _pending = new PacketBatch[_stages.Length];
        for (int i = 0; i < _pending.Length; i++) _pending[i] = new PacketBatch(pendingCapacity);
        _next = new byte[pendingCapacity];
        _calls = new long[_stages.Length];
        _packets = new long[_stages.Length];
        BatchCapacity = batchCapacity;
        Drop = (DropStage)_stages[^1];
        Drop.Bind(_stages);
    }

    public IReadOnlyList<Stage> Stages => _stages;

    /// <summary>The arcs the graph was built from, each with its features in order and its end (empty when the stages
    /// were given directly).</summary>
    public IReadOnlyList<(string Arc, IReadOnlyList<string> Features, string End)> Arcs { get; init; } = [];
    public DropStage Drop { get; }
    public int BatchCapacity { get; }

    /// <summary>Calls and packets per stage (VPP's "show runtime" vectors/call).</summary>
    public (long Calls, long Packets) Runtime(int stage) => (Volatile.Read(ref _calls[stage]), Volatile.Read(ref _packets[stage]));

    public Stage? Find(string name) => Array.Find(_stages, s => s.Name == name);

    /// <summary>Runs one input batch through the graph. The input batch is left empty.</summary>
    public void Run(WorkerContext ctx, PacketBatch input) => RunFrom(ctx, 0, input);

    /// <summary>Runs one input batch through the graph from stage <paramref name="first"/> on (packets another worker
    /// handed over enter after the stage that steered them). The input batch is left empty.</summary>
    public void RunFrom(WorkerContext ctx, int first, PacketBatch input)
    {
        if (input.Count == 0) return;
        ctx.Now = ctx.Time.GetTimestamp();
        RunStage(ctx, first, input);
        input.Clear();
        for (int i = first + 1; i < _stages.Length; i++)
        {
            PacketBatch b = _pending[i];
            if (b.Count == 0) continue;
            RunStage(ctx, i, b);
            b.Clear();
        }
    }

    private void RunStage(WorkerContext ctx, int i, PacketBatch batch)
    {
        _calls[i]++;
        _packets[i] += batch.Count;
        // A stage may replace packets of its batch with several (segments), up to the batch's capacity: it sees the whole
        // next array and the count is read again afterwards.
        _stages[i].Process(ctx, batch, _next.AsSpan(0, batch.Capacity));
        int count = batch.Count;
        Span<byte> next = _next.AsSpan(0, count);
        int[] edges = _edges[i];
        if (edges.Length == 1 && i == _stages.Length - 1) return; // drop is a sink
        int[] slots = batch.Slots;
        bool traced = batch.HasTraced;
        for (int j = 0; j < count; j++)
        {
            int e = next[j];
            if (e >= edges.Length) continue; // stage consumed the packet (sinks return NoNext)
            PacketBatch target = _pending[edges[e]];
            target.Add(slots[j]);
            if (traced) target.HasTraced = true;
        }
    }

    /// <summary>Edge value a sink stage writes for packets it consumed (transmitted or freed).</summary>
    public const byte Consumed = 0xFF;
}

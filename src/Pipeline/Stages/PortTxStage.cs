namespace VSwitch.Pipeline.Stages;

/// <summary>
/// Output: groups the batch by egress port and hands each port its frames in one batched call. A flood packet is
/// sent from the same buffer to every port but its ingress (the kernel copies on transmit, so no clone is needed);
/// tunnel ports are left out of flooding (the encapsulation stage replicates to overlay peers itself).
/// Frees every buffer afterwards.
/// </summary>
public sealed class PortTxStage : Stage
{
    public enum Counter
    {
        [System.ComponentModel.Description("Packets flooded to all ports but the ingress")] Flooded,
        [System.ComponentModel.Description("Copies transmitted by flooding")] FloodCopies,
        [System.ComponentModel.Description("Frames a port did not accept (queue full or error)")] TxRefused,
        [System.ComponentModel.Description("Super-frames cut into segments in software for a port without TSO")] Segmented,
        [System.ComponentModel.Description("Super-frames or partial-checksum frames not finishable in software (malformed, or no buffer): dropped")] UnfinishedDropped,
    }

    public enum Reason
    {
        [System.ComponentModel.Description("No output port decided")] NoOutput,
        [System.ComponentModel.Description("Output port does not exist")] BadPort,
    }

    private readonly PortTable _ports;
    private int[][] _perPort = [];
    private int[] _perPortCount = [];
    private PortOffloads[] _offloads = [];
    private PortOffloads _floodOffloads;
    private int[] _scratch = [];
    private int _version = -1;

    public PortTxStage(PortTable ports)
        : base("port-tx", [], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _ports = ports;
    }

    private void EnsureCapacity(int batchCapacity)
    {
        if (_version == _ports.Version && _perPort.Length > 0 && _perPort[0].Length >= batchCapacity) return;
        // Ports were added or removed (between batches): rebuild the per-port queues and the offload view.
        _version = _ports.Version;
        int n = Math.Max(_ports.Limit, 1);
        if (_perPort.Length < n || _perPort[0].Length < batchCapacity)
        {
            int size = Math.Max(batchCapacity, _perPort.Length > 0 ? _perPort[0].Length : 0);
            var perPort = new int[Math.Max(n, _perPort.Length)][];
            for (int i = 0; i < perPort.Length; i++) perPort[i] = i < _perPort.Length && _perPort[i].Length >= size ? _perPort[i] : new int[size];
            _perPort = perPort;
            _perPortCount = new int[perPort.Length];
        }
        _offloads = new PortOffloads[_perPort.Length];
        _floodOffloads = PortOffloads.All;
        for (int p = 0; p < _ports.Limit; p++)
        {
            if (_ports[p] is not { } port) continue;
            _offloads[p] = port.Offloads;
            if (_ports.Role(p) is not (PortRole.Tunnel or PortRole.Uplink)) _floodOffloads &= _offloads[p];
        }
    }

    /// <summary>What each packet's egress takes: its port's offloads, or what every flood target takes.</summary>
    private readonly struct Egress(PortOffloads[] ports, PortOffloads flood) : IEgressOffloads
    {
        public PortOffloads For(ref PacketMeta m) =>
            m.OutPort == PortIds.Flood ? flood : m.OutPort < ports.Length ? ports[m.OutPort] : PortOffloads.All;
    }

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        EnsureCapacity(batch.Capacity);
        PacketSlab slab = ctx.Slab;
        if (_scratch.Length < batch.Capacity) _scratch = new int[batch.Capacity];
        var egress = new Egress(_offloads, _floodOffloads);
        // Only ports with offloads (which need large slots) bring super-frames or partial checksums.
        int segmented = 0;
        int unfinished = slab.LargeCapacity == 0 ? 0 : Offload.Resolve(slab, batch, ref egress, _scratch, out segmented);
        if ((unfinished | segmented) != 0)
        {
            Counters.Add((int)Counter.Segmented, segmented);
            Counters.Add((int)Counter.UnfinishedDropped, unfinished);
        }
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        int portCount = _ports.Limit;
        int count = batch.Count;
        bool traced = batch.HasTraced;
        for (int i = 0; i < count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            int o = m.OutPort;
            if (o == PortIds.Flood)
            {
                Counters.Add((int)Counter.Flooded);
                int copies = 0;
                for (int p = 0; p < portCount; p++)
                {
                    if (p == m.InPort || _ports[p] is null || _ports.Role(p) is PortRole.Tunnel or PortRole.Uplink) continue;
                    _perPort[p][_perPortCount[p]++] = s;
                    copies++;
                }
                Counters.Add((int)Counter.FloodCopies, copies);
                if (traced && (m.Flags & PacketFlags.Traced) != 0) ctx.Trace.Add(m, Index, 1, o, copies, timestamp: ctx.Now);
                next[i] = StageGraph.Consumed;
            }
            else if (o < portCount && _ports[o] is not null)
            {
                _perPort[o][_perPortCount[o]++] = s;
                if (traced && (m.Flags & PacketFlags.Traced) != 0) ctx.Trace.Add(m, Index, 0, o, m.Length, timestamp: ctx.Now);
                next[i] = StageGraph.Consumed;
            }
            else
            {
                next[i] = Drop(ref m, o == PortIds.None ? (int)Reason.NoOutput : (int)Reason.BadPort);
            }
        }
        for (int p = 0; p < portCount; p++)
        {
            int n = _perPortCount[p];
            if (n == 0) continue;
            int sent = _ports[p]!.Send(slab, new ReadOnlySpan<int>(_perPort[p], 0, n));
            if (sent < n) Counters.Add((int)Counter.TxRefused, n - sent);
            _perPortCount[p] = 0;
        }
        for (int i = 0; i < count; i++)
        {
            if (next[i] == StageGraph.Consumed) slab.Free(slots[i]);
        }
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names) => r.Code == 1
        ? $"flood to {r.B} port(s) (all but ingress)"
        : $"tx on port {names.PortName(r.A)}, {r.B} bytes";
}

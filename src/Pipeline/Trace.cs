using System.Runtime.CompilerServices;

namespace VSwitch.Pipeline;

/// <summary>
/// A fixed-size record of what one stage decided for one traced packet. Stages interpret the fields
/// (code, ports, values) and format them off the fast path in <see cref="Stage.DescribeTrace"/>.
/// </summary>
public struct TraceRecord
{
    public uint TraceId;
    public ushort Stage;
    public ushort Code;
    public int A;
    public int B;
    public ulong X;
    public ulong Y;
    public long Timestamp;
}

/// <summary>Compile-time switch for the tracing instantiation of a stage's loop (the JIT removes the untaken side).</summary>
public interface ITraceMode
{
    static abstract bool Enabled { get; }
}

public readonly struct TraceOff : ITraceMode
{
    public static bool Enabled => false;
}

public readonly struct TraceOn : ITraceMode
{
    public static bool Enabled => true;
}

/// <summary>
/// Per-worker ring of trace records and the sampling budget ("trace the next N packets").
/// Written only by the worker; read by the control plane through the worker's command queue.
/// </summary>
public sealed class TraceRing
{
    private readonly TraceRecord[] _records;
    private long _written;

    public TraceRing(int capacity = 8192)
    {
        _records = new TraceRecord[capacity];
    }

    /// <summary>Packets still to be sampled at port-rx.</summary>
    public int Remaining { get; set; }
    public uint LastTraceId { get; private set; }

    /// <summary>Called by the input stage: decides whether this packet is traced, and gives it an id.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TrySample(ref PacketMeta meta)
    {
        if (Remaining <= 0) return false;
        Remaining--;
        meta.Flags |= PacketFlags.Traced;
        meta.TraceId = ++LastTraceId;
        return true;
    }

    public void Add(in PacketMeta meta, int stage, int code, int a = 0, int b = 0, ulong x = 0, ulong y = 0, long timestamp = 0)
    {
        ref TraceRecord r = ref _records[(int)(_written++ % _records.Length)];
        r.TraceId = meta.TraceId;
        r.Stage = (ushort)stage;
        r.Code = (ushort)code;
        r.A = a;
        r.B = b;
        r.X = x;
        r.Y = y;
        r.Timestamp = timestamp;
    }

    public void Clear()
    {
        _written = 0;
        Remaining = 0;
    }

    /// <summary>The records still in the ring, oldest first.</summary>
    public TraceRecord[] Snapshot()
    {
        long n = Math.Min(_written, _records.Length);
        var result = new TraceRecord[n];
        for (long i = 0; i < n; i++) result[i] = _records[(int)((_written - n + i) % _records.Length)];
        return result;
    }
}

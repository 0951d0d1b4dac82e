namespace VSwitch.Pipeline;

/// <summary>A batch of slot indices processed together by one stage call.</summary>
public sealed class PacketBatch
{
    public const int DefaultCapacity = 256;

    public PacketBatch(int capacity = DefaultCapacity)
    {
        Slots = new int[capacity];
    }

    public int[] Slots { get; }
    public int Count { get; private set; }
    public int Capacity => Slots.Length;
    /// <summary>At least one packet in the batch is traced; stages run their tracing instantiation.</summary>
    public bool HasTraced { get; set; }
    public bool IsFull => Count == Slots.Length;

    public void Add(int slot) => Slots[Count++] = slot;

    /// <summary>Keeps the first <paramref name="count"/> packets (a port that received, then refused some).</summary>
    public void Truncate(int count)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)count, (uint)Count, nameof(count));
        Count = count;
    }

    /// <summary>Replaces the packets from position <paramref name="from"/> on with <paramref name="tail"/> (a stage that
    /// turned one super-frame into its segments, in place and in order).</summary>
    public void ReplaceTail(int from, ReadOnlySpan<int> tail)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)from, (uint)Count, nameof(from));
        tail.CopyTo(Slots.AsSpan(from));
        Count = from + tail.Length;
    }

    public void Clear()
    {
        Count = 0;
        HasTraced = false;
    }

    public ReadOnlySpan<int> AsSpan() => new(Slots, 0, Count);
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VSwitch.Pipeline;

/// <summary>The two indices of a <see cref="SpscRing{T}"/>, each on a cache line of its own (outside the generic class:
/// generic types cannot have explicit layout).</summary>
[StructLayout(LayoutKind.Explicit, Size = 192)]
internal struct RingIndices
{
    /// <summary>Next item to dequeue; written by the consumer only.</summary>
    [FieldOffset(64)] public long Head;
    /// <summary>Next free place; written by the producer only.</summary>
    [FieldOffset(128)] public long Tail;
}

/// <summary>
/// A bounded single-producer, single-consumer ring of unmanaged items: one thread enqueues, one other thread dequeues,
/// without locks. The producer's and the consumer's indices sit on cache lines of their own, so the two cores do not
/// share a line except when the ring goes from empty to non-empty or from full to not full.
/// </summary>
public sealed class SpscRing<T> where T : unmanaged
{
    private readonly T[] _items;
    private readonly long _mask;
    private RingIndices _i;

    /// <param name="capacity">Rounded up to a power of two.</param>
    public SpscRing(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        int n = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)capacity);
        _items = new T[n];
        _mask = n - 1;
    }

    public int Capacity => _items.Length;

    /// <summary>Items waiting (an estimate when read by neither side's thread).</summary>
    public int Count => (int)(Volatile.Read(ref _i.Tail) - Volatile.Read(ref _i.Head));

    public bool IsEmpty => Volatile.Read(ref _i.Head) == Volatile.Read(ref _i.Tail);

    /// <summary>Producer side. False when the ring is full.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryEnqueue(in T item)
    {
        long t = _i.Tail;
        if (t - Volatile.Read(ref _i.Head) >= _items.Length) return false;
        _items[t & _mask] = item;
        Volatile.Write(ref _i.Tail, t + 1); // release: the item is visible before the new tail
        return true;
    }

    /// <summary>Consumer side. False when the ring is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryDequeue(out T item)
    {
        long h = _i.Head;
        if (h == Volatile.Read(ref _i.Tail)) // acquire: the item written before this tail is visible
        {
            item = default;
            return false;
        }
        item = _items[h & _mask];
        Volatile.Write(ref _i.Head, h + 1);
        return true;
    }
}

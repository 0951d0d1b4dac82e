using System.Runtime.CompilerServices;

namespace VSwitch.Pipeline;

/// <summary>
/// One pinned block of fixed-size packet slots addressed by index, with headroom before each frame so
/// encapsulation prepends headers by moving an offset. Owned by one worker: not thread-safe by design.
/// </summary>
public sealed unsafe class PacketSlab
{
    public const int DefaultHeadroom = 128;
    public const int DefaultSlotSize = 2048;

    private readonly byte[] _data;
    private readonly byte* _base;
    private readonly int[] _free;
    private int _freeCount;

    public PacketSlab(int capacity, int slotSize = DefaultSlotSize, int headroom = DefaultHeadroom)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotSize, headroom + 64);
        if (slotSize % 64 != 0) throw new ArgumentException("slot size must be a multiple of 64 (cache line)", nameof(slotSize));
        Capacity = capacity;
        SlotSize = slotSize;
        Headroom = headroom;
        _data = GC.AllocateUninitializedArray<byte>(checked(capacity * slotSize) + 64, pinned: true);
        // Align slot 0 to a cache line.
        byte* p = (byte*)Unsafe.AsPointer(ref _data[0]);
        int adjust = (int)((64 - ((nint)p & 63)) & 63);
        _base = p + adjust;
        BaseOffset = adjust;
        Meta = new PacketMeta[capacity];
        _free = new int[capacity];
        for (int i = 0; i < capacity; i++) _free[i] = capacity - 1 - i;
        _freeCount = capacity;
    }

    public int Capacity { get; }
    public int SlotSize { get; }
    public int Headroom { get; }
    /// <summary>Largest frame a slot holds with the default headroom.</summary>
    public int MaxFrameLength => SlotSize - Headroom;
    public int FreeCount => _freeCount;
    private int BaseOffset { get; }

    /// <summary>Metadata per slot, indexed like the slots.</summary>
    public PacketMeta[] Meta { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAlloc(out int slot)
    {
        if (_freeCount == 0)
        {
            slot = -1;
            return false;
        }
        slot = _free[--_freeCount];
        ref PacketMeta m = ref Meta[slot];
        m = default;
        m.Offset = Headroom;
        m.InPort = PortIds.None;
        m.OutPort = PortIds.None;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(int slot) => _free[_freeCount++] = slot;

    /// <summary>Pointer to the start of the slot (headroom included). Valid for the slab's lifetime.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* SlotPointer(int slot) => _base + (nint)slot * SlotSize;

    /// <summary>The frame bytes of a slot, per its metadata.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> Frame(int slot)
    {
        ref PacketMeta m = ref Meta[slot];
        return new Span<byte>(_data, BaseOffset + slot * SlotSize + m.Offset, m.Length);
    }

    /// <summary>Copies a frame into a freshly allocated slot at the default headroom. For tests, memory ports and control code.</summary>
    public bool TryAllocFrame(ReadOnlySpan<byte> frame, out int slot)
    {
        if (frame.Length > MaxFrameLength || !TryAlloc(out slot))
        {
            slot = -1;
            return false;
        }
        Meta[slot].Length = frame.Length;
        frame.CopyTo(Frame(slot));
        return true;
    }
}

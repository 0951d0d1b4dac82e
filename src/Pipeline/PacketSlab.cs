using System.Runtime.CompilerServices;

namespace VSwitch.Pipeline;

/// <summary>
/// Pinned blocks of fixed-size packet slots addressed by index, with headroom before each frame so
/// encapsulation prepends headers by moving an offset. Owned by one worker: not thread-safe by design.
/// Two sizes: <see cref="Capacity"/> standard slots (indices 0..Capacity-1) hold any MTU-sized frame; an optional pool
/// of <see cref="LargeCapacity"/> large slots (indices after them) holds TSO/GSO super-frames of up to 64 KB that ports
/// with offloads receive. Everything downstream addresses both alike through <see cref="SlotPointer"/>.
/// </summary>
public sealed unsafe class PacketSlab
{
    public const int DefaultHeadroom = 128;
    public const int DefaultSlotSize = 2048;
    /// <summary>A 65,535-byte IP packet behind an 802.1Q-tagged Ethernet header, plus headroom, rounded to a cache line.</summary>
    public const int DefaultLargeSlotSize = 65_536 + 2_048;

    private readonly Region _small;
    private readonly Region _large;

    public PacketSlab(int capacity, int slotSize = DefaultSlotSize, int headroom = DefaultHeadroom,
        int largeCapacity = 0, int largeSlotSize = DefaultLargeSlotSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotSize, headroom + 64);
        ArgumentOutOfRangeException.ThrowIfNegative(largeCapacity);
        ArgumentOutOfRangeException.ThrowIfLessThan(largeSlotSize, slotSize);
        if (slotSize % 64 != 0 || largeSlotSize % 64 != 0) throw new ArgumentException("slot sizes must be multiples of 64 (cache line)", nameof(slotSize));
        Capacity = capacity;
        LargeCapacity = largeCapacity;
        SlotSize = slotSize;
        LargeSlotSize = largeSlotSize;
        Headroom = headroom;
        _small = new Region(capacity, slotSize, 0);
        _large = new Region(largeCapacity, largeSlotSize, capacity);
        Meta = new PacketMeta[capacity + largeCapacity];
    }

    /// <summary>Standard slots.</summary>
    public int Capacity { get; }
    /// <summary>Large slots for super-frames (0 when no port receives them).</summary>
    public int LargeCapacity { get; }
    public int SlotSize { get; }
    public int LargeSlotSize { get; }
    public int Headroom { get; }
    /// <summary>Largest frame a standard slot holds with the default headroom.</summary>
    public int MaxFrameLength => SlotSize - Headroom;
    /// <summary>Largest frame a large slot holds with the default headroom.</summary>
    public int MaxLargeFrameLength => LargeSlotSize - Headroom;
    public int FreeCount => _small.FreeCount;
    public int LargeFreeCount => _large.FreeCount;

    /// <summary>Metadata per slot, indexed like the slots (standard, then large).</summary>
    public PacketMeta[] Meta { get; }

    /// <summary>Allocates a standard slot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAlloc(out int slot) => Init(_small.TryTake(out slot));

    /// <summary>Allocates a large slot (for a port that may receive a super-frame).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAllocLarge(out int slot) => Init(_large.TryTake(out slot));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Init(int slot)
    {
        if (slot < 0) return false;
        ref PacketMeta m = ref Meta[slot];
        m = default;
        m.Offset = Headroom;
        m.InPort = PortIds.None;
        m.OutPort = PortIds.None;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(int slot)
    {
        if (slot < Capacity) _small.Give(slot);
        else _large.Give(slot);
    }

    /// <summary>True for a large slot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsLarge(int slot) => slot >= Capacity;

    /// <summary>Size of the slot (headroom included).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int SizeOf(int slot) => slot < Capacity ? SlotSize : LargeSlotSize;

    /// <summary>Pointer to the start of the slot (headroom included). Valid for the slab's lifetime.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* SlotPointer(int slot) => slot < Capacity ? _small.Pointer(slot) : _large.Pointer(slot);

    /// <summary>The frame bytes of a slot, per its metadata.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> Frame(int slot)
    {
        ref PacketMeta m = ref Meta[slot];
        return new Span<byte>(SlotPointer(slot) + m.Offset, m.Length);
    }

    /// <summary>Copies a frame into a freshly allocated slot at the default headroom (a large one when it does not fit a
    /// standard one): memory ports, packets one worker hands another, tests and control code.</summary>
    public bool TryAllocFrame(ReadOnlySpan<byte> frame, out int slot)
    {
        slot = -1;
        bool ok = frame.Length <= MaxFrameLength ? TryAlloc(out slot)
            : frame.Length <= MaxLargeFrameLength && TryAllocLarge(out slot);
        if (!ok) return false;
        Meta[slot].Length = frame.Length;
        frame.CopyTo(Frame(slot));
        return true;
    }

    /// <summary>One size class: a pinned, cache-line-aligned block and a LIFO free list (the warmest slot is reused first).</summary>
    private sealed class Region
    {
        private readonly byte* _base;
        private readonly byte[]? _data; // keeps the pinned block reachable
        private readonly int _slotSize;
        private readonly int _first;
        private readonly int[] _free;
        private int _freeCount;

        public Region(int count, int slotSize, int first)
        {
            _slotSize = slotSize;
            _first = first;
            if (count > 0)
            {
                byte[] data = GC.AllocateUninitializedArray<byte>(checked(count * slotSize) + 64, pinned: true);
                byte* p = (byte*)Unsafe.AsPointer(ref data[0]);
                _base = p + ((64 - ((nint)p & 63)) & 63);
                _data = data;
            }
            _free = new int[count];
            for (int i = 0; i < count; i++) _free[i] = first + count - 1 - i;
            _freeCount = count;
        }

        public int FreeCount => _freeCount;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int TryTake(out int slot)
        {
            slot = _freeCount == 0 ? -1 : _free[--_freeCount];
            return slot;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Give(int slot) => _free[_freeCount++] = slot;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public byte* Pointer(int slot) => _base + (nint)(slot - _first) * _slotSize;
    }
}

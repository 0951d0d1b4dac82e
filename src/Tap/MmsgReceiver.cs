using System.Runtime.InteropServices;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// The receive half shared by the socket ports (AF_PACKET, the overlay's UDP socket): native <c>mmsghdr</c>, iovec,
/// source-address and control arrays for up to <see cref="MaxBatch"/> messages, filled with free slab slots and handed
/// to one <c>recvmmsg</c>. The port then reads each message's length, flags and source address and keeps or frees its
/// slot.
/// With an overflow size (the overlay socket with UDP GRO, whose datagram trains are up to 64 KB), each message gets a
/// second iovec into a per-message overflow area that takes what does not fit the slot; <see cref="Linearize"/> then
/// joins the two so the whole message is contiguous. Messages that fit their slot stay zero-copy.
/// </summary>
internal sealed unsafe class MmsgReceiver : IDisposable
{
    public const int MaxBatch = 256;

    private readonly Native.MMsgHdr* _msgs;
    private readonly Native.IoVec* _iov;
    private readonly byte* _addr;
    private readonly byte* _control;
    private readonly int _addrSize;
    private readonly int _controlSize;
    private readonly int _overflowSize;
    private readonly int _maxMessages;
    private readonly int[] _slots = new int[MaxBatch];
    private byte* _overflow;
    private int _room;

    /// <param name="addrSize">Size of the source address each message records (sockaddr_ll, sockaddr_in).</param>
    /// <param name="controlSize">Ancillary data room per message (0 for none).</param>
    /// <param name="overflowSize">Bytes a message may have beyond its slot (0: none; longer messages are truncated).</param>
    /// <param name="maxMessages">Most messages one call receives (bounds the overflow areas).</param>
    public MmsgReceiver(int addrSize, int controlSize, int overflowSize = 0, int maxMessages = MaxBatch)
    {
        _addrSize = addrSize;
        _controlSize = controlSize;
        _overflowSize = overflowSize;
        _maxMessages = Math.Clamp(maxMessages, 1, MaxBatch);
        _msgs = (Native.MMsgHdr*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.MMsgHdr)));
        _iov = (Native.IoVec*)NativeMemory.AllocZeroed((nuint)(2 * MaxBatch * sizeof(Native.IoVec)));
        _addr = (byte*)NativeMemory.AllocZeroed((nuint)(MaxBatch * addrSize));
        _control = controlSize > 0 ? (byte*)NativeMemory.AllocZeroed((nuint)(MaxBatch * controlSize)) : null;
    }

    /// <summary>Slot of message <paramref name="i"/>.</summary>
    public int Slot(int i) => _slots[i];
    public ref Native.MsgHdr Header(int i) => ref _msgs[i].Hdr;
    public uint Length(int i) => _msgs[i].Length;
    public ref T Address<T>(int i) where T : unmanaged => ref *(T*)(_addr + i * _addrSize);
    /// <summary>Bytes of a message that land in its slot; the rest went to the overflow area.</summary>
    public int Room => _room;

    /// <summary>Message <paramref name="i"/> (longer than <see cref="Room"/>) made contiguous: the slot's part is copied
    /// in front of the overflow part. The pointer is valid until the next <see cref="Receive"/>.</summary>
    public byte* Linearize(int i)
    {
        byte* area = _overflow + (nint)i * (_room + _overflowSize);
        Buffer.MemoryCopy((byte*)_iov[2 * i].Base, area, _room, _room);
        return area;
    }

    /// <summary>
    /// Receives up to <paramref name="max"/> messages from <paramref name="fd"/> into free slots, each at
    /// <paramref name="offset"/> from the slot start. Returns how many arrived; slots not filled are back in the slab.
    /// No free slot counts an rx drop; an error other than EAGAIN/EINTR counts an rx error.
    /// </summary>
    public int Receive(int fd, PacketSlab slab, int max, int offset, CounterSet counters)
    {
        max = Math.Min(max, _maxMessages);
        int room = slab.SlotSize - offset;
        if (_overflowSize > 0 && room != _room)
        {
            // Once per slab: a gap of one slot's room in front of each overflow area, for Linearize.
            if (_overflow != null) NativeMemory.Free(_overflow);
            _overflow = (byte*)NativeMemory.Alloc((nuint)((long)_maxMessages * (room + _overflowSize)));
        }
        _room = room;
        int n = 0;
        for (; n < max; n++)
        {
            if (!slab.TryAlloc(out int slot)) break;
            _slots[n] = slot;
            Native.IoVec* v = &_iov[2 * n];
            v[0].Base = slab.SlotPointer(slot) + offset;
            v[0].Length = (nuint)room;
            if (_overflowSize > 0)
            {
                v[1].Base = _overflow + (nint)n * (room + _overflowSize) + room;
                v[1].Length = (nuint)_overflowSize;
            }
            ref Native.MsgHdr h = ref _msgs[n].Hdr;
            h.Name = _addr + n * _addrSize;
            h.NameLength = (uint)_addrSize;
            h.Iov = v;
            h.IovLength = _overflowSize > 0 ? 2u : 1u;
            h.Control = _control == null ? null : _control + n * _controlSize;
            h.ControlLength = (nuint)_controlSize;
            h.Flags = 0;
        }
        if (n == 0)
        {
            counters.Add((int)PortCounter.RxDropped);
            return 0;
        }
        int got = Native.RecvMmsg(fd, _msgs, (uint)n, Native.MSG_DONTWAIT, null);
        if (got < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            if (e is not (Native.EAGAIN or Native.EINTR)) counters.Add((int)PortCounter.RxErrors);
            got = 0;
        }
        for (int i = got; i < n; i++) slab.Free(_slots[i]);
        return got;
    }

    public void Dispose()
    {
        NativeMemory.Free(_msgs);
        NativeMemory.Free(_iov);
        NativeMemory.Free(_addr);
        if (_control != null) NativeMemory.Free(_control);
        if (_overflow != null) NativeMemory.Free(_overflow);
    }
}

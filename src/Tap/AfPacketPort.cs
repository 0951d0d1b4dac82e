using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// A raw AF_PACKET socket on an existing interface (such as the host end of a pod's veth). Receive reads a
/// TPACKET_V2 ring that the kernel fills in its softirq (no system call per frame or per batch: the worker reads frames
/// the kernel has marked as the user's, copies each into a slab slot and hands the ring frame back). Transmit is
/// batched with <c>sendmmsg</c> straight from slab slots. The kernel strips 802.1Q tags into the ring frame's header
/// (the "VLAN in auxdata" trap); they are put back into the frame so the pipeline sees the wire bytes.
/// With offloads (<c>PACKET_VNET_HDR</c>) every frame in both directions carries a virtio-net header, as on a TAP with
/// IFF_VNET_HDR: a pod whose veth has TSO and checksum offload on hands over 64 KB TCP super-frames and partial
/// checksums, and the switch hands them on (the kernel segments them itself at a device without TSO). A super-frame
/// does not fit a 2 KB ring frame: the kernel then marks the ring frame <c>TP_STATUS_COPY</c> and queues the whole
/// packet on the socket (<c>PACKET_COPY_THRESH</c>), where one <c>read</c> takes it into a large slab slot.
/// </summary>
/// <remarks>
/// Why a V2 ring: a ring receive leaves the kernel's receive path cheaper (the frame is copied into the ring in the
/// sender's softirq and the skb freed there, instead of being queued for a later <c>recvmmsg</c> on the switch's CPU),
/// and TPACKET_V2 frames are handed over one by one, unlike TPACKET_V3 blocks, which hold frames until a block fills
/// or its retire timer (at least 1 ms) fires. docs/performance.md has the numbers that chose it.
/// </remarks>
public sealed unsafe class AfPacketPort : IPacketPort
{
    private const int MaxBatch = 256;
    private const int VlanRoom = 4;
    /// <summary>Ring memory per port (frames of 2 KB for MTUs up to 1,900: 2,048 frames).</summary>
    private const int RingBytes = 4 << 20;
    private const int MinRingFrames = 256;

    private readonly FdHandle _fd;
    private readonly Native.MMsgHdr* _txMsgs;
    private readonly Native.IoVec* _txIov;
    private readonly byte* _ring;
    private readonly nuint _ringLength;
    private readonly int _frameSize;
    private readonly int _frameCount;
    private int _head;
    /// <summary>Frames read since the ring was last seen empty. The kernel drops only when every frame is ours, so
    /// reading a whole ring's worth without a gap is when to ask it how many it dropped.</summary>
    private int _sinceEmpty;
    private bool _disposed;

    private AfPacketPort(string name, string ifName, int ifIndex, FdHandle fd, byte* ring, nuint ringLength, int frameSize, int frameCount,
        bool offloads)
    {
        Offloads = offloads ? PortOffloads.All : PortOffloads.None;
        Name = name;
        InterfaceName = ifName;
        IfIndex = ifIndex;
        _fd = fd;
        _ring = ring;
        _ringLength = ringLength;
        _frameSize = frameSize;
        _frameCount = frameCount;
        _txMsgs = (Native.MMsgHdr*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.MMsgHdr)));
        _txIov = (Native.IoVec*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.IoVec)));
        for (int i = 0; i < MaxBatch; i++)
        {
            _txMsgs[i].Hdr.Iov = &_txIov[i];
            _txMsgs[i].Hdr.IovLength = 1;
        }
    }

    public string Name { get; }
    public string Kind => "af-packet";
    public string InterfaceName { get; }
    public int IfIndex { get; }
    public ushort Id { get; set; }
    public int PollHandle => _fd.Fd;
    public CounterSet Counters { get; } = CounterSet.FromEnum<PortCounter>();
    /// <summary>With offloads: TCP super-frames and partial checksums in both directions (needs large slab slots,
    /// <see cref="PacketSlab.LargeCapacity"/>).</summary>
    public PortOffloads Offloads { get; }
    /// <summary>Size of each receive ring frame (header, address and frame data).</summary>
    public int RingFrameSize => _frameSize;
    /// <summary>Frames in the receive ring.</summary>
    public int RingFrameCount => _frameCount;

    /// <summary>Frames waiting in the ring beyond what the last <see cref="Receive"/> took.</summary>
    public bool HasPending => (Volatile.Read(ref Frame(_head)->Status) & Native.TP_STATUS_USER) != 0;

    private Native.TPacket2Hdr* Frame(int i) => (Native.TPacket2Hdr*)(_ring + (nint)i * _frameSize);

    /// <summary>Opens the port on the existing interface <paramref name="ifName"/>; with <paramref name="offloads"/> frames
    /// carry a virtio-net header both ways (<c>PACKET_VNET_HDR</c>).</summary>
    public static AfPacketPort Open(string name, string ifName, bool offloads = false)
    {
        int ifIndex = (int)Native.IfNameToIndex(ifName);
        if (ifIndex == 0) throw new PortException($"interface '{ifName}' does not exist");
        // Ring frames hold the header, the address, the alignment the kernel puts before the MAC header (80 bytes for
        // TPACKET_V2) and the largest frame at the interface's MTU; longer frames arrive truncated and are dropped.
        int mtu = ReadMtu(ifName);
        int frameSize = (int)Math.Max(2048u, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)(mtu + 14 + 128)));
        int blockSize = Math.Max(frameSize, 64 << 10);
        int frameCount = Math.Max(MinRingFrames, RingBytes / frameSize);
        int blockCount = (frameCount * frameSize + blockSize - 1) / blockSize;
        frameCount = blockCount * (blockSize / frameSize);
        // Protocol 0 at creation: the socket receives nothing until bound to the one interface (no stray frames).
        int fd = Native.Socket(Native.AF_PACKET, Native.SOCK_RAW | Native.SOCK_NONBLOCK | Native.SOCK_CLOEXEC, 0);
        if (fd < 0) throw PortException.FromErrno($"cannot open an AF_PACKET socket for '{ifName}'", Marshal.GetLastPInvokeError());
        var handle = new FdHandle(fd);
        byte* ring = null;
        nuint ringLength = (nuint)((long)blockCount * blockSize);
        try
        {
            int one = 1;
            int version = Native.TPACKET_V2;
            if (Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_VERSION, &version, sizeof(int)) < 0)
                throw PortException.FromErrno($"TPACKET_V2 on '{ifName}'", Marshal.GetLastPInvokeError());
            if (offloads)
            {
                // Before the ring exists (the kernel refuses it after). Frames longer than a ring frame are queued whole on
                // the socket and flagged in the ring; the receive buffer holds a few 64 KB super-frames.
                if (Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_VNET_HDR, &one, sizeof(int)) < 0
                    || Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_COPY_THRESH, &one, sizeof(int)) < 0)
                    throw PortException.FromErrno($"cannot turn on offloads (PACKET_VNET_HDR) on '{ifName}'", Marshal.GetLastPInvokeError());
                Native.SetBufferSize(fd, send: false, 4 << 20);
            }
            var req = new Native.TPacketReq
            {
                BlockSize = (uint)blockSize,
                BlockCount = (uint)blockCount,
                FrameSize = (uint)frameSize,
                FrameCount = (uint)frameCount,
            };
            if (Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_RX_RING, &req, sizeof(Native.TPacketReq)) < 0)
                throw PortException.FromErrno($"cannot set up a {ringLength >> 10} KB receive ring on '{ifName}'", Marshal.GetLastPInvokeError());
            ring = (byte*)Native.Mmap(null, ringLength, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, fd, 0);
            if (ring == (byte*)-1)
            {
                ring = null;
                throw PortException.FromErrno($"cannot map the receive ring of '{ifName}'", Marshal.GetLastPInvokeError());
            }
            // Not fatal on old kernels: outgoing frames are then skipped by their packet type.
            _ = Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_IGNORE_OUTGOING, &one, sizeof(int));
            Native.SetBufferSize(fd, send: true, 4 << 20);
            Native.SockAddrLl addr = default;
            addr.Family = Native.AF_PACKET;
            addr.Protocol = Native.HostToNetwork(Native.ETH_P_ALL);
            addr.IfIndex = ifIndex;
            if (Native.Bind(fd, &addr, sizeof(Native.SockAddrLl)) < 0)
                throw PortException.FromErrno($"cannot bind AF_PACKET socket to '{ifName}'", Marshal.GetLastPInvokeError());
            Native.PacketMreq mreq = default;
            mreq.IfIndex = ifIndex;
            mreq.Type = Native.PACKET_MR_PROMISC;
            if (Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_ADD_MEMBERSHIP, &mreq, sizeof(Native.PacketMreq)) < 0)
                throw PortException.FromErrno($"cannot set '{ifName}' promiscuous", Marshal.GetLastPInvokeError());
        }
        catch
        {
            if (ring != null) Native.Munmap(ring, ringLength);
            handle.Dispose();
            throw;
        }
        return new AfPacketPort(name, ifName, ifIndex, handle, ring, ringLength, frameSize, frameCount, offloads);
    }

    private static int ReadMtu(string ifName)
    {
        try
        {
            return int.TryParse(File.ReadAllText($"/sys/class/net/{ifName}/mtu").Trim(), out int mtu) && mtu is > 0 and <= 65535 ? mtu : 1500;
        }
        catch (IOException)
        {
            return 1500;
        }
        catch (UnauthorizedAccessException)
        {
            return 1500;
        }
    }

    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int accepted = 0, dropped = 0;
        long bytes = 0;
        bool losing = false;
        PacketMeta[] meta = slab.Meta;
        int offset = slab.Headroom + VlanRoom;
        int room = slab.SlotSize - offset;
        bool offloads = Offloads != PortOffloads.None;
        int hs = offloads ? Offload.VirtioHeaderSize : 0;
        for (int n = 0; n < max; n++)
        {
            Native.TPacket2Hdr* h = Frame(_head);
            // Acquire: the frame's bytes are the kernel's until it publishes the status.
            uint status = Volatile.Read(ref h->Status);
            if ((status & Native.TP_STATUS_USER) == 0)
            {
                _sinceEmpty = 0;
                break;
            }
            losing |= (status & Native.TP_STATUS_LOSING) != 0;
            if (++_sinceEmpty >= _frameCount)
            {
                losing = true;
                _sinceEmpty = 0;
            }
            var ll = (Native.SockAddrLl*)((byte*)h + sizeof(Native.TPacket2Hdr));
            uint len = h->Length;
            if (ll->PktType == Native.PACKET_OUTGOING)
            {
                // Our own transmissions, on kernels without PACKET_IGNORE_OUTGOING: not a loss.
            }
            else if (offloads && (status & Native.TP_STATUS_COPY) != 0)
            {
                // Too long for the ring (a super-frame): the whole packet waits on the socket, in ring order.
                if (ReceiveCopy(slab, batch, h, status, offset, ref bytes)) accepted++;
                else dropped++;
            }
            else if (h->SnapLength < len || len < 14 || len > room || !slab.TryAlloc(out int slot))
            {
                dropped++;
            }
            else if (hs != 0 && !Offload.Import((byte*)h + h->Mac - hs, (byte*)h + h->Mac, (int)len, ref meta[slot]))
            {
                // The header describes the frame as it is in the ring (untagged); one that does not fit it is dropped.
                slab.Free(slot);
                dropped++;
            }
            else
            {
                ref PacketMeta m = ref meta[slot];
                m.Offset = offset;
                m.Length = (int)len;
                m.InPort = Id;
                Buffer.MemoryCopy((byte*)h + h->Mac, slab.SlotPointer(slot) + offset, room, len);
                RestoreVlanTag(slab, slot, ref m, h, status);
                batch.Add(slot);
                accepted++;
                bytes += m.Length;
            }
            // Release: hand the frame back only after its bytes were copied.
            Volatile.Write(ref h->Status, Native.TP_STATUS_KERNEL);
            if (++_head == _frameCount) _head = 0;
        }
        if (losing) dropped += (int)TakeKernelDrops();
        if (dropped > 0) Counters.Add((int)PortCounter.RxDropped, dropped);
        Counters.Add((int)PortCounter.RxPackets, accepted);
        Counters.Add((int)PortCounter.RxBytes, bytes);
        return accepted;
    }

    /// <summary>Reads the packet behind a <c>TP_STATUS_COPY</c> ring frame from the socket into a large slot:
    /// [virtio-net header][frame]. False (a drop, to count) when there is no slot, or the packet is not there or malformed.</summary>
    private bool ReceiveCopy(PacketSlab slab, PacketBatch batch, Native.TPacket2Hdr* h, uint status, int offset, ref long bytes)
    {
        int hs = Offload.VirtioHeaderSize;
        if (!slab.TryAllocLarge(out int slot))
        {
            // Still take it off the socket, so later copies stay matched to their ring frames.
            byte discard;
            _ = Native.Read(_fd.Fd, &discard, 1);
            return false;
        }
        byte* p = slab.SlotPointer(slot) + offset - hs;
        int room = slab.LargeSlotSize - offset;
        nint n;
        do n = Native.Read(_fd.Fd, p, room + hs);
        while (n < 0 && Marshal.GetLastPInvokeError() == Native.EINTR);
        ref PacketMeta m = ref slab.Meta[slot];
        m.Offset = offset;
        m.Length = (int)n - hs;
        m.InPort = Id;
        // A read that fills the slot may have been cut short: dropped, like any frame longer than a slot.
        if (n < hs + 14 || n >= room + hs || !Offload.Import(p, p + hs, m.Length, ref m))
        {
            slab.Free(slot);
            return false;
        }
        RestoreVlanTag(slab, slot, ref m, h, status);
        batch.Add(slot);
        bytes += m.Length;
        if (m.Gso != GsoType.None) Counters.Add((int)PortCounter.RxSuperFrames);
        return true;
    }

    /// <summary>Frames the kernel dropped because the ring was full, since the last call (reading resets the count).</summary>
    private uint TakeKernelDrops()
    {
        Native.TPacketStats st = default;
        int len = sizeof(Native.TPacketStats);
        return Native.GetSockOpt(_fd.Fd, Native.SOL_PACKET, Native.PACKET_STATISTICS, &st, &len) == 0 ? st.Drops : 0;
    }

    /// <summary>Re-inserts the 802.1Q tag the kernel stripped into ring frame <paramref name="h"/>'s header, if it did, using
    /// the 4 bytes reserved before the frame.</summary>
    private static void RestoreVlanTag(PacketSlab slab, int slot, ref PacketMeta m, Native.TPacket2Hdr* h, uint status)
    {
        if ((status & Native.TP_STATUS_VLAN_VALID) == 0 && h->VlanTci == 0) return;
        ushort tpid = (status & Native.TP_STATUS_VLAN_TPID_VALID) != 0 ? h->VlanTpid : (ushort)0x8100;
        ushort tci = h->VlanTci;
        byte* frame = slab.SlotPointer(slot) + m.Offset;
        byte* moved = frame - VlanRoom;
        Buffer.MemoryCopy(frame, moved, 12, 12);
        var tag = new Span<byte>(moved + 12, 4);
        BinaryPrimitives.WriteUInt16BigEndian(tag, tpid);
        BinaryPrimitives.WriteUInt16BigEndian(tag[2..], tci);
        m.Offset -= VlanRoom;
        m.Length += VlanRoom;
    }

    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        int total = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        int hs = Offloads == PortOffloads.None ? 0 : Offload.VirtioHeaderSize;
        int superFrames = 0;
        while (slots.Length > 0)
        {
            int n = Math.Min(slots.Length, MaxBatch);
            int k = 0;
            for (int i = 0; i < n; i++)
            {
                ref PacketMeta m = ref meta[slots[i]];
                byte* f = slab.SlotPointer(slots[i]) + m.Offset;
                if (hs != 0)
                {
                    if (!Offload.TryExportBefore(m, f))
                    {
                        Counters.Add((int)PortCounter.TxErrors);
                        continue;
                    }
                    if (m.Gso != GsoType.None) superFrames++;
                }
                _txIov[k].Base = f - hs;
                _txIov[k].Length = (nuint)(m.Length + hs);
                k++;
            }
            long sentBytes = 0;
            int sent = Native.SendBatch(_fd.Fd, _txMsgs, _txIov, k, Counters, ref sentBytes);
            total += sent;
            bytes += sentBytes - (long)sent * hs;
            slots = slots[n..];
        }
        Counters.Add((int)PortCounter.TxPackets, total);
        Counters.Add((int)PortCounter.TxBytes, bytes);
        if (superFrames > 0) Counters.Add((int)PortCounter.TxSuperFrames, superFrames);
        return total;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _fd.Dispose();
        Native.Munmap(_ring, _ringLength);
        NativeMemory.Free(_txMsgs);
        NativeMemory.Free(_txIov);
    }
}

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// A raw AF_PACKET socket on an existing interface (such as the host end of a pod's veth), batched with
/// <c>recvmmsg</c>/<c>sendmmsg</c> straight into and out of slab slots. The kernel strips 802.1Q tags into the
/// auxiliary data (the "VLAN in auxdata" trap); they are put back into the frame so the pipeline sees the wire bytes.
/// </summary>
public sealed unsafe class AfPacketPort : IPacketPort
{
    private const int MaxBatch = 256;
    private const int ControlSize = 64;
    private readonly MmsgReceiver _rx = new(sizeof(Native.SockAddrLl), ControlSize);
    private const int VlanRoom = 4;

    private readonly FdHandle _fd;
    private readonly Native.MMsgHdr* _txMsgs;
    private readonly Native.IoVec* _txIov;
    private bool _disposed;

    private AfPacketPort(string name, string ifName, int ifIndex, FdHandle fd)
    {
        Name = name;
        InterfaceName = ifName;
        IfIndex = ifIndex;
        _fd = fd;
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

    public static AfPacketPort Open(string name, string ifName)
    {
        int ifIndex = (int)Native.IfNameToIndex(ifName);
        if (ifIndex == 0) throw new PortException($"interface '{ifName}' does not exist");
        // Protocol 0 at creation: the socket receives nothing until bound to the one interface (no stray frames).
        int fd = Native.Socket(Native.AF_PACKET, Native.SOCK_RAW | Native.SOCK_NONBLOCK | Native.SOCK_CLOEXEC, 0);
        if (fd < 0) throw PortException.FromErrno($"cannot open an AF_PACKET socket for '{ifName}'", Marshal.GetLastPInvokeError());
        var handle = new FdHandle(fd);
        try
        {
            int one = 1;
            if (Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_AUXDATA, &one, sizeof(int)) < 0)
                throw PortException.FromErrno($"PACKET_AUXDATA on '{ifName}'", Marshal.GetLastPInvokeError());
            // Not fatal on old kernels: outgoing frames are then skipped by their packet type.
            _ = Native.SetSockOpt(fd, Native.SOL_PACKET, Native.PACKET_IGNORE_OUTGOING, &one, sizeof(int));
            Native.SetBufferSize(fd, send: false, 4 << 20);
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
            handle.Dispose();
            throw;
        }
        return new AfPacketPort(name, ifName, ifIndex, handle);
    }

    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int got = _rx.Receive(_fd.Fd, slab, max, slab.Headroom + VlanRoom, Counters);
        int accepted = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        for (int i = 0; i < got; i++)
        {
            int slot = _rx.Slot(i);
            ref Native.MsgHdr h = ref _rx.Header(i);
            uint len = _rx.Length(i);
            byte pktType = _rx.Address<Native.SockAddrLl>(i).PktType;
            if ((h.Flags & Native.MSG_TRUNC) != 0 || pktType == Native.PACKET_OUTGOING || len < 14)
            {
                if (pktType != Native.PACKET_OUTGOING) Counters.Add((int)PortCounter.RxDropped);
                slab.Free(slot);
                continue;
            }
            ref PacketMeta m = ref meta[slot];
            m.Offset = slab.Headroom + VlanRoom;
            m.Length = (int)len;
            m.InPort = Id;
            RestoreVlanTag(slab, slot, ref m, ref h);
            batch.Add(slot);
            accepted++;
            bytes += m.Length;
        }
        Counters.Add((int)PortCounter.RxPackets, accepted);
        Counters.Add((int)PortCounter.RxBytes, bytes);
        return accepted;
    }

    /// <summary>Re-inserts an 802.1Q tag the kernel moved into PACKET_AUXDATA, using the 4 bytes reserved before the frame.</summary>
    private static void RestoreVlanTag(PacketSlab slab, int slot, ref PacketMeta m, ref Native.MsgHdr h)
    {
        var aux = (Native.TPacketAuxData*)Native.FindControl(ref h, Native.SOL_PACKET, Native.PACKET_AUXDATA, sizeof(Native.TPacketAuxData));
        if (aux == null) return;
        bool valid = (aux->Status & Native.TP_STATUS_VLAN_VALID) != 0 || aux->VlanTci != 0;
        if (!valid) return;
        ushort tpid = (aux->Status & Native.TP_STATUS_VLAN_TPID_VALID) != 0 ? aux->VlanTpid : (ushort)0x8100;
        byte* frame = slab.SlotPointer(slot) + m.Offset;
        byte* moved = frame - VlanRoom;
        Buffer.MemoryCopy(frame, moved, 12, 12);
        var tag = new Span<byte>(moved + 12, 4);
        BinaryPrimitives.WriteUInt16BigEndian(tag, tpid);
        BinaryPrimitives.WriteUInt16BigEndian(tag[2..], aux->VlanTci);
        m.Offset -= VlanRoom;
        m.Length += VlanRoom;
    }

    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        int total = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        while (slots.Length > 0)
        {
            int n = Math.Min(slots.Length, MaxBatch);
            for (int i = 0; i < n; i++)
            {
                ref PacketMeta m = ref meta[slots[i]];
                _txIov[i].Base = slab.SlotPointer(slots[i]) + m.Offset;
                _txIov[i].Length = (nuint)m.Length;
            }
            total += Native.SendBatch(_fd.Fd, _txMsgs, _txIov, n, Counters, ref bytes);
            slots = slots[n..];
        }
        Counters.Add((int)PortCounter.TxPackets, total);
        Counters.Add((int)PortCounter.TxBytes, bytes);
        return total;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _fd.Dispose();
        _rx.Dispose();
        NativeMemory.Free(_txMsgs);
        NativeMemory.Free(_txIov);
    }
}

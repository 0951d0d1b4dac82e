using System.Runtime.InteropServices;
using System.Text;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// A TAP device: frames the kernel sends out of the interface are read here, frames written here arrive on the interface.
/// The kernel's TAP file has no multi-frame read, so a batch is a loop of non-blocking reads straight into slab slots
/// until the queue is empty or the batch is full. With offloads (IFF_VNET_HDR, TUNSETOFFLOAD csum+TSO4+TSO6) each read
/// and write carries a virtio-net header and up to a 64 KB TCP super-frame into a large slot, so one system call moves
/// what would otherwise be up to 45 frames (see <see cref="Offload"/> and docs/architecture.md).
/// Closing the descriptor removes a TAP this port created, wherever it was moved.
/// </summary>
public sealed unsafe class TapPort : IPacketPort
{
    private readonly FdHandle _fd;

    private TapPort(string name, string ifName, FdHandle fd, bool created, bool offloads)
    {
        Name = name;
        InterfaceName = ifName;
        _fd = fd;
        Created = created;
        Offloads = offloads ? PortOffloads.All : PortOffloads.None;
    }

    public string Name { get; }
    public string Kind => "tap";
    public string InterfaceName { get; }
    public ushort Id { get; set; }
    public int PollHandle => _fd.Fd;
    public CounterSet Counters { get; } = CounterSet.FromEnum<PortCounter>();
    /// <summary>True when this port created the device (it disappears when the port closes); false when it attached to a persistent TAP.</summary>
    public bool Created { get; }
    public PortOffloads Offloads { get; }

    /// <summary>Creates the TAP device <paramref name="ifName"/>, or attaches to an existing persistent TAP of that name.
    /// With <paramref name="offloads"/> the kernel may hand over TCP super-frames and partial checksums (the switch needs
    /// large slots, <see cref="PacketSlab.LargeCapacity"/>).</summary>
    /// <param name="multiQueue">Open one queue of a multi-queue TAP (IFF_MULTI_QUEUE): calling again with the same name
    /// attaches another queue, with a descriptor of its own; the kernel spreads the interface's transmit over the queues
    /// by flow. Every queue of a device must be opened so.</param>
    public static TapPort Open(string name, string ifName, bool offloads = false, bool multiQueue = false)
    {
        if (ifName.Length is 0 or > 15 || ifName.Contains('/') || ifName.Any(char.IsWhiteSpace))
            throw new PortException($"'{ifName}' is not a valid interface name (1-15 characters, no '/' or spaces)");
        bool existed = Native.IfNameToIndex(ifName) != 0;
        int fd = Native.Open("/dev/net/tun", Native.O_RDWR | Native.O_NONBLOCK | Native.O_CLOEXEC);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw e == Native.ENOENT
                ? new PortException("cannot open /dev/net/tun: the tun module is not loaded (modprobe tun)", e)
                : PortException.FromErrno("cannot open /dev/net/tun", e);
        }
        var handle = new FdHandle(fd);
        Native.IfReq req = default;
        byte[] nameBytes = Encoding.ASCII.GetBytes(ifName);
        for (int i = 0; i < nameBytes.Length; i++) req.Name[i] = nameBytes[i];
        req.Flags = (short)(Native.IFF_TAP | Native.IFF_NO_PI | (offloads ? Native.IFF_VNET_HDR : 0) | (multiQueue ? Native.IFF_MULTI_QUEUE : 0));
        if (Native.Ioctl(fd, Native.TUNSETIFF, &req) < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw e switch
            {
                Native.EBUSY => new PortException($"TAP '{ifName}' is already attached by another process", e),
                Native.EINVAL when existed => new PortException($"interface '{ifName}' exists and is not a TAP device this switch can attach to (or its flags differ)", e),
                _ => PortException.FromErrno($"cannot create TAP '{ifName}'", e),
            };
        }
        if (offloads)
        {
            int size = Offload.VirtioHeaderSize;
            if (Native.Ioctl(fd, Native.TUNSETVNETHDRSZ, &size) < 0
                || Native.Ioctl(fd, Native.TUNSETOFFLOAD, (void*)(nuint)(Native.TUN_F_CSUM | Native.TUN_F_TSO4 | Native.TUN_F_TSO6)) < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                handle.Dispose();
                throw PortException.FromErrno($"cannot turn on offloads on TAP '{ifName}'", e);
            }
        }
        return new TapPort(name, ifName, handle, !existed, offloads);
    }

    /// <summary>Keeps the device when the switch's descriptors close (a pod's interface that outlives a restart of the
    /// switch), or lets it go with them again (true / false).</summary>
    public void SetPersistent(bool persist)
    {
        if (Native.Ioctl(_fd.Fd, Native.TUNSETPERSIST, (void*)(nuint)(persist ? 1u : 0u)) < 0)
            throw PortException.FromErrno($"cannot make TAP '{InterfaceName}' {(persist ? "persistent" : "transient")}", Marshal.GetLastPInvokeError());
        Persistent = persist;
    }

    /// <summary>True while the device outlives the switch's descriptors.</summary>
    public bool Persistent { get; private set; }

    /// <summary>Non-blocking reads straight into slots until EAGAIN or <paramref name="max"/>. With offloads each read lands
    /// as [virtio-net header][frame] in a large slot, the frame at the slot's headroom and the header just before it.</summary>
    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int received = 0;
        int fd = _fd.Fd;
        bool offloads = Offloads != PortOffloads.None;
        int hs = offloads ? Offload.VirtioHeaderSize : 0;
        int room = (offloads ? slab.LargeSlotSize : slab.SlotSize) - slab.Headroom + hs;
        PacketMeta[] meta = slab.Meta;
        while (received < max)
        {
            if (!(offloads ? slab.TryAllocLarge(out int slot) : slab.TryAlloc(out slot)))
            {
                Counters.Add((int)PortCounter.RxDropped);
                break;
            }
            byte* h = slab.SlotPointer(slot) + slab.Headroom - hs;
            nint n = Native.Read(fd, h, room);
            if (n <= hs)
            {
                slab.Free(slot);
                if (n < 0 && ReadFailed()) continue;
                if (n <= 0) break;
                Counters.Add((int)PortCounter.RxDropped); // a header without a frame
                continue;
            }
            ref PacketMeta m = ref meta[slot];
            m.Length = (int)n - hs;
            m.InPort = Id;
            if (offloads && !Offload.Import(h, h + hs, m.Length, ref m))
            {
                slab.Free(slot);
                Counters.Add((int)PortCounter.RxDropped);
                continue;
            }
            batch.Add(slot);
            received++;
            Counters.Add((int)PortCounter.RxBytes, m.Length);
            if (m.Gso != GsoType.None) Counters.Add((int)PortCounter.RxSuperFrames);
        }
        Counters.Add((int)PortCounter.RxPackets, received);
        return received;
    }

    /// <summary>Classifies a failed read: true to read again (EINTR), false to end the batch (EAGAIN, or an error, counted).</summary>
    private bool ReadFailed()
    {
        int e = Marshal.GetLastPInvokeError();
        if (e == Native.EINTR) return true;
        if (e != Native.EAGAIN) Counters.Add((int)PortCounter.RxErrors);
        return false;
    }

    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        int fd = _fd.Fd;
        int sent = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        int hs = Offloads == PortOffloads.None ? 0 : Offload.VirtioHeaderSize;
        foreach (int slot in slots)
        {
            ref PacketMeta m = ref meta[slot];
            byte* f = slab.SlotPointer(slot) + m.Offset;
            // A flood writes the same header bytes for every port.
            if (hs != 0 && !Offload.TryExportBefore(m, f))
            {
                Counters.Add((int)PortCounter.TxErrors);
                continue;
            }
            nint n = Native.Write(fd, f - hs, m.Length + hs);
            if (n < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                // EIO: the interface is down (e.g. its namespace went away); count, never throw.
                Counters.Add(e is Native.EAGAIN or Native.ENOBUFS or Native.EIO ? (int)PortCounter.TxDropped : (int)PortCounter.TxErrors);
                continue;
            }
            sent++;
            bytes += n - hs;
            if (m.Gso != GsoType.None) Counters.Add((int)PortCounter.TxSuperFrames);
        }
        Counters.Add((int)PortCounter.TxPackets, sent);
        Counters.Add((int)PortCounter.TxBytes, bytes);
        return sent;
    }

    public void Dispose() => _fd.Dispose();
}

using System.Runtime.InteropServices;
using System.Text;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// A TAP device: frames the kernel sends out of the interface are read here, frames written here arrive on the interface.
/// The kernel's TAP file has no multi-frame read, so a batch is a loop of non-blocking reads straight into slab slots
/// until the queue is empty or the batch is full (TSO super-frames via IFF_VNET_HDR make each read carry up to 64 KB;
/// see docs/architecture.md). Closing the descriptor removes a TAP this port created, wherever it was moved.
/// </summary>
public sealed unsafe class TapPort : IPacketPort
{
    private readonly FdHandle _fd;

    private TapPort(string name, string ifName, FdHandle fd, bool created)
    {
        Name = name;
        InterfaceName = ifName;
        _fd = fd;
        Created = created;
    }

    public string Name { get; }
    public string Kind => "tap";
    public string InterfaceName { get; }
    public ushort Id { get; set; }
    public int PollHandle => _fd.Fd;
    public CounterSet Counters { get; } = CounterSet.FromEnum<PortCounter>();
    /// <summary>True when this port created the device (it disappears when the port closes); false when it attached to a persistent TAP.</summary>
    public bool Created { get; }

    /// <summary>Creates the TAP device <paramref name="ifName"/>, or attaches to an existing persistent TAP of that name.</summary>
    public static TapPort Open(string name, string ifName)
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
        req.Flags = Native.IFF_TAP | Native.IFF_NO_PI;
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
        return new TapPort(name, ifName, handle, !existed);
    }

    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int received = 0;
        int fd = _fd.Fd;
        int room = slab.SlotSize - slab.Headroom;
        PacketMeta[] meta = slab.Meta;
        while (received < max)
        {
            if (!slab.TryAlloc(out int slot))
            {
                Counters.Add((int)PortCounter.RxDropped);
                break;
            }
            nint n = Native.Read(fd, slab.SlotPointer(slot) + slab.Headroom, room);
            if (n <= 0)
            {
                slab.Free(slot);
                if (n < 0)
                {
                    int e = Marshal.GetLastPInvokeError();
                    if (e == Native.EAGAIN) break;
                    if (e == Native.EINTR) continue;
                    Counters.Add((int)PortCounter.RxErrors);
                }
                break;
            }
            ref PacketMeta m = ref meta[slot];
            m.Length = (int)n;
            m.InPort = Id;
            batch.Add(slot);
            received++;
            Counters.Add((int)PortCounter.RxBytes, n);
        }
        Counters.Add((int)PortCounter.RxPackets, received);
        return received;
    }

    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        int fd = _fd.Fd;
        int sent = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        foreach (int slot in slots)
        {
            ref PacketMeta m = ref meta[slot];
            nint n = Native.Write(fd, slab.SlotPointer(slot) + m.Offset, m.Length);
            if (n < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                // EIO: the interface is down (e.g. its namespace went away); count, never throw.
                Counters.Add(e is Native.EAGAIN or Native.ENOBUFS or Native.EIO ? (int)PortCounter.TxDropped : (int)PortCounter.TxErrors);
                continue;
            }
            sent++;
            bytes += n;
        }
        Counters.Add((int)PortCounter.TxPackets, sent);
        Counters.Add((int)PortCounter.TxBytes, bytes);
        return sent;
    }

    public void Dispose() => _fd.Dispose();
}

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// The overlay's underlay I/O, the way a userspace sleeve does it on the node's own address:
/// <list type="bullet">
/// <item>receive: a UDP socket bound to the node address and the VXLAN port; <c>recvmmsg</c> puts each datagram's
/// payload (VXLAN header + inner frame) straight into a slab slot and the outer source address into
/// <see cref="PacketMeta.PeerAddr"/>. The kernel has already checked the outer IPv4/UDP headers and checksums.</item>
/// <item>send: a raw IPv4 socket (<c>IPPROTO_RAW</c>, header included); <c>sendmmsg</c> sends each frame from its
/// outer IPv4 header (written into the headroom by the encapsulation stage) to <see cref="PacketMeta.PeerAddr"/>.
/// The kernel routes it and resolves the underlay next hop; the switch chooses every outer header field, including the
/// per-flow UDP source port a bound UDP socket could not vary.</item>
/// </list>
/// </summary>
public sealed unsafe class UdpTunnelPort : IPacketPort
{
    private readonly FdHandle _rxFd;
    private readonly MmsgReceiver _rx = new(sizeof(Native.SockAddrIn), 0);
    private readonly RawIpv4Sender _tx;
    private bool _disposed;

    private UdpTunnelPort(string name, uint localAddress, ushort port, FdHandle rx, RawIpv4Sender tx)
    {
        Name = name;
        LocalAddress = localAddress;
        UdpPort = port;
        _rxFd = rx;
        _tx = tx;
    }

    public string Name { get; }
    public string Kind => "vxlan";
    public string InterfaceName => "";
    /// <summary>Node underlay address (host order).</summary>
    public uint LocalAddress { get; }
    public ushort UdpPort { get; }
    public ushort Id { get; set; }
    public int PollHandle => _rxFd.Fd;
    public CounterSet Counters { get; } = CounterSet.FromEnum<PortCounter>();

    /// <param name="localAddress">The node's underlay address, host order; must be assigned to an interface here.</param>
    public static UdpTunnelPort Open(string name, uint localAddress, ushort port)
    {
        string where = $"{FormatAddress(localAddress)}:{port}";
        int rx = Native.Socket(Native.AF_INET, Native.SOCK_DGRAM | Native.SOCK_NONBLOCK | Native.SOCK_CLOEXEC, 0);
        if (rx < 0) throw PortException.FromErrno("cannot open the overlay UDP socket", Marshal.GetLastPInvokeError());
        var rxHandle = new FdHandle(rx);
        RawIpv4Sender? tx = null;
        try
        {
            int buf = 8 << 20;
            if (Native.SetSockOpt(rx, Native.SOL_SOCKET, Native.SO_RCVBUFFORCE, &buf, sizeof(int)) < 0)
                _ = Native.SetSockOpt(rx, Native.SOL_SOCKET, Native.SO_RCVBUF, &buf, sizeof(int));
            Native.SockAddrIn a = default;
            a.Family = Native.AF_INET;
            a.Port = Native.HostToNetwork(port);
            a.Address = BinaryPrimitives.ReverseEndianness(localAddress);
            if (Native.Bind(rx, &a, sizeof(Native.SockAddrIn)) < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                string hint = e switch
                {
                    Native.EADDRNOTAVAIL => $" ({FormatAddress(localAddress)} is not an address of this node: check overlay.localAddress)",
                    Native.EADDRINUSE => $" (UDP port {port} is taken, e.g. by a kernel vxlan device or another switch: check overlay.port)",
                    _ => "",
                };
                throw new PortException($"cannot bind the overlay UDP socket to {where}: {Native.ErrorText(e)}{hint}", e);
            }
            tx = RawIpv4Sender.Open("the overlay", buf);
        }
        catch
        {
            rxHandle.Dispose();
            tx?.Dispose();
            throw;
        }
        return new UdpTunnelPort(name, localAddress, port, rxHandle, tx);
    }

    private static string FormatAddress(uint a) => $"{a >> 24}.{(a >> 16) & 0xFF}.{(a >> 8) & 0xFF}.{a & 0xFF}";

    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int got = _rx.Receive(_rxFd.Fd, slab, max, slab.Headroom, Counters);
        int accepted = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        for (int i = 0; i < got; i++)
        {
            int slot = _rx.Slot(i);
            if ((_rx.Header(i).Flags & Native.MSG_TRUNC) != 0)
            {
                Counters.Add((int)PortCounter.RxDropped);
                slab.Free(slot);
                continue;
            }
            ref PacketMeta m = ref meta[slot];
            m.Offset = slab.Headroom;
            m.Length = (int)_rx.Length(i);
            m.InPort = Id;
            m.PeerAddr = BinaryPrimitives.ReverseEndianness(_rx.Address<Native.SockAddrIn>(i).Address);
            batch.Add(slot);
            accepted++;
            bytes += m.Length;
        }
        Counters.Add((int)PortCounter.RxPackets, accepted);
        Counters.Add((int)PortCounter.RxBytes, bytes);
        return accepted;
    }

    /// <summary>Sends each frame (outer IPv4 header first) to its <see cref="PacketMeta.PeerAddr"/>.</summary>
    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        int total = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        foreach (int slot in slots)
        {
            ref PacketMeta m = ref meta[slot];
            if (_tx.IsFull) total += _tx.Flush(Counters, ref bytes);
            _tx.Add(slab.SlotPointer(slot) + m.Offset, m.Length, BinaryPrimitives.ReverseEndianness(m.PeerAddr));
        }
        total += _tx.Flush(Counters, ref bytes);
        Counters.Add((int)PortCounter.TxPackets, total);
        Counters.Add((int)PortCounter.TxBytes, bytes);
        return total;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _rxFd.Dispose();
        _rx.Dispose();
        _tx.Dispose();
    }
}

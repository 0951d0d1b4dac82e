using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// The overlay's underlay I/O, the way a userspace sleeve does it on the node's own address:
/// <list type="bullet">
/// <item>receive: a UDP socket bound to the node address and the VXLAN port, with UDP GRO on; <c>recvmmsg</c> puts each
/// datagram's payload (VXLAN header + inner frame) straight into a slab slot and the outer source address into
/// <see cref="PacketMeta.PeerAddr"/>. The kernel has already checked the outer IPv4/UDP headers and checksums. A
/// GRO train (several datagrams of one flow read at once, up to 64 KB) spills into an overflow area; when its frames
/// are consecutive segments of one TCP flow and some port takes super-frames (large slots exist) it becomes one
/// super-frame (<see cref="Offload.CoalesceTcp4"/>), otherwise it is split back into datagrams.</item>
/// <item>send: runs of datagrams that the encapsulation stage cut from one super-frame (same peer, same source port, same
/// size but for the last) leave as one UDP GSO send (<c>UDP_SEGMENT</c>) from the socket bound to that source port:
/// one trip through the kernel's stack for up to 64 datagrams. The switch's source ports are those of a pool of
/// <see cref="SourcePortCount"/> UDP sockets (<see cref="SourcePorts"/>), so a flow keeps one port whichever way its
/// datagrams leave. Everything else goes through a raw IPv4 socket (<c>IPPROTO_RAW</c>, header included) with
/// <c>sendmmsg</c>, from its outer IPv4 header written into the headroom by the encapsulation stage. If the kernel refuses
/// GSO (no checksum offload on the underlay device, older kernels) the runs fall back to the raw socket for good.</item>
/// </list>
/// </summary>
public sealed unsafe class UdpTunnelPort : IPacketPort
{
    /// <summary>UDP sockets (source ports) the switch sends GSO trains from; a flow hash picks one.</summary>
    public const int SourcePortCount = 16;
    /// <summary>VXLAN header in front of each inner frame of a datagram.</summary>
    private const int VxlanSize = 8;
    /// <summary>Outer IPv4 (no options) + UDP header the encapsulation stage writes.</summary>
    private const int OuterIpUdp = 28;
    /// <summary>Largest GRO train (a UDP payload of up to 64 KB).</summary>
    private const int MaxTrain = 65_536;
    /// <summary>Most UDP payload one GSO send carries (an IPv4 datagram's limit less the headers).</summary>
    private const int MaxGsoPayload = 65_535 - OuterIpUdp;
    /// <summary>Messages per <c>recvmmsg</c> (each may be a 64 KB train: bounds the overflow areas to 4 MB).</summary>
    private const int MaxReceiveMessages = 64;
    private static readonly int GroControlSize = Native.ControlSpace(sizeof(int));

    private readonly FdHandle _rxFd;
    private readonly MmsgReceiver _rx = new(sizeof(Native.SockAddrIn), GroControlSize, MaxTrain, MaxReceiveMessages);
    private readonly RawIpv4Sender _tx;
    private readonly FdHandle[] _gsoFds;
    private readonly ushort[] _sourcePorts;
    private readonly Native.IoVec* _gsoIov;
    private readonly byte* _gsoControl;
    private bool _gso;
    private bool _disposed;
    // Messages of the last recvmmsg not yet handed to the pipeline (a train split over more than one batch).
    private int _pendingNext;
    private int _pendingCount;
    private int _pendingSegment;
    private byte* _pendingTrain;

    private UdpTunnelPort(string name, uint localAddress, ushort port, FdHandle rx, RawIpv4Sender tx, FdHandle[] gsoFds,
        ushort[] sourcePorts, bool gro)
    {
        Name = name;
        LocalAddress = localAddress;
        UdpPort = port;
        _rxFd = rx;
        _tx = tx;
        _gsoFds = gsoFds;
        _sourcePorts = sourcePorts;
        _gso = gsoFds.Length > 0;
        Gro = gro;
        _gsoIov = (Native.IoVec*)NativeMemory.AllocZeroed((nuint)(Offload.MaxTrainSegments * sizeof(Native.IoVec)));
        _gsoControl = (byte*)NativeMemory.AllocZeroed((nuint)Native.ControlSpace(sizeof(ushort)));
        var c = (Native.CMsgHdr*)_gsoControl;
        c->Length = (nuint)(sizeof(Native.CMsgHdr) + sizeof(ushort));
        c->Level = Native.SOL_UDP;
        c->Type = Native.UDP_SEGMENT;
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
    public bool HasPending => _pendingNext < _pendingCount;
    /// <summary>The UDP source ports the switch sends from (give them to <c>Overlay.UseSourcePorts</c>); empty when
    /// UDP GSO is not available.</summary>
    public IReadOnlyList<ushort> SourcePorts => _sourcePorts;
    /// <summary>Runs of datagrams leave as UDP GSO sends (false when the kernel refused it).</summary>
    public bool Gso => _gso;
    /// <summary>The receive socket takes GRO trains.</summary>
    public bool Gro { get; }

    /// <param name="localAddress">The node's underlay address, host order; must be assigned to an interface here.</param>
    /// <param name="reusePort">One of several ports on the same address and UDP port (SO_REUSEPORT, one per worker): the
    /// kernel spreads received datagrams over them by their addresses and ports.</param>
    public static UdpTunnelPort Open(string name, uint localAddress, ushort port, bool reusePort = false)
    {
        string where = $"{FormatAddress(localAddress)}:{port}";
        int rx = Native.Socket(Native.AF_INET, Native.SOCK_DGRAM | Native.SOCK_NONBLOCK | Native.SOCK_CLOEXEC, 0);
        if (rx < 0) throw PortException.FromErrno("cannot open the overlay UDP socket", Marshal.GetLastPInvokeError());
        var rxHandle = new FdHandle(rx);
        RawIpv4Sender? tx = null;
        var gso = new List<FdHandle>();
        try
        {
            int buf = 8 << 20;
            Native.SetBufferSize(rx, send: false, buf);
            int on = 1;
            bool gro = Native.SetSockOpt(rx, Native.SOL_UDP, Native.UDP_GRO, &on, sizeof(int)) == 0;
            if (reusePort && Native.SetSockOpt(rx, Native.SOL_SOCKET, Native.SO_REUSEPORT, &on, sizeof(int)) < 0)
                throw PortException.FromErrno("cannot share the overlay UDP port between workers (SO_REUSEPORT)", Marshal.GetLastPInvokeError());
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
            ushort[] ports = OpenGsoSockets(localAddress, buf, gso);
            return new UdpTunnelPort(name, localAddress, port, rxHandle, tx, [.. gso], ports, gro);
        }
        catch
        {
            rxHandle.Dispose();
            tx?.Dispose();
            foreach (FdHandle h in gso) h.Dispose();
            throw;
        }
    }

    /// <summary>The GSO send sockets, each bound to the node address and a port of the kernel's choosing: outer header as
    /// the raw path writes it (TTL 64, no DF), UDP checksum on (GSO needs it). None when the kernel lacks UDP GSO.</summary>
    private static ushort[] OpenGsoSockets(uint localAddress, int sendBuffer, List<FdHandle> fds)
    {
        var ports = new ushort[SourcePortCount];
        for (int i = 0; i < SourcePortCount; i++)
        {
            int fd = Native.Socket(Native.AF_INET, Native.SOCK_DGRAM | Native.SOCK_NONBLOCK | Native.SOCK_CLOEXEC, 0);
            if (fd < 0) throw PortException.FromErrno("cannot open an overlay send socket", Marshal.GetLastPInvokeError());
            fds.Add(new FdHandle(fd));
            Native.SetBufferSize(fd, send: true, sendBuffer);
            int small = 4096; // never read: anything sent to these ports is dropped once this is full
            _ = Native.SetSockOpt(fd, Native.SOL_SOCKET, Native.SO_RCVBUF, &small, sizeof(int));
            int ttl = 64, pmtu = Native.IP_PMTUDISC_DONT;
            _ = Native.SetSockOpt(fd, Native.IPPROTO_IP, Native.IP_TTL, &ttl, sizeof(int));
            _ = Native.SetSockOpt(fd, Native.IPPROTO_IP, Native.IP_MTU_DISCOVER, &pmtu, sizeof(int));
            int probe = 1400;
            if (i == 0 && Native.SetSockOpt(fd, Native.SOL_UDP, Native.UDP_SEGMENT, &probe, sizeof(int)) < 0)
            {
                // No UDP GSO in this kernel: every datagram goes through the raw socket.
                foreach (FdHandle h in fds) h.Dispose();
                fds.Clear();
                return [];
            }
            probe = 0; // per send, from a control message
            _ = Native.SetSockOpt(fd, Native.SOL_UDP, Native.UDP_SEGMENT, &probe, sizeof(int));
            Native.SockAddrIn a = default;
            a.Family = Native.AF_INET;
            a.Address = BinaryPrimitives.ReverseEndianness(localAddress);
            int len = sizeof(Native.SockAddrIn);
            if (Native.Bind(fd, &a, len) < 0 || Native.GetSockName(fd, &a, &len) < 0)
                throw PortException.FromErrno("cannot bind an overlay send socket", Marshal.GetLastPInvokeError());
            ports[i] = Native.HostToNetwork(a.Port);
        }
        return ports;
    }

    private static string FormatAddress(uint a) => $"{a >> 24}.{(a >> 16) & 0xFF}.{(a >> 8) & 0xFF}.{a & 0xFF}";

    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        if (_pendingNext >= _pendingCount)
        {
            _pendingCount = _rx.Receive(_rxFd.Fd, slab, Math.Min(max, MaxReceiveMessages), slab.Headroom, Counters);
            _pendingNext = 0;
            _pendingSegment = 0;
            if (_pendingCount == 0) return 0;
        }
        int accepted = 0;
        long bytes = 0;
        int superFrames = 0;
        PacketMeta[] meta = slab.Meta;
        int room = _rx.Room;
        for (; _pendingNext < _pendingCount && accepted < max; _pendingNext++)
        {
            int i = _pendingNext;
            int slot = _rx.Slot(i);
            int length = (int)_rx.Length(i);
            ref Native.MsgHdr h = ref _rx.Header(i);
            int* gro = (int*)Native.FindControl(ref h, Native.SOL_UDP, Native.UDP_GRO, sizeof(int));
            int stride = gro == null ? 0 : *gro;
            uint peer = BinaryPrimitives.ReverseEndianness(_rx.Address<Native.SockAddrIn>(i).Address);
            if ((h.Flags & Native.MSG_TRUNC) != 0 || (length > room && (stride <= 0 || stride > room)))
            {
                // Truncated, or a single datagram (or train member) larger than a slot: a jumbo underlay with small slots.
                Counters.Add((int)PortCounter.RxDropped, stride > 0 ? (length + stride - 1) / stride : 1);
                slab.Free(slot);
                continue;
            }
            if (stride <= 0 || stride >= length)
            {
                Deliver(slab, batch, slot, length, peer, ref accepted, ref bytes);
                continue;
            }
            // A GRO train: runs of one TCP flow's consecutive segments become super-frames (when some port takes them:
            // large slots exist), every other datagram is delivered as it is.
            if (_pendingSegment == 0) _pendingTrain = length > room ? _rx.Linearize(i) : slab.SlotPointer(slot) + slab.Headroom;
            int count = (length + stride - 1) / stride;
            while (_pendingSegment < count && accepted < max)
            {
                int k = _pendingSegment;
                byte* at = _pendingTrain + (nint)k * stride;
                int rest = length - k * stride;
                if (rest > stride && slab.LargeCapacity > 0 && slab.TryAllocLarge(out int large))
                {
                    ref PacketMeta lm = ref meta[large];
                    int n = Offload.CoalesceTcp4(at, rest, stride, VxlanSize,
                        slab.SlotPointer(large) + lm.Offset, slab.SizeOf(large) - lm.Offset, out ushort mss, out int merged);
                    if (n > 0)
                    {
                        lm.Gso = GsoType.Tcp4;
                        lm.GsoSize = mss;
                        lm.Flags |= PacketFlags.ChecksumPartial;
                        Deliver(slab, batch, large, n, peer, ref accepted, ref bytes);
                        superFrames++;
                        _pendingSegment += merged;
                        continue;
                    }
                    slab.Free(large);
                }
                int part = Math.Min(stride, rest);
                if (!slab.TryAlloc(out int s))
                {
                    Counters.Add((int)PortCounter.RxDropped, count - k);
                    _pendingSegment = count;
                    break;
                }
                Buffer.MemoryCopy(at, slab.SlotPointer(s) + meta[s].Offset, part, part);
                Deliver(slab, batch, s, part, peer, ref accepted, ref bytes);
                _pendingSegment++;
            }
            if (_pendingSegment < count) break; // the batch is full: the rest of this train comes next call
            _pendingSegment = 0;
            slab.Free(slot);
        }
        Counters.Add((int)PortCounter.RxPackets, accepted);
        Counters.Add((int)PortCounter.RxBytes, bytes);
        if (superFrames > 0) Counters.Add((int)PortCounter.RxSuperFrames, superFrames);
        return accepted;
    }

    /// <summary>Hands a received packet (at the slot's offset, <paramref name="length"/> bytes) to the batch.</summary>
    private void Deliver(PacketSlab slab, PacketBatch batch, int slot, int length, uint peer, ref int accepted, ref long bytes)
    {
        ref PacketMeta m = ref slab.Meta[slot];
        m.Length = length;
        m.InPort = Id;
        m.PeerAddr = peer;
        batch.Add(slot);
        accepted++;
        bytes += length;
    }

    /// <summary>Sends each frame (outer IPv4 header first) to its <see cref="PacketMeta.PeerAddr"/>; runs cut from one
    /// super-frame go as UDP GSO sends.</summary>
    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        int total = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        for (int j = 0; j < slots.Length;)
        {
            int slot = slots[j];
            ref PacketMeta m = ref meta[slot];
            byte* p = slab.SlotPointer(slot) + m.Offset;
            int run = _gso ? RunLength(slab, slots, j) : 1;
            int socket = run > 1 ? SocketFor((ushort)(p[20] << 8 | p[21])) : -1;
            if (socket >= 0)
            {
                total += _tx.Flush(Counters, ref bytes); // keeps a flow's datagrams in order
                int sent = SendTrain(slab, slots.Slice(j, run), socket, ref bytes);
                if (sent >= 0)
                {
                    total += sent;
                    j += run;
                    continue;
                }
            }
            if (_tx.IsFull) total += _tx.Flush(Counters, ref bytes);
            _tx.Add(p, m.Length, BinaryPrimitives.ReverseEndianness(m.PeerAddr));
            j++;
        }
        total += _tx.Flush(Counters, ref bytes);
        Counters.Add((int)PortCounter.TxPackets, total);
        Counters.Add((int)PortCounter.TxBytes, bytes);
        return total;
    }

    /// <summary>How many datagrams from <paramref name="j"/> can leave as one GSO send: same peer, same outer UDP ports,
    /// same length but for the last (not longer), plain 20-byte outer IPv4 header, within the kernel's limits.</summary>
    private static int RunLength(PacketSlab slab, ReadOnlySpan<int> slots, int j)
    {
        PacketMeta[] meta = slab.Meta;
        ref PacketMeta first = ref meta[slots[j]];
        byte* p = slab.SlotPointer(slots[j]) + first.Offset;
        int length = first.Length;
        if (length <= OuterIpUdp || p[0] != 0x45) return 1;
        uint ports = Unsafe.ReadUnaligned<uint>(p + 20);
        int payload = length - OuterIpUdp;
        int run = 1;
        while (j + run < slots.Length && run < Offload.MaxTrainSegments)
        {
            ref PacketMeta m = ref meta[slots[j + run]];
            byte* q = slab.SlotPointer(slots[j + run]) + m.Offset;
            if (m.PeerAddr != first.PeerAddr || m.Length > length || m.Length <= OuterIpUdp || q[0] != 0x45
                || Unsafe.ReadUnaligned<uint>(q + 20) != ports || payload + m.Length - OuterIpUdp > MaxGsoPayload) break;
            payload += m.Length - OuterIpUdp;
            run++;
            if (m.Length < length) break; // a shorter datagram ends the train
        }
        return run;
    }

    private int SocketFor(ushort sourcePort)
    {
        for (int i = 0; i < _sourcePorts.Length; i++)
            if (_sourcePorts[i] == sourcePort) return i;
        return -1;
    }

    /// <summary>One <c>sendmsg</c> with UDP_SEGMENT carrying the UDP payloads of <paramref name="run"/> (the kernel writes
    /// the outer headers). Returns the datagrams sent (0 when the queue was full: counted as dropped), or -1 when the kernel
    /// refuses GSO: then GSO is off from now on and the caller sends the run through the raw socket.</summary>
    private int SendTrain(PacketSlab slab, ReadOnlySpan<int> run, int socket, ref long bytes)
    {
        PacketMeta[] meta = slab.Meta;
        long runBytes = 0;
        for (int k = 0; k < run.Length; k++)
        {
            ref PacketMeta m = ref meta[run[k]];
            _gsoIov[k].Base = slab.SlotPointer(run[k]) + m.Offset + OuterIpUdp;
            _gsoIov[k].Length = (nuint)(m.Length - OuterIpUdp);
            runBytes += m.Length;
        }
        ref PacketMeta first = ref meta[run[0]];
        byte* p = slab.SlotPointer(run[0]) + first.Offset;
        *(ushort*)(_gsoControl + sizeof(Native.CMsgHdr)) = (ushort)(first.Length - OuterIpUdp);
        Native.SockAddrIn to = default;
        to.Family = Native.AF_INET;
        to.Port = Unsafe.ReadUnaligned<ushort>(p + 22);
        to.Address = BinaryPrimitives.ReverseEndianness(first.PeerAddr);
        Native.MsgHdr h = default;
        h.Name = &to;
        h.NameLength = (uint)sizeof(Native.SockAddrIn);
        h.Iov = _gsoIov;
        h.IovLength = (nuint)run.Length;
        h.Control = _gsoControl;
        h.ControlLength = (nuint)Native.ControlSpace(sizeof(ushort));
        while (true)
        {
            nint r = Native.SendMsg(_gsoFds[socket].Fd, &h, Native.MSG_DONTWAIT);
            if (r >= 0)
            {
                bytes += runBytes;
                Counters.Add((int)PortCounter.TxSuperFrames);
                return run.Length;
            }
            int e = Marshal.GetLastPInvokeError();
            if (e == Native.EINTR) continue;
            if (e is Native.EAGAIN or Native.ENOBUFS)
            {
                Counters.Add((int)PortCounter.TxDropped, run.Length);
                return 0;
            }
            // EIO: the route's device cannot checksum; EINVAL/EMSGSIZE: a limit this kernel keeps. Raw sends from now on.
            _gso = false;
            Counters.Add((int)PortCounter.TxErrors);
            return -1;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _rxFd.Dispose();
        _rx.Dispose();
        _tx.Dispose();
        foreach (FdHandle h in _gsoFds) h.Dispose();
        NativeMemory.Free(_gsoIov);
        NativeMemory.Free(_gsoControl);
    }
}

using System.Runtime.InteropServices;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// The node's uplink to the world outside the cluster, on the node's own address (as a kube-proxy node uses its
/// primary interface):
/// <list type="bullet">
/// <item>receive: a TAP device into which an nftables <c>netdev</c> ingress rule on the underlay interface forwards
/// (<c>fwd to</c>) the frames that belong to the switch: node ports, replies to masqueraded connections, external IPs.
/// The kernel never sees them. Each frame's destination MAC is rewritten to the router's, so it is routed.</item>
/// <item>send: a raw IPv4 socket (<c>IPPROTO_RAW</c>, header included); <c>sendmmsg</c> hands each packet (the frame
/// without its Ethernet header) to the kernel, which routes it out and resolves the next hop. The socket's mark
/// (<see cref="Mark"/>) lets a <c>notrack</c> rule keep the node's own conntrack away from these packets.</item>
/// </list>
/// </summary>
public sealed unsafe class UplinkPort : IPacketPort
{
    /// <summary>SO_MARK of every packet the uplink sends ("VS").</summary>
    public const uint Mark = 0x5653;
    private const int MaxBatch = 256;
    private const int EthernetHeader = 14;

    private readonly TapPort _tap;
    private readonly FdHandle _txFd;
    private readonly ulong _routerMac;
    private readonly Native.MMsgHdr* _txMsgs;
    private readonly Native.IoVec* _txIov;
    private readonly Native.SockAddrIn* _txAddr;
    private bool _disposed;

    private UplinkPort(string name, TapPort tap, FdHandle tx, ulong routerMac, string underlay)
    {
        Name = name;
        _tap = tap;
        _txFd = tx;
        _routerMac = routerMac;
        Underlay = underlay;
        _txMsgs = (Native.MMsgHdr*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.MMsgHdr)));
        _txIov = (Native.IoVec*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.IoVec)));
        _txAddr = (Native.SockAddrIn*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.SockAddrIn)));
        for (int i = 0; i < MaxBatch; i++)
        {
            _txMsgs[i].Hdr.Iov = &_txIov[i];
            _txMsgs[i].Hdr.IovLength = 1;
            _txMsgs[i].Hdr.Name = &_txAddr[i];
            _txMsgs[i].Hdr.NameLength = (uint)sizeof(Native.SockAddrIn);
            _txAddr[i].Family = Native.AF_INET;
        }
    }

    public string Name { get; }
    public string Kind => "uplink";
    /// <summary>The receive TAP.</summary>
    public string InterfaceName => _tap.InterfaceName;
    /// <summary>The interface carrying the node address, whose ingress is steered into the TAP.</summary>
    public string Underlay { get; }
    public ushort Id
    {
        get => _tap.Id;
        set => _tap.Id = value;
    }
    public int PollHandle => _tap.PollHandle;
    /// <summary>One set for both directions: the TAP's receive counters and the raw socket's send counters.</summary>
    public CounterSet Counters => _tap.Counters;

    /// <param name="tapName">The receive TAP (created; it must be up before steering rules name it).</param>
    /// <param name="routerMac">Written as each received frame's destination, so the switch routes it.</param>
    /// <param name="underlay">The interface the steering rules hook (shown by the CLI).</param>
    public static UplinkPort Open(string name, string tapName, ulong routerMac, string underlay)
    {
        TapPort tap = TapPort.Open(name, tapName);
        FdHandle? tx = null;
        try
        {
            int fd = Native.Socket(Native.AF_INET, Native.SOCK_RAW | Native.SOCK_NONBLOCK | Native.SOCK_CLOEXEC, Native.IPPROTO_RAW);
            if (fd < 0) throw PortException.FromErrno("cannot open the uplink raw IPv4 socket", Marshal.GetLastPInvokeError());
            tx = new FdHandle(fd);
            int buf = 4 << 20;
            if (Native.SetSockOpt(fd, Native.SOL_SOCKET, Native.SO_SNDBUFFORCE, &buf, sizeof(int)) < 0)
                _ = Native.SetSockOpt(fd, Native.SOL_SOCKET, Native.SO_SNDBUF, &buf, sizeof(int));
            uint mark = Mark;
            if (Native.SetSockOpt(fd, Native.SOL_SOCKET, Native.SO_MARK, &mark, sizeof(uint)) < 0)
                throw PortException.FromErrno("cannot mark the uplink socket (SO_MARK)", Marshal.GetLastPInvokeError());
        }
        catch
        {
            tap.Dispose();
            tx?.Dispose();
            throw;
        }
        return new UplinkPort(name, tap, tx, routerMac, underlay);
    }

    /// <summary>Receives the steered frames. Only untagged IPv4 belongs here: anything else the node's kernel sends
    /// out of the TAP (IPv6 neighbour discovery when it comes up, say) is dropped and counted, never bridged.</summary>
    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int before = batch.Count;
        int n = _tap.Receive(slab, batch, max);
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        ulong mac = _routerMac;
        int kept = before;
        for (int i = before; i < before + n; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            byte* f = slab.SlotPointer(s) + m.Offset;
            if (m.Length < EthernetHeader + 20 || f[12] != 0x08 || f[13] != 0x00)
            {
                Counters.Add((int)PortCounter.RxDropped);
                slab.Free(s);
                continue;
            }
            for (int b = 0; b < 6; b++) f[b] = (byte)(mac >> (40 - 8 * b));
            slots[kept++] = s;
        }
        batch.Truncate(kept);
        return kept - before;
    }

    /// <summary>Sends each frame's IPv4 packet to its destination address; anything else is counted as a tx error.</summary>
    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        int total = 0;
        long bytes = 0;
        PacketMeta[] meta = slab.Meta;
        while (slots.Length > 0)
        {
            int take = Math.Min(slots.Length, MaxBatch);
            int n = 0;
            for (int i = 0; i < take; i++)
            {
                ref PacketMeta m = ref meta[slots[i]];
                byte* f = slab.SlotPointer(slots[i]) + m.Offset;
                // Untagged IPv4 only (the router sends nothing else here).
                if (m.Length < EthernetHeader + 20 || f[12] != 0x08 || f[13] != 0x00 || f[14] >> 4 != 4)
                {
                    Counters.Add((int)PortCounter.TxErrors);
                    continue;
                }
                _txIov[n].Base = f + EthernetHeader;
                _txIov[n].Length = (nuint)(m.Length - EthernetHeader);
                _txAddr[n].Address = *(uint*)(f + EthernetHeader + 16);
                n++;
            }
            total += Native.SendBatch(_txFd.Fd, _txMsgs, _txIov, n, Counters, ref bytes);
            slots = slots[take..];
        }
        Counters.Add((int)PortCounter.TxPackets, total);
        Counters.Add((int)PortCounter.TxBytes, bytes);
        return total;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _tap.Dispose();
        _txFd.Dispose();
        NativeMemory.Free(_txMsgs);
        NativeMemory.Free(_txIov);
        NativeMemory.Free(_txAddr);
    }
}

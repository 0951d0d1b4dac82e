using System.Runtime.InteropServices;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

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
    private const int EthernetHeader = 14;

    private readonly TapPort _tap;
    private readonly RawIpv4Sender _tx;
    private readonly ulong _routerMac;
    private bool _disposed;

    private UplinkPort(string name, TapPort tap, RawIpv4Sender tx, ulong routerMac, string underlay)
    {
        Name = name;
        _tap = tap;
        _tx = tx;
        _routerMac = routerMac;
        Underlay = underlay;
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
        try
        {
            return new UplinkPort(name, tap, RawIpv4Sender.Open("the uplink", 4 << 20, Mark), routerMac, underlay);
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }

    /// <summary>Receives the steered frames. Only untagged IPv4 belongs here: anything else the node's kernel sends
    /// out of the TAP (IPv6 neighbour discovery when it comes up, say) is dropped and counted, never bridged.</summary>
    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int before = batch.Count;
        int n = _tap.Receive(slab, batch, max);
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        var mac = new MacAddress(_routerMac);
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
            mac.Write(new Span<byte>(f, 6));
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
        foreach (int slot in slots)
        {
            ref PacketMeta m = ref meta[slot];
            // Untagged IPv4 only (the router sends nothing else here); the parser already said what the frame holds.
            if (m.EtherType != EtherType.Ipv4 || (m.Flags & PacketFlags.Tagged) != 0 || m.Length < m.L3Offset + 20)
            {
                Counters.Add((int)PortCounter.TxErrors);
                continue;
            }
            byte* ip = slab.SlotPointer(slot) + m.Offset + m.L3Offset;
            if (_tx.IsFull) total += _tx.Flush(Counters, ref bytes);
            _tx.Add(ip, m.Length - m.L3Offset, *(uint*)(ip + 16));
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
        _tap.Dispose();
        _tx.Dispose();
    }
}

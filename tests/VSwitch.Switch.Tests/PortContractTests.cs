using System.Diagnostics;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.Frames;

namespace VSwitch.Switch.Tests;

/// <summary>The other end of a port under test: what the kernel (or test) sees.</summary>
public interface IPortPeer : IDisposable
{
    void Send(byte[] frame);
    /// <summary>Frames the port transmitted that carry the test EtherType.</summary>
    List<byte[]> Drain(int expected, TimeSpan timeout);
}

/// <summary>One contract, every port type: batched receive into slab slots, batched send, counters, VLAN tags intact,
/// an empty receive returns at once, sizes from minimum to MTU.</summary>
public abstract class PortContract : IDisposable
{
    protected abstract (IPacketPort Port, IPortPeer Peer) Create();

    private readonly IPacketPort _port;
    private readonly IPortPeer _peer;
    private readonly PacketSlab _slab = new(512);

    protected PortContract()
    {
        (_port, _peer) = Create();
    }

    private List<byte[]> ReceiveFromPort(int expected, TimeSpan timeout)
    {
        List<(byte[] Bytes, PacketMeta Meta)> got = PortReads.Collect(_port, _slab, expected, timeout, IsTest);
        foreach ((byte[] _, PacketMeta m) in got) Assert.Equal(_port.Id, m.InPort);
        return got.ConvertAll(x => x.Bytes);
    }

    internal static bool IsTest(byte[] f)
    {
        if (f.Length < 14) return false;
        int o = f[12] == 0x81 && f[13] == 0x00 ? 16 : 12;
        return f.Length >= o + 2 && f[o] == 0x88 && f[o + 1] == 0xB5;
    }

    [Fact]
    public void Receives_a_burst_in_batches_with_bytes_intact()
    {
        var sent = new List<byte[]>();
        for (int i = 0; i < 100; i++)
        {
            byte[] f = Make(Mac(2), Mac(1), length: 60 + i * 14, fill: (byte)i);
            sent.Add(f);
            _peer.Send(f);
        }
        List<byte[]> got = ReceiveFromPort(100, TimeSpan.FromSeconds(5));
        Assert.Equal(sent.Count, got.Count);
        for (int i = 0; i < sent.Count; i++) Assert.Equal(sent[i], got[i]);
        Assert.InRange(_port.Counters[(int)PortCounter.RxPackets], 100, long.MaxValue);
    }

    [Fact]
    public void Sends_a_batch_with_bytes_intact_and_counts_it()
    {
        var slots = new List<int>();
        var sent = new List<byte[]>();
        foreach (int len in new[] { 60, 61, 128, 1000, 1514 })
        {
            byte[] f = Make(Mac(3), Mac(4), length: len, fill: (byte)len);
            sent.Add(f);
            Assert.True(_slab.TryAllocFrame(f, out int slot));
            slots.Add(slot);
        }
        Assert.Equal(sent.Count, _port.Send(_slab, slots.ToArray()));
        List<byte[]> got = _peer.Drain(sent.Count, TimeSpan.FromSeconds(5));
        Assert.Equal(sent.Count, got.Count);
        for (int i = 0; i < sent.Count; i++) Assert.Equal(sent[i], got[i]);
        Assert.Equal(sent.Count, _port.Counters[(int)PortCounter.TxPackets]);
        Assert.Equal(sent.Sum(f => (long)f.Length), _port.Counters[(int)PortCounter.TxBytes]);
    }

    [Fact]
    public void Vlan_tagged_frames_cross_with_the_tag_in_place()
    {
        byte[] f = Make(Mac(2), Mac(1), length: 100, vlan: 0x2064); // PCP 1, VID 100
        _peer.Send(f);
        byte[] got = Assert.Single(ReceiveFromPort(1, TimeSpan.FromSeconds(5)));
        Assert.Equal(f, got);
    }

    [Fact]
    public void Receive_with_nothing_waiting_returns_zero_at_once()
    {
        var batch = new PacketBatch(64);
        var sw = Stopwatch.StartNew();
        int n = 0;
        // Drain anything the kernel emitted on link-up, then the queue is empty.
        for (int i = 0; i < 50; i++)
        {
            n = _port.Receive(_slab, batch, 64);
            foreach (int s in batch.AsSpan()) _slab.Free(s);
            batch.Clear();
        }
        Assert.Equal(0, n);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2));
        Assert.Equal(512, _slab.FreeCount);
    }

    public void Dispose()
    {
        _port.Dispose();
        _peer.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class MemoryPortContract : PortContract
{
    private sealed class Peer(MemoryPort port) : IPortPeer
    {
        public void Send(byte[] frame) => port.Inject(frame);
        public List<byte[]> Drain(int expected, TimeSpan timeout) => port.Transmitted.Where(PortContract.IsTest).ToList();
        public void Dispose() { }
    }

    protected override (IPacketPort, IPortPeer) Create()
    {
        var p = new MemoryPort("mem");
        return (p, new Peer(p));
    }
}

/// <summary>Kernel-side peer: an AF_PACKET port on the interface the port under test is attached to (or its veth peer).</summary>
internal sealed class KernelPeer : IPortPeer
{
    private readonly AfPacketPort _raw;
    private readonly PacketSlab _slab = new(512, slotSize: 16384);
    private readonly Action _cleanup;

    public KernelPeer(string ifName, Action cleanup)
    {
        _raw = AfPacketPort.Open("peer", ifName);
        _cleanup = cleanup;
    }

    public void Send(byte[] frame)
    {
        Assert.True(_slab.TryAllocFrame(frame, out int slot));
        Assert.Equal(1, _raw.Send(_slab, [slot]));
        _slab.Free(slot);
    }

    public List<byte[]> Drain(int expected, TimeSpan timeout) =>
        PortReads.Collect(_raw, _slab, expected, timeout, PortContract.IsTest).ConvertAll(x => x.Bytes);

    public void Dispose()
    {
        _raw.Dispose();
        _cleanup();
    }
}

internal static class PortReads
{
    /// <summary>Receives from <paramref name="port"/> until <paramref name="expected"/> frames that <paramref name="keep"/>
    /// accepts have arrived or <paramref name="timeout"/> has passed; every slot is freed again.</summary>
    public static List<(byte[] Bytes, PacketMeta Meta)> Collect(IPacketPort port, PacketSlab slab, int expected, TimeSpan timeout,
        Func<byte[], bool> keep)
    {
        var got = new List<(byte[], PacketMeta)>();
        var batch = new PacketBatch(256);
        var sw = Stopwatch.StartNew();
        while (got.Count < expected && sw.Elapsed < timeout)
        {
            int n = port.Receive(slab, batch, 256);
            foreach (int s in batch.AsSpan())
            {
                byte[] f = slab.Frame(s).ToArray();
                if (keep(f)) got.Add((f, slab.Meta[s]));
                slab.Free(s);
            }
            batch.Clear();
            if (n == 0) Thread.Sleep(1);
        }
        return got;
    }
}

internal static class Links
{
    private static int _seq;

    /// <summary>Interface names unique to this test process (root namespace, no addresses, IPv6 off: no host traffic).</summary>
    public static string Name(string kind) => $"vst{kind}{Environment.ProcessId % 10000}{Interlocked.Increment(ref _seq)}";

    public static void Quiet(string ifName)
    {
        File.WriteAllText($"/proc/sys/net/ipv6/conf/{ifName}/disable_ipv6", "1");
        NetNs.BringUp(ifName);
    }

    /// <summary>A veth pair: the port under test opened on one end by <paramref name="open"/>, a kernel peer on the other;
    /// disposing of the peer deletes the pair.</summary>
    public static (IPacketPort, IPortPeer) VethPair(Func<string, IPacketPort> open)
    {
        string a = Name("a"), b = Name("b");
        NetNs.Ip("link", "add", a, "type", "veth", "peer", "name", b);
        try
        {
            Quiet(a);
            Quiet(b);
            return (open(a), new KernelPeer(b, () => NetNs.TryIp("link", "del", a)));
        }
        catch
        {
            NetNs.TryIp("link", "del", a);
            throw;
        }
    }
}

public sealed class TapPortContract : PortContract
{
    protected override (IPacketPort, IPortPeer) Create()
    {
        string name = Links.Name("t");
        TapPort tap = TapPort.Open("tap", name);
        Assert.True(tap.Created);
        Links.Quiet(name);
        return (tap, new KernelPeer(name, () => { }));
    }
}

public sealed class AfPacketPortContract : PortContract
{
    protected override (IPacketPort, IPortPeer) Create() => Links.VethPair(a => AfPacketPort.Open("afp", a));
}

/// <summary>The same contract with a virtio-net header on every frame (PACKET_VNET_HDR): plain frames cross unchanged.</summary>
public sealed class AfPacketOffloadPortContract : PortContract
{
    protected override (IPacketPort, IPortPeer) Create() => Links.VethPair(a => AfPacketPort.Open("afp", a, offloads: true));
}

/// <summary>AF_PACKET with offloads between two veth ends: a TCP super-frame and a partial checksum cross the socket once,
/// in both directions, as the kernel hands them to the veth (a super-frame longer than a ring frame takes the
/// TP_STATUS_COPY path).</summary>
public sealed class AfPacketOffloadTests : IDisposable
{
    private readonly string _a = Links.Name("a"), _b = Links.Name("b");
    private readonly AfPacketPort _port, _peer;
    private readonly PacketSlab _slab = new(512, largeCapacity: 16);

    public AfPacketOffloadTests()
    {
        NetNs.Ip("link", "add", _a, "type", "veth", "peer", "name", _b);
        Links.Quiet(_a);
        Links.Quiet(_b);
        _port = AfPacketPort.Open("afp", _a, offloads: true);
        _peer = AfPacketPort.Open("peer", _b, offloads: true);
    }

    private int Load(byte[] frame, GsoType gso, ushort gsoSize)
    {
        Assert.True(_slab.TryAllocLarge(out int s));
        ref PacketMeta m = ref _slab.Meta[s];
        m.Length = frame.Length;
        frame.CopyTo(_slab.Frame(s));
        m.Gso = gso;
        m.GsoSize = gsoSize;
        m.Flags |= PacketFlags.ChecksumPartial;
        return s;
    }

    /// <summary>Frames with IPv4 (test traffic only: nothing else is addressed to the 10.244.1.0/24 test addresses).</summary>
    private static List<(byte[] Bytes, PacketMeta Meta)> ReceiveIp(AfPacketPort port, PacketSlab slab, int expected) =>
        PortReads.Collect(port, slab, expected, TimeSpan.FromSeconds(5),
            f => f.Length > 34 && f[12] == 0x08 && f[13] == 0x00 && f[30] == 10 && f[31] == 244);

    /// <summary>Sends <paramref name="frame"/> with the given offload state out of <paramref name="from"/> and returns what
    /// <paramref name="to"/> receives.</summary>
    private List<(byte[] Bytes, PacketMeta Meta)> Cross(AfPacketPort from, AfPacketPort to, byte[] frame, GsoType gso, ushort gsoSize)
    {
        int s = Load(frame, gso, gsoSize);
        Assert.Equal(1, from.Send(_slab, [s]));
        _slab.Free(s);
        return ReceiveIp(to, _slab, 1);
    }

    [Fact]
    public void A_tcp_super_frame_crosses_once_each_way_with_its_gso_state()
    {
        byte[] frame = OffloadDatapathTests.SuperFrame(Mac(1), "10.244.1.3", 20_000);
        var got = Cross(_peer, _port, frame, GsoType.Tcp4, 1448);
        Assert.Single(got);
        Assert.Equal(frame.Length, got[0].Bytes.Length);
        Assert.Equal(GsoType.Tcp4, got[0].Meta.Gso);
        Assert.Equal(1448, got[0].Meta.GsoSize);
        Assert.NotEqual(0, (int)(got[0].Meta.Flags & PacketFlags.ChecksumPartial));
        Assert.Equal(frame.AsSpan(54).ToArray(), got[0].Bytes.AsSpan(54).ToArray());
        Assert.Equal(1, _port.Counters[(int)PortCounter.RxSuperFrames]);

        // And back out of the port under test, still one super-frame.
        var back = Cross(_port, _peer, got[0].Bytes, GsoType.Tcp4, 1448);
        Assert.Equal(1, _port.Counters[(int)PortCounter.TxSuperFrames]);
        Assert.Single(back);
        Assert.Equal(frame.Length, back[0].Bytes.Length);
        Assert.Equal(GsoType.Tcp4, back[0].Meta.Gso);
        Assert.Equal(0, _port.Counters[(int)PortCounter.RxDropped]);
    }

    [Fact]
    public void A_partial_checksum_stays_partial_through_the_ring()
    {
        byte[] frame = OffloadDatapathTests.SuperFrame(Mac(1), "10.244.1.3", 100);
        var got = Cross(_peer, _port, frame, GsoType.None, 0);
        Assert.Single(got);
        Assert.Equal(frame, got[0].Bytes);
        Assert.Equal(GsoType.None, got[0].Meta.Gso);
        Assert.NotEqual(0, (int)(got[0].Meta.Flags & PacketFlags.ChecksumPartial));
        Assert.Equal(0, _port.Counters[(int)PortCounter.RxSuperFrames]);
    }

    public void Dispose()
    {
        _peer.Dispose();
        _port.Dispose();
        NetNs.TryIp("link", "del", _a);
    }
}

public sealed class PortErrorTests
{
    [Fact]
    public void AfPacket_on_a_missing_interface_is_a_clear_error()
    {
        PortException e = Assert.Throws<PortException>(() => AfPacketPort.Open("x", "vst-missing0"));
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tap_with_an_invalid_name_is_a_clear_error()
    {
        PortException e = Assert.Throws<PortException>(() => TapPort.Open("x", "this-name-is-way-too-long"));
        Assert.Contains("not a valid interface name", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tap_closes_and_the_device_disappears()
    {
        string name = Links.Name("d");
        using (TapPort.Open("t", name)) Assert.True(NetNs.InterfaceExists(name));
        Assert.False(NetNs.InterfaceExists(name));
    }
}

/// <summary>The AF_PACKET port's TPACKET_V2 receive ring: losses are counted, not silent, and the ring keeps going.</summary>
public sealed class AfPacketRingTests : IDisposable
{
    private readonly string _a = Links.Name("a"), _b = Links.Name("b");
    private readonly AfPacketPort _port;
    private readonly KernelPeer _peer;
    private readonly PacketSlab _slab = new(4096);

    public AfPacketRingTests()
    {
        NetNs.Ip("link", "add", _a, "type", "veth", "peer", "name", _b);
        Links.Quiet(_a);
        Links.Quiet(_b);
        _port = AfPacketPort.Open("afp", _a);
        _peer = new KernelPeer(_b, () => { });
    }

    private (int Test, int All) Drain()
    {
        int test = 0, all = 0;
        var batch = new PacketBatch(256);
        for (int idle = 0; idle < 20;)
        {
            int n = _port.Receive(_slab, batch, 256);
            foreach (int s in batch.AsSpan())
            {
                if (PortContract.IsTest(_slab.Frame(s).ToArray())) test++;
                _slab.Free(s);
            }
            batch.Clear();
            all += n;
            if (n == 0)
            {
                idle++;
                Thread.Sleep(5);
            }
        }
        return (test, all);
    }

    [Fact]
    public void A_full_ring_counts_every_lost_frame_and_keeps_receiving()
    {
        Drain();
        long dropped0 = _port.Counters[(int)PortCounter.RxDropped];
        int sent = _port.RingFrameCount + 500;
        for (int i = 0; i < sent; i++) _peer.Send(Make(Mac(2), Mac(1), length: 60, fill: (byte)i));
        (int test, int all) = Drain();
        long dropped = _port.Counters[(int)PortCounter.RxDropped] - dropped0;
        // Nothing read while they were sent: the ring held what it could, the rest were counted lost.
        Assert.InRange(test, 1, _port.RingFrameCount);
        Assert.InRange(dropped, sent - _port.RingFrameCount, sent);
        Assert.Equal(sent, all + dropped);
        // Past the wrap-around, frames arrive in order with their bytes.
        for (int i = 0; i < 300; i++) _peer.Send(Make(Mac(2), Mac(1), length: 60 + i, fill: (byte)i));
        Assert.Equal(300, Drain().Test);
    }

    [Fact]
    public void A_frame_longer_than_the_ring_frame_is_dropped_and_counted()
    {
        // The ring was sized for MTU 1500; the MTU then grows.
        NetNs.Ip("link", "set", _a, "mtu", "9000");
        NetNs.Ip("link", "set", _b, "mtu", "9000");
        Drain();
        long dropped0 = _port.Counters[(int)PortCounter.RxDropped];
        _peer.Send(Make(Mac(2), Mac(1), length: 4000));
        _peer.Send(Make(Mac(2), Mac(1), length: 1514));
        Assert.Equal(1, Drain().Test);
        Assert.Equal(1, _port.Counters[(int)PortCounter.RxDropped] - dropped0);
        Assert.Equal(2048, _port.RingFrameSize);
    }

    public void Dispose()
    {
        _peer.Dispose();
        _port.Dispose();
        NetNs.TryIp("link", "del", _a);
    }
}

using System.Diagnostics;
using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.L3Frames;

namespace VSwitch.Switch.Tests;

/// <summary>
/// The overlay's tunnel port over real kernel sockets, on loopback (127.0.0.1, two UDP ports of this test process):
/// runs of datagrams cut from one super-frame leave as one UDP GSO send, come back as one UDP GRO train, and are
/// coalesced into the super-frame again when the slab has large slots, or split into the datagrams that were sent.
/// </summary>
public sealed class TunnelPortTests : IDisposable
{
    private const uint Loopback = 0x7F00_0001;
    private static int s_nextPort = 20_000 + Environment.ProcessId % 20_000;
    private readonly UdpTunnelPort _a;
    private readonly UdpTunnelPort _b;

    public TunnelPortTests()
    {
        _a = Open("a");
        _b = Open("b");
    }

    private static UdpTunnelPort Open(string name)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return UdpTunnelPort.Open(name, Loopback, (ushort)Interlocked.Increment(ref s_nextPort));
            }
            catch (PortException e) when (attempt < 20 && e.Message.Contains("taken", StringComparison.Ordinal)) { }
        }
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }

    /// <summary>The datagrams the encapsulation stage makes of <paramref name="inner"/> (a super-frame when
    /// <paramref name="mss"/> is set): each segment behind an outer IPv4/UDP/VXLAN header for port B, in new slots.</summary>
    private List<int> Encapsulate(PacketSlab slab, byte[] inner, int mss)
    {
        var peer = new OverlayPeer("b", new Ipv4Address(Loopback), null, MacAddress.Zero, new Ipv4Address(Loopback), _b.UdpPort, 1);
        Assert.True(slab.TryAllocFrame(inner, out int s) || slab.TryAllocLarge(out s));
        if (slab.Frame(s).Length != inner.Length)
        {
            ref PacketMeta lm = ref slab.Meta[s];
            lm.Length = inner.Length;
            inner.CopyTo(slab.Frame(s));
        }
        var segments = new List<int>();
        if (mss > 0)
        {
            slab.Meta[s].Gso = GsoType.Tcp4;
            slab.Meta[s].GsoSize = (ushort)mss;
            slab.Meta[s].Flags |= PacketFlags.ChecksumPartial;
            Span<int> cut = stackalloc int[Offload.MaxSegments];
            int n = Offload.Segment(slab, s, cut);
            Assert.True(n > 0);
            slab.Free(s);
            segments.AddRange(cut[..n].ToArray());
        }
        else
        {
            segments.Add(s);
        }
        foreach (int seg in segments)
        {
            ref PacketMeta m = ref slab.Meta[seg];
            unsafe
            {
                m.Offset -= OverlayPeer.OuterSize;
                m.Length += OverlayPeer.OuterSize;
                peer.WriteOuter(slab.SlotPointer(seg) + m.Offset, m.Length - OverlayPeer.OuterSize, _a.SourcePorts[0]);
            }
            m.PeerAddr = Loopback;
        }
        return segments;
    }

    private static List<(byte[] Bytes, PacketMeta Meta)> ReceiveAll(UdpTunnelPort port, PacketSlab slab, int expected, int max = 256) =>
        ReceiveAll(port, slab, expected, max, out _);

    /// <param name="sawPending">The port held part of a train back for a later call (the batch was full).</param>
    private static List<(byte[] Bytes, PacketMeta Meta)> ReceiveAll(UdpTunnelPort port, PacketSlab slab, int expected, int max, out bool sawPending)
    {
        sawPending = false;
        var got = new List<(byte[], PacketMeta)>();
        var batch = new PacketBatch(256);
        var sw = Stopwatch.StartNew();
        while ((got.Count < expected || port.HasPending) && sw.Elapsed < TimeSpan.FromSeconds(5))
        {
            int n = port.Receive(slab, batch, max);
            Assert.InRange(n, 0, max);
            foreach (int slot in batch.AsSpan())
            {
                got.Add((slab.Frame(slot).ToArray(), slab.Meta[slot]));
                slab.Free(slot);
            }
            batch.Clear();
            sawPending |= port.HasPending;
            if (n == 0) Thread.Sleep(1);
        }
        return got;
    }

    private static byte[] Payload(PacketSlab slab, int slot) => slab.Frame(slot)[OuterSize..].ToArray();
    private const int OuterSize = 28; // outer IPv4 + UDP: what the receiving socket strips

    [Fact]
    public void A_super_frames_segments_cross_as_one_gso_send_and_coalesce_back_into_it()
    {
        Assert.True(_a.Gso && _b.Gro, "this kernel offers UDP GSO and GRO (Linux 5.0 and later)");
        var slab = new PacketSlab(512, largeCapacity: 8);
        byte[] super = OffloadDatapathTests.SuperFrame(MacAddress.Parse("02:00:0a:f4:02:05"), "10.244.2.5", 30_000);
        List<int> segs = Encapsulate(slab, super, 1398);
        Assert.Equal(22, segs.Count);
        Assert.Equal(22, _a.Send(slab, segs.ToArray()));
        Assert.Equal(1, _a.Counters[(int)PortCounter.TxSuperFrames]);
        foreach (int s in segs) slab.Free(s);

        List<(byte[] Bytes, PacketMeta Meta)> got = ReceiveAll(_b, slab, 1);
        Assert.Single(got);
        (byte[] bytes, PacketMeta meta) = got[0];
        Assert.Equal(GsoType.Tcp4, meta.Gso);
        Assert.Equal(1398, meta.GsoSize);
        Assert.NotEqual(0, (int)(meta.Flags & PacketFlags.ChecksumPartial));
        Assert.Equal(Loopback, meta.PeerAddr);
        Assert.Equal(_b.Id, meta.InPort);
        Assert.Equal(Convert.ToHexString(super), Convert.ToHexString(bytes.AsSpan(VxlanView.Size)));
        Assert.Equal(1, _b.Counters[(int)PortCounter.RxSuperFrames]);
    }

    [Fact]
    public void Without_large_slots_a_train_is_split_into_the_datagrams_sent_and_may_span_batches()
    {
        var tx = new PacketSlab(512, largeCapacity: 8);
        byte[] super = OffloadDatapathTests.SuperFrame(MacAddress.Parse("02:00:0a:f4:02:05"), "10.244.2.5", 10_000);
        List<int> segs = Encapsulate(tx, super, 1000);
        byte[][] sent = segs.Select(s => Payload(tx, s)).ToArray();
        Assert.Equal(10, _a.Send(tx, segs.ToArray()));
        Assert.Equal(1, _a.Counters[(int)PortCounter.TxSuperFrames]);

        var rx = new PacketSlab(512); // no port with offloads: nothing to coalesce into
        List<(byte[] Bytes, PacketMeta Meta)> got = ReceiveAll(_b, rx, 10, 3, out bool sawPending);
        Assert.True(sawPending, "one GRO train of 10 datagrams, handed over 3 at a time");
        Assert.Equal(sent.Length, got.Count);
        for (int k = 0; k < sent.Length; k++)
        {
            Assert.Equal(sent[k], got[k].Bytes);
            Assert.Equal(GsoType.None, got[k].Meta.Gso);
        }
        Assert.False(_b.HasPending);
        Assert.Equal(0, _b.Counters[(int)PortCounter.RxSuperFrames]);
    }

    [Fact]
    public void Datagrams_that_are_not_one_tcp_flows_segments_arrive_as_they_were_sent()
    {
        var slab = new PacketSlab(512, largeCapacity: 8);
        var segs = new List<int>();
        for (int i = 0; i < 6; i++) // same size, same flow: a run for GSO, but UDP inside
            segs.AddRange(Encapsulate(slab, Udp(MacAddress.Parse("02:00:0a:f4:02:05"), OffloadDatapathTests.PodA, "10.244.1.2", "10.244.2.5", 4000, 53, payload: 100), 0));
        segs.AddRange(Encapsulate(slab, Udp(MacAddress.Parse("02:00:0a:f4:02:05"), OffloadDatapathTests.PodA, "10.244.1.2", "10.244.2.5", 4000, 53, payload: 40), 0));
        byte[][] sent = segs.Select(s => Payload(slab, s)).ToArray();
        Assert.Equal(7, _a.Send(slab, segs.ToArray()));
        Assert.Equal(1, _a.Counters[(int)PortCounter.TxSuperFrames]);
        List<(byte[] Bytes, PacketMeta Meta)> got = ReceiveAll(_b, slab, 7);
        Assert.Equal(sent, got.Select(g => g.Bytes).ToArray());
        Assert.Equal(0, _b.Counters[(int)PortCounter.RxSuperFrames]);
    }

    [Fact]
    public void Steady_state_gso_sends_and_gro_receives_allocate_nothing()
    {
        var slab = new PacketSlab(512, largeCapacity: 8);
        byte[] super = OffloadDatapathTests.SuperFrame(MacAddress.Parse("02:00:0a:f4:02:05"), "10.244.2.5", 20_000);
        int[] segs = Encapsulate(slab, super, 1398).ToArray(); // sent again and again: Send leaves the slots to the caller
        var batch = new PacketBatch(256);
        int Round()
        {
            _a.Send(slab, segs);
            int got = 0;
            for (int spin = 0; got == 0 && spin < 5000; spin++)
            {
                got = _b.Receive(slab, batch, 256);
                foreach (int s in batch.AsSpan()) slab.Free(s);
                batch.Clear();
                if (got == 0) Thread.SpinWait(100);
            }
            return got;
        }
        for (int i = 0; i < 20; i++) Round(); // warm-up: JIT, lazily made receive areas
        long before = GC.GetAllocatedBytesForCurrentThread();
        int received = 0;
        for (int i = 0; i < 50; i++) received += Round();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(received >= 50, $"received {received} super-frames in 50 rounds");
        Assert.Equal(0, allocated);
    }
}

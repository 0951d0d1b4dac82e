using System.Buffers.Binary;
using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Pcap;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.Frames;

namespace VSwitch.Switch.Tests;

public sealed class OverlayTests
{
    private readonly ManualClock _clock = new();

    [Fact]
    public void Vxlan_header_golden_bytes()
    {
        byte[] b = new byte[12];
        b.AsSpan().Fill(0xA5);
        Assert.Equal(8, new VxlanRepr(0x123456).Emit(b));
        Assert.Equal(new byte[] { 0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xA5, 0xA5, 0xA5, 0xA5 }, b);
        Assert.True(VxlanRepr.TryParse(b, out VxlanRepr r));
        Assert.Equal(0x123456u, r.Vni);
        Assert.Equal(VxlanView.FlagVniValid, r.Flags);
        Assert.Throws<ArgumentOutOfRangeException>(() => new VxlanRepr(0x1000000).Emit(b));
        Assert.False(VxlanRepr.TryParse(b.AsSpan(0, 7), out _));
    }

    /// <summary>Our outer IPv4/UDP/VXLAN header for each frame of the kernel's capture equals the kernel's, byte for
    /// byte, except the IP id and checksum (per packet) and the UDP checksum (the kernel wrote a partial one; we send 0).</summary>
    [Fact]
    public unsafe void Outer_header_matches_the_kernel_capture()
    {
        List<PcapRecord> frames = PcapReader.ReadFile(SharedFixtures.PathOf("kernel-vxlan-4789.pcap"));
        int checkedFrames = 0;
        foreach (PcapRecord rec in frames)
        {
            byte[] k = rec.Data;
            if (k.Length < 50 || k[12] != 0x08 || k[13] != 0x00 || k[23] != IpProtocol.Udp) continue;
            if (BinaryPrimitives.ReadUInt16BigEndian(k.AsSpan(36)) != 4789) continue;
            var src = Ipv4Address.Read(k.AsSpan(26));
            var dst = Ipv4Address.Read(k.AsSpan(30));
            ushort sport = BinaryPrimitives.ReadUInt16BigEndian(k.AsSpan(34));
            var peer = new OverlayPeer("p", dst, null, MacAddress.Zero, src, 4789, 1);
            byte[] ours = new byte[k.Length - 14];
            k.AsSpan(50).CopyTo(ours.AsSpan(OverlayPeer.OuterSize));
            fixed (byte* p = ours) peer.WriteOuter(p, k.Length - 50, sport);
            for (int i = 0; i < ours.Length; i++)
            {
                if (i is 4 or 5 or 10 or 11 or 26 or 27) continue;
                Assert.True(k[14 + i] == ours[i], $"frame {checkedFrames}: byte {i} of the IP packet is {ours[i]:x2}, kernel wrote {k[14 + i]:x2}");
            }
            Assert.True(Checksum.IsValid(ours.AsSpan(0, 20)), "outer IPv4 header checksum");
            Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(ours.AsSpan(26)));
            checkedFrames++;
        }
        Assert.Equal(53, checkedFrames);
    }

    private (Datapath Dp, MemoryPort Pod, MemoryPort Tunnel) BuildL2Overlay(bool learning = true, bool acceptUnknown = false)
    {
        var dp = new Datapath(new DatapathOptions
        {
            Slots = 1024,
            Overlay = new OverlayOptions { LocalAddress = Ipv4Address.Parse("198.18.0.3"), Learning = learning, AcceptUnknownPeers = acceptUnknown },
        }, _clock);
        var pod = new MemoryPort("pod");
        var tunnel = new MemoryPort("vxlan");
        dp.AddPort(pod);
        dp.AddPort(tunnel, PortRole.Tunnel);
        dp.AddPeer("node-1", Ipv4Address.Parse("198.18.0.1"), null, MacAddress.Zero);
        dp.AddPeer("node-2", Ipv4Address.Parse("198.18.0.2"), null, MacAddress.Zero);
        return (dp, pod, tunnel);
    }

    [Fact]
    public void Decap_of_the_kernel_capture_yields_its_inner_frames()
    {
        (Datapath dp, MemoryPort pod, MemoryPort tunnel) = BuildL2Overlay();
        List<PcapRecord> frames = PcapReader.ReadFile(SharedFixtures.PathOf("kernel-vxlan-4789.pcap"));
        var inner = new HashSet<string>();
        foreach (PcapRecord rec in frames)
        {
            byte[] k = rec.Data;
            tunnel.Inject(k.AsSpan(42), BinaryPrimitives.ReadUInt32BigEndian(k.AsSpan(26)));
            inner.Add(Convert.ToHexString(k.AsSpan(50)));
            dp.RunOnce();
        }
        Stage decap = dp.Graph.Find("vxlan-decap")!;
        Assert.Equal(frames.Count, decap.Counters[(int)VxlanDecapStage.Counter.Decapsulated]);
        Assert.DoesNotContain(dp.Graph.Drop.NonZero(), d => d.Stage == "vxlan-decap");
        Assert.NotEmpty(pod.Transmitted);
        Assert.All(pod.Transmitted, f => Assert.Contains(Convert.ToHexString(f), inner));
        Assert.Empty(tunnel.Transmitted); // split horizon: nothing from the overlay goes back into it
        // Both pods' MACs were learned behind the peer that sent them.
        List<(MacAddress Mac, OverlayPeer Peer, bool IsStatic, long Updated)> fdb = dp.Overlay!.FdbEntries();
        Assert.Contains(fdb, e => e.Peer.Name == "node-1");
        Assert.Contains(fdb, e => e.Peer.Name == "node-2");
    }

    private static byte[] Vxlan(uint vni, byte[] inner, byte flags = VxlanView.FlagVniValid)
    {
        byte[] d = new byte[8 + inner.Length];
        new VxlanRepr(vni, flags).Emit(d);
        inner.CopyTo(d, 8);
        return d;
    }

    [Fact]
    public void Decap_counts_every_kind_of_bad_datagram_and_never_throws()
    {
        (Datapath dp, MemoryPort pod, MemoryPort tunnel) = BuildL2Overlay();
        uint node1 = Ipv4Address.Parse("198.18.0.1").Value;
        byte[] good = Make(Mac(1), Mac(2));
        tunnel.Inject(new byte[5], node1);
        tunnel.Inject(Vxlan(1, good).AsSpan(0, 20), node1);
        tunnel.Inject(Vxlan(1, good, flags: 0), node1);
        tunnel.Inject(Vxlan(2, good), node1);
        tunnel.Inject(Vxlan(1, good), Ipv4Address.Parse("198.18.0.99").Value);
        tunnel.Inject(Vxlan(1, Make(Mac(1), MacAddress.Broadcast)), node1);
        tunnel.Inject(Vxlan(1, good, flags: 0x08 | 0x80), node1); // reserved flag bits are ignored on receipt
        dp.RunOnce();
        long D(string reason) => dp.Graph.Drop.NonZero().Where(d => d.Stage == "vxlan-decap" && d.Reason == reason).Sum(d => d.Count);
        Assert.Equal(2, D("truncated"));
        Assert.Equal(1, D("no-vni-flag"));
        Assert.Equal(1, D("unknown-vni"));
        Assert.Equal(1, D("unknown-peer"));
        Assert.Equal(1, D("bad-inner-source"));
        Assert.Single(pod.Transmitted);

        var rng = new Random(7);
        for (int i = 0; i < 5000; i++)
        {
            byte[] junk = new byte[rng.Next(0, 200)];
            rng.NextBytes(junk);
            if (junk.Length > 0 && rng.Next(2) == 0) junk[0] |= VxlanView.FlagVniValid;
            if (junk.Length > 7 && rng.Next(2) == 0) { junk[4] = 0; junk[5] = 0; junk[6] = 1; }
            tunnel.Inject(junk, rng.Next(3) == 0 ? node1 : (uint)rng.Next());
            if (i % 64 == 0) dp.RunOnce();
        }
        while (tunnel.PendingRx > 0) dp.RunOnce();
        Assert.Equal(dp.Slab.Capacity, dp.Slab.FreeCount);
    }

    [Fact]
    public void Unknown_peers_are_learned_only_when_allowed()
    {
        (Datapath dp, MemoryPort pod, MemoryPort tunnel) = BuildL2Overlay(acceptUnknown: true);
        tunnel.Inject(Vxlan(1, Make(Mac(1), Mac(9))), Ipv4Address.Parse("198.18.0.77").Value);
        dp.RunOnce();
        Assert.Single(pod.Transmitted);
        Assert.Contains(dp.Overlay!.Peers, p => p.Address == Ipv4Address.Parse("198.18.0.77") && !p.IsStatic);
    }

    [Fact]
    public void Flood_and_learn_replicates_to_every_peer_then_learns_and_unicasts()
    {
        (Datapath dp, MemoryPort pod, MemoryPort tunnel) = BuildL2Overlay();
        byte[] bcast = Make(MacAddress.Broadcast, Mac(1));
        pod.Inject(bcast);
        dp.RunOnce();
        Assert.Equal(2, tunnel.Transmitted.Count);
        Assert.Equal([Ipv4Address.Parse("198.18.0.1").Value, Ipv4Address.Parse("198.18.0.2").Value], tunnel.TransmittedPeers.Order().ToArray());
        foreach (byte[] d in tunnel.Transmitted)
        {
            Assert.Equal(bcast, d.AsSpan(OverlayPeer.OuterSize).ToArray());
            Assert.True(Checksum.IsValid(d.AsSpan(0, 20)));
        }
        // node-2 answers; its pod MAC is learned behind node-2 and the next frame goes only there.
        tunnel.Inject(Vxlan(1, Make(Mac(1), Mac(2))), Ipv4Address.Parse("198.18.0.2").Value);
        dp.RunOnce();
        Assert.Single(pod.Transmitted);
        tunnel.ClearTransmitted();
        pod.Inject(Make(Mac(2), Mac(1)));
        dp.RunOnce();
        Assert.Equal(Ipv4Address.Parse("198.18.0.2").Value, Assert.Single(tunnel.TransmittedPeers));
        Assert.Equal(dp.Slab.Capacity, dp.Slab.FreeCount);
    }

    [Fact]
    public void Without_learning_nothing_is_replicated_and_unknown_destinations_are_dropped()
    {
        (Datapath dp, MemoryPort pod, MemoryPort tunnel) = BuildL2Overlay(learning: false);
        pod.Inject(Make(MacAddress.Broadcast, Mac(1)));
        dp.RunOnce();
        Assert.Empty(tunnel.Transmitted);
    }

    [Fact]
    public unsafe void Source_port_is_stable_per_flow_and_in_the_dynamic_range()
    {
        var ports = new HashSet<ushort>();
        for (int i = 0; i < 200; i++)
        {
            byte[] f = L3Frames.Udp(Mac(1), Mac(2), "10.244.1.2", "10.244.2.2", (ushort)(1000 + i), 80);
            fixed (byte* p = f)
            {
                ushort a = VxlanEncapStage.SourcePort(p, f.Length);
                Assert.Equal(a, VxlanEncapStage.SourcePort(p, f.Length));
                Assert.InRange(a, (ushort)49152, ushort.MaxValue);
                ports.Add(a);
            }
        }
        Assert.True(ports.Count > 150, $"only {ports.Count} distinct source ports for 200 flows");
    }
}

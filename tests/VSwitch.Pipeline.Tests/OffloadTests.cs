using System.Buffers.Binary;

namespace VSwitch.Pipeline.Tests;

/// <summary>Super-frames and partial checksums: the virtio-net header, software segmentation and checksum completion,
/// checked against a slow checksum oracle and hand-built frames.</summary>
public unsafe class OffloadTests
{
    private const int Eth = 14;

    /// <summary>An Ethernet + IPv4 (or IPv6) + TCP frame with <paramref name="payload"/> bytes of pattern data. The TCP
    /// checksum field holds the pseudo-header sum only when <paramref name="partial"/>, else the full checksum.</summary>
    internal static byte[] TcpFrame(int payload, bool ipv6 = false, bool partial = true, byte flags = 0x18 /* PSH ACK */, int tcpOptions = 12)
    {
        int l3 = ipv6 ? 40 : 20;
        int tcpLen = 20 + tcpOptions;
        var f = new byte[Eth + l3 + tcpLen + payload];
        f[0] = 0x02; f[5] = 0x02; f[6] = 0x02; f[11] = 0x01; // dst 02:..:02, src 02:..:01
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), ipv6 ? (ushort)0x86DD : (ushort)0x0800);
        Span<byte> ip = f.AsSpan(Eth);
        if (ipv6)
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(tcpLen + payload));
            ip[6] = 6;
            ip[7] = 64;
            ip[8] = 0xfd; ip[23] = 0x02; // fd00::2
            ip[24] = 0xfd; ip[39] = 0x03; // fd00::3
        }
        else
        {
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(l3 + tcpLen + payload));
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0x1234);
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 6;
            new byte[] { 10, 244, 1, 2 }.CopyTo(ip[12..]);
            new byte[] { 10, 244, 1, 3 }.CopyTo(ip[16..]);
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~ChecksumTests.SlowSum(ip[..20]));
        }
        Span<byte> tcp = ip[l3..];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], 0xFFFF_F000); // wraps within the test
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 77);
        tcp[12] = (byte)(tcpLen / 4 << 4);
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 502);
        for (int i = 20; i < tcpLen; i++) tcp[i] = 1; // NOPs
        for (int i = 0; i < payload; i++) tcp[tcpLen + i] = (byte)(i * 7 + 3);
        ushort pseudo = PseudoSum(ip, ipv6, tcp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], partial ? pseudo : (ushort)~ChecksumTests.SlowSum(tcp, pseudo));
        return f;
    }

    private static ushort PseudoSum(ReadOnlySpan<byte> ip, bool ipv6, int tcpLength)
    {
        var p = new List<byte>();
        if (ipv6)
        {
            p.AddRange(ip.Slice(8, 32).ToArray());
            p.AddRange([(byte)(tcpLength >> 24), (byte)(tcpLength >> 16), (byte)(tcpLength >> 8), (byte)tcpLength, 0, 0, 0, 6]);
        }
        else
        {
            p.AddRange(ip.Slice(12, 8).ToArray());
            p.AddRange([0, 6, (byte)(tcpLength >> 8), (byte)tcpLength]);
        }
        return ChecksumTests.SlowSum(p.ToArray());
    }

    private static bool TcpChecksumGood(ReadOnlySpan<byte> frame, bool ipv6)
    {
        ReadOnlySpan<byte> ip = frame[Eth..];
        ReadOnlySpan<byte> tcp = ip[(ipv6 ? 40 : 20)..];
        return ChecksumTests.SlowSum(tcp, PseudoSum(ip, ipv6, tcp.Length)) == 0xFFFF;
    }

    private static int Put(PacketSlab slab, byte[] frame, GsoType gso = GsoType.None, ushort mss = 0, bool partial = true)
    {
        Assert.True(slab.TryAllocFrame(frame, out int s));
        ref PacketMeta m = ref slab.Meta[s];
        m.Gso = gso;
        m.GsoSize = mss;
        if (partial) m.Flags |= PacketFlags.ChecksumPartial;
        return s;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_super_frame_is_cut_into_mss_sized_segments_with_their_own_headers_and_checksums(bool ipv6)
    {
        var slab = new PacketSlab(64, largeCapacity: 2);
        byte[] big = TcpFrame(3500, ipv6, flags: 0x19 /* FIN PSH ACK */);
        int s = Put(slab, big, ipv6 ? GsoType.Tcp6 : GsoType.Tcp4, 1448);
        Assert.True(slab.IsLarge(s));
        Span<int> segs = stackalloc int[8];
        int n = Offload.Segment(slab, s, segs);
        Assert.Equal(3, n);
        int l3 = ipv6 ? 40 : 20;
        int hdr = Eth + l3 + 32;
        int[] payloads = [1448, 1448, 604];
        for (int k = 0; k < n; k++)
        {
            ref PacketMeta m = ref slab.Meta[segs[k]];
            Assert.False(slab.IsLarge(segs[k]));
            Assert.Equal(GsoType.None, m.Gso);
            Assert.Equal(PacketFlags.ChecksumValid, m.Flags & (PacketFlags.ChecksumPartial | PacketFlags.ChecksumValid));
            Span<byte> f = slab.Frame(segs[k]);
            Assert.Equal(hdr + payloads[k], f.Length);
            Assert.True(f[..12].SequenceEqual(big.AsSpan(0, 12)));
            if (ipv6)
            {
                Assert.Equal(32 + payloads[k], BinaryPrimitives.ReadUInt16BigEndian(f[(Eth + 4)..]));
            }
            else
            {
                Assert.Equal(l3 + 32 + payloads[k], BinaryPrimitives.ReadUInt16BigEndian(f[(Eth + 2)..]));
                Assert.Equal(0x1234 + k, BinaryPrimitives.ReadUInt16BigEndian(f[(Eth + 4)..]));
                Assert.Equal(0xFFFF, ChecksumTests.SlowSum(f.Slice(Eth, 20)));
            }
            Span<byte> tcp = f[(Eth + l3)..];
            Assert.Equal(unchecked(0xFFFF_F000u + (uint)(k * 1448)), BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]));
            Assert.Equal(k == n - 1 ? 0x19 : 0x10, tcp[13]); // FIN and PSH on the last segment only
            Assert.True(TcpChecksumGood(f, ipv6), $"segment {k} TCP checksum");
            Assert.True(f[hdr..].SequenceEqual(big.AsSpan(hdr + k * 1448, payloads[k])), $"segment {k} payload");
        }
    }

    /// <summary>A UDP GRO train as the tunnel socket reads it: each segment behind an 8-byte VXLAN-like prefix, at a
    /// fixed stride (the first segment's datagram size).</summary>
    private static byte[] Train(PacketSlab slab, ReadOnlySpan<int> segs, out int stride)
    {
        const int prefix = 8;
        stride = prefix + slab.Frame(segs[0]).Length;
        var train = new List<byte>();
        for (int k = 0; k < segs.Length; k++)
        {
            train.AddRange(new byte[] { 0x08, 0, 0, 0, 0, 0, 1, 0 });
            train.AddRange(slab.Frame(segs[k]).ToArray());
        }
        return [.. train];
    }

    private static (int Length, ushort Mss, byte[] Out, int Merged) Coalesce(byte[] train, int stride, int room = 70_000)
    {
        var dst = new byte[Math.Max(room, 0)];
        fixed (byte* t = train)
        fixed (byte* d = dst)
        {
            int n = Offload.CoalesceTcp4(t, train.Length, stride, 8, d, room, out ushort mss, out int merged);
            Assert.True(n == 0 ? merged == 0 : merged >= 2);
            return (n, mss, dst[..n], merged);
        }
    }

    [Theory]
    [InlineData(3500, 1448)]
    [InlineData(60_000, 1398)]
    [InlineData(2 * 1398, 1398)]
    public void A_train_of_consecutive_segments_coalesces_back_into_the_super_frame(int payload, int mss)
    {
        var slab = new PacketSlab(128, largeCapacity: 2);
        byte[] big = TcpFrame(payload);
        int s = Put(slab, big, GsoType.Tcp4, (ushort)mss);
        Span<int> segs = stackalloc int[64];
        int n = Offload.Segment(slab, s, segs);
        byte[] train = Train(slab, segs[..n], out int stride);
        (int length, ushort got, byte[] outFrame, int merged) = Coalesce(train, stride);
        Assert.Equal(n, merged);
        Assert.Equal(8 + big.Length, length);
        Assert.Equal(mss, got);
        Assert.True(outFrame.AsSpan(0, 8).SequenceEqual(train.AsSpan(0, 8)));
        // The very frame the TAP handed over: headers, payload, and the TCP checksum field holding the pseudo-header sum.
        Assert.Equal(Convert.ToHexString(big), Convert.ToHexString(outFrame.AsSpan(8)));
    }

    [Fact]
    public void A_run_ends_at_the_first_segment_that_does_not_continue_it()
    {
        var slab = new PacketSlab(128, largeCapacity: 2);
        Span<int> segs = stackalloc int[8];
        int n = Offload.Segment(slab, Put(slab, TcpFrame(4000, flags: 0x10), GsoType.Tcp4, 1000), segs);
        Assert.Equal(4, n);
        byte[] good = Train(slab, segs[..n], out int stride);
        Assert.Equal(4, Coalesce(good, stride).Merged);
        int tcp = 8 + Eth + 20;
        // (what, segment changed, fresh checksums after the change, datagrams merged from the first).
        // Without fresh checksums only the checksum is wrong; with them only the property named.
        var cases = new List<(string, int Segment, bool Refresh, int Merged, Action<byte[]>)>
        {
            ("a payload byte changed (TCP checksum)", 2, false, 2, t => t[2 * stride + tcp + 40] ^= 1),
            ("an IPv4 header byte changed (header checksum)", 1, false, 0, t => t[stride + 8 + Eth + 8] ^= 1),
            ("another TTL", 1, true, 0, t => t[stride + 8 + Eth + 8] ^= 1),
            ("another destination port", 2, true, 2, t => t[2 * stride + tcp + 3] ^= 1),
            ("a sequence gap", 3, true, 3, t => t[3 * stride + tcp + 7] ^= 4),
            ("another ack", 2, true, 2, t => t[2 * stride + tcp + 11] ^= 1),
            ("another window", 1, true, 0, t => t[stride + tcp + 15] ^= 1),
            ("other TCP options (timestamps)", 2, true, 2, t => t[2 * stride + tcp + 20] = 0),
            ("another VNI", 1, false, 0, t => t[stride + 6] ^= 1),
            ("another source MAC", 3, false, 3, t => t[3 * stride + 8 + 11] ^= 1),
            ("FIN", 3, true, 3, t => t[3 * stride + tcp + 13] |= 0x01),
            ("PSH ends the run, included", 1, true, 2, t => t[stride + tcp + 13] |= 0x08),
            ("PSH on the first", 0, true, 0, t => t[tcp + 13] |= 0x08),
            ("SYN on the first", 0, true, 0, t => t[tcp + 13] |= 0x02),
            ("a fragment", 2, true, 2, t => t[2 * stride + 8 + Eth + 6] |= 0x20),
        };
        foreach ((string what, int segment, bool refresh, int merged, Action<byte[]> mutate) in cases)
        {
            byte[] t = (byte[])good.Clone();
            mutate(t);
            if (refresh) RefreshChecksums(t.AsSpan(segment * stride + 8, Math.Min(stride, t.Length - segment * stride) - 8));
            Assert.True(Coalesce(t, stride).Merged == merged, $"{what}: merged {Coalesce(t, stride).Merged}, expected {merged}");
        }
        Assert.Equal(0, Coalesce(good.AsSpan(0, stride).ToArray(), stride).Length); // one datagram: nothing to merge
        Assert.Equal(2, Coalesce(good, stride, room: 8 + 66 + 2500).Merged); // a run stops where the slot is full
        Assert.Equal(0, Coalesce(good, stride, room: 1000).Length);
        Assert.Equal(0, Coalesce(good, stride - 1).Length); // a stride that is not the datagrams'
        // Pure ACKs of one flow (no payload) must stay separate packets.
        var acks = new List<byte>();
        for (int k = 0; k < 3; k++) { acks.AddRange(new byte[8]); acks.AddRange(TcpFrame(0, partial: false, flags: 0x10)); }
        Assert.Equal(0, Coalesce([.. acks], 8 + TcpFrame(0).Length).Length);
    }

    [Fact]
    public void Back_to_back_super_frames_in_one_train_coalesce_into_one_super_frame_each()
    {
        // What a sender's run of small TSO frames looks like after UDP GSO and GRO: each ends with PSH.
        var slab = new PacketSlab(128, largeCapacity: 2);
        byte[] a = TcpFrame(3000), b = TcpFrame(2000);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(Eth + 20 + 4), 0xFFFF_F000 + 3000); // b follows a
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(Eth + 20 + 16), 0);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(Eth + 20 + 16), PseudoSum(b.AsSpan(Eth), false, b.Length - Eth - 20));
        Span<int> segs = stackalloc int[8];
        int na = Offload.Segment(slab, Put(slab, a, GsoType.Tcp4, 1000), segs);
        int nb = Offload.Segment(slab, Put(slab, b, GsoType.Tcp4, 1000), segs[na..]);
        byte[] train = Train(slab, segs[..(na + nb)], out int stride);
        (int first, _, byte[] outA, int mergedA) = Coalesce(train, stride);
        Assert.Equal(3, mergedA);
        Assert.Equal(Convert.ToHexString(a), Convert.ToHexString(outA.AsSpan(8, first - 8)));
        (int second, _, byte[] outB, int mergedB) = Coalesce(train[(3 * stride)..], stride);
        Assert.Equal(2, mergedB);
        Assert.Equal(Convert.ToHexString(b), Convert.ToHexString(outB.AsSpan(8, second - 8)));
    }

    /// <summary>Recomputes the IPv4 header and full TCP checksums of an Ethernet/IPv4/TCP frame.</summary>
    private static void RefreshChecksums(Span<byte> frame)
    {
        Span<byte> ip = frame[Eth..];
        ip[10] = ip[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~ChecksumTests.SlowSum(ip[..20]));
        Span<byte> tcp = ip[20..];
        tcp[16] = tcp[17] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], (ushort)~ChecksumTests.SlowSum(tcp, PseudoSum(ip, false, tcp.Length)));
    }

    [Fact]
    public void Coalescing_never_throws_on_random_trains()
    {
        var rng = new Random(7);
        var slab = new PacketSlab(128, largeCapacity: 2);
        Span<int> segs = stackalloc int[8];
        int n = Offload.Segment(slab, Put(slab, TcpFrame(5000), GsoType.Tcp4, 1200), segs);
        byte[] good = Train(slab, segs[..n], out int stride);
        for (int i = 0; i < 2000; i++)
        {
            byte[] t = (byte[])good.Clone();
            for (int k = rng.Next(1, 6); k > 0; k--) t[rng.Next(t.Length)] = (byte)rng.Next(256);
            int len = rng.Next(1, t.Length + 1);
            _ = Coalesce(t[..len], rng.Next(1, stride + 50), room: rng.Next(0, 8000));
        }
    }

    [Fact]
    public void Segmenting_allocates_nothing_when_the_slab_runs_out()
    {
        var slab = new PacketSlab(2, largeCapacity: 1);
        int s = Put(slab, TcpFrame(5000), GsoType.Tcp4, 1000);
        Assert.Equal(-1, Offload.Segment(slab, s, stackalloc int[16]));
        Assert.Equal(2, slab.FreeCount);
        Assert.Equal(-1, Offload.Segment(slab, s, stackalloc int[2])); // 5 segments do not fit 2 places
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_partial_checksum_is_completed_to_the_full_one(bool ipv6)
    {
        var slab = new PacketSlab(8);
        byte[] full = TcpFrame(301, ipv6, partial: false);
        int s = Put(slab, TcpFrame(301, ipv6, partial: true));
        Assert.True(Offload.CompleteChecksum(slab, s));
        Assert.True(slab.Frame(s).SequenceEqual(full));
        Assert.Equal(PacketFlags.ChecksumValid, slab.Meta[s].Flags & (PacketFlags.ChecksumPartial | PacketFlags.ChecksumValid));
    }

    [Fact]
    public void The_virtio_header_round_trips_a_super_frame()
    {
        byte[] frame = TcpFrame(4000);
        byte* h = stackalloc byte[Offload.VirtioHeaderSize];
        // What the kernel writes for a TSO4 frame: NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size 1448, csum_start 34, csum_offset 16.
        byte[] kernel = [1, 1, 66, 0, 0xA8, 0x05, 34, 0, 16, 0];
        fixed (byte* f = frame)
        {
            var m = default(PacketMeta);
            fixed (byte* k = kernel) Assert.True(Offload.Import(k, f, frame.Length, ref m));
            Assert.Equal(GsoType.Tcp4, m.Gso);
            Assert.Equal(1448, m.GsoSize);
            Assert.True((m.Flags & PacketFlags.ChecksumPartial) != 0);
            m.Length = frame.Length;
            Offload.Export(m, f, h);
            Assert.True(new ReadOnlySpan<byte>(h, 10).SequenceEqual(kernel));
        }
    }

    [Fact]
    public void Unoffered_or_contradictory_virtio_headers_are_refused()
    {
        byte[] frame = TcpFrame(100);
        fixed (byte* f = frame)
        {
            byte[][] bad =
            [
                [1, 3, 0, 0, 0xA8, 0x05, 34, 0, 6, 0], // UFO
                [1, 0x81, 66, 0, 0xA8, 0x05, 34, 0, 16, 0], // TCPV4 | ECN
                [1, 4, 66, 0, 0xA8, 0x05, 34, 0, 16, 0], // TCPV6 on an IPv4 frame
                [1, 1, 66, 0, 0, 0, 34, 0, 16, 0], // gso_size 0
                [0, 1, 66, 0, 0xA8, 0x05, 34, 0, 16, 0], // GSO without NEEDS_CSUM
                [1, 0, 0, 0, 0, 0, 0xF0, 0x00, 16, 0], // checksum beyond the frame
            ];
            foreach (byte[] b in bad)
            {
                var m = default(PacketMeta);
                fixed (byte* h = b) Assert.False(Offload.Import(h, f, frame.Length, ref m), string.Join(",", b));
            }
        }
    }

    [Fact]
    public void A_partial_checksum_at_an_unusual_place_is_completed_on_import()
    {
        // NEEDS_CSUM over the whole IPv4 payload with the field where TCP keeps it, but announced from csum_start 14:
        // not the transport header, so it is finished on the spot (generic skb_checksum_help) and marked valid.
        byte[] frame = TcpFrame(50);
        frame[Eth + 20 + 16] = frame[Eth + 20 + 17] = 0;
        byte[] hdr = [1, 0, 0, 0, 0, 0, 34 - 20, 0, 20 + 16, 0];
        fixed (byte* f = frame)
        fixed (byte* h = hdr)
        {
            var m = default(PacketMeta);
            Assert.True(Offload.Import(h, f, frame.Length, ref m));
            Assert.Equal(PacketFlags.ChecksumValid, m.Flags);
        }
        Assert.Equal(0xFFFF, ChecksumTests.SlowSum(frame.AsSpan(Eth)));
    }

    private struct NoOffloads : IEgressOffloads
    {
        public readonly PortOffloads For(ref PacketMeta m) => PortOffloads.None;
    }

    private struct AllOffloads : IEgressOffloads
    {
        public readonly PortOffloads For(ref PacketMeta m) => PortOffloads.All;
    }

    [Fact]
    public void Resolve_replaces_a_super_frame_by_its_segments_in_place_and_in_order()
    {
        var slab = new PacketSlab(64, largeCapacity: 2);
        var batch = new PacketBatch(16);
        int a = Put(slab, TcpFrame(10, partial: false), partial: false);
        int big = Put(slab, TcpFrame(3000), GsoType.Tcp4, 1000);
        int c = Put(slab, TcpFrame(20));
        batch.Add(a);
        batch.Add(big);
        batch.Add(c);
        var all = new AllOffloads();
        Assert.Equal(0, Offload.Resolve(slab, batch, ref all, new int[16], out int none));
        Assert.Equal(0, none);
        Assert.Equal([a, big, c], batch.AsSpan().ToArray());
        var no = new NoOffloads();
        Assert.Equal(0, Offload.Resolve(slab, batch, ref no, new int[16], out int segmented));
        Assert.Equal(1, segmented);
        Assert.Equal(5, batch.Count);
        Assert.Equal(a, batch.Slots[0]);
        Assert.Equal(c, batch.Slots[4]);
        for (int i = 1; i <= 3; i++) Assert.True(TcpChecksumGood(slab.Frame(batch.Slots[i]), false));
        Assert.True(TcpChecksumGood(slab.Frame(c), false)); // its partial checksum was completed
        Assert.Equal(slab.LargeCapacity, slab.LargeFreeCount); // the super-frame's slot went back
    }

    [Fact]
    public void Resolve_drops_and_counts_what_does_not_fit_the_batch()
    {
        var slab = new PacketSlab(64, largeCapacity: 2);
        var batch = new PacketBatch(4);
        batch.Add(Put(slab, TcpFrame(3000), GsoType.Tcp4, 500)); // 6 segments, 3 places left after the next packet
        batch.Add(Put(slab, TcpFrame(10)));
        var no = new NoOffloads();
        Assert.Equal(1, Offload.Resolve(slab, batch, ref no, new int[4], out _));
        Assert.Equal(1, batch.Count);
        Assert.Equal(63, slab.FreeCount);
        Assert.Equal(2, slab.LargeFreeCount);
    }

    [Fact]
    public void Large_slots_live_beside_standard_ones()
    {
        var slab = new PacketSlab(4, largeCapacity: 2);
        Assert.True(slab.TryAlloc(out int small));
        Assert.True(slab.TryAllocLarge(out int l1));
        Assert.True(slab.TryAllocLarge(out int l2));
        Assert.False(slab.TryAllocLarge(out _));
        Assert.False(slab.IsLarge(small));
        Assert.True(slab.IsLarge(l1) && slab.IsLarge(l2));
        Assert.Equal(PacketSlab.DefaultLargeSlotSize, (int)(slab.SlotPointer(l2) - slab.SlotPointer(l1)) * (l2 > l1 ? 1 : -1));
        Assert.Equal(0, (nint)slab.SlotPointer(l1) & 63);
        slab.Free(l1);
        Assert.Equal(1, slab.LargeFreeCount);
        Assert.Equal(3, slab.FreeCount);
        Assert.False(slab.TryAllocFrame(new byte[slab.MaxLargeFrameLength + 1], out _));
        Assert.True(slab.TryAllocFrame(new byte[slab.MaxFrameLength + 1], out int big));
        Assert.True(slab.IsLarge(big));
    }
}

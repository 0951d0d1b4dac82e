using System.Buffers.Binary;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat.Tests;

public sealed class ConntrackTests
{
    private const long Tps = 1_000_000_000;

    private static FlowKey K(uint src, uint dst, ushort sp, ushort dp, byte proto = IpProtocol.Tcp) => new(src, dst, sp, dp, proto);

    [Fact]
    public void Hash_is_symmetric_and_salted()
    {
        var rng = new Random(1);
        for (int i = 0; i < 1000; i++)
        {
            FlowKey k = K((uint)rng.Next(), (uint)rng.Next(), (ushort)rng.Next(), (ushort)rng.Next(), rng.Next(2) == 0 ? IpProtocol.Tcp : IpProtocol.Udp);
            Assert.Equal(FlowHash.Symmetric(k, 42), FlowHash.Symmetric(k.Inverse(), 42));
            Assert.NotEqual(FlowHash.Symmetric(k, 42), FlowHash.Symmetric(k, 43));
        }
        var echo = K(1, 2, 77, IcmpType.EchoRequest, IpProtocol.Icmp);
        Assert.Equal(FlowHash.Symmetric(echo, 5), FlowHash.Symmetric(echo.Inverse(), 5));
        Assert.Equal(IcmpType.EchoReply, echo.Inverse().DstPort);
    }

    [Fact]
    public void Entries_are_found_from_both_directions_and_deleted()
    {
        var ct = new Conntrack(64, new ConntrackTimeouts(), Tps);
        FlowKey orig = K(1, 2, 1000, 80), reply = K(3, 1, 8080, 1000);
        int e = ct.Create(orig, reply, CtState.SynSent, 0);
        Assert.True(e >= 0);
        Assert.Equal(e * 2, ct.Lookup(orig, ct.Hash(orig)));
        Assert.Equal(e * 2 + 1, ct.Lookup(reply, ct.Hash(reply)));
        Assert.Equal(-1, ct.Lookup(orig.Inverse(), ct.Hash(orig.Inverse())));
        Assert.Equal(Conntrack.OrigInUse, ct.Create(orig, K(9, 9, 9, 9), CtState.SynSent, 0));
        Assert.Equal(Conntrack.ReplyInUse, ct.Create(K(7, 7, 7, 7), reply, CtState.SynSent, 0));
        ct.Delete(e);
        Assert.Equal(-1, ct.Lookup(orig, ct.Hash(orig)));
        Assert.Equal(0, ct.Count);
    }

    [Fact]
    public void Random_inserts_and_deletes_agree_with_a_dictionary()
    {
        // A small table so probes cross buckets and overflow counts matter.
        var ct = new Conntrack(512, new ConntrackTimeouts(), Tps, salt: 7);
        var model = new Dictionary<FlowKey, int>();
        var live = new List<int>();
        var rng = new Random(3);
        for (int step = 0; step < 200_000; step++)
        {
            if (live.Count < 500 && rng.Next(3) != 0)
            {
                FlowKey o = K((uint)rng.Next(64), (uint)rng.Next(64), (ushort)rng.Next(16), 80);
                FlowKey r = K((uint)rng.Next(64) + 1000, o.Src, 8080, o.SrcPort);
                int e = ct.Create(o, r, CtState.SynSent, 0);
                bool expectOk = !model.ContainsKey(o) && !model.ContainsKey(r) && o != r;
                Assert.Equal(expectOk, e >= 0);
                if (e >= 0)
                {
                    model[o] = e * 2;
                    model[r] = e * 2 + 1;
                    live.Add(e);
                }
            }
            else if (live.Count > 0)
            {
                int i = rng.Next(live.Count);
                int e = live[i];
                live[i] = live[^1];
                live.RemoveAt(live.Count - 1);
                model.Remove(ct[e].Orig);
                model.Remove(ct[e].Reply);
                ct.Delete(e);
            }
            if (step % 997 == 0)
            {
                foreach ((FlowKey k, int r) in model) Assert.Equal(r, ct.Lookup(k, ct.Hash(k)));
                for (int j = 0; j < 50; j++)
                {
                    FlowKey k = K((uint)rng.Next(64), (uint)rng.Next(64), (ushort)rng.Next(16), 81);
                    Assert.Equal(-1, ct.Lookup(k, ct.Hash(k)));
                }
            }
        }
        Assert.Equal(live.Count, ct.Count);
    }

    [Fact]
    public void Full_table_refuses_and_sweep_frees_by_timeout()
    {
        var t = new ConntrackTimeouts { UdpUnreplied = TimeSpan.FromSeconds(30), UdpAssured = TimeSpan.FromSeconds(120) };
        var ct = new Conntrack(16, t, Tps);
        for (int i = 0; i < 16; i++) Assert.True(ct.Create(K(1, 2, (ushort)i, 53, IpProtocol.Udp), K(2, 1, 53, (ushort)i, IpProtocol.Udp), CtState.Unreplied, 0) >= 0);
        Assert.Equal(Conntrack.Full, ct.Create(K(1, 2, 100, 53, IpProtocol.Udp), K(2, 1, 53, 100, IpProtocol.Udp), CtState.Unreplied, 0));
        ct[0].Status |= CtStatus.Assured;
        ct[0].Expires = ct.TimeoutFor(ref ct[0]);
        Assert.Equal(0, ct.Sweep(29 * Tps));
        Assert.Equal(15, ct.Sweep(31 * Tps));
        Assert.Equal(1, ct.Count);
        Assert.Equal(1, ct.Sweep(121 * Tps));
    }

    [Fact]
    public void An_entry_has_room_for_a_verdict_and_a_mark_within_88_bytes()
    {
        Assert.True(System.Runtime.CompilerServices.Unsafe.SizeOf<CtEntry>() <= 88, $"CtEntry is {System.Runtime.CompilerServices.Unsafe.SizeOf<CtEntry>()} bytes");
        var ct = new Conntrack(16, new ConntrackTimeouts(), Tps);
        int e = ct.Create(K(1, 2, 3, 4), K(2, 1, 4, 3), CtState.SynSent, 0);
        Assert.Equal((CtVerdict.None, (ushort)0), (ct[e].Verdict, ct[e].Mark));
    }

    [Fact]
    public void Expiry_steps_are_bounded_and_go_round_the_table()
    {
        var t = new ConntrackTimeouts { UdpUnreplied = TimeSpan.FromSeconds(30) };
        var ct = new Conntrack(64, t, Tps);
        for (int i = 0; i < 64; i++) Assert.True(ct.Create(K(1, 2, (ushort)i, 53, IpProtocol.Udp), K(2, 1, 53, (ushort)i, IpProtocol.Udp), CtState.Unreplied, 0) >= 0);
        Assert.True(ct.IsExpired(5, 31 * Tps));
        Assert.False(ct.IsExpired(5, 29 * Tps));
        // Each step looks at 10 entries, no more; seven steps go once round the 64 and on.
        int swept = 0;
        for (int step = 0; step < 6; step++)
        {
            int n = ct.SweepStep(31 * Tps, 10);
            Assert.Equal(10, n);
            swept += n;
        }
        Assert.Equal(4, ct.SweepStep(31 * Tps, 10));
        Assert.Equal(0, ct.Count);
        Assert.Equal(60, swept);
    }

    [Fact]
    public void Timeouts_follow_the_kubernetes_node_defaults()
    {
        var ct = new Conntrack(16, new ConntrackTimeouts(), Tps);
        CtEntry e = default;
        e.Orig.Proto = IpProtocol.Tcp;
        (CtState State, double Seconds)[] expect =
        [
            (CtState.SynSent, 120), (CtState.SynRecv, 60), (CtState.Established, 86400), (CtState.FinWait, 120),
            (CtState.CloseWait, 3600), (CtState.LastAck, 30), (CtState.TimeWait, 120), (CtState.Close, 10),
        ];
        foreach ((CtState s, double sec) in expect)
        {
            e.State = s;
            Assert.Equal(sec, ct.TimeoutFor(ref e) / (double)Tps);
        }
        e.Orig.Proto = IpProtocol.Udp;
        Assert.Equal(30, ct.TimeoutFor(ref e) / Tps);
        e.Status = CtStatus.Assured;
        Assert.Equal(120, ct.TimeoutFor(ref e) / Tps);
    }

    [Fact]
    public void Tcp_state_machine_follows_open_and_close()
    {
        CtEntry e = default;
        e.State = CtState.SynSent;
        void Step(int dir, TcpFlags f, CtState expect)
        {
            Assert.True(Conntrack.TcpTransition(ref e, dir, f));
            Assert.Equal(expect, e.State);
        }
        Step(1, TcpFlags.Syn | TcpFlags.Ack, CtState.SynRecv);
        Step(0, TcpFlags.Ack, CtState.Established);
        Assert.True(e.Status.HasFlag(CtStatus.Assured));
        Step(0, TcpFlags.Ack | TcpFlags.Psh, CtState.Established);
        Step(0, TcpFlags.Fin | TcpFlags.Ack, CtState.FinWait);
        Step(1, TcpFlags.Ack, CtState.CloseWait);
        Step(1, TcpFlags.Fin | TcpFlags.Ack, CtState.LastAck);
        Step(0, TcpFlags.Ack, CtState.TimeWait);
        Step(0, TcpFlags.Syn, CtState.SynSent);
        Step(1, TcpFlags.Rst, CtState.Close);
        Assert.False(Conntrack.ValidTcpFlags(TcpFlags.Syn | TcpFlags.Fin));
        Assert.False(Conntrack.ValidTcpFlags(TcpFlags.Syn | TcpFlags.Rst));
        Assert.False(Conntrack.ValidTcpFlags(TcpFlags.Fin));
        Assert.False(Conntrack.ValidTcpFlags(TcpFlags.None));
        Assert.True(Conntrack.ValidTcpFlags(TcpFlags.Syn));
        Assert.True(Conntrack.ValidTcpFlags(TcpFlags.Fin | TcpFlags.Ack | TcpFlags.Psh));
    }
}

public sealed class NatRewriteTests
{
    private static byte[] Packet(Random rng, byte proto, bool udpZeroChecksum = false)
    {
        int payload = rng.Next(0, 200);
        int l4 = proto switch { IpProtocol.Tcp => 20, IpProtocol.Udp => 8, _ => 8 } + payload;
        byte[] p = new byte[20 + l4];
        new Ipv4Repr(new Ipv4Address((uint)rng.Next()), new Ipv4Address((uint)rng.Next()), proto, l4, Identification: (ushort)rng.Next()).Emit(p);
        rng.NextBytes(p.AsSpan(20));
        if (proto == IpProtocol.Tcp) p[32] = 5 << 4;
        if (proto == IpProtocol.Udp) BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), (ushort)l4);
        if (proto == IpProtocol.Icmp) p[20] = IcmpType.EchoRequest;
        Ipv4View.TryCreate(p, out Ipv4View ip);
        if (proto == IpProtocol.Icmp)
        {
            p[22] = p[23] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), Checksum.Compute(p.AsSpan(20)));
        }
        else
        {
            Checksum.TryUpdateTransport(ip);
            if (udpZeroChecksum) p[26] = p[27] = 0;
        }
        return p;
    }

    [Theory]
    [InlineData(IpProtocol.Tcp)]
    [InlineData(IpProtocol.Udp)]
    [InlineData(IpProtocol.Icmp)]
    public void Rewrite_keeps_checksums_equal_to_a_full_recompute_and_reverses_exactly(byte proto)
    {
        var rng = new Random(proto);
        for (int i = 0; i < 2000; i++)
        {
            byte[] p = Packet(rng, proto);
            byte[] original = (byte[])p.Clone();
            Assert.True(NatRewrite.TryReadKey(p, out FlowKey before, out _));
            var to = new FlowKey((uint)rng.Next(), (uint)rng.Next(), (ushort)rng.Next(), proto == IpProtocol.Icmp ? before.DstPort : (ushort)rng.Next(), proto);
            NatRewrite.Apply(p, to);
            Assert.True(NatRewrite.TryReadKey(p, out FlowKey after, out _));
            Assert.Equal(to, after);
            Ipv4View.TryCreate(p, out Ipv4View ip);
            Assert.True(ip.IsChecksumValid);
            // The incremental update must give what a full recompute gives (not merely a valid sum: +0/−0 differ).
            ushort got = BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(20 + Checksum.TransportChecksumOffset(proto)));
            Assert.True(Checksum.VerifyTransport(ip));
            byte[] recomputed = (byte[])p.Clone();
            Ipv4View.TryCreate(recomputed, out Ipv4View rip);
            if (proto == IpProtocol.Icmp)
            {
                recomputed[22] = recomputed[23] = 0;
                BinaryPrimitives.WriteUInt16BigEndian(recomputed.AsSpan(22), Checksum.Compute(recomputed.AsSpan(20)));
            }
            else
            {
                Checksum.TryUpdateTransport(rip);
            }
            ushort full = BinaryPrimitives.ReadUInt16BigEndian(recomputed.AsSpan(20 + Checksum.TransportChecksumOffset(proto)));
            Assert.True(got == full || (got ^ full) == 0xFFFF && (got == 0 || full == 0 || got == 0xFFFF || full == 0xFFFF), $"{got:x4} vs {full:x4}");
            NatRewrite.Apply(p, before);
            Assert.Equal(original, p);
        }
    }

    [Fact]
    public void Udp_without_checksum_stays_without()
    {
        var rng = new Random(9);
        byte[] p = Packet(rng, IpProtocol.Udp, udpZeroChecksum: true);
        NatRewrite.Apply(p, new FlowKey(1, 2, 3, 4, IpProtocol.Udp));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(26)));
        Ipv4View.TryCreate(p, out Ipv4View ip);
        Assert.True(ip.IsChecksumValid);
    }

    [Fact]
    public void Tcp_reset_answers_a_syn()
    {
        byte[] p = new byte[40];
        new Ipv4Repr(Ipv4Address.Parse("10.244.1.2"), Ipv4Address.Parse("10.96.0.10"), IpProtocol.Tcp, 20).Emit(p);
        new TcpRepr(40000, 80, 1234, 0, TcpFlags.Syn, 1000).Emit(p.AsSpan(20));
        int len = NatRewrite.BuildTcpReset(p);
        Assert.Equal(40, len);
        Assert.True(Ipv4View.TryCreate(p, out Ipv4View ip));
        Assert.True(ip.IsChecksumValid && Checksum.VerifyTransport(ip));
        Assert.Equal("10.96.0.10", ip.Source.ToString());
        Assert.True(TcpView.TryCreate(ip.Payload, out TcpView t));
        Assert.Equal((80, 40000), (t.SourcePort, t.DestinationPort));
        Assert.Equal(TcpFlags.Rst | TcpFlags.Ack, t.Flags);
        Assert.Equal(1235u, t.AcknowledgmentNumber);
    }
}

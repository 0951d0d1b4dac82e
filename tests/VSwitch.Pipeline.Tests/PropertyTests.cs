using System.Buffers.Binary;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline.Tests;

/// <summary>Seeded random tests: parsers never throw, parse∘emit = id, RFC 1624 updates = full recompute.</summary>
public class PropertyTests
{
    private static readonly byte[][] ValidFrames =
    [
        Frames.ArpRequest, Frames.ArpReply, Frames.EchoRequest, Frames.IgmpWithRouterAlert, Frames.Udp,
        Frames.UdpTagged, Frames.TcpSyn, Frames.FragmentationNeeded,
    ];

    private sealed class Tally
    {
        public int Ethernet, Arp, Ipv4, Icmp, Udp, Tcp;
    }

    /// <summary>Runs every view over <paramref name="b"/> and touches every accessor that TryCreate promised is safe.</summary>
    private static void ParseEverything(Span<byte> b, Tally t)
    {
        long sink = 0;
        if (EthernetView.TryCreate(b, out EthernetView eth))
        {
            t.Ethernet++;
            sink += (long)eth.Destination.Value + (long)eth.Source.Value + eth.EtherType + eth.VlanId + eth.Payload.Length;
            ParseL3(eth.EtherType, eth.Payload, t, ref sink);
        }
        _ = EthernetRepr.TryParse(b, out _);
        // Each view alone, at offset 0, over the same bytes.
        ParseL3(EtherType.Arp, b, t, ref sink);
        ParseL3(EtherType.Ipv4, b, t, ref sink);
        ParseL4(IpProtocol.Icmp, b, t, ref sink);
        ParseL4(IpProtocol.Udp, b, t, ref sink);
        ParseL4(IpProtocol.Tcp, b, t, ref sink);
        GC.KeepAlive(sink);
    }

    private static void ParseL3(ushort etherType, Span<byte> b, Tally t, ref long sink)
    {
        if (etherType == EtherType.Arp)
        {
            if (ArpView.TryCreate(b, out ArpView arp))
            {
                t.Arp++;
                sink += arp.Operation + (long)arp.SenderHardwareAddress.Value + arp.SenderProtocolAddress.Value
                      + (long)arp.TargetHardwareAddress.Value + arp.TargetProtocolAddress.Value;
            }
            _ = ArpRepr.TryParse(b, out _);
        }
        else if (etherType == EtherType.Ipv4)
        {
            if (Ipv4View.TryCreate(b, out Ipv4View ip))
            {
                t.Ipv4++;
                sink += ip.Version + ip.HeaderLength + ip.Options.Length + ip.Dscp + ip.Ecn + ip.TotalLength + ip.Identification
                      + (ip.DontFragment ? 1 : 0) + (ip.MoreFragments ? 1 : 0) + ip.FragmentOffset + (ip.IsFragment ? 1 : 0)
                      + ip.Ttl + ip.Protocol + ip.HeaderChecksum + ip.Source.Value + ip.Destination.Value + ip.Payload.Length
                      + (ip.IsChecksumValid ? 1 : 0) + (Checksum.VerifyTransport(ip) ? 1 : 0);
                if (Checksum.TryComputeTransport(ip, out ushort c)) sink += c;
                if (!ip.IsFragment || ip.FragmentOffset == 0) ParseL4(ip.Protocol, ip.Payload, t, ref sink);
            }
            _ = Ipv4Repr.TryParse(b, out _);
        }
    }

    private static void ParseL4(byte protocol, Span<byte> b, Tally t, ref long sink)
    {
        switch (protocol)
        {
            case IpProtocol.Icmp:
                if (IcmpView.TryCreate(b, out IcmpView icmp))
                {
                    t.Icmp++;
                    sink += icmp.Type + icmp.Code + icmp.Checksum + icmp.RestOfHeader + icmp.Identifier + icmp.SequenceNumber
                          + icmp.NextHopMtu + icmp.Payload.Length + (icmp.IsChecksumValid ? 1 : 0) + (icmp.IsError ? 1 : 0);
                }
                _ = IcmpRepr.TryParse(b, out _);
                break;
            case IpProtocol.Udp:
                if (UdpView.TryCreate(b, out UdpView udp))
                {
                    t.Udp++;
                    sink += udp.SourcePort + udp.DestinationPort + udp.Length + udp.Checksum + udp.Payload.Length;
                }
                _ = UdpRepr.TryParse(b, out _);
                break;
            case IpProtocol.Tcp:
                if (TcpView.TryCreate(b, out TcpView tcp))
                {
                    t.Tcp++;
                    sink += tcp.SourcePort + tcp.DestinationPort + tcp.SequenceNumber + tcp.AcknowledgmentNumber + tcp.HeaderLength
                          + (int)tcp.Flags + tcp.WindowSize + tcp.Checksum + tcp.UrgentPointer + tcp.Options.Length + tcp.Payload.Length;
                }
                _ = TcpRepr.TryParse(b, out _);
                break;
        }
    }

    /// <summary>Nudges random bytes towards almost-valid headers so the fuzz reaches the length checks, not just the version check.</summary>
    private static void MakePlausible(Span<byte> b, Random rng)
    {
        if (b.Length < 20) return;
        switch (rng.Next(4))
        {
            case 0: // IPv4 at offset 0 with a total length around the span length
                b[0] = (byte)(0x40 | rng.Next(16));
                BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)Math.Max(0, b.Length + rng.Next(-30, 4)));
                break;
            case 1: // UDP length around the span length
                BinaryPrimitives.WriteUInt16BigEndian(b[4..], (ushort)Math.Max(0, b.Length + rng.Next(-30, 4)));
                break;
            case 2: // Ethernet + ARP
                BinaryPrimitives.WriteUInt16BigEndian(b[12..], EtherType.Arp);
                if (b.Length >= 20) Frames.ArpRequest.AsSpan(14, 6).CopyTo(b[14..]);
                break;
            default: // Ethernet (maybe tagged) + IPv4 header start
                bool tagged = rng.Next(2) == 0;
                BinaryPrimitives.WriteUInt16BigEndian(b[12..], tagged ? EtherType.Vlan : EtherType.Ipv4);
                int ipOff = tagged ? 18 : 14;
                if (tagged && b.Length > 17) BinaryPrimitives.WriteUInt16BigEndian(b[16..], EtherType.Ipv4);
                if (b.Length > ipOff + 4)
                {
                    b[ipOff] = (byte)(0x40 | rng.Next(4, 16));
                    BinaryPrimitives.WriteUInt16BigEndian(b[(ipOff + 2)..], (ushort)Math.Max(0, b.Length - ipOff + rng.Next(-30, 4)));
                }
                if (b.Length > ipOff + 9) b[ipOff + 9] = (byte)(rng.Next(3) switch { 0 => IpProtocol.Icmp, 1 => IpProtocol.Udp, _ => IpProtocol.Tcp });
                if (b.Length > ipOff + 6) b[ipOff + 6] &= 0x40; // mostly unfragmented
                break;
        }
    }

    [Fact]
    public void Parsers_never_throw_on_random_bytes()
    {
        var rng = new Random(20240601);
        var t = new Tally();
        byte[] buf = new byte[200];
        for (int iter = 0; iter < 200_000; iter++)
        {
            int len = rng.Next(201);
            Span<byte> b = buf.AsSpan(0, len);
            rng.NextBytes(b);
            if ((iter & 1) == 0) MakePlausible(b, rng);
            ParseEverything(b, t);
        }
        // The fuzz must have reached the accept paths too, not only the early rejections.
        Assert.True(t.Ethernet > 100_000, $"ethernet {t.Ethernet}");
        Assert.True(t.Ipv4 > 5_000, $"ipv4 {t.Ipv4}");
        Assert.True(t.Arp > 1_000, $"arp {t.Arp}");
        Assert.True(t.Udp > 5_000, $"udp {t.Udp}");
        Assert.True(t.Tcp > 5_000, $"tcp {t.Tcp}");
        Assert.True(t.Icmp > 5_000, $"icmp {t.Icmp}");
    }

    [Fact]
    public void Parsers_never_throw_on_mutated_valid_frames()
    {
        var rng = new Random(4789);
        var t = new Tally();
        byte[] buf = new byte[256];
        for (int iter = 0; iter < 100_000; iter++)
        {
            byte[] src = ValidFrames[rng.Next(ValidFrames.Length)];
            src.CopyTo(buf, 0);
            int len = src.Length;
            switch (rng.Next(3))
            {
                case 0: len = rng.Next(src.Length + 1); break; // truncate
                case 1: len = Math.Min(buf.Length, src.Length + rng.Next(40)); rng.NextBytes(buf.AsSpan(src.Length, len - src.Length)); break; // pad
            }
            int flips = rng.Next(1, 5);
            for (int k = 0; k < flips && len > 0; k++)
            {
                int at = rng.Next(len);
                buf[at] = rng.Next(3) switch { 0 => (byte)rng.Next(256), 1 => (byte)(buf[at] ^ (1 << rng.Next(8))), _ => (byte)(buf[at] + rng.Next(-2, 3)) };
            }
            ParseEverything(buf.AsSpan(0, len), t);
        }
        Assert.True(t.Ipv4 > 10_000 && t.Tcp > 1_000 && t.Udp > 1_000 && t.Icmp > 1_000 && t.Arp > 1_000,
            $"ipv4 {t.Ipv4} tcp {t.Tcp} udp {t.Udp} icmp {t.Icmp} arp {t.Arp}");
    }

    private static byte[] RandomOptions(Random rng, int maxWords)
    {
        int words = rng.Next(maxWords + 1);
        byte[] o = new byte[words * 4];
        rng.NextBytes(o);
        return o;
    }

    private static Ipv4Address RandomAddress(Random rng) => new((uint)rng.NextInt64(1L << 32));

    private static Ipv4Repr RandomIpv4(Random rng, byte protocol, int payloadLength) => new(
        RandomAddress(rng), RandomAddress(rng), protocol, payloadLength, (byte)rng.Next(256), (ushort)rng.Next(65536),
        rng.Next(2) == 0, rng.Next(2) == 0, rng.Next(0x2000) * 8, (byte)rng.Next(64), (byte)rng.Next(4), RandomOptions(rng, 10));

    /// <summary>Emits <paramref name="emit"/> into a 0xA5 buffer, parses it back, re-emits the parsed value, and returns both.</summary>
    private static void AssertRoundTrip<T>(T repr, int length, Func<T, byte[], int> emit, Func<byte[], (bool, T)> parse)
        where T : struct
    {
        byte[] a = Frames.Filled(length + 8);
        int n = emit(repr, a);
        (bool ok, T parsed) = parse(a);
        Assert.True(ok, $"{repr} did not parse");
        Assert.Equal(repr, parsed);
        byte[] b = Frames.Filled(length + 8);
        Assert.Equal(n, emit(parsed, b));
        Assert.Equal(Convert.ToHexString(a, 0, n), Convert.ToHexString(b, 0, n));
        Frames.AssertAllA5(b.AsSpan(n));
    }

    [Fact]
    public void Parse_of_emit_is_identity_for_random_reprs()
    {
        var rng = new Random(793);
        for (int iter = 0; iter < 5_000; iter++)
        {
            var eth = new EthernetRepr(new MacAddress((ulong)rng.NextInt64(1L << 48)), new MacAddress((ulong)rng.NextInt64(1L << 48)),
                (ushort)rng.Next(0x0600, 0x10000), rng.Next(2) == 0 ? null : (ushort)rng.Next(65536));
            if (eth.EtherType == EtherType.Vlan) eth = eth with { EtherType = EtherType.Ipv4 };
            AssertRoundTrip(eth, 18, (r, b) => r.Emit(b), b => (EthernetRepr.TryParse(b, out EthernetRepr p), p));

            var arp = new ArpRepr((ushort)rng.Next(65536), new MacAddress((ulong)rng.NextInt64(1L << 48)), RandomAddress(rng),
                new MacAddress((ulong)rng.NextInt64(1L << 48)), RandomAddress(rng));
            AssertRoundTrip(arp, 28, (r, b) => r.Emit(b), b => (ArpRepr.TryParse(b, out ArpRepr p), p));

            int payload = rng.Next(100);
            Ipv4Repr ip = RandomIpv4(rng, (byte)rng.Next(256), payload);
            // The span must hold the whole datagram; the 0xA5 filler stands in for the payload.
            AssertRoundTrip(ip, ip.TotalLength, (r, b) => r.Emit(b), b => (Ipv4Repr.TryParse(b, out Ipv4Repr p), p));
            byte[] ipb = new byte[ip.TotalLength];
            ip.Emit(ipb);
            Assert.True(Ipv4View.TryCreate(ipb, out Ipv4View view));
            Assert.True(view.IsChecksumValid);
            Assert.Equal(payload, view.Payload.Length);

            var icmp = new IcmpRepr((byte)rng.Next(256), (byte)rng.Next(256), (ushort)rng.Next(65536), (uint)rng.NextInt64(1L << 32));
            AssertRoundTrip(icmp, 8, (r, b) => r.Emit(b), b => (IcmpRepr.TryParse(b, out IcmpRepr p), p));

            var udp = new UdpRepr((ushort)rng.Next(65536), (ushort)rng.Next(65536), (ushort)(8 + rng.Next(100)), (ushort)rng.Next(65536));
            AssertRoundTrip(udp, udp.Length, (r, b) => r.Emit(b), b => (UdpRepr.TryParse(b, out UdpRepr p), p));

            var tcp = new TcpRepr((ushort)rng.Next(65536), (ushort)rng.Next(65536), (uint)rng.NextInt64(1L << 32), (uint)rng.NextInt64(1L << 32),
                (TcpFlags)rng.Next(0x200), (ushort)rng.Next(65536), (ushort)rng.Next(65536), (ushort)rng.Next(65536), RandomOptions(rng, 10));
            AssertRoundTrip(tcp, tcp.HeaderLength, (r, b) => r.Emit(b), b => (TcpRepr.TryParse(b, out TcpRepr p), p));
        }
    }

    /// <summary>A random, fully checksummed IPv4 + TCP/UDP packet.</summary>
    private static byte[] RandomPacket(Random rng, byte protocol)
    {
        int payload = rng.Next(0, 120);
        TcpRepr tcp = default;
        int l4Length;
        if (protocol == IpProtocol.Tcp)
        {
            tcp = new TcpRepr((ushort)rng.Next(65536), (ushort)rng.Next(65536), (uint)rng.NextInt64(1L << 32), (uint)rng.NextInt64(1L << 32),
                (TcpFlags)rng.Next(0x200), (ushort)rng.Next(65536), 0, (ushort)rng.Next(65536), RandomOptions(rng, 10));
            l4Length = tcp.HeaderLength + payload;
        }
        else
        {
            l4Length = UdpView.HeaderSize + payload;
        }
        Ipv4Repr ip = RandomIpv4(rng, protocol, l4Length) with { MoreFragments = false, FragmentOffset = 0 };
        byte[] p = new byte[ip.TotalLength];
        int off = ip.Emit(p);
        int l4Header = protocol == IpProtocol.Tcp
            ? tcp.Emit(p.AsSpan(off))
            : new UdpRepr((ushort)rng.Next(65536), (ushort)rng.Next(65536), (ushort)l4Length).Emit(p.AsSpan(off));
        rng.NextBytes(p.AsSpan(off + l4Header));
        Assert.True(Ipv4View.TryCreate(p, out Ipv4View view));
        Assert.True(Checksum.TryUpdateTransport(view));
        Assert.True(Checksum.VerifyTransport(view));
        return p;
    }

    [Fact]
    public void Incremental_update_equals_full_recompute_after_random_rewrites()
    {
        var rng = new Random(1624);
        for (int iter = 0; iter < 50_000; iter++)
        {
            byte protocol = rng.Next(2) == 0 ? IpProtocol.Tcp : IpProtocol.Udp;
            bool isUdp = protocol == IpProtocol.Udp;
            byte[] p = RandomPacket(rng, protocol);
            Assert.True(Ipv4View.TryCreate(p, out Ipv4View ip));
            int hl = ip.HeaderLength;
            int l4Csum = hl + (isUdp ? 6 : 16);
            ushort ipCsum = ip.HeaderChecksum;
            ushort l4 = BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(l4Csum));

            // Pick a field: (offset, 32-bit?, covered by IP checksum?, covered by L4 checksum?)
            (int at, bool wide, bool inIp, bool inL4) field = rng.Next(isUdp ? 5 : 8) switch
            {
                0 => (12, true, true, true),   // source address (also in the pseudo-header)
                1 => (16, true, true, true),   // destination address
                2 => (8, false, true, false),  // TTL + protocol word: TTL rewrite (keep the protocol)
                3 => (4, false, true, false),  // identification
                4 => (hl + rng.Next(2) * 2, false, false, true), // source or destination port
                5 => (hl + 4 + rng.Next(2) * 4, true, false, true), // TCP sequence or acknowledgment number
                6 => (hl + 14, false, false, true), // TCP window
                _ => (hl + 18, false, false, true), // TCP urgent pointer
            };
            if (field.wide)
            {
                uint oldV = BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(field.at));
                uint newV = rng.Next(8) == 0 ? oldV : (uint)rng.NextInt64(1L << 32);
                BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(field.at), newV);
                if (field.inIp) ipCsum = Checksum.Update(ipCsum, oldV, newV);
                if (field.inL4) l4 = isUdp ? Checksum.UpdateUdp(l4, oldV, newV) : Checksum.Update(l4, oldV, newV);
            }
            else
            {
                ushort oldV = BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(field.at));
                ushort newV = field.at == 8 ? (ushort)((rng.Next(256) << 8) | p[9]) : (ushort)rng.Next(65536);
                BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(field.at), newV);
                if (field.inIp) ipCsum = Checksum.Update(ipCsum, oldV, newV);
                if (field.inL4) l4 = isUdp ? Checksum.UpdateUdp(l4, oldV, newV) : Checksum.Update(l4, oldV, newV);
            }
            ip.HeaderChecksum = ipCsum;
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(l4Csum), l4);

            Assert.True(ip.IsChecksumValid);
            Assert.True(Checksum.VerifyTransport(ip));
            // Exact equality with the full recompute, not just validity (0x0000 vs 0xFFFF matters on the wire).
            Assert.True(Checksum.TryComputeTransport(ip, out ushort fullL4));
            Assert.Equal(fullL4, l4);
            ip.UpdateChecksum();
            Assert.Equal(ip.HeaderChecksum, ipCsum);
        }
    }
}

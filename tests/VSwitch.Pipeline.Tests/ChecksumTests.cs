using System.Buffers.Binary;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline.Tests;

public class ChecksumTests
{
    /// <summary>The obvious oracle: add big-endian 16-bit words one at a time, folding as we go.</summary>
    internal static ushort SlowSum(ReadOnlySpan<byte> data, ushort initial = 0)
    {
        uint sum = initial;
        for (int i = 0; i < data.Length; i += 2)
        {
            int word = data[i] << 8 | (i + 1 < data.Length ? data[i + 1] : 0);
            sum += (uint)word;
            if (sum > 0xFFFF) sum = (sum & 0xFFFF) + 1;
        }
        return (ushort)sum;
    }

    [Fact]
    public void Rfc1071_worked_example()
    {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        byte[] data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        Assert.Equal(0xddf2, Checksum.Sum(data));
        Assert.Equal(0x220d, Checksum.Compute(data));
    }

    [Fact]
    public void Rfc1624_worked_example()
    {
        // RFC 1624 §4: HC = 0xDD2F, m = 0x5555 → m' = 0x3285 gives HC' = 0x0000 by eqn. 3 (eqn. 2 wrongly gives 0xFFFF).
        Assert.Equal(0x0000, Checksum.Update(0xDD2F, (ushort)0x5555, (ushort)0x3285));
    }

    [Fact]
    public void Sum_matches_the_slow_oracle_for_every_length_and_alignment()
    {
        var rng = new Random(1071);
        byte[] buf = new byte[400];
        for (int iter = 0; iter < 20_000; iter++)
        {
            rng.NextBytes(buf);
            int offset = rng.Next(8);
            int length = rng.Next(buf.Length - offset + 1);
            ushort initial = (ushort)rng.Next(65536);
            ReadOnlySpan<byte> s = buf.AsSpan(offset, length);
            Assert.Equal(SlowSum(s, initial), Checksum.Sum(s, initial));
        }
    }

    [Fact]
    public void Long_sums_and_sum_and_copy_match_the_slow_oracle()
    {
        // Lengths around the vector path's thresholds (128, multiples of 64) and super-frame sizes.
        var rng = new Random(1624);
        byte[] buf = new byte[66_016];
        byte[] dst = new byte[66_016];
        int[] lengths = [0, 1, 63, 64, 65, 127, 128, 129, 191, 192, 193, 1397, 1398, 1448, 4096, 65_535, 65_999];
        for (int iter = 0; iter < 400; iter++)
        {
            int length = iter < lengths.Length ? lengths[iter] : rng.Next(66_000);
            rng.NextBytes(buf);
            if (iter % 3 == 0) buf.AsSpan(0, length + 8).Fill(0xFF); // carries in every lane
            int offset = rng.Next(8);
            ushort initial = (ushort)rng.Next(65536);
            ReadOnlySpan<byte> s = buf.AsSpan(offset, length);
            ushort expected = SlowSum(s, initial);
            Assert.Equal(expected, Checksum.Sum(s, initial));
            Array.Clear(dst);
            int at = rng.Next(8);
            Assert.Equal(expected, Checksum.SumAndCopy(s, dst.AsSpan(at), initial));
            Assert.True(s.SequenceEqual(dst.AsSpan(at, length)), $"copy of {length} bytes");
        }
    }

    [Fact]
    public void Sum_of_all_ones_and_all_zeros()
    {
        Assert.Equal(0, Checksum.Sum([]));
        Assert.Equal(0, Checksum.Sum(new byte[1500]));
        byte[] ones = new byte[1501];
        ones.AsSpan().Fill(0xFF);
        Assert.Equal(SlowSum(ones), Checksum.Sum(ones));
        Assert.Equal(0xFF00, Checksum.Sum([0xFF]));
    }

    [Fact]
    public void Chained_sums_at_even_split_points_equal_one_sum()
    {
        var rng = new Random(7);
        byte[] buf = new byte[257];
        for (int iter = 0; iter < 2_000; iter++)
        {
            rng.NextBytes(buf);
            int split = rng.Next(buf.Length / 2) * 2;
            Assert.Equal(Checksum.Sum(buf), Checksum.Sum(buf.AsSpan(split), Checksum.Sum(buf.AsSpan(0, split))));
        }
    }

    [Fact]
    public void Pseudo_header_sum_equals_the_sum_of_the_pseudo_header_bytes()
    {
        var rng = new Random(768);
        Span<byte> ph = stackalloc byte[12];
        for (int iter = 0; iter < 10_000; iter++)
        {
            var src = new Ipv4Address((uint)rng.NextInt64(1L << 32));
            var dst = new Ipv4Address((uint)rng.NextInt64(1L << 32));
            byte proto = (byte)rng.Next(256);
            int len = rng.Next(65536);
            src.Write(ph);
            dst.Write(ph[4..]);
            ph[8] = 0;
            ph[9] = proto;
            BinaryPrimitives.WriteUInt16BigEndian(ph[10..], (ushort)len);
            Assert.Equal(SlowSum(ph), Checksum.PseudoHeaderSum(src, dst, proto, len));
        }
    }

    [Fact]
    public void Udp_checksum_that_computes_to_zero_is_sent_as_all_ones()
    {
        // Search for the source port that makes the UDP sum 0xFFFF, i.e. a computed checksum of 0; both the full
        // computation and the incremental UDP update must then give 0xFFFF, while the plain update gives 0.
        byte[] f = Frames.Udp.AsSpan(14).ToArray();
        Assert.True(Ipv4View.TryCreate(f, out Ipv4View ip));
        Assert.True(UdpView.TryCreate(ip.Payload, out UdpView udp));
        ushort oldPort = udp.SourcePort;
        ushort oldChecksum = udp.Checksum;
        int found = -1;
        for (int port = 0; port < 65536 && found < 0; port++)
        {
            udp.SourcePort = (ushort)port;
            udp.Checksum = 0;
            ushort sum = Checksum.Sum(ip.Payload, Checksum.PseudoHeaderSum(ip.Source, ip.Destination, IpProtocol.Udp, ip.Payload.Length));
            if (sum == 0xFFFF) found = port;
        }
        Assert.True(found >= 0);
        udp.SourcePort = (ushort)found;
        Assert.True(Checksum.TryComputeTransport(ip, out ushort full));
        Assert.Equal(0xFFFF, full);
        Assert.Equal(0xFFFF, Checksum.UpdateUdp(oldChecksum, oldPort, (ushort)found));
        Assert.Equal(0x0000, Checksum.Update(oldChecksum, oldPort, (ushort)found));
        udp.Checksum = 0xFFFF;
        Assert.True(Checksum.VerifyTransport(ip));
    }

    [Fact]
    public void Udp_without_checksum_stays_without_checksum()
    {
        Assert.Equal(0, Checksum.UpdateUdp(0, (ushort)1234, (ushort)4321));
        Assert.Equal(0, Checksum.UpdateUdp(0, 0x0A000001u, 0xC0A80001u));
        byte[] f = Frames.Udp.AsSpan(14).ToArray();
        f[26] = 0;
        f[27] = 0; // UDP checksum field (IPv4 header 20 + 6)
        Assert.True(Ipv4View.TryCreate(f, out Ipv4View ip));
        Assert.True(Checksum.VerifyTransport(ip));
    }

    [Fact]
    public void Corrupting_any_byte_breaks_verification()
    {
        foreach (byte[] frame in new[] { Frames.EchoRequest, Frames.Udp, Frames.TcpSyn, Frames.FragmentationNeeded })
        {
            for (int i = 14; i < frame.Length; i++)
            {
                byte[] f = (byte[])frame.Clone();
                f[i] ^= 0x01;
                if (!Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip)) continue; // a length field changed
                bool headerByte = i - 14 < ip.HeaderLength;
                Assert.True(headerByte ? !ip.IsChecksumValid : !Checksum.VerifyTransport(ip), $"byte {i} of a {frame.Length}-byte frame");
            }
        }
    }
}

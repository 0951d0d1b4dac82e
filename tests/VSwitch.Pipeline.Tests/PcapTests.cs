using System.Buffers.Binary;
using System.Globalization;
using VSwitch.Pipeline.Pcap;

namespace VSwitch.Pipeline.Tests;

public class PcapTests
{
    private static byte[] WriteToBytes(Action<PcapWriter> write, int snapLength = PcapFormat.DefaultSnapLength)
    {
        using var ms = new MemoryStream();
        using (var w = new PcapWriter(ms, leaveOpen: true, snapLength)) write(w);
        return ms.ToArray();
    }

    [Fact]
    public void Global_header_bytes()
    {
        byte[] file = WriteToBytes(_ => { });
        // magic a1b2c3d4 (LE), version 2.4, thiszone 0, sigfigs 0, snaplen 262144, linktype 1 (Ethernet).
        Assert.Equal("D4C3B2A1" + "0200" + "0400" + "00000000" + "00000000" + "00000400" + "01000000", Convert.ToHexString(file));
    }

    [Fact]
    public void Record_header_bytes()
    {
        // 2023-11-14T22:13:20.123456Z = 1700000000 s + 123456 µs.
        byte[] file = WriteToBytes(w => w.Write(Frames.ArpRequest, new DateTime(2023, 11, 14, 22, 13, 20, DateTimeKind.Utc).AddTicks(1_234_567)));
        Assert.Equal(24 + 16 + 42, file.Length);
        Assert.Equal("00F15365" + "40E20100" + "2A000000" + "2A000000", Convert.ToHexString(file, 24, 16));
        Assert.Equal(Frames.ArpRequest, file.AsSpan(40).ToArray());
    }

    [Fact]
    public void Write_then_read_round_trips()
    {
        var rng = new Random(2_4);
        var frames = new List<(byte[] Data, long Micros)>();
        for (int i = 0; i < 200; i++)
        {
            byte[] d = new byte[rng.Next(0, 1600)];
            rng.NextBytes(d);
            frames.Add((d, rng.NextInt64(0, (long)uint.MaxValue * 1_000_000)));
        }
        byte[] file = WriteToBytes(w => { foreach (var (d, us) in frames) w.Write(d, us); });
        using var r = new PcapReader(new MemoryStream(file));
        Assert.Equal(PcapFormat.LinkTypeEthernet, r.LinkType);
        Assert.Equal((uint)PcapFormat.DefaultSnapLength, r.SnapLength);
        Assert.Equal((2, 4), (r.VersionMajor, r.VersionMinor));
        List<PcapRecord> back = r.ReadAll();
        Assert.Equal(frames.Count, back.Count);
        for (int i = 0; i < frames.Count; i++)
        {
            Assert.Equal(frames[i].Data, back[i].Data);
            Assert.Equal(frames[i].Data.Length, back[i].OriginalLength);
            Assert.Equal(frames[i].Micros * 1000, back[i].TimestampNanoseconds);
        }
        Assert.False(r.TryReadNext(out _));
    }

    [Fact]
    public void DateTime_timestamps_keep_microseconds_and_local_times_are_converted()
    {
        var t = new DateTime(2026, 11, 21, 11, 52, 3, DateTimeKind.Utc).AddTicks(7_715_528); // .7715528 → .771552
        byte[] file = WriteToBytes(w =>
        {
            w.Write(Frames.Udp, t);
            w.Write(Frames.Udp, t.ToLocalTime());
        });
        List<PcapRecord> back = new PcapReader(new MemoryStream(file)).ReadAll();
        DateTime expected = t.AddTicks(-8);
        Assert.Equal(expected, back[0].Timestamp);
        Assert.Equal(expected, back[1].Timestamp);
    }

    [Fact]
    public void Frames_longer_than_the_snap_length_are_truncated_with_the_original_length_kept()
    {
        byte[] file = WriteToBytes(w => w.Write(Frames.EchoRequest, 1L), snapLength: 64);
        PcapRecord rec = Assert.Single(new PcapReader(new MemoryStream(file)).ReadAll());
        Assert.Equal(64, rec.Data.Length);
        Assert.Equal(98, rec.OriginalLength);
        Assert.Equal(Frames.EchoRequest.AsSpan(0, 64).ToArray(), rec.Data);
    }

    /// <summary>A two-record file built field by field, in the given byte order and precision, independently of PcapWriter.</summary>
    private static byte[] Handmade(bool bigEndian, bool nanoseconds)
    {
        var ms = new MemoryStream();
        void U32(uint v) { Span<byte> b = stackalloc byte[4]; if (bigEndian) BinaryPrimitives.WriteUInt32BigEndian(b, v); else BinaryPrimitives.WriteUInt32LittleEndian(b, v); ms.Write(b); }
        void U16(ushort v) { Span<byte> b = stackalloc byte[2]; if (bigEndian) BinaryPrimitives.WriteUInt16BigEndian(b, v); else BinaryPrimitives.WriteUInt16LittleEndian(b, v); ms.Write(b); }
        U32(nanoseconds ? 0xA1B23C4D : 0xA1B2C3D4);
        U16(2);
        U16(4);
        U32(0);
        U32(0);
        U32(65535);
        U32(1);
        U32(1_795_261_923);
        U32(nanoseconds ? 771_559_123u : 771_559u);
        U32(42);
        U32(42);
        ms.Write(Frames.ArpRequest);
        U32(1_795_261_924);
        U32(5);
        U32(20);
        U32(98);
        ms.Write(Frames.EchoRequest.AsSpan(0, 20));
        return ms.ToArray();
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Reads_both_byte_orders_and_both_precisions(bool bigEndian, bool nanoseconds)
    {
        using var r = new PcapReader(new MemoryStream(Handmade(bigEndian, nanoseconds)));
        Assert.Equal(bigEndian, r.IsBigEndian);
        Assert.Equal(nanoseconds, r.IsNanosecond);
        Assert.Equal(65535u, r.SnapLength);
        Assert.Equal(1u, r.LinkType);
        List<PcapRecord> recs = r.ReadAll();
        Assert.Equal(2, recs.Count);
        Assert.Equal(1_795_261_923L * 1_000_000_000 + (nanoseconds ? 771_559_123 : 771_559_000), recs[0].TimestampNanoseconds);
        Assert.Equal(Frames.ArpRequest, recs[0].Data);
        Assert.Equal(1_795_261_924L * 1_000_000_000 + (nanoseconds ? 5 : 5_000), recs[1].TimestampNanoseconds);
        Assert.Equal(98, recs[1].OriginalLength);
        Assert.Equal(20, recs[1].Data.Length);
    }

    [Fact]
    public void Every_truncation_of_a_fixture_either_ends_at_a_record_boundary_or_throws_a_format_error()
    {
        byte[] file = File.ReadAllBytes(Fixtures.PathOf("pod-side.pcap"));
        var boundaries = new Dictionary<int, int> { [PcapFormat.GlobalHeaderSize] = 0 };
        int off = PcapFormat.GlobalHeaderSize, count = 0;
        while (off < file.Length)
        {
            off += PcapFormat.RecordHeaderSize + (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(off + 8));
            boundaries[off] = ++count;
        }
        Assert.Equal(file.Length, off);
        Assert.Equal(54, count);

        for (int cut = 0; cut <= file.Length; cut++)
        {
            var stream = new MemoryStream(file, 0, cut);
            if (boundaries.TryGetValue(cut, out int records))
            {
                Assert.Equal(records, new PcapReader(stream).ReadAll().Count);
                continue;
            }
            PcapFormatException e = Assert.Throws<PcapFormatException>(() => new PcapReader(stream).ReadAll());
            Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Corrupt_headers_give_clear_errors()
    {
        byte[] good = WriteToBytes(w => w.Write(Frames.EchoRequest, 1_000_000L));

        byte[] pcapng = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(pcapng, 0x0A0D0D0A);
        Assert.Contains("magic 0x0a0d0d0a", Assert.Throws<PcapFormatException>(() => new PcapReader(new MemoryStream(pcapng))).Message, StringComparison.Ordinal);

        byte[] version = (byte[])good.Clone();
        version[4] = 9;
        Assert.Contains("version", Assert.Throws<PcapFormatException>(() => new PcapReader(new MemoryStream(version))).Message, StringComparison.Ordinal);

        byte[] huge = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(huge.AsSpan(24 + 8), 0x7FFF_FFFF); // captured length: must not try to allocate 2 GB
        Assert.Contains("captured length", Assert.Throws<PcapFormatException>(() => new PcapReader(new MemoryStream(huge)).ReadAll()).Message, StringComparison.Ordinal);

        byte[] shorter = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(shorter.AsSpan(24 + 12), 10); // original < captured
        Assert.Contains("original length", Assert.Throws<PcapFormatException>(() => new PcapReader(new MemoryStream(shorter)).ReadAll()).Message, StringComparison.Ordinal);

        byte[] micros = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(micros.AsSpan(24 + 4), 1_000_000);
        Assert.Contains("sub-second", Assert.Throws<PcapFormatException>(() => new PcapReader(new MemoryStream(micros)).ReadAll()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_corruption_never_escapes_as_anything_but_a_format_error()
    {
        byte[] file = File.ReadAllBytes(Fixtures.PathOf("kernel-vxlan-4789.pcap"));
        var rng = new Random(0xA1B2);
        for (int iter = 0; iter < 2_000; iter++)
        {
            byte[] f = (byte[])file.Clone();
            for (int k = rng.Next(1, 6); k > 0; k--) f[rng.Next(Math.Min(f.Length, 600))] = (byte)rng.Next(256);
            try
            {
                using var r = new PcapReader(new MemoryStream(f));
                r.ReadAll();
            }
            catch (PcapFormatException)
            {
            }
        }
    }

    [Fact]
    public void Tshark_reads_what_PcapWriter_wrote()
    {
        byte[] padded = new byte[1514];
        Frames.TcpSyn.CopyTo(padded, 0);
        byte[][] frames = [Frames.ArpRequest, Frames.EchoRequest, Frames.TcpSyn, Frames.UdpTagged, padded];
        long t0 = 1_795_261_923_771_559;
        string path = Path.Combine(Path.GetTempPath(), $"vswitch-pcapwriter-{Environment.ProcessId}-{Guid.NewGuid():N}.pcap");
        try
        {
            using (PcapWriter w = PcapWriter.Create(path))
            {
                for (int i = 0; i < frames.Length; i++) w.Write(frames[i], t0 + i * 1_000_001L);
            }
            string[] lines = Tshark.Run("-r", path, "-o", "ip.check_checksum:TRUE", "-T", "fields",
                    "-e", "frame.len", "-e", "frame.time_epoch", "-e", "eth.type", "-e", "vlan.id", "-e", "ip.checksum.status")
                .Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(frames.Length, lines.Length);
            for (int i = 0; i < frames.Length; i++)
            {
                string[] f = lines[i].Split('\t');
                Assert.Equal(frames[i].Length, int.Parse(f[0], CultureInfo.InvariantCulture));
                long us = t0 + i * 1_000_001L;
                Assert.Equal(us / 1_000_000m, decimal.Parse(f[1], CultureInfo.InvariantCulture));
            }
            Assert.Equal("0x0806", lines[0].Split('\t')[2]);
            Assert.Equal("1", lines[1].Split('\t')[4]); // IPv4 header checksum Good
            Assert.Equal("100", lines[3].Split('\t')[3]); // the 802.1Q tag, VID 100
        }
        finally
        {
            File.Delete(path);
        }
    }
}

using System.Buffers.Binary;

namespace VSwitch.Pipeline.Pcap;

/// <summary>
/// Reads classic pcap files: microsecond (0xa1b2c3d4) and nanosecond (0xa1b23c4d) magics, in either byte order.
/// A truncated or corrupt file raises <see cref="PcapFormatException"/> with the byte offset; a clean end returns false.
/// </summary>
public sealed class PcapReader : IDisposable
{
    /// <summary>Records claiming more than this are treated as corruption even when the header's snap length is larger.</summary>
    public const int MaxRecordLength = 16 * 1024 * 1024;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly bool _bigEndian;
    private readonly bool _nanoseconds;
    private long _offset;

    /// <exception cref="PcapFormatException">The stream does not start with a complete pcap global header.</exception>
    public PcapReader(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _leaveOpen = leaveOpen;
        Span<byte> h = stackalloc byte[PcapFormat.GlobalHeaderSize];
        int n = stream.ReadAtLeast(h, h.Length, throwOnEndOfStream: false);
        if (n < h.Length)
            throw new PcapFormatException($"truncated pcap global header: {n} of {PcapFormat.GlobalHeaderSize} bytes");
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(h);
        uint swapped = BinaryPrimitives.ReverseEndianness(magic);
        if (magic is PcapFormat.MagicMicroseconds or PcapFormat.MagicNanoseconds)
        {
            _bigEndian = false;
            _nanoseconds = magic == PcapFormat.MagicNanoseconds;
        }
        else if (swapped is PcapFormat.MagicMicroseconds or PcapFormat.MagicNanoseconds)
        {
            _bigEndian = true;
            _nanoseconds = swapped == PcapFormat.MagicNanoseconds;
        }
        else
        {
            throw new PcapFormatException($"not a classic pcap file: magic 0x{magic:x8} (pcapng and other formats are not supported)");
        }
        VersionMajor = ReadUInt16(h[4..]);
        VersionMinor = ReadUInt16(h[6..]);
        if (VersionMajor != PcapFormat.VersionMajor)
            throw new PcapFormatException($"unsupported pcap version {VersionMajor}.{VersionMinor}");
        SnapLength = ReadUInt32(h[16..]);
        LinkType = ReadUInt32(h[20..]) & 0x0FFF_FFFF; // upper bits may carry FCS information
        _offset = PcapFormat.GlobalHeaderSize;
    }

    public static PcapReader Open(string path) => new(File.OpenRead(path));

    public ushort VersionMajor { get; }
    public ushort VersionMinor { get; }
    public uint SnapLength { get; }
    public uint LinkType { get; }
    public bool IsNanosecond => _nanoseconds;
    public bool IsBigEndian => _bigEndian;

    /// <summary>Reads the next record; false at a clean end of file.</summary>
    /// <exception cref="PcapFormatException">A record header or its data is truncated, or its lengths are implausible.</exception>
    public bool TryReadNext(out PcapRecord record)
    {
        record = default;
        Span<byte> h = stackalloc byte[PcapFormat.RecordHeaderSize];
        int n = _stream.ReadAtLeast(h, h.Length, throwOnEndOfStream: false);
        if (n == 0) return false;
        if (n < h.Length)
            throw new PcapFormatException($"truncated pcap record header at offset {_offset}: {n} of {PcapFormat.RecordHeaderSize} bytes");
        uint seconds = ReadUInt32(h);
        uint fraction = ReadUInt32(h[4..]);
        uint captured = ReadUInt32(h[8..]);
        uint original = ReadUInt32(h[12..]);
        uint limit = Math.Max(SnapLength, PcapFormat.DefaultSnapLength);
        if (captured > limit || captured > MaxRecordLength)
            throw new PcapFormatException($"corrupt pcap record at offset {_offset}: captured length {captured} exceeds the snap length {SnapLength}");
        if (original < captured)
            throw new PcapFormatException($"corrupt pcap record at offset {_offset}: original length {original} is less than captured length {captured}");
        if (fraction >= (_nanoseconds ? 1_000_000_000u : 1_000_000u))
            throw new PcapFormatException($"corrupt pcap record at offset {_offset}: sub-second timestamp {fraction} out of range");
        byte[] data = new byte[captured];
        int got = _stream.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
        if (got < data.Length)
            throw new PcapFormatException($"truncated pcap record at offset {_offset}: {got} of {captured} data bytes");
        long ns = seconds * 1_000_000_000L + (_nanoseconds ? fraction : fraction * 1000L);
        record = new PcapRecord(ns, (int)Math.Min(original, int.MaxValue), data);
        _offset += PcapFormat.RecordHeaderSize + captured;
        return true;
    }

    /// <summary>All remaining records.</summary>
    public List<PcapRecord> ReadAll()
    {
        var list = new List<PcapRecord>();
        while (TryReadNext(out PcapRecord r)) list.Add(r);
        return list;
    }

    /// <summary>Reads every record of the file at <paramref name="path"/>.</summary>
    public static List<PcapRecord> ReadFile(string path)
    {
        using PcapReader reader = Open(path);
        return reader.ReadAll();
    }

    private ushort ReadUInt16(ReadOnlySpan<byte> b) =>
        _bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b);

    private uint ReadUInt32(ReadOnlySpan<byte> b) =>
        _bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt32LittleEndian(b);

    public void Dispose()
    {
        if (!_leaveOpen) _stream.Dispose();
    }
}

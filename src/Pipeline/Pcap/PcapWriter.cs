using System.Buffers.Binary;

namespace VSwitch.Pipeline.Pcap;

/// <summary>
/// Writes a classic pcap file (little-endian, microsecond timestamps, LINKTYPE_ETHERNET). Frames longer than the snap
/// length are truncated, keeping their original length in the record. Not thread-safe.
/// </summary>
public sealed class PcapWriter : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;

    public PcapWriter(Stream stream, bool leaveOpen = false, int snapLength = PcapFormat.DefaultSnapLength)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(snapLength);
        _stream = stream;
        _leaveOpen = leaveOpen;
        SnapLength = snapLength;
        Span<byte> h = stackalloc byte[PcapFormat.GlobalHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(h, PcapFormat.MagicMicroseconds);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], PcapFormat.VersionMajor);
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], PcapFormat.VersionMinor);
        BinaryPrimitives.WriteInt32LittleEndian(h[8..], 0); // thiszone
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], 0); // sigfigs
        BinaryPrimitives.WriteInt32LittleEndian(h[16..], snapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], PcapFormat.LinkTypeEthernet);
        _stream.Write(h);
    }

    public static PcapWriter Create(string path) => new(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));

    public int SnapLength { get; }

    /// <summary>Writes <paramref name="frame"/> stamped with <paramref name="timestamp"/> (converted to UTC; Unspecified counts as UTC).</summary>
    public void Write(ReadOnlySpan<byte> frame, DateTime timestamp)
    {
        DateTime utc = timestamp.Kind == DateTimeKind.Local ? timestamp.ToUniversalTime() : timestamp;
        Write(frame, (utc.Ticks - DateTime.UnixEpoch.Ticks) / 10);
    }

    /// <summary>Writes <paramref name="frame"/> stamped with microseconds since the Unix epoch.</summary>
    public void Write(ReadOnlySpan<byte> frame, long unixMicroseconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(unixMicroseconds);
        long seconds = unixMicroseconds / 1_000_000;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(seconds, uint.MaxValue, nameof(unixMicroseconds));
        int captured = Math.Min(frame.Length, SnapLength);
        Span<byte> h = stackalloc byte[PcapFormat.RecordHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(h, (uint)seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], (uint)(unixMicroseconds % 1_000_000));
        BinaryPrimitives.WriteInt32LittleEndian(h[8..], captured);
        BinaryPrimitives.WriteInt32LittleEndian(h[12..], frame.Length);
        _stream.Write(h);
        _stream.Write(frame[..captured]);
    }

    public void Flush() => _stream.Flush();

    public void Dispose()
    {
        _stream.Flush();
        if (!_leaveOpen) _stream.Dispose();
    }
}

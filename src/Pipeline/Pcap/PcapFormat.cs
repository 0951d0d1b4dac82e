namespace VSwitch.Pipeline.Pcap;

/// <summary>Constants of the classic libpcap file format (draft-ietf-opsawg-pcap).</summary>
public static class PcapFormat
{
    public const uint MagicMicroseconds = 0xA1B2C3D4;
    public const uint MagicNanoseconds = 0xA1B23C4D;
    public const ushort VersionMajor = 2;
    public const ushort VersionMinor = 4;
    public const uint LinkTypeEthernet = 1;
    public const int DefaultSnapLength = 262144;
    public const int GlobalHeaderSize = 24;
    public const int RecordHeaderSize = 16;
}

/// <summary>A pcap file that is truncated or not a pcap file; the message says what and where.</summary>
public sealed class PcapFormatException : Exception
{
    public PcapFormatException() { }
    public PcapFormatException(string message) : base(message) { }
    public PcapFormatException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>One captured frame: timestamp, length on the wire, and the captured bytes (possibly fewer).</summary>
public readonly record struct PcapRecord(long TimestampNanoseconds, int OriginalLength, byte[] Data)
{
    public DateTime Timestamp => DateTime.UnixEpoch.AddTicks(TimestampNanoseconds / 100);
}

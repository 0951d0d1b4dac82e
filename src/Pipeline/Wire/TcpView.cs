using System.Buffers.Binary;

namespace VSwitch.Pipeline.Wire;

/// <summary>TCP control bits (RFC 9293; <see cref="Ns"/> is the bit left of CWR, RFC 3540, now AE in AccECN).</summary>
[Flags]
public enum TcpFlags : ushort
{
    None = 0,
    Fin = 0x001,
    Syn = 0x002,
    Rst = 0x004,
    Psh = 0x008,
    Ack = 0x010,
    Urg = 0x020,
    Ece = 0x040,
    Cwr = 0x080,
    Ns = 0x100,
}

/// <summary>
/// Zero-copy view of a TCP segment. <see cref="TryCreate"/> checks that the data offset is at least 5 words and that the
/// header fits the span. TCP has no length field: give the view exactly the IPv4 payload so <see cref="Payload"/> is right.
/// </summary>
public readonly ref struct TcpView
{
    public const int MinHeaderSize = 20;
    public const int MaxHeaderSize = 60;
    public const int MaxOptionsSize = MaxHeaderSize - MinHeaderSize;

    private readonly Span<byte> _b;

    private TcpView(Span<byte> b) => _b = b;

    public static bool TryCreate(Span<byte> segment, out TcpView view)
    {
        view = default;
        if (segment.Length < MinHeaderSize) return false;
        int headerLength = (segment[12] >> 4) * 4;
        if (headerLength < MinHeaderSize || headerLength > segment.Length) return false;
        view = new TcpView(segment);
        return true;
    }

    public Span<byte> Bytes => _b;
    public ushort SourcePort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b, value);
    }
    public ushort DestinationPort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[2..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[2..], value);
    }
    public uint SequenceNumber
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_b[4..]);
        set => BinaryPrimitives.WriteUInt32BigEndian(_b[4..], value);
    }
    public uint AcknowledgmentNumber
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_b[8..]);
        set => BinaryPrimitives.WriteUInt32BigEndian(_b[8..], value);
    }
    /// <summary>Header length in bytes (data offset × 4).</summary>
    public int HeaderLength => (_b[12] >> 4) * 4;
    public TcpFlags Flags => (TcpFlags)(((_b[12] & 0x01) << 8) | _b[13]);
    public ushort WindowSize
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[14..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[14..], value);
    }
    public ushort Checksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[16..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[16..], value);
    }
    public ushort UrgentPointer
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[18..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[18..], value);
    }
    public Span<byte> Options => _b[MinHeaderSize..HeaderLength];
    public Span<byte> Payload => _b[HeaderLength..];
}

/// <summary>
/// Value form of a TCP header, for control code and tests. The checksum is carried as a value and written verbatim
/// (it needs the pseudo-header and payload); fill it with <see cref="Checksum.TryUpdateTransport"/>.
/// </summary>
public record struct TcpRepr(
    ushort SourcePort,
    ushort DestinationPort,
    uint SequenceNumber,
    uint AcknowledgmentNumber,
    TcpFlags Flags,
    ushort WindowSize,
    ushort Checksum = 0,
    ushort UrgentPointer = 0,
    ReadOnlyMemory<byte> Options = default)
{
    public readonly int HeaderLength => TcpView.MinHeaderSize + Options.Length;

    public static bool TryParse(ReadOnlySpan<byte> segment, out TcpRepr repr)
    {
        repr = default;
        if (!TcpView.TryCreate(WireSpan.ForReading(segment), out TcpView v)) return false;
        ReadOnlySpan<byte> options = v.Options;
        repr = new TcpRepr(v.SourcePort, v.DestinationPort, v.SequenceNumber, v.AcknowledgmentNumber, v.Flags,
            v.WindowSize, v.Checksum, v.UrgentPointer, options.IsEmpty ? default : options.ToArray());
        return true;
    }

    /// <summary>Writes the header (with options) into <paramref name="b"/> and returns the bytes written.</summary>
    /// <exception cref="ArgumentException">Options not a multiple of 4 bytes or longer than 40, or undefined flag bits.</exception>
    public readonly int Emit(Span<byte> b)
    {
        if (Options.Length % 4 != 0 || Options.Length > TcpView.MaxOptionsSize)
            throw new ArgumentException("TCP options must be padded to a multiple of 4 bytes and at most 40 bytes", nameof(Options));
        if (((ushort)Flags & ~0x1FF) != 0)
            throw new ArgumentException("undefined TCP flag bits", nameof(Flags));
        int hl = HeaderLength;
        BinaryPrimitives.WriteUInt16BigEndian(b, SourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], DestinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(b[4..], SequenceNumber);
        BinaryPrimitives.WriteUInt32BigEndian(b[8..], AcknowledgmentNumber);
        b[12] = (byte)(((hl / 4) << 4) | ((ushort)Flags >> 8));
        b[13] = (byte)Flags;
        BinaryPrimitives.WriteUInt16BigEndian(b[14..], WindowSize);
        BinaryPrimitives.WriteUInt16BigEndian(b[16..], Checksum);
        BinaryPrimitives.WriteUInt16BigEndian(b[18..], UrgentPointer);
        Options.Span.CopyTo(b[TcpView.MinHeaderSize..]);
        return hl;
    }

    /// <summary>Equality compares the option bytes, not the buffer holding them.</summary>
    public readonly bool Equals(TcpRepr other) =>
        SourcePort == other.SourcePort && DestinationPort == other.DestinationPort
        && SequenceNumber == other.SequenceNumber && AcknowledgmentNumber == other.AcknowledgmentNumber
        && Flags == other.Flags && WindowSize == other.WindowSize && Checksum == other.Checksum
        && UrgentPointer == other.UrgentPointer && Options.Span.SequenceEqual(other.Options.Span);

    public override readonly int GetHashCode() =>
        HashCode.Combine(SourcePort, DestinationPort, SequenceNumber, AcknowledgmentNumber, Flags, WindowSize, Checksum, Options.Length);
}

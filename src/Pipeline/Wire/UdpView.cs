using System.Buffers.Binary;

namespace VSwitch.Pipeline.Wire;

/// <summary>
/// Zero-copy view of a UDP datagram. <see cref="TryCreate"/> checks that the Length field is at least 8 and fits the span;
/// <see cref="Payload"/> stops at Length.
/// </summary>
public readonly ref struct UdpView
{
    public const int HeaderSize = 8;

    private readonly Span<byte> _b;

    private UdpView(Span<byte> b) => _b = b;

    public static bool TryCreate(Span<byte> datagram, out UdpView view)
    {
        view = default;
        if (datagram.Length < HeaderSize) return false;
        int length = BinaryPrimitives.ReadUInt16BigEndian(datagram[4..]);
        if (length < HeaderSize || length > datagram.Length) return false;
        view = new UdpView(datagram);
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
    /// <summary>Header plus payload, in bytes.</summary>
    public int Length => BinaryPrimitives.ReadUInt16BigEndian(_b[4..]);
    /// <summary>0 means the sender computed no checksum.</summary>
    public ushort Checksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[6..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[6..], value);
    }
    public Span<byte> Payload => _b[HeaderSize..Length];
}

/// <summary>
/// Value form of a UDP header, for control code and tests. The checksum needs the pseudo-header and payload, so it is
/// carried as a value: <see cref="Emit"/> writes it verbatim; use <see cref="Checksum.TryUpdateTransport"/> afterwards.
/// </summary>
public record struct UdpRepr(ushort SourcePort, ushort DestinationPort, ushort Length, ushort Checksum = 0)
{
    public readonly int PayloadLength => Length - UdpView.HeaderSize;

    public static bool TryParse(ReadOnlySpan<byte> datagram, out UdpRepr repr)
    {
        repr = default;
        if (!UdpView.TryCreate(WireSpan.ForReading(datagram), out UdpView v)) return false;
        repr = new UdpRepr(v.SourcePort, v.DestinationPort, (ushort)v.Length, v.Checksum);
        return true;
    }

    /// <summary>Writes the 8-byte header into <paramref name="b"/> and returns the bytes written.</summary>
    public readonly int Emit(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt16BigEndian(b, SourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], DestinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(b[4..], Length);
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], Checksum);
        return UdpView.HeaderSize;
    }
}

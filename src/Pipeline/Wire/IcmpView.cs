using System.Buffers.Binary;

namespace VSwitch.Pipeline.Wire;

/// <summary>ICMPv4 message types (RFC 792) handled by the switch.</summary>
public static class IcmpType
{
    public const byte EchoReply = 0;
    public const byte DestinationUnreachable = 3;
    public const byte EchoRequest = 8;
    public const byte TimeExceeded = 11;
}

/// <summary>Codes of <see cref="IcmpType.DestinationUnreachable"/> (RFC 792, RFC 1191).</summary>
public static class IcmpUnreachableCode
{
    public const byte Network = 0;
    public const byte Host = 1;
    public const byte Protocol = 2;
    public const byte Port = 3;
    /// <summary>Fragmentation needed and DF set; the next-hop MTU is in bytes 6–7 (RFC 1191).</summary>
    public const byte FragmentationNeeded = 4;
    public const byte AdministrativelyProhibited = 13;
}

/// <summary>Codes of <see cref="IcmpType.TimeExceeded"/>.</summary>
public static class IcmpTimeExceededCode
{
    public const byte TtlExceeded = 0;
    public const byte FragmentReassembly = 1;
}

/// <summary>
/// Zero-copy view of an ICMPv4 message: the 8-byte header (type, code, checksum, rest of header) and the payload.
/// The message runs to the end of the span; give it the IPv4 payload.
/// </summary>
public readonly ref struct IcmpView
{
    public const int HeaderSize = 8;

    private readonly Span<byte> _b;

    private IcmpView(Span<byte> b) => _b = b;

    public static bool TryCreate(Span<byte> message, out IcmpView view)
    {
        view = default;
        if (message.Length < HeaderSize) return false;
        view = new IcmpView(message);
        return true;
    }

    public Span<byte> Bytes => _b;
    public byte Type
    {
        get => _b[0];
        set => _b[0] = value;
    }
    public byte Code
    {
        get => _b[1];
        set => _b[1] = value;
    }
    public ushort Checksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[2..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[2..], value);
    }
    /// <summary>Bytes 4–7, whose meaning depends on the type.</summary>
    public uint RestOfHeader
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_b[4..]);
        set => BinaryPrimitives.WriteUInt32BigEndian(_b[4..], value);
    }
    /// <summary>Echo identifier (bytes 4–5).</summary>
    public ushort Identifier
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[4..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[4..], value);
    }
    /// <summary>Echo sequence number (bytes 6–7).</summary>
    public ushort SequenceNumber
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[6..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[6..], value);
    }
    /// <summary>Next-hop MTU of a fragmentation-needed message (bytes 6–7).</summary>
    public ushort NextHopMtu
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[6..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[6..], value);
    }
    public bool IsError => Type is IcmpType.DestinationUnreachable or IcmpType.TimeExceeded;
    /// <summary>Echo data, or for error messages the offending IPv4 header and the first 8 bytes of its payload.</summary>
    public Span<byte> Payload => _b[HeaderSize..];
    public bool IsChecksumValid => VSwitch.Pipeline.Checksum.IsValid(_b);

    /// <summary>Recomputes the checksum over the whole message (ICMP has no pseudo-header).</summary>
    public void UpdateChecksum()
    {
        Checksum = 0;
        Checksum = VSwitch.Pipeline.Checksum.Compute(_b);
    }
}

/// <summary>
/// Value form of an ICMPv4 header, for control code and tests. The checksum covers the payload too, so it is
/// carried as a value: <see cref="Emit"/> writes it verbatim; use <see cref="IcmpView.UpdateChecksum"/> once the payload is in place.
/// </summary>
public record struct IcmpRepr(byte Type, byte Code, ushort Checksum, uint RestOfHeader)
{
    public readonly ushort Identifier => (ushort)(RestOfHeader >> 16);
    public readonly ushort SequenceNumber => (ushort)RestOfHeader;
    public readonly ushort NextHopMtu => (ushort)RestOfHeader;

    public static IcmpRepr EchoRequest(ushort identifier, ushort sequence, ushort checksum = 0) =>
        new(IcmpType.EchoRequest, 0, checksum, ((uint)identifier << 16) | sequence);

    public static IcmpRepr EchoReply(ushort identifier, ushort sequence, ushort checksum = 0) =>
        new(IcmpType.EchoReply, 0, checksum, ((uint)identifier << 16) | sequence);

    public static IcmpRepr FragmentationNeeded(ushort nextHopMtu, ushort checksum = 0) =>
        new(IcmpType.DestinationUnreachable, IcmpUnreachableCode.FragmentationNeeded, checksum, nextHopMtu);

    public static bool TryParse(ReadOnlySpan<byte> message, out IcmpRepr repr)
    {
        repr = default;
        if (!IcmpView.TryCreate(WireSpan.ForReading(message), out IcmpView v)) return false;
        repr = new IcmpRepr(v.Type, v.Code, v.Checksum, v.RestOfHeader);
        return true;
    }

    /// <summary>Writes the 8-byte header into <paramref name="b"/> and returns the bytes written.</summary>
    public readonly int Emit(Span<byte> b)
    {
        b[0] = Type;
        b[1] = Code;
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], Checksum);
        BinaryPrimitives.WriteUInt32BigEndian(b[4..], RestOfHeader);
        return IcmpView.HeaderSize;
    }
}

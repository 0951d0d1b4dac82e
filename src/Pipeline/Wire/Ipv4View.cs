using System.Buffers.Binary;

namespace VSwitch.Pipeline.Wire;

/// <summary>
/// Zero-copy view of an IPv4 header and the datagram it heads. <see cref="TryCreate"/> validates version, IHL and total
/// length once; the span may run past <see cref="TotalLength"/> (Ethernet padding), which <see cref="Payload"/> excludes.
/// </summary>
public readonly ref struct Ipv4View
{
    public const int MinHeaderSize = 20;
    public const int MaxHeaderSize = 60;
    public const int MaxOptionsSize = MaxHeaderSize - MinHeaderSize;

    private const ushort FlagDontFragment = 0x4000;
    private const ushort FlagMoreFragments = 0x2000;
    private const ushort OffsetMask = 0x1FFF;

    private readonly Span<byte> _b;

    private Ipv4View(Span<byte> b) => _b = b;

    public static bool TryCreate(Span<byte> packet, out Ipv4View view)
    {
        view = default;
        if (packet.Length < MinHeaderSize) return false;
        byte vihl = packet[0];
        if (vihl >> 4 != 4) return false;
        int headerLength = (vihl & 0x0F) * 4;
        if (headerLength < MinHeaderSize || headerLength > packet.Length) return false;
        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (totalLength < headerLength || totalLength > packet.Length) return false;
        view = new Ipv4View(packet);
        return true;
    }

    /// <summary>The span the view was created over (may include bytes beyond <see cref="TotalLength"/>).</summary>
    public Span<byte> Bytes => _b;
    public int Version => _b[0] >> 4;
    public int HeaderLength => (_b[0] & 0x0F) * 4;
    public Span<byte> Header => _b[..HeaderLength];
    public Span<byte> Options => _b[MinHeaderSize..HeaderLength];
    /// <summary>Differentiated Services code point (upper 6 bits of the former TOS byte).</summary>
    public byte Dscp => (byte)(_b[1] >> 2);
    public byte Ecn => (byte)(_b[1] & 0x03);
    public int TotalLength => BinaryPrimitives.ReadUInt16BigEndian(_b[2..]);
    public ushort Identification => BinaryPrimitives.ReadUInt16BigEndian(_b[4..]);
    private ushort FlagsAndOffset => BinaryPrimitives.ReadUInt16BigEndian(_b[6..]);
    public bool DontFragment => (FlagsAndOffset & FlagDontFragment) != 0;
    public bool MoreFragments => (FlagsAndOffset & FlagMoreFragments) != 0;
    /// <summary>Fragment offset in bytes (the field counts 8-byte units).</summary>
    public int FragmentOffset => (FlagsAndOffset & OffsetMask) * 8;
    /// <summary>True for any fragment: more fragments follow or this is not the first.</summary>
    public bool IsFragment => (FlagsAndOffset & (FlagMoreFragments | OffsetMask)) != 0;
    public byte Ttl
    {
        get => _b[8];
        set => _b[8] = value;
    }
    public byte Protocol => _b[9];
    public ushort HeaderChecksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[10..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[10..], value);
    }
    public Ipv4Address Source
    {
        get => Ipv4Address.Read(_b[12..]);
        set => value.Write(_b[12..]);
    }
    public Ipv4Address Destination
    {
        get => Ipv4Address.Read(_b[16..]);
        set => value.Write(_b[16..]);
    }
    /// <summary>The bytes between the header and <see cref="TotalLength"/>.</summary>
    public Span<byte> Payload => _b[HeaderLength..TotalLength];

    public bool IsChecksumValid => Checksum.IsValid(Header);

    /// <summary>Recomputes the header checksum from scratch. After a rewrite of known fields prefer <see cref="Checksum.Update(ushort, ushort, ushort)"/>.</summary>
    public void UpdateChecksum()
    {
        HeaderChecksum = 0;
        HeaderChecksum = Checksum.Compute(Header);
    }
}

/// <summary>Value form of an IPv4 header, for control code and tests. <see cref="Emit"/> computes the header checksum.</summary>
public record struct Ipv4Repr(
    Ipv4Address Source,
    Ipv4Address Destination,
    byte Protocol,
    int PayloadLength,
    byte Ttl = 64,
    ushort Identification = 0,
    bool DontFragment = false,
    bool MoreFragments = false,
    int FragmentOffset = 0,
    byte Dscp = 0,
    byte Ecn = 0,
    ReadOnlyMemory<byte> Options = default)
{
    public readonly int HeaderLength => Ipv4View.MinHeaderSize + Options.Length;
    public readonly int TotalLength => HeaderLength + PayloadLength;

    public static bool TryParse(ReadOnlySpan<byte> packet, out Ipv4Repr repr)
    {
        repr = default;
        if (!Ipv4View.TryCreate(WireSpan.ForReading(packet), out Ipv4View v)) return false;
        ReadOnlySpan<byte> options = v.Options;
        repr = new Ipv4Repr(
            v.Source, v.Destination, v.Protocol, v.TotalLength - v.HeaderLength, v.Ttl, v.Identification,
            v.DontFragment, v.MoreFragments, v.FragmentOffset, v.Dscp, v.Ecn,
            options.IsEmpty ? default : options.ToArray());
        return true;
    }

    /// <summary>Writes the header (with options and a valid checksum) into <paramref name="b"/> and returns the bytes written.</summary>
    /// <exception cref="ArgumentException">Options not a multiple of 4 bytes or longer than 40, or field values out of range.</exception>
    public readonly int Emit(Span<byte> b)
    {
        if (Options.Length % 4 != 0 || Options.Length > Ipv4View.MaxOptionsSize)
            throw new ArgumentException("IPv4 options must be padded to a multiple of 4 bytes and at most 40 bytes", nameof(Options));
        if (FragmentOffset % 8 != 0 || FragmentOffset > 0x1FFF * 8 || (uint)TotalLength > ushort.MaxValue || Dscp > 63 || Ecn > 3)
            throw new ArgumentException("IPv4 field out of range (fragment offset, total length, DSCP or ECN)");
        int hl = HeaderLength;
        b[0] = (byte)(0x40 | (hl / 4));
        b[1] = (byte)((Dscp << 2) | Ecn);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)TotalLength);
        BinaryPrimitives.WriteUInt16BigEndian(b[4..], Identification);
        int flags = (DontFragment ? 0x4000 : 0) | (MoreFragments ? 0x2000 : 0) | (FragmentOffset / 8);
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], (ushort)flags);
        b[8] = Ttl;
        b[9] = Protocol;
        BinaryPrimitives.WriteUInt16BigEndian(b[10..], 0);
        Source.Write(b[12..]);
        Destination.Write(b[16..]);
        Options.Span.CopyTo(b[Ipv4View.MinHeaderSize..]);
        BinaryPrimitives.WriteUInt16BigEndian(b[10..], Checksum.Compute(b[..hl]));
        return hl;
    }

    /// <summary>Equality compares the option bytes, not the buffer holding them.</summary>
    public readonly bool Equals(Ipv4Repr other) =>
        Source == other.Source && Destination == other.Destination && Protocol == other.Protocol
        && PayloadLength == other.PayloadLength && Ttl == other.Ttl && Identification == other.Identification
        && DontFragment == other.DontFragment && MoreFragments == other.MoreFragments
        && FragmentOffset == other.FragmentOffset && Dscp == other.Dscp && Ecn == other.Ecn
        && Options.Span.SequenceEqual(other.Options.Span);

    public override readonly int GetHashCode() =>
        HashCode.Combine(Source, Destination, Protocol, PayloadLength, Ttl, Identification, FragmentOffset, Options.Length);
}

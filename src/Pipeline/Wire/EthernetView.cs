using System.Buffers.Binary;

namespace VSwitch.Pipeline.Wire;

/// <summary>
/// Zero-copy view of an Ethernet II header, optionally with one 802.1Q tag.
/// <see cref="TryCreate"/> validates the length once; accessors then read without checks beyond the span's own.
/// </summary>
public readonly ref struct EthernetView
{
    public const int HeaderSize = 14;
    public const int VlanTagSize = 4;
    public const int MinFrameSize = 60; // without FCS

    private readonly Span<byte> _b;

    private EthernetView(Span<byte> b, bool tagged)
    {
        _b = b;
        IsTagged = tagged;
    }

    public static bool TryCreate(Span<byte> frame, out EthernetView view)
    {
        view = default;
        if (frame.Length < HeaderSize) return false;
        bool tagged = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) == Wire.EtherType.Vlan;
        if (tagged && frame.Length < HeaderSize + VlanTagSize) return false;
        view = new EthernetView(frame, tagged);
        return true;
    }

    public Span<byte> Bytes => _b;
    public bool IsTagged { get; }
    public MacAddress Destination
    {
        get => MacAddress.Read(_b);
        set => value.Write(_b);
    }
    public MacAddress Source
    {
        get => MacAddress.Read(_b[6..]);
        set => value.Write(_b[6..]);
    }
    /// <summary>The 802.1Q TCI (PCP/DEI/VID) or 0 when untagged.</summary>
    public ushort TagControl => IsTagged ? BinaryPrimitives.ReadUInt16BigEndian(_b[14..]) : (ushort)0;
    public ushort VlanId => (ushort)(TagControl & 0x0FFF);
    /// <summary>The EtherType of the payload (after the tag when tagged).</summary>
    public ushort EtherType
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[(IsTagged ? 16 : 12)..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[(IsTagged ? 16 : 12)..], value);
    }
    public int HeaderLength => IsTagged ? HeaderSize + VlanTagSize : HeaderSize;
    public Span<byte> Payload => _b[HeaderLength..];
}

/// <summary>Value form of an Ethernet header, for control code and tests.</summary>
public record struct EthernetRepr(MacAddress Destination, MacAddress Source, ushort EtherType, ushort? TagControl = null)
{
    public readonly int HeaderLength => TagControl is null ? EthernetView.HeaderSize : EthernetView.HeaderSize + EthernetView.VlanTagSize;

    public static bool TryParse(ReadOnlySpan<byte> frame, out EthernetRepr repr)
    {
        repr = default;
        // Views are over mutable spans; parsing a read-only frame copies only the header.
        Span<byte> hdr = stackalloc byte[EthernetView.HeaderSize + EthernetView.VlanTagSize];
        int n = Math.Min(frame.Length, hdr.Length);
        frame[..n].CopyTo(hdr);
        if (!EthernetView.TryCreate(hdr[..n], out EthernetView v)) return false;
        repr = new EthernetRepr(v.Destination, v.Source, v.EtherType, v.IsTagged ? v.TagControl : null);
        return true;
    }

    /// <summary>Writes the header into <paramref name="b"/> and returns the bytes written.</summary>
    public readonly int Emit(Span<byte> b)
    {
        Destination.Write(b);
        Source.Write(b[6..]);
        if (TagControl is ushort tci)
        {
            BinaryPrimitives.WriteUInt16BigEndian(b[12..], Wire.EtherType.Vlan);
            BinaryPrimitives.WriteUInt16BigEndian(b[14..], tci);
            BinaryPrimitives.WriteUInt16BigEndian(b[16..], EtherType);
            return 18;
        }
        BinaryPrimitives.WriteUInt16BigEndian(b[12..], EtherType);
        return 14;
    }
}

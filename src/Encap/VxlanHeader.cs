using System.Buffers.Binary;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Encap;

/// <summary>
/// Zero-copy view of a VXLAN header (RFC 7348 §5): flags (I bit = VNI valid), 24 reserved bits, 24-bit VNI,
/// 8 reserved bits, followed by the inner Ethernet frame.
/// </summary>
public readonly ref struct VxlanView
{
    public const int Size = 8;
    /// <summary>The I flag: the VNI field is valid. The only flag RFC 7348 defines; the rest are reserved.</summary>
    public const byte FlagVniValid = 0x08;
    public const uint MaxVni = 0xFF_FFFF;
    /// <summary>IANA port for VXLAN.</summary>
    public const ushort IanaPort = 4789;
    /// <summary>The port the Linux kernel (and flannel) used before IANA assigned one.</summary>
    public const ushort LinuxPort = 8472;

    private readonly Span<byte> _b;

    private VxlanView(Span<byte> b) => _b = b;

    public static bool TryCreate(Span<byte> datagram, out VxlanView view)
    {
        view = default;
        if (datagram.Length < Size) return false;
        view = new VxlanView(datagram);
        return true;
    }

    public Span<byte> Bytes => _b;
    public byte Flags => _b[0];
    public bool HasVni => (_b[0] & FlagVniValid) != 0;
    public uint Vni => BinaryPrimitives.ReadUInt32BigEndian(_b[4..]) >> 8;
    /// <summary>The encapsulated Ethernet frame.</summary>
    public Span<byte> Inner => _b[Size..];
}

/// <summary>Value form of a VXLAN header. <see cref="Emit"/> writes reserved fields as zero, as RFC 7348 requires.</summary>
public record struct VxlanRepr(uint Vni, byte Flags = VxlanView.FlagVniValid)
{
    public static bool TryParse(ReadOnlySpan<byte> datagram, out VxlanRepr repr)
    {
        repr = default;
        if (!VxlanView.TryCreate(WireSpan.ForReading(datagram), out VxlanView v)) return false;
        repr = new VxlanRepr(v.Vni, v.Flags);
        return true;
    }

    /// <exception cref="ArgumentOutOfRangeException">VNI above 24 bits.</exception>
    public readonly int Emit(Span<byte> b)
    {
        if (Vni > VxlanView.MaxVni) throw new ArgumentOutOfRangeException(nameof(Vni), Vni, "a VNI has 24 bits");
        b[0] = Flags;
        b[1] = b[2] = b[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(b[4..], Vni << 8);
        return VxlanView.Size;
    }
}

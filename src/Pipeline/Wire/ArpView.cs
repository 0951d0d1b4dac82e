using System.Buffers.Binary;

namespace VSwitch.Pipeline.Wire;

/// <summary>ARP operation codes (RFC 826).</summary>
public static class ArpOperation
{
    public const ushort Request = 1;
    public const ushort Reply = 2;
}

/// <summary>
/// Zero-copy view of an Ethernet/IPv4 ARP packet (RFC 826). <see cref="TryCreate"/> accepts only hardware type 1,
/// protocol type 0x0800, hardware length 6 and protocol length 4, so the address fields sit at fixed offsets.
/// </summary>
public readonly ref struct ArpView
{
    public const int Size = 28;
    public const ushort HardwareTypeEthernet = 1;

    private readonly Span<byte> _b;

    private ArpView(Span<byte> b) => _b = b;

    public static bool TryCreate(Span<byte> packet, out ArpView view)
    {
        view = default;
        if (packet.Length < Size) return false;
        if (BinaryPrimitives.ReadUInt16BigEndian(packet) != HardwareTypeEthernet) return false;
        if (BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) != EtherType.Ipv4) return false;
        if (packet[4] != MacAddress.Size || packet[5] != Ipv4Address.Size) return false;
        view = new ArpView(packet);
        return true;
    }

    public Span<byte> Bytes => _b;
    public ushort Operation
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_b[6..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_b[6..], value);
    }
    public MacAddress SenderHardwareAddress
    {
        get => MacAddress.Read(_b[8..]);
        set => value.Write(_b[8..]);
    }
    public Ipv4Address SenderProtocolAddress
    {
        get => Ipv4Address.Read(_b[14..]);
        set => value.Write(_b[14..]);
    }
    public MacAddress TargetHardwareAddress
    {
        get => MacAddress.Read(_b[18..]);
        set => value.Write(_b[18..]);
    }
    public Ipv4Address TargetProtocolAddress
    {
        get => Ipv4Address.Read(_b[24..]);
        set => value.Write(_b[24..]);
    }
}

/// <summary>Value form of an Ethernet/IPv4 ARP packet, for control code and tests.</summary>
public record struct ArpRepr(
    ushort Operation,
    MacAddress SenderHardwareAddress,
    Ipv4Address SenderProtocolAddress,
    MacAddress TargetHardwareAddress,
    Ipv4Address TargetProtocolAddress)
{
    public static bool TryParse(ReadOnlySpan<byte> packet, out ArpRepr repr)
    {
        repr = default;
        if (!ArpView.TryCreate(WireSpan.ForReading(packet), out ArpView v)) return false;
        repr = new ArpRepr(v.Operation, v.SenderHardwareAddress, v.SenderProtocolAddress, v.TargetHardwareAddress, v.TargetProtocolAddress);
        return true;
    }

    /// <summary>Writes the 28-byte packet into <paramref name="b"/> and returns the bytes written.</summary>
    public readonly int Emit(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt16BigEndian(b, ArpView.HardwareTypeEthernet);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], EtherType.Ipv4);
        b[4] = MacAddress.Size;
        b[5] = Ipv4Address.Size;
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], Operation);
        SenderHardwareAddress.Write(b[8..]);
        SenderProtocolAddress.Write(b[14..]);
        TargetHardwareAddress.Write(b[18..]);
        TargetProtocolAddress.Write(b[24..]);
        return ArpView.Size;
    }
}

using System.Buffers.Binary;
using System.Globalization;

namespace VSwitch.Pipeline.Wire;

/// <summary>An IPv4 address as a host-order <see cref="uint"/> (10.0.0.1 is 0x0A000001).</summary>
public readonly record struct Ipv4Address(uint Value) : IComparable<Ipv4Address>
{
    public const int Size = 4;
    public static readonly Ipv4Address Any = new(0);
    public static readonly Ipv4Address Broadcast = new(0xFFFF_FFFF);

    public bool IsMulticast => (Value >> 28) == 0xE;
    public bool IsBroadcast => Value == 0xFFFF_FFFF;
    public bool IsLoopback => (Value >> 24) == 127;
    public bool IsUnspecified => Value == 0;

    public static Ipv4Address Read(ReadOnlySpan<byte> b) => new(BinaryPrimitives.ReadUInt32BigEndian(b));
    public void Write(Span<byte> b) => BinaryPrimitives.WriteUInt32BigEndian(b, Value);

    public int CompareTo(Ipv4Address other) => Value.CompareTo(other.Value);

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Value >> 24}.{(Value >> 16) & 0xFF}.{(Value >> 8) & 0xFF}.{Value & 0xFF}");

    public static bool TryParse(string? s, out Ipv4Address address)
    {
        address = default;
        if (s is null) return false;
        string[] parts = s.Split('.');
        if (parts.Length != 4) return false;
        uint v = 0;
        foreach (string p in parts)
        {
            if (p.Length is < 1 or > 3 || !byte.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out byte o)) return false;
            v = (v << 8) | o;
        }
        address = new Ipv4Address(v);
        return true;
    }

    public static Ipv4Address Parse(string s) =>
        TryParse(s, out Ipv4Address a) ? a : throw new FormatException($"'{s}' is not an IPv4 address");
}

/// <summary>An IPv4 prefix (address/length) with the host bits cleared.</summary>
public readonly record struct Ipv4Prefix
{
    public Ipv4Prefix(Ipv4Address address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, 32);
        Length = length;
        Address = new Ipv4Address(address.Value & MaskOf(length));
    }

    public Ipv4Address Address { get; }
    public int Length { get; }
    public uint Mask => MaskOf(Length);

    public static uint MaskOf(int length) => length == 0 ? 0u : uint.MaxValue << (32 - length);
    public bool Contains(Ipv4Address a) => (a.Value & Mask) == Address.Value;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Address}/{Length}");

    /// <summary>Parses "a.b.c.d/len"; <paramref name="hostAddress"/> keeps the host bits as given.</summary>
    public static bool TryParse(string? s, out Ipv4Prefix prefix, out Ipv4Address hostAddress)
    {
        prefix = default;
        hostAddress = default;
        if (s is null) return false;
        int slash = s.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0) return false;
        if (!Ipv4Address.TryParse(s[..slash], out hostAddress)) return false;
        if (!int.TryParse(s[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int len) || len > 32) return false;
        prefix = new Ipv4Prefix(hostAddress, len);
        return true;
    }
}

using System.Buffers.Binary;
using System.Globalization;

namespace VSwitch.Pipeline.Wire;

/// <summary>A 48-bit MAC address held in the low 48 bits of a <see cref="ulong"/> (network order: first octet highest).</summary>
public readonly record struct MacAddress(ulong Value) : IComparable<MacAddress>
{
    public const int Size = 6;
    public static readonly MacAddress Broadcast = new(0xFFFF_FFFF_FFFFUL);
    public static readonly MacAddress Zero = new(0);

    public bool IsBroadcast => Value == Broadcast.Value;
    /// <summary>Group bit (I/G) set: broadcast or multicast.</summary>
    public bool IsMulticast => (Value & 0x0100_0000_0000UL) != 0;
    public bool IsUnicast => !IsMulticast;
    public bool IsZero => Value == 0;
    public bool IsLocallyAdministered => (Value & 0x0200_0000_0000UL) != 0;

    public static MacAddress Read(ReadOnlySpan<byte> b) =>
        new(((ulong)BinaryPrimitives.ReadUInt16BigEndian(b) << 32) | BinaryPrimitives.ReadUInt32BigEndian(b[2..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)(Value >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(b[2..], (uint)Value);
    }

    public int CompareTo(MacAddress other) => Value.CompareTo(other.Value);

    public override string ToString() => string.Create(17, Value, static (s, v) =>
    {
        for (int i = 0; i < 6; i++)
        {
            byte o = (byte)(v >> (40 - 8 * i));
            s[i * 3] = HexDigit(o >> 4);
            s[i * 3 + 1] = HexDigit(o & 0xF);
            if (i < 5) s[i * 3 + 2] = ':';
        }
    });

    private static char HexDigit(int d) => (char)(d < 10 ? '0' + d : 'a' + d - 10);

    public static bool TryParse(string? s, out MacAddress mac)
    {
        mac = default;
        if (s is null) return false;
        string[] parts = s.Split(':', '-');
        if (parts.Length != 6) return false;
        ulong v = 0;
        foreach (string p in parts)
        {
            if (p.Length is < 1 or > 2 || !byte.TryParse(p, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte o)) return false;
            v = (v << 8) | o;
        }
        mac = new MacAddress(v);
        return true;
    }

    public static MacAddress Parse(string s) =>
        TryParse(s, out MacAddress m) ? m : throw new FormatException($"'{s}' is not a MAC address (expected six hex octets like 02:00:00:00:00:01)");
}

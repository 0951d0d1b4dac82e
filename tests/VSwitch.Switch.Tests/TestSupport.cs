using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.Tests;

/// <summary>A clock the test moves by hand.</summary>
public sealed class ManualClock : TimeProvider
{
    private long _ticks = 1_000_000_000;

    public override long TimestampFrequency => 1_000_000_000;
    public override long GetTimestamp() => _ticks;
    public void Advance(TimeSpan by) => _ticks += (long)(by.TotalSeconds * TimestampFrequency);
}

public static class Frames
{
    public const ushort TestEtherType = 0x88B5; // IEEE local experimental

    public static MacAddress Mac(int n) => new(0x0200_0000_0000UL | (uint)n);

    /// <summary>A minimum-size Ethernet frame (60 bytes) with a recognisable payload.</summary>
    public static byte[] Make(MacAddress dst, MacAddress src, int length = 60, ushort etherType = TestEtherType, byte fill = 0x5A, ushort? vlan = null)
    {
        byte[] f = new byte[length];
        int h = new EthernetRepr(dst, src, etherType, vlan).Emit(f);
        for (int i = h; i < f.Length; i++) f[i] = (byte)(fill + i);
        return f;
    }
}

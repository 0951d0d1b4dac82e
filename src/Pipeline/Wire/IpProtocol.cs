namespace VSwitch.Pipeline.Wire;

/// <summary>IANA protocol numbers carried in the IPv4 Protocol field.</summary>
public static class IpProtocol
{
    public const byte Icmp = 1;
    public const byte Igmp = 2;
    public const byte Tcp = 6;
    public const byte Udp = 17;
}

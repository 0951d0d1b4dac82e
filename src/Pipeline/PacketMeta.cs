using System.Runtime.InteropServices;

namespace VSwitch.Pipeline;

[Flags]
public enum PacketFlags : ushort
{
    None = 0,
    /// <summary>The packet is sampled for tracing; stages record what they decided.</summary>
    Traced = 1 << 0,
    /// <summary>Ethernet header had an 802.1Q tag.</summary>
    Tagged = 1 << 1,
    /// <summary>Destination MAC is broadcast or multicast.</summary>
    GroupDestination = 1 << 2,
}

/// <summary>Well-known port ids used in <see cref="PacketMeta.OutPort"/>.</summary>
public static class PortIds
{
    /// <summary>Send to every port except the ingress port.</summary>
    public const ushort Flood = 0xFFFF;
    /// <summary>Not yet decided.</summary>
    public const ushort None = 0xFFFE;
    public const int MaxPorts = 4096;
}

/// <summary>
/// Per-packet metadata, kept beside the buffer in the slab (VPP's buffer metadata). Parse once, keep offsets.
/// Size is asserted (≤ 64 bytes) in a test: it is touched for every packet by every stage.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct PacketMeta
{
    /// <summary>Offset of the first frame byte within the slot (headroom before it).</summary>
    public int Offset;
    /// <summary>Frame length in bytes.</summary>
    public int Length;
    public ushort InPort;
    public ushort OutPort;
    public ushort EtherType;
    public ushort VlanId;
    /// <summary>Offset of the L3 header relative to <see cref="Offset"/>.</summary>
    public ushort L3Offset;
    /// <summary>Offset of the L4 header relative to <see cref="Offset"/> (0 when none).</summary>
    public ushort L4Offset;
    public PacketFlags Flags;
    public byte DropStage;
    public byte DropReason;
    public uint Vni;
    public uint FlowHash;
    public int CtIndex;
    public uint TraceId;
    /// <summary>Destination MAC, parsed by ethernet-parse.</summary>
    public ulong DstMac;
    /// <summary>Source MAC, parsed by ethernet-parse.</summary>
    public ulong SrcMac;
}

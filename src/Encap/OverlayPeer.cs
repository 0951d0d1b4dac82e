using System.Buffers.Binary;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Encap;

/// <summary>
/// Another node's VTEP: its underlay address, the pod subnet routed to it and the MAC its router answers on inside the
/// overlay (flannel's model). Holds the prebuilt outer IPv4/UDP/VXLAN header for frames sent to it.
/// </summary>
public sealed class OverlayPeer
{
    /// <summary>Outer IPv4 (20) + UDP (8) + VXLAN (8): what the switch writes in front of an inner frame. The outer
    /// Ethernet header is the kernel's: the underlay is sent through a raw IP socket, which routes and resolves it.</summary>
    public const int OuterSize = Ipv4View.MinHeaderSize + UdpView.HeaderSize + VxlanView.Size;
    /// <summary>Outer bytes including the underlay Ethernet header, for MTU arithmetic (1500 - 50 = 1450).</summary>
    public const int Overhead = OuterSize + EthernetView.HeaderSize;

    private readonly byte[] _template = new byte[OuterSize];
    private readonly uint _baseSum;
    private ushort _nextId;

    public OverlayPeer(string name, Ipv4Address address, Ipv4Prefix? podCidr, MacAddress vtepMac, Ipv4Address localAddress,
        ushort udpPort, uint vni, bool isStatic = true)
    {
        Name = name;
        Address = address;
        PodCidr = podCidr;
        VtepMac = vtepMac;
        IsStatic = isStatic;
        // IPv4: version/IHL, TOS 0, length (per packet), id (per packet), no DF (like the kernel's vxlan default),
        // TTL 64, UDP, checksum (per packet), source, destination.
        new Ipv4Repr(localAddress, address, IpProtocol.Udp, 0, Ttl: 64).Emit(_template);
        BinaryPrimitives.WriteUInt16BigEndian(_template.AsSpan(10), 0);
        BinaryPrimitives.WriteUInt16BigEndian(_template.AsSpan(2), 0);
        _baseSum = Checksum.Sum(_template.AsSpan(0, Ipv4View.MinHeaderSize));
        // UDP: source port (per packet, from the inner flow), destination port, length (per packet), checksum 0
        // (RFC 7348 §5: SHOULD be zero for IPv4; the inner frame carries its own checksums).
        new UdpRepr(0, udpPort, 0, 0).Emit(_template.AsSpan(Ipv4View.MinHeaderSize));
        new VxlanRepr(vni).Emit(_template.AsSpan(Ipv4View.MinHeaderSize + UdpView.HeaderSize));
    }

    public string Name { get; }
    public Ipv4Address Address { get; }
    public Ipv4Prefix? PodCidr { get; }
    public MacAddress VtepMac { get; }
    /// <summary>Configured (true) or discovered from traffic (false).</summary>
    public bool IsStatic { get; }
    public long TxPackets { get; internal set; }
    public long TxBytes { get; internal set; }
    public long RxPackets { get; internal set; }
    public long RxBytes { get; internal set; }
    /// <summary>Timestamp of the last frame received from this peer (0 = never).</summary>
    public long LastSeen { get; internal set; }
    /// <summary>Its index in the overlay (stable for its life).</summary>
    public int Index { get; internal set; }
    /// <summary>Timestamp it was added at (learned peers age from it until a frame comes).</summary>
    public long Created { get; set; }

    /// <summary>Carries the counters of the peer this one replaces (an update of its address or MAC).</summary>
    internal void TakeCounters(OverlayPeer old)
    {
        TxPackets = old.TxPackets;
        TxBytes = old.TxBytes;
        RxPackets = old.RxPackets;
        RxBytes = old.RxBytes;
        LastSeen = old.LastSeen;
        Created = old.Created;
    }

    /// <summary>
    /// Writes the outer IPv4/UDP/VXLAN header for an inner frame of <paramref name="innerLength"/> bytes at
    /// <paramref name="outer"/> (which must have <see cref="OuterSize"/> bytes before the inner frame).
    /// </summary>
    public unsafe void WriteOuter(byte* outer, int innerLength, ushort sourcePort)
    {
        fixed (byte* t = _template)
        {
            Buffer.MemoryCopy(t, outer, OuterSize, OuterSize);
        }
        int total = OuterSize + innerLength;
        ushort id = _nextId++;
        // Header checksum: the template's sum with length and id added (RFC 1071 sums commute).
        ulong sum = _baseSum + (uint)total + id;
        ushort csum = (ushort)~Checksum.Fold(sum);
        outer[2] = (byte)(total >> 8);
        outer[3] = (byte)total;
        outer[4] = (byte)(id >> 8);
        outer[5] = (byte)id;
        outer[10] = (byte)(csum >> 8);
        outer[11] = (byte)csum;
        int udpLength = total - Ipv4View.MinHeaderSize;
        outer[20] = (byte)(sourcePort >> 8);
        outer[21] = (byte)sourcePort;
        outer[24] = (byte)(udpLength >> 8);
        outer[25] = (byte)udpLength;
    }

    public override string ToString() => $"{Name} {Address}";
}

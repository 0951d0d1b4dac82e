using System.Buffers.Binary;
using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L3;
using VSwitch.Tap;
using VSwitch.Pipeline.Stages;
using static VSwitch.Switch.Tests.Frames;
using static VSwitch.Switch.Tests.L3Frames;

namespace VSwitch.Switch.Tests;

/// <summary>TCP super-frames and partial checksums from a port with offloads, through the whole datapath: kept whole
/// for a port that takes them, finished in software for one that does not, cut before VXLAN encapsulation.</summary>
public class OffloadDatapathTests
{
    private static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");
    private static readonly MacAddress PeerVtep = MacAddress.Parse("0e:00:0a:f4:02:01");
    internal static readonly MacAddress PodA = MacAddress.Parse("02:00:0a:f4:01:02");
    private static readonly MacAddress PodB = MacAddress.Parse("02:00:0a:f4:01:03");
    private static readonly MacAddress PodC = MacAddress.Parse("02:00:0a:f4:01:04");

    /// <summary>A TCP super-frame as a TAP with TSO hands it over: one IPv4 packet of <paramref name="payload"/> bytes whose
    /// checksum field holds only the pseudo-header sum.</summary>
    internal static byte[] SuperFrame(MacAddress dst, string dstIp, int payload)
    {
        byte[] f = Tcp(dst, PodA, "10.244.1.2", dstIp, 40000, 5201, TcpFlags.Ack | TcpFlags.Psh, seq: 5000, ack: 1, payload: payload);
        ushort pseudo = Checksum.PseudoHeaderSum(Ip("10.244.1.2"), Ip(dstIp), IpProtocol.Tcp, 20 + payload);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(14 + 20 + 16), pseudo);
        return f;
    }

    private static void AssertSegments(IReadOnlyList<byte[]> frames, int innerOffset, int payload, int mss)
    {
        int expected = (payload + mss - 1) / mss;
        Assert.Equal(expected, frames.Count);
        uint seq = 5000;
        for (int k = 0; k < frames.Count; k++)
        {
            Assert.True(Ipv4View.TryCreate(frames[k].AsSpan(innerOffset + 14), out Ipv4View ip));
            Assert.True(ip.IsChecksumValid, $"segment {k} IPv4 checksum");
            Assert.True(Checksum.VerifyTransport(ip), $"segment {k} TCP checksum");
            int len = Math.Min(mss, payload - k * mss);
            Assert.Equal(20 + 20 + len, ip.TotalLength);
            Assert.Equal(seq, BinaryPrimitives.ReadUInt32BigEndian(ip.Payload[4..]));
            seq += (uint)len;
        }
    }

    [Fact]
    public void A_super_frame_stays_whole_for_a_port_with_tso_and_is_segmented_for_one_without()
    {
        var dp = new Datapath(new DatapathOptions { Slots = 1024, LargeSlots = 8 });
        var a = new MemoryPort("pod-a") { Offloads = PortOffloads.All };
        var b = new MemoryPort("pod-b") { Offloads = PortOffloads.All };
        var c = new MemoryPort("pod-c");
        dp.AddPort(a);
        dp.AddPort(b);
        dp.AddPort(c);
        b.Inject(Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 5201, 40000, TcpFlags.Ack)); // learn B and C
        c.Inject(Tcp(PodA, PodC, "10.244.1.4", "10.244.1.2", 5201, 40000, TcpFlags.Ack));
        dp.RunOnce();
        b.ClearTransmitted();
        c.ClearTransmitted();
        a.InjectOffloaded(SuperFrame(PodB, "10.244.1.3", 20_000), GsoType.Tcp4, 1448);
        a.InjectOffloaded(SuperFrame(PodC, "10.244.1.4", 20_000), GsoType.Tcp4, 1448);
        dp.RunOnce();
        byte[] whole = Assert.Single(b.Transmitted);
        Assert.Equal(14 + 40 + 20_000, whole.Length);
        Assert.Equal((GsoType.Tcp4, (ushort)1448, PacketFlags.ChecksumPartial), b.TransmittedOffload[0]);
        AssertSegments(c.Transmitted, 0, 20_000, 1448);
        Assert.All(c.TransmittedOffload, o => Assert.Equal((GsoType.None, (ushort)0, PacketFlags.ChecksumValid), o));
        Assert.Equal(dp.Slab.Capacity, dp.Slab.FreeCount);
        Assert.Equal(dp.Slab.LargeCapacity, dp.Slab.LargeFreeCount);
    }

    /// <summary>A node with one pod port with offloads, a tunnel and one peer (10.244.2.0/24 behind 198.18.0.2).</summary>
    private static (Datapath Dp, MemoryPort Pod, MemoryPort Tunnel) OverlayNode()
    {
        var dp = new Datapath(new DatapathOptions
        {
            Slots = 1024,
            LargeSlots = 8,
            Router = new RouterOptions { PodCidr = new Ipv4Prefix(Ip("10.244.1.0"), 24), RouterMac = RouterMac },
            Overlay = new OverlayOptions { LocalAddress = Ip("198.18.0.1") },
        });
        var a = new MemoryPort("pod-a") { Offloads = PortOffloads.All };
        var tunnel = new MemoryPort("vxlan");
        ushort ida = dp.AddPort(a);
        dp.AddPort(tunnel, PortRole.Tunnel);
        dp.AddPeer("node-2", Ip("198.18.0.2"), new Ipv4Prefix(Ip("10.244.2.0"), 24), PeerVtep);
        dp.Router!.Neighbors.AddPermanent(Ip("10.244.1.2"), PodA, ida);
        return (dp, a, tunnel);
    }

    [Fact]
    public void A_super_frame_to_another_node_is_cut_into_segments_that_fit_the_tunnel_then_encapsulated()
    {
        (Datapath dp, MemoryPort a, MemoryPort tunnel) = OverlayNode();
        int mss = 1450 - 40; // the pod's MTU is the overlay's
        a.InjectOffloaded(SuperFrame(RouterMac, "10.244.2.5", 9_000), GsoType.Tcp4, (ushort)mss);
        dp.RunOnce();
        Assert.All(tunnel.Transmitted, d => Assert.True(d.Length <= 1500, $"outer packet of {d.Length} bytes"));
        AssertSegments(tunnel.Transmitted, OverlayPeer.OuterSize, 9_000, mss);
        Assert.Equal(dp.Slab.Capacity, dp.Slab.FreeCount);
    }

    [Fact]
    public void A_super_frame_whose_segments_exceed_the_tunnel_mtu_gets_frag_needed()
    {
        (Datapath dp, MemoryPort a, MemoryPort tunnel) = OverlayNode();
        a.InjectOffloaded(SuperFrame(RouterMac, "10.244.2.5", 9_000), GsoType.Tcp4, 1460); // a 1500-MTU pod's MSS
        dp.RunOnce();
        Assert.Empty(tunnel.Transmitted);
        byte[] icmp = Assert.Single(a.Transmitted);
        Assert.True(Ipv4View.TryCreate(icmp.AsSpan(14), out Ipv4View ip));
        Assert.Equal(IpProtocol.Icmp, ip.Protocol);
        Assert.Equal(3, ip.Payload[0]); // destination unreachable
        Assert.Equal(4, ip.Payload[1]); // fragmentation needed
        Assert.Equal((GsoType.None, (ushort)0, PacketFlags.None), a.TransmittedOffload[0]);
    }
}

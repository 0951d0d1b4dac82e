using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch;
using VSwitch.Switch.L3;
using VSwitch.Tap;

namespace VSwitch.Benchmarks;

/// <summary>
/// ns/packet for the overlay stages over a batch of 64 frames already in the slab: VXLAN encapsulation (outer header
/// written into headroom, flow-hash source port), decapsulation (validate, learn inner source, strip), and IPv4 routing
/// to a remote pod. Each operation restores the buffers it changed, which is included in the time (about 1 ns).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(Cfg))]
public class OverlayBenchmarks : BatchBenchmark
{
    private sealed class Cfg : ManualConfig
    {
        public Cfg() => AddJob(Job.Default.WithGcServer(false).WithGcConcurrent(false));
    }

    private static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");
    private static readonly MacAddress PeerVtep = MacAddress.Parse("0e:00:0a:f4:02:01");
    private PacketSlab _slab = null!;
    private WorkerContext _ctx = null!;
    private PacketBatch _batch = null!;
    private byte[] _next = null!;
    private VxlanEncapStage _encap = null!;
    private VxlanDecapStage _decap = null!;
    private Ipv4RouteStage _route = null!;
    private byte[][] _originals = null!;
    private int _tunnel;

    [GlobalSetup]
    public void Setup()
    {
        _slab = new PacketSlab(1024);
        _ctx = new WorkerContext(_slab, TimeProvider.System) { Now = TimeProvider.System.GetTimestamp() };
        var overlay = new Overlay(new OverlayOptions { LocalAddress = Ipv4Address.Parse("198.18.0.1") }, long.MaxValue / 4);
        var ports = new PortTable();
        ports.Add(new MemoryPort("pod"));
        _tunnel = ports.Add(new MemoryPort("vxlan"), PortRole.Tunnel);
        overlay.TunnelPort = (ushort)_tunnel;
        for (int p = 0; p < 4; p++)
            overlay.AddPeer($"node-{p + 2}", new Ipv4Address(0xC612_0002u + (uint)p), new Ipv4Prefix(new Ipv4Address(0x0AF4_0200u + ((uint)p << 8)), 24), new MacAddress(PeerVtep.Value + ((ulong)p << 8)));
        var router = new Router(new RouterOptions { PodCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.1.0"), 24), RouterMac = RouterMac }, TimeProvider.System.TimestampFrequency)
        {
            Overlay = overlay,
        };
        router.RebuildRoutes();
        _encap = new VxlanEncapStage(overlay, ports);
        _decap = new VxlanDecapStage(overlay, "ip4-route"); // the edge only matters for building this test graph
        _route = new Ipv4RouteStage(router, "vxlan-encap");
        _ = new StageGraph([new PortRxStage("vxlan-decap"), _decap, _route, _encap, new PortTxStage(ports), new DropStage()]);
        _batch = new PacketBatch(Batch);
        _next = new byte[Batch];
        _originals = new byte[Batch][];
        for (int i = 0; i < Batch; i++)
        {
            // 64-byte UDP frames from local pods to pods on 4 remote nodes, 16 flows.
            byte[] f = new byte[60];
            new EthernetRepr(RouterMac, new MacAddress(0x0200_0A00_0000UL | (uint)(i % 8)), EtherType.Ipv4).Emit(f);
            new Ipv4Repr(new Ipv4Address(0x0AF4_0102u + (uint)(i % 8)), new Ipv4Address(0x0AF4_0202u + ((uint)(i % 4) << 8)), IpProtocol.Udp, 26).Emit(f.AsSpan(14));
            new UdpRepr((ushort)(1000 + i % 16), 80, 26).Emit(f.AsSpan(34));
            _originals[i] = f;
            _slab.TryAllocFrame(f, out int slot);
            ref PacketMeta m = ref _slab.Meta[slot];
            m.L3Offset = 14;
            m.DstMac = RouterMac.Value;
            m.SrcMac = 0x0200_0A00_0000UL | (uint)(i % 8);
            m.EtherType = EtherType.Ipv4;
            m.InPort = 0;
            _batch.Add(slot);
        }
    }

    private void Restore()
    {
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++)
        {
            ref PacketMeta m = ref _slab.Meta[slots[i]];
            m.Offset = _slab.Headroom;
            m.Length = 60;
            _originals[i].AsSpan(0, 34).CopyTo(_slab.Frame(slots[i]));
        }
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "vxlan-encap (per-peer header into headroom)")]
    public void Encap()
    {
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++)
        {
            ref PacketMeta m = ref _slab.Meta[slots[i]];
            m.OutPort = (ushort)_tunnel;
            m.PeerAddr = 0xC612_0002u + (uint)(i % 4);
        }
        _encap.Process(_ctx, _batch, _next);
        for (int i = 0; i < Batch; i++)
        {
            ref PacketMeta m = ref _slab.Meta[slots[i]];
            m.Offset += OverlayPeer.OuterSize;
            m.Length -= OverlayPeer.OuterSize;
        }
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "vxlan-decap (validate, learn, strip)")]
    public void Decap()
    {
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++)
        {
            ref PacketMeta m = ref _slab.Meta[slots[i]];
            // Present the frame as the tunnel socket does: VXLAN header in front, outer source in the metadata.
            m.Offset -= VxlanView.Size;
            m.Length += VxlanView.Size;
            new VxlanRepr(1).Emit(_slab.Frame(slots[i]));
            m.PeerAddr = 0xC612_0002u + (uint)(i % 4);
        }
        _decap.Process(_ctx, _batch, _next);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "ip4-route to remote pods (LPM, TTL, MAC rewrite) + vxlan-encap")]
    public void RouteEncap()
    {
        Restore();
        _route.Process(_ctx, _batch, _next);
        _encap.Process(_ctx, _batch, _next);
    }
}

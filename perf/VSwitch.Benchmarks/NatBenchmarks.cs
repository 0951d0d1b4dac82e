using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Benchmarks;

/// <summary>
/// Connection tracking and Service NAT over a batch of 64 TCP segments (64 flows to 64 different Services), with
/// 10, 1,000 or 10,000 Services of 5 endpoints each (50,000 endpoints at the top), in a table sized for 262,144
/// connections:
/// <list type="bullet">
/// <item>hit: an established connection's packet is found in the table (conntrack), passes lb, and is DNAT-rewritten (nat) (addresses, port,
/// incremental IPv4 and TCP checksums, state and timeout refresh);</item>
/// <item>new: a SYN to a ClusterIP (frontend lookup, random endpoint, entry created under both tuples, rewrite),
/// then the entry deleted again (both included);</item>
/// <item>apply: one Service of the set changes its endpoints, on the worker: its frontends replace what it had in the
/// worker's table, and the connections to the endpoint that left are evicted (found through the address index);</item>
/// <item>compile: the same change off the worker: the store finds the Service that changed and compiles it alone.</item>
/// </list>
/// Each operation first restores the 54 header bytes it rewrote (about 2 ns per packet, included).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(Cfg))]
public class NatBenchmarks : BatchBenchmark
{
    private sealed class Cfg : ManualConfig
    {
        public Cfg() => AddJob(Job.Default.WithGcServer(false).WithGcConcurrent(false));
    }

    private static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");

    [Params(10, 1_000, 10_000, 100_000)]
    public int Services { get; set; }

    private PacketSlab _slab = null!;
    private WorkerContext _ctx = null!;
    private PacketBatch _batch = null!;
    private byte[] _next = null!;
    private NatEngine _nat = null!;
    private Stage[] _stages = null!;
    private byte[][] _established = null!;
    private byte[][] _syns = null!;
    private ClusterObjects[] _variants = null!;
    private ServiceDelta[] _deltas = null!;
    private ServiceStore _store = null!;
    private int _variant;

    [GlobalSetup]
    public void Setup()
    {
        _slab = new PacketSlab(1024);
        _ctx = new WorkerContext(_slab, TimeProvider.System) { Now = TimeProvider.System.GetTimestamp() };
        _nat = new NatEngine(new NatOptions
        {
            PodCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.1.0"), 24),
            ClusterCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.0.0"), 16),
            ServiceCidr = new Ipv4Prefix(Ipv4Address.Parse("10.96.0.0"), 12),
            Gateway = Ipv4Address.Parse("10.244.1.1"),
            RouterMac = RouterMac,
        }, TimeProvider.System.TimestampFrequency, new IcmpRateLimiter(1000, TimeProvider.System.TimestampFrequency));
        _variants = [Objects(Services, 0), Objects(Services, 1)];
        _store = new ServiceStore();
        foreach (ServiceDelta d in _store.Compile(_store.Replace("bench", _variants[0]), _nat.CompileService)) _nat.ApplyDelta(d);
        // Service 0's two versions, compiled once: what the control plane hands the worker for the change.
        _deltas = [.. _variants.Select(v => _nat.CompileService("bench/svc-0", v.Services[0], [v.EndpointSlices[0]]))];
        // The three stages of the prerouting arc, one after the other (every packet goes on).
        _stages = [new ConntrackStage(_nat, "lb"), new LoadBalanceStage(_nat, "nat", "port-tx"), new NatStage(_nat, "l2-forward")];
        _ = new StageGraph([new PortRxStage("conntrack"), .. _stages, new Sink("l2-forward"), new PortTxStage(new PortTable()), new DropStage()], Batch);
        _batch = new PacketBatch(Batch);
        _next = new byte[Batch];
        _established = new byte[Batch][];
        _syns = new byte[Batch][];
        for (int i = 0; i < Batch; i++)
        {
            uint vip = Vip(i * 7919 % Services);
            _syns[i] = Segment(0x0AF4_0102u + (uint)(i % 8), vip, (ushort)(20000 + i), TcpFlags.Syn);
            _established[i] = Segment(0x0AF4_0102u + (uint)(i % 8), vip, (ushort)(40000 + i), TcpFlags.Ack);
            _slab.TryAllocFrame(_established[i], out int slot);
            _batch.Add(slot);
        }
        // Open the 64 connections: SYN, SYN+ACK (reply), ACK.
        LoadAndRun(i => Segment(0x0AF4_0102u + (uint)(i % 8), Vip(i * 7919 % Services), (ushort)(40000 + i), TcpFlags.Syn));
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++)
        {
            ref CtEntry e = ref _nat.Conntrack[_slab.Meta[slots[i]].CtIndex >> 1];
            e.State = CtState.Established;
            e.Status |= CtStatus.SeenReply | CtStatus.Assured;
        }
        Restore(_established);
        RunStages();
        if (_nat.Conntrack.Count != Batch) throw new InvalidOperationException($"expected {Batch} connections, have {_nat.Conntrack.Count}");
    }

    private void RunStages()
    {
        foreach (Stage st in _stages) st.Process(_ctx, _batch, _next);
    }

    private sealed class Sink(string name) : Stage(name, [])
    {
        public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next) { }
    }

    private void LoadAndRun(Func<int, byte[]> frame)
    {
        for (int i = 0; i < Batch; i++) frame(i).CopyTo(_slab.Frame(_batch.Slots[i]));
        Prepare();
        RunStages();
    }

    private void Prepare()
    {
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++)
        {
            ref PacketMeta m = ref _slab.Meta[slots[i]];
            m.Offset = _slab.Headroom;
            m.Length = 60;
            m.L3Offset = 14;
            m.EtherType = EtherType.Ipv4;
            m.DstMac = RouterMac.Value;
            m.InPort = 0;
        }
    }

    private void Restore(byte[][] frames)
    {
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++) frames[i].AsSpan(0, 54).CopyTo(_slab.Frame(slots[i]));
        Prepare();
    }

    private static uint Vip(int service) => 0x0A60_0000u + 10 + (uint)service;

    private static ClusterObjects Objects(int services, int variant)
    {
        var svcs = new List<ServiceObject>(services);
        var slices = new List<EndpointSliceObject>(services);
        for (int s = 0; s < services; s++)
        {
            svcs.Add(new ServiceObject
            {
                Namespace = "bench",
                Name = $"svc-{s}",
                ClusterIPs = [new Ipv4Address(Vip(s))],
                Ports = [new ServicePortSpec { Name = "http", Protocol = IpProtocol.Tcp, Port = 80, TargetPort = 8080 }],
            });
            // Service 0 is the one that changes between the two variants.
            int shift = s == 0 ? variant : 0;
            slices.Add(new EndpointSliceObject
            {
                Namespace = "bench",
                Name = $"svc-{s}-x",
                ServiceName = $"svc-{s}",
                Ports = [new EndpointPortSpec { Name = "http", Protocol = IpProtocol.Tcp, Port = 8080 }],
                Endpoints = [.. Enumerable.Range(0, 5).Select(e => new EndpointSpec
                {
                    Addresses = [new Ipv4Address(0x0AF4_0000u + (uint)((s * 5 + e + shift) % 60000) + 256)],
                    NodeName = "node-1",
                })],
            });
        }
        return new ClusterObjects { Services = svcs, EndpointSlices = slices };
    }

    private static byte[] Segment(uint src, uint dst, ushort sport, TcpFlags flags)
    {
        byte[] f = new byte[60];
        new EthernetRepr(RouterMac, new MacAddress(0x0200_0A00_0000UL | (src & 0xFF)), EtherType.Ipv4).Emit(f);
        new Ipv4Repr(new Ipv4Address(src), new Ipv4Address(dst), IpProtocol.Tcp, 20).Emit(f.AsSpan(14));
        new TcpRepr(sport, 80, 1, 1, flags, 1000).Emit(f.AsSpan(34));
        Ipv4View.TryCreate(f.AsSpan(14, 40), out Ipv4View ip);
        Checksum.TryUpdateTransport(ip);
        return f;
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "conntrack hit + DNAT rewrite")]
    public void Hit()
    {
        Restore(_established);
        RunStages();
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "new connection: Service lookup, random endpoint, create + delete entry")]
    public void NewConnection()
    {
        Restore(_syns);
        RunStages();
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++) _nat.Conntrack.Delete(_slab.Meta[slots[i]].CtIndex >> 1);
    }

    [Benchmark(Description = "apply one changed Service on the worker: replace its frontends, evict from the endpoint that left")]
    public int ApplyOneChange()
    {
        _variant ^= 1;
        return _nat.ApplyDelta(_deltas[_variant]);
    }

    [Benchmark(Description = "compile one changed Service off the worker: find what changed, compile it")]
    public int CompileOneChange()
    {
        _variant ^= 1;
        ClusterObjects v = _variants[_variant];
        return _store.Compile(_store.Upsert("bench", new ClusterObjects { EndpointSlices = [v.EndpointSlices[0]] }), _nat.CompileService).Count;
    }
}

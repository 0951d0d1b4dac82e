using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch;
using VSwitch.Switch.L2;
using VSwitch.Tap;

namespace VSwitch.Benchmarks;

/// <summary>Shared set-up: 64-byte frames between a handful of hosts, in batches of <see cref="Batch"/>.</summary>
public abstract class BatchBenchmark
{
    public const int Batch = 64;
    protected const int Hosts = 8;

    protected static byte[] Frame(int dst, int src)
    {
        byte[] f = new byte[60];
        new EthernetRepr(new MacAddress(0x0200_0000_0000UL | (uint)dst), new MacAddress(0x0200_0000_0000UL | (uint)src), EtherType.Ipv4).Emit(f);
        new Ipv4Repr(new Ipv4Address(0x0AF40100u | (uint)src), new Ipv4Address(0x0AF40100u | (uint)dst), IpProtocol.Udp, 26).Emit(f.AsSpan(14));
        return f;
    }
}

/// <summary>ns/packet for single stages over a batch already in the slab (no I/O).</summary>
[MemoryDiagnoser]
[Config(typeof(Cfg))]
public class StageBenchmarks : BatchBenchmark
{
    private sealed class Cfg : ManualConfig
    {
        public Cfg() => AddJob(Job.Default.WithGcServer(false).WithGcConcurrent(false));
    }

    private PacketSlab _slab = null!;
    private WorkerContext _ctx = null!;
    private PacketBatch _batch = null!;
    private byte[] _next = null!;
    private EthernetParseStage _parse = null!;
    private L2LearnStage _learn = null!;
    private L2ForwardStage _forward = null!;

    [GlobalSetup]
    public void Setup()
    {
        _slab = new PacketSlab(1024);
        _ctx = new WorkerContext(_slab, TimeProvider.System) { Now = TimeProvider.System.GetTimestamp() };
        var table = new MacTable(8192, long.MaxValue / 4);
        _parse = new EthernetParseStage();
        _learn = new L2LearnStage(table, MacTableFullPolicy.Flood);
        _forward = new L2ForwardStage(table);
        _ = new StageGraph([new PortRxStage(), _parse, _learn, _forward, new PortTxStage(new PortTable()), new DropStage()]);
        _batch = new PacketBatch(Batch);
        _next = new byte[Batch];
        for (int i = 0; i < Batch; i++)
        {
            // Round-robin sources and destinations across ports: the learn cache of "same source as last" rarely hits.
            int src = i % Hosts, dst = (i * 3 + 1) % Hosts;
            _slab.TryAllocFrame(Frame(dst, src), out int slot);
            _slab.Meta[slot].InPort = (ushort)(src % 4);
            _batch.Add(slot);
        }
        _parse.Process(_ctx, _batch, _next);
        _learn.Process(_ctx, _batch, _next);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "ethernet-parse")]
    public void Parse() => _parse.Process(_ctx, _batch, _next);

    [Benchmark(OperationsPerInvoke = Batch, Description = "l2-learn + l2-forward")]
    public void LearnForward()
    {
        _learn.Process(_ctx, _batch, _next);
        _forward.Process(_ctx, _batch, _next);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "Ipv4View parse + checksum verify")]
    public int Ipv4Parse()
    {
        int ok = 0;
        int[] slots = _batch.Slots;
        for (int i = 0; i < Batch; i++)
        {
            if (Ipv4View.TryCreate(_slab.Frame(slots[i])[14..], out Ipv4View ip) && ip.IsChecksumValid) ok++;
        }
        return ok;
    }
}

/// <summary>ns/packet for the whole graph: memory-port receive (a copy into the slab, as a NIC DMA would),
/// port-rx → ethernet-parse → l2-learn → l2-forward → port-tx (batched send to a counting port) → free.</summary>
[MemoryDiagnoser]
[Config(typeof(Cfg))]
#pragma warning disable CA1001 // disposed in [GlobalCleanup], the BenchmarkDotNet way
public class PipelineBenchmarks : BatchBenchmark
#pragma warning restore CA1001
{
    private sealed class Cfg : ManualConfig
    {
        public Cfg() => AddJob(Job.Default.WithGcServer(false).WithGcConcurrent(false));
    }

    private Datapath _dp = null!;

    [Params(64, 1514)]
    public int FrameSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _dp = new Datapath(new DatapathOptions { BatchSize = Batch, Slots = 1024 });
        var ports = new MemoryPort[4];
        for (int p = 0; p < ports.Length; p++)
        {
            ports[p] = new MemoryPort($"p{p}", recordTx: false);
            _dp.AddPort(ports[p]);
        }
        for (int p = 0; p < ports.Length; p++)
        {
            var frames = new List<byte[]>();
            for (int i = 0; i < Hosts; i++)
            {
                byte[] f = Frame((p + 1) % 4 + 4 * (i % 2), p + 4 * (i % 2));
                Array.Resize(ref f, FrameSize == 64 ? 60 : 1514);
                frames.Add(f);
            }
            ports[p].SetReplay(frames);
        }
        for (int i = 0; i < 1000; i++) _dp.RunOnce(); // learn everything
    }

    [GlobalCleanup]
    public void Cleanup() => _dp.Dispose();

    /// <summary>One batch per port: 4 × 64 packets.</summary>
    [Benchmark(OperationsPerInvoke = Batch * 4, Description = "whole L2 pipeline (memory ports)")]
    public int Pipeline() => _dp.RunOnce();
}

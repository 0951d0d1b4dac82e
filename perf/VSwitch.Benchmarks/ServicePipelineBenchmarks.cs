using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using VSwitch.Encap;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch;
using VSwitch.Switch.L3;
using VSwitch.Tap;

namespace VSwitch.Benchmarks;

/// <summary>
/// The whole pipeline of a node with routing, Services and the overlay, driven by <see cref="Datapath.RunOnce"/> over
/// memory ports: a pod sends 64-byte UDP datagrams (64 flows, one batch) to a ClusterIP whose 3 endpoints are on
/// another node. Per packet: port-rx (copy into the slab), ethernet-parse, l2-learn, conntrack hit + DNAT rewrite,
/// l2-forward, ip4-route (LPM, TTL, MACs), vxlan-encap (outer headers into the headroom), port-tx. 1,000 Services are
/// installed. The issue 5 target for this path is 250 ns per packet with 0 bytes allocated.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(Cfg))]
#pragma warning disable CA1001 // disposed in [GlobalCleanup], the BenchmarkDotNet way
public class ServicePipelineBenchmarks : BatchBenchmark
#pragma warning restore CA1001
{
    private sealed class Cfg : ManualConfig
    {
        public Cfg() => AddJob(Job.Default.WithGcServer(false).WithGcConcurrent(false));
    }

    private static readonly MacAddress RouterMac = MacAddress.Parse("0e:00:0a:f4:01:01");
    private Datapath _dp = null!;
    private MemoryPort _tunnel = null!;

    [GlobalSetup]
    public void Setup()
    {
        _dp = new Datapath(new DatapathOptions
        {
            BatchSize = Batch,
            Slots = 1024,
            Router = new RouterOptions { PodCidr = new Ipv4Prefix(Ipv4Address.Parse("10.244.1.0"), 24), RouterMac = RouterMac },
            Overlay = new OverlayOptions { LocalAddress = Ipv4Address.Parse("198.18.0.1") },
            Nat = new NatOptions { ServiceCidr = new Ipv4Prefix(Ipv4Address.Parse("10.96.0.0"), 12), NodeName = "node-1", MaxConnections = 262_144 },
        });
        var pod = new MemoryPort("pod", recordTx: false);
        _tunnel = new MemoryPort("vxlan", recordTx: false);
        _dp.AddPort(pod);
        _dp.AddPort(_tunnel, PortRole.Tunnel);
        _dp.AddPeer("node-2", Ipv4Address.Parse("198.18.0.2"), new Ipv4Prefix(Ipv4Address.Parse("10.244.2.0"), 24), MacAddress.Parse("0e:00:0a:f4:02:01"));
        var services = new List<ServiceObject>();
        var slices = new List<EndpointSliceObject>();
        for (int s = 0; s < 1000; s++)
        {
            string name = $"svc-{s}";
            services.Add(new ServiceObject
            {
                Namespace = "bench",
                Name = name,
                ClusterIPs = [new Ipv4Address(0x0A60_000Au + (uint)s)],
                Ports = [new ServicePortSpec { Name = "dns", Protocol = IpProtocol.Udp, Port = 53, TargetPort = 5353 }],
            });
            slices.Add(new EndpointSliceObject
            {
                Namespace = "bench",
                Name = name + "-x",
                ServiceName = name,
                Ports = [new EndpointPortSpec { Name = "dns", Protocol = IpProtocol.Udp, Port = 5353 }],
                Endpoints = [.. Enumerable.Range(0, 3).Select(e => new EndpointSpec
                {
                    Addresses = [new Ipv4Address(0x0AF4_0203u + (uint)e)], NodeName = "node-2", Ready = true, Serving = true,
                })],
            });
        }
        NatEngine nat = _dp.Nat!;
        nat.Apply(nat.Compile(new ClusterObjects { Services = services, EndpointSlices = slices }));
        var frames = new List<byte[]>();
        var podMac = MacAddress.Parse("02:00:0a:f4:01:02");
        for (int i = 0; i < Batch; i++)
        {
            byte[] f = new byte[60];
            new EthernetRepr(RouterMac, podMac, EtherType.Ipv4).Emit(f);
            new Ipv4Repr(Ipv4Address.Parse("10.244.1.2"), new Ipv4Address(0x0A60_000Au + (uint)(i * 7)), IpProtocol.Udp, 26).Emit(f.AsSpan(14));
            new UdpRepr((ushort)(40000 + i), 53, 26).Emit(f.AsSpan(34));
            Ipv4View.TryCreate(f.AsSpan(14), out Ipv4View ip);
            Checksum.TryUpdateTransport(ip);
            frames.Add(f);
        }
        pod.SetReplay(frames);
        for (int i = 0; i < 100; i++) _dp.RunOnce(); // the 64 connections are created in the first round; the rest hit
        long sent = _tunnel.Counters[(int)PortCounter.TxPackets];
        if (sent < 100 * Batch - Batch) throw new InvalidOperationException($"set-up: only {sent} packets reached the tunnel");
    }

    [GlobalCleanup]
    public void Cleanup() => _dp.Dispose();

    [Benchmark(OperationsPerInvoke = Batch, Description = "whole pipeline: L2 + conntrack hit + DNAT + route + VXLAN encap (memory ports)")]
    public int Pipeline() => _dp.RunOnce();
}

using System.Buffers.Binary;
using VSwitch.Encap;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L3;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.L3Frames;
using static VSwitch.Switch.Tests.ServiceNatTests;

namespace VSwitch.Switch.Tests;

/// <summary>
/// Several workers over memory ports: each worker has its own instance of every port (as each has its own queue of a
/// multi-queue TAP), packets are injected on whichever worker's instance the test picks (as the kernel would), and the
/// workers are run in turn on the test thread until nothing moves.
/// </summary>
public sealed class MultiWorkerTests
{
    private readonly ManualClock _clock = new();

    private sealed class Worker(Datapath dp, MemoryPort a, MemoryPort b, MemoryPort c, MemoryPort host, MemoryPort tunnel)
    {
        public Datapath Dp { get; } = dp;
        public MemoryPort A { get; } = a;
        public MemoryPort B { get; } = b;
        public MemoryPort C { get; } = c;
        public MemoryPort Host { get; } = host;
        public MemoryPort Tunnel { get; } = tunnel;
        public NatEngine Nat => Dp.Nat!;
        public long Stage(string stage, int counter) => Dp.Graph.Find(stage)!.Counters[counter];
        public MemoryPort[] All => [A, B, C, Host, Tunnel];
    }

    private sealed class Switch(Worker[] workers)
    {
        public Worker[] W { get; } = workers;

        /// <summary>Runs every worker in turn until none has anything left to do.</summary>
        public void Run()
        {
            for (int round = 0; round < 50; round++)
            {
                int moved = 0;
                foreach (Worker w in W) moved += w.Dp.RunOnce();
                if (moved == 0 && W.All(w => !w.Dp.Mesh!.HasWork(w.Dp.WorkerIndex))) return;
            }
            throw new InvalidOperationException("the workers never settled");
        }

        public List<byte[]> Sent(Func<Worker, MemoryPort> port) => W.SelectMany(w => port(w).Transmitted).ToList();

        public void ClearTx()
        {
            foreach (Worker w in W)
                foreach (MemoryPort p in w.All) p.ClearTransmitted();
        }

        public void Apply(params object[] objects)
        {
            foreach (Worker w in W)
                w.Nat.Apply(w.Nat.Compile(new ClusterObjects
                {
                    Services = objects.OfType<ServiceObject>().ToList(),
                    EndpointSlices = objects.OfType<EndpointSliceObject>().ToList(),
                }));
        }

        public int Connections => W.Sum(w => w.Nat.Conntrack.Count);
        public int Redirects => W.Sum(w => w.Nat.Steering!.Redirects);
    }

    private Switch Build(int workers = 2)
    {
        var mesh = new WorkerMesh(workers);
        var list = new Worker[workers];
        for (int i = 0; i < workers; i++)
        {
            var dp = new Datapath(new DatapathOptions
            {
                Slots = 1024,
                Router = new RouterOptions { PodCidr = new Ipv4Prefix(Ip("10.244.1.0"), 24), RouterMac = RouterMac },
                Overlay = new OverlayOptions { LocalAddress = Ip("198.18.0.1") },
                Nat = new NatOptions
                {
                    ServiceCidr = new Ipv4Prefix(Ip("10.96.0.0"), 12),
                    NodeAddress = Ip("198.18.0.1"),
                    NodeName = "node-1",
                    MaxConnections = 4096,
                },
                Mesh = mesh,
                WorkerIndex = i,
            }, _clock);
            var w = new Worker(dp, new MemoryPort("pod-a"), new MemoryPort("pod-b"), new MemoryPort("pod-c"), new MemoryPort("host"), new MemoryPort("vxlan"));
            ushort ida = dp.AddPort(w.A), idb = dp.AddPort(w.B), idc = dp.AddPort(w.C);
            ushort idh = dp.AddPort(w.Host, PortRole.Host);
            dp.AddPort(w.Tunnel, PortRole.Tunnel);
            dp.AddPeer("node-2", Ip("198.18.0.2"), new Ipv4Prefix(Ip("10.244.2.0"), 24), PeerVtep);
            dp.Router!.HostMac = HostMac;
            dp.Router.Neighbors.AddPermanent(Ip("10.244.1.1"), HostMac, idh);
            dp.Router.Neighbors.AddPermanent(Ip("10.244.1.2"), PodA, ida);
            dp.Router.Neighbors.AddPermanent(Ip("10.244.1.3"), PodB, idb);
            dp.Router.Neighbors.AddPermanent(Ip("10.244.1.4"), PodC, idc);
            list[i] = w;
        }
        var s = new Switch(list);
        s.Run();
        return s;
    }

    private static (string Src, ushort Sport, string Dst, ushort Dport) Tuple(byte[] frame)
    {
        Assert.True(Ipv4View.TryCreate(frame.AsSpan(14), out Ipv4View ip));
        Assert.True(ip.IsChecksumValid, "IPv4 header checksum");
        Assert.True(Checksum.VerifyTransport(ip), "transport checksum");
        Span<byte> l4 = ip.Payload;
        return (ip.Source.ToString(), BinaryPrimitives.ReadUInt16BigEndian(l4), ip.Destination.ToString(), BinaryPrimitives.ReadUInt16BigEndian(l4[2..]));
    }

    [Fact]
    public void Both_directions_of_every_ClusterIP_connection_meet_one_entry_whichever_worker_reads_them()
    {
        Switch sw = Build();
        sw.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        const int n = 64;
        for (int k = 0; k < n; k++)
        {
            ushort port = (ushort)(40000 + k);
            // The client's SYN is read by worker k % 2, the server's answer by the other one, the client's ACK by the first.
            Worker first = sw.W[k % 2], second = sw.W[(k + 1) % 2];
            first.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Syn, seq: 1));
            sw.Run();
            byte[] syn = Assert.Single(sw.Sent(w => w.B));
            Assert.Equal(("10.244.1.2", port, "10.244.1.3", (ushort)8080), Tuple(syn));
            sw.ClearTx();

            second.B.Inject(Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 8080, port, TcpFlags.Syn | TcpFlags.Ack, seq: 500, ack: 2));
            sw.Run();
            byte[] synAck = Assert.Single(sw.Sent(w => w.A));
            Assert.Equal((Vip, (ushort)80, "10.244.1.2", port), Tuple(synAck));
            sw.ClearTx();

            first.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Ack, seq: 2, ack: 501, payload: 10));
            sw.Run();
            Assert.Equal(("10.244.1.2", port, "10.244.1.3", (ushort)8080), Tuple(Assert.Single(sw.Sent(w => w.B))));
            sw.ClearTx();
        }
        // One entry per connection, in exactly one worker, every one of them established.
        Assert.Equal(n, sw.Connections);
        Assert.All(sw.W.SelectMany(w => w.Nat.Conntrack.Snapshot()), e => Assert.Equal(CtState.Established, e.Entry.State));
        Assert.True(sw.W.All(w => w.Nat.Conntrack.Count > 0), "connections live on both workers");
        // Some replies hashed to the worker that did not own the connection: redirected, and so were their packets.
        Assert.True(sw.Redirects > 0);
        Assert.True(sw.W.Sum(w => w.Stage("conntrack", (int)ConntrackStage.Counter.HandedOff)) > 0);
        Assert.True(sw.W.Sum(w => w.Stage("steer", (int)SteerStage.Counter.HandedOff)) > 0);
        Assert.Equal(0, sw.W.Sum(w => w.Dp.Graph.Drop.NonZero().Sum(d => d.Count)));

        // Endpoint removal evicts every connection, and the redirects go with them.
        sw.Apply(Svc("web", Vip, 80, 8080));
        sw.Run();
        Assert.Equal(0, sw.Connections);
        Assert.Equal(0, sw.Redirects);
    }

    [Fact]
    public void Two_Services_on_one_endpoint_from_one_client_port_are_told_apart_whichever_workers_decide_them()
    {
        // The same client port to two ClusterIPs with the same endpoint: after DNAT both connections would have the same
        // reply tuple. The kernel remaps the second one's source port; so must the switch, whichever worker each
        // connection's packets reach. Clients reuse a port soon after a close when the server closed first.
        const string vip2 = "10.96.0.11";
        Switch sw = Build();
        sw.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)),
            Svc("web2", vip2, 80, 8080), Slice("web2", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        const int n = 32;
        for (int k = 0; k < n; k++)
        {
            ushort port = (ushort)(42000 + k);
            Worker first = sw.W[k % 2], second = sw.W[(k / 2) % 2];
            first.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Syn, seq: 1));
            sw.Run();
            Assert.Equal(("10.244.1.2", port, "10.244.1.3", (ushort)8080), Tuple(Assert.Single(sw.Sent(w => w.B))));
            sw.ClearTx();

            second.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", vip2, port, 80, TcpFlags.Syn, seq: 7001));
            sw.Run();
            (string src, ushort remapped, string dst, ushort dport) = Tuple(Assert.Single(sw.Sent(w => w.B)));
            Assert.Equal(("10.244.1.2", "10.244.1.3", (ushort)8080), (src, dst, dport));
            Assert.NotEqual(port, remapped);
            sw.ClearTx();

            // The endpoint answers each connection; whichever worker reads the answer, it goes back as from its own
            // Service.
            sw.W[(k + 1) % 2].B.Inject(Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 8080, port, TcpFlags.Syn | TcpFlags.Ack, seq: 500, ack: 2));
            sw.Run();
            Assert.Equal((Vip, (ushort)80, "10.244.1.2", port), Tuple(Assert.Single(sw.Sent(w => w.A))));
            sw.ClearTx();
            sw.W[k % 2].B.Inject(Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 8080, remapped, TcpFlags.Syn | TcpFlags.Ack, seq: 900, ack: 7002));
            sw.Run();
            Assert.Equal((vip2, (ushort)80, "10.244.1.2", port), Tuple(Assert.Single(sw.Sent(w => w.A))));
            sw.ClearTx();
        }
        Assert.Equal(2 * n, sw.Connections);
        Assert.Equal(n, sw.W.Sum(w => w.Stage("lb", (int)LoadBalanceStage.Counter.PortRemap)));
        Assert.True(sw.W.Sum(w => w.Stage("lb", (int)LoadBalanceStage.Counter.HandedToReplyOwner)) > 0);
        Assert.Equal(0, sw.W.Sum(w => w.Dp.Graph.Drop.NonZero().Sum(d => d.Count)));

        // Removing the endpoints evicts every connection; every redirect goes with them, whichever way it pointed.
        sw.Apply(Svc("web", Vip, 80, 8080), Svc("web2", vip2, 80, 8080));
        sw.Run();
        Assert.Equal(0, sw.Connections);
        Assert.Equal(0, sw.Redirects);
    }

    [Fact]
    public void A_client_port_reused_after_a_reset_makes_a_new_connection_whose_packets_all_arrive_across_workers()
    {
        Switch sw = Build();
        sw.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true), ("10.244.1.4", "node-1", true)));
        for (int k = 0; k < 32; k++)
        {
            ushort port = (ushort)(44000 + k);
            for (int round = 0; round < 3; round++)
            {
                // Whichever worker reads each packet, every one arrives: the SYN reuses the tuple of the connection the
                // client reset in the round before.
                Worker r1 = sw.W[(k + round) % 2], r2 = sw.W[(k / 2 + round) % 2];
                uint seq = (uint)(1000 * round + 1);
                r1.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Syn, seq: seq));
                sw.Run();
                List<byte[]> syn = sw.Sent(w => w.B).Concat(sw.Sent(w => w.C)).ToList();
                (string src, ushort sport, string ep, ushort dport) = Tuple(Assert.Single(syn));
                Assert.Equal(("10.244.1.2", port, (ushort)8080), (src, sport, dport));
                sw.ClearTx();
                MacAddress epMac = ep == "10.244.1.3" ? PodB : PodC;
                Worker reader = sw.W[round % 2];
                (ep == "10.244.1.3" ? reader.B : reader.C).Inject(Tcp(PodA, epMac, ep, "10.244.1.2", 8080, port, TcpFlags.Syn | TcpFlags.Ack, seq: 77, ack: seq + 1));
                sw.Run();
                Assert.Equal((Vip, (ushort)80, "10.244.1.2", port), Tuple(Assert.Single(sw.Sent(w => w.A))));
                sw.ClearTx();
                r2.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Ack, seq: seq + 1, ack: 78));
                sw.Run();
                List<byte[]> ack = sw.Sent(w => w.B).Concat(sw.Sent(w => w.C)).ToList();
                Assert.Equal(("10.244.1.2", port, ep, (ushort)8080), Tuple(Assert.Single(ack)));
                sw.ClearTx();
                r1.A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Rst | TcpFlags.Ack, seq: seq + 1, ack: 78));
                sw.Run();
                sw.ClearTx();
            }
        }
        Assert.Equal(0, sw.W.Sum(w => w.Dp.Graph.Drop.NonZero().Sum(d => d.Count)));
    }

    [Fact]
    public void A_Service_connection_clashing_with_a_direct_connection_to_its_endpoint_is_remapped_across_workers()
    {
        Switch sw = Build();
        sw.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        for (int k = 0; k < 32; k++)
        {
            ushort port = (ushort)(43000 + k);
            sw.W[k % 2].A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", "10.244.1.3", port, 8080, TcpFlags.Syn, seq: 1));
            sw.Run();
            Assert.Equal(("10.244.1.2", port, "10.244.1.3", (ushort)8080), Tuple(Assert.Single(sw.Sent(w => w.B))));
            sw.ClearTx();
            sw.W[(k / 2) % 2].A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Syn, seq: 5001));
            sw.Run();
            (_, ushort remapped, _, _) = Tuple(Assert.Single(sw.Sent(w => w.B)));
            Assert.NotEqual(port, remapped);
            sw.ClearTx();
        }
        Assert.Equal(64, sw.Connections);
        Assert.Equal(32, sw.W.Sum(w => w.Stage("lb", (int)LoadBalanceStage.Counter.PortRemap)));
    }

    [Fact]
    public void Hairpin_snat_picks_ports_whose_replies_hash_to_the_owning_worker()
    {
        Switch sw = Build();
        sw.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        for (int k = 0; k < 32; k++)
        {
            ushort port = (ushort)(41000 + k);
            sw.W[k % 2].B.Inject(Tcp(RouterMac, PodB, "10.244.1.3", Vip, port, 80, TcpFlags.Syn, seq: 1));
            sw.Run();
            (string src, ushort sport, string dst, ushort dport) = Tuple(Assert.Single(sw.Sent(w => w.B)));
            Assert.Equal(("10.244.1.1", "10.244.1.3", (ushort)8080), (src, dst, dport));
            sw.ClearTx();
            // The pod answers the gateway address; whichever worker reads it, the reply finds its connection.
            sw.W[(k + 1) % 2].B.Inject(Tcp(RouterMac, PodB, "10.244.1.3", "10.244.1.1", 8080, sport, TcpFlags.Syn | TcpFlags.Ack, seq: 9, ack: 2));
            sw.Run();
            Assert.Equal((Vip, (ushort)80, "10.244.1.3", port), Tuple(Assert.Single(sw.Sent(w => w.B))));
            sw.ClearTx();
        }
        Assert.Equal(32, sw.Connections);
        Assert.Equal(0, sw.Redirects);
    }

    [Fact]
    public void ClientIP_affinity_holds_across_workers()
    {
        Switch sw = Build();
        sw.Apply(Svc("web", Vip, 80, 8080, affinity: true),
            Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true), ("10.244.1.4", "node-1", true), ("10.244.2.9", "node-2", true)));
        var endpoints = new HashSet<string>();
        for (int k = 0; k < 40; k++)
        {
            sw.W[k % 2].A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, (ushort)(42000 + k), 80, TcpFlags.Syn, seq: 1));
            sw.Run();
            byte[] f = sw.W.SelectMany(w => w.B.Transmitted.Concat(w.C.Transmitted)).Concat(
                sw.W.SelectMany(w => w.Tunnel.Transmitted).Select(t => t.AsSpan(OverlayPeer.OuterSize).ToArray())).Single();
            endpoints.Add(Tuple(f).Dst);
            sw.ClearTx();
        }
        Assert.Single(endpoints);
        Assert.True(sw.W.All(w => w.Nat.Conntrack.Count > 0), "connections were made on both workers");
    }

    [Fact]
    public void A_neighbor_learned_from_arp_on_one_worker_is_known_to_all()
    {
        Switch sw = Build();
        MacAddress pod = MacAddress.Parse("02:00:0a:f4:01:09");
        sw.W[1].C.Inject(ArpRequest(pod, "10.244.1.9", "10.244.1.1"));
        sw.Run();
        foreach (Worker w in sw.W)
        {
            ref Neighbor nb = ref w.Dp.Router!.Neighbors.Find(Ip("10.244.1.9").Value);
            Assert.False(System.Runtime.CompilerServices.Unsafe.IsNullRef(ref nb));
            Assert.Equal(pod.Value, nb.Mac);
            Assert.Equal(w.C.Id, nb.Port);
        }
    }

    [Fact]
    public void Udp_from_a_remote_endpoint_through_the_tunnel_is_reversed_on_the_owning_worker()
    {
        Switch sw = Build();
        sw.Apply(Svc("dns", Vip, 53, 5353, IpProtocol.Udp), Slice("dns", 5353, IpProtocol.Udp, ("10.244.2.7", "node-2", true)));
        for (int k = 0; k < 32; k++)
        {
            ushort port = (ushort)(33000 + k);
            sw.W[k % 2].A.Inject(Udp(RouterMac, PodA, "10.244.1.2", Vip, port, 53));
            sw.Run();
            byte[] outer = Assert.Single(sw.Sent(w => w.Tunnel));
            Assert.Equal(("10.244.1.2", port, "10.244.2.7", (ushort)5353), Tuple(outer.AsSpan(OverlayPeer.OuterSize).ToArray()));
            sw.ClearTx();
            byte[] reply = Udp(RouterMac, PeerVtep, "10.244.2.7", "10.244.1.2", 5353, port);
            byte[] vx = new byte[VxlanView.Size + reply.Length];
            new VxlanRepr(1).Emit(vx);
            reply.CopyTo(vx, VxlanView.Size);
            sw.W[(k + 1) % 2].Tunnel.Inject(vx, Ip("198.18.0.2").Value);
            sw.Run();
            Assert.Equal((Vip, (ushort)53, "10.244.1.2", port), Tuple(Assert.Single(sw.Sent(w => w.A))));
            sw.ClearTx();
        }
        Assert.Equal(32, sw.Connections);
        Assert.All(sw.W.SelectMany(w => w.Nat.Conntrack.Snapshot()), e => Assert.Equal(CtState.Replied, e.Entry.State));
    }

    [Fact]
    public void Packets_handed_between_workers_in_steady_state_allocate_nothing()
    {
        Switch sw = Build();
        sw.Apply(Svc("web", Vip, 80, 8080), Slice("web", 8080, IpProtocol.Tcp, ("10.244.1.3", "node-1", true)));
        // Find a connection whose client side hashes to worker 1 and whose reply hashes to worker 0, then read the
        // client's packets on worker 0 and the server's on worker 1: every packet crosses between workers.
        ConnectionSteering st = sw.W[0].Nat.Steering!;
        ushort port = 0;
        for (ushort p = 43000; p < 44000 && port == 0; p++)
        {
            var orig = new FlowKey(Ip("10.244.1.2").Value, Ip(Vip).Value, p, 80, IpProtocol.Tcp);
            var reply = new FlowKey(Ip("10.244.1.3").Value, Ip("10.244.1.2").Value, 8080, p, IpProtocol.Tcp);
            if (st.Home(orig) == 1 && st.Home(reply) == 0) port = p;
        }
        Assert.NotEqual(0, port);
        sw.W[0].A.Inject(Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Syn, seq: 1));
        sw.Run();
        sw.W[1].B.Inject(Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 8080, port, TcpFlags.Syn | TcpFlags.Ack, seq: 500, ack: 2));
        sw.Run();
        sw.W[0].A.SetReplay([Tcp(RouterMac, PodA, "10.244.1.2", Vip, port, 80, TcpFlags.Ack, seq: 2, ack: 501, payload: 100)]);
        sw.W[1].B.SetReplay([Tcp(PodA, PodB, "10.244.1.3", "10.244.1.2", 8080, port, TcpFlags.Ack, seq: 501, ack: 102, payload: 100)]);
        foreach (Worker w in sw.W)
            foreach (MemoryPort p in w.All) p.RecordTx = false;
        for (int i = 0; i < 200; i++)
            foreach (Worker w in sw.W) w.Dp.RunOnce();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 2000; i++)
            foreach (Worker w in sw.W) w.Dp.RunOnce();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.InRange(sw.W.Sum(w => w.Stage("steer", (int)SteerStage.Counter.HandedOff)), 100_000, long.MaxValue);
        Assert.InRange(sw.W.Sum(w => w.Stage("conntrack", (int)ConntrackStage.Counter.Hits)), 100_000, long.MaxValue);
        Assert.Equal(1, sw.Connections);
    }
}

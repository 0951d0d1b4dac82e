using System.Collections.Concurrent;
using VSwitch.Encap;
using VSwitch.Nat;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L2;
using VSwitch.Switch.L3;
using VSwitch.Tap;

namespace VSwitch.Switch;

public sealed record DatapathOptions
{
    public int BatchSize { get; init; } = 64;
    public int Slots { get; init; } = 4096;
    /// <summary>Large (64 KB) slots for ports with offloads, which may receive TCP super-frames; 0 when no port has them.
    /// Everything received is freed by the end of its batch, so twice the batch size is plenty.</summary>
    public int LargeSlots { get; init; }
    public int MacTableSize { get; init; } = 8192;
    public TimeSpan MacAging { get; init; } = TimeSpan.FromSeconds(300);
    public MacTableFullPolicy MacTableFullPolicy { get; init; } = MacTableFullPolicy.Flood;
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>After traffic, keep polling without sleeping for this long before blocking in epoll again
    /// (like the kernel's busy_poll): saves a sleep/wake-up per packet under load. Zero disables it.</summary>
    public TimeSpan BusyPoll { get; init; } = TimeSpan.Zero;
    /// <summary>When <see cref="BusyPoll"/> is zero: the largest polling window <see cref="AdaptivePoll"/> may learn
    /// (it polls only while the gaps between packets are shorter). Zero disables it: the worker sleeps at once.</summary>
    public TimeSpan AdaptivePollLimit { get; init; } = TimeSpan.Zero;
    /// <summary>Routing (gateway, ARP, IPv4 forwarding); null for a plain L2 switch.</summary>
    public RouterOptions? Router { get; init; }
    /// <summary>VXLAN overlay to other nodes; null for none.</summary>
    public OverlayOptions? Overlay { get; init; }
    /// <summary>Connection tracking and Service NAT (needs routing); null for none.</summary>
    public NatOptions? Nat { get; init; }
    /// <summary>The workers of one switch, when there are several: this datapath is worker <see cref="WorkerIndex"/>.</summary>
    public WorkerMesh? Mesh { get; init; }
    public int WorkerIndex { get; init; }
    /// <summary>Registers more features into the arcs as the graph is built (a stage of one's own): called with the
    /// builder and the worker, before the graph is laid out.</summary>
    public Action<PipelineBuilder, Datapath>? Features { get; init; }
}

/// <summary>The arcs of the graph, named after the netfilter hooks.</summary>
public static class Arcs
{
    /// <summary>Every frame after L2 learning, before the bridge/route decision (connection tracking, Service DNAT).</summary>
    public const string Prerouting = "prerouting";
    /// <summary>Frames leaving for a pod, a peer or the uplink, bridged or routed (where a policy stage goes).</summary>
    public const string Forward = "forward";
    /// <summary>Frames leaving to the host port: the node's own stack.</summary>
    public const string LocalIn = "local-in";
    /// <summary>Frames from the host port (the node's own stack), before prerouting.</summary>
    public const string LocalOut = "local-out";
    /// <summary>Every frame on its way out (VXLAN encapsulation), before port-tx.</summary>
    public const string Postrouting = "postrouting";
}

/// <summary>
/// One worker's data plane: the slab, the stage graph, the ports it polls and the learned tables it owns.
/// State is touched only by the worker thread; the control plane runs its reads and changes on that thread
/// between batches through <see cref="InvokeAsync{T}"/>, so no per-packet lock exists anywhere.
/// </summary>
public sealed class Datapath : IDisposable, IMeshHandler
{
    private readonly ConcurrentQueue<Action> _commands = new();
    private readonly PacketBatch _rx;
    private readonly PacketBatch? _inbound;
    private readonly int _afterSteer = -1;
    private Thread? _thread;
    private Epoll? _epoll;
    private volatile bool _stop;
    private long _nextSweep;
    private long _nextCtSweep;
    private AdaptivePoll _poll;
    private long _rxBytes;

    public Datapath(DatapathOptions options, TimeProvider? time = null)
    {
        Options = options;
        Time = time ?? TimeProvider.System;
        if (options.BatchSize is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(options), "batch size must be 1..256");
        if (options.LargeSlots is < 0 or > 4096) throw new ArgumentOutOfRangeException(nameof(options), "large slots must be 0..4096");
        Slab = new PacketSlab(Math.Max(options.Slots, options.BatchSize * 2), largeCapacity: options.LargeSlots);
        // Like haltpoll's defaults (grow start 50 µs of a 200 µs limit): a first short gap opens a quarter of the limit.
        // An open window closes once every 10 ms to be decided again; over 1,500 frames or 1.25 MB (1 Gb/s) in 10 ms is a stream.
        long limit = options.BusyPoll > TimeSpan.Zero ? 0 : (long)(options.AdaptivePollLimit.TotalSeconds * Time.TimestampFrequency);
        _poll = new AdaptivePoll(limit, limit / 4, Time.TimestampFrequency / 100, streamFrames: 1_500, streamBytes: 1_250_000);
        Mesh = options.Mesh is { Count: > 1 } mesh ? mesh : null;
        if (Mesh is not null)
        {
            if (options.WorkerIndex < 0 || options.WorkerIndex >= Mesh.Count) throw new ArgumentOutOfRangeException(nameof(options), "worker index outside the mesh");
            Mesh.Attach(options.WorkerIndex, Slab, () => _epoll?.Wake());
        }
        WorkerIndex = options.WorkerIndex;
        Context = new WorkerContext(Slab, Time);
        long agingTicks = (long)(options.MacAging.TotalSeconds * Time.TimestampFrequency);
        Macs = new MacTable(options.MacTableSize, agingTicks);
        Ports = new PortTable();
        if (options.Overlay is { } ovo) Overlay = new Overlay(ovo, (long)(ovo.FdbAging.TotalSeconds * Time.TimestampFrequency));
        if (options.Router is { } ro) Router = new Router(ro, Time.TimestampFrequency) { Overlay = Overlay };
        if (options.Nat is { } no)
        {
            if (Router is null) throw new InvalidOperationException("Service NAT needs routing (a pod CIDR)");
            RouterOptions r = Router.Options;
            Nat = new NatEngine(no with { PodCidr = r.PodCidr, ClusterCidr = r.ClusterCidr, Gateway = r.Gateway, RouterMac = r.RouterMac },
                Time.TimestampFrequency, Router.IcmpBudget);
            Router.Nat = Nat;
        }
        if (Mesh is not null)
        {
            if (Nat is not null) Nat.EnableSteering(Mesh, WorkerIndex).Handler = this;
            if (Router is not null)
                Router.NeighborLearned = (ip, mac, port) => Mesh.Broadcast(WorkerIndex,
                    new MeshMessage { Kind = MeshKind.NeighborLearned, From = WorkerIndex, A = ip, B = mac, C = port });
        }
        // With several workers and connection tracking, IPv4 packets go to the worker that owns their flow first.
        bool steer = Mesh is not null && Nat is not null;
        // The graph: nodes with their own edges, and arcs named after the netfilter hooks, into which features register
        // (docs/architecture.md, "Arcs"). Frames from the node's own stack (the host port) take local-out before
        // prerouting; frames to it take local-in instead of forward.
        var g = new PipelineBuilder()
            .DefineArc(Arcs.LocalOut, PipelineBuilder.ArcPrefix + Arcs.Prerouting)
            .DefineArc(Arcs.Prerouting, "l2-forward")
            .DefineArc(Arcs.Forward, PipelineBuilder.ArcPrefix + Arcs.Postrouting)
            .DefineArc(Arcs.LocalIn, PipelineBuilder.ArcPrefix + Arcs.Postrouting)
            .DefineArc(Arcs.Postrouting, "port-tx");
        const string prerouting = PipelineBuilder.ArcPrefix + Arcs.Prerouting, forward = PipelineBuilder.ArcPrefix + Arcs.Forward;
        const string localIn = PipelineBuilder.ArcPrefix + Arcs.LocalIn, localOut = PipelineBuilder.ArcPrefix + Arcs.LocalOut;
        const string postrouting = PipelineBuilder.ArcPrefix + Arcs.Postrouting;
        g.AddNode(new PortRxStage("ethernet-parse", Ports, Overlay is null ? null : "vxlan-decap"));
        if (Overlay is not null) g.AddNode(new VxlanDecapStage(Overlay));
        g.AddNode(new EthernetParseStage(steer ? "steer" : "l2-learn"));
        if (steer) g.AddNode(new SteerStage(Mesh!, WorkerIndex, "l2-learn"));
        g.AddNode(new L2LearnStage(Macs, options.MacTableFullPolicy, prerouting, Router is null ? null : Ports, Router is null ? null : localOut));
        // Connection tracking with Service DNAT: every IPv4 frame, bridged or routed (br_netfilter's way); its refusals
        // (TCP RST, ICMP port unreachable) go straight back out.
        if (Nat is not null)
        {
            g.AddFeature(Arcs.Prerouting, new ConntrackStage(Nat, Stage.ArcNext));
            g.AddFeature(Arcs.Prerouting, new LoadBalanceStage(Nat, Stage.ArcNext, postrouting), runsAfter: ["conntrack"]);
            g.AddFeature(Arcs.Prerouting, new NatStage(Nat, Stage.ArcNext), runsAfter: ["lb"]);
        }
        g.AddNode(new L2ForwardStage(Macs, forward, Router?.RouterMac ?? 0, "arp", "ip4-route", Ports, localIn));
        if (Router is not null)
        {
            g.AddNode(new ArpStage(Router, Ports, forward, localIn));
            g.AddNode(new Ipv4RouteStage(Router, forward, Ports, localIn));
        }
        if (Overlay is not null) g.AddFeature(Arcs.Postrouting, new VxlanEncapStage(Overlay, Ports, Stage.ArcNext));
        g.AddNode(new PortTxStage(Ports));
        g.AddNode(new DropStage());
        options.Features?.Invoke(g, this);
        // A super-frame cut into segments for a port without TSO becomes many packets: pending batches can hold every slot.
        Graph = g.Build(options.BatchSize, Slab.Capacity + Slab.LargeCapacity);
        Router?.RebuildRoutes();
        _rx = new PacketBatch(options.BatchSize);
        if (steer)
        {
            _inbound = new PacketBatch(options.BatchSize);
            _afterSteer = Graph.Find("steer")!.Index + 1;
        }
        StartedAt = Time.GetTimestamp();
        _nextSweep = StartedAt;
    }

    public DatapathOptions Options { get; }
    public TimeProvider Time { get; }
    public PacketSlab Slab { get; }
    public WorkerContext Context { get; }
    public MacTable Macs { get; }
    public PortTable Ports { get; }
    public StageGraph Graph { get; }
    public Router? Router { get; }
    public Overlay? Overlay { get; }
    public NatEngine? Nat { get; }
    /// <summary>The other workers of this switch (null when this is the only one).</summary>
    public WorkerMesh? Mesh { get; }
    public int WorkerIndex { get; }
    public long StartedAt { get; }
    public bool IsRunning => _thread is not null;
    /// <summary>Entries removed by aging sweeps.</summary>
    public long AgedOut { get; private set; }

    /// <summary>Adds a port (under <paramref name="id"/> when given: every worker of a switch gives a port the same id).
    /// Before the worker starts, from any thread; once it runs, only on its thread (<see cref="InvokeAsync{T}"/>), where the
    /// port joins the epoll set at once and the next batch sees it.</summary>
    public ushort AddPort(IPacketPort port, PortRole role = PortRole.Access, int id = -1)
    {
        RequireWorkerThread();
        if (role == PortRole.Tunnel && Overlay is null) throw new InvalidOperationException("a tunnel port needs an overlay");
        if (role is PortRole.Host or PortRole.Uplink && Router is null) throw new InvalidOperationException($"a {role} port needs routing (a pod CIDR)");
        if (role != PortRole.Access && Ports.All().Any(p => Ports.Role(p.Id) == role)) throw new InvalidOperationException($"only one {role} port");
        if (port.Offloads != PortOffloads.None && Slab.LargeCapacity == 0)
            throw new InvalidOperationException($"port '{port.Name}' has offloads and may receive 64 KB super-frames: the datapath needs large slots (DatapathOptions.LargeSlots)");
        ushort added = Ports.Add(port, role, id);
        if (role == PortRole.Tunnel)
        {
            Overlay!.TunnelPort = added;
        }
        if (role == PortRole.Host) Router!.HostPort = added;
        if (role == PortRole.Uplink) Router!.UplinkPort = added;
        Router?.RebuildRoutes();
        if (_epoll is not null && port.PollHandle >= 0) _epoll.Add(port.PollHandle, added);
        return added;
    }

    /// <summary>What removing a port flushed from this worker's tables.</summary>
    public readonly record struct PortFlush(int MacEntries, int Neighbors, int Connections, uint[] Addresses);

    /// <summary>Removes pod port <paramref name="id"/> (on the worker's thread once it runs): it leaves the epoll set, and
    /// its MAC entries, its neighbor entries and the tracked connections of its addresses (<paramref name="addresses"/>,
    /// plus every address a neighbor entry had on the port) are flushed, so nothing stale points at a port id that a
    /// later port will reuse. The port's descriptors belong to whoever opened them and are not closed here.</summary>
    public PortFlush RemovePort(int id, IReadOnlyCollection<uint> addresses)
    {
        RequireWorkerThread();
        IPacketPort port = Ports[id] ?? throw new InvalidOperationException($"no port with id {id}");
        if (Ports.Role(id) != PortRole.Access) throw new InvalidOperationException($"port '{port.Name}' is the switch's {Ports.Role(id).ToString().ToLowerInvariant()} port, not a pod port");
        if (_epoll is not null && port.PollHandle >= 0) _epoll.Remove(port.PollHandle);
        int macs = Macs.RemovePort((ushort)id);
        var all = new HashSet<uint>(addresses);
        int neighbors = 0;
        if (Router is { } r)
        {
            foreach (uint ip in r.Neighbors.AddressesOn((ushort)id)) all.Add(ip);
            neighbors = r.Neighbors.RemovePort((ushort)id);
        }
        int connections = Nat?.FlushAddresses(all) ?? 0;
        Ports.Remove(id);
        return new PortFlush(macs, neighbors, connections, [.. all]);
    }

    private void RequireWorkerThread()
    {
        if (_thread is not null && !_stop && Thread.CurrentThread != _thread)
            throw new InvalidOperationException("the worker runs: change its ports on its thread (InvokeAsync)");
    }

    /// <summary>Adds an overlay peer (and its pod subnet route). Before the worker starts, or on its thread.</summary>
    public int AddPeer(string name, Ipv4Address address, Ipv4Prefix? podCidr, MacAddress vtepMac)
    {
        RequireWorkerThread();
        if (Overlay is null) throw new InvalidOperationException("no overlay configured");
        // A configured peer supersedes one learned from the same underlay address, and takes the place of the learned
        // peer heard from longest ago when the table is full (each worker learns its own: they must agree on this).
        if (Overlay.TryGetPeer(address.Value, out int learned) && !Overlay.Peer(learned).IsStatic) Overlay.RemovePeer(learned);
        if (Overlay.Peers.Count >= Overlay.Options.MaxPeers
            && Overlay.Peers.Where(p => !p.IsStatic).MinBy(p => Math.Max(p.LastSeen, p.Created)) is { } oldest)
            Overlay.RemovePeer(oldest.Index);
        int i = Overlay.AddPeer(name, address, podCidr, vtepMac);
        Overlay.Peer(i).Created = Time.GetTimestamp();
        Router?.RebuildRoutes();
        return i;
    }

    /// <summary>Gives peer <paramref name="name"/> a new underlay address, pod subnet or VTEP MAC; the routes and its prebuilt
    /// outer header follow before the next batch. On the worker's thread.</summary>
    public void UpdatePeer(string name, Ipv4Address address, Ipv4Prefix? podCidr, MacAddress vtepMac)
    {
        RequireWorkerThread();
        if (Overlay is null) throw new InvalidOperationException("no overlay configured");
        int i = Overlay.IndexOf(name);
        if (i < 0) throw new KeyNotFoundException($"no peer named '{name}'");
        // A peer learned from the new address gives way, as it does to a peer added there.
        if (Overlay.TryGetPeer(address.Value, out int learned) && learned != i && !Overlay.Peer(learned).IsStatic) Overlay.RemovePeer(learned);
        Overlay.UpdatePeer(i, address, podCidr, vtepMac);
        Router?.RebuildRoutes();
    }

    /// <summary>Removes peer <paramref name="name"/>, its route and every forwarding entry behind it. On the worker's
    /// thread. Returns the forwarding entries removed.</summary>
    public int RemovePeer(string name)
    {
        RequireWorkerThread();
        if (Overlay is null) throw new InvalidOperationException("no overlay configured");
        int i = Overlay.IndexOf(name);
        if (i < 0) throw new KeyNotFoundException($"no peer named '{name}'");
        int n = Overlay.RemovePeer(i);
        Router?.RebuildRoutes();
        return n;
    }

    /// <summary>Polls every port once and runs what arrived through the graph (tests, benchmarks, memory ports).
    /// Returns the number of packets received.</summary>
    public int RunOnce()
    {
        int total = FromOtherWorkers();
        for (int p = 0; p < Ports.Limit; p++)
            if (Ports[p] is { } port) total += Poll(port);
        Housekeeping();
        return total;
    }

    private int Poll(IPacketPort port)
    {
        long bytesBefore = port.Counters[(int)PortCounter.RxBytes];
        int n = port.Receive(Slab, _rx, Options.BatchSize);
        if (n > 0)
        {
            // Bytes taken in, for the adaptive polling's stream test (a stream of 64 KB super-frames is few frames).
            _rxBytes += port.Counters[(int)PortCounter.RxBytes] - bytesBefore;
            Graph.Run(Context, _rx);
            Mesh?.WakeTargets(WorkerIndex);
        }
        else
        {
            _rx.Clear();
        }
        return n;
    }

    /// <summary>Frees the slots other workers have copied, applies their messages and runs the packets they handed
    /// over (a bounded number of batches). Returns the number of packets run.</summary>
    private int FromOtherWorkers()
    {
        if (Mesh is not { } mesh) return 0;
        mesh.DrainReturns(WorkerIndex, Slab);
        mesh.DrainMessages(WorkerIndex, this);
        if (_inbound is null) return 0;
        int total = 0;
        for (int round = 0; round < 16; round++)
        {
            int n = mesh.DrainPackets(WorkerIndex, Slab, _inbound);
            if (n == 0) break;
            Graph.RunFrom(Context, _afterSteer, _inbound);
            mesh.WakeTargets(WorkerIndex);
            total += n;
        }
        return total;
    }

    /// <summary>Applies the messages other workers sent this one (before the workers start, or on its thread).</summary>
    public int ApplyMessages() => Mesh?.DrainMessages(WorkerIndex, this) ?? 0;

    /// <summary>A message from another worker (on this worker's thread).</summary>
    public void Handle(in MeshMessage m)
    {
        if (m.Kind == MeshKind.NeighborLearned)
        {
            Router?.Neighbors.Learn((uint)m.A, m.B, (ushort)m.C, Time.GetTimestamp());
            return;
        }
        if (Nat?.Steering is { } st) st.Handle(m, Nat);
    }

    /// <summary>Aging sweep, off the fast path: at most once per sweep interval.</summary>
    public void Housekeeping()
    {
        long now = Time.GetTimestamp();
        // Connection expiry goes a bounded step at a time, every 10 ms at most (a pass over the table takes about a second
        // under traffic, longer when idle; a packet meeting an expired entry treats it as gone).
        if (Nat is not null && now >= _nextCtSweep)
        {
            _nextCtSweep = now + Time.TimestampFrequency / 100;
            Nat.Sweep(now);
        }
        if (now < _nextSweep) return;
        _nextSweep = now + (long)(Options.SweepInterval.TotalSeconds * Time.TimestampFrequency);
        Volatile.Write(ref _heartbeat, now);
        AgedOut += Macs.Sweep(now);
        if (Overlay is not null) AgedOut += Overlay.Sweep(now);
        if (Router is not null) Router.Neighbors.Sweep(now, (long)(Router.Options.NeighborTimeout.TotalSeconds * Time.TimestampFrequency));
    }

    private long _heartbeat;

    /// <summary>When the worker last swept (at least once per sweep interval while its loop goes round): for /healthz.</summary>
    public long Heartbeat => Volatile.Read(ref _heartbeat);

    /// <summary>The adaptive polling window as the worker last left it (read from any thread, for display).</summary>
    public AdaptivePoll PollState => _poll;

    public void Start()
    {
        if (_thread is not null) throw new InvalidOperationException("already started");
        _epoll = new Epoll();
        for (int p = 0; p < Ports.Limit; p++)
        {
            int fd = Ports[p]?.PollHandle ?? -1;
            if (fd >= 0) _epoll.Add(fd, (ulong)p);
        }
        _heartbeat = Time.GetTimestamp();
        _thread = new Thread(WorkerLoop) { IsBackground = true, Name = $"vswitch-worker-{WorkerIndex}" };
        _thread.Start();
    }

    private void WorkerLoop()
    {
        Span<ulong> ready = stackalloc ulong[64];
        Span<int> active = stackalloc int[128];
        Span<int> carry = stackalloc int[64];
        int carried = 0;
        Epoll ep = _epoll!;
        long busyTicks = (long)(Options.BusyPoll.TotalSeconds * Time.TimestampFrequency);
        long lastTraffic = long.MinValue / 2;
        int frames = 0;
        while (!_stop)
        {
            // The adaptive window is off (limit 0) when a fixed one is set.
            long now = busyTicks > 0 || _poll.Limit > 0 ? Time.GetTimestamp() : 0;
            long window = busyTicks;
            if (_poll.Limit > 0)
            {
                window = _poll.Current(now, frames, _rxBytes);
                _rxBytes = 0;
            }
            bool spinning = window > 0 && now - lastTraffic < window;
            int timeout = spinning || carried > 0 ? 0 : 200;
            // Other workers wake a sleeping worker they hand packets to; one with packets waiting does not sleep.
            if (timeout > 0 && Mesh is not null && !Mesh.PrepareSleep(WorkerIndex)) timeout = 0;
            int n = ep.Wait(ready, timeout, out _);
            long sleptUntilTraffic = lastTraffic;
            bool slept = timeout > 0;
            long wokeAt = slept ? Time.GetTimestamp() : 0;
            Mesh?.Awake(WorkerIndex);
            DrainCommands();
            frames = FromOtherWorkers();
            if (frames > 0) lastTraffic = Context.Now;
            // Serve ready ports in rounds until none returns a full batch (bounded, so commands and sweeps keep running).
            // Ports still holding received data (HasPending) are served next time round whether or not their descriptor
            // is readable.
            int a = 0;
            for (int i = 0; i < n; i++) active[a++] = (int)ready[i];
            for (int c = 0; c < carried; c++)
                if (!active[..a].Contains(carry[c])) active[a++] = carry[c];
            carried = 0;
            for (int round = 0; round < 16 && a > 0; round++)
            {
                int still = 0;
                for (int i = 0; i < a; i++)
                {
                    // A port removed by a command since epoll reported it is skipped.
                    if (Ports[active[i]] is not { } port) continue;
                    int got = Poll(port);
                    if (got > 0) lastTraffic = Context.Now;
                    frames += got;
                    if (got == Options.BatchSize || port.HasPending) active[still++] = active[i];
                }
                a = still;
            }
            for (int i = 0; i < a && carried < carry.Length; i++)
                if (Ports[active[i]] is { HasPending: true }) carry[carried++] = active[i];
            if (slept) _poll.Woke(wokeAt, wokeAt - sleptUntilTraffic, frames);
            Housekeeping();
        }
        DrainCommands();
    }

    private void DrainCommands()
    {
        while (_commands.TryDequeue(out Action? a)) a();
    }

    /// <summary>Runs <paramref name="f"/> on the worker thread between batches (inline when no worker runs).</summary>
    public Task<T> InvokeAsync<T>(Func<T> f)
    {
        if (_thread is null || _stop)
        {
            try
            {
                return Task.FromResult(f());
            }
            catch (Exception e)
            {
                return Task.FromException<T>(e);
            }
        }
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _commands.Enqueue(() =>
        {
            try
            {
                tcs.SetResult(f());
            }
            catch (Exception e)
            {
                tcs.SetException(e);
            }
        });
        _epoll?.Wake();
        return tcs.Task;
    }

    public void Stop()
    {
        if (_thread is null) return;
        _stop = true;
        _epoll?.Wake();
        _thread.Join();
    }

    /// <summary>Stops the worker and releases its epoll set. Ports belong to whoever opened them.</summary>
    public void Dispose()
    {
        Stop();
        _epoll?.Dispose();
        _epoll = null;
    }
}

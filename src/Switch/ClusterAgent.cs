using System.Diagnostics;
using System.Text.Json;
using k8s.Models;
using Microsoft.Extensions.Logging;
using VSwitch.Cluster;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.Config;
using VSwitch.Switch.L3;

namespace VSwitch.Switch;

/// <summary>
/// This node's membership of the cluster: its subnet lease (claimed before the data plane starts, renewed while it runs),
/// its Node object, and two watches — the other nodes' leases, which become overlay peers and routes, and the Kubernetes
/// objects, whose Services and EndpointSlices go to the Service tables one change at a time. What it last knew is saved in
/// the state directory (<c>cluster.json</c>), so a switch that starts while the store is down forwards with it and catches
/// up when the store returns. The store being unreachable or without quorum changes nothing in the data plane: the switch
/// reports itself degraded and keeps what it has.
/// </summary>
public sealed partial class ClusterAgent : IDisposable
{
    private readonly SwitchConfig _config;
    private readonly ClusterConfig _cc;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Ipv4Address _publicIp;
    private readonly ManifestOptions _manifestOptions;
    private readonly Dictionary<string, LeasedSubnet> _peers = new(StringComparer.Ordinal);
    /// <summary>Stored values of the objects handed to the data plane (saved with the snapshot), by key.</summary>
    private readonly Dictionary<string, (byte[] Value, long Revision)> _objects = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (byte[] Value, long Revision)> _leases = new(StringComparer.Ordinal);
    private long _objectRevision, _leaseRevision;
    private readonly Lock _gate = new();
    private readonly List<Task> _tasks = [];
    private SwitchHost? _host;
    private PrefixWatcher? _leaseWatch, _objectWatch;
    private ClusterSnapshot? _saved;
    private bool _fromSaved, _registered, _renewOk, _dirty;
    private string _state = "connecting";
    private Ipv4Prefix _subnet;
    private long _lastRenewal = Environment.TickCount64;
    private long _degradedSince;

    public ClusterAgent(SwitchConfig config, ILogger log)
    {
        _config = config;
        _cc = config.Cluster!;
        _log = log;
        _publicIp = Ipv4Address.Parse(config.Overlay!.LocalAddress!);
        NodeName = config.Node.Name ?? Environment.MachineName;
        Store = new EtcdStore(new EtcdOptions
        {
            Endpoints = _cc.Etcd.Endpoints,
            CaFile = _cc.Etcd.CaFile,
            CertFile = _cc.Etcd.CertFile,
            KeyFile = _cc.Etcd.KeyFile,
        });
        _ = ConfigLoader.TryParsePortRange(config.Services?.NodePortRange ?? "30000-32767", out ushort npMin, out ushort npMax);
        _manifestOptions = new ManifestOptions { NodePortMin = npMin, NodePortMax = npMax };
        _ = ConfigLoader.TryParseNetwork(config.Services?.ServiceCidr ?? "10.96.0.0/12", out Ipv4Prefix svc);
        Registry = new ObjectRegistry(Store, _cc.Prefix, _manifestOptions, svc);
        Leaser = new SubnetLeaser(Store, _cc.Prefix, _publicIp, VtepMacOf, _cc.LeaseTtlSeconds);
    }

    public string NodeName { get; }
    public EtcdStore Store { get; }
    public ObjectRegistry Registry { get; }
    public SubnetLeaser Leaser { get; }
    public NetworkConfig? Network { get; private set; }
    /// <summary>ready, degraded (the store unreachable or without quorum: forwarding with what it last knew) or connecting.</summary>
    public string State => _state;
    public string? LastError { get; private set; }
    public Ipv4Prefix Subnet => _subnet;
    public long Renewals { get; private set; }
    public long RenewFailures { get; private set; }
    public long BadLeases { get; private set; }
    public long BadObjects { get; private set; }
    public long PeerChanges { get; private set; }
    public long ObjectBatches { get; private set; }
    /// <summary>The time the last batch of object changes took to be in force on the workers.</summary>
    public double LastObjectApplyMs { get; private set; }
    public IReadOnlyDictionary<string, LeasedSubnet> Peers
    {
        get
        {
            lock (_gate) return new Dictionary<string, LeasedSubnet>(_peers);
        }
    }
    public PrefixWatcher? LeaseWatch => _leaseWatch;
    public PrefixWatcher? ObjectWatch => _objectWatch;

    /// <summary>Objects of each resource the store holds (as watched).</summary>
    public Dictionary<string, int> ObjectCounts()
    {
        lock (_gate)
        {
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (string k in _objects.Keys)
                if (KubeObjects.ParseKey(_cc.Prefix, k) is { } p) counts[p.Kind.Resource] = counts.GetValueOrDefault(p.Kind.Resource) + 1;
            return counts;
        }
    }

    private MacAddress VtepMacOf(Ipv4Prefix subnet) =>
        _config.Node.RouterMac is { } m ? MacAddress.Parse(m) : RouterOptions.DefaultRouterMac(subnet);

    private string SnapshotFile => Path.Combine(_config.State.Directory, "cluster.json");

    /// <summary>
    /// Before the data plane is built: makes sure the network config exists, claims this node's subnet and writes it
    /// (with the network's VNI and port) into the config. When the store does not answer, a saved subnet is used after a
    /// short wait (the switch then starts degraded); without one it waits up to cluster.startTimeoutSeconds.
    /// Throws <see cref="ConfigException"/> when the node cannot take part (its configured podCIDR is leased to another
    /// node, the network is full, the store never answered).
    /// </summary>
    public void Prepare()
    {
        _saved = LoadSnapshot();
        var sw = Stopwatch.StartNew();
        TimeSpan patience = _saved?.Subnet is not null ? TimeSpan.FromSeconds(3) : TimeSpan.FromSeconds(_cc.StartTimeoutSeconds);
        Ipv4Prefix? wanted = _config.Node.PodCidr is { } p && ConfigLoader.TryParseNetwork(p, out Ipv4Prefix pc) ? pc : null;
        Ipv4Prefix? previous = wanted ?? (_saved?.Subnet is { } s && ConfigLoader.TryParseNetwork(s, out Ipv4Prefix sp) ? sp : null);
        NetworkConfig proposal = Proposal();
        long lastLog = 0;
        while (true)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                Network = Leaser.EnsureNetworkConfigAsync(proposal, cts.Token).GetAwaiter().GetResult();
                LeasedSubnet lease = Leaser.ClaimAsync(Network, previous, cts.Token).GetAwaiter().GetResult();
                if (wanted is { } w && lease.Subnet != w)
                {
                    Leaser.ReleaseAsync(CancellationToken.None).GetAwaiter().GetResult();
                    throw new ConfigException($"node.podCIDR: {w} is leased to another node (see {FlannelLayout.SubnetsPrefix(_cc.Prefix)}); remove node.podCIDR to lease a free subnet");
                }
                _subnet = lease.Subnet;
                _renewOk = true;
                Adopt(Network);
                LogLeased(_subnet.ToString(), _publicIp.ToString(), lease.VtepMac.ToString(), _cc.LeaseTtlSeconds, sw.Elapsed.TotalMilliseconds);
                break;
            }
            catch (Exception e) when (e is StoreUnavailableException or OperationCanceledException)
            {
                LastError = e.Message;
                if (sw.Elapsed >= patience)
                {
                    if (_saved?.Subnet is { } saved && ConfigLoader.TryParseNetwork(saved, out Ipv4Prefix savedPrefix))
                    {
                        _subnet = savedPrefix;
                        _fromSaved = true;
                        if (_saved.Network is { } nc) Adopt(Network = FlannelLayout.ParseConfig(nc));
                        SetState("degraded", e.Message);
                        LogStartingFromSaved(saved, e.Message);
                        break;
                    }
                    throw new ConfigException($"cluster: the store did not answer within {patience.TotalSeconds:F0} s and no subnet was saved to start from: {e.Message}");
                }
                if (sw.ElapsedMilliseconds - lastLog >= 5000)
                {
                    lastLog = sw.ElapsedMilliseconds;
                    LogWaiting(string.Join(",", _cc.Etcd.Endpoints), e.Message);
                }
                Thread.Sleep(500);
            }
            catch (FormatException e)
            {
                throw new ConfigException($"cluster: {e.Message}");
            }
            catch (InvalidOperationException e)
            {
                throw new ConfigException($"cluster: {e.Message}");
            }
        }
        _config.Node.PodCidr = _subnet.ToString();
    }

    /// <summary>The network config this node writes when there is none: its own cluster CIDR, subnet size, VNI and port.</summary>
    private NetworkConfig Proposal() => new()
    {
        Network = _config.Node.ClusterCidr,
        SubnetLen = _cc.SubnetLen,
        Backend = new NetworkConfig.BackendConfig { Type = "vxlan", VNI = _config.Overlay!.Vni, Port = _config.Overlay.Port },
    };

    /// <summary>The network config is the cluster's: its network, VNI and port win over the file's.</summary>
    private void Adopt(NetworkConfig n)
    {
        OverlayConfig o = _config.Overlay!;
        if (o.Vni != n.Backend.VNI || o.Port != n.Backend.Port || _config.Node.ClusterCidr != n.Network)
            LogAdopted(n.Network ?? "", n.Backend.VNI, n.Backend.Port);
        o.Vni = n.Backend.VNI;
        o.Port = n.Backend.Port;
        _config.Node.ClusterCidr = n.Network!;
    }

    /// <summary>Once the data plane runs: puts back what was saved (when starting without the store), then renews the
    /// lease and follows the leases and objects until disposed.</summary>
    public void Attach(SwitchHost host)
    {
        _host = host;
        _leaseWatch = new PrefixWatcher(Store, FlannelLayout.SubnetsPrefix(_cc.Prefix), OnLeasesAsync);
        _objectWatch = new PrefixWatcher(Store, KubeObjects.RegistryPrefix(_cc.Prefix), OnObjectsAsync);
        if (_fromSaved && _saved is { } s)
        {
            // Forward with what was known; the first list after the store returns hands over only what changed since.
            OnLeasesAsync([.. s.Leases.Select(kv => new StoreEvent(false, new StoreEntry(kv.Key, System.Text.Encoding.UTF8.GetBytes(kv.Value.Value), 0, kv.Value.Revision, 0)))], s.LeaseRevision, true).GetAwaiter().GetResult();
            OnObjectsAsync([.. s.Objects.Select(kv => new StoreEvent(false, new StoreEntry(kv.Key, System.Text.Encoding.UTF8.GetBytes(kv.Value.Value), 0, kv.Value.Revision, 0)))], s.ObjectRevision, true).GetAwaiter().GetResult();
            _leaseWatch.Seed(s.Leases.Select(kv => KeyValuePair.Create(kv.Key, kv.Value.Revision)), s.LeaseRevision);
            _objectWatch.Seed(s.Objects.Select(kv => KeyValuePair.Create(kv.Key, kv.Value.Revision)), s.ObjectRevision);
        }
        CancellationToken ct = _stop.Token;
        _tasks.Add(Task.Run(() => KeepLeaseAsync(ct), ct));
        _tasks.Add(Task.Run(() => _leaseWatch.RunAsync(WatchState, ct), ct));
        _tasks.Add(Task.Run(() => _objectWatch.RunAsync(WatchState, ct), ct));
        _tasks.Add(Task.Run(() => SaveLoopAsync(ct), ct));
    }

    private void WatchState(string? error)
    {
        if (error is not null) LastError = error;
        UpdateState();
    }

    private void UpdateState()
    {
        bool ok = _renewOk && _leaseWatch is { Watching: true, LastError: null } && _objectWatch is { Watching: true, LastError: null };
        if (ok) SetState("ready", null);
        else if (_state == "ready" || !_renewOk || _leaseWatch?.LastError is not null || _objectWatch?.LastError is not null) SetState("degraded", LastError);
    }

    private void SetState(string state, string? error)
    {
        if (state == "ready") LastError = null;
        if (_state == state) return;
        _state = state;
        if (state == "degraded") _degradedSince = Environment.TickCount64;
        if (state == "ready") LogReady(_subnet.ToString());
        else LogDegraded(state, error ?? "");
    }

    /// <summary>Renews the lease (every third of its TTL), claims one again if it was lost, registers the Node object.</summary>
    private async Task KeepLeaseAsync(CancellationToken ct)
    {
        TimeSpan every = TimeSpan.FromSeconds(Math.Clamp(_cc.LeaseTtlSeconds / 3.0, 0.5, 30));
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (Leaser.Current is null || !await Leaser.RenewAsync(ct).ConfigureAwait(false))
                {
                    // Lost (expired while cut off) or never claimed (started from the saved state): claim our subnet back.
                    Network ??= await Leaser.EnsureNetworkConfigAsync(Proposal(), ct).ConfigureAwait(false);
                    LeasedSubnet l = await Leaser.ClaimAsync(Network, _subnet, ct).ConfigureAwait(false);
                    if (l.Subnet != _subnet)
                    {
                        // Another node holds our subnet now: our pods' addresses are its. Nothing safe to do but say so.
                        await Leaser.ReleaseAsync(ct).ConfigureAwait(false);
                        throw new StoreUnavailableException($"this node's subnet {_subnet} is leased to another node; restart the switch to lease a new one");
                    }
                    LogReclaimed(_subnet.ToString());
                }
                Renewals++;
                _lastRenewal = Environment.TickCount64;
                if (!_registered)
                {
                    await RegisterNodeAsync(ct).ConfigureAwait(false);
                    _registered = true;
                }
                _renewOk = true;
                UpdateState();
                // Renewals work but a watch keeps failing (its member lost the leader, say): dial again too.
                if (_state == "degraded" && Environment.TickCount64 - _degradedSince > 10_000 && Store.Reset(TimeSpan.FromSeconds(15)))
                    LogReconnected(LastError ?? "a watch keeps failing");
            }
            catch (StoreUnavailableException e)
            {
                RenewFailures++;
                _renewOk = false;
                LastError = e.Message;
                UpdateState();
                // Failing for long while others may be fine (a member that lost its leader and kept our connection, a
                // connection in a bad state): dial every member again, as etcd's own client switches endpoints.
                if (Environment.TickCount64 - _lastRenewal > 10_000 && Store.Reset(TimeSpan.FromSeconds(15)))
                    LogReconnected(e.Message);
                await Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
                continue;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            await Delay(every, ct).ConfigureAwait(false);
        }
    }

    private static async Task Delay(TimeSpan t, CancellationToken ct)
    {
        try
        {
            await Task.Delay(t, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>This node's Node object, as kubelet registers it: name, labels, pod CIDR, addresses.</summary>
    private async Task RegisterNodeAsync(CancellationToken ct)
    {
        var labels = new Dictionary<string, string>(_config.Node.Labels, StringComparer.Ordinal);
        labels.TryAdd("kubernetes.io/hostname", NodeName);
        labels.TryAdd("kubernetes.io/os", "linux");
        var node = new V1Node
        {
            ApiVersion = "v1",
            Kind = "Node",
            Metadata = new V1ObjectMeta { Name = NodeName, Labels = labels },
            Spec = new V1NodeSpec { PodCIDR = _subnet.ToString(), PodCIDRs = [_subnet.ToString()] },
            Status = new V1NodeStatus
            {
                Addresses = [new V1NodeAddress { Type = "InternalIP", Address = _publicIp.ToString() }, new V1NodeAddress { Type = "Hostname", Address = NodeName }],
            },
        };
        await Registry.RegisterAsync(node, ct).ConfigureAwait(false);
        LogRegistered(NodeName);
    }

    /// <summary>Other nodes' leases → overlay peers: added, changed, removed (a lease that expired or was revoked).</summary>
    private async Task OnLeasesAsync(IReadOnlyList<StoreEvent> events, long revision, bool listed)
    {
        SwitchHost host = _host!;
        foreach (StoreEvent e in events)
        {
            string key = e.Entry.Key;
            string name = FlannelLayout.SubnetOfKey(key) is { } sn ? FlannelLayout.SubnetName(sn) : key;
            LeasedSubnet? lease = null;
            if (!e.Deleted)
            {
                lease = FlannelLayout.ParseLease(e.Entry, out string? error);
                if (lease is null)
                {
                    BadLeases++;
                    LogBadLease(error!);
                }
                lock (_gate) _leases[key] = (e.Entry.Value, e.Entry.ModRevision);
            }
            else
            {
                lock (_gate) _leases.Remove(key);
            }
            if (lease is not null && (lease.Subnet == _subnet || lease.PublicIP == _publicIp)) continue; // ours
            LeasedSubnet? old;
            lock (_gate) old = _peers.GetValueOrDefault(key);
            try
            {
                if (lease is null)
                {
                    if (old is null) continue;
                    await host.RemoveClusterPeerAsync(name).ConfigureAwait(false);
                    lock (_gate) _peers.Remove(key);
                    LogPeer(name, "removed", old.PublicIP.ToString(), old.Subnet.ToString());
                }
                else
                {
                    if (old is not null && old.PublicIP == lease.PublicIP && old.VtepMac == lease.VtepMac) continue;
                    await host.SetClusterPeerAsync(name, lease.PublicIP, lease.Subnet, lease.VtepMac).ConfigureAwait(false);
                    lock (_gate) _peers[key] = lease;
                    LogPeer(name, old is null ? "added" : "updated", lease.PublicIP.ToString(), lease.Subnet.ToString());
                }
                PeerChanges++;
            }
            catch (Exception x) when (x is Control.ApiException or InvalidOperationException or ArgumentException)
            {
                BadLeases++;
                LogBadLease($"{key}: {x.Message}");
            }
        }
        lock (_gate) _leaseRevision = revision;
        _dirty = true;
    }

    /// <summary>Kubernetes objects → the Service tables (Services and EndpointSlices, one batch at a time); the other kinds
    /// are kept for the stages that read them.</summary>
    private Task OnObjectsAsync(IReadOnlyList<StoreEvent> events, long revision, bool listed)
    {
        var sw = Stopwatch.StartNew();
        var services = new List<ServiceObject>();
        var slices = new List<EndpointSliceObject>();
        var deletedServices = new List<string>();
        var deletedSlices = new List<string>();
        foreach (StoreEvent e in events)
        {
            if (KubeObjects.ParseKey(_cc.Prefix, e.Entry.Key) is not { } k) continue;
            lock (_gate)
            {
                if (e.Deleted) _objects.Remove(e.Entry.Key);
                else _objects[e.Entry.Key] = (e.Entry.Value, e.Entry.ModRevision);
            }
            if (k.Kind.Resource is not ("services" or "endpointslices")) continue;
            string id = $"{k.Namespace}/{k.Name}";
            if (e.Deleted)
            {
                (k.Kind.Resource == "services" ? deletedServices : deletedSlices).Add(id);
                continue;
            }
            try
            {
                ClusterObjects o = ManifestReader.Read(e.Entry.Text, e.Entry.Key, _manifestOptions);
                services.AddRange(o.Services);
                slices.AddRange(o.EndpointSlices);
                // An object whose stored name differs from its key is not the object the key names: leave it out.
                if (o.Services.Any(s => s.Key != id) || o.EndpointSlices.Any(s => $"{s.Namespace}/{s.Name}" != id))
                    throw new ManifestException($"{e.Entry.Key}: the object's namespace/name differ from its key");
            }
            catch (ManifestException x)
            {
                BadObjects++;
                services.RemoveAll(s => s.Key == id);
                slices.RemoveAll(s => $"{s.Namespace}/{s.Name}" == id);
                LogBadObject(e.Entry.Key, x.Message);
            }
        }
        if (_host?.Services is { } catalog && (services.Count + slices.Count + deletedServices.Count + deletedSlices.Count) > 0)
        {
            try
            {
                catalog.ApplyStore(new ClusterObjects { Services = services, EndpointSlices = slices }, deletedServices, deletedSlices);
            }
            catch (ManifestException x)
            {
                // The workers did not take the change in time: said, and the next change tries again.
                BadObjects++;
                LogBadObject(KubeObjects.RegistryPrefix(_cc.Prefix), x.Message);
            }
            ObjectBatches++;
            LastObjectApplyMs = sw.Elapsed.TotalMilliseconds;
        }
        lock (_gate) _objectRevision = revision;
        _dirty = true;
        return Task.CompletedTask;
    }

    /// <summary>Saves what is known every ten seconds when something changed, and at the end.</summary>
    private async Task SaveLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            // Often enough for a restart without the store to start from a recent state (what it misses, it catches up
            // on from the saved revisions), seldom enough that a busy store does not keep the node writing.
            await Delay(TimeSpan.FromSeconds(10), ct).ConfigureAwait(false);
            if (_dirty) SaveSnapshot();
        }
    }

    /// <summary>Writes <c>cluster.json</c> (atomically): what the node knows, each value as the store holds it.</summary>
    private void SaveSnapshot()
    {
        _dirty = false;
        KeyValuePair<string, (byte[] Value, long Revision)>[] leases, objects;
        long leaseRevision, objectRevision;
        lock (_gate)
        {
            leases = [.. _leases];
            objects = [.. _objects];
            leaseRevision = _leaseRevision;
            objectRevision = _objectRevision;
        }
        try
        {
            Directory.CreateDirectory(_config.State.Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            string tmp = SnapshotFile + ".tmp";
            using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                // Streamed: the values go from the store's bytes to the file without becoming strings.
                using (var w = new Utf8JsonWriter(f))
                {
                    w.WriteStartObject();
                    w.WriteString(nameof(ClusterSnapshot.Node), NodeName);
                    w.WriteString(nameof(ClusterSnapshot.Subnet), _subnet.ToString());
                    if (Network is not null) w.WriteString(nameof(ClusterSnapshot.Network), FlannelLayout.Serialize(Network));
                    w.WriteNumber(nameof(ClusterSnapshot.LeaseRevision), leaseRevision);
                    w.WriteNumber(nameof(ClusterSnapshot.ObjectRevision), objectRevision);
                    foreach ((string name, KeyValuePair<string, (byte[] Value, long Revision)>[] set) in new[] { ("Leases", leases), ("Objects", objects) })
                    {
                        w.WriteStartObject(name);
                        foreach ((string key, (byte[] value, long rev)) in set)
                        {
                            w.WriteStartObject(key);
                            w.WriteString(nameof(SavedValue.Value), value);
                            w.WriteNumber(nameof(SavedValue.Revision), rev);
                            w.WriteEndObject();
                        }
                        w.WriteEndObject();
                    }
                    w.WriteEndObject();
                }
                f.Flush(flushToDisk: true);
            }
            File.Move(tmp, SnapshotFile, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogSnapshotFailed(SnapshotFile, e.Message);
        }
    }

    private ClusterSnapshot? LoadSnapshot()
    {
        try
        {
            if (!File.Exists(SnapshotFile)) return null;
            ClusterSnapshot? s = JsonSerializer.Deserialize<ClusterSnapshot>(File.ReadAllText(SnapshotFile));
            if (s?.Node == NodeName) return s;
            LogSnapshotFailed(SnapshotFile, $"it is node '{s?.Node}''s, this is '{NodeName}': not used");
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            LogSnapshotFailed(SnapshotFile, $"unreadable, not used: {e.Message}");
        }
        return null;
    }

    /// <summary>Stops following the store (the lease is left to expire: a restart takes it back).</summary>
    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            Task.WaitAll([.. _tasks], TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        if (_host is not null) SaveSnapshot();
        else if (Leaser.Current is not null)
        {
            // The switch failed to start: nobody should route to this node, give the subnet back at once.
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                Leaser.ReleaseAsync(cts.Token).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is StoreUnavailableException or OperationCanceledException)
            {
                LogSnapshotFailed("lease", $"not released ({e.Message}); it expires in {_cc.LeaseTtlSeconds} s");
            }
        }
        Store.Dispose();
        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "cluster: leased subnet {Subnet} for {PublicIp} (VTEP {Vtep}, TTL {Ttl} s) in {Ms:F0} ms")]
    private partial void LogLeased(string subnet, string publicIp, string vtep, int ttl, double ms);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: the store did not answer ({Error}); starting from the saved state with subnet {Subnet}")]
    private partial void LogStartingFromSaved(string subnet, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: waiting for the store at {Endpoints}: {Error}")]
    private partial void LogWaiting(string endpoints, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "cluster: the network config is {Network}, VNI {Vni}, UDP port {Port} (it wins over this node's file)")]
    private partial void LogAdopted(string network, long vni, int port);

    [LoggerMessage(Level = LogLevel.Information, Message = "cluster: ready (subnet {Subnet}, the store answers)")]
    private partial void LogReady(string subnet);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: {State}: {Error} (forwarding goes on with what is known)")]
    private partial void LogDegraded(string state, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: the lease of subnet {Subnet} had expired; claimed it again")]
    private partial void LogReclaimed(string subnet);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: the store has failed for more than 10 s ({Error}): connecting to every member again")]
    private partial void LogReconnected(string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "cluster: registered Node {Node}")]
    private partial void LogRegistered(string node);

    [LoggerMessage(Level = LogLevel.Information, Message = "cluster: peer {Name} {Action} ({Address}, {Subnet})")]
    private partial void LogPeer(string name, string action, string address, string subnet);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: lease not used: {Error}")]
    private partial void LogBadLease(string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: {Key}: not applied: {Error}")]
    private partial void LogBadObject(string key, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cluster: {File}: {Error}")]
    private partial void LogSnapshotFailed(string file, string error);
}

/// <summary>What the node last knew of the cluster (<c>cluster.json</c> in the state directory).</summary>
public sealed record ClusterSnapshot
{
    public string? Node { get; init; }
    public string? Subnet { get; init; }
    public string? Network { get; init; }
    public long LeaseRevision { get; init; }
    public long ObjectRevision { get; init; }
    public Dictionary<string, SavedValue> Leases { get; init; } = [];
    public Dictionary<string, SavedValue> Objects { get; init; } = [];
}

public sealed record SavedValue(string Value, long Revision);

using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;

namespace VSwitch.Switch;

/// <summary>
/// The node's Services and EndpointSlices, from the manifest directory (watched) and from the control API, kept in
/// the workers' tables one Service at a time. A change is read and compiled off the workers; only the Services whose
/// object or slices changed are compiled, and each worker applies them between two batches (in chunks, so no command
/// holds a worker for long), evicting the connections to endpoints that left. A set with errors is reported and not
/// applied: the Services in force stay.
/// </summary>
public sealed partial class ServiceCatalog : IDisposable
{
    public const string ManifestSource = "the manifest directory";
    public const string ApiSource = "the API";
    public const string StoreSource = "the cluster store";
    /// <summary>Services one worker command applies at most (a big change goes in several, between batches).</summary>
    private const int ChunkServices = 256;

    private readonly string? _path;
    private readonly ManifestOptions _options;
    private readonly IReadOnlyList<Datapath> _workers;
    private readonly ILogger _log;
    private readonly TimeSpan _interval;
    private readonly Lock _gate = new();
    private readonly ServiceStore _store = new();
    private Timer? _timer;
    private string _signature = "";

    public ServiceCatalog(string? path, ManifestOptions options, IReadOnlyList<Datapath> workers, TimeSpan interval, ILogger log)
    {
        _path = path;
        _options = options;
        _workers = workers;
        _interval = interval;
        _log = log;
    }

    /// <summary>What the last change did (shown by <c>vswitch services</c>).</summary>
    public string LastResult { get; private set; } = "none yet";
    public string? LastError { get; private set; }
    public int Applied { get; private set; }
    /// <summary>True when a manifest directory (or file) is watched.</summary>
    public bool HasManifests => _path is not null;
    /// <summary>Called (on the changing thread) after each change is in force with worker 0's frontends, e.g. to steer
    /// the node ports to the switch.</summary>
    public Action<IReadOnlyList<Frontend>>? Installed { get; set; }

    /// <summary>Reads and applies the manifests now. Throws <see cref="ManifestException"/> at start-up so a bad set stops
    /// the switch with a clear message; later reloads log instead.</summary>
    public void LoadInitial()
    {
        if (_path is null) return;
        lock (_gate)
        {
            _signature = Signature();
            InstallManifests();
        }
    }

    public void StartWatching()
    {
        if (_path is null) return;
        _timer = new Timer(_ => Poll(force: false), null, _interval, _interval);
    }

    /// <summary>Re-reads the manifests now (the CLI's <c>reload</c>), whether or not anything changed.</summary>
    public void Reload()
    {
        if (_path is null) throw new InvalidOperationException("no services.manifests configured");
        Poll(force: true);
    }

    private void Poll(bool force)
    {
        lock (_gate)
        {
            string sig;
            try
            {
                sig = Signature();
            }
            catch (IOException e)
            {
                Fail(e.Message);
                return;
            }
            if (!force && sig == _signature) return;
            _signature = sig;
            try
            {
                InstallManifests();
                LastError = null;
            }
            catch (ManifestException e)
            {
                Fail(e.Message);
            }
        }
    }

    private void Fail(string message)
    {
        LastError = message;
        LogRejected(_path ?? "", message);
    }

    /// <summary>Reads every manifest, finds the Services that changed, compiles and applies those.</summary>
    private void InstallManifests()
    {
        var sw = Stopwatch.StartNew();
        ClusterObjects objects = ManifestReader.ReadPath(_path!, _options);
        double readMs = sw.Elapsed.TotalMilliseconds;
        List<string> conflicts = _store.Conflicts(ManifestSource, objects, replaceAll: true);
        if (conflicts.Count > 0) throw new ManifestException(conflicts);
        HashSet<string> touched = _store.Replace(ManifestSource, objects);
        string what = string.Create(CultureInfo.InvariantCulture,
            $"read {objects.Services.Count} Service(s), {objects.EndpointSlices.Count} EndpointSlice(s) in {readMs:F1} ms");
        Install(touched, what, sw);
    }

    /// <summary>Applies Services and EndpointSlices given to the API (a manifest: YAML or JSON, any number of objects)
    /// next to the manifest directory's. Throws <see cref="ManifestException"/> for a bad manifest or one that collides
    /// with the directory's objects or node ports.</summary>
    public ServiceChange Apply(string manifest)
    {
        lock (_gate)
        {
            var sw = Stopwatch.StartNew();
            ClusterObjects objects = ManifestReader.Read(manifest, "request", _options);
            List<string> conflicts = _store.Conflicts(ApiSource, objects);
            if (conflicts.Count > 0) throw new ManifestException(conflicts);
            HashSet<string> touched = _store.Upsert(ApiSource, objects);
            return Install(touched, $"applied {objects.Services.Count} Service(s), {objects.EndpointSlices.Count} EndpointSlice(s) through the API", sw);
        }
    }

    /// <summary>Applies one batch of the cluster store's changes (a watch event batch, or the difference a list found):
    /// Services and EndpointSlices put or deleted. An object that collides with another source's (a Service of the same
    /// name from the manifest directory, a node port in use) is left out and reported; the rest apply. Returns the
    /// problems.</summary>
    public List<string> ApplyStore(ClusterObjects upserts, IReadOnlyCollection<string> deletedServices, IReadOnlyCollection<string> deletedSlices)
    {
        lock (_gate)
        {
            var sw = Stopwatch.StartNew();
            List<string> problems = _store.Conflicts(StoreSource, upserts);
            if (problems.Count > 0)
            {
                // Rare: find the objects at fault one by one and leave them out.
                var services = upserts.Services.Where(s => _store.Conflicts(StoreSource, new ClusterObjects { Services = [s] }).Count == 0).ToList();
                var slices = upserts.EndpointSlices.Where(s => _store.Conflicts(StoreSource, new ClusterObjects { EndpointSlices = [s] }).Count == 0).ToList();
                upserts = new ClusterObjects { Services = services, EndpointSlices = slices };
                foreach (string p in problems) LogRejected("cluster store", p);
            }
            HashSet<string> touched = _store.Upsert(StoreSource, upserts);
            foreach (string key in deletedServices)
                if (_store.OwnerOfService(key) == StoreSource) touched.UnionWith(_store.DeleteService(StoreSource, key));
            foreach (string key in deletedSlices)
                if (_store.OwnerOfSlice(key) == StoreSource) touched.UnionWith(_store.DeleteSlice(StoreSource, key));
            if (touched.Count > 0)
                Install(touched, string.Create(CultureInfo.InvariantCulture,
                    $"the cluster store: {upserts.Services.Count} Service(s), {upserts.EndpointSlices.Count} EndpointSlice(s) put, {deletedServices.Count + deletedSlices.Count} deleted"), sw,
                    quiet: upserts.Services.Count + upserts.EndpointSlices.Count + deletedServices.Count + deletedSlices.Count < 16);
            return problems;
        }
    }

    /// <summary>How many Services and EndpointSlices the cluster store gave.</summary>
    public (int Services, int Slices) StoreCounts()
    {
        lock (_gate)
        {
            ClusterObjects o = _store.Of(StoreSource);
            return (o.Services.Count, o.EndpointSlices.Count);
        }
    }

    /// <summary>The objects the API gave (what the state directory keeps).</summary>
    public ClusterObjects ApiObjects()
    {
        lock (_gate) return _store.Of(ApiSource);
    }

    /// <summary>Puts back what the API had given before a restart (at start, before the workers run).</summary>
    public void Restore(ClusterObjects objects)
    {
        lock (_gate)
        {
            List<string> conflicts = _store.Conflicts(ApiSource, objects);
            if (conflicts.Count > 0) LogRejected("state", $"some Services the API gave now collide and are left out: {string.Join("; ", conflicts)}");
            Install(_store.Upsert(ApiSource, objects), $"restored {objects.Services.Count} Service(s), {objects.EndpointSlices.Count} EndpointSlice(s) the API had given", Stopwatch.StartNew());
        }
    }

    /// <summary>Deletes a Service or an EndpointSlice the API gave. Throws <see cref="KeyNotFoundException"/> when there
    /// is none, <see cref="InvalidOperationException"/> when the manifest directory owns it.</summary>
    public ServiceChange Delete(string kind, string key)
    {
        lock (_gate)
        {
            var sw = Stopwatch.StartNew();
            bool service = kind == "Service";
            string? owner = service ? _store.OwnerOfService(key) : _store.OwnerOfSlice(key);
            if (owner is null) throw new KeyNotFoundException($"no {kind} {key}");
            if (owner != ApiSource) throw new InvalidOperationException($"{kind} {key} comes from {owner}: remove it there");
            HashSet<string> touched = service ? _store.DeleteService(ApiSource, key) : _store.DeleteSlice(ApiSource, key);
            return Install(touched, $"deleted {kind} {key}", sw);
        }
    }

    /// <summary>Compiles the changed Services and has every worker apply them.</summary>
    private ServiceChange Install(HashSet<string> touched, string what, Stopwatch sw, bool quiet = false)
    {
        NatEngine nat = _workers[0].Nat!;
        double before = sw.Elapsed.TotalMilliseconds;
        List<ServiceDelta> deltas = _store.Compile(touched, nat.CompileService);
        double compileMs = sw.Elapsed.TotalMilliseconds - before;
        int evicted = 0;
        double workerMs = 0;
        for (int at = 0; at < deltas.Count; at += ChunkServices)
        {
            ServiceDelta[] chunk = deltas.Skip(at).Take(ChunkServices).ToArray();
            // Every worker applies the same (immutable) frontends to its own table, on its own thread.
            Task<(int Evicted, double Ms)>[] t = _workers.Select(w => w.InvokeAsync(() =>
            {
                long t0 = Stopwatch.GetTimestamp();
                int n = 0;
                foreach (ServiceDelta d in chunk) n += w.Nat!.ApplyDelta(d);
                return (n, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            })).ToArray();
            if (!Task.WaitAll(t, TimeSpan.FromSeconds(10))) throw new ManifestException(["the workers did not take the new Services within 10 s"]);
            evicted += t.Sum(x => x.Result.Evicted);
            workerMs += t.Max(x => x.Result.Ms);
        }
        double totalMs = sw.Elapsed.TotalMilliseconds;
        Applied++;
        if (deltas.Count > 0 && Installed is { } installed)
        {
            IReadOnlyList<Frontend> frontends = _workers[0].InvokeAsync(() => _workers[0].Nat!.Services.Frontends).GetAwaiter().GetResult();
            installed(frontends);
        }
        LastResult = string.Create(CultureInfo.InvariantCulture,
            $"{what}; {deltas.Count} Service(s) changed (of {_store.ServiceCount}, {_store.SliceCount} EndpointSlice(s), {_store.EndpointCount} endpoint address(es)); evicted {evicted} connection(s); compile {compileMs:F1} ms, on the workers {workerMs:F2} ms, in force {totalMs:F1} ms after the change began");
        if (quiet) LogAppliedQuietly(LastResult);
        else LogApplied(LastResult);
        return new ServiceChange(deltas.Select(d => d.Service).ToList(), evicted, compileMs, workerMs, totalMs, LastResult);
    }

    /// <summary>Names, sizes and modification times of the manifest files.</summary>
    private string Signature()
    {
        var sb = new StringBuilder();
        IEnumerable<string> files = Directory.Exists(_path) ? ManifestReader.ManifestFiles(_path) : [_path!];
        foreach (string f in files)
        {
            var fi = new FileInfo(f);
            sb.Append(CultureInfo.InvariantCulture, $"{f}|{(fi.Exists ? fi.Length : -1)}|{(fi.Exists ? fi.LastWriteTimeUtc.Ticks : 0)}\n");
        }
        return sb.ToString();
    }

    public void Dispose() => _timer?.Dispose();

    [LoggerMessage(Level = LogLevel.Information, Message = "services: {Result}")]
    private partial void LogApplied(string result);

    /// <summary>The store's steady stream of small changes (EndpointSlices moving) is logged at debug level; big ones and
    /// every change through the API or the manifest directory at information.</summary>
    [LoggerMessage(Level = LogLevel.Debug, Message = "services: {Result}")]
    private partial void LogAppliedQuietly(string result);

    [LoggerMessage(Level = LogLevel.Error, Message = "services: {Path}: not applied, keeping the Services in force: {Error}")]
    private partial void LogRejected(string path, string error);
}

/// <summary>What one change to the Services did: the Services that changed, the connections evicted, and the times
/// (compile off the workers; the longest any worker spent applying it; from the start of the change to in force).</summary>
public sealed record ServiceChange(List<string> Changed, int Evicted, double CompileMs, double WorkerMs, double TotalMs, string Summary);

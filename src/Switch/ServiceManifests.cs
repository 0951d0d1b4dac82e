using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;

namespace VSwitch.Switch;

/// <summary>
/// Keeps the datapath's Services in step with the manifests: reads them at start, then checks for changes every
/// reload interval (file sizes and modification times), reads and compiles a changed set off the worker, and applies it
/// on the worker between two batches. A set with errors is reported and not applied: the running Services stay.
/// </summary>
public sealed partial class ServiceManifests : IDisposable
{
    private readonly string _path;
    private readonly ManifestOptions _options;
    private readonly IReadOnlyList<Datapath> _workers;
    private readonly ILogger _log;
    private readonly TimeSpan _interval;
    private readonly Lock _gate = new();
    private Timer? _timer;
    private string _signature = "";

    public ServiceManifests(string path, ManifestOptions options, IReadOnlyList<Datapath> workers, TimeSpan interval, ILogger log)
    {
        _path = path;
        _options = options;
        _workers = workers;
        _interval = interval;
        _log = log;
    }

    /// <summary>What the last load did (shown by <c>vswitch services</c>).</summary>
    public string LastResult { get; private set; } = "not loaded";
    public string? LastError { get; private set; }
    public int Applied { get; private set; }
    /// <summary>Called (on the loading thread) after each set is in force, e.g. to steer its node ports to the switch.</summary>
    public Action<ServiceTable>? Installed { get; set; }

    /// <summary>Reads and applies the manifests now. Throws <see cref="ManifestException"/> at start-up so a bad set stops
    /// the switch with a clear message; later reloads log instead.</summary>
    public void LoadInitial()
    {
        _signature = Signature();
        Install();
    }

    public void StartWatching()
    {
        _timer = new Timer(_ => Poll(force: false), null, _interval, _interval);
    }

    /// <summary>Reloads now (the CLI's <c>reload</c>), whether or not anything changed. Returns what happened.</summary>
    public string Reload()
    {
        Poll(force: true);
        return LastError is null ? LastResult + "\n" : $"error: {LastError}\n(kept the Services in force)\n";
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
                Install();
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
        LogRejected(_path, message);
    }

    /// <summary>Reads, compiles and applies the manifests; the times reported run from the start of the read.</summary>
    private void Install()
    {
        NatEngine nat = _workers[0].Nat!;
        var sw = Stopwatch.StartNew();
        ClusterObjects objects = ManifestReader.ReadPath(_path, _options);
        double readMs = sw.Elapsed.TotalMilliseconds;
        ServiceTable table = nat.Compile(objects);
        double compileMs = sw.Elapsed.TotalMilliseconds - readMs;
        // Every worker installs the same (immutable) table on its own thread and evicts from its own connections.
        Task<int>[] t = _workers.Select(w => w.InvokeAsync(() => w.Nat!.Apply(table))).ToArray();
        if (!Task.WaitAll(t, TimeSpan.FromSeconds(10))) throw new ManifestException("the workers did not take the new Services within 10 s");
        int evicted = t.Sum(x => x.Result);
        double totalMs = sw.Elapsed.TotalMilliseconds;
        Applied++;
        Installed?.Invoke(table);
        int services = objects.Services.Count, slices = objects.EndpointSlices.Count;
        int endpoints = objects.EndpointSlices.Sum(s => s.Endpoints.Sum(e => e.Addresses.Count));
        LastResult = string.Create(CultureInfo.InvariantCulture,
            $"applied {services} Service(s), {slices} EndpointSlice(s), {endpoints} endpoint address(es): {table.Count} frontend(s), version {table.Version}; evicted {evicted} connection(s); read {readMs:F1} ms, compile {compileMs:F1} ms, in force {totalMs:F1} ms after the read began");
        LogApplied(LastResult);
    }

    /// <summary>Names, sizes and modification times of the manifest files.</summary>
    private string Signature()
    {
        var sb = new StringBuilder();
        IEnumerable<string> files = Directory.Exists(_path) ? ManifestReader.ManifestFiles(_path) : [_path];
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

    [LoggerMessage(Level = LogLevel.Error, Message = "services: {Path}: not applied, keeping the Services in force: {Error}")]
    private partial void LogRejected(string path, string error);
}

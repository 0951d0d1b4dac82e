using System.Text.Json;
using VSwitch.Nat.Cluster;

namespace VSwitch.Nat;

/// <summary>
/// The Service and EndpointSlice objects a node knows, from one or more sources (the manifest directory, the control
/// API), folded per Service into changes: kube-proxy's change trackers. Each change names a Service whose object or
/// slices are different from what was compiled last; <see cref="Compile"/> turns the changed ones, and only those, into
/// <see cref="ServiceDelta"/>s for the workers. An object belongs to the source that gave it: another source giving an
/// object of the same kind, namespace and name is a conflict. Not thread-safe: one caller at a time.
/// </summary>
public sealed class ServiceStore
{
    private readonly Dictionary<string, (ServiceObject Obj, string Source)> _services = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (EndpointSliceObject Obj, string Source)> _slices = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> _slicesByService = new(StringComparer.Ordinal);
    /// <summary>What each Service was compiled from last: a SHA-256 (first 128 bits) of its object and slices, canonically
    /// serialised — 16 bytes per Service instead of the text.</summary>
    private readonly Dictionary<string, UInt128> _compiled = new(StringComparer.Ordinal);

    /// <summary>Who holds each node port (protocol, port) → Service key: kept as objects come and go, so checking a change
    /// costs what the change holds, not what the store holds.</summary>
    private readonly Dictionary<(byte Protocol, ushort Port), string> _nodePorts = [];
    private int _endpoints;

    public int ServiceCount => _services.Count;
    public int SliceCount => _slices.Count;
    public int EndpointCount => _endpoints;

    private static int Addresses(EndpointSliceObject s) => s.Endpoints.Sum(e => e.Addresses.Count);

    private void IndexPorts(ServiceObject s, bool add)
    {
        foreach (ServicePortSpec p in s.Ports)
        {
            if (p.NodePort == 0) continue;
            if (add) _nodePorts.TryAdd((p.Protocol, p.NodePort), s.Key);
            else if (_nodePorts.TryGetValue((p.Protocol, p.NodePort), out string? owner) && owner == s.Key) _nodePorts.Remove((p.Protocol, p.NodePort));
        }
    }

    public static string SliceKey(EndpointSliceObject s) => $"{s.Namespace}/{s.Name}";

    private static string ServiceOf(EndpointSliceObject s) => $"{s.Namespace}/{s.ServiceName}";

    /// <summary>The source that owns a Service, or null.</summary>
    public string? OwnerOfService(string key) => _services.TryGetValue(key, out var v) ? v.Source : null;

    /// <summary>The source that owns an EndpointSlice, or null.</summary>
    public string? OwnerOfSlice(string key) => _slices.TryGetValue(key, out var v) ? v.Source : null;

    /// <summary>Every object of every source (what a whole compile would read).</summary>
    public ClusterObjects All() => new()
    {
        Services = [.. _services.Values.Select(v => v.Obj)],
        EndpointSlices = [.. _slices.Values.Select(v => v.Obj)],
    };

    /// <summary>The objects one source holds.</summary>
    public ClusterObjects Of(string source) => new()
    {
        Services = [.. _services.Values.Where(v => v.Source == source).Select(v => v.Obj)],
        EndpointSlices = [.. _slices.Values.Where(v => v.Source == source).Select(v => v.Obj)],
    };

    /// <summary>Objects of other sources that <paramref name="objects"/> would collide with, one line each.</summary>
    public List<string> Conflicts(string source, ClusterObjects objects, bool replaceAll = false)
    {
        var errors = new List<string>();
        foreach (ServiceObject s in objects.Services)
            if (_services.TryGetValue(s.Key, out var cur) && cur.Source != source) errors.Add($"Service {s.Key} is owned by {cur.Source}");
        foreach (EndpointSliceObject s in objects.EndpointSlices)
            if (_slices.TryGetValue(SliceKey(s), out var cur) && cur.Source != source) errors.Add($"EndpointSlice {SliceKey(s)} is owned by {cur.Source}");
        // Node ports are one space for the node, whichever source a Service came from. With replaceAll every object of the
        // source is replaced; otherwise only the ones given: a port held by one of those is free.
        var incoming = objects.Services.Select(x => x.Key).ToHashSet(StringComparer.Ordinal);
        foreach (ServiceObject s in objects.Services)
            foreach (ServicePortSpec p in s.Ports)
            {
                if (p.NodePort == 0 || !_nodePorts.TryGetValue((p.Protocol, p.NodePort), out string? owner) || owner == s.Key) continue;
                if (_services.TryGetValue(owner, out var o) && o.Source == source && (replaceAll || incoming.Contains(owner))) continue;
                errors.Add($"Service {s.Key}: node port {p.NodePort}/{(p.Protocol == 6 ? "TCP" : "UDP")} is already used by Service {owner}");
            }
        return errors;
    }

    /// <summary>Makes <paramref name="objects"/> the whole of what <paramref name="source"/> holds (a re-read manifest
    /// directory): objects it no longer has are deleted. Returns the Services touched (to compile). Objects owned by
    /// another source are left alone (check <see cref="Conflicts"/> first).</summary>
    public HashSet<string> Replace(string source, ClusterObjects objects)
    {
        var touched = new HashSet<string>(StringComparer.Ordinal);
        var keepServices = objects.Services.Select(s => s.Key).ToHashSet(StringComparer.Ordinal);
        var keepSlices = objects.EndpointSlices.Select(SliceKey).ToHashSet(StringComparer.Ordinal);
        foreach (string k in _services.Where(kv => kv.Value.Source == source && !keepServices.Contains(kv.Key)).Select(kv => kv.Key).ToList())
            touched.UnionWith(DeleteService(source, k));
        foreach (string k in _slices.Where(kv => kv.Value.Source == source && !keepSlices.Contains(kv.Key)).Select(kv => kv.Key).ToList())
            touched.UnionWith(DeleteSlice(source, k));
        touched.UnionWith(Upsert(source, objects));
        return touched;
    }

    /// <summary>Adds or replaces the given objects for <paramref name="source"/>. Returns the Services touched.</summary>
    public HashSet<string> Upsert(string source, ClusterObjects objects)
    {
        var touched = new HashSet<string>(StringComparer.Ordinal);
        // Node ports the replaced objects held are released before any is taken (a port may move between two of them).
        foreach (ServiceObject s in objects.Services)
            if (_services.TryGetValue(s.Key, out var cur) && cur.Source == source) IndexPorts(cur.Obj, add: false);
        foreach (ServiceObject s in objects.Services)
        {
            if (_services.TryGetValue(s.Key, out var cur) && cur.Source != source) continue;
            _services[s.Key] = (s, source);
            IndexPorts(s, add: true);
            touched.Add(s.Key);
        }
        foreach (EndpointSliceObject s in objects.EndpointSlices)
        {
            string key = SliceKey(s);
            if (_slices.TryGetValue(key, out var cur))
            {
                if (cur.Source != source) continue;
                // A slice may move to another Service (its label changed): both are touched.
                string was = ServiceOf(cur.Obj);
                if (was != ServiceOf(s))
                {
                    _slicesByService.GetValueOrDefault(was)?.Remove(key);
                    touched.Add(was);
                }
                _endpoints -= Addresses(cur.Obj);
            }
            _slices[key] = (s, source);
            _endpoints += Addresses(s);
            if (!_slicesByService.TryGetValue(ServiceOf(s), out HashSet<string>? set)) _slicesByService[ServiceOf(s)] = set = new(StringComparer.Ordinal);
            set.Add(key);
            touched.Add(ServiceOf(s));
        }
        return touched;
    }

    /// <summary>Deletes a Service of <paramref name="source"/>. Returns the Services touched (none when it had none).</summary>
    public HashSet<string> DeleteService(string source, string key)
    {
        if (!_services.TryGetValue(key, out var cur) || cur.Source != source) return [];
        _services.Remove(key);
        IndexPorts(cur.Obj, add: false);
        return new HashSet<string>(StringComparer.Ordinal) { key };
    }

    /// <summary>Deletes an EndpointSlice of <paramref name="source"/>. Returns the Services touched.</summary>
    public HashSet<string> DeleteSlice(string source, string key)
    {
        if (!_slices.TryGetValue(key, out var cur) || cur.Source != source) return [];
        _slices.Remove(key);
        _endpoints -= Addresses(cur.Obj);
        string svc = ServiceOf(cur.Obj);
        _slicesByService.GetValueOrDefault(svc)?.Remove(key);
        return new HashSet<string>(StringComparer.Ordinal) { svc };
    }

    private static UInt128 Fingerprint(ServiceObject svc, List<EndpointSliceObject> slices)
    {
        Span<byte> hash = stackalloc byte[32];
        System.Security.Cryptography.SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(new { svc, slices }), hash);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128LittleEndian(hash);
    }

    /// <summary>The changes to hand the workers: for each touched Service whose object or slices differ from what was
    /// compiled last, its frontends compiled afresh (or its removal). Services that did not change give nothing.</summary>
    public List<ServiceDelta> Compile(IEnumerable<string> touched, Func<string, ServiceObject?, IReadOnlyList<EndpointSliceObject>, ServiceDelta> compile)
    {
        var deltas = new List<ServiceDelta>();
        foreach (string key in touched.Order(StringComparer.Ordinal))
        {
            ServiceObject? svc = _services.TryGetValue(key, out var s) ? s.Obj : null;
            List<EndpointSliceObject> slices = _slicesByService.TryGetValue(key, out HashSet<string>? names)
                ? [.. names.Order(StringComparer.Ordinal).Select(n => _slices[n].Obj)]
                : [];
            if (svc is null)
            {
                if (_compiled.Remove(key)) deltas.Add(compile(key, null, []));
                continue;
            }
            UInt128 fingerprint = Fingerprint(svc, slices);
            if (_compiled.TryGetValue(key, out UInt128 was) && was == fingerprint) continue;
            _compiled[key] = fingerprint;
            deltas.Add(compile(key, svc, slices));
        }
        return deltas;
    }
}

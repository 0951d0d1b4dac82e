using System.Globalization;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Cluster;

/// <summary>Refused: the object changed since the <c>resourceVersion</c> the request carried (HTTP 409).</summary>
public sealed class ConflictException(string message) : Exception(message)
{
    public ConflictException() : this("conflict") { }
    public ConflictException(string message, Exception inner) : this(message) => _ = inner;
}

/// <summary>What applying one object did (as kubectl prints it: <c>service/web created</c>).</summary>
public sealed record AppliedObject(string Kind, string? Namespace, string Name, string Action, long ResourceVersion);

/// <summary>
/// The Kubernetes objects of the cluster store: kept as JSON with the real field names at
/// <c>&lt;prefix&gt;/registry/&lt;resource&gt;/&lt;namespace&gt;/&lt;name&gt;</c>; <c>metadata.resourceVersion</c> is the key's etcd
/// modification revision (never stored, filled in on reads), <c>metadata.uid</c> and <c>creationTimestamp</c> are set
/// at creation and kept. An apply is one etcd transaction: every object is checked first, and either all are written
/// or none (a request that names a <c>resourceVersion</c> the object no longer has is refused with a conflict).
/// Services get what the API server would give them: a ClusterIP from the Service range when they have none, and node
/// ports; the addresses and ports are allocated with keys of their own (<c>PREFIX/ranges/...</c>) in the same transaction,
/// so two Services never get the same one.
/// </summary>
public sealed class ObjectRegistry(EtcdStore store, string prefix, ManifestOptions options, Ipv4Prefix serviceCidr)
{
    private const int MaxRetries = 5;

    public string Prefix => prefix;

    /// <summary>Applies every object of a manifest. Throws <see cref="ManifestException"/> (invalid, nothing written),
    /// <see cref="ConflictException"/> or <see cref="StoreUnavailableException"/>.</summary>
    public async Task<List<AppliedObject>> ApplyAsync(string manifest, string sourceName, CancellationToken ct)
    {
        List<IKubernetesObject<V1ObjectMeta>> objects = KubeObjects.Read(manifest, sourceName, out List<string> readErrors);
        if (objects.Count == 0 && readErrors.Count == 0) throw new ManifestException($"{sourceName}: no object in it");
        var errors = new List<string>();
        if (readErrors.Count > 0)
        {
            // Every problem is reported at once: those of the objects that did not read, and those of the ones that did
            // (a ClusterIP is not required yet: it is allocated when the rest is valid).
            errors.AddRange(readErrors);
            foreach (IKubernetesObject<V1ObjectMeta> o in objects)
                errors.AddRange(KubeObjects.Validate(o, options).Where(e => !e.Contains("no ClusterIP allocator", StringComparison.Ordinal)));
            throw new ManifestException(errors);
        }
        // Names are checked before anything else uses them (keys, allocation).
        foreach (IKubernetesObject<V1ObjectMeta> o in objects)
        {
            o.Metadata ??= new V1ObjectMeta();
            if (KubeObjects.KindOf(o).Namespaced) o.Metadata.NamespaceProperty ??= "default";
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (IKubernetesObject<V1ObjectMeta> o in objects)
            if (!seen.Add(KubeObjects.Describe(o))) errors.Add($"{KubeObjects.Describe(o)}: metadata.name: given twice in one request");
        if (errors.Count > 0) throw new ManifestException(errors);

        for (int attempt = 0; ; attempt++)
        {
            // Read what is there (each key's revision makes the write conditional on nothing having changed since).
            var existing = new Dictionary<string, StoreEntry?>(StringComparer.Ordinal);
            foreach (IKubernetesObject<V1ObjectMeta> o in objects)
            {
                string key = KeyOf(o);
                existing[key] = await store.GetAsync(key, ct).ConfigureAwait(false);
            }
            var ranges = new Ranges(store, prefix, ct);
            var writes = new List<(string Key, string? Value, long Lease)>();
            var expect = new List<(string Key, long ModRevision)>();
            var results = new List<AppliedObject>();
            errors.Clear();
            foreach (IKubernetesObject<V1ObjectMeta> o in objects)
            {
                string key = KeyOf(o);
                StoreEntry? old = existing[key];
                KubeKind kind = KubeObjects.KindOf(o);
                IKubernetesObject<V1ObjectMeta>? before = old is { } e ? Deserialize(kind, e) : null;
                if (o.Metadata.ResourceVersion is { Length: > 0 } rv)
                {
                    if (!long.TryParse(rv, NumberStyles.None, CultureInfo.InvariantCulture, out long want))
                    {
                        errors.Add($"{KubeObjects.Describe(o)}: metadata.resourceVersion: '{rv}' is not a resource version");
                        continue;
                    }
                    if ((old?.ModRevision ?? 0) != want)
                        throw new ConflictException($"{KubeObjects.Describe(o)}: the object has been modified (resourceVersion {want} given, {(old is null ? "it does not exist" : $"it is at {old.Value.ModRevision}")}); read it again and apply your changes to the latest version");
                }
                if (o is V1Service svc) await AllocateAsync(svc, before as V1Service, ranges, errors).ConfigureAwait(false);
                List<string> problems = KubeObjects.Validate(o, options);
                errors.AddRange(problems);
                if (problems.Count > 0) continue;
                if (o is V1Service s2) await NodePortsAsync(s2, before as V1Service, ranges, errors).ConfigureAwait(false);
                if (before is V1Service old1 && o is V1Service new1) await ranges.ReleaseUnusedAsync(old1, new1).ConfigureAwait(false);
                // What the API server keeps from the object's past: its identity and age.
                o.Metadata.Uid = before?.Metadata?.Uid ?? Guid.NewGuid().ToString();
                o.Metadata.CreationTimestamp = before?.Metadata?.CreationTimestamp ?? DateTime.UtcNow.Truncate();
                o.Metadata.ResourceVersion = null;
                o.Metadata.Generation = before is null ? 1 : (before.Metadata?.Generation ?? 1) + (Same(before, o) ? 0 : 1);
                string json = KubernetesJson.Serialize(o);
                expect.Add((key, old?.ModRevision ?? 0));
                if (before is not null && Same(before, o))
                {
                    results.Add(new AppliedObject(kind.Kind, o.Metadata.NamespaceProperty, o.Metadata.Name, "unchanged", old!.Value.ModRevision));
                    continue;
                }
                writes.Add((key, json, 0));
                results.Add(new AppliedObject(kind.Kind, o.Metadata.NamespaceProperty, o.Metadata.Name, before is null ? "created" : "configured", 0));
            }
            if (errors.Count > 0) throw new ManifestException(errors);
            if (writes.Count == 0) return results;
            // The allocations go in the same transaction: two applies racing for one address or port cannot both win.
            ranges.AddTo(expect, writes);
            long? revision = await store.CommitAsync(expect, writes, ct).ConfigureAwait(false);
            if (revision is { } r) return [.. results.Select(x => x.Action == "unchanged" ? x : x with { ResourceVersion = r })];
            if (attempt >= MaxRetries) throw new ConflictException("the objects kept changing while they were being applied; try again");
        }
    }

    private string KeyOf(IKubernetesObject<V1ObjectMeta> o) =>
        KubeObjects.Key(prefix, KubeObjects.KindOf(o), o.Metadata.NamespaceProperty, o.Metadata.Name ?? "");

    /// <summary>Equal apart from what the store sets (resourceVersion, uid, creationTimestamp, generation).</summary>
    private static bool Same(IKubernetesObject<V1ObjectMeta> a, IKubernetesObject<V1ObjectMeta> b)
    {
        static JsonNode? Strip(IKubernetesObject<V1ObjectMeta> o)
        {
            JsonNode? n = JsonNode.Parse(KubernetesJson.Serialize(o));
            if (n?["metadata"] is JsonObject md)
            {
                md.Remove("resourceVersion");
                md.Remove("uid");
                md.Remove("creationTimestamp");
                md.Remove("generation");
            }
            return n;
        }
        return JsonNode.DeepEquals(Strip(a), Strip(b));
    }

    /// <summary>
    /// The allocations of Service addresses and node ports, as the API server keeps them: one key per address
    /// (<c>PREFIX/ranges/serviceips/10.96.0.10</c>) and per node port (<c>PREFIX/ranges/nodeports/TCP/30080</c>), whose
    /// value names the Service that holds it. An apply reads the keys it needs (never the whole set of Services), and
    /// writes its claims and releases in its own transaction, conditional on those keys being as read.
    /// </summary>
    private sealed class Ranges(EtcdStore store, string prefix, CancellationToken ct)
    {
        private readonly Dictionary<string, StoreEntry?> _read = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string?> _want = new(StringComparer.Ordinal);

        public static string Owner(V1Service s) => $"{s.Metadata.NamespaceProperty}/{s.Metadata.Name}";
        public string IpKey(string ip) => $"{prefix}/ranges/serviceips/{ip}";
        public string PortKey(string protocol, int port) => $"{prefix}/ranges/nodeports/{protocol}/{port}";

        /// <summary>Who holds a key: a claim made in this request, else the store's value; null when free.</summary>
        public async Task<string?> HolderAsync(string key)
        {
            if (_want.TryGetValue(key, out string? w)) return w;
            if (!_read.TryGetValue(key, out StoreEntry? e)) _read[key] = e = await store.GetAsync(key, ct).ConfigureAwait(false);
            return e?.Text;
        }

        public void Claim(string key, string owner) => _want[key] = owner;

        /// <summary>Frees the address and node ports <paramref name="before"/> held that <paramref name="after"/> does not.</summary>
        public async Task ReleaseUnusedAsync(V1Service before, V1Service after)
        {
            foreach (string k in KeysOf(before).Except(KeysOf(after)).ToList())
                if (!_want.ContainsKey(k) && await HolderAsync(k).ConfigureAwait(false) == Owner(before)) _want[k] = null;
        }

        public IEnumerable<string> KeysOf(V1Service s)
        {
            foreach (string ip in (s.Spec?.ClusterIPs ?? []).Append(s.Spec?.ClusterIP ?? "").Where(i => i.Length > 0 && i != "None").Distinct())
                yield return IpKey(ip);
            foreach (V1ServicePort p in s.Spec?.Ports ?? [])
                if (p.NodePort is > 0) yield return PortKey(p.Protocol ?? "TCP", p.NodePort.Value);
        }

        public void AddTo(List<(string Key, long ModRevision)> expect, List<(string Key, string? Value, long Lease)> writes)
        {
            foreach ((string key, string? owner) in _want)
            {
                StoreEntry? e = _read.GetValueOrDefault(key);
                if (e?.Text == owner) continue;
                expect.Add((key, e?.ModRevision ?? 0));
                writes.Add((key, owner, 0));
            }
        }
    }

    /// <summary>The ClusterIP: the one given (refused when another Service holds it), the one a re-applied Service had,
    /// else the first free address from a hash of its name.</summary>
    private async Task AllocateAsync(V1Service s, V1Service? before, Ranges ranges, List<string> errors)
    {
        s.Spec ??= new V1ServiceSpec();
        if (s.Spec.Type == "ExternalName") return;
        string owner = Ranges.Owner(s);
        string? given = !string.IsNullOrEmpty(s.Spec.ClusterIP) ? s.Spec.ClusterIP : s.Spec.ClusterIPs?.FirstOrDefault();
        if (given == "None") return;
        if (given is null && before?.Spec?.ClusterIP is { Length: > 0 } kept && kept != "None")
        {
            s.Spec.ClusterIP = kept;
            s.Spec.ClusterIPs = before.Spec.ClusterIPs ?? [kept];
            given = kept;
        }
        if (given is not null)
        {
            if (!Ipv4Address.TryParse(given, out _)) return; // the reader reports it
            string? holder = await ranges.HolderAsync(ranges.IpKey(given)).ConfigureAwait(false);
            if (holder is not null && holder != owner)
                errors.Add($"{KubeObjects.Describe(s)}: spec.clusterIP: {given} is already allocated to Service {holder}");
            else ranges.Claim(ranges.IpKey(given), owner);
            return;
        }
        uint size = (uint)((1UL << (32 - serviceCidr.Length)) - 2);
        uint h = NodePortAllocator.Hash(s.Metadata.NamespaceProperty, s.Metadata.Name, 0, 6);
        for (uint i = 0; i < Math.Min(size, 4096u); i++)
        {
            string ip = new Ipv4Address(serviceCidr.Address.Value + 1 + ((h + i) % size)).ToString();
            string? holder = await ranges.HolderAsync(ranges.IpKey(ip)).ConfigureAwait(false);
            if (holder is not null && holder != owner) continue;
            s.Spec.ClusterIP = ip;
            s.Spec.ClusterIPs = [ip];
            ranges.Claim(ranges.IpKey(ip), owner);
            return;
        }
        errors.Add($"{KubeObjects.Describe(s)}: spec.clusterIP: no free address found in {serviceCidr}");
    }

    /// <summary>Node ports: those given (refused when another Service holds one), those a re-applied Service had, the
    /// rest as the manifest reader chooses them (a stable hash of the port), moved on to the next free one when held.</summary>
    private async Task NodePortsAsync(V1Service s, V1Service? before, Ranges ranges, List<string> errors)
    {
        if (s.Spec?.Ports is null || s.Spec.Type is not ("NodePort" or "LoadBalancer")) return;
        string owner = Ranges.Owner(s);
        var given = new bool[s.Spec.Ports.Count];
        for (int i = 0; i < s.Spec.Ports.Count; i++)
        {
            V1ServicePort p = s.Spec.Ports[i];
            given[i] = p.NodePort is > 0;
            if (p.NodePort is null or 0 && before?.Spec?.Ports?.FirstOrDefault(b => b.Port == p.Port && (b.Protocol ?? "TCP") == (p.Protocol ?? "TCP")) is { NodePort: > 0 } b)
                p.NodePort = b.NodePort;
        }
        ServiceObject compiled = ManifestReader.Read(KubernetesJson.Serialize(s), "store", options).Services[0];
        int span = options.NodePortMax - options.NodePortMin + 1;
        for (int i = 0; i < s.Spec.Ports.Count && i < compiled.Ports.Count; i++)
        {
            V1ServicePort p = s.Spec.Ports[i];
            string proto = p.Protocol ?? "TCP";
            int np = compiled.Ports[i].NodePort;
            if (np == 0) continue;
            for (int k = 0; ; k++)
            {
                string? holder = await ranges.HolderAsync(ranges.PortKey(proto, np)).ConfigureAwait(false);
                if (holder is null || holder == owner)
                {
                    p.NodePort = np;
                    ranges.Claim(ranges.PortKey(proto, np), owner);
                    break;
                }
                if (given[i] || k >= Math.Min(span, 4096))
                {
                    errors.Add(given[i]
                        ? $"{KubeObjects.Describe(s)}: spec.ports[{i}].nodePort: {np} is already allocated to Service {holder}"
                        : $"{KubeObjects.Describe(s)}: spec.ports[{i}].nodePort: no free node port found in {options.NodePortMin}-{options.NodePortMax}");
                    break;
                }
                np = options.NodePortMin + ((np - options.NodePortMin + 1) % span);
            }
        }
    }

    private static IKubernetesObject<V1ObjectMeta>? Deserialize(KubeKind kind, StoreEntry e)
    {
        try
        {
            var o = (IKubernetesObject<V1ObjectMeta>?)System.Text.Json.JsonSerializer.Deserialize(e.Value, kind.Type, JsonOptions);
            if (o is not null)
            {
                o.Metadata ??= new V1ObjectMeta();
                o.Metadata.ResourceVersion = e.ModRevision.ToString(CultureInfo.InvariantCulture);
            }
            return o;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>The client library's JSON settings (its converters for quantities, int-or-string, dates).</summary>
    private static readonly System.Text.Json.JsonSerializerOptions JsonOptions = KubeJson();

    private static System.Text.Json.JsonSerializerOptions KubeJson()
    {
        System.Text.Json.JsonSerializerOptions? captured = null;
        KubernetesJson.AddJsonOptions(o => captured = o);
        return captured ?? new System.Text.Json.JsonSerializerOptions();
    }

    /// <summary>A stored object read back into its model (with its resourceVersion), or null when the stored value is not
    /// one (written by hand, say).</summary>
    public static IKubernetesObject<V1ObjectMeta>? Decode(KubeKind kind, StoreEntry e) => Deserialize(kind, e);

    public async Task<IKubernetesObject<V1ObjectMeta>?> GetAsync(KubeKind kind, string? ns, string name, CancellationToken ct)
    {
        StoreEntry? e = await store.GetAsync(KubeObjects.Key(prefix, kind, kind.Namespaced ? ns ?? "default" : null, name), ct).ConfigureAwait(false);
        return e is null ? null : Deserialize(kind, e.Value);
    }

    /// <summary>Every object of a kind (in one namespace, or all when <paramref name="ns"/> is null).</summary>
    public async Task<List<T>> ListAsync<T>(KubeKind kind, string? ns, CancellationToken ct) where T : class
    {
        (List<StoreEntry> entries, long _) = await store.ListAsync(KubeObjects.ResourcePrefix(prefix, kind, kind.Namespaced ? ns : null), ct).ConfigureAwait(false);
        return [.. entries.Select(e => Deserialize(kind, e)).OfType<T>()];
    }

    /// <summary>Deletes an object; false when there is none. With <paramref name="resourceVersion"/>, only if unchanged.</summary>
    public async Task<bool> DeleteAsync(KubeKind kind, string? ns, string name, long? resourceVersion, CancellationToken ct)
    {
        string key = KubeObjects.Key(prefix, kind, kind.Namespaced ? ns ?? "default" : null, name);
        StoreEntry? e = await store.GetAsync(key, ct).ConfigureAwait(false);
        if (e is null) return false;
        long rev = resourceVersion ?? e.Value.ModRevision;
        var expect = new List<(string Key, long ModRevision)> { (key, rev) };
        var writes = new List<(string Key, string? Value, long Lease)> { (key, null, 0) };
        if (kind.Kind == "Service" && Deserialize(kind, e.Value) is V1Service svc)
        {
            // The Service's address and node ports are free again, in the same transaction.
            var ranges = new Ranges(store, prefix, ct);
            foreach (string k in ranges.KeysOf(svc))
                if (await ranges.HolderAsync(k).ConfigureAwait(false) == Ranges.Owner(svc)) ranges.Claim(k, null!);
            ranges.AddTo(expect, writes);
        }
        long? done = await store.CommitAsync(expect, writes, ct).ConfigureAwait(false);
        if (done is null) throw new ConflictException($"{kind.Kind} {(kind.Namespaced ? $"{ns ?? "default"}/" : "")}{name}: the object has been modified (resourceVersion {rev} given)");
        return true;
    }

    /// <summary>Puts a node's own object (as kubelet registers it): created or replaced, keeping its uid.</summary>
    public async Task RegisterAsync(IKubernetesObject<V1ObjectMeta> o, CancellationToken ct)
    {
        KubeKind kind = KubeObjects.KindOf(o);
        string key = KeyOf(o);
        StoreEntry? e = await store.GetAsync(key, ct).ConfigureAwait(false);
        IKubernetesObject<V1ObjectMeta>? before = e is { } x ? Deserialize(kind, x) : null;
        o.Metadata.Uid = before?.Metadata?.Uid ?? Guid.NewGuid().ToString();
        o.Metadata.CreationTimestamp = before?.Metadata?.CreationTimestamp ?? DateTime.UtcNow.Truncate();
        o.Metadata.ResourceVersion = null;
        if (before is not null && Same(before, o)) return;
        await store.PutAsync(key, KubernetesJson.Serialize(o), 0, ct).ConfigureAwait(false);
    }
}

internal static class DateTimeExtensions
{
    /// <summary>To the second, as Kubernetes timestamps are.</summary>
    public static DateTime Truncate(this DateTime t) => new(t.Ticks - t.Ticks % TimeSpan.TicksPerSecond, DateTimeKind.Utc);
}

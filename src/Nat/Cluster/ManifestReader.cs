using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace VSwitch.Nat.Cluster;

/// <summary>Reads Kubernetes manifests — the output of <c>kubectl get svc,endpointslice -o yaml</c> (or <c>-o json</c>),
/// or hand-written files — into <see cref="ClusterObjects"/>: <c>v1</c> Services and <c>discovery.k8s.io/v1</c>
/// EndpointSlices (IPv4). Accepts multi-document YAML, JSON, and <c>kind: List</c> / <c>ServiceList</c> /
/// <c>EndpointSliceList</c> wrappers. Other kinds, and IPv6/FQDN slices, are skipped and counted in
/// <see cref="ClusterObjects.Skipped"/>.
/// <para>Every problem in the whole document set is collected and reported in one <see cref="ManifestException"/>;
/// bad input never produces any other exception. See docs/services.md, "Manifests".</para></summary>
public static class ManifestReader
{
    /// <summary>Deepest collection nesting accepted (kubectl output, managedFields included, stays near 12).</summary>
    internal const int MaxDepth = 64;

    /// <summary>Reads a manifest file, or every <c>*.yaml</c>, <c>*.yml</c> and <c>*.json</c> file of a directory
    /// (sorted by name, not recursive, hidden files skipped), as one document set.</summary>
    /// <exception cref="ManifestException">The files cannot be read or are invalid.</exception>
    public static ClusterObjects ReadPath(string path) => ReadPath(path, ManifestOptions.Default);

    /// <inheritdoc cref="ReadPath(string)"/>
    /// <exception cref="ArgumentOutOfRangeException">The options' node port range is invalid.</exception>
    public static ClusterObjects ReadPath(string path, ManifestOptions options)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var state = new ReadState(options);
        if (Directory.Exists(path))
        {
            IReadOnlyList<string> files;
            try
            {
                files = ManifestFiles(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ManifestException($"{path}: cannot list the directory: {e.Message}");
            }
            for (int i = 0; i < files.Count; i++) ReadFile(state, i, files[i]);
        }
        else
        {
            ReadFile(state, 0, path);
        }
        return state.Finish();
    }

    /// <summary>Reads manifests from text; <paramref name="sourceName"/> (a file name) starts every error message.</summary>
    /// <exception cref="ManifestException">The manifests are invalid.</exception>
    public static ClusterObjects Read(string text, string sourceName) => Read(text, sourceName, ManifestOptions.Default);

    /// <inheritdoc cref="Read(string, string)"/>
    /// <exception cref="ArgumentOutOfRangeException">The options' node port range is invalid.</exception>
    public static ClusterObjects Read(string text, string sourceName, ManifestOptions options)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(sourceName);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var state = new ReadState(options);
        state.ReadText(0, sourceName, text);
        return state.Finish();
    }

    /// <summary>The manifest files of a directory, in the order <see cref="ReadPath(string)"/> reads them: names ending
    /// in .yaml, .yml or .json (any case), not starting with '.' (editor lock files, the <c>..data</c> links of a
    /// mounted ConfigMap), sorted by ordinal name.</summary>
    public static IReadOnlyList<string> ManifestFiles(string directory) =>
    [
        .. Directory.EnumerateFiles(directory)
            .Where(f =>
            {
                string name = Path.GetFileName(f);
                return !name.StartsWith('.')
                    && (name.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase)
                        || name.EndsWith(".yml", StringComparison.OrdinalIgnoreCase)
                        || name.EndsWith(".json", StringComparison.OrdinalIgnoreCase));
            })
            .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal),
    ];

    private static void ReadFile(ReadState state, int source, string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            state.Diagnostics.Add(source, path, "no such file or directory");
            return;
        }
        catch (UnauthorizedAccessException)
        {
            state.Diagnostics.Add(source, path, "permission denied");
            return;
        }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException)
        {
            state.Diagnostics.Add(source, path, $"cannot read: {e.Message}");
            return;
        }
        state.ReadText(source, path, text);
    }
}

/// <summary>One read of a document set: collected objects, skip counts and problems.</summary>
internal sealed class ReadState(ManifestOptions options)
{
    public Diagnostics Diagnostics { get; } = new();
    private readonly List<ServiceEntry> services = [];
    private readonly List<EndpointSliceEntry> slices = [];
    private readonly Dictionary<string, int> skipped = new(StringComparer.Ordinal);

    public void ReadText(int source, string sourceName, string text)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new DepthLimitedParser(new Parser(new StringReader(text.TrimStart('\uFEFF'))), ManifestReader.MaxDepth));
        }
        catch (YamlException e)
        {
            Diagnostics.Add(source, sourceName, e.Start, $"invalid YAML: {(e.InnerException as YamlException ?? e).Message}");
            return;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // YamlDotNet should only throw YamlException; anything else from it is still bad input, not a crash.
            Diagnostics.Add(source, sourceName, $"invalid YAML: {e.Message}");
            return;
        }
        foreach (YamlDocument doc in stream.Documents)
            if (!Yaml.IsNull(doc.RootNode))
                ReadObject(new ObjectScope(Diagnostics, source, sourceName, ""), doc.RootNode, null, null);
    }

    /// <summary>One object, or a list of them. <paramref name="defaultApiVersion"/>/<paramref name="defaultKind"/> come
    /// from a typed list (<c>ServiceList</c>), whose items carry no apiVersion and kind.</summary>
    private void ReadObject(ObjectScope scope, YamlNode node, string? defaultApiVersion, string? defaultKind)
    {
        if (node is not YamlMappingNode map)
        {
            scope.Error(node, "", $"expected a Kubernetes object (a mapping with apiVersion and kind), found {Yaml.Describe(node)}");
            return;
        }
        var obj = new Fields(scope, map, "");
        string? kind = obj.NonEmptyString("kind") ?? defaultKind;
        string? apiVersion = obj.NonEmptyString("apiVersion") ?? defaultApiVersion;
        if (kind is null)
        {
            if (obj.Get("kind") is not (YamlMappingNode or YamlSequenceNode)) obj.Required("kind");
            return;
        }
        if (kind == "List" || (kind.EndsWith("List", StringComparison.Ordinal) && obj.Get("items") is not null))
        {
            string? itemKind = kind.Length > 4 ? kind[..^4] : null;
            IList<YamlNode> items = obj.List("items");
            for (int i = 0; i < items.Count; i++)
            {
                string label = scope.Label.Length == 0 ? $"items[{i}]" : $"{scope.Label}.items[{i}]";
                ReadObject(new ObjectScope(Diagnostics, scope.Source, scope.SourceName, label), items[i],
                    itemKind is null ? null : apiVersion, itemKind);
            }
            return;
        }
        string group = apiVersion is not null && apiVersion.Contains('/', StringComparison.Ordinal) ? apiVersion[..apiVersion.IndexOf('/', StringComparison.Ordinal)] : "";
        switch (kind)
        {
            case "Service" or "EndpointSlice" when apiVersion is null:
                if (obj.Get("apiVersion") is null) obj.Required("apiVersion", kind == "Service" ? "v1" : "discovery.k8s.io/v1");
                break;
            case "Service" when group.Length == 0:
                if (apiVersion != "v1")
                    scope.Error(obj.Get("apiVersion") ?? map, "apiVersion", $"'{Yaml.Shorten(apiVersion)}' is not supported for a Service (use v1)");
                else if (ServiceManifest.Read(obj, options) is { } service)
                    services.Add(service);
                break;
            case "EndpointSlice" when group == "discovery.k8s.io":
                if (apiVersion != "discovery.k8s.io/v1")
                    scope.Error(obj.Get("apiVersion") ?? map, "apiVersion", $"'{Yaml.Shorten(apiVersion)}' is not supported for an EndpointSlice (use discovery.k8s.io/v1)");
                else if (obj.Get("addressType") is YamlScalarNode { Value: var family } && EndpointSliceManifest.IsSkippedAddressType(family))
                    Skip($"EndpointSlice ({family})");
                else if (EndpointSliceManifest.Read(obj) is { } slice)
                    slices.Add(slice);
                break;
            case "Service" or "EndpointSlice":
                // Another API group's kind of the same name (a Knative Service, say): not ours.
                Skip($"{kind} ({Yaml.Shorten(apiVersion)})");
                break;
            default:
                Skip(Yaml.Shorten(kind));
                break;
        }
    }

    private void Skip(string key) => skipped[key] = skipped.GetValueOrDefault(key) + 1;

    /// <summary>Checks across objects (duplicate names, node ports), allocates node ports, applies
    /// publishNotReadyAddresses, and throws if anything was wrong.</summary>
    public ClusterObjects Finish()
    {
        List<ServiceEntry> uniqueServices = Unique(services, "Service");
        List<EndpointSliceEntry> uniqueSlices = Unique(slices, "EndpointSlice");
        NodePortAllocator.Assign(uniqueServices, options);
        if (Diagnostics.Count > 0) throw new ManifestException(Diagnostics.Sorted());

        // publishNotReadyAddresses: the EndpointSlice controller marks every endpoint of such a Service ready; slices
        // written by hand may not, so do it here (serving and terminating are kept as written).
        var publishAll = uniqueServices.Where(s => s.Service.PublishNotReadyAddresses).Select(s => s.Key).ToHashSet(StringComparer.Ordinal);
        return new ClusterObjects
        {
            Services = [.. uniqueServices.Select(s => s.Build())],
            EndpointSlices =
            [
                .. uniqueSlices.Select(e => publishAll.Contains($"{e.Slice.Namespace}/{e.Slice.ServiceName}")
                    ? e.Slice with { Endpoints = [.. e.Slice.Endpoints.Select(ep => ep with { Ready = true })] }
                    : e.Slice),
            ],
            Skipped = new Dictionary<string, int>(skipped, StringComparer.Ordinal).AsReadOnly(),
        };
    }

    /// <summary>Drops (and reports) the second and later objects of the same kind with the same namespace/name.</summary>
    private static List<T> Unique<T>(List<T> entries, string kind) where T : IManifestEntry
    {
        var first = new Dictionary<string, T>(StringComparer.Ordinal);
        var result = new List<T>(entries.Count);
        foreach (T e in entries)
        {
            if (first.TryGetValue(e.Key, out T? f))
            {
                e.Scope.Error(e.NameNode, "metadata.name", $"duplicate {kind} {e.Key}: already defined at {f.Scope.Where(f.NameNode)}");
                continue;
            }
            first.Add(e.Key, e);
            result.Add(e);
        }
        return result;
    }
}

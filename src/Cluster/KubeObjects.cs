using System.Globalization;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline.Wire;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace VSwitch.Cluster;

/// <summary>A kind the store keeps: its API version, the resource name in keys and on the command line, whether it
/// lives in a namespace, and its model type from the Kubernetes client library.</summary>
public sealed record KubeKind(string Kind, string ApiVersion, string Resource, bool Namespaced, Type Type, string[] Aliases);

/// <summary>The kinds the cluster store keeps, their keys (<c>&lt;prefix&gt;/registry/&lt;resource&gt;/&lt;namespace&gt;/&lt;name&gt;</c>,
/// without the namespace for cluster-scoped kinds) and their validation.</summary>
public static partial class KubeObjects
{
    public static readonly IReadOnlyList<KubeKind> Kinds =
    [
        new("Namespace", "v1", "namespaces", false, typeof(V1Namespace), ["ns", "namespace"]),
        new("Node", "v1", "nodes", false, typeof(V1Node), ["no", "node"]),
        new("Pod", "v1", "pods", true, typeof(V1Pod), ["po", "pod"]),
        new("Service", "v1", "services", true, typeof(V1Service), ["svc", "service"]),
        new("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", true, typeof(V1EndpointSlice), ["endpointslice"]),
        new("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", true, typeof(V1NetworkPolicy), ["netpol", "networkpolicy"]),
    ];

    /// <summary>A kind by resource, singular, short name or kind (any case), or null.</summary>
    public static KubeKind? Find(string name)
    {
        string n = name.ToLowerInvariant();
        return Kinds.FirstOrDefault(k => k.Resource == n || k.Kind.Equals(name, StringComparison.OrdinalIgnoreCase) || k.Aliases.Contains(n));
    }

    public static string KindList => string.Join(", ", Kinds.Select(k => k.Kind));

    public static string RegistryPrefix(string prefix) => $"{prefix}/registry/";

    public static string ResourcePrefix(string prefix, KubeKind k, string? ns) =>
        ns is null ? $"{prefix}/registry/{k.Resource}/" : $"{prefix}/registry/{k.Resource}/{ns}/";

    public static string Key(string prefix, KubeKind k, string? ns, string name) =>
        k.Namespaced ? $"{prefix}/registry/{k.Resource}/{ns}/{name}" : $"{prefix}/registry/{k.Resource}/{name}";

    /// <summary>The kind, namespace and name a registry key names, or null.</summary>
    public static (KubeKind Kind, string? Namespace, string Name)? ParseKey(string prefix, string key)
    {
        string root = RegistryPrefix(prefix);
        if (!key.StartsWith(root, StringComparison.Ordinal)) return null;
        string[] parts = key[root.Length..].Split('/');
        KubeKind? k = Kinds.FirstOrDefault(x => parts.Length > 0 && x.Resource == parts[0]);
        if (k is null) return null;
        if (k.Namespaced && parts.Length == 3 && parts[1].Length > 0 && parts[2].Length > 0) return (k, parts[1], parts[2]);
        if (!k.Namespaced && parts.Length == 2 && parts[1].Length > 0) return (k, null, parts[1]);
        return null;
    }

    public static KubeKind KindOf(IKubernetesObject<V1ObjectMeta> o) => Kinds.First(k => k.Type == o.GetType());

    public static string Describe(IKubernetesObject<V1ObjectMeta> o)
    {
        KubeKind k = KindOf(o);
        return k.Namespaced ? $"{k.Kind} {o.Metadata?.NamespaceProperty ?? "default"}/{o.Metadata?.Name}" : $"{k.Kind} {o.Metadata?.Name}";
    }

    /// <summary>
    /// Reads a manifest (YAML or JSON, several documents, <c>kind: List</c> wrappers) into the client library's models.
    /// Throws <see cref="ManifestException"/> with one line per problem (<c>source:line:col: reason</c>), naming unknown
    /// kinds and fields; nothing is returned unless everything reads.
    /// </summary>
    public static List<IKubernetesObject<V1ObjectMeta>> Read(string text, string sourceName)
    {
        List<IKubernetesObject<V1ObjectMeta>> result = Read(text, sourceName, out List<string> errors);
        if (errors.Count > 0) throw new ManifestException(errors);
        return result;
    }

    /// <summary>As <see cref="Read(string, string)"/>, returning the objects that did read and the problems of the rest.</summary>
    public static List<IKubernetesObject<V1ObjectMeta>> Read(string text, string sourceName, out List<string> errors)
    {
        errors = [];
        var stream = new YamlStream();
        try
        {
            // Nesting bounded as the manifest reader bounds it: a hostile manifest is an error, not a stack overflow.
            stream.Load(new DepthLimitedParser(new Parser(new StringReader(text.TrimStart('\uFEFF'))), ManifestReader.MaxDepth));
        }
        catch (YamlException e)
        {
            errors.Add($"{sourceName}:{e.Start.Line}:{e.Start.Column}: invalid YAML: {(e.InnerException ?? e).Message}");
            return [];
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            errors.Add($"{sourceName}: invalid YAML: {e.Message}");
            return [];
        }
        // Every object as a document of its own (List items too), each checked for a kind the store keeps.
        var docs = new List<(YamlMappingNode Node, string Where)>();
        foreach (YamlDocument d in stream.Documents)
        {
            if (d.RootNode is YamlScalarNode { Value: null or "" or "~" or "null" }) continue;
            if (d.RootNode is not YamlMappingNode m)
            {
                errors.Add($"{sourceName}:{d.RootNode.Start.Line}:{d.RootNode.Start.Column}: expected a Kubernetes object (a mapping with apiVersion and kind)");
                continue;
            }
            string? kind = Scalar(m, "kind");
            if (kind is not null && kind.EndsWith("List", StringComparison.Ordinal) && m.Children.TryGetValue(new YamlScalarNode("items"), out YamlNode? items))
            {
                if (items is YamlSequenceNode seq)
                    foreach (YamlNode item in seq)
                        if (item is YamlMappingNode im) docs.Add((im, $"{sourceName}:{im.Start.Line}:{im.Start.Column}"));
                        else errors.Add($"{sourceName}:{item.Start.Line}:{item.Start.Column}: expected a Kubernetes object in items");
                continue;
            }
            docs.Add((m, $"{sourceName}:{m.Start.Line}:{m.Start.Column}"));
        }
        var result = new List<IKubernetesObject<V1ObjectMeta>>();
        foreach ((YamlMappingNode node, string where) in docs)
        {
            string? kind = Scalar(node, "kind"), apiVersion = Scalar(node, "apiVersion");
            if (kind is null || apiVersion is null)
            {
                errors.Add($"{where}: {(kind is null ? "kind" : "apiVersion")}: required");
                continue;
            }
            KubeKind? k = Kinds.FirstOrDefault(x => x.Kind == kind);
            if (k is null)
            {
                errors.Add($"{where}: kind: {kind} ({apiVersion}) is not kept by the cluster store (it keeps {KindList})");
                continue;
            }
            if (k.ApiVersion != apiVersion)
            {
                errors.Add($"{where}: apiVersion: '{apiVersion}' is not supported for {kind} (use {k.ApiVersion})");
                continue;
            }
            var one = new YamlStream(new YamlDocument(node));
            using var w = new StringWriter(CultureInfo.InvariantCulture);
            one.Save(w, assignAnchors: false);
            try
            {
                object o = KubernetesYaml.LoadAllFromString(w.ToString(), null, strict: true).Single();
                result.Add((IKubernetesObject<V1ObjectMeta>)o);
            }
            catch (YamlException e)
            {
                // Positions are the object's own (line 1 is its first line in the file).
                long line = node.Start.Line + e.Start.Line - 1;
                string reason = UnknownField().Replace(e.InnerException is { } inner ? inner.Message : e.Message, "unknown field '$1' (in $2)");
                errors.Add($"{sourceName}:{line}:{e.Start.Column}: {kind} {Scalar(node, "metadata", "name")}: {reason}");
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The client library should only throw YamlException; anything else is still bad input, not a crash.
                errors.Add($"{where}: {kind} {Scalar(node, "metadata", "name")}: cannot be read: {e.Message}");
            }
        }
        return result;
    }

    [GeneratedRegex(@"Property '([^']*)' not found on type 'k8s\.Models\.V1([A-Za-z]*)'\.?")]
    private static partial Regex UnknownField();

    private static string? Scalar(YamlMappingNode m, params string[] path)
    {
        YamlNode n = m;
        foreach (string p in path)
        {
            if (n is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(p), out YamlNode? next)) return null;
            n = next;
        }
        return n is YamlScalarNode s && !string.IsNullOrEmpty(s.Value) ? s.Value : null;
    }

    /// <summary>Fills in what the API server would (the namespace <c>default</c>) and checks an object of a kind the
    /// cluster store keeps. Returns the problems, each <c>Kind ns/name: field: reason</c>. Services and EndpointSlices
    /// are checked by the manifest reader (their compiled form), the other kinds here.</summary>
    public static List<string> Validate(IKubernetesObject<V1ObjectMeta> o, ManifestOptions options)
    {
        var errors = new List<string>();
        KubeKind k = KindOf(o);
        o.Metadata ??= new V1ObjectMeta();
        V1ObjectMeta md = o.Metadata;
        if (k.Namespaced) md.NamespaceProperty ??= "default";
        string label = Describe(o);
        void Err(string field, string reason) => errors.Add($"{label}: {field}: {reason}");
        if (string.IsNullOrEmpty(md.Name)) Err("metadata.name", "required");
        else if (k.Kind == "Namespace" ? !KubeNames.IsDnsLabel(md.Name) : !KubeNames.IsDnsSubdomain(md.Name))
            Err("metadata.name", $"'{md.Name}' is not valid ({(k.Kind == "Namespace" ? KubeNames.DnsLabelRule : KubeNames.DnsSubdomainRule)})");
        if (k.Namespaced && !KubeNames.IsDnsLabel(md.NamespaceProperty!)) Err("metadata.namespace", $"'{md.NamespaceProperty}' is not valid ({KubeNames.DnsLabelRule})");
        if (!k.Namespaced && md.NamespaceProperty is { Length: > 0 }) Err("metadata.namespace", $"{k.Kind} is not namespaced");
        Labels(md.Labels, "metadata.labels", Err);
        if (errors.Count > 0) return errors;
        switch (o)
        {
            case V1Service or V1EndpointSlice:
                try
                {
                    // The same reader the manifest directory goes through: a Service in the store compiles exactly as one in
                    // a file does.
                    _ = ManifestReader.Read(KubernetesJson.Serialize(o), "store", options);
                }
                catch (ManifestException e)
                {
                    errors.AddRange(e.Errors.Select(x => StorePosition().Replace(x, "")));
                }
                break;
            case V1Pod p:
                ValidatePod(p, Err);
                break;
            case V1Node n:
                if (n.Spec?.PodCIDR is { } cidr && !IsNetwork(cidr)) Err("spec.podCIDR", $"'{cidr}' is not an IPv4 network");
                foreach ((string c, int i) in (n.Spec?.PodCIDRs ?? []).Select((c, i) => (c, i)))
                    if (!IsNetwork(c)) Err($"spec.podCIDRs[{i}]", $"'{c}' is not an IPv4 network");
                foreach ((V1NodeAddress a, int i) in (n.Status?.Addresses ?? []).Select((a, i) => (a, i)))
                    if (string.IsNullOrEmpty(a.Type) || string.IsNullOrEmpty(a.Address)) Err($"status.addresses[{i}]", "type and address are required");
                break;
            case V1NetworkPolicy np:
                ValidatePolicy(np, Err);
                break;
        }
        return errors;
    }

    [GeneratedRegex(@"^store:\d+:\d+: ")]
    private static partial Regex StorePosition();

    private static bool IsNetwork(string s) => Ipv4Prefix.TryParse(s, out Ipv4Prefix p, out Ipv4Address a) && a == p.Address;

    private static readonly string[] Protocols = ["TCP", "UDP", "SCTP"];

    private static void Labels(IDictionary<string, string>? labels, string at, Action<string, string> err)
    {
        foreach ((string key, string value) in labels ?? new Dictionary<string, string>())
        {
            string name = key.Contains('/', StringComparison.Ordinal) ? key[(key.IndexOf('/', StringComparison.Ordinal) + 1)..] : key;
            string? pfx = key.Contains('/', StringComparison.Ordinal) ? key[..key.IndexOf('/', StringComparison.Ordinal)] : null;
            if (!LabelValue().IsMatch(name) || name.Length is 0 or > 63 || (pfx is not null && !KubeNames.IsDnsSubdomain(pfx)))
                err($"{at}[{key}]", "not a valid label key (an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric)");
            if (value.Length > 63 || (value.Length > 0 && !LabelValue().IsMatch(value)))
                err($"{at}[{key}]", $"'{value}' is not a valid label value (at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric)");
        }
    }

    [GeneratedRegex(@"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")]
    private static partial Regex LabelValue();

    private static void Selector(V1LabelSelector? s, string at, Action<string, string> err)
    {
        if (s is null) return;
        Labels(s.MatchLabels, $"{at}.matchLabels", err);
        foreach ((V1LabelSelectorRequirement r, int i) in (s.MatchExpressions ?? []).Select((r, i) => (r, i)))
        {
            string p = $"{at}.matchExpressions[{i}]";
            if (string.IsNullOrEmpty(r.Key)) err($"{p}.key", "required");
            switch (r.OperatorProperty)
            {
                case "In" or "NotIn":
                    if (r.Values is null || r.Values.Count == 0) err($"{p}.values", $"must be non-empty for operator {r.OperatorProperty}");
                    break;
                case "Exists" or "DoesNotExist":
                    if (r.Values is { Count: > 0 }) err($"{p}.values", $"must be empty for operator {r.OperatorProperty}");
                    break;
                default:
                    err($"{p}.operator", $"'{r.OperatorProperty}' is not a valid operator (In, NotIn, Exists, DoesNotExist)");
                    break;
            }
        }
    }

    private static void ValidatePod(V1Pod p, Action<string, string> err)
    {
        if (p.Spec?.Containers is not { Count: > 0 } containers)
        {
            err("spec.containers", "required (at least one container)");
            return;
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach ((V1Container c, int i) in containers.Select((c, i) => (c, i)))
        {
            if (string.IsNullOrEmpty(c.Name) || !KubeNames.IsDnsLabel(c.Name)) err($"spec.containers[{i}].name", $"'{c.Name}' is not valid ({KubeNames.DnsLabelRule})");
            foreach ((V1ContainerPort cp, int j) in (c.Ports ?? []).Select((cp, j) => (cp, j)))
            {
                string at = $"spec.containers[{i}].ports[{j}]";
                if (cp.ContainerPort is < 1 or > 65535) err($"{at}.containerPort", $"{cp.ContainerPort} is out of range 1..65535");
                if (cp.Protocol is { } pr && !Protocols.Contains(pr)) err($"{at}.protocol", $"'{pr}' is not TCP, UDP or SCTP");
                if (cp.Name is { } n && (!KubeNames.IsPortName(n) || !names.Add(n))) err($"{at}.name", $"'{n}' is not a valid or unique port name ({KubeNames.PortNameRule})");
            }
        }
        if (p.Spec.NodeName is { } node && !KubeNames.IsDnsSubdomain(node)) err("spec.nodeName", $"'{node}' is not valid ({KubeNames.DnsSubdomainRule})");
        if (p.Status?.PodIP is { } ip && !Ipv4Address.TryParse(ip, out _)) err("status.podIP", $"'{ip}' is not an IPv4 address");
        foreach ((V1PodIP a, int i) in (p.Status?.PodIPs ?? []).Select((a, i) => (a, i)))
            if (!Ipv4Address.TryParse(a.Ip, out _)) err($"status.podIPs[{i}].ip", $"'{a.Ip}' is not an IPv4 address");
    }

    private static void ValidatePolicy(V1NetworkPolicy np, Action<string, string> err)
    {
        if (np.Spec is null)
        {
            err("spec", "required");
            return;
        }
        if (np.Spec.PodSelector is null) err("spec.podSelector", "required ({} selects every pod of the namespace)");
        Selector(np.Spec.PodSelector, "spec.podSelector", err);
        foreach ((string t, int i) in (np.Spec.PolicyTypes ?? []).Select((t, i) => (t, i)))
            if (t is not ("Ingress" or "Egress")) err($"spec.policyTypes[{i}]", $"'{t}' is not Ingress or Egress");
        foreach ((V1NetworkPolicyIngressRule r, int i) in (np.Spec.Ingress ?? []).Select((r, i) => (r, i)))
        {
            Peers(r.FromProperty, $"spec.ingress[{i}].from", err);
            Ports(r.Ports, $"spec.ingress[{i}].ports", err);
        }
        foreach ((V1NetworkPolicyEgressRule r, int i) in (np.Spec.Egress ?? []).Select((r, i) => (r, i)))
        {
            Peers(r.To, $"spec.egress[{i}].to", err);
            Ports(r.Ports, $"spec.egress[{i}].ports", err);
        }
    }

    private static void Peers(IList<V1NetworkPolicyPeer>? peers, string at, Action<string, string> err)
    {
        foreach ((V1NetworkPolicyPeer p, int i) in (peers ?? []).Select((p, i) => (p, i)))
        {
            string a = $"{at}[{i}]";
            bool selectors = p.PodSelector is not null || p.NamespaceSelector is not null;
            if (p.IpBlock is null && !selectors) err(a, "must specify a peer (podSelector, namespaceSelector or ipBlock)");
            if (p.IpBlock is not null && selectors) err(a, "ipBlock may not be combined with podSelector or namespaceSelector");
            Selector(p.PodSelector, $"{a}.podSelector", err);
            Selector(p.NamespaceSelector, $"{a}.namespaceSelector", err);
            if (p.IpBlock is { } b)
            {
                if (!Ipv4Prefix.TryParse(b.Cidr, out Ipv4Prefix cidr, out _))
                {
                    err($"{a}.ipBlock.cidr", $"'{b.Cidr}' is not an IPv4 CIDR");
                    continue;
                }
                foreach ((string x, int j) in (b.Except ?? []).Select((x, j) => (x, j)))
                    if (!Ipv4Prefix.TryParse(x, out Ipv4Prefix e, out _)) err($"{a}.ipBlock.except[{j}]", $"'{x}' is not an IPv4 CIDR");
                    else if (!cidr.Contains(e.Address) || e.Length <= cidr.Length) err($"{a}.ipBlock.except[{j}]", $"{x} must be strictly within {b.Cidr}");
            }
        }
    }

    private static void Ports(IList<V1NetworkPolicyPort>? ports, string at, Action<string, string> err)
    {
        foreach ((V1NetworkPolicyPort p, int i) in (ports ?? []).Select((p, i) => (p, i)))
        {
            string a = $"{at}[{i}]";
            if (p.Protocol is { } pr && !Protocols.Contains(pr)) err($"{a}.protocol", $"'{pr}' is not TCP, UDP or SCTP");
            int? number = null;
            if (p.Port?.Value is { } v)
            {
                if (int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
                {
                    if (n is < 1 or > 65535) err($"{a}.port", $"{n} is out of range 1..65535");
                    number = n;
                }
                else if (!KubeNames.IsPortName(v)) err($"{a}.port", $"'{v}' is neither a port number nor a port name ({KubeNames.PortNameRule})");
            }
            if (p.EndPort is { } end)
            {
                if (number is null) err($"{a}.endPort", "needs a numeric port");
                else if (end < number || end > 65535) err($"{a}.endPort", $"{end} must be between port {number} and 65535");
            }
        }
    }
}

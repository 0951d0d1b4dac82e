using YamlDotNet.RepresentationModel;

namespace VSwitch.Nat.Cluster;

/// <summary>What an object's <c>metadata</c> gave: namespace ("default" when unset), name (null when missing or
/// invalid), the node to point at for name conflicts, and the labels mapping.</summary>
internal readonly record struct ObjectMeta(string Namespace, string? Name, YamlNode NameNode, Fields? Labels);

/// <summary>An object that takes part in the duplicate-name check.</summary>
internal interface IManifestEntry
{
    ObjectScope Scope { get; }
    YamlNode NameNode { get; }
    string Key { get; }
}

/// <summary>Fields shared by Services and EndpointSlices.</summary>
internal static class ManifestCommon
{
    public const byte Tcp = 6;
    public const byte Udp = 17;

    public static string ProtocolName(byte protocol) => protocol == Udp ? "UDP" : "TCP";

    /// <summary>Reads <c>metadata</c> and sets the scope's label to <c>Kind namespace/name</c> first, so every later
    /// message names the object. Unknown metadata fields (uid, managedFields, annotations, ...) are ignored.</summary>
    public static ObjectMeta ReadMetadata(Fields obj, string kind, bool serviceName)
    {
        ObjectScope scope = obj.Scope;
        YamlNode? mdNode = obj.Get("metadata");
        var md = mdNode as YamlMappingNode;
        string ns = Peek(md, "namespace") is { Length: > 0 } n ? n : "default";
        string? peekName = Peek(md, "name");
        scope.Label = $"{kind} {Yaml.Shorten(ns)}/{(string.IsNullOrEmpty(peekName) ? "<no name>" : Yaml.Shorten(peekName))}";
        if (mdNode is null)
        {
            obj.Required("metadata");
            return new ObjectMeta(ns, null, obj.Node, null);
        }
        if (md is null)
        {
            scope.Error(mdNode, "metadata", $"expected a mapping, found {Yaml.Describe(mdNode)}");
            return new ObjectMeta(ns, null, obj.Node, null);
        }
        var m = new Fields(scope, md, "metadata");
        string? name = null;
        YamlNode nameNode = md;
        if (m.Get("name") is not { } nn) m.Required("name");
        else if (Yaml.String(scope, nn, "metadata.name") is { } s)
        {
            nameNode = nn;
            if (s.Length == 0) m.Required("name");
            else if (serviceName && !KubeNames.IsDns1035Label(s))
                scope.Error(nn, "metadata.name", $"'{Yaml.Shorten(s)}' is not a valid Service name ({KubeNames.Dns1035LabelRule})");
            else if (!serviceName && !KubeNames.IsDnsSubdomain(s))
                scope.Error(nn, "metadata.name", $"'{Yaml.Shorten(s)}' is not a valid name ({KubeNames.DnsSubdomainRule})");
            else name = s;
        }
        if (m.Get("namespace") is { } nsNode && Yaml.String(scope, nsNode, "metadata.namespace") is { Length: > 0 } nsText
            && !KubeNames.IsDnsLabel(nsText))
            scope.Error(nsNode, "metadata.namespace", $"'{Yaml.Shorten(nsText)}' is not a valid namespace ({KubeNames.DnsLabelRule})");
        return new ObjectMeta(ns, name, nameNode, m.Map("labels"));
    }

    private static string? Peek(YamlMappingNode? md, string key)
    {
        if (md is null) return null;
        foreach (KeyValuePair<YamlNode, YamlNode> kv in md.Children)
            if (kv.Key is YamlScalarNode { Value: { } k } && k == key)
                return kv.Value is YamlScalarNode s && !Yaml.IsNull(s) ? s.Value : null;
        return null;
    }

    /// <summary><c>protocol</c>: TCP (the default) or UDP; SCTP and anything else are reported.</summary>
    public static byte Protocol(Fields port)
    {
        YamlNode? node = port.Get("protocol");
        switch (port.NonEmptyString("protocol"))
        {
            case null or "TCP":
                return Tcp;
            case "UDP":
                return Udp;
            case "SCTP":
                port.Scope.Error(node!, port.At("protocol"), "SCTP is not supported (TCP and UDP only)");
                return Tcp;
            case var other:
                string hint = other.ToUpperInvariant() is "TCP" or "UDP" ? " (protocol names are upper case)" : "";
                port.Scope.Error(node!, port.At("protocol"), $"'{Yaml.Shorten(other)}' is not one of TCP, UDP{hint}");
                return Tcp;
        }
    }

    /// <summary>An enumerated string field; the empty string means unset, like the API server's defaulting.</summary>
    public static T? Choice<T>(Fields f, string key, string expected, params (string Text, T Value)[] choices) where T : struct
    {
        YamlNode? node = f.Get(key);
        if (f.NonEmptyString(key) is not { } s) return null;
        foreach ((string text, T value) in choices)
            if (text == s) return value;
        f.Scope.Error(node!, f.At(key), $"'{Yaml.Shorten(s)}' is not one of {expected}");
        return null;
    }
}

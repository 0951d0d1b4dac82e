using VSwitch.Pipeline.Wire;
using YamlDotNet.RepresentationModel;

namespace VSwitch.Nat.Cluster;

/// <summary>An EndpointSlice read from a manifest, before the checks across objects.</summary>
internal sealed record EndpointSliceEntry(ObjectScope Scope, YamlNode NameNode, EndpointSliceObject Slice) : IManifestEntry
{
    public string Key => $"{Slice.Namespace}/{Slice.Name}";
}

/// <summary>Reads and validates a <c>discovery.k8s.io/v1</c> EndpointSlice.</summary>
internal static class EndpointSliceManifest
{
    /// <summary>The label naming the Service a slice belongs to.</summary>
    public const string ServiceNameLabel = "kubernetes.io/service-name";

    private static readonly string[] TopFields = ["apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"];
    private static readonly string[] EndpointFields = ["addresses", "conditions", "hostname", "nodeName", "zone", "hints", "targetRef", "deprecatedTopology"];
    private static readonly string[] PortFields = ["name", "protocol", "port", "appProtocol"];

    /// <summary>The address types that are skipped (counted, not errors): this switch is IPv4 only.</summary>
    public static bool IsSkippedAddressType(string? addressType) => addressType is "IPv6" or "FQDN";

    /// <summary>Reads the slice; reports every problem to the object's scope. Null when it cannot be named.</summary>
    public static EndpointSliceEntry? Read(Fields obj)
    {
        ObjectScope scope = obj.Scope;
        ObjectMeta meta = ManifestCommon.ReadMetadata(obj, "EndpointSlice", serviceName: false);
        obj.RejectUnknown(TopFields);

        YamlNode? typeNode = obj.Get("addressType");
        string? addressType = obj.String("addressType");
        if (typeNode is null || addressType == "") obj.Required("addressType", "IPv4 (IPv6 and FQDN slices are skipped)");
        else if (addressType is not null and not "IPv4")
            scope.Error(typeNode, "addressType", $"'{Yaml.Shorten(addressType)}' is not one of IPv4, IPv6, FQDN");

        const string labelPath = $"metadata.labels[\"{ServiceNameLabel}\"]";
        YamlNode? serviceNode = meta.Labels?.Get(ServiceNameLabel);
        string? serviceName = serviceNode is null ? null : Yaml.String(scope, serviceNode, labelPath);
        if (serviceNode is null || serviceName == "")
            scope.Error(meta.Labels?.Node ?? obj.Get("metadata") ?? obj.Node, labelPath, "required: the label names the Service this slice belongs to");

        List<EndpointSpec> endpoints = ReadEndpoints(obj);
        List<EndpointPortSpec> ports = ReadPorts(obj);
        if (meta.Name is null) return null;
        return new EndpointSliceEntry(scope, meta.NameNode, new EndpointSliceObject
        {
            Namespace = meta.Namespace,
            Name = meta.Name,
            ServiceName = serviceName ?? "",
            Endpoints = endpoints,
            Ports = ports,
        });
    }

    /// <summary>endpoints[]: addresses and conditions with the API's nil rules (ready nil → true, serving nil →
    /// ready, terminating nil → false); hostname, zone, hints, targetRef and deprecatedTopology are ignored.</summary>
    private static List<EndpointSpec> ReadEndpoints(Fields obj)
    {
        ObjectScope scope = obj.Scope;
        IList<YamlNode> nodes = obj.List("endpoints");
        var endpoints = new List<EndpointSpec>(nodes.Count);
        for (int i = 0; i < nodes.Count; i++)
        {
            if (obj.Item("endpoints", i, nodes[i], "an endpoint") is not { } e) continue;
            e.RejectUnknown(EndpointFields);
            IList<YamlNode> addressNodes = e.List("addresses");
            var addresses = new List<Ipv4Address>(addressNodes.Count);
            for (int j = 0; j < addressNodes.Count; j++)
                if (Yaml.Address(scope, addressNodes[j], Yaml.Item(e.At("addresses"), j), out Ipv4Address a))
                    addresses.Add(a);
            if (addressNodes.Count == 0 && e.Get("addresses") is null or YamlSequenceNode)
                e.Required("addresses", "at least one address");
            bool? ready = null, serving = null, terminating = null;
            if (e.Map("conditions") is { } c)
            {
                c.RejectUnknown("ready", "serving", "terminating");
                ready = c.Boolean("ready");
                serving = c.Boolean("serving");
                terminating = c.Boolean("terminating");
            }
            bool isReady = ready ?? true;
            _ = e.String("hostname");
            _ = e.String("zone");
            endpoints.Add(new EndpointSpec
            {
                Addresses = addresses,
                Ready = isReady,
                Serving = serving ?? isReady,
                Terminating = terminating ?? false,
                NodeName = e.NonEmptyString("nodeName"),
            });
        }
        return endpoints;
    }

    private static List<EndpointPortSpec> ReadPorts(Fields obj)
    {
        ObjectScope scope = obj.Scope;
        IList<YamlNode> nodes = obj.List("ports");
        var ports = new List<EndpointPortSpec>(nodes.Count);
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < nodes.Count; i++)
        {
            if (obj.Item("ports", i, nodes[i], "a port") is not { } p) continue;
            p.RejectUnknown(PortFields);
            string? name = p.NonEmptyString("name");
            if (name is not null && !KubeNames.IsDnsLabel(name))
                scope.Error(p.Get("name")!, p.At("name"), $"'{Yaml.Shorten(name)}' is not a valid port name ({KubeNames.DnsLabelRule})");
            if (names.TryGetValue(name ?? "", out string? other))
                scope.Error(p.Get("name") ?? p.Node, p.At("name"), $"duplicate port name '{name}' (also {other})");
            else names.Add(name ?? "", p.Path);
            byte protocol = ManifestCommon.Protocol(p);
            int? port = p.Integer("port", 1, 65535, "is not a port (1-65535)");
            if (p.Get("port") is null) p.Required("port", "a slice port without a number (all ports) is not supported");
            _ = p.String("appProtocol");
            ports.Add(new EndpointPortSpec { Name = name, Protocol = protocol, Port = (ushort)(port ?? 0) });
        }
        return ports;
    }
}

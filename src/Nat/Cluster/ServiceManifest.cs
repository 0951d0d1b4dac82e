using VSwitch.Pipeline.Wire;
using YamlDotNet.RepresentationModel;

namespace VSwitch.Nat.Cluster;

/// <summary>Where a Service port came from, for messages and for node port allocation.</summary>
/// <param name="Valid">The port had no errors (allocation skips broken ports rather than adding noise).</param>
internal sealed record PortSource(YamlMappingNode Node, string Path, YamlNode? NameNode, YamlNode? PortNode, YamlNode? NodePortNode, bool Valid);

/// <summary>A Service read from a manifest, before the checks across objects and node port allocation.</summary>
internal sealed class ServiceEntry : IManifestEntry
{
    public required ObjectScope Scope { get; init; }
    public required YamlNode NameNode { get; init; }
    public required ServiceObject Service { get; init; }
    /// <summary>The ports, in order; the allocator fills in missing node ports.</summary>
    public required ServicePortSpec[] Ports { get; init; }
    public required PortSource[] Sources { get; init; }
    /// <summary>Ports without a nodePort get one: type NodePort, or LoadBalancer unless allocateLoadBalancerNodePorts is false.</summary>
    public bool AllocatesNodePorts { get; init; }
    /// <summary>spec.healthCheckNodePort (0 if unset): not served here, but kept out of the allocation.</summary>
    public int HealthCheckNodePort { get; init; }
    public string Key => Service.Key;

    public ServiceObject Build() => Service with { Ports = Ports };
}

/// <summary>Reads and validates a <c>v1/Service</c>.</summary>
internal static class ServiceManifest
{
    private static readonly string[] TopFields = ["apiVersion", "kind", "metadata", "spec", "status"];

    private static readonly string[] SpecFields =
    [
        "type", "clusterIP", "clusterIPs", "ports", "selector", "externalIPs", "externalName", "sessionAffinity",
        "sessionAffinityConfig", "externalTrafficPolicy", "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy",
        "publishNotReadyAddresses", "allocateLoadBalancerNodePorts", "loadBalancerClass", "loadBalancerIP",
        "loadBalancerSourceRanges", "healthCheckNodePort", "trafficDistribution",
    ];

    private static readonly string[] PortFields = ["name", "protocol", "port", "targetPort", "nodePort", "appProtocol"];

    private const string NotAPort = "is not a port (1-65535)";

    /// <summary>Reads the Service; reports every problem to the object's scope. Null when it cannot be named.</summary>
    public static ServiceEntry? Read(Fields obj, ManifestOptions options)
    {
        ObjectScope scope = obj.Scope;
        ObjectMeta meta = ManifestCommon.ReadMetadata(obj, "Service", serviceName: true);
        obj.RejectUnknown(TopFields);
        if (obj.Get("spec") is null)
        {
            obj.Required("spec");
            return null;
        }
        if (obj.Map("spec") is not { } spec) return null;
        spec.RejectUnknown(SpecFields);

        ServiceType type = ManifestCommon.Choice(spec, "type", "ClusterIP, NodePort, LoadBalancer, ExternalName",
            ("ClusterIP", ServiceType.ClusterIP), ("NodePort", ServiceType.NodePort),
            ("LoadBalancer", ServiceType.LoadBalancer), ("ExternalName", ServiceType.ExternalName)) ?? ServiceType.ClusterIP;

        (List<Ipv4Address> clusterIPs, bool headless, string? externalName) = ReadAddressing(spec, type);
        (ServicePortSpec[] ports, PortSource[] sources) = ReadPorts(spec, type, headless, options);

        var externalIPs = new List<Ipv4Address>();
        IList<YamlNode> ext = spec.List("externalIPs");
        for (int i = 0; i < ext.Count; i++)
            if (Yaml.Address(scope, ext[i], Yaml.Item("spec.externalIPs", i), out Ipv4Address a))
                externalIPs.Add(a);

        bool clientIP = ManifestCommon.Choice(spec, "sessionAffinity", "None, ClientIP", ("None", false), ("ClientIP", true)) ?? false;
        int timeout = 10800;
        if (spec.Map("sessionAffinityConfig") is { } sac)
        {
            sac.RejectUnknown("clientIP");
            if (sac.Map("clientIP") is { } cip)
            {
                cip.RejectUnknown("timeoutSeconds");
                timeout = cip.Integer("timeoutSeconds", 1, 86400, "is out of range 1..86400 (seconds)") ?? timeout;
            }
        }
        TrafficPolicy external = ManifestCommon.Choice(spec, "externalTrafficPolicy", "Cluster, Local",
            ("Cluster", TrafficPolicy.Cluster), ("Local", TrafficPolicy.Local), ("Global", TrafficPolicy.Cluster)) ?? TrafficPolicy.Cluster;
        TrafficPolicy internalPolicy = ManifestCommon.Choice(spec, "internalTrafficPolicy", "Cluster, Local",
            ("Cluster", TrafficPolicy.Cluster), ("Local", TrafficPolicy.Local)) ?? TrafficPolicy.Cluster;

        ReadIPFamilies(spec);
        bool publishNotReady = spec.Boolean("publishNotReadyAddresses") ?? false;
        bool allocateLbNodePorts = spec.Boolean("allocateLoadBalancerNodePorts") ?? true;
        _ = spec.Map("selector");
        _ = spec.String("loadBalancerClass");
        _ = spec.String("loadBalancerIP");
        _ = spec.String("trafficDistribution");
        if (spec.List("loadBalancerSourceRanges").Count > 0)
            scope.Error(spec.Get("loadBalancerSourceRanges")!, "spec.loadBalancerSourceRanges",
                "not supported: VSwitch does not filter clients by source range, and ignoring the field would open the Service to every source");
        int healthCheckNodePort = spec.Integer("healthCheckNodePort", 0, 65535, NotAPort) ?? 0;

        List<Ipv4Address> ingress = ReadIngress(obj);

        if (meta.Name is null) return null;
        var service = new ServiceObject
        {
            Namespace = meta.Namespace,
            Name = meta.Name,
            Type = type,
            ClusterIPs = clusterIPs,
            Headless = headless,
            Ports = ports,
            ExternalIPs = externalIPs,
            LoadBalancerIngress = type == ServiceType.LoadBalancer ? ingress : [],
            ClientIPAffinity = clientIP,
            AffinityTimeoutSeconds = timeout,
            ExternalTrafficPolicy = external,
            InternalTrafficPolicy = internalPolicy,
            ExternalName = externalName,
            PublishNotReadyAddresses = publishNotReady,
        };
        return new ServiceEntry
        {
            Scope = scope,
            NameNode = meta.NameNode,
            Service = service,
            Ports = ports,
            Sources = sources,
            AllocatesNodePorts = type == ServiceType.NodePort || (type == ServiceType.LoadBalancer && allocateLbNodePorts),
            HealthCheckNodePort = healthCheckNodePort,
        };
    }

    /// <summary>clusterIP / clusterIPs (which must agree on the first entry), headless, externalName.</summary>
    private static (List<Ipv4Address> ClusterIPs, bool Headless, string? ExternalName) ReadAddressing(Fields spec, ServiceType type)
    {
        ObjectScope scope = spec.Scope;
        var addresses = new List<Ipv4Address>(1);
        bool headless = false;
        YamlNode? ipNode = spec.Get("clusterIP");
        string? ip = spec.NonEmptyString("clusterIP");
        if (ip == "None") headless = true;
        else if (ip is not null && Yaml.Address(scope, ipNode!, "spec.clusterIP", out Ipv4Address a)) addresses.Add(a);

        IList<YamlNode> ips = spec.List("clusterIPs");
        for (int i = 0; i < ips.Count; i++)
        {
            string at = Yaml.Item("spec.clusterIPs", i);
            if (Yaml.String(scope, ips[i], at) is not { } s) continue;
            if (i == 0 && ip is not null)
            {
                if (s != ip)
                    scope.Error(ips[i], at, $"'{Yaml.Shorten(s)}' does not match spec.clusterIP '{Yaml.Shorten(ip)}' (the first clusterIPs entry must equal clusterIP)");
                continue;
            }
            if (s == "None")
            {
                if (ips.Count == 1)
                {
                    headless = true;
                    continue;
                }
                scope.Error(ips[i], at, "None (headless) must be the only entry");
                break;
            }
            if (!Yaml.Address(scope, ips[i], at, out Ipv4Address b)) continue;
            if (i == 0) addresses.Add(b);
            else scope.Error(ips[i], at, "a second cluster IP is not supported (IPv4 single-stack: one address per Service)");
        }

        bool anyIP = ip is not null || ips.Count > 0;
        if (type == ServiceType.ExternalName)
        {
            if (anyIP)
            {
                YamlNode at = ipNode ?? spec.Get("clusterIPs")!;
                scope.Error(at, ipNode is not null ? "spec.clusterIP" : "spec.clusterIPs",
                    "must not be set for an ExternalName Service (it is a DNS alias, not an address)");
            }
            YamlNode? nameNode = spec.Get("externalName");
            string? name = spec.String("externalName");
            if (nameNode is null || name == "") spec.Required("externalName", "an ExternalName Service is an alias for this DNS name");
            else if (name is not null && !KubeNames.IsDnsSubdomain(name.EndsWith('.') ? name[..^1] : name))
                scope.Error(nameNode, "spec.externalName", $"'{Yaml.Shorten(name)}' is not a DNS name ({KubeNames.DnsSubdomainRule})");
            return ([], false, name);
        }
        if (!anyIP)
            scope.Error(spec.Node, "spec.clusterIP",
                "required: VSwitch has no ClusterIP allocator, so a ClusterIP, NodePort or LoadBalancer Service must carry its address (or None for a headless Service)");
        else if (headless && type is ServiceType.NodePort or ServiceType.LoadBalancer)
            scope.Error(ipNode ?? ips[0], ipNode is not null ? "spec.clusterIP" : "spec.clusterIPs[0]", $"None (headless) is not allowed for type {type}");
        return (addresses, headless, null);
    }

    private static (ServicePortSpec[] Ports, PortSource[] Sources) ReadPorts(Fields spec, ServiceType type, bool headless, ManifestOptions options)
    {
        ObjectScope scope = spec.Scope;
        IList<YamlNode> nodes = spec.List("ports");
        var ports = new List<ServicePortSpec>(nodes.Count);
        var sources = new List<PortSource>(nodes.Count);
        for (int i = 0; i < nodes.Count; i++)
        {
            if (spec.Item("ports", i, nodes[i], "a port") is not { } p) continue;
            int errorsBefore = scope.ErrorCount;
            p.RejectUnknown(PortFields);
            string? name = p.NonEmptyString("name");
            if (name is not null && !KubeNames.IsDnsLabel(name))
                scope.Error(p.Get("name")!, p.At("name"), $"'{Yaml.Shorten(name)}' is not a valid port name ({KubeNames.DnsLabelRule})");
            byte protocol = ManifestCommon.Protocol(p);
            int? port = p.Integer("port", 1, 65535, NotAPort);
            if (p.Get("port") is null) p.Required("port");
            (ushort target, string? targetName) = ReadTargetPort(p, (ushort)(port ?? 0));
            int nodePort = ReadNodePort(p, type, options);
            _ = p.String("appProtocol");
            ports.Add(new ServicePortSpec
            {
                Name = name,
                Protocol = protocol,
                Port = (ushort)(port ?? 0),
                TargetPort = target,
                TargetPortName = targetName,
                NodePort = (ushort)nodePort,
            });
            sources.Add(new PortSource(p.Node, p.Path, p.Get("name"), p.Get("port"), p.Get("nodePort"), scope.ErrorCount == errorsBefore));
        }

        if (nodes.Count == 0 && type != ServiceType.ExternalName && !headless && spec.Get("ports") is null or YamlSequenceNode)
            scope.Error(spec.Node, "spec.ports", "required: at least one port (only headless and ExternalName Services may have none)");
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        var numbers = new Dictionary<(byte, ushort), int>();
        for (int i = 0; i < ports.Count; i++)
        {
            ServicePortSpec p = ports[i];
            PortSource src = sources[i];
            if (p.Name is null)
            {
                if (nodes.Count > 1) scope.Error(src.Node, src.Path + ".name", "required when a Service has more than one port");
            }
            else if (names.TryGetValue(p.Name, out int j))
                scope.Error(src.NameNode!, src.Path + ".name", $"duplicate port name '{p.Name}' (also {sources[j].Path})");
            else names.Add(p.Name, i);
            if (p.Port == 0) continue;
            if (numbers.TryGetValue((p.Protocol, p.Port), out int k))
                scope.Error(src.PortNode!, src.Path + ".port", $"duplicate port {ManifestCommon.ProtocolName(p.Protocol)} {p.Port} (also {sources[k].Path})");
            else numbers.Add((p.Protocol, p.Port), i);
        }
        return ([.. ports], [.. sources]);
    }

    /// <summary>targetPort: a number (0 or unset: the port itself, as the API server defaults it) or a port name.</summary>
    private static (ushort Port, string? Name) ReadTargetPort(Fields p, ushort port)
    {
        if (p.Get("targetPort") is not { } node) return (port, null);
        string at = p.At("targetPort");
        if (Yaml.TryIntegerText(node, out _))
        {
            int? t = Yaml.Integer(p.Scope, node, at, 0, 65535, NotAPort);
            return t is null or 0 ? (port, null) : ((ushort)t.Value, null);
        }
        if (node is not YamlScalarNode s)
        {
            p.Scope.Error(node, at, $"expected a port number or a port name, found {Yaml.Describe(node)}");
            return (port, null);
        }
        string name = s.Value ?? "";
        if (name.Length == 0) return (port, null);
        if (KubeNames.IsPortName(name)) return (0, name);
        string hint = Yaml.IsQuoted(s) && name.All(char.IsAsciiDigit)
            ? $"; a quoted number is a name: write {name} without quotes for a port number"
            : "";
        p.Scope.Error(node, at, $"'{Yaml.Shorten(name)}' is neither a port number (1-65535) nor a port name ({KubeNames.PortNameRule}){hint}");
        return (port, null);
    }

    /// <summary>nodePort: 0 or unset means none given; only NodePort and LoadBalancer Services, within the range.</summary>
    private static int ReadNodePort(Fields p, ServiceType type, ManifestOptions options)
    {
        int nodePort = p.Integer("nodePort", 0, 65535, NotAPort) ?? 0;
        if (nodePort == 0) return 0;
        YamlNode node = p.Get("nodePort")!;
        if (type is not (ServiceType.NodePort or ServiceType.LoadBalancer))
        {
            p.Scope.Error(node, p.At("nodePort"), $"only NodePort and LoadBalancer Services have node ports (this one is type {type})");
            return 0;
        }
        if (nodePort < options.NodePortMin || nodePort > options.NodePortMax)
        {
            p.Scope.Error(node, p.At("nodePort"), $"{nodePort} is outside the node port range {options.NodePortMin}-{options.NodePortMax}");
            return 0;
        }
        return nodePort;
    }

    /// <summary>ipFamilies / ipFamilyPolicy: IPv4 single-stack only.</summary>
    private static void ReadIPFamilies(Fields spec)
    {
        IList<YamlNode> families = spec.List("ipFamilies");
        for (int i = 0; i < families.Count; i++)
        {
            string at = Yaml.Item("spec.ipFamilies", i);
            switch (Yaml.String(spec.Scope, families[i], at))
            {
                case null or "IPv4":
                    break;
                case "IPv6":
                    spec.Scope.Error(families[i], at, "IPv6 is not supported (IPv4 single-stack only)");
                    break;
                case var other:
                    spec.Scope.Error(families[i], at, $"'{Yaml.Shorten(other)}' is not one of IPv4, IPv6");
                    break;
            }
        }
        YamlNode? policyNode = spec.Get("ipFamilyPolicy");
        switch (spec.NonEmptyString("ipFamilyPolicy"))
        {
            case null or "SingleStack" or "PreferDualStack":
                break;
            case "RequireDualStack":
                spec.Scope.Error(policyNode!, "spec.ipFamilyPolicy", "RequireDualStack is not supported (IPv4 single-stack only)");
                break;
            case var other:
                spec.Scope.Error(policyNode!, "spec.ipFamilyPolicy", $"'{Yaml.Shorten(other)}' is not one of SingleStack, PreferDualStack, RequireDualStack");
                break;
        }
    }

    /// <summary>status.loadBalancer.ingress[].ip; hostname-only entries (some cloud load balancers) are ignored.</summary>
    private static List<Ipv4Address> ReadIngress(Fields obj)
    {
        var result = new List<Ipv4Address>();
        if (obj.Map("status") is not { } status || status.Map("loadBalancer") is not { } lb) return result;
        IList<YamlNode> items = lb.List("ingress");
        for (int i = 0; i < items.Count; i++)
        {
            if (lb.Item("ingress", i, items[i], "an ingress entry") is not { } ing || ing.Get("ip") is not { } ipNode) continue;
            if (ing.NonEmptyString("ip") is not null && Yaml.Address(obj.Scope, ipNode, ing.At("ip"), out Ipv4Address a))
                result.Add(a);
        }
        return result;
    }
}

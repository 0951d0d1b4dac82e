using System.Globalization;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L2;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace VSwitch.Switch.Config;

/// <summary>The switch's YAML configuration (camelCase field names, Kubernetes style).</summary>
public sealed class SwitchConfig
{
    public NodeConfig Node { get; set; } = new();
    public ControlConfig Control { get; set; } = new();
    public BridgeConfig Bridge { get; set; } = new();
    public DatapathConfig Datapath { get; set; } = new();
    public List<PortConfig> Ports { get; set; } = [];
}

public sealed class NodeConfig
{
    public string? Name { get; set; }
}

public sealed class ControlConfig
{
    public const string DefaultSocket = "/run/vswitch/vswitch.sock";
    public string Socket { get; set; } = DefaultSocket;
}

public sealed class BridgeConfig
{
    public int MacAgingSeconds { get; set; } = 300;
    public int MacTableSize { get; set; } = 8192;
    public string MacTableFullPolicy { get; set; } = "flood";
    public List<StaticMacConfig> StaticMacs { get; set; } = [];
}

public sealed class StaticMacConfig
{
    public string? Mac { get; set; }
    public string? Port { get; set; }
    public int Vlan { get; set; }
}

public sealed class DatapathConfig
{
    public int BatchSize { get; set; } = 64;
    public int Slots { get; set; } = 4096;
    /// <summary>Microseconds to keep polling after traffic before sleeping in epoll (0 = always sleep).</summary>
    public int BusyPollMicros { get; set; }
}

public sealed class PortConfig
{
    public string? Name { get; set; }
    /// <summary>tap | af-packet</summary>
    public string Type { get; set; } = "tap";
    /// <summary>TAP device name (created if absent), or the existing interface an af-packet port attaches to.</summary>
    public string? Interface { get; set; }
    /// <summary>TAP only: network namespace to move the device into (a pod).</summary>
    public string? Namespace { get; set; }
    /// <summary>Create the namespace if it does not exist (and delete it at shutdown).</summary>
    public bool CreateNamespace { get; set; }
    /// <summary>Name of the interface inside the namespace.</summary>
    public string IfName { get; set; } = "eth0";
    /// <summary>Address with prefix length for the interface inside the namespace, e.g. 10.244.1.2/24.</summary>
    public string? Address { get; set; }
    public int Mtu { get; set; } = 1500;
    public string? Mac { get; set; }
}

/// <summary>A configuration problem: which file, which field, what is wrong.</summary>
public sealed class ConfigException : Exception
{
    public ConfigException(string message) : base(message) { }
    public ConfigException() { }
    public ConfigException(string message, Exception inner) : base(message, inner) { }
}

public static class ConfigLoader
{
    /// <summary>The embedded default: a demo node with three pod namespaces on TAP ports (created and removed by the switch).</summary>
    public const string EmbeddedDefault = """
        # VSwitch embedded default: one node, three pods on TAP ports.
        # The switch creates the pod namespaces and TAP devices, and removes them at shutdown.
        node:
          name: node-1
        control:
          socket: /run/vswitch/vswitch.sock
        bridge:
          macAgingSeconds: 300
          macTableSize: 8192
          macTableFullPolicy: flood
        datapath:
          batchSize: 64
        ports:
          - name: pod-a
            type: tap
            interface: vd-tap-a
            namespace: vd-pod-a
            createNamespace: true
            ifName: eth0
            address: 10.244.1.2/24
            mac: 02:00:0a:f4:01:02
          - name: pod-b
            type: tap
            interface: vd-tap-b
            namespace: vd-pod-b
            createNamespace: true
            ifName: eth0
            address: 10.244.1.3/24
            mac: 02:00:0a:f4:01:03
          - name: pod-c
            type: tap
            interface: vd-tap-c
            namespace: vd-pod-c
            createNamespace: true
            ifName: eth0
            address: 10.244.1.4/24
            mac: 02:00:0a:f4:01:04
        """;

    public static SwitchConfig LoadFile(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (FileNotFoundException)
        {
            throw new ConfigException($"{path}: config file not found");
        }
        catch (DirectoryNotFoundException)
        {
            throw new ConfigException($"{path}: config file not found");
        }
        catch (UnauthorizedAccessException)
        {
            throw new ConfigException($"{path}: permission denied reading the config file");
        }
        catch (IOException e)
        {
            throw new ConfigException($"{path}: cannot read the config file: {e.Message}");
        }
        return Parse(text, path);
    }

    public static SwitchConfig Parse(string yaml, string source)
    {
        IDeserializer d = new DeserializerBuilder()
            .WithNamingConvention(CamelCaseNamingConvention.Instance)
            .Build();
        SwitchConfig? cfg;
        try
        {
            cfg = d.Deserialize<SwitchConfig?>(yaml);
        }
        catch (YamlException e)
        {
            string msg = (e.InnerException?.Message ?? e.Message).Trim();
            msg = System.Text.RegularExpressions.Regex.Replace(msg, @"Property '(\w+)' not found on type '[\w.]+\.(\w+)Config'\.?", m =>
                $"unknown field '{m.Groups[1].Value}' in {CounterCase(m.Groups[2].Value)} (check spelling; fields are camelCase)");
            throw new ConfigException($"{source}:{e.Start.Line}:{e.Start.Column}: {msg}");
        }
        cfg ??= new SwitchConfig();
        List<string> errors = Validate(cfg);
        if (errors.Count > 0)
            throw new ConfigException(string.Join(Environment.NewLine, errors.Select(e => $"{source}: {e}")));
        return cfg;
    }

    private static string CounterCase(string typeStem) => typeStem switch
    {
        "Switch" => "the top level",
        "Port" => "a port (ports[])",
        "StaticMac" => "bridge.staticMacs[]",
        _ => char.ToLowerInvariant(typeStem[0]) + typeStem[1..],
    };

    /// <summary>Checks every field; returns "field.path: problem" lines.</summary>
    public static List<string> Validate(SwitchConfig c)
    {
        var errors = new List<string>();
        if (c.Node.Name is { } n && (n.Length == 0 || n.Length > 63)) errors.Add("node.name: must be 1-63 characters");
        if (string.IsNullOrWhiteSpace(c.Control.Socket) || !c.Control.Socket.StartsWith('/')) errors.Add("control.socket: must be an absolute path");
        else if (System.Text.Encoding.UTF8.GetByteCount(c.Control.Socket) > 107) errors.Add("control.socket: path longer than 107 bytes (a Unix socket limit)");
        if (c.Bridge.MacAgingSeconds is < 1 or > 1_000_000) errors.Add($"bridge.macAgingSeconds: {c.Bridge.MacAgingSeconds} is out of range 1..1000000");
        if (c.Bridge.MacTableSize is < 1 or > 1 << 22) errors.Add($"bridge.macTableSize: {c.Bridge.MacTableSize} is out of range 1..4194304");
        if (!TryParsePolicy(c.Bridge.MacTableFullPolicy, out _)) errors.Add($"bridge.macTableFullPolicy: '{c.Bridge.MacTableFullPolicy}' is not one of flood, drop");
        if (c.Datapath.BatchSize is < 1 or > 256) errors.Add($"datapath.batchSize: {c.Datapath.BatchSize} is out of range 1..256");
        if (c.Datapath.BusyPollMicros is < 0 or > 1_000_000) errors.Add($"datapath.busyPollMicros: {c.Datapath.BusyPollMicros} is out of range 0..1000000");
        if (c.Datapath.Slots is < 256 or > 1 << 20) errors.Add($"datapath.slots: {c.Datapath.Slots} is out of range 256..1048576");
        if (c.Ports.Count == 0) errors.Add("ports: at least one port is required");
        var names = new HashSet<string>(StringComparer.Ordinal);
        var ifaces = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < c.Ports.Count; i++)
        {
            PortConfig p = c.Ports[i];
            string at = $"ports[{i}]";
            if (p is null)
            {
                errors.Add($"{at}: empty port entry");
                continue;
            }
            if (string.IsNullOrWhiteSpace(p.Name)) errors.Add($"{at}.name: required");
            else if (!names.Add(p.Name)) errors.Add($"{at}.name: duplicate port name '{p.Name}'");
            if (p.Type is not ("tap" or "af-packet")) errors.Add($"{at}.type: '{p.Type}' is not one of tap, af-packet");
            if (string.IsNullOrWhiteSpace(p.Interface)) errors.Add($"{at}.interface: required");
            else
            {
                if (!IsValidIfName(p.Interface)) errors.Add($"{at}.interface: '{p.Interface}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
                if (!ifaces.Add(p.Interface)) errors.Add($"{at}.interface: '{p.Interface}' is used by two ports");
            }
            if (p.Type == "af-packet" && (p.Namespace is not null || p.Address is not null))
                errors.Add($"{at}: namespace/address apply to tap ports only (an af-packet port attaches to an existing interface)");
            if (p.Namespace is not null && (p.Namespace.Length is 0 or > 64 || p.Namespace.Contains('/')))
                errors.Add($"{at}.namespace: '{p.Namespace}' is not a valid namespace name");
            if (p.Namespace is null && p.CreateNamespace) errors.Add($"{at}.createNamespace: set without namespace");
            if (!IsValidIfName(p.IfName)) errors.Add($"{at}.ifName: '{p.IfName}' is not a valid interface name");
            if (p.Address is not null && !Ipv4Prefix.TryParse(p.Address, out _, out _))
                errors.Add($"{at}.address: '{p.Address}' is not an IPv4 address with prefix length (like 10.244.1.2/24)");
            if (p.Mtu is < 68 or > 9000) errors.Add($"{at}.mtu: {p.Mtu} is out of range 68..9000");
            if (p.Mac is not null && (!MacAddress.TryParse(p.Mac, out MacAddress mac) || mac.IsMulticast || mac.IsZero))
                errors.Add($"{at}.mac: '{p.Mac}' is not a unicast MAC address (like 02:00:00:00:00:01)");
        }
        for (int i = 0; i < c.Bridge.StaticMacs.Count; i++)
        {
            StaticMacConfig s = c.Bridge.StaticMacs[i];
            string at = $"bridge.staticMacs[{i}]";
            if (!MacAddress.TryParse(s.Mac, out MacAddress mac) || mac.IsMulticast || mac.IsZero) errors.Add($"{at}.mac: '{s.Mac}' is not a unicast MAC address");
            if (s.Port is null || !names.Contains(s.Port)) errors.Add($"{at}.port: '{s.Port}' is not the name of a configured port");
            if (s.Vlan is < 0 or > 4094) errors.Add($"{at}.vlan: {s.Vlan} is out of range 0..4094");
        }
        return errors;
    }

    public static bool TryParsePolicy(string s, out MacTableFullPolicy policy)
    {
        switch (s)
        {
            case "flood":
                policy = MacTableFullPolicy.Flood;
                return true;
            case "drop":
                policy = MacTableFullPolicy.Drop;
                return true;
            default:
                policy = default;
                return false;
        }
    }

    private static bool IsValidIfName(string? s) =>
        s is { Length: >= 1 and <= 15 } && !s.Any(ch => ch is '/' or ':' || char.IsWhiteSpace(ch)) && s is not ("." or "..");

    public static string Describe(SwitchConfig c) => string.Create(CultureInfo.InvariantCulture,
        $"node {c.Node.Name ?? "(unnamed)"}, {c.Ports.Count} port(s), control socket {c.Control.Socket}");
}

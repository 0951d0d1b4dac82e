using Microsoft.Extensions.Logging;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.Config;
using VSwitch.Tap;

namespace VSwitch.Switch;

/// <summary>
/// Brings a configured node up (namespaces, ports, datapath, control socket) and down again, removing everything it
/// created in reverse order — also when start-up fails half way.
/// </summary>
public sealed partial class SwitchHost : IDisposable
{
    private readonly ILogger _log;
    private readonly Stack<(string What, Action Undo)> _undo = new();

    public SwitchHost(SwitchConfig config, ILogger log)
    {
        Config = config;
        _log = log;
        _ = ConfigLoader.TryParsePolicy(config.Bridge.MacTableFullPolicy, out L2.MacTableFullPolicy policy);
        Datapath = new Datapath(new DatapathOptions
        {
            BatchSize = config.Datapath.BatchSize,
            Slots = config.Datapath.Slots,
            BusyPoll = TimeSpan.FromMicroseconds(config.Datapath.BusyPollMicros),
            MacTableSize = config.Bridge.MacTableSize,
            MacAging = TimeSpan.FromSeconds(config.Bridge.MacAgingSeconds),
            MacTableFullPolicy = policy,
        });
        NodeName = config.Node.Name ?? Environment.MachineName;
    }

    public SwitchConfig Config { get; }
    public Datapath Datapath { get; }
    public string NodeName { get; }
    public Control.ControlServer? Control { get; private set; }

    /// <summary>Creates namespaces and ports, starts the control socket and the worker. Throws <see cref="PortException"/>
    /// (environment) or <see cref="ConfigException"/>; on failure everything created so far is already removed.</summary>
    public void Start()
    {
        try
        {
            StartCore();
        }
        catch
        {
            Teardown();
            throw;
        }
    }

    private void StartCore()
    {
        for (int i = 0; i < Config.Ports.Count; i++)
        {
            PortConfig pc = Config.Ports[i];
            IPacketPort port = OpenPort(pc, $"ports[{i}]");
            Datapath.AddPort(port);
        }
        for (int i = 0; i < Config.Bridge.StaticMacs.Count; i++)
        {
            StaticMacConfig s = Config.Bridge.StaticMacs[i];
            IPacketPort p = Datapath.Ports.Find(s.Port!)!;
            if (!Datapath.Macs.AddStatic(MacAddress.Parse(s.Mac!), (ushort)s.Vlan, p.Id))
                throw new ConfigException($"bridge.staticMacs[{i}]: MAC table full (bridge.macTableSize {Config.Bridge.MacTableSize})");
        }
        Control = new Control.ControlServer(Config.Control.Socket, new Control.ControlHandler(this), _log);
        Control.Start();
        _undo.Push(("control socket", () => Control.Dispose()));
        Datapath.Start();
        _undo.Push(("worker", Datapath.Dispose));
    }

    private IPacketPort OpenPort(PortConfig pc, string at)
    {
        string ifName = pc.Interface!;
        if (pc.Type == "af-packet")
        {
            if (!NetNs.InterfaceExists(ifName))
                throw new PortException($"{at}.interface: interface '{ifName}' does not exist in the switch's network namespace");
            NetNs.BringUp(ifName);
            AfPacketPort ap = AfPacketPort.Open(pc.Name!, ifName);
            _undo.Push(($"af-packet {ifName}", ap.Dispose));
            LogPortOpened(pc.Name!, "af-packet", ifName, "");
            return ap;
        }
        if (pc.Namespace is { } ns && !NetNs.Exists(ns))
        {
            if (!pc.CreateNamespace)
                throw new PortException($"{at}.namespace: network namespace '{ns}' does not exist (create it with 'ip netns add {ns}' or set createNamespace: true)");
            NetNs.Create(ns);
            _undo.Push(($"namespace {ns}", () => NetNs.Delete(ns)));
            LogNamespaceCreated(ns);
        }
        TapPort tap;
        try
        {
            tap = TapPort.Open(pc.Name!, ifName);
        }
        catch (PortException e)
        {
            throw new PortException($"{at}: {e.Message}", e.Errno);
        }
        _undo.Push(($"tap {ifName}", tap.Dispose));
        if (pc.Namespace is { } target)
        {
            NetNs.PlugIntoNamespace(ifName, target, pc.IfName, pc.Address, pc.Mtu, pc.Mac);
            LogPortOpened(pc.Name!, "tap", ifName, $" -> {target}/{pc.IfName} {pc.Address}");
        }
        else
        {
            if (pc.Mac is not null) NetNs.Ip("link", "set", "dev", ifName, "address", pc.Mac);
            if (pc.Address is not null) NetNs.Ip("addr", "add", pc.Address, "dev", ifName);
            NetNs.BringUp(ifName, pc.Mtu);
            LogPortOpened(pc.Name!, "tap", ifName, pc.Address is null ? "" : $" {pc.Address}");
        }
        return tap;
    }

    private void Teardown()
    {
        while (_undo.TryPop(out (string What, Action Undo) u))
        {
            try
            {
                u.Undo();
            }
            catch (Exception e) when (e is PortException or IOException or InvalidOperationException or ObjectDisposedException)
            {
                LogCleanupFailed(u.What, e.Message);
            }
        }
    }

    public void Dispose() => Teardown();

    [LoggerMessage(Level = LogLevel.Information, Message = "port {Name}: {Kind} {Interface}{Detail}")]
    private partial void LogPortOpened(string name, string kind, string @interface, string detail);

    [LoggerMessage(Level = LogLevel.Information, Message = "created network namespace {Namespace}")]
    private partial void LogNamespaceCreated(string @namespace);

    [LoggerMessage(Level = LogLevel.Warning, Message = "cleanup of {What} failed: {Error}")]
    private partial void LogCleanupFailed(string what, string error);
}

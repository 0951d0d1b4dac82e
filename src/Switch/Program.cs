using System.CommandLine;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using VSwitch.Switch;
using VSwitch.Switch.Config;
using VSwitch.Tap;

/// <summary>The <c>vswitch</c> command: the daemon (<c>run</c>) and the control CLI.</summary>
internal static partial class Cli
{
    public const int ExitOk = 0;
    public const int ExitFailure = 1;
    public const int ExitConfig = 2;
    public const int ExitEnvironment = 3;
    public const int ExitUnreachable = 4;

    public static int Main(string[] args)
    {
        Option<string> socket = new("--socket", "-s")
        {
            Description = "Control socket of the running switch",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VSWITCH_SOCKET") ?? ControlConfig.DefaultSocket,
            Recursive = true,
        };
        RootCommand root = new("VSwitch: a userspace virtual switch for a Kubernetes-style node. " +
            "'vswitch run' starts the data plane; the other commands talk to a running switch over its control socket.");
        root.Options.Add(socket);

        Option<string?> config = new("--config", "-c") { Description = "YAML config file; without it the embedded default (a three-pod demo node) is used" };
        Command run = new("run", "Run the switch (the node's data plane) until SIGINT/SIGTERM") { config };
        run.SetAction(pr => Run(pr.GetValue(config)));
        root.Subcommands.Add(run);

        Command cfg = new("config", "Show or check configuration");
        Command cfgDefault = new("default", "Print the embedded default config");
        cfgDefault.SetAction(_ =>
        {
            Console.Out.WriteLine(ConfigLoader.EmbeddedDefault);
            return ExitOk;
        });
        Argument<string> file = new("file") { Description = "Config file to check" };
        Command cfgCheck = new("check", "Validate a config file and exit (0 = valid, 2 = invalid)") { file };
        cfgCheck.SetAction(pr => Check(pr.GetValue(file)!));
        cfg.Subcommands.Add(cfgDefault);
        cfg.Subcommands.Add(cfgCheck);
        root.Subcommands.Add(cfg);

        AddQuery(root, socket, "status", "Node, uptime, table sizes");
        AddQuery(root, socket, "ports", "Ports with rx/tx/drop/error counters");
        AddQuery(root, socket, "mac", "The MAC table: MAC, VLAN, port, age");
        AddQuery(root, socket, "routes", "The IPv4 route table: prefix, kind (local, connected, peer, host, unreachable), next hop");
        AddQuery(root, socket, "neighbors", "The ARP neighbor table: address, MAC, port, state, age");
        AddQuery(root, socket, "peers", "Overlay peers (address, pod CIDR, VTEP MAC, traffic) and the overlay forwarding table (inner MAC -> peer)");
        Argument<int> ctMax = new("max") { Description = "Show at most MAX connections", DefaultValueFactory = _ => 1000 };
        Command conntrack = new("conntrack", "Tracked connections like conntrack -L: protocol, timeout, state, original and reply tuples, packets, NAT, the rule that chose the endpoint") { ctMax };
        conntrack.SetAction(pr => Query(pr.GetValue(socket)!, $"conntrack {pr.GetValue(ctMax)}"));
        root.Subcommands.Add(conntrack);
        AddQuery(root, socket, "services", "Services as compiled: frontends (ClusterIP, node port, external and load-balancer IPs), endpoints, traffic policies, affinity");
        AddQuery(root, socket, "uplink", "The uplink's nftables steering rules (node ports, masquerade replies, external IPs) with packet counters");
        AddQuery(root, socket, "reload", "Re-read the Service manifests now and report what was applied (or the errors; the running Services stay)");
        AddQuery(root, socket, "counters", "Per-stage packet counts, stage events and drops by (stage, reason)");
        AddQuery(root, socket, "metrics", "All counters in Prometheus text format");

        Command trace = new("trace", "Per-stage packet traces");
        Argument<int> count = new("count") { Description = "Number of packets", DefaultValueFactory = _ => 10 };
        Command traceAdd = new("add", "Trace the next COUNT packets received") { count };
        traceAdd.SetAction(pr => Query(pr.GetValue(socket)!, $"trace add {pr.GetValue(count)}"));
        Argument<int> last = new("count") { Description = "Show the last COUNT traced packets", DefaultValueFactory = _ => 10 };
        Command traceShow = new("show", "Show traced packets stage by stage") { last };
        traceShow.SetAction(pr => Query(pr.GetValue(socket)!, $"trace show {pr.GetValue(last)}"));
        Command traceClear = new("clear", "Forget traced packets and stop tracing");
        traceClear.SetAction(pr => Query(pr.GetValue(socket)!, "trace clear"));
        trace.Subcommands.Add(traceAdd);
        trace.Subcommands.Add(traceShow);
        trace.Subcommands.Add(traceClear);
        root.Subcommands.Add(trace);

        return root.Parse(args).Invoke();
    }

    private static void AddQuery(RootCommand root, Option<string> socket, string name, string description)
    {
        Command c = new(name, description);
        c.SetAction(pr => Query(pr.GetValue(socket)!, name));
        root.Subcommands.Add(c);
    }

    private static int Check(string path)
    {
        try
        {
            SwitchConfig c = ConfigLoader.LoadFile(path);
            Console.Out.WriteLine($"{path}: valid ({ConfigLoader.Describe(c)})");
            return ExitOk;
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"vswitch: config error: {e.Message}");
            return ExitConfig;
        }
    }

    /// <summary>Sends one request to the control socket and prints the answer.</summary>
    private static int Query(string socketPath, string request)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Connect(new UnixDomainSocketEndPoint(socketPath));
        }
        catch (SocketException e)
        {
            string why = e.SocketErrorCode switch
            {
                SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported => "no such socket",
                SocketError.ConnectionRefused => "nothing is listening (stale socket?)",
                SocketError.AccessDenied => "permission denied (the control socket is root-only)",
                _ => e.Message,
            };
            if (!File.Exists(socketPath)) why = "no such socket";
            Console.Error.WriteLine($"vswitch: cannot reach the switch at {socketPath}: {why}. Is 'vswitch run' running? (--socket or VSWITCH_SOCKET select another)");
            return ExitUnreachable;
        }
        s.ReceiveTimeout = 10_000;
        s.Send(Encoding.UTF8.GetBytes(request + "\n"));
        using var stream = new NetworkStream(s);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string all;
        try
        {
            all = reader.ReadToEnd();
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"vswitch: no answer from {socketPath}: {e.Message}");
            return ExitFailure;
        }
        int nl = all.IndexOf('\n', StringComparison.Ordinal);
        string status = nl < 0 ? all : all[..nl];
        string body = nl < 0 ? "" : all[(nl + 1)..];
        if (status == "ok")
        {
            Console.Out.Write(body);
            return ExitOk;
        }
        Console.Error.WriteLine($"vswitch: {(status.StartsWith("error: ", StringComparison.Ordinal) ? status[7..] : status)}");
        return ExitFailure;
    }

    private static int Run(string? configPath)
    {
        using ILoggerFactory factory = LoggerFactory.Create(b => b
            .SetMinimumLevel(Environment.GetEnvironmentVariable("VSWITCH_LOG") == "debug" ? LogLevel.Debug : LogLevel.Information)
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.IncludeScopes = false;
            })
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
        ILogger log = factory.CreateLogger("vswitch");
        SwitchConfig config;
        try
        {
            config = configPath is null ? ConfigLoader.Parse(ConfigLoader.EmbeddedDefault, "(embedded default)") : ConfigLoader.LoadFile(configPath);
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"vswitch: config error: {e.Message}");
            return ExitConfig;
        }
        if (!Privileges.IsRoot)
            LogNotRoot(log);
        using var stopped = new ManualResetEventSlim();
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stopped.Set();
        });
        using PosixSignalRegistration intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            c.Cancel = true;
            stopped.Set();
        });
        SwitchHost host;
        try
        {
            host = new SwitchHost(config, log);
            host.Start();
        }
        catch (PortException e)
        {
            Console.Error.WriteLine($"vswitch: cannot start: {e.Message}");
            return ExitEnvironment;
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"vswitch: config error: {e.Message}");
            return ExitConfig;
        }
        LogReady(log, host.NodeName, config.Ports.Count, config.Control.Socket);
        stopped.Wait();
        LogStopping(log);
        host.Dispose();
        LogStopped(log);
        return ExitOk;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "not running as root: creating TAP devices and AF_PACKET sockets needs CAP_NET_ADMIN and CAP_NET_RAW")]
    private static partial void LogNotRoot(ILogger log);

    [LoggerMessage(Level = LogLevel.Information, Message = "ready: node {Node}, {Ports} port(s), control socket {Socket}")]
    private static partial void LogReady(ILogger log, string node, int ports, string socket);

    [LoggerMessage(Level = LogLevel.Information, Message = "stopping: removing ports and namespaces this switch created")]
    private static partial void LogStopping(ILogger log);

    [LoggerMessage(Level = LogLevel.Information, Message = "stopped")]
    private static partial void LogStopped(ILogger log);
}

using System.Diagnostics;

namespace VSwitch.Tap;

/// <summary>
/// Control-plane helpers for network namespaces and links, through iproute2's <c>ip</c> (off the fast path;
/// the same steps a CNI plugin performs). Every failure becomes a <see cref="PortException"/> with ip's own message.
/// </summary>
public static class NetNs
{
    public static string IpCommand { get; set; } = "ip";

    public static bool Exists(string ns) => File.Exists(PathOf(ns));

    /// <summary>The file of a network namespace: a name under /run/netns, or a path as it is.</summary>
    public static string PathOf(string ns) => ns.Contains('/') ? ns : Path.Combine("/run/netns", ns);

    /// <summary>Runs <paramref name="f"/> on a thread of its own that has entered network namespace <paramref name="ns"/>
    /// (setns moves the calling thread only); what it creates there (a TAP descriptor, a socket) stays bound to that
    /// namespace. The thread returns to the switch's namespace and ends.</summary>
    public static T Inside<T>(string ns, Func<T> f)
    {
        T result = default!;
        Exception? error = null;
        var t = new Thread(() =>
        {
            int self = Native.Open("/proc/thread-self/ns/net", Native.O_RDONLY | Native.O_CLOEXEC);
            int target = Native.Open(PathOf(ns), Native.O_RDONLY | Native.O_CLOEXEC);
            try
            {
                if (self < 0 || target < 0)
                {
                    error = new PortException($"network namespace '{ns}' cannot be opened (is it gone?)", System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
                    return;
                }
                if (Native.Setns(target, Native.CLONE_NEWNET) < 0)
                {
                    error = PortException.FromErrno($"cannot enter network namespace '{ns}'", System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
                    return;
                }
                try
                {
                    result = f();
                }
                catch (Exception e)
                {
                    error = e;
                }
                finally
                {
                    _ = Native.Setns(self, Native.CLONE_NEWNET);
                }
            }
            finally
            {
                if (self >= 0) _ = Native.Close(self);
                if (target >= 0) _ = Native.Close(target);
            }
        }) { IsBackground = true, Name = "vswitch-netns" };
        t.Start();
        t.Join();
        if (error is not null) throw error is PortException ? error : new PortException(error.Message, error);
        return result;
    }

    public static void Create(string ns)
    {
        Ip("netns", "add", ns);
        Ip("-n", ns, "link", "set", "lo", "up");
    }

    public static void Delete(string ns) => TryIp("netns", "delete", ns);

    public static bool InterfaceExists(string ifName) => File.Exists($"/sys/class/net/{ifName}/ifindex");

    /// <summary>Moves <paramref name="ifName"/> into <paramref name="ns"/>, renames it, sets MTU/MAC/address and brings it up.</summary>
    public static void PlugIntoNamespace(string ifName, string ns, string nameInNs, string? addressCidr, int mtu, string? mac, string? gateway = null)
    {
        Ip("link", "set", "dev", ifName, "netns", ns);
        if (nameInNs != ifName) Ip("-n", ns, "link", "set", "dev", ifName, "name", nameInNs);
        if (mtu > 0) Ip("-n", ns, "link", "set", "dev", nameInNs, "mtu", mtu.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (mac is not null) Ip("-n", ns, "link", "set", "dev", nameInNs, "address", mac);
        if (addressCidr is not null) Ip("-n", ns, "addr", "add", addressCidr, "dev", nameInNs);
        Ip("-n", ns, "link", "set", "dev", nameInNs, "up");
        Ip("-n", ns, "link", "set", "lo", "up");
        if (gateway is not null) Ip("-n", ns, "route", "replace", "default", "via", gateway, "dev", nameInNs);
    }

    /// <summary>Sets receive packet steering on every receive queue of <paramref name="ifName"/> (in the switch's network
    /// namespace): the kernel takes in the frames written to it on the CPUs of <paramref name="mask"/> (a sysfs CPU
    /// bitmap), through their backlog, instead of in the writer's system call. Survives a move to another namespace.</summary>
    public static void SetRps(string ifName, string mask)
    {
        string dir = $"/sys/class/net/{ifName}/queues";
        string[] queues = Directory.Exists(dir) ? Directory.GetDirectories(dir, "rx-*") : [];
        if (queues.Length == 0) throw new PortException($"{ifName}: no receive queues under {dir} (the switch's /sys must show its own network namespace)");
        foreach (string q in queues)
        {
            try
            {
                File.WriteAllText(Path.Combine(q, "rps_cpus"), mask);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new PortException($"{ifName}: cannot set receive packet steering ({Path.Combine(q, "rps_cpus")} = {mask}): {e.Message} (the kernel needs CONFIG_RPS)");
            }
        }
    }

    /// <summary>Brings a root-namespace interface up (and sets MTU when given).</summary>
    public static void BringUp(string ifName, int mtu = 0)
    {
        if (mtu > 0) Ip("link", "set", "dev", ifName, "mtu", mtu.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Ip("link", "set", "dev", ifName, "up");
    }

    public static void Ip(params string[] args)
    {
        (int code, string err) = Run(args);
        if (code != 0) throw new PortException($"'{IpCommand} {string.Join(' ', args)}' failed: {err.Trim()}");
    }

    public static bool TryIp(params string[] args) => Run(args).Code == 0;

    /// <summary>Writes /proc/sys/<paramref name="key"/> (slash-separated); false when it cannot (e.g. IPv6 disabled).</summary>
    public static bool TrySysctl(string key, string value)
    {
        try
        {
            File.WriteAllText("/proc/sys/" + key, value);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The interface's MAC address as sysfs shows it (in the switch's namespace), or null.</summary>
    public static string? MacOf(string ifName)
    {
        try
        {
            string mac = File.ReadAllText($"/sys/class/net/{ifName}/address").Trim();
            return mac.Length == 17 ? mac : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The interface's MTU (0 when it does not exist).</summary>
    public static int Mtu(string ifName) =>
        int.TryParse(File.Exists($"/sys/class/net/{ifName}/mtu") ? File.ReadAllText($"/sys/class/net/{ifName}/mtu").Trim() : "", out int mtu) ? mtu : 0;

    /// <summary>True when <paramref name="address"/> (dotted quad) is assigned to <paramref name="ifName"/>.</summary>
    public static bool HasAddress(string ifName, string address)
    {
        (int code, string _, string output) = RunWithOutput(["-o", "-4", "addr", "show", "dev", ifName]);
        return code == 0 && output.Contains($" inet {address}/", StringComparison.Ordinal);
    }

    private static (int Code, string Error) Run(string[] args)
    {
        (int code, string err, _) = RunWithOutput(args);
        return (code, err);
    }

    private static (int Code, string Error, string Output) RunWithOutput(string[] args)
    {
        var psi = new ProcessStartInfo(IpCommand) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        try
        {
            using Process p = Process.Start(psi) ?? throw new PortException($"cannot start '{IpCommand}'");
            Task<string> output = p.StandardOutput.ReadToEndAsync();
            string err = p.StandardError.ReadToEnd();
            if (!p.WaitForExit(10_000))
            {
                p.Kill();
                return (-1, "timed out after 10 s", "");
            }
            return (p.ExitCode, err, output.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new PortException($"cannot run '{IpCommand}' (install iproute2): {e.Message}");
        }
    }
}

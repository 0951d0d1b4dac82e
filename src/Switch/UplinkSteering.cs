using System.Globalization;
using System.Text;
using VSwitch.Nat;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Tap;

namespace VSwitch.Switch;

/// <summary>
/// The nftables rules that take the switch's share of the node address's traffic away from the node's kernel and into
/// the uplink TAP (an ingress hook on the underlay interface, before the kernel's IP stack), and keep the node's own
/// conntrack away from what the switch sends. Steered: TCP/UDP to the node ports in use, to the masquerade ports, ICMP
/// errors quoting a masqueraded connection, echo replies to a masqueraded ping, and TCP/UDP to the external and
/// load-balancer IPs of the Services. Everything else (ARP, the overlay's UDP, ssh, fragments) stays the kernel's.
/// The tables are created with <c>flags owner</c> through a libnftables context the switch holds: they vanish when the
/// switch exits, however it exits, so the node never black-holes traffic into a TAP nobody reads.
/// </summary>
public sealed class UplinkSteering : IDisposable
{
    /// <summary>The netdev table (the ingress hook) and the ip table (notrack on output).</summary>
    public const string Table = "vswitch";
    public const string NotrackTable = "vswitch_notrack";

    private readonly Nftables _nft;

    private UplinkSteering(Nftables nft, string underlay, string tap, Ipv4Address node)
    {
        _nft = nft;
        Underlay = underlay;
        Tap = tap;
        NodeAddress = node;
    }

    public string Underlay { get; }
    public string Tap { get; }
    public Ipv4Address NodeAddress { get; }
    /// <summary>Steered node ports and external frontends after the last update.</summary>
    public int NodePorts { get; private set; }
    public int ExternalFrontends { get; private set; }
    public string? LastError { get; private set; }

    /// <summary>Loads the rules. The TAP must exist (nft resolves its name to an index once) and be up.</summary>
    public static UplinkSteering Load(string underlay, string tap, Ipv4Address node, ushort masqMin, ushort masqMax)
    {
        Nftables nft = Nftables.Open();
        try
        {
            // A table of that name left by a process that did not own it (e.g. an operator's nft -f) is replaced;
            // one owned by a running process cannot be, and the create below reports it.
            foreach (string t in new[] { $"netdev {Table}", $"ip {NotrackTable}" })
            {
                try
                {
                    nft.Run($"delete table {t}\n");
                }
                catch (PortException)
                {
                    // absent: nothing to replace
                }
            }
            try
            {
                nft.Run(Ruleset(underlay, tap, node, masqMin, masqMax));
            }
            catch (PortException e)
            {
                throw new PortException($"uplink: cannot load the steering rules on {underlay}: {e.Message}"
                    + (e.Message.Contains("File exists", StringComparison.Ordinal) ? " (another switch in this network namespace owns them)" : ""));
            }
            return new UplinkSteering(nft, underlay, tap, node);
        }
        catch
        {
            nft.Dispose();
            throw;
        }
    }

    /// <summary>The tables, as loaded (with no node ports or external frontends yet).</summary>
    public static string Ruleset(string underlay, string tap, Ipv4Address node, ushort masqMin, ushort masqMax)
    {
        string fwd = $"counter fwd to \"{tap}\"";
        string masq = $"{masqMin}-{masqMax}";
        return $$"""
            table netdev {{Table}} {
                flags owner;
                set nodeports_tcp { type inet_service; }
                set nodeports_udp { type inet_service; }
                set external { type ipv4_addr . inet_proto . inet_service; }
                chain uplink_in {
                    type filter hook ingress device "{{underlay}}" priority -500; policy accept;
                    ip frag-off & 0x3fff != 0 return
                    ip daddr {{node}} jump node
                    meta l4proto { tcp, udp } ip daddr . meta l4proto . th dport @external {{fwd}}
                }
                chain node {
                    tcp dport @nodeports_tcp {{fwd}}
                    udp dport @nodeports_udp {{fwd}}
                    meta l4proto { tcp, udp } th dport {{masq}} {{fwd}}
                    icmp type { destination-unreachable, time-exceeded } @th,64,8 0x45 @th,136,8 { 6, 17 } @th,224,16 {{masq}} {{fwd}}
                    icmp type echo-reply icmp id {{masq}} {{fwd}}
                }
            }
            table ip {{NotrackTable}} {
                flags owner;
                chain out {
                    type filter hook output priority raw; policy accept;
                    meta mark {{"0x" + UplinkPort.Mark.ToString("x", CultureInfo.InvariantCulture)}} notrack
                }
            }

            """;
    }

    /// <summary>Replaces the steered node ports and external frontends with those of <paramref name="services"/>, in
    /// one transaction. A failure is kept in <see cref="LastError"/> and thrown.</summary>
    public void Update(IReadOnlyList<Frontend> services)
    {
        string commands = SetCommands(services, out int nodePorts, out int external);
        // Called only by the manifest loader, one load at a time; the context serializes its own calls.
        try
        {
            _nft.Run(commands);
            NodePorts = nodePorts;
            ExternalFrontends = external;
            LastError = null;
        }
        catch (PortException e)
        {
            LastError = e.Message;
            throw;
        }
    }

    /// <summary>The nft commands that make the steered sets those of <paramref name="services"/>.</summary>
    public static string SetCommands(IReadOnlyList<Frontend> services, out int nodePorts, out int external)
    {
        var tcp = new SortedSet<ushort>();
        var udp = new SortedSet<ushort>();
        var ext = new SortedSet<string>(StringComparer.Ordinal);
        foreach (Frontend f in services)
        {
            string? proto = f.Protocol switch { IpProtocol.Tcp => "tcp", IpProtocol.Udp => "udp", _ => null };
            if (proto is null) continue;
            switch (f.Kind)
            {
                case FrontendKind.NodePort:
                    (f.Protocol == IpProtocol.Tcp ? tcp : udp).Add(f.Port);
                    break;
                case FrontendKind.ExternalIP or FrontendKind.LoadBalancer:
                    ext.Add(string.Create(CultureInfo.InvariantCulture, $"{new Ipv4Address(f.Address)} . {proto} . {f.Port}"));
                    break;
            }
        }
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"flush set netdev {Table} nodeports_tcp\nflush set netdev {Table} nodeports_udp\nflush set netdev {Table} external\n");
        if (tcp.Count > 0) sb.Append(CultureInfo.InvariantCulture, $"add element netdev {Table} nodeports_tcp {{ {string.Join(", ", tcp)} }}\n");
        if (udp.Count > 0) sb.Append(CultureInfo.InvariantCulture, $"add element netdev {Table} nodeports_udp {{ {string.Join(", ", udp)} }}\n");
        if (ext.Count > 0) sb.Append(CultureInfo.InvariantCulture, $"add element netdev {Table} external {{ {string.Join(", ", ext)} }}\n");
        nodePorts = tcp.Count + udp.Count;
        external = ext.Count;
        return sb.ToString();
    }

    /// <summary>The tables as the kernel has them, with their counters (for the CLI).</summary>
    public string List() =>
        // One command per call: libnftables 1.0.6 fails to find the first table when two list commands share a buffer.
        _nft.Run($"list table netdev {Table}\n") + _nft.Run($"list table ip {NotrackTable}\n");

    /// <summary>Deletes the tables (the kernel would on exit anyway) and closes the context.</summary>
    public void Dispose()
    {
        try
        {
            _nft.Run($"delete table netdev {Table}\ndelete table ip {NotrackTable}\n");
        }
        catch (PortException)
        {
            // already gone
        }
        catch (ObjectDisposedException)
        {
            return;
        }
        _nft.Dispose();
    }
}

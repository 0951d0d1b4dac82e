using VSwitch.Nat;
using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.L3;

/// <summary>The node's routing settings: its pod subnet and gateway, the cluster CIDR, the router's MAC.</summary>
public sealed record RouterOptions
{
    public required Ipv4Prefix PodCidr { get; init; }
    public Ipv4Prefix ClusterCidr { get; init; } = new(new Ipv4Address(0x0AF4_0000), 16);
    /// <summary>MAC the router answers ARP with on every port and uses as its VTEP MAC in the overlay.</summary>
    public required MacAddress RouterMac { get; init; }
    /// <summary>Learned neighbors are forgotten after this long without an ARP refresh.</summary>
    public TimeSpan NeighborTimeout { get; init; } = TimeSpan.FromSeconds(300);
    /// <summary>An unanswered ARP request turns into ICMP host unreachable after this long.</summary>
    public TimeSpan NeighborResolveTimeout { get; init; } = TimeSpan.FromSeconds(3);
    /// <summary>ICMP errors the router may send per second (token bucket, like the kernel's icmp_msgs_per_sec).</summary>
    public int IcmpErrorsPerSecond { get; init; } = 1000;

    /// <summary>The gateway: the first host address of the pod subnet (x.x.x.1 for a /24).</summary>
    public Ipv4Address Gateway => new(PodCidr.Address.Value + 1);

    /// <summary>The default router MAC for a pod subnet: 0e:00 followed by the four bytes of its gateway address.</summary>
    public static MacAddress DefaultRouterMac(Ipv4Prefix podCidr) => new(0x0E00_0000_0000UL | (podCidr.Address.Value + 1));
}

/// <summary>
/// The node's router: routes, the neighbor (ARP) cache, which ports are the host and the tunnel, and the ICMP error
/// budget. Worker-owned; the route table is immutable and replaced whole.
/// </summary>
public sealed class Router
{
    public Router(RouterOptions options, long ticksPerSecond)
    {
        Options = options;
        TicksPerSecond = ticksPerSecond;
        IcmpBudget = new IcmpRateLimiter(options.IcmpErrorsPerSecond, ticksPerSecond);
    }

    public RouterOptions Options { get; }
    public long TicksPerSecond { get; }
    public ulong RouterMac => Options.RouterMac.Value;
    public uint Gateway => Options.Gateway.Value;
    public NeighborTable Neighbors { get; } = new();
    public RouteTable Routes { get; private set; } = RouteTable.Empty;
    public ushort HostPort { get; set; } = PortIds.None;
    /// <summary>The uplink port (None without one): the default route, and the way back to external clients.</summary>
    public ushort UplinkPort { get; set; } = PortIds.None;
    /// <summary>Largest IPv4 packet the uplink's interface takes.</summary>
    public int UplinkMtu { get; set; } = 1500;
    public MacAddress HostMac { get; set; }
    /// <summary>The overlay's tunnel port (None without an overlay).</summary>
    public ushort TunnelPort => Overlay?.TunnelPort ?? PortIds.None;
    public Overlay? Overlay { get; set; }
    /// <summary>Connection tracking and NAT, when enabled: ICMP errors about translated packets quote them untranslated.</summary>
    public NatEngine? Nat { get; set; }
    /// <summary>Told of every neighbor learned or refreshed from ARP (other workers learn it too).</summary>
    public Action<uint, ulong, ushort>? NeighborLearned { get; set; }

    /// <summary>Builds the route table from the node's settings, its host port and the overlay's peers.</summary>
    public void RebuildRoutes()
    {
        var routes = new List<Route>
        {
            new(new Ipv4Prefix(Options.Gateway, 32), RouteKind.Local, Via: HostPort != PortIds.None ? "host" : "router (answers echo; no host port)"),
            new(Options.PodCidr, RouteKind.Connected, Via: "pods"),
        };
        if (Options.ClusterCidr != Options.PodCidr) routes.Add(new Route(Options.ClusterCidr, RouteKind.Unreachable));
        if (Overlay is { } ov)
        {
            foreach (OverlayPeer p in ov.Peers)
                if (p.PodCidr is { } cidr) routes.Add(new Route(cidr, RouteKind.Peer, p.Index, $"{p.Name} ({p.Address})"));
        }
        var any = new Ipv4Prefix(Ipv4Address.Any, 0);
        if (UplinkPort != PortIds.None)
        {
            // The node's own address stays the node's (its kernel answers); everything else outside leaves by the uplink.
            if (Nat?.Options.NodeAddress is { } node && HostPort != PortIds.None) routes.Add(new Route(new Ipv4Prefix(node, 32), RouteKind.Local, Via: "host"));
            routes.Add(new Route(any, RouteKind.Uplink, Via: "uplink"));
        }
        else if (!routes.Any(r => r.Prefix == any))
        {
            routes.Add(new Route(any, HostPort != PortIds.None ? RouteKind.Host : RouteKind.Unreachable, Via: HostPort != PortIds.None ? "host" : ""));
        }
        Routes = new RouteTable(routes);
    }

    /// <summary>The ICMP error budget (shared with the conntrack stage's rejects).</summary>
    public IcmpRateLimiter IcmpBudget { get; }

    /// <summary>Takes one token from the ICMP error budget; false when exhausted (the error is not sent).</summary>
    public bool TryTakeIcmpToken(long now) => IcmpBudget.TryTake(now);
}

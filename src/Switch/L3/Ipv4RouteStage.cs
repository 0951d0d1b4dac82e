using System.Buffers.Binary;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using VSwitch.Encap;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.L3;

/// <summary>
/// Routes IPv4 packets sent to the router's MAC: longest-prefix match, TTL decrement with an incremental checksum
/// update (RFC 1624), next-hop MAC rewrite, and the ICMP errors a router owes (time exceeded, net/host unreachable,
/// fragmentation needed when a DF packet does not fit the tunnel). Unresolved pod neighbors are asked by ARP.
/// </summary>
public sealed class Ipv4RouteStage : Stage
{
    public enum Counter
    {
        [Description("Packets routed to a local pod")] ToPod,
        [Description("Packets routed to an overlay peer")] ToPeer,
        [Description("Packets handed to the node's own stack (host port)")] ToHost,
        [Description("Packets sent outside the cluster through the uplink")] ToUplink,
        [Description("ICMP time exceeded sent")] IcmpTimeExceeded,
        [Description("ICMP destination net unreachable sent")] IcmpNetUnreachable,
        [Description("ICMP destination host unreachable sent")] IcmpHostUnreachable,
        [Description("ICMP fragmentation needed sent (path MTU discovery)")] IcmpFragNeeded,
        [Description("ICMP errors not sent: rate limit")] IcmpRateLimited,
        [Description("ARP requests sent to resolve pod neighbors")] ArpRequests,
        [Description("ICMP echo requests to the gateway answered by the router (no host port)")] EchoAnswered,
    }

    public enum Reason
    {
        [Description("Not a valid IPv4 header")] Malformed,
        [Description("IPv4 header checksum wrong")] BadChecksum,
        [Description("802.1Q-tagged frames are not routed")] Tagged,
        [Description("TTL expired (no ICMP error allowed or rate-limited)")] TtlExceeded,
        [Description("No route (no ICMP error allowed or rate-limited)")] NoRoute,
        [Description("Pod neighbor did not answer ARP (no ICMP error allowed or rate-limited)")] HostUnreachable,
        [Description("Packet larger than the tunnel or uplink MTU with DF set (no ICMP error allowed or rate-limited)")] FragNeeded,
        [Description("Waiting for the pod neighbor's ARP reply")] NeighborIncomplete,
        [Description("Packet larger than the tunnel or uplink MTU without DF (software fragmentation not done)")] TooBigNoDf,
        [Description("Packet to the node's own address but no host port")] NoHostPort,
        [Description("Packet to the pod subnet's network or broadcast address")] DirectedBroadcast,
    }

    private enum Code
    {
        RoutedLocal = RouteKind.Local,
        RoutedConnected = RouteKind.Connected,
        RoutedPeer = RouteKind.Peer,
        RoutedHost = RouteKind.Host,
        RoutedUplink = RouteKind.Uplink,
        TimeExceeded = 10,
        NetUnreachable,
        HostUnreachable,
        FragNeeded,
        ArpRequest = 20,
        EchoReply,
        Dropped = 30,
    }

    private readonly Router _router;

    /// <param name="toHostNext">Packets routed to the host port (the node's own stack) take this edge: the local-in arc.</param>
    public Ipv4RouteStage(Router router, string next, PortTable? ports = null, string? toHostNext = null)
        : base("ip4-route", toHostNext is null || ports is null ? [next] : [next, toHostNext], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _router = router;
        _ports = toHostNext is null ? null : ports;
    }

    private readonly PortTable? _ports;

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
        if (_ports is not null) SplitHostTraffic(batch, next, ctx.Slab.Meta, _ports, byInPort: false, 1, 2);
    }

    private unsafe void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        Router router = _router;
        RouteTable routes = router.Routes;
        RouterOptions o = router.Options;
        ulong routerMac = router.RouterMac;
        long now = ctx.Now;
        long tps = ctx.TicksPerSecond;
        long resolveTimeout = (long)(o.NeighborResolveTimeout.TotalSeconds * tps);
        Overlay? overlay = router.Overlay;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            next[i] = 1;
            if ((m.Flags & PacketFlags.Tagged) != 0)
            {
                next[i] = Drop(ref m, (int)Reason.Tagged);
                continue;
            }
            byte* f = slab.SlotPointer(s) + m.Offset;
            var l3 = new Span<byte>(f + m.L3Offset, m.Length - m.L3Offset);
            if (!Ipv4View.TryCreate(l3, out Ipv4View ip))
            {
                next[i] = Drop(ref m, (int)Reason.Malformed);
                continue;
            }
            if (!Checksum.IsValid(ip.Header))
            {
                next[i] = Drop(ref m, (int)Reason.BadChecksum);
                continue;
            }
            uint dst = ip.Destination.Value;
            int ri = routes.Lookup(dst);
            if (ri < 0)
            {
                IcmpOrDrop<T>(ctx, s, ref m, next, i, IcmpType.DestinationUnreachable, IcmpUnreachableCode.Network, 0, Reason.NoRoute, Counter.IcmpNetUnreachable, Code.NetUnreachable, dst);
                continue;
            }
            Route route = routes[ri];
            ushort outPort;
            ulong nextMac;
            ulong nextHop = 0;
            bool decrement = true;
            switch (route.Kind)
            {
                case RouteKind.Local:
                    if (router.HostPort == PortIds.None)
                    {
                        if (dst == router.Gateway && TryEchoReply(ref m, f, ip, routerMac))
                        {
                            Counters.Add((int)Counter.EchoAnswered);
                            Trace<T>(ctx, ref m, Code.EchoReply, route, m.OutPort, dst, m.DstMac);
                        }
                        else
                        {
                            next[i] = Drop(ref m, (int)Reason.NoHostPort);
                        }
                        continue;
                    }
                    outPort = router.HostPort;
                    nextMac = router.HostMac.Value;
                    decrement = false;
                    Counters.Add((int)Counter.ToHost);
                    break;
                case RouteKind.Host:
                    outPort = router.HostPort;
                    nextMac = router.HostMac.Value;
                    Counters.Add((int)Counter.ToHost);
                    break;
                case RouteKind.Connected:
                {
                    uint host = dst & ~route.Prefix.Mask;
                    if (host == 0 || host == ~route.Prefix.Mask)
                    {
                        next[i] = Drop(ref m, (int)Reason.DirectedBroadcast);
                        continue;
                    }
                    ref Neighbor n = ref router.Neighbors.Find(dst);
                    if (Unsafe.IsNullRef(ref n) || n.State == NeighborState.Incomplete)
                    {
                        Unresolved<T>(ctx, s, ref m, next, i, dst, route, now, tps, resolveTimeout);
                        continue;
                    }
                    outPort = n.Port;
                    nextMac = n.Mac;
                    // The node and its pods share the pod subnet (as with cni0): node → pod is not a routing hop.
                    decrement = m.InPort != router.HostPort;
                    Counters.Add((int)Counter.ToPod);
                    break;
                }
                case RouteKind.Peer:
                {
                    if (!Fits<T>(ctx, s, ref m, next, i, ip, overlay!.Options.OverlayMtu, dst)) continue;
                    OverlayPeer peer = overlay.Peer(route.Peer);
                    outPort = router.TunnelPort;
                    nextMac = peer.VtepMac.Value;
                    nextHop = peer.Address.Value;
                    m.PeerAddr = peer.Address.Value;
                    Counters.Add((int)Counter.ToPeer);
                    break;
                }
                case RouteKind.Uplink:
                {
                    if (!Fits<T>(ctx, s, ref m, next, i, ip, router.UplinkMtu, dst)) continue;
                    // The uplink sends the IPv4 packet by destination address; the kernel picks the next hop.
                    outPort = router.UplinkPort;
                    nextMac = 0;
                    Counters.Add((int)Counter.ToUplink);
                    break;
                }
                default:
                    IcmpOrDrop<T>(ctx, s, ref m, next, i, IcmpType.DestinationUnreachable, IcmpUnreachableCode.Network, 0, Reason.NoRoute, Counter.IcmpNetUnreachable, Code.NetUnreachable, dst);
                    continue;
            }
            if (decrement)
            {
                byte ttl = ip.Ttl;
                if (ttl <= 1)
                {
                    IcmpOrDrop<T>(ctx, s, ref m, next, i, IcmpType.TimeExceeded, IcmpTimeExceededCode.TtlExceeded, 0, Reason.TtlExceeded, Counter.IcmpTimeExceeded, Code.TimeExceeded, dst);
                    continue;
                }
                // TTL shares a 16-bit word with the protocol: update the checksum for that word (RFC 1624 eqn. 3).
                ushort oldWord = (ushort)(ttl << 8 | ip.Protocol);
                ip.Ttl = (byte)(ttl - 1);
                ip.HeaderChecksum = Checksum.Update(ip.HeaderChecksum, oldWord, (ushort)(oldWord - 0x100));
            }
            WriteMacs(f, nextMac, routerMac);
            m.DstMac = nextMac;
            m.SrcMac = routerMac;
            m.OutPort = outPort;
            if (route.Kind != RouteKind.Peer) m.PeerAddr = 0;
            Trace<T>(ctx, ref m, (Code)route.Kind, route, outPort, dst, nextHop != 0 ? nextHop : nextMac);
        }
    }

    /// <summary>True when the packet fits <paramref name="mtu"/>; otherwise it becomes ICMP fragmentation needed (DF set)
    /// or is dropped (no software fragmentation).</summary>
    private bool Fits<T>(WorkerContext ctx, int s, ref PacketMeta m, Span<byte> next, int i, Ipv4View ip, int mtu, uint dst)
        where T : struct, ITraceMode
    {
        int size = ip.TotalLength;
        // A super-frame leaves as segments: what must fit is one segment (IPv4 and TCP headers plus the MSS).
        if (m.Gso != GsoType.None && TcpView.TryCreate(ip.Payload, out TcpView tcp)) size = Math.Min(size, ip.HeaderLength + tcp.HeaderLength + m.GsoSize);
        if (size <= mtu) return true;
        if (ip.DontFragment)
            IcmpOrDrop<T>(ctx, s, ref m, next, i, IcmpType.DestinationUnreachable, IcmpUnreachableCode.FragmentationNeeded, (uint)mtu, Reason.FragNeeded, Counter.IcmpFragNeeded, Code.FragNeeded, dst);
        else
            next[i] = Drop(ref m, (int)Reason.TooBigNoDf);
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void WriteMacs(byte* f, ulong dst, ulong src)
    {
        var h = new Span<byte>(f, 12);
        new MacAddress(dst).Write(h);
        new MacAddress(src).Write(h[6..]);
    }

    /// <summary>A pod address with no resolved MAC: ask by ARP (at most once a second per address; the packet becomes the
    /// request), and once the answer is overdue reply with ICMP host unreachable.</summary>
    private unsafe void Unresolved<T>(WorkerContext ctx, int s, ref PacketMeta m, Span<byte> next, int i, uint dst, Route route, long now, long tps, long resolveTimeout)
        where T : struct, ITraceMode
    {
        Router router = _router;
        ref Neighbor n = ref router.Neighbors.Pending(dst, now);
        if (Unsafe.IsNullRef(ref n))
        {
            next[i] = Drop(ref m, (int)Reason.NeighborIncomplete);
            return;
        }
        if (now - n.LastAsked >= tps)
        {
            n.LastAsked = now;
            WriteArpRequest(ctx.Slab, s, ref m, dst);
            Counters.Add((int)Counter.ArpRequests);
            Trace<T>(ctx, ref m, Code.ArpRequest, route, PortIds.Flood, dst, 0);
            return;
        }
        if (now - n.FirstAsked >= resolveTimeout)
        {
            IcmpOrDrop<T>(ctx, s, ref m, next, i, IcmpType.DestinationUnreachable, IcmpUnreachableCode.Host, 0, Reason.HostUnreachable, Counter.IcmpHostUnreachable, Code.HostUnreachable, dst);
            return;
        }
        next[i] = Drop(ref m, (int)Reason.NeighborIncomplete);
    }

    private unsafe void WriteArpRequest(PacketSlab slab, int s, ref PacketMeta m, uint target)
    {
        const int len = 60;
        var f = new Span<byte>(slab.SlotPointer(s) + m.Offset, len);
        f.Clear();
        MacAddress.Broadcast.Write(f);
        new MacAddress(_router.RouterMac).Write(f[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(f[12..], EtherType.Arp);
        new ArpRepr(ArpOperation.Request, new MacAddress(_router.RouterMac), _router.Options.Gateway, MacAddress.Zero, new Ipv4Address(target))
            .Emit(f[EthernetView.HeaderSize..]);
        m.Length = len;
        m.EtherType = EtherType.Arp;
        m.DstMac = MacAddress.Broadcast.Value;
        m.SrcMac = _router.RouterMac;
        m.Flags |= PacketFlags.GroupDestination | PacketFlags.LocalOnly;
        m.InPort = PortIds.None;
        m.OutPort = PortIds.Flood;
        m.PeerAddr = 0;
    }

    /// <summary>Rewrites the packet into an ICMP error back to its sender when RFC 1812 and the rate limit allow; else drops.</summary>
    private void IcmpOrDrop<T>(WorkerContext ctx, int s, ref PacketMeta m, Span<byte> next, int i, byte type, byte code, uint rest,
        Reason reason, Counter counter, Code traceCode, uint dst) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        Span<byte> frame = slab.Frame(s);
        Ipv4View.TryCreate(frame[m.L3Offset..], out Ipv4View ip);
        if (!IcmpErrors.MayAnswer(ip, (m.Flags & PacketFlags.GroupDestination) != 0))
        {
            next[i] = Drop(ref m, (int)reason);
            Trace<T>(ctx, ref m, Code.Dropped, null, (int)reason, dst, 0);
            return;
        }
        if (!_router.TryTakeIcmpToken(ctx.Now))
        {
            Counters.Add((int)Counter.IcmpRateLimited);
            next[i] = Drop(ref m, (int)reason);
            Trace<T>(ctx, ref m, Code.Dropped, null, (int)reason, dst, 0);
            return;
        }
        if (_router.Nat is { } nat && m.CtIndex >= 0) nat.RevertForQuote(frame.Slice(m.L3Offset, ip.TotalLength), m.CtIndex);
        IcmpErrors.Build(slab, s, type, code, rest, _router.Options.Gateway, _router.RouterMac);
        // Back to the sender the way the packet came (a pod port, the host, or the peer it was decapsulated from).
        m.OutPort = m.InPort;
        Counters.Add((int)counter);
        Trace<T>(ctx, ref m, traceCode, null, m.OutPort, dst, ((ulong)type << 40) | ((ulong)code << 32) | rest);
    }

    /// <summary>Answers an echo request to the gateway in place (used when the node has no host port).</summary>
    private static unsafe bool TryEchoReply(ref PacketMeta m, byte* f, Ipv4View ip, ulong routerMac)
    {
        if (ip.Protocol != IpProtocol.Icmp || ip.IsFragment) return false;
        Span<byte> icmp = ip.Payload;
        if (icmp.Length < IcmpView.HeaderSize || icmp[0] != IcmpType.EchoRequest || !Checksum.IsValid(icmp)) return false;
        icmp[0] = IcmpType.EchoReply;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum.Update(BinaryPrimitives.ReadUInt16BigEndian(icmp[2..]), (ushort)(IcmpType.EchoRequest << 8), (ushort)(IcmpType.EchoReply << 8)));
        Ipv4Address src = ip.Source;
        ip.Source = ip.Destination;
        ip.Destination = src;
        ip.Ttl = 64;
        ip.UpdateChecksum();
        WriteMacs(f, m.SrcMac, routerMac);
        m.DstMac = m.SrcMac;
        m.SrcMac = routerMac;
        m.OutPort = m.InPort;
        return true;
    }

    private void Trace<T>(WorkerContext ctx, ref PacketMeta m, Code code, Route? route, int outPort, uint dst, ulong y) where T : struct, ITraceMode
    {
        if (!T.Enabled || (m.Flags & PacketFlags.Traced) == 0) return;
        uint prefix = route?.Prefix.Address.Value ?? 0;
        int len = route?.Prefix.Length ?? -1;
        ctx.Trace.Add(m, Index, (int)code, len, outPort, ((ulong)dst << 32) | prefix, y, ctx.Now);
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        var dst = new Ipv4Address((uint)(r.X >> 32));
        string prefix = r.A >= 0 ? $"{new Ipv4Address((uint)r.X)}/{r.A}" : "";
        ulong y = r.Y;
        string back = names.PortName(r.B);
        string Icmp(string what) =>
            $"{dst}: {what} -> ICMP type {(y >> 40) & 0xFF} code {(y >> 32) & 0xFF}{(((y >> 32) & 0xFF) == 4 ? $" mtu {(uint)y}" : "")} back out port {back}";
        return (Code)r.Code switch
        {
            Code.RoutedLocal => $"{dst} matched {prefix} (node address): deliver to host port {names.PortName(r.B)}, next hop {new MacAddress(r.Y)}",
            Code.RoutedConnected => $"{dst} matched {prefix} (local pods): next hop {new MacAddress(r.Y)} on port {names.PortName(r.B)}, ttl-1",
            Code.RoutedPeer => $"{dst} matched {prefix}: next hop peer {new Ipv4Address((uint)r.Y)} via tunnel port {names.PortName(r.B)}, ttl-1",
            Code.RoutedHost => $"{dst} matched {prefix} (default): to the host port {names.PortName(r.B)}, ttl-1",
            Code.RoutedUplink => $"{dst} matched {prefix} (outside the cluster): out the uplink {names.PortName(r.B)}, ttl-1",
            Code.TimeExceeded => Icmp("TTL expired"),
            Code.NetUnreachable => Icmp($"no route ({(prefix.Length > 0 ? prefix : "none")})"),
            Code.HostUnreachable => Icmp("pod neighbor does not answer ARP"),
            Code.FragNeeded => Icmp("DF packet larger than the tunnel or uplink MTU"),
            Code.ArpRequest => $"{dst} matched {prefix} (local pods): MAC unknown, packet replaced by an ARP request",
            Code.EchoReply => $"{dst} is the gateway: echo reply",
            Code.Dropped => $"{dst}: dropped ({DropReasonName(r.B)}), no ICMP error allowed",
            _ => $"code {r.Code}",
        };
    }
}

using System.Buffers.Binary;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>
/// Connection tracking for every IPv4 packet, routed or bridged (like br_netfilter: a reply from a pod to a pod on the
/// same node never reaches the router, yet must be un-NATed): one hash probe finds the connection and its direction,
/// follows TCP's state and refreshes the timeout; the entry goes in <see cref="PacketMeta.CtIndex"/> for the stages after
/// (<c>nat</c> rewrites from it). A packet of no connection is marked new (<see cref="PacketFlags.CtNew"/>) for the
/// <c>lb</c> stage, which decides and commits it. ICMP errors are matched to the connection they quote (RELATED). An entry
/// found timed out before the sweep reached it is gone. With several workers, a miss whose connection another worker
/// keeps is handed there.
/// </summary>
public sealed class ConntrackStage : Stage
{
    public enum Counter
    {
        [Description("Packets of tracked connections")] Hits,
        [Description("Packets of no tracked connection, passed to lb as new")] Misses,
        [Description("ICMP errors related to a tracked connection")] Related,
        [Description("Packets not tracked (other protocols, non-first fragments, ICMP informational)")] Untracked,
        [Description("Packets handed to the worker that owns their NATed connection (several workers)")] HandedOff,
        [Description("Entries found timed out before the sweep reached them (the packet starts afresh)")] ExpiredOnHit,
    }

    public enum Reason
    {
        [Description("ICMP error about no tracked connection (INVALID)")] InvalidIcmpError,
        [Description("Truncated transport header")] Truncated,
        [Description("The worker owning the connection held a full ring of this worker's packets")] HandOffRefused,
    }

    private enum Code
    {
        Hit,
        Related = 3,
    }

    private readonly NatEngine _nat;

    /// <param name="next">The stage after (in the prerouting arc: <see cref="Stage.ArcNext"/>).</param>
    public ConntrackStage(NatEngine nat, string next)
        : base("conntrack", [next], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _nat = nat;
    }

    public NatEngine Nat => _nat;

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
    }

    private unsafe void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        Conntrack ct = _nat.Conntrack;
        long now = ctx.Now;
        long hits = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            next[i] = 1;
            // A new Service connection another worker decided and handed here carries the decision (see lb) in CtIndex:
            // it stays there for lb when the packet is new here too.
            int carried = m.CtIndex;
            m.CtIndex = -1;
            m.Flags &= ~(PacketFlags.CtNew | PacketFlags.CtRelated);
            if (m.EtherType != EtherType.Ipv4 || (m.Flags & PacketFlags.Tagged) != 0) continue;
            byte* f = slab.SlotPointer(s) + m.Offset;
            int l3len = m.Length - m.L3Offset;
            if (l3len < Ipv4View.MinHeaderSize) continue;
            var pkt = new Span<byte>(f + m.L3Offset, l3len);
            int ihl = (pkt[0] & 0x0F) * 4;
            int total = BinaryPrimitives.ReadUInt16BigEndian(pkt[2..]);
            // Malformed headers are left to the router, which counts them.
            if (pkt[0] >> 4 != 4 || ihl < Ipv4View.MinHeaderSize || total < ihl || total > l3len) continue;
            Span<byte> ip = pkt[..total];
            byte proto = ip[9];
            ushort frag = BinaryPrimitives.ReadUInt16BigEndian(ip[6..]);
            if ((frag & 0x1FFF) != 0)
            {
                Counters.Add((int)Counter.Untracked);
                continue;
            }
            Span<byte> l4 = ip[ihl..];
            FlowKey key;
            TcpFlags tcpFlags = 0;
            switch (proto)
            {
                case IpProtocol.Tcp:
                    if (l4.Length < TcpView.MinHeaderSize)
                    {
                        next[i] = Drop(ref m, (int)Reason.Truncated);
                        continue;
                    }
                    tcpFlags = (TcpFlags)(((l4[12] & 0x01) << 8) | l4[13]);
                    key = new FlowKey(Read32(ip, 12), Read32(ip, 16), Read16(l4, 0), Read16(l4, 2), proto);
                    break;
                case IpProtocol.Udp:
                    if (l4.Length < UdpView.HeaderSize)
                    {
                        next[i] = Drop(ref m, (int)Reason.Truncated);
                        continue;
                    }
                    key = new FlowKey(Read32(ip, 12), Read32(ip, 16), Read16(l4, 0), Read16(l4, 2), proto);
                    break;
                case IpProtocol.Icmp:
                    if (l4.Length < IcmpView.HeaderSize)
                    {
                        next[i] = Drop(ref m, (int)Reason.Truncated);
                        continue;
                    }
                    byte type = l4[0];
                    if (type is IcmpType.EchoRequest or IcmpType.EchoReply)
                    {
                        key = new FlowKey(Read32(ip, 12), Read32(ip, 16), Read16(l4, 4), type, proto);
                        break;
                    }
                    if (type is IcmpType.DestinationUnreachable or IcmpType.TimeExceeded or 12 /* parameter problem */)
                    {
                        next[i] = RelatedError<T>(ctx, s, ref m, ip);
                        continue;
                    }
                    Counters.Add((int)Counter.Untracked);
                    continue;
                default:
                    Counters.Add((int)Counter.Untracked);
                    continue;
            }

            // The hash ethernet-parse computed is this tuple's when the table uses the process's salt (tests give others).
            ulong hash = m.FlowHash != 0 && ct.Salt == FlowHash.ProcessSalt ? m.FlowHash : ct.Hash(key);
            int r = ct.Lookup(key, hash);
            if (r >= 0 && ct.IsExpired(r >> 1, now))
            {
                // Timed out, not swept yet: gone, as the kernel's conntrack would have it.
                _nat.Expire(r >> 1);
                Counters.Add((int)Counter.ExpiredOnHit);
                r = -1;
            }
            if (r >= 0)
            {
                int dir = r & 1;
                ref CtEntry e = ref ct[r >> 1];
                if (proto == IpProtocol.Tcp && dir == 0 && e.State is CtState.TimeWait or CtState.Close
                    && (tcpFlags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn)
                {
                    // A SYN reusing the tuple of a closed connection: a new connection, decided afresh by lb.
                    ct.Delete(r >> 1);
                    MarkNew(ref m, carried);
                    continue;
                }
                Track(ct, ref e, dir, proto, tcpFlags, total, now);
                m.CtIndex = r;
                hits++;
                if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                    ctx.Trace.Add(m, Index, (int)Code.Hit, r >> 1, dir | (int)e.State << 8 | (int)e.Status << 16, 0, 0, now);
                continue;
            }
            if (_nat.Steering is { } steering && HandOff(steering, key, s, ref m, out byte edge))
            {
                next[i] = edge;
                continue;
            }
            MarkNew(ref m, carried);
        }
        Counters.Add((int)Counter.Hits, hits);
    }

    /// <summary>A packet of a tracked connection, in direction <paramref name="dir"/>: TCP state, reply and assured
    /// status, counters, timeout.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Track(Conntrack ct, ref CtEntry e, int dir, byte proto, TcpFlags tcpFlags, int total, long now)
    {
        if (proto == IpProtocol.Tcp) Conntrack.TcpTransition(ref e, dir, tcpFlags);
        if (dir == 1)
        {
            if ((e.Status & CtStatus.SeenReply) == 0)
            {
                e.Status |= CtStatus.SeenReply;
                if (proto != IpProtocol.Tcp) e.State = CtState.Replied;
            }
            e.Packets1++;
            e.Bytes1 += total;
        }
        else
        {
            // UDP and ICMP become assured when the originator speaks again after a reply (kernel: stream).
            if (proto != IpProtocol.Tcp && (e.Status & CtStatus.SeenReply) != 0) e.Status |= CtStatus.Assured;
            e.Packets0++;
            e.Bytes0 += total;
        }
        e.Expires = now + ct.TimeoutFor(ref e);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void MarkNew(ref PacketMeta m, int carried)
    {
        m.Flags |= PacketFlags.CtNew;
        m.CtIndex = carried;
        Counters.Add((int)Counter.Misses);
    }

    /// <summary>A miss with several workers: the connection may be another worker's (a NATed connection's reply).</summary>
    private bool HandOff(ConnectionSteering steering, in FlowKey key, int s, ref PacketMeta m, out byte edge)
    {
        switch (steering.TryHandOff(key, s))
        {
            case ConnectionSteering.HandOffResult.HandedOff:
                Counters.Add((int)Counter.HandedOff);
                edge = StageGraph.Consumed;
                return true;
            case ConnectionSteering.HandOffResult.Refused:
                edge = Drop(ref m, (int)Reason.HandOffRefused);
                return true;
            default:
                edge = 0;
                return false;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Read32(Span<byte> b, int o) => BinaryPrimitives.ReadUInt32BigEndian(b[o..]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort Read16(Span<byte> b, int o) => BinaryPrimitives.ReadUInt16BigEndian(b[o..]);

    /// <summary>An ICMP error: find the flow it quotes (the nat stage translates it the way that flow is translated), or drop it INVALID.</summary>
    private byte RelatedError<T>(WorkerContext ctx, int s, ref PacketMeta m, Span<byte> ip) where T : struct, ITraceMode
    {
        int ihl = (ip[0] & 0x0F) * 4;
        Span<byte> inner = ip[(ihl + IcmpView.HeaderSize)..];
        if (!NatRewrite.TryReadKey(inner, out FlowKey quoted, out _)) return Drop(ref m, (int)Reason.InvalidIcmpError);
        FlowKey arrived = quoted.Inverse();
        Conntrack ct = _nat.Conntrack;
        int r = ct.Lookup(arrived, ct.Hash(arrived));
        if (r < 0 && _nat.Steering is { } steering && HandOff(steering, arrived, s, ref m, out byte edge)) return edge;
        if (r < 0) return Drop(ref m, (int)Reason.InvalidIcmpError);
        m.CtIndex = r;
        m.Flags |= PacketFlags.CtRelated;
        Counters.Add((int)Counter.Related);
        if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
            ctx.Trace.Add(m, Index, (int)Code.Related, r >> 1, r & 1, (ulong)quoted.Src << 32 | quoted.Dst, (ulong)quoted.SrcPort << 16 | quoted.DstPort, ctx.Now);
        return 1;
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        static string A(ulong v) => new Ipv4Address((uint)v).ToString();
        switch ((Code)r.Code)
        {
            case Code.Hit:
            {
                string dir = (r.B & 0xFF) == 0 ? "original" : "reply";
                var state = (CtState)((r.B >> 8) & 0xFF);
                var status = (CtStatus)((r.B >> 16) & 0xFF);
                bool nat = (status & (CtStatus.DstNat | CtStatus.SrcNat)) != 0;
                return $"connection #{r.A} {dir} direction, {StateName(state)}{(nat ? ", NATed" : "")}";
            }
            case Code.Related:
                return $"ICMP error related to connection #{r.A} (quotes {A(r.X >> 32)}:{r.Y >> 16 & 0xFFFF} -> {A(r.X)}:{r.Y & 0xFFFF})";
            default:
                return $"code {r.Code}";
        }
    }

    public static string StateName(CtState s) => s switch
    {
        CtState.SynSent => "SYN_SENT",
        CtState.SynRecv => "SYN_RECV",
        CtState.Established => "ESTABLISHED",
        CtState.FinWait => "FIN_WAIT",
        CtState.CloseWait => "CLOSE_WAIT",
        CtState.LastAck => "LAST_ACK",
        CtState.TimeWait => "TIME_WAIT",
        CtState.Close => "CLOSE",
        CtState.Unreplied => "UNREPLIED",
        CtState.Replied => "REPLIED",
        _ => "NONE",
    };
}

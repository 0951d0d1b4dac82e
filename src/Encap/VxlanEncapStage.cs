using System.ComponentModel;
using System.Runtime.CompilerServices;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Stages;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Encap;

/// <summary>
/// Encapsulates frames leaving through the tunnel port: the peer is the one the router chose
/// (<see cref="PacketMeta.PeerAddr"/>) or the one the inner destination MAC was learned behind; the peer's prebuilt
/// outer IPv4/UDP/VXLAN header is written into the headroom in front of the frame (the inner frame is not copied), with
/// the UDP source port taken from the inner flow hash (RFC 7348 §5) so the underlay can spread flows.
/// Broadcast, multicast and unknown unicast from local ports are replicated to every peer (head-end replication) when
/// flood-and-learn is on; those copies are sent from here and the original goes on to the local ports.
/// Frames for other ports pass through untouched.
/// </summary>
public sealed class VxlanEncapStage : Stage
{
    public enum Counter
    {
        [Description("Frames encapsulated to one peer")] Encapsulated,
        [Description("Broadcast/multicast/unknown-unicast frames replicated to the peers")] Flooded,
        [Description("Copies sent by head-end replication")] FloodCopies,
        [Description("Replicated copies not made: no free buffer")] CopyNoBuffer,
        [Description("Super-frames cut into segments in software before encapsulation")] Segmented,
        [Description("Super-frames or partial-checksum frames not finishable in software (malformed, or no buffer): dropped")] UnfinishedDropped,
    }

    public enum Reason
    {
        [Description("Inner destination MAC is behind no peer and flood-and-learn is off")] NoFdbEntry,
        [Description("Frame larger than the underlay MTU allows")] TooBig,
        [Description("Peer address is not a configured peer")] UnknownPeer,
    }

    private enum Code
    {
        Unicast,
        Flood,
    }

    private readonly Overlay _overlay;
    private readonly PortTable _ports;
    private int[] _copies = new int[256];
    private int[] _scratch = [];

    public VxlanEncapStage(Overlay overlay, PortTable ports, string next = "port-tx")
        : base("vxlan-encap", [next], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _overlay = overlay;
        _ports = ports;
    }

    /// <summary>Frames for the tunnel (or replicated to the peers) are finished first: the outer packet goes out as it is.</summary>
    private readonly struct Egress(Overlay overlay, PortTable ports) : IEgressOffloads
    {
        public PortOffloads For(ref PacketMeta m)
        {
            ushort tunnel = overlay.TunnelPort;
            if (tunnel == PortIds.None) return PortOffloads.All;
            if (m.OutPort == tunnel) return PortOffloads.None;
            bool replicated = m.OutPort == PortIds.Flood && overlay.Options.Learning
                && (m.Flags & PacketFlags.LocalOnly) == 0 && ports.Role(m.InPort) != PortRole.Tunnel;
            return replicated ? PortOffloads.None : PortOffloads.All;
        }
    }

    public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        if (_scratch.Length < batch.Capacity) _scratch = new int[batch.Capacity];
        var egress = new Egress(_overlay, _ports);
        // Only ports with offloads (which need large slots) bring super-frames or partial checksums.
        int segmented = 0;
        int unfinished = ctx.Slab.LargeCapacity == 0 ? 0 : Offload.Resolve(ctx.Slab, batch, ref egress, _scratch, out segmented);
        if ((unfinished | segmented) != 0)
        {
            Counters.Add((int)Counter.Segmented, segmented);
            Counters.Add((int)Counter.UnfinishedDropped, unfinished);
        }
        if (batch.HasTraced) Run<TraceOn>(ctx, batch, next);
        else Run<TraceOff>(ctx, batch, next);
    }

    private unsafe void Run<T>(WorkerContext ctx, PacketBatch batch, Span<byte> next) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        Overlay ov = _overlay;
        ushort tunnel = ov.TunnelPort;
        bool learning = ov.Options.Learning;
        int maxInner = ov.Options.UnderlayMtu - OverlayPeer.OuterSize;
        long now = ctx.Now;
        int copies = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            next[i] = 1;
            int peer;
            if (m.OutPort == tunnel && tunnel != PortIds.None)
            {
                if (m.PeerAddr != 0)
                {
                    if (!ov.TryGetPeer(m.PeerAddr, out peer))
                    {
                        next[i] = Drop(ref m, (int)Reason.UnknownPeer);
                        continue;
                    }
                }
                else if (!ov.TryLookup(m.DstMac, now, out peer))
                {
                    if (!learning)
                    {
                        next[i] = Drop(ref m, (int)Reason.NoFdbEntry);
                        continue;
                    }
                    // Learned on the tunnel port but aged out of the overlay table: flood to the peers only.
                    Counters.Add((int)Counter.Flooded);
                    copies = Replicate<T>(ctx, s, ref m, copies, maxInner);
                    slab.Free(s);
                    next[i] = StageGraph.Consumed;
                    continue;
                }
                if (m.Length > maxInner)
                {
                    next[i] = Drop(ref m, (int)Reason.TooBig);
                    continue;
                }
                OverlayPeer op = ov.Peer(peer);
                ushort sport = ov.SourcePort(m.FlowHash != 0 ? Fold(m.FlowHash) : FlowHash(slab.SlotPointer(s) + m.Offset, m.Length));
                m.Offset -= OverlayPeer.OuterSize;
                m.Length += OverlayPeer.OuterSize;
                op.WriteOuter(slab.SlotPointer(s) + m.Offset, m.Length - OverlayPeer.OuterSize, sport);
                m.PeerAddr = op.Address.Value;
                op.TxPackets++;
                op.TxBytes += m.Length;
                Counters.Add((int)Counter.Encapsulated);
                if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                    ctx.Trace.Add(m, Index, (int)Code.Unicast, peer, sport, op.Address.Value, ov.Options.Vni, now);
            }
            else if (m.OutPort == PortIds.Flood && learning && tunnel != PortIds.None
                     && (m.Flags & PacketFlags.LocalOnly) == 0 && _ports.Role(m.InPort) != PortRole.Tunnel)
            {
                Counters.Add((int)Counter.Flooded);
                copies = Replicate<T>(ctx, s, ref m, copies, maxInner);
            }
        }
        if (copies > 0)
        {
            IPacketPort port = _ports[tunnel]!;
            port.Send(slab, new ReadOnlySpan<int>(_copies, 0, copies));
            for (int c = 0; c < copies; c++) slab.Free(_copies[c]);
        }
    }

    /// <summary>Copies the frame once per peer, each copy with that peer's outer header. Returns the new copy count.</summary>
    private unsafe int Replicate<T>(WorkerContext ctx, int s, ref PacketMeta m, int copies, int maxInner) where T : struct, ITraceMode
    {
        PacketSlab slab = ctx.Slab;
        IReadOnlyList<OverlayPeer> peers = _overlay.Peers;
        if (m.Length > maxInner) return copies;
        byte* src = slab.SlotPointer(s) + m.Offset;
        ushort sport = _overlay.SourcePort(m.FlowHash != 0 ? Fold(m.FlowHash) : FlowHash(src, m.Length));
        for (int p = 0; p < peers.Count; p++)
        {
            if (!slab.TryAlloc(out int c))
            {
                Counters.Add((int)Counter.CopyNoBuffer, peers.Count - p);
                break;
            }
            ref PacketMeta cm = ref slab.Meta[c];
            cm.Length = m.Length + OverlayPeer.OuterSize;
            cm.InPort = m.InPort;
            cm.OutPort = _overlay.TunnelPort;
            OverlayPeer op = peers[p];
            cm.PeerAddr = op.Address.Value;
            byte* dst = slab.SlotPointer(c) + cm.Offset;
            Buffer.MemoryCopy(src, dst + OverlayPeer.OuterSize, m.Length, m.Length);
            op.WriteOuter(dst, m.Length, sport);
            op.TxPackets++;
            op.TxBytes += cm.Length;
            if (copies == _copies.Length) Array.Resize(ref _copies, copies * 2);
            _copies[copies++] = c;
            Counters.Add((int)Counter.FloodCopies);
            if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, (int)Code.Flood, op.Index, sport, op.Address.Value, _overlay.Options.Vni, ctx.Now);
        }
        return copies;
    }

    /// <summary>UDP source port in 49152-65535 from a hash of the inner flow (addresses, protocol, ports), so one flow
    /// keeps one port and different flows spread over the underlay's ECMP paths and receive queues (the port when no
    /// send-socket ports are given: <see cref="Overlay.SourcePort"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe ushort SourcePort(byte* frame, int length) => Overlay.DefaultSourcePort(FlowHash(frame, length));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Fold(ulong h) => (uint)(h ^ (h >> 32));

    /// <summary>Hash of the inner IPv4 5-tuple (ports only for the first fragment of TCP/UDP), else of the MAC addresses.</summary>
    public static unsafe uint FlowHash(byte* f, int length)
    {
        ulong h;
        if (length >= 34 && f[12] == 0x08 && f[13] == 0x00 && (f[14] >> 4) == 4)
        {
            byte* ip = f + 14;
            int ihl = (ip[0] & 0x0F) * 4;
            uint srcIp = Unsafe.ReadUnaligned<uint>(ip + 12);
            uint dstIp = Unsafe.ReadUnaligned<uint>(ip + 16);
            byte proto = ip[9];
            uint ports = 0;
            bool firstFragment = (ip[6] & 0x1F) == 0 && ip[7] == 0;
            if ((proto == IpProtocol.Tcp || proto == IpProtocol.Udp) && firstFragment && length >= 14 + ihl + 4)
                ports = Unsafe.ReadUnaligned<uint>(ip + ihl);
            h = ((ulong)srcIp << 32 | dstIp) * 0x9E37_79B9_7F4A_7C15UL;
            h ^= ((ulong)ports << 8 | proto) * 0xC2B2_AE3D_27D4_EB4FUL;
        }
        else if (length >= 12)
        {
            h = Unsafe.ReadUnaligned<ulong>(f) * 0x9E37_79B9_7F4A_7C15UL;
            h ^= Unsafe.ReadUnaligned<uint>(f + 8) * 0xC2B2_AE3D_27D4_EB4FUL;
        }
        else
        {
            return 0;
        }
        h ^= h >> 29;
        return (uint)(h ^ (h >> 32));
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        string peer = _overlay.PeerAt(r.A)?.Name ?? $"peer-{r.A}";
        string what = r.Code == (int)Code.Flood ? "replicated (flood) to" : "encapsulated to";
        return $"{what} peer {peer} ({new Ipv4Address((uint)r.X)}), vni {r.Y}, udp {r.B} -> {_overlay.Options.UdpPort}";
    }
}

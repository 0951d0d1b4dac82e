using System.ComponentModel;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Encap;

/// <summary>
/// Validates and strips the VXLAN header of datagrams from the tunnel port (which hands over the UDP payload and the
/// outer source address in <see cref="PacketMeta.PeerAddr"/>), and learns inner source MAC → peer (flood-and-learn).
/// Every rejection is a counted drop; nothing here throws on bad input.
/// </summary>
public sealed class VxlanDecapStage : Stage
{
    public enum Counter
    {
        [Description("Frames decapsulated")] Decapsulated,
        [Description("Inner source MACs learned behind a peer")] Learned,
        [Description("Inner source MACs that moved to another peer")] Moved,
        [Description("Inner source MACs not learned: overlay forwarding table full")] FdbFull,
        [Description("Peers discovered from traffic (overlay.acceptUnknownPeers)")] PeersDiscovered,
    }

    public enum Reason
    {
        [Description("Datagram shorter than a VXLAN header plus an Ethernet header")] Truncated,
        [Description("VXLAN I flag (VNI valid) not set")] NoVniFlag,
        [Description("VNI is not this overlay's")] UnknownVni,
        [Description("Outer source address is not a known peer")] UnknownPeer,
        [Description("Inner source MAC is multicast or zero")] BadInnerSource,
    }

    private enum Code
    {
        Ok,
        Rejected,
    }

    private readonly Overlay _overlay;

    public VxlanDecapStage(Overlay overlay, string next = "ethernet-parse")
        : base("vxlan-decap", [next], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _overlay = overlay;
    }

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
        Overlay ov = _overlay;
        uint vni = ov.Options.Vni;
        bool learning = ov.Options.Learning;
        long now = ctx.Now;
        uint lastAddr = 0;
        int lastPeer = -1;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            byte* p = slab.SlotPointer(s) + m.Offset;
            int reason = -1;
            uint gotVni = 0;
            if (m.Length < VxlanView.Size + EthernetView.HeaderSize) reason = (int)Reason.Truncated;
            else if ((p[0] & VxlanView.FlagVniValid) == 0) reason = (int)Reason.NoVniFlag;
            else if ((gotVni = (uint)(p[4] << 16 | p[5] << 8 | p[6])) != vni) reason = (int)Reason.UnknownVni;
            int peer = lastPeer;
            if (reason < 0 && m.PeerAddr != lastAddr)
            {
                if (!ov.TryGetPeer(m.PeerAddr, out peer))
                {
                    peer = -1;
                    if (ov.Options.AcceptUnknownPeers && ov.Peers.Count < ov.Options.MaxPeers)
                    {
                        peer = ov.AddPeer($"learned-{new Ipv4Address(m.PeerAddr)}", new Ipv4Address(m.PeerAddr), null, MacAddress.Zero, isStatic: false);
                        ov.Peer(peer).Created = now;
                        Counters.Add((int)Counter.PeersDiscovered);
                    }
                }
                lastAddr = m.PeerAddr;
                lastPeer = peer;
            }
            if (reason < 0 && peer < 0) reason = (int)Reason.UnknownPeer;
            ulong innerSrc = 0;
            if (reason < 0)
            {
                byte* src = p + VxlanView.Size + 6;
                innerSrc = ((ulong)src[0] << 40) | ((ulong)src[1] << 32) | ((ulong)src[2] << 24) | ((ulong)src[3] << 16) | ((ulong)src[4] << 8) | src[5];
                if ((innerSrc & 0x0100_0000_0000UL) != 0 || innerSrc == 0) reason = (int)Reason.BadInnerSource;
            }
            if (reason >= 0)
            {
                next[i] = Drop(ref m, reason);
                if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                    ctx.Trace.Add(m, Index, (int)Code.Rejected, reason, (int)gotVni, m.PeerAddr, 0, now);
                continue;
            }
            OverlayPeer op = ov.Peer(peer);
            op.RxPackets++;
            op.RxBytes += m.Length;
            op.LastSeen = now;
            if (learning)
            {
                FdbLearn r = ov.Learn(innerSrc, peer, now);
                if (r == FdbLearn.Learned) Counters.Add((int)Counter.Learned);
                else if (r == FdbLearn.Moved) Counters.Add((int)Counter.Moved);
                else if (r == FdbLearn.Full) Counters.Add((int)Counter.FdbFull);
            }
            m.Offset += VxlanView.Size;
            m.Length -= VxlanView.Size;
            Counters.Add((int)Counter.Decapsulated);
            next[i] = 1;
            if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, (int)Code.Ok, peer, (int)gotVni, m.PeerAddr, innerSrc, now);
        }
    }

    public override string DescribeTrace(in TraceRecord r, ITraceNames names)
    {
        var from = new Ipv4Address((uint)r.X);
        if (r.Code == (int)Code.Rejected) return $"rejected from {from}: {DropReasonName(r.A)} (vni {r.B})";
        string peer = _overlay.PeerAt(r.A)?.Name ?? $"peer-{r.A}";
        return $"vxlan vni {r.B} from peer {peer} ({from}), inner source {new MacAddress(r.Y)}";
    }
}

using System.Buffers.Binary;
using System.ComponentModel;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>
/// The NAT rewrite: every packet of a translated connection (<see cref="PacketMeta.CtIndex"/>, set by <c>conntrack</c>
/// or <c>lb</c>) gets the other direction's tuple written in, with incremental checksum updates (RFC 1624; a partial
/// checksum as the kernel keeps it): DNAT towards an endpoint, un-DNAT of its replies, SNAT and its replies. An ICMP
/// error related to a translated connection is translated inside too: the quoted header is put back to what its sender
/// sent, the outer destination, and the outer source when the far end itself sent the error.
/// </summary>
public sealed class NatStage : Stage
{
    public enum Counter
    {
        [Description("Packets rewritten for their connection's NAT")] Rewritten,
        [Description("ICMP errors translated for a NATed connection they quote")] ErrorsTranslated,
        [Description("Packets whose connection was replaced within their batch (not rewritten)")] Stale,
    }

    private readonly NatEngine _nat;

    public NatStage(NatEngine nat, string next)
        : base("nat", [next], CounterSet.FromEnum<Counter>())
    {
        _nat = nat;
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
        Conntrack ct = _nat.Conntrack;
        long rewritten = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            next[i] = 1;
            int r = m.CtIndex;
            if (r < 0) continue;
            ref CtEntry e = ref ct[r >> 1];
            if (e.Live == 0 || !e.IsNat) continue;
            byte* l3 = slab.SlotPointer(s) + m.Offset + m.L3Offset;
            var ip = new Span<byte>(l3, BinaryPrimitives.ReadUInt16BigEndian(new ReadOnlySpan<byte>(l3 + 2, 2)));
            int dir = r & 1;
            bool related = (m.Flags & PacketFlags.CtRelated) != 0;
            // The entry may have gone since conntrack found it (a SYN later in the batch reopened the tuple): the packet's
            // addresses must still be the direction's.
            if (!related && (dir == 0 ? e.Orig : e.Reply) is var k && (k.Src != Read32(ip, 12) || k.Dst != Read32(ip, 16)))
            {
                Counters.Add((int)Counter.Stale);
                continue;
            }
            if (related)
            {
                NatRewrite.ApplyToError(ip, dir == 0 ? e.Orig : e.Reply, dir == 0 ? e.Reply : e.Orig);
                Counters.Add((int)Counter.ErrorsTranslated);
            }
            else
            {
                NatRewrite.Apply(ip, dir == 0 ? e.Reply.Inverse() : e.Orig.Inverse(), (m.Flags & PacketFlags.ChecksumPartial) != 0);
                rewritten++;
            }
            if (T.Enabled && (m.Flags & PacketFlags.Traced) != 0)
                ctx.Trace.Add(m, Index, 0, r >> 1, dir, (ulong)Read32(ip, 12) << 32 | Read32(ip, 16),
                    (ulong)BinaryPrimitives.ReadUInt16BigEndian(ip[((ip[0] & 0x0F) * 4)..]) << 16 | BinaryPrimitives.ReadUInt16BigEndian(ip[((ip[0] & 0x0F) * 4 + 2)..]), ctx.Now);
        }
        Counters.Add((int)Counter.Rewritten, rewritten);
    }

    private static uint Read32(Span<byte> b, int o) => BinaryPrimitives.ReadUInt32BigEndian(b[o..]);

    public override string DescribeTrace(in TraceRecord r, ITraceNames names) =>
        $"connection #{r.A} {(r.B == 0 ? "original" : "reply")} direction: rewritten to {new Ipv4Address((uint)(r.X >> 32))}:{r.Y >> 16 & 0xFFFF} -> {new Ipv4Address((uint)r.X)}:{r.Y & 0xFFFF}";
}

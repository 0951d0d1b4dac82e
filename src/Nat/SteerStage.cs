using System.Buffers.Binary;
using System.ComponentModel;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>
/// Flow-affine steering between workers (only when there are several). Each worker reads its own queues of every port,
/// and the kernel spreads flows over the queues by its own hash; this stage sends every IPv4 packet on to the worker
/// its tuple's symmetric hash names, so both directions of a flow meet the same connection-table entry with no lock.
/// TCP and UDP hash on addresses and ports, ICMP echo on addresses and id, an ICMP error on the tuple it quotes (so it
/// meets the connection it is about), anything else on addresses. Non-IPv4 frames (ARP) stay on the worker that read
/// them. Handed-over packets enter the other worker's graph right after this stage.
/// </summary>
public sealed class SteerStage : Stage
{
    public enum Counter
    {
        [Description("Packets processed by the worker that read them")] Local,
        [Description("Packets handed to the worker that owns their flow")] HandedOff,
    }

    public enum Reason
    {
        [Description("The owning worker held a full ring of this worker's packets")] HandOffRefused,
    }

    private readonly WorkerMesh _mesh;
    private readonly int _self;

    public SteerStage(WorkerMesh mesh, int self, string next)
        : base("steer", [next], CounterSet.FromEnum<Counter>(), CounterSet.Describe<Reason>().Names)
    {
        _mesh = mesh;
        _self = self;
    }

    public override unsafe void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
    {
        PacketSlab slab = ctx.Slab;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        long local = 0, handed = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            next[i] = 1;
            if (m.EtherType != EtherType.Ipv4 || (m.Flags & PacketFlags.Tagged) != 0)
            {
                local++;
                continue;
            }
            // The flow hash ethernet-parse computed (with the mesh's salt, the process's).
            int home = _mesh.Home(m.FlowHash);
            if (home == _self)
            {
                local++;
                continue;
            }
            if (_mesh.HandOff(_self, home, s))
            {
                next[i] = StageGraph.Consumed;
                handed++;
            }
            else
            {
                next[i] = Drop(ref m, (int)Reason.HandOffRefused);
            }
        }
        Counters.Add((int)Counter.Local, local);
        Counters.Add((int)Counter.HandedOff, handed);
    }

    /// <summary>The tuple a packet is steered by (<see cref="FlowKey.OfPacket"/>).</summary>
    public static FlowKey KeyOf(ReadOnlySpan<byte> ip) => FlowKey.OfPacket(ip);
}

using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// An in-memory port for tests and benchmarks. Receive hands out injected frames (or replays a fixed set forever,
/// copying each into a slab slot as a NIC would); Send records copies of transmitted frames, or only counts them.
/// Replay and count-only modes allocate nothing per packet.
/// </summary>
public sealed class MemoryPort : IPacketPort
{
    private readonly Queue<(byte[] Frame, uint Peer, GsoType Gso, ushort Mss, bool Partial)> _rx = new();
    private readonly List<(GsoType Gso, ushort Mss, PacketFlags Flags)> _txOffload = [];
    private byte[][] _replay = [];
    private int _replayNext;
    private readonly List<byte[]> _tx = [];
    private readonly List<uint> _txPeers = [];

    public MemoryPort(string name, bool recordTx = true)
    {
        Name = name;
        RecordTx = recordTx;
    }

    public string Name { get; }
    public string Kind => "memory";
    public string InterfaceName => "";
    public ushort Id { get; set; }
    public int PollHandle => -1;
    public CounterSet Counters { get; } = CounterSet.FromEnum<PortCounter>();
    public bool RecordTx { get; set; }
    /// <summary>Frames transmitted on this port (when <see cref="RecordTx"/>).</summary>
    public IReadOnlyList<byte[]> Transmitted => _tx;
    /// <summary>For each transmitted frame, the metadata's overlay peer address (what a tunnel port would send to).</summary>
    public IReadOnlyList<uint> TransmittedPeers => _txPeers;
    /// <summary>Overlay peer address given to replayed frames (a tunnel port's outer source address).</summary>
    public uint ReplayPeer { get; set; }
    public int PendingRx => _rx.Count;

    /// <summary>Queues a frame to be received; <paramref name="peer"/> plays the outer source address when the port is a tunnel.</summary>
    public void Inject(ReadOnlySpan<byte> frame, uint peer = 0) => _rx.Enqueue((frame.ToArray(), peer, GsoType.None, 0, false));

    /// <summary>Queues a TCP super-frame (or, with <see cref="GsoType.None"/>, a frame with a partial checksum) as a TAP
    /// with offloads would deliver it. Needs <see cref="Offloads"/>.</summary>
    public void InjectOffloaded(ReadOnlySpan<byte> frame, GsoType gso, ushort mss)
    {
        if (Offloads == PortOffloads.None) throw new InvalidOperationException("the port has no offloads");
        _rx.Enqueue((frame.ToArray(), 0, gso, mss, true));
    }

    /// <summary>What this port takes (as a TAP with IFF_VNET_HDR would); none by default.</summary>
    public PortOffloads Offloads { get; init; }

    /// <summary>Per transmitted frame (when <see cref="RecordTx"/>): its super-frame type, MSS and checksum flags.</summary>
    public IReadOnlyList<(GsoType Gso, ushort Mss, PacketFlags Flags)> TransmittedOffload => _txOffload;

    /// <summary>Replay these frames cyclically on every receive (benchmark source).</summary>
    public void SetReplay(IEnumerable<byte[]> frames)
    {
        _replay = [.. frames];
        _replayNext = 0;
    }

    public void ClearTransmitted()
    {
        _tx.Clear();
        _txPeers.Clear();
        _txOffload.Clear();
    }

    public int Receive(PacketSlab slab, PacketBatch batch, int max)
    {
        int n = 0;
        while (n < max)
        {
            byte[] frame;
            uint peer;
            GsoType gso = GsoType.None;
            ushort mss = 0;
            bool partial = false;
            if (_rx.Count > 0) (frame, peer, gso, mss, partial) = _rx.Peek();
            else if (_replay.Length > 0) (frame, peer) = (_replay[_replayNext], ReplayPeer);
            else break;
            if (frame.Length > (Offloads == PortOffloads.None ? slab.MaxFrameLength : slab.MaxLargeFrameLength))
            {
                if (_rx.Count > 0) _rx.Dequeue();
                Counters.Add((int)PortCounter.RxDropped);
                continue;
            }
            if (!slab.TryAllocFrame(frame, out int slot))
            {
                Counters.Add((int)PortCounter.RxDropped);
                break;
            }
            if (_rx.Count > 0) _rx.Dequeue();
            else if (++_replayNext == _replay.Length) _replayNext = 0;
            slab.Meta[slot].InPort = Id;
            slab.Meta[slot].PeerAddr = peer;
            if (partial)
            {
                slab.Meta[slot].Gso = gso;
                slab.Meta[slot].GsoSize = mss;
                slab.Meta[slot].Flags |= PacketFlags.ChecksumPartial;
            }
            batch.Add(slot);
            n++;
            Counters.Add((int)PortCounter.RxBytes, frame.Length);
        }
        Counters.Add((int)PortCounter.RxPackets, n);
        return n;
    }

    public int Send(PacketSlab slab, ReadOnlySpan<int> slots)
    {
        foreach (int slot in slots)
        {
            if (RecordTx)
            {
                _tx.Add(slab.Frame(slot).ToArray());
                _txPeers.Add(slab.Meta[slot].PeerAddr);
                _txOffload.Add((slab.Meta[slot].Gso, slab.Meta[slot].GsoSize, slab.Meta[slot].Flags & (PacketFlags.ChecksumPartial | PacketFlags.ChecksumValid)));
            }
            Counters.Add((int)PortCounter.TxBytes, slab.Meta[slot].Length);
        }
        Counters.Add((int)PortCounter.TxPackets, slots.Length);
        return slots.Length;
    }

    public void Dispose() { }
}

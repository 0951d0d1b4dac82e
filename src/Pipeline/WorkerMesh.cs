using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VSwitch.Pipeline;

/// <summary>Kinds of <see cref="MeshMessage"/>.</summary>
public static class MeshKind
{
    /// <summary>A neighbor learned from ARP: A = IPv4 address, B = MAC, C = port.</summary>
    public const int NeighborLearned = 1;
    /// <summary>A connection's reply tuple (A, B) belongs to worker C: hand its packets there.</summary>
    public const int RedirectAdd = 2;
    /// <summary>The connection with reply tuple (A, B) is gone.</summary>
    public const int RedirectRemove = 3;
    /// <summary>Service affinity: A = Service key, B = client &lt;&lt; 32 | endpoint, C = endpoint port, D = expiry.</summary>
    public const int AffinitySet = 4;
}

/// <summary>A message from one worker to another: learned state every worker needs (neighbors, Service affinity) and
/// connection ownership (which worker holds a connection a packet's tuple belongs to). Payload meaning is the kind's.</summary>
public struct MeshMessage
{
    public int Kind;
    public int From;
    public ulong A;
    public ulong B;
    public ulong C;
    public ulong D;
}

/// <summary>Applies messages on the receiving worker's thread.</summary>
public interface IMeshHandler
{
    void Handle(in MeshMessage m);
}

/// <summary>
/// What the workers of one switch share: lock-free single-producer, single-consumer rings between every ordered pair
/// of workers, for packets handed to the worker that owns their flow and for messages. A handed-over packet stays in the
/// sender's slab until the receiver has copied it into its own; the receiver then gives the slot back on a return ring,
/// and the sender frees it. A sender never has more slots out with one receiver than the ring holds, so nothing is lost
/// and nothing blocks. A worker with new work for a sleeping worker wakes it (its epoll eventfd) once per batch.
/// </summary>
public sealed unsafe class WorkerMesh
{
    public const int MaxWorkers = 64;

    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct Worker
    {
        /// <summary>1 while the worker is (about to be) blocked in epoll; written by it, read by the others.</summary>
        [FieldOffset(0)] public int Sleeping;
        /// <summary>Workers this one has given work to since it last woke them (its own field).</summary>
        [FieldOffset(64)] public ulong WakeMask;
        [FieldOffset(72)] public long MessagesDropped;
        [FieldOffset(80)] public long HandOffsRefused;
        [FieldOffset(88)] public long CopiesDropped;
    }

    private readonly int _n;
    private readonly SpscRing<int>[] _packets;
    private readonly SpscRing<int>[] _returns;
    private readonly SpscRing<MeshMessage>[] _messages;
    private readonly int[] _outstanding;
    private readonly PacketSlab?[] _slabs;
    private readonly Action?[] _wakers;
    private readonly Worker[] _w;
    private readonly int _ringSize;
    /// <summary>Counters per worker row of <see cref="_outstanding"/>: at least 16 (a 64-byte line), so rows never share one.</summary>
    private readonly int _rowStride;

    public WorkerMesh(int workers, int ringSize = 1024)
    {
        if (workers is < 1 or > MaxWorkers) throw new ArgumentOutOfRangeException(nameof(workers), $"1..{MaxWorkers} workers");
        _n = workers;
        int pairs = workers * workers;
        _packets = new SpscRing<int>[pairs];
        _returns = new SpscRing<int>[pairs];
        _messages = new SpscRing<MeshMessage>[pairs];
        for (int i = 0; i < pairs; i++)
        {
            if (i / workers == i % workers) continue;
            _packets[i] = new SpscRing<int>(ringSize);
            _returns[i] = new SpscRing<int>(ringSize);
            _messages[i] = new SpscRing<MeshMessage>(ringSize);
        }
        _ringSize = _packets.Length > 1 ? _packets[1].Capacity : ringSize;
        // One padded row per worker: each worker writes only its own row.
        _rowStride = Math.Max(16, (workers + 15) & ~15);
        _outstanding = new int[workers * _rowStride];
        _slabs = new PacketSlab?[workers];
        _wakers = new Action?[workers];
        _w = new Worker[workers];
        Salt = FlowHash.ProcessSalt;
    }


    public int Count => _n;
    /// <summary>Salt for the steering hash (one per process, the same for every worker).</summary>
    public ulong Salt { get; }

    private int Row(int worker) => worker * _rowStride;

    /// <summary>Registers a worker's slab (read by the others when they copy a packet it handed over) and how to wake it.</summary>
    public void Attach(int worker, PacketSlab slab, Action wake)
    {
        _slabs[worker] = slab;
        _wakers[worker] = wake;
    }

    /// <summary>The worker a flow hash belongs to.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Home(ulong hash) => (int)(((hash >> 32) * (ulong)_n) >> 32);

    /// <summary>Hands slot <paramref name="slot"/> of <paramref name="from"/>'s slab to worker <paramref name="to"/>. False
    /// when <paramref name="to"/> already holds as many of its slots as the ring does (the caller drops the packet).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool HandOff(int from, int to, int slot)
    {
        ref int outstanding = ref _outstanding[Row(from) + to];
        if (outstanding >= _ringSize || !_packets[from * _n + to].TryEnqueue(slot))
        {
            _w[from].HandOffsRefused++;
            return false;
        }
        outstanding++;
        _w[from].WakeMask |= 1UL << to;
        return true;
    }

    /// <summary>Sends a message. False (and counted) when the ring to <paramref name="to"/> is full.</summary>
    public bool Send(int from, int to, in MeshMessage m)
    {
        if (!_messages[from * _n + to].TryEnqueue(m))
        {
            _w[from].MessagesDropped++;
            return false;
        }
        _w[from].WakeMask |= 1UL << to;
        return true;
    }

    /// <summary>Sends a message to every other worker.</summary>
    public void Broadcast(int from, in MeshMessage m)
    {
        for (int to = 0; to < _n; to++)
            if (to != from) Send(from, to, m);
    }

    /// <summary>Wakes the workers <paramref name="self"/> gave work to since the last call, if they sleep. Once per batch.</summary>
    public void WakeTargets(int self)
    {
        ulong mask = _w[self].WakeMask;
        if (mask == 0) return;
        _w[self].WakeMask = 0;
        Interlocked.MemoryBarrier(); // the enqueues before, the Sleeping reads after
        while (mask != 0)
        {
            int t = BitOperations.TrailingZeroCount(mask);
            mask &= mask - 1;
            if (Volatile.Read(ref _w[t].Sleeping) != 0) _wakers[t]?.Invoke();
        }
    }

    /// <summary>Called by a worker before it blocks: true when it may sleep (nothing waits for it). A worker that gets
    /// work after this is woken.</summary>
    public bool PrepareSleep(int self)
    {
        Volatile.Write(ref _w[self].Sleeping, 1);
        Interlocked.MemoryBarrier();
        if (!HasWork(self)) return true;
        Volatile.Write(ref _w[self].Sleeping, 0);
        return false;
    }

    /// <summary>Called by a worker when it wakes.</summary>
    public void Awake(int self) => Volatile.Write(ref _w[self].Sleeping, 0);

    /// <summary>True when packets or messages wait for <paramref name="self"/>.</summary>
    public bool HasWork(int self)
    {
        for (int i = 0; i < _n; i++)
        {
            if (i == self) continue;
            if (!_packets[i * _n + self].IsEmpty || !_messages[i * _n + self].IsEmpty) return true;
        }
        return false;
    }

    /// <summary>Applies every message waiting for <paramref name="self"/>. Returns how many.</summary>
    public int DrainMessages(int self, IMeshHandler handler)
    {
        int n = 0;
        for (int i = 0; i < _n; i++)
        {
            if (i == self) continue;
            SpscRing<MeshMessage> ring = _messages[i * _n + self];
            while (ring.TryDequeue(out MeshMessage m))
            {
                handler.Handle(m);
                n++;
            }
        }
        return n;
    }

    /// <summary>Frees the slots of <paramref name="self"/> that other workers have finished copying.</summary>
    public void DrainReturns(int self, PacketSlab slab)
    {
        int row = Row(self);
        for (int i = 0; i < _n; i++)
        {
            if (i == self) continue;
            SpscRing<int> ring = _returns[self * _n + i];
            int freed = 0;
            while (ring.TryDequeue(out int slot))
            {
                slab.Free(slot);
                freed++;
            }
            _outstanding[row + i] -= freed;
        }
    }

    /// <summary>Copies the packets other workers handed to <paramref name="self"/> into its own slab (metadata too) and
    /// appends them to <paramref name="into"/>, up to its capacity; the originals go back to their owners. A packet that
    /// finds no free slot here is dropped and counted.</summary>
    public int DrainPackets(int self, PacketSlab slab, PacketBatch into)
    {
        int got = 0;
        for (int i = 0; i < _n && into.Count < into.Capacity; i++)
        {
            if (i == self) continue;
            SpscRing<int> ring = _packets[i * _n + self];
            SpscRing<int> back = _returns[i * _n + self];
            PacketSlab src = _slabs[i]!;
            while (into.Count < into.Capacity && ring.TryDequeue(out int s))
            {
                ref PacketMeta sm = ref src.Meta[s];
                if (slab.TryAllocFrame(new ReadOnlySpan<byte>(src.SlotPointer(s) + sm.Offset, sm.Length), out int d))
                {
                    ref PacketMeta dm = ref slab.Meta[d];
                    int offset = dm.Offset;
                    dm = sm;
                    dm.Offset = offset;
                    into.Add(d);
                    if ((dm.Flags & PacketFlags.Traced) != 0) into.HasTraced = true;
                    got++;
                }
                else
                {
                    _w[self].CopiesDropped++;
                }
                // Never fails: the sender keeps at most the ring's size outstanding with us.
                back.TryEnqueue(s);
            }
        }
        return got;
    }

    /// <summary>Messages <paramref name="worker"/> could not send (ring full).</summary>
    public long MessagesDropped(int worker) => Volatile.Read(ref _w[worker].MessagesDropped);
    /// <summary>Packets <paramref name="worker"/> could not hand over (the receiver held a ring's worth).</summary>
    public long HandOffsRefused(int worker) => Volatile.Read(ref _w[worker].HandOffsRefused);
    /// <summary>Packets handed to <paramref name="worker"/> that it had no free slot for.</summary>
    public long CopiesDropped(int worker) => Volatile.Read(ref _w[worker].CopiesDropped);
}

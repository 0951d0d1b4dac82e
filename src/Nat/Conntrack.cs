using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>Connection states, named as <c>conntrack -L</c> shows them.</summary>
public enum CtState : byte
{
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    /// <summary>UDP, ICMP and other protocols: no reply seen yet.</summary>
    Unreplied,
    /// <summary>UDP, ICMP and other protocols: a reply was seen.</summary>
    Replied,
}

[Flags]
public enum CtStatus : byte
{
    None = 0,
    SeenReply = 1 << 0,
    /// <summary>Traffic seen both ways (and for TCP the handshake completed): kept longer, never early-dropped.</summary>
    Assured = 1 << 1,
    /// <summary>Destination rewritten (Service DNAT).</summary>
    DstNat = 1 << 2,
    /// <summary>Source rewritten (masquerade, hairpin, implicit port remap).</summary>
    SrcNat = 1 << 3,
    /// <summary>Picked up mid-stream (TCP without the SYN, like nf_conntrack_tcp_loose).</summary>
    Loose = 1 << 4,
    /// <summary>The reply tuple belongs to another worker, which was told to hand the replies here.</summary>
    Redirected = 1 << 5,
    /// <summary>The original tuple belongs to another worker (a Service connection decided there and created here, with
    /// its reply tuple), which was told to hand the originator's packets here.</summary>
    RedirectedOrig = 1 << 6,
}

/// <summary>A policy stage's decision about a connection, made once and kept in its entry.</summary>
public enum CtVerdict : byte
{
    /// <summary>No policy stage has decided (none runs, or not yet).</summary>
    None,
    Allow,
    Deny,
}

/// <summary>Why an endpoint was chosen (shown by the CLI and the trace).</summary>
public enum CtRule : byte
{
    None,
    Random,
    Affinity,
    LocalPolicy,
    Fallback,
    Masquerade,
}

/// <summary>Timeouts per protocol and state. Defaults are what a Kubernetes node runs (kube-proxy sets the TCP
/// established and close-wait values; the rest are the kernel's).</summary>
public sealed record ConntrackTimeouts
{
    public TimeSpan TcpSynSent { get; init; } = TimeSpan.FromSeconds(120);
    public TimeSpan TcpSynRecv { get; init; } = TimeSpan.FromSeconds(60);
    public TimeSpan TcpEstablished { get; init; } = TimeSpan.FromHours(24);
    public TimeSpan TcpFinWait { get; init; } = TimeSpan.FromSeconds(120);
    public TimeSpan TcpCloseWait { get; init; } = TimeSpan.FromHours(1);
    public TimeSpan TcpLastAck { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan TcpTimeWait { get; init; } = TimeSpan.FromSeconds(120);
    public TimeSpan TcpClose { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan UdpUnreplied { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan UdpAssured { get; init; } = TimeSpan.FromSeconds(120);
    public TimeSpan Icmp { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan Other { get; init; } = TimeSpan.FromSeconds(600);
}

/// <summary>One tracked connection. <see cref="Orig"/> is the first packet's tuple as it arrived; <see cref="Reply"/> is
/// the tuple a reply carries on arrival (after NAT: from the endpoint, to the masquerade address).</summary>
public struct CtEntry
{
    public FlowKey Orig;
    public FlowKey Reply;
    public long Expires;
    public long Created;
    public long Packets0, Packets1;
    public long Bytes0, Bytes1;
    public CtState State;
    public CtStatus Status;
    public CtRule Rule;
    /// <summary>TCP: FIN seen from the original (bit 0) and reply (bit 1) direction.</summary>
    public byte Fins;
    /// <summary>1 while the entry is in use.</summary>
    public byte Live;
    /// <summary>What a policy stage decided for the connection on its first packet (kept for the rest of it).</summary>
    public CtVerdict Verdict;
    /// <summary>A mark later stages may set and read (like the kernel's ct mark).</summary>
    public ushort Mark;

    public readonly bool IsNat => (Status & (CtStatus.DstNat | CtStatus.SrcNat)) != 0;
}

/// <summary>
/// The connection table: a fixed pool of entries, each indexed under both directions' tuples in one open-addressing
/// hash of 8-slot buckets (one 64-byte line of tags and one of references per bucket; the tags are compared eight at a
/// time). Per-bucket overflow counts end a probe at the first bucket nothing ever overflowed from, so misses stay short
/// without tombstones. Bounded: when the pool is full new connections are refused and counted.
/// Owned by one worker: lookups take no lock; expiry runs from <see cref="Sweep"/> between batches.
/// </summary>
public sealed class Conntrack
{
    private const int BucketSlots = 8;
    private const int MaxProbe = 64;

    private readonly CtEntry[] _entries;
    private readonly int[] _free;
    private int _freeCount;
    private readonly uint[] _tags;
    private readonly int[] _refs;
    private readonly ushort[] _overflow;
    private readonly int _bucketMask;
    private readonly long[] _timeoutTicks;
    private readonly ulong _salt;
    // The address index: every entry is on two doubly linked chains, one by its original source address (the client)
    // and one by its reply source address (the server, after DNAT the endpoint), each in a bucket by address hash. So
    // the connections of one address (a pod that goes, an endpoint that leaves a Service) are found without scanning the
    // table. Link slot 2e is the entry's chain by original source, 2e+1 its chain by reply source; -1 ends a chain.
    private readonly int[] _addrHead;
    private readonly int[] _addrNext;
    private readonly int[] _addrPrev;
    private readonly int _addrMask;

    public Conntrack(int capacity, ConntrackTimeouts timeouts, long ticksPerSecond, ulong? salt = null)
    {
        if (capacity < 16) throw new ArgumentOutOfRangeException(nameof(capacity), "at least 16 entries");
        Capacity = capacity;
        Timeouts = timeouts;
        TicksPerSecond = ticksPerSecond;
        _salt = salt ?? FlowHash.ProcessSalt;
        _entries = new CtEntry[capacity];
        _free = new int[capacity];
        for (int i = 0; i < capacity; i++) _free[i] = capacity - 1 - i;
        _freeCount = capacity;
        // Two references per entry at ≤ 50% load.
        int buckets = 1 << FlowHash.Log2Ceiling(Math.Max(2, capacity * 2 * 2 / BucketSlots));
        _bucketMask = buckets - 1;
        _tags = GC.AllocateUninitializedArray<uint>(buckets * BucketSlots, pinned: true);
        Array.Clear(_tags);
        _refs = new int[buckets * BucketSlots];
        _overflow = new ushort[buckets];
        int addrBuckets = 1 << FlowHash.Log2Ceiling(Math.Max(16, capacity / 2));
        _addrMask = addrBuckets - 1;
        _addrHead = new int[addrBuckets];
        Array.Fill(_addrHead, -1);
        _addrNext = new int[capacity * 2];
        _addrPrev = new int[capacity * 2];
        _timeoutTicks = new long[(int)CtState.Replied + 2];
        long T(TimeSpan t) => (long)(t.TotalSeconds * ticksPerSecond);
        _timeoutTicks[(int)CtState.SynSent] = T(timeouts.TcpSynSent);
        _timeoutTicks[(int)CtState.SynRecv] = T(timeouts.TcpSynRecv);
        _timeoutTicks[(int)CtState.Established] = T(timeouts.TcpEstablished);
        _timeoutTicks[(int)CtState.FinWait] = T(timeouts.TcpFinWait);
        _timeoutTicks[(int)CtState.CloseWait] = T(timeouts.TcpCloseWait);
        _timeoutTicks[(int)CtState.LastAck] = T(timeouts.TcpLastAck);
        _timeoutTicks[(int)CtState.TimeWait] = T(timeouts.TcpTimeWait);
        _timeoutTicks[(int)CtState.Close] = T(timeouts.TcpClose);
        UdpUnrepliedTicks = T(timeouts.UdpUnreplied);
        UdpAssuredTicks = T(timeouts.UdpAssured);
        IcmpTicks = T(timeouts.Icmp);
        OtherTicks = T(timeouts.Other);
    }

    public int Capacity { get; }
    public ConntrackTimeouts Timeouts { get; }
    public long TicksPerSecond { get; }
    public int Count => Capacity - _freeCount;
    public ulong Salt => _salt;
    internal long UdpUnrepliedTicks { get; }
    internal long UdpAssuredTicks { get; }
    internal long IcmpTicks { get; }
    internal long OtherTicks { get; }
    /// <summary>Buckets in the index (for tests and the status view).</summary>
    public int Buckets => _bucketMask + 1;

    public ref CtEntry this[int entry] => ref _entries[entry];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Hash(in FlowKey key) => FlowHash.Symmetric(key, _salt);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint TagOf(ulong hash) => (uint)(hash >> 32) | 1u;

    /// <summary>Finds the entry a packet with tuple <paramref name="key"/> belongs to. Returns entry * 2 + direction
    /// (0 original, 1 reply), or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Lookup(in FlowKey key, ulong hash)
    {
        uint tag = TagOf(hash);
        int b = (int)hash & _bucketMask;
        ref uint tags = ref _tags[0];
        for (int probe = 0; probe < MaxProbe; probe++)
        {
            int slot0 = b * BucketSlots;
            uint mask = Vector256.Equals(Vector256.LoadUnsafe(ref tags, (nuint)slot0), Vector256.Create(tag)).ExtractMostSignificantBits();
            while (mask != 0)
            {
                int i = slot0 + BitOperations.TrailingZeroCount(mask);
                mask &= mask - 1;
                int r = _refs[i];
                ref CtEntry e = ref _entries[r >> 1];
                if ((r & 1) == 0 ? e.Orig.Equals(key) : e.Reply.Equals(key)) return r;
            }
            if (_overflow[b] == 0) return -1;
            b = (b + 1) & _bucketMask;
        }
        return -1;
    }

    /// <summary>True when some entry already uses <paramref name="key"/> in either direction.</summary>
    public bool InUse(in FlowKey key) => Lookup(key, Hash(key)) >= 0;

    /// <summary><see cref="Create(in FlowKey, ulong, in FlowKey, CtState, long)"/> failed: no free entry.</summary>
    public const int Full = -1;
    /// <summary>Create failed: the original tuple already belongs to a connection.</summary>
    public const int OrigInUse = -2;
    /// <summary>Create failed: the reply tuple already belongs to a connection (the caller may remap a port and retry).</summary>
    public const int ReplyInUse = -3;

    public int Create(in FlowKey orig, in FlowKey reply, CtState state, long now) => Create(orig, Hash(orig), reply, state, now);

    /// <summary>Creates an entry under both tuples (<paramref name="origHash"/> is <see cref="Hash"/> of the original,
    /// which the caller has from its lookup). Returns the entry index, or <see cref="Full"/>, <see cref="OrigInUse"/>,
    /// <see cref="ReplyInUse"/>.</summary>
    public int Create(in FlowKey orig, ulong origHash, in FlowKey reply, CtState state, long now)
    {
        if (_freeCount == 0) return Full;
        ulong hr = Hash(reply);
        if (Lookup(reply, hr) >= 0) return ReplyInUse;
        if (Lookup(orig, origHash) >= 0) return OrigInUse;
        int e = _free[--_freeCount];
        ref CtEntry x = ref _entries[e];
        x = default;
        x.Orig = orig;
        x.Reply = reply;
        x.State = state;
        x.Created = now;
        x.Live = 1;
        x.Expires = now + TimeoutFor(ref x);
        if (!Insert(origHash, e * 2) || !Insert(hr, e * 2 + 1))
        {
            Remove(origHash, e * 2);
            Remove(hr, e * 2 + 1);
            x.Live = 0;
            _free[_freeCount++] = e;
            return Full;
        }
        Link(e * 2, orig.Src);
        Link(e * 2 + 1, reply.Src);
        return e;
    }

    private bool Insert(ulong hash, int r)
    {
        int home = (int)hash & _bucketMask;
        int b = home;
        for (int probe = 0; probe < MaxProbe; probe++)
        {
            int slot0 = b * BucketSlots;
            for (int i = slot0; i < slot0 + BucketSlots; i++)
            {
                if (_tags[i] != 0) continue;
                _tags[i] = TagOf(hash);
                _refs[i] = r;
                for (int o = home; o != b; o = (o + 1) & _bucketMask) _overflow[o]++;
                return true;
            }
            b = (b + 1) & _bucketMask;
        }
        return false;
    }

    private void Remove(ulong hash, int r)
    {
        int home = (int)hash & _bucketMask;
        int b = home;
        for (int probe = 0; probe < MaxProbe; probe++)
        {
            int slot0 = b * BucketSlots;
            for (int i = slot0; i < slot0 + BucketSlots; i++)
            {
                if (_tags[i] == 0 || _refs[i] != r) continue;
                _tags[i] = 0;
                for (int o = home; o != b; o = (o + 1) & _bucketMask) _overflow[o]--;
                return;
            }
            b = (b + 1) & _bucketMask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int AddrBucket(uint address) => (int)(FlowHash.Mix(address ^ _salt) & (ulong)_addrMask);

    private void Link(int slot, uint address)
    {
        ref int head = ref _addrHead[AddrBucket(address)];
        _addrPrev[slot] = -1;
        _addrNext[slot] = head;
        if (head >= 0) _addrPrev[head] = slot;
        head = slot;
    }

    private void Unlink(int slot, uint address)
    {
        int next = _addrNext[slot], prev = _addrPrev[slot];
        if (prev >= 0) _addrNext[prev] = next;
        else _addrHead[AddrBucket(address)] = next;
        if (next >= 0) _addrPrev[next] = prev;
    }

    /// <summary>The live entries that have <paramref name="address"/> as their original or reply source (at either end
    /// of the connection, before or after NAT: the client, and the server or endpoint), each once, found through the
    /// address index without scanning the table. Control plane, on the worker.</summary>
    public List<int> EntriesOf(uint address)
    {
        var found = new List<int>();
        for (int slot = _addrHead[AddrBucket(address)]; slot >= 0; slot = _addrNext[slot])
        {
            ref CtEntry x = ref _entries[slot >> 1];
            if (x.Live == 0) continue;
            bool orig = (slot & 1) == 0;
            if (orig ? x.Orig.Src == address : x.Reply.Src == address && x.Orig.Src != address) found.Add(slot >> 1);
        }
        return found;
    }

    /// <summary>Deletes every connection with one of <paramref name="addresses"/> at either end (see <see cref="EntriesOf"/>;
    /// an un-NATed connection's destination is its reply source, a masqueraded one's source its original source).
    /// Returns how many.</summary>
    public int DeleteAddresses(IEnumerable<uint> addresses)
    {
        int n = 0;
        foreach (uint a in addresses)
        {
            foreach (int e in EntriesOf(a))
            {
                if (_entries[e].Live == 0) continue;
                Delete(e);
                n++;
            }
        }
        return n;
    }

    private void Release(int e, ulong ho, ulong hr)
    {
        Unlink(e * 2, _entries[e].Orig.Src);
        Unlink(e * 2 + 1, _entries[e].Reply.Src);
        Remove(ho, e * 2);
        Remove(hr, e * 2 + 1);
        _entries[e].Live = 0;
        _free[_freeCount++] = e;
    }

    public delegate void EntryAction(in CtEntry e);

    /// <summary>Called for an entry marked <see cref="CtStatus.Redirected"/> or <see cref="CtStatus.RedirectedOrig"/> as it
    /// is deleted (other workers must forget it).</summary>
    public EntryAction? Removing { get; set; }

    /// <summary>Removes an entry from the table.</summary>
    public void Delete(int e)
    {
        ref CtEntry x = ref _entries[e];
        if (x.Live == 0) return;
        if ((x.Status & (CtStatus.Redirected | CtStatus.RedirectedOrig)) != 0) Removing?.Invoke(in x);
        Release(e, Hash(x.Orig), Hash(x.Reply));
    }

    private int _sweepCursor;

    /// <summary>Deletes every expired entry in one pass over the table (tests, shutdown). Returns how many.</summary>
    public int Sweep(long now) => SweepStep(now, _entries.Length);

    /// <summary>Deletes the expired entries among the next <paramref name="budget"/> of the table, from where the last
    /// step stopped (wrapping): expiry costs a bounded amount per call, never a whole-table sweep. An expired entry a
    /// packet meets before the sweep reaches it is treated as gone (<see cref="IsExpired"/>). Returns how many.</summary>
    public int SweepStep(long now, int budget)
    {
        int n = 0;
        CtEntry[] entries = _entries;
        int e = _sweepCursor;
        for (int i = Math.Min(budget, entries.Length); i > 0; i--)
        {
            if (entries[e].Live != 0 && entries[e].Expires <= now)
            {
                Delete(e);
                n++;
            }
            if (++e == entries.Length) e = 0;
        }
        _sweepCursor = e;
        return n;
    }

    /// <summary>True when entry <paramref name="e"/> has timed out (it may not have been swept yet).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsExpired(int e, long now) => _entries[e].Expires <= now;

    /// <summary>Deletes the entries <paramref name="evict"/> selects (live endpoint removal). Returns how many.</summary>
    public int DeleteWhere(Func<CtEntry, bool> evict)
    {
        int n = 0;
        for (int e = 0; e < _entries.Length; e++)
        {
            if (_entries[e].Live != 0 && evict(_entries[e]))
            {
                Delete(e);
                n++;
            }
        }
        return n;
    }

    /// <summary>The live entries with their indices (control plane; runs on the worker).</summary>
    public List<(int Index, CtEntry Entry)> Snapshot(int max = int.MaxValue)
    {
        var list = new List<(int, CtEntry)>();
        for (int e = 0; e < _entries.Length && list.Count < max; e++)
            if (_entries[e].Live != 0) list.Add((e, _entries[e]));
        return list;
    }

    /// <summary>The idle timeout the entry's protocol and state get now.</summary>
    public long TimeoutFor(ref CtEntry e) => e.Orig.Proto switch
    {
        IpProtocol.Tcp => _timeoutTicks[(int)e.State],
        IpProtocol.Udp => (e.Status & CtStatus.Assured) != 0 ? UdpAssuredTicks : UdpUnrepliedTicks,
        IpProtocol.Icmp => IcmpTicks,
        _ => OtherTicks,
    };

    /// <summary>Follows a TCP packet of <paramref name="dir"/> through the state machine (RFC 793 connection states as
    /// the kernel's conntrack names them; no sequence window checks, like nf_conntrack_tcp_be_liberal). Returns false
    /// for an invalid packet, which the caller drops. A SYN on a closed connection reopens it.</summary>
    public static bool TcpTransition(ref CtEntry e, int dir, TcpFlags flags)
    {
        bool syn = (flags & TcpFlags.Syn) != 0, ack = (flags & TcpFlags.Ack) != 0;
        bool fin = (flags & TcpFlags.Fin) != 0, rst = (flags & TcpFlags.Rst) != 0;
        if (rst)
        {
            e.State = CtState.Close;
            return true;
        }
        switch (e.State)
        {
            case CtState.SynSent:
                if (dir == 1 && syn && ack) e.State = CtState.SynRecv;
                else if (dir == 1 && syn) e.State = CtState.SynRecv; // simultaneous open
                return true;
            case CtState.SynRecv:
                if (dir == 0 && ack && !syn)
                {
                    e.State = CtState.Established;
                    e.Status |= CtStatus.Assured;
                }
                if (fin) goto default;
                return true;
            case CtState.TimeWait:
            case CtState.Close:
                if (dir == 0 && syn && !ack)
                {
                    e.State = CtState.SynSent;
                    e.Fins = 0;
                    e.Status &= ~(CtStatus.SeenReply | CtStatus.Assured);
                }
                return true;
            default:
                if (fin)
                {
                    e.Fins |= (byte)(1 << dir);
                    e.State = e.Fins == 3 ? CtState.LastAck : CtState.FinWait;
                }
                else if (ack)
                {
                    // The ACK of the other side's FIN.
                    int other = 1 << (1 - dir);
                    if (e.State == CtState.FinWait && (e.Fins & other) != 0 && (e.Fins & (1 << dir)) == 0) e.State = CtState.CloseWait;
                    else if (e.State == CtState.LastAck) e.State = CtState.TimeWait;
                }
                return true;
        }
    }

    /// <summary>TCP flag combinations no stack sends (the kernel's tcp_valid_flags): invalid before any state.</summary>
    public static bool ValidTcpFlags(TcpFlags flags)
    {
        flags &= TcpFlags.Syn | TcpFlags.Ack | TcpFlags.Fin | TcpFlags.Rst | TcpFlags.Psh | TcpFlags.Urg;
        if (flags == 0) return false;
        if ((flags & TcpFlags.Syn) != 0 && (flags & (TcpFlags.Fin | TcpFlags.Rst)) != 0) return false;
        if ((flags & (TcpFlags.Fin | TcpFlags.Ack)) == TcpFlags.Fin) return false;
        return true;
    }
}

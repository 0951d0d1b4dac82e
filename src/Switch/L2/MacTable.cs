using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.L2;

public enum LearnResult
{
    Refreshed,
    Learned,
    Moved,
    Full,
    StaticMismatch,
}

/// <summary>
/// The bridge's forwarding database: (VLAN, MAC) → port, with aging, moves and static entries. Open addressing with
/// linear probing over a power-of-two array at most half full; a salted hash so hostile MAC patterns cannot force long
/// probe chains. Bounded: past <see cref="MaxEntries"/> new MACs are refused (counted by the caller).
/// Single writer (the worker that owns the bridge); expired entries read as misses and are removed by <see cref="Sweep"/>
/// off the fast path.
/// </summary>
public sealed class MacTable
{
    private const ulong Occupied = 1UL << 63;
    private const int StaticFlag = 1;

    private readonly Entry[] _entries;
    private readonly int _mask;
    private readonly ulong _salt;

    public MacTable(int maxEntries, long agingTicks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxEntries, 1);
        MaxEntries = maxEntries;
        AgingTicks = agingTicks;
        int size = (int)Math.Max(16, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)maxEntries * 2));
        _entries = new Entry[size];
        _mask = size - 1;
        _salt = (ulong)RandomNumberGenerator.GetInt32(int.MaxValue) << 32 | (uint)RandomNumberGenerator.GetInt32(int.MaxValue) | 1;
    }

    public int MaxEntries { get; }
    public long AgingTicks { get; set; }
    public int Count { get; private set; }

    private struct Entry
    {
        public ulong Key;
        public long LastSeen;
        public ushort Port;
        public int Flags;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong MakeKey(ulong mac, ushort vlan) => mac | ((ulong)vlan << 48) | Occupied;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Home(ulong key)
    {
        ulong h = (key ^ (key >> 29)) * _salt;
        return (int)(h >> 40) & _mask;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Find(ulong key)
    {
        Entry[] e = _entries;
        int i = Home(key);
        while (true)
        {
            ulong k = e[i].Key;
            if (k == key) return i;
            if (k == 0) return -1;
            i = (i + 1) & _mask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Expired(ref Entry e, long now) => (e.Flags & StaticFlag) == 0 && now - e.LastSeen > AgingTicks;

    /// <summary>Looks up the port for a destination; expired entries are misses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLookup(ulong mac, ushort vlan, long now, out ushort port)
    {
        int i = Find(MakeKey(mac, vlan));
        if (i >= 0 && !Expired(ref _entries[i], now))
        {
            port = _entries[i].Port;
            return true;
        }
        port = 0;
        return false;
    }

    /// <summary>Learns that <paramref name="mac"/> is behind <paramref name="port"/>.
    /// <paramref name="refreshTicks"/> limits how often a hit rewrites its timestamp (keeps the cache line clean).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public LearnResult Learn(ulong mac, ushort vlan, ushort port, long now, long refreshTicks, out ushort oldPort)
    {
        ulong key = MakeKey(mac, vlan);
        int i = Find(key);
        oldPort = port;
        if (i >= 0)
        {
            ref Entry e = ref _entries[i];
            if (e.Port == port)
            {
                if (now - e.LastSeen > refreshTicks) e.LastSeen = now;
                return LearnResult.Refreshed;
            }
            oldPort = e.Port;
            if ((e.Flags & StaticFlag) != 0) return LearnResult.StaticMismatch;
            bool wasExpired = Expired(ref e, now);
            e.Port = port;
            e.LastSeen = now;
            return wasExpired ? LearnResult.Learned : LearnResult.Moved;
        }
        return Insert(key, port, now, 0) ? LearnResult.Learned : LearnResult.Full;
    }

    private bool Insert(ulong key, ushort port, long now, int flags)
    {
        if (Count >= MaxEntries) return false;
        int i = Home(key);
        while (_entries[i].Key != 0) i = (i + 1) & _mask;
        _entries[i] = new Entry { Key = key, LastSeen = now, Port = port, Flags = flags };
        Count++;
        return true;
    }

    /// <summary>Adds or replaces a static entry (never ages, never moves). Returns false when the table is full.</summary>
    public bool AddStatic(MacAddress mac, ushort vlan, ushort port)
    {
        ulong key = MakeKey(mac.Value, vlan);
        int i = Find(key);
        if (i >= 0)
        {
            _entries[i].Port = port;
            _entries[i].Flags = StaticFlag;
            return true;
        }
        return Insert(key, port, 0, StaticFlag);
    }

    /// <summary>Removes expired dynamic entries (backward-shift deletion keeps probe chains intact). Returns how many.</summary>
    public int Sweep(long now) => RemoveWhere(now, static (t, ref e, now, _) => t.Expired(ref e, now), 0);

    /// <summary>Removes every entry on <paramref name="port"/>, static ones too (the port is going away). Returns how many.</summary>
    public int RemovePort(ushort port) => RemoveWhere(0, static (_, ref e, _, port) => e.Port == port, port);

    private delegate bool EntryPredicate(MacTable table, ref Entry e, long now, ushort port);

    private int RemoveWhere(long now, EntryPredicate remove, ushort port)
    {
        int removed = 0;
        // Start just after an empty slot so that no chain wraps past the starting point mid-deletion.
        int start = 0;
        while (_entries[start].Key != 0 && start < _mask) start++;
        for (int n = 0, i = start; n <= _mask; n++, i = (i + 1) & _mask)
        {
            ref Entry e = ref _entries[i];
            if (e.Key != 0 && remove(this, ref e, now, port))
            {
                RemoveAt(i);
                removed++;
                // The slot may now hold a shifted entry: look at it again.
                n--;
                i = (i - 1) & _mask;
            }
        }
        return removed;
    }

    private void RemoveAt(int i)
    {
        Entry[] e = _entries;
        int hole = i;
        int j = i;
        while (true)
        {
            j = (j + 1) & _mask;
            if (e[j].Key == 0) break;
            int home = Home(e[j].Key);
            // Move e[j] into the hole if its home is not cyclically in (hole, j].
            bool inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j;
            if (!inRange)
            {
                e[hole] = e[j];
                hole = j;
            }
        }
        e[hole] = default;
        Count--;
    }

    public readonly record struct View(MacAddress Mac, ushort Vlan, ushort Port, bool IsStatic, double AgeSeconds);

    /// <summary>Live (non-expired) entries, for the control plane.</summary>
    public List<View> Entries(long now, long ticksPerSecond)
    {
        var list = new List<View>(Count);
        foreach (Entry e in _entries)
        {
            if (e.Key == 0) continue;
            Entry copy = e;
            if (Expired(ref copy, now)) continue;
            bool isStatic = (e.Flags & StaticFlag) != 0;
            list.Add(new View(new MacAddress(e.Key & 0xFFFF_FFFF_FFFFUL), (ushort)((e.Key >> 48) & 0xFFF), e.Port, isStatic,
                isStatic ? 0 : (now - e.LastSeen) / (double)ticksPerSecond));
        }
        list.Sort((a, b) => a.Vlan != b.Vlan ? a.Vlan.CompareTo(b.Vlan) : a.Mac.CompareTo(b.Mac));
        return list;
    }
}

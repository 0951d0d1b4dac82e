using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.L3;

public enum NeighborState : byte
{
    /// <summary>Configured (a pod the switch created, the host port).</summary>
    Permanent,
    /// <summary>Learned from ARP.</summary>
    Reachable,
    /// <summary>Asked by ARP, no answer yet.</summary>
    Incomplete,
}

public struct Neighbor
{
    public ulong Mac;
    public ushort Port;
    public NeighborState State;
    public long Updated;
    public long FirstAsked;
    public long LastAsked;
}

/// <summary>IPv4 → MAC and port for the node's pod subnet and the host (the ARP cache). Worker-owned.</summary>
public sealed class NeighborTable
{
    private readonly Dictionary<uint, Neighbor> _entries = [];

    public NeighborTable(int capacity = 4096)
    {
        Capacity = capacity;
    }

    public int Capacity { get; }
    public int Count => _entries.Count;

    public ref Neighbor Find(uint ip) => ref CollectionsMarshal.GetValueRefOrNullRef(_entries, ip);

    public void AddPermanent(Ipv4Address ip, MacAddress mac, ushort port) =>
        _entries[ip.Value] = new Neighbor { Mac = mac.Value, Port = port, State = NeighborState.Permanent };

    /// <summary>Records what ARP told us. Permanent entries are kept. Returns false when the table is full.</summary>
    public bool Learn(uint ip, ulong mac, ushort port, long now)
    {
        ref Neighbor n = ref Find(ip);
        if (!Unsafe.IsNullRef(ref n))
        {
            if (n.State == NeighborState.Permanent) return true;
            n.Mac = mac;
            n.Port = port;
            n.State = NeighborState.Reachable;
            n.Updated = now;
            return true;
        }
        if (_entries.Count >= Capacity) return false;
        _entries[ip] = new Neighbor { Mac = mac, Port = port, State = NeighborState.Reachable, Updated = now };
        return true;
    }

    /// <summary>Marks <paramref name="ip"/> as being resolved (creates an incomplete entry if none exists).</summary>
    public ref Neighbor Pending(uint ip, long now)
    {
        ref Neighbor n = ref Find(ip);
        if (Unsafe.IsNullRef(ref n))
        {
            if (_entries.Count >= Capacity) return ref n;
            _entries[ip] = new Neighbor { State = NeighborState.Incomplete, FirstAsked = now, LastAsked = long.MinValue / 2, Port = Pipeline.PortIds.None };
            n = ref Find(ip);
        }
        return ref n;
    }

    /// <summary>Drops learned entries not refreshed for <paramref name="maxAge"/> ticks and incomplete ones older than it.</summary>
    public int Sweep(long now, long maxAge)
    {
        List<uint>? old = null;
        foreach (KeyValuePair<uint, Neighbor> kv in _entries)
        {
            Neighbor n = kv.Value;
            bool stale = n.State switch
            {
                NeighborState.Reachable => now - n.Updated > maxAge,
                NeighborState.Incomplete => now - n.FirstAsked > maxAge,
                _ => false,
            };
            if (stale) (old ??= []).Add(kv.Key);
        }
        if (old is null) return 0;
        foreach (uint k in old) _entries.Remove(k);
        return old.Count;
    }

    /// <summary>The addresses whose entries point at <paramref name="port"/> (resolved, permanent or learned).</summary>
    public List<uint> AddressesOn(ushort port) =>
        _entries.Where(kv => kv.Value.State != NeighborState.Incomplete && kv.Value.Port == port).Select(kv => kv.Key).ToList();

    /// <summary>Removes every entry on <paramref name="port"/>, permanent ones too (the port is going away). Returns how many.</summary>
    public int RemovePort(ushort port)
    {
        List<uint> gone = AddressesOn(port);
        foreach (uint ip in gone) _entries.Remove(ip);
        return gone.Count;
    }

    public List<(Ipv4Address Ip, Neighbor Entry)> Entries()
    {
        var list = _entries.Select(kv => (new Ipv4Address(kv.Key), kv.Value)).ToList();
        list.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return list;
    }
}

using VSwitch.Pipeline.Wire;

namespace VSwitch.Switch.L3;

public enum RouteKind : byte
{
    /// <summary>An address of the node itself (the gateway): delivered to the host port without a TTL decrement.</summary>
    Local,
    /// <summary>This node's pod subnet: delivered to the pod's port, its MAC resolved by ARP.</summary>
    Connected,
    /// <summary>Another node's pod subnet: sent over the overlay to that node's VTEP.</summary>
    Peer,
    /// <summary>Anything else: handed to the node's own stack (the host port), which routes it on.</summary>
    Host,
    /// <summary>Outside the cluster, with an uplink: sent from the node address (masqueraded) through the uplink.</summary>
    Uplink,
    /// <summary>No route (a cluster address no node owns): ICMP destination net unreachable.</summary>
    Unreachable,
}

/// <summary>One route: a prefix and what to do with packets for it.</summary>
public sealed record Route(Ipv4Prefix Prefix, RouteKind Kind, int Peer = -1, string Via = "")
{
    public override string ToString() => $"{Prefix} {Kind.ToString().ToLowerInvariant()}{(Via.Length > 0 ? " via " + Via : "")}";
}

/// <summary>
/// An immutable IPv4 longest-prefix-match table: one open-addressing hash table per prefix length present, probed from
/// the longest length down (a handful of probes for a cluster's /32, /24, /16 and /0). Built off the fast path and
/// swapped in whole, so lookups need no lock and see either the old or the new table.
/// </summary>
public sealed class RouteTable
{
    private readonly Route[] _routes;
    private readonly uint[] _masks;
    private readonly uint[][] _keys;
    private readonly int[][] _values;
    private readonly int[] _shifts;

    public RouteTable(IEnumerable<Route> routes)
    {
        _routes = [.. routes];
        var seen = new HashSet<Ipv4Prefix>();
        foreach (Route r in _routes)
            if (!seen.Add(r.Prefix)) throw new ArgumentException($"route {r.Prefix} appears twice", nameof(routes));
        int[] lengths = [.. _routes.Select(r => r.Prefix.Length).Distinct().OrderByDescending(l => l)];
        _masks = new uint[lengths.Length];
        _keys = new uint[lengths.Length][];
        _values = new int[lengths.Length][];
        _shifts = new int[lengths.Length];
        for (int li = 0; li < lengths.Length; li++)
        {
            int len = lengths[li];
            _masks[li] = Ipv4Prefix.MaskOf(len);
            int n = _routes.Count(r => r.Prefix.Length == len);
            int bits = 1;
            while ((1 << bits) < n * 2) bits++;
            _shifts[li] = 32 - bits;
            _keys[li] = new uint[1 << bits];
            int[] vals = _values[li] = new int[1 << bits];
            Array.Fill(vals, -1);
            for (int i = 0; i < _routes.Length; i++)
            {
                if (_routes[i].Prefix.Length != len) continue;
                uint key = _routes[i].Prefix.Address.Value;
                int mask = vals.Length - 1;
                int h = (int)((key * 0x9E37_79B1u) >> _shifts[li]);
                while (vals[h] >= 0) h = (h + 1) & mask;
                _keys[li][h] = key;
                vals[h] = i;
            }
        }
    }

    public static RouteTable Empty { get; } = new([]);

    public IReadOnlyList<Route> Routes => _routes;

    /// <summary>Index of the longest matching route for <paramref name="address"/> (host order), or -1.</summary>
    public int Lookup(uint address)
    {
        uint[] masks = _masks;
        for (int li = 0; li < masks.Length; li++)
        {
            uint key = address & masks[li];
            int[] vals = _values[li];
            uint[] keys = _keys[li];
            int mask = vals.Length - 1;
            int h = (int)((key * 0x9E37_79B1u) >> _shifts[li]);
            while (true)
            {
                int v = vals[h];
                if (v < 0) break;
                if (keys[h] == key) return v;
                h = (h + 1) & mask;
            }
        }
        return -1;
    }

    public Route this[int index] => _routes[index];
}

using System.Runtime.InteropServices;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Encap;

/// <summary>Settings of a node's VXLAN overlay.</summary>
public sealed record OverlayOptions
{
    public required Ipv4Address LocalAddress { get; init; }
    public ushort UdpPort { get; init; } = VxlanView.IanaPort;
    public uint Vni { get; init; } = 1;
    /// <summary>MTU of the underlay interface; inner IP packets may be this minus <see cref="OverlayPeer.Overhead"/>.</summary>
    public int UnderlayMtu { get; init; } = 1500;
    /// <summary>Flood-and-learn: learn inner source MAC → outer source address from received frames, and replicate
    /// broadcast and unknown unicast to every peer (Weave sleeve's model). Off: only static entries (flannel's model).</summary>
    public bool Learning { get; init; } = true;
    /// <summary>Accept frames from underlay addresses that are not configured peers (and add them as learned peers).</summary>
    public bool AcceptUnknownPeers { get; init; }
    public TimeSpan FdbAging { get; init; } = TimeSpan.FromSeconds(300);
    public int FdbCapacity { get; init; } = 16384;
    public int MaxPeers { get; init; } = 1024;

    /// <summary>Largest inner IPv4 packet that fits the underlay MTU in one datagram.</summary>
    public int OverlayMtu => UnderlayMtu - OverlayPeer.Overhead;
}

/// <summary>Result of teaching the overlay forwarding database one inner source MAC.</summary>
public enum FdbLearn : byte
{
    Refreshed,
    Learned,
    Moved,
    Full,
    /// <summary>A static entry for the MAC points at another peer; not changed.</summary>
    StaticKept,
}

/// <summary>One overlay forwarding entry: an inner MAC lives behind this peer.</summary>
public struct FdbEntry
{
    public int Peer;
    public bool IsStatic;
    public long Updated;
}

/// <summary>
/// A node's overlay state: its peers (configured or learned) and the forwarding database (inner MAC → peer), the
/// VXLAN device's "fdb" in kernel terms. Owned by the worker thread; the control plane reads it through the worker's
/// command queue.
/// </summary>
public sealed class Overlay
{
    private readonly Dictionary<uint, int> _byAddress = [];
    private readonly Dictionary<ulong, FdbEntry> _fdb = [];
    /// <summary>Peers by index (an index stays a peer's for its life; a removed peer's index is reused).</summary>
    private OverlayPeer?[] _slots = new OverlayPeer?[8];
    private int _slotLimit;
    /// <summary>The peers present, in index order (what flooding replicates to).</summary>
    private OverlayPeer[] _live = [];
    private ushort[] _sourcePorts = [];

    public Overlay(OverlayOptions options, long agingTicks)
    {
        Options = options;
        AgingTicks = agingTicks;
    }

    public OverlayOptions Options { get; }
    public long AgingTicks { get; }
    /// <summary>Port id of the tunnel port in the switch (set when the port is added).</summary>
    public ushort TunnelPort { get; set; } = Pipeline.PortIds.None;
    /// <summary>The peers present, configured and learned, in index order.</summary>
    public IReadOnlyList<OverlayPeer> Peers => _live;
    public int FdbCount => _fdb.Count;
    /// <summary>Learned peers forgotten after <see cref="AgingTicks"/> without a frame from them.</summary>
    public long PeersAgedOut { get; private set; }

    /// <summary>Makes the outer UDP source port one of <paramref name="ports"/> (the tunnel port's send sockets) instead of
    /// any port in 49152-65535, so runs of datagrams can leave as GSO sends from the socket bound to their port. Before
    /// the worker starts.</summary>
    public void UseSourcePorts(IReadOnlyList<ushort> ports) => _sourcePorts = [.. ports];

    /// <summary>The outer UDP source port for an inner flow hash (RFC 7348 §5): stable per flow, spread over flows.</summary>
    public ushort SourcePort(uint flowHash) =>
        _sourcePorts.Length > 0 ? _sourcePorts[flowHash % (uint)_sourcePorts.Length] : DefaultSourcePort(flowHash);

    /// <summary>A port in 49152-65535 from the flow hash.</summary>
    public static ushort DefaultSourcePort(uint flowHash) => (ushort)(0xC000 | (flowHash & 0x3FFF));

    /// <summary>Adds a peer (on the worker's thread, between batches) and returns its index. Its VTEP MAC, when given, is a
    /// static forwarding entry.</summary>
    public int AddPeer(string name, Ipv4Address address, Ipv4Prefix? podCidr, MacAddress vtepMac, bool isStatic = true)
    {
        if (_byAddress.ContainsKey(address.Value)) throw new ArgumentException($"peer address {address} is configured twice", nameof(address));
        if (_live.Length >= Options.MaxPeers) throw new InvalidOperationException($"at most {Options.MaxPeers} peers");
        int index = Array.IndexOf(_slots, null, 0, _slotLimit);
        if (index < 0)
        {
            index = _slotLimit++;
            if (index == _slots.Length) Array.Resize(ref _slots, _slots.Length * 2);
        }
        var p = new OverlayPeer(name, address, podCidr, vtepMac, Options.LocalAddress, Options.UdpPort, Options.Vni, isStatic) { Index = index };
        _slots[index] = p;
        _byAddress[address.Value] = index;
        if (!vtepMac.IsZero) _fdb[vtepMac.Value] = new FdbEntry { Peer = index, IsStatic = true };
        Relist();
        return index;
    }

    /// <summary>Replaces peer <paramref name="index"/> with a new underlay address, pod subnet or VTEP MAC (a node that
    /// moved or was renumbered): its prebuilt outer header is rebuilt, its static forwarding entry follows, learned ones
    /// stay with the index; its counters carry over.</summary>
    public void UpdatePeer(int index, Ipv4Address address, Ipv4Prefix? podCidr, MacAddress vtepMac)
    {
        OverlayPeer old = PeerAt(index) ?? throw new ArgumentOutOfRangeException(nameof(index), "no such peer");
        if (address != old.Address && _byAddress.ContainsKey(address.Value)) throw new ArgumentException($"peer address {address} is used by another peer", nameof(address));
        var p = new OverlayPeer(old.Name, address, podCidr, vtepMac, Options.LocalAddress, Options.UdpPort, Options.Vni, old.IsStatic) { Index = index };
        p.TakeCounters(old);
        _byAddress.Remove(old.Address.Value);
        _byAddress[address.Value] = index;
        if (!old.VtepMac.IsZero && _fdb.TryGetValue(old.VtepMac.Value, out FdbEntry e) && e.IsStatic && e.Peer == index) _fdb.Remove(old.VtepMac.Value);
        if (!vtepMac.IsZero) _fdb[vtepMac.Value] = new FdbEntry { Peer = index, IsStatic = true };
        _slots[index] = p;
        Relist();
    }

    /// <summary>Removes peer <paramref name="index"/> and every forwarding entry behind it (static and learned), so its
    /// index can be reused. Returns how many forwarding entries went.</summary>
    public int RemovePeer(int index)
    {
        OverlayPeer p = PeerAt(index) ?? throw new ArgumentOutOfRangeException(nameof(index), "no such peer");
        _byAddress.Remove(p.Address.Value);
        List<ulong> gone = _fdb.Where(kv => kv.Value.Peer == index).Select(kv => kv.Key).ToList();
        foreach (ulong mac in gone) _fdb.Remove(mac);
        _slots[index] = null;
        while (_slotLimit > 0 && _slots[_slotLimit - 1] is null) _slotLimit--;
        Relist();
        return gone.Count;
    }

    private void Relist()
    {
        var live = new List<OverlayPeer>(_slotLimit);
        for (int i = 0; i < _slotLimit; i++)
            if (_slots[i] is { } p) live.Add(p);
        _live = [.. live];
    }

    public bool TryGetPeer(uint address, out int index) => _byAddress.TryGetValue(address, out index);

    /// <summary>The index of the peer named <paramref name="name"/>, or -1.</summary>
    public int IndexOf(string name)
    {
        foreach (OverlayPeer p in _live) if (p.Name == name) return p.Index;
        return -1;
    }

    public OverlayPeer Peer(int index) => _slots[index]!;

    /// <summary>The peer at <paramref name="index"/>, or null (never was, or removed).</summary>
    public OverlayPeer? PeerAt(int index) => (uint)index < (uint)_slotLimit ? _slots[index] : null;

    /// <summary>Looks up the peer an inner destination MAC lives behind (static, or learned and not aged out).</summary>
    public bool TryLookup(ulong mac, long now, out int peer)
    {
        ref FdbEntry e = ref CollectionsMarshal.GetValueRefOrNullRef(_fdb, mac);
        if (!System.Runtime.CompilerServices.Unsafe.IsNullRef(ref e) && (e.IsStatic || now - e.Updated < AgingTicks))
        {
            peer = e.Peer;
            return true;
        }
        peer = -1;
        return false;
    }

    /// <summary>Learns that <paramref name="mac"/> is behind <paramref name="peer"/>. Allocates only when the table grows;
    /// bounded by <see cref="OverlayOptions.FdbCapacity"/> (past it new MACs are refused and counted by the caller).</summary>
    public FdbLearn Learn(ulong mac, int peer, long now)
    {
        ref FdbEntry e = ref CollectionsMarshal.GetValueRefOrNullRef(_fdb, mac);
        if (!System.Runtime.CompilerServices.Unsafe.IsNullRef(ref e))
        {
            if (e.IsStatic) return e.Peer == peer ? FdbLearn.Refreshed : FdbLearn.StaticKept;
            FdbLearn r = e.Peer == peer ? FdbLearn.Refreshed : FdbLearn.Moved;
            e.Peer = peer;
            e.Updated = now;
            return r;
        }
        if (_fdb.Count >= Options.FdbCapacity) return FdbLearn.Full;
        _fdb[mac] = new FdbEntry { Peer = peer, Updated = now };
        return FdbLearn.Learned;
    }

    /// <summary>Removes learned forwarding entries older than the aging time, and learned peers (accepted from unknown
    /// underlay addresses) not heard from for as long, with what was learned behind them; returns how many entries and
    /// peers went (housekeeping, between batches).</summary>
    public int Sweep(long now)
    {
        List<ulong>? old = null;
        foreach (KeyValuePair<ulong, FdbEntry> kv in _fdb)
        {
            if (!kv.Value.IsStatic && now - kv.Value.Updated >= AgingTicks) (old ??= []).Add(kv.Key);
        }
        int n = 0;
        if (old is not null)
        {
            foreach (ulong k in old) _fdb.Remove(k);
            n += old.Count;
        }
        foreach (OverlayPeer p in _live)
        {
            if (p.IsStatic || now - Math.Max(p.LastSeen, p.Created) < AgingTicks) continue;
            n += RemovePeer(p.Index) + 1;
            PeersAgedOut++;
        }
        return n;
    }

    /// <summary>A copy of the forwarding database (control plane).</summary>
    public List<(MacAddress Mac, OverlayPeer Peer, bool IsStatic, long Updated)> FdbEntries()
    {
        var list = new List<(MacAddress, OverlayPeer, bool, long)>(_fdb.Count);
        foreach (KeyValuePair<ulong, FdbEntry> kv in _fdb)
            if (PeerAt(kv.Value.Peer) is { } p) list.Add((new MacAddress(kv.Key), p, kv.Value.IsStatic, kv.Value.Updated));
        list.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return list;
    }
}

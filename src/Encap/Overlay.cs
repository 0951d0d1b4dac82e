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
    private readonly List<OverlayPeer> _peers = [];
    private readonly Dictionary<uint, int> _byAddress = [];
    private readonly Dictionary<ulong, FdbEntry> _fdb = [];
    private OverlayPeer[] _peerArray = [];
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
    /// <summary>All peers, static first; indexes are stable (peers are never removed while the worker runs).</summary>
    public IReadOnlyList<OverlayPeer> Peers => _peerArray;
    public int FdbCount => _fdb.Count;

    /// <summary>Makes the outer UDP source port one of <paramref name="ports"/> (the tunnel port's send sockets) instead of
    /// any port in 49152-65535, so runs of datagrams can leave as GSO sends from the socket bound to their port. Before
    /// the worker starts.</summary>
    public void UseSourcePorts(IReadOnlyList<ushort> ports) => _sourcePorts = [.. ports];

    /// <summary>The outer UDP source port for an inner flow hash (RFC 7348 §5): stable per flow, spread over flows.</summary>
    public ushort SourcePort(uint flowHash) =>
        _sourcePorts.Length > 0 ? _sourcePorts[flowHash % (uint)_sourcePorts.Length] : DefaultSourcePort(flowHash);

    /// <summary>A port in 49152-65535 from the flow hash.</summary>
    public static ushort DefaultSourcePort(uint flowHash) => (ushort)(0xC000 | (flowHash & 0x3FFF));

    public int AddPeer(string name, Ipv4Address address, Ipv4Prefix? podCidr, MacAddress vtepMac, bool isStatic = true)
    {
        if (_byAddress.ContainsKey(address.Value)) throw new ArgumentException($"peer address {address} is configured twice", nameof(address));
        if (_peers.Count >= Options.MaxPeers) throw new InvalidOperationException($"at most {Options.MaxPeers} peers");
        var p = new OverlayPeer(name, address, podCidr, vtepMac, Options.LocalAddress, Options.UdpPort, Options.Vni, isStatic);
        int index = _peers.Count;
        _peers.Add(p);
        _peerArray = [.. _peers];
        _byAddress[address.Value] = index;
        if (!vtepMac.IsZero) _fdb[vtepMac.Value] = new FdbEntry { Peer = index, IsStatic = true };
        return index;
    }

    public bool TryGetPeer(uint address, out int index) => _byAddress.TryGetValue(address, out index);

    public OverlayPeer Peer(int index) => _peerArray[index];

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

    /// <summary>Learns that <paramref name="mac"/> is behind <paramref name="peer"/>. Allocates only when the table grows.</summary>
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

    /// <summary>Removes learned entries older than the aging time; returns how many (control plane / housekeeping).</summary>
    public int Sweep(long now)
    {
        List<ulong>? old = null;
        foreach (KeyValuePair<ulong, FdbEntry> kv in _fdb)
        {
            if (!kv.Value.IsStatic && now - kv.Value.Updated >= AgingTicks) (old ??= []).Add(kv.Key);
        }
        if (old is null) return 0;
        foreach (ulong k in old) _fdb.Remove(k);
        return old.Count;
    }

    /// <summary>A copy of the forwarding database (control plane).</summary>
    public List<(MacAddress Mac, OverlayPeer Peer, bool IsStatic, long Updated)> FdbEntries()
    {
        var list = new List<(MacAddress, OverlayPeer, bool, long)>(_fdb.Count);
        foreach (KeyValuePair<ulong, FdbEntry> kv in _fdb) list.Add((new MacAddress(kv.Key), _peerArray[kv.Value.Peer], kv.Value.IsStatic, kv.Value.Updated));
        list.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return list;
    }
}

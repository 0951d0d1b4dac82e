namespace VSwitch.Pipeline.Stages;

/// <summary>
/// The ports of one worker by id. Changed only on the worker's thread (before it starts, or between batches through its
/// command queue), so stages read it without locks. Ids of removed ports are reused oldest first, and only after the
/// port's learned state (MAC, neighbor and connection entries) has been flushed by whoever removed it.
/// </summary>
public sealed class PortTable : ITraceNames
{
    private IPacketPort?[] _ports = new IPacketPort?[16];
    private PortRole[] _roles = new PortRole[16];
    private readonly Queue<ushort> _freeIds = new();

    /// <summary>Ports present.</summary>
    public int Count { get; private set; }
    /// <summary>One more than the highest id in use or ever used: loops over ports run to this and skip the holes.</summary>
    public int Limit { get; private set; }
    /// <summary>Changes with every add and remove, so stages can rebuild what they derived from the table.</summary>
    public int Version { get; private set; }

    public IPacketPort? this[int id] => (uint)id < (uint)_ports.Length ? _ports[id] : null;

    /// <summary>The id the next <see cref="Add"/> without an explicit id will take.</summary>
    public ushort NextId => _freeIds.Count > 0 ? _freeIds.Peek() : (ushort)Limit;

    /// <summary>Adds a port under the next free id, or under <paramref name="id"/> (which must be free): every worker of a
    /// switch gives a port the same id.</summary>
    public ushort Add(IPacketPort port, PortRole role = PortRole.Access, int id = -1)
    {
        if (id < 0) id = NextId;
        if (id >= PortIds.MaxPorts || Count >= PortIds.MaxPorts) throw new InvalidOperationException($"at most {PortIds.MaxPorts} ports");
        if (this[id] is not null) throw new InvalidOperationException($"port id {id} is in use");
        if (_freeIds.Count > 0 && _freeIds.Peek() == id) _freeIds.Dequeue();
        else if (id < Limit) RemoveFreeId((ushort)id);
        if (id >= _ports.Length)
        {
            int n = Math.Max(_ports.Length * 2, id + 1);
            Array.Resize(ref _ports, n);
            Array.Resize(ref _roles, n);
        }
        for (int gap = Limit; gap < id; gap++) _freeIds.Enqueue((ushort)gap);
        _ports[id] = port;
        _roles[id] = role;
        port.Id = (ushort)id;
        Count++;
        Limit = Math.Max(Limit, id + 1);
        Version++;
        return (ushort)id;
    }

    private void RemoveFreeId(ushort id)
    {
        int n = _freeIds.Count;
        for (int i = 0; i < n; i++)
        {
            ushort x = _freeIds.Dequeue();
            if (x != id) _freeIds.Enqueue(x);
        }
    }

    /// <summary>Removes port <paramref name="id"/>; its id becomes free. Returns the port (null when there was none).</summary>
    public IPacketPort? Remove(int id)
    {
        IPacketPort? p = this[id];
        if (p is null) return null;
        _ports[id] = null;
        _roles[id] = PortRole.Access;
        _freeIds.Enqueue((ushort)id);
        Count--;
        Version++;
        return p;
    }

    /// <summary>The role of port <paramref name="id"/> (Access for ids that are not ports).</summary>
    public PortRole Role(int id) => (uint)id < (uint)Limit ? _roles[id] : PortRole.Access;

    public IEnumerable<IPacketPort> All()
    {
        for (int i = 0; i < Limit; i++)
            if (_ports[i] is { } p) yield return p;
    }

    public IPacketPort? Find(string name)
    {
        for (int i = 0; i < Limit; i++) if (_ports[i] is { } p && p.Name == name) return p;
        return null;
    }

    public string PortName(int port) => port switch
    {
        PortIds.Flood => "flood",
        PortIds.None => "none",
        _ => this[port]?.Name ?? $"port-{port}",
    };
}

/// <summary>What a port is to the switch.</summary>
public enum PortRole : byte
{
    /// <summary>A pod (or any L2 endpoint): bridged, and routed through the gateway.</summary>
    Access,
    /// <summary>The node's own network stack (host-side interface carrying the gateway address).</summary>
    Host,
    /// <summary>The overlay underlay socket: frames arrive and leave VXLAN-encapsulated.</summary>
    Tunnel,
    /// <summary>The node's uplink: IPv4 to and from outside the cluster on the node address; routed only, never flooded.</summary>
    Uplink,
}

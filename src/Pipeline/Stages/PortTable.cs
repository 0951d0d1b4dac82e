namespace VSwitch.Pipeline.Stages;

/// <summary>The ports of one switch by id. Changed only by the control plane before the worker starts.</summary>
public sealed class PortTable : ITraceNames
{
    private IPacketPort?[] _ports = new IPacketPort?[16];
    private PortRole[] _roles = new PortRole[16];

    public int Count { get; private set; }

    public IPacketPort? this[int id] => id < _ports.Length ? _ports[id] : null;

    public ushort Add(IPacketPort port, PortRole role = PortRole.Access)
    {
        if (Count >= PortIds.MaxPorts) throw new InvalidOperationException($"at most {PortIds.MaxPorts} ports");
        if (Count == _ports.Length)
        {
            Array.Resize(ref _ports, _ports.Length * 2);
            Array.Resize(ref _roles, _ports.Length);
        }
        ushort id = (ushort)Count++;
        _ports[id] = port;
        _roles[id] = role;
        port.Id = id;
        return id;
    }

    /// <summary>The role of port <paramref name="id"/> (Access for ids that are not ports).</summary>
    public PortRole Role(int id) => (uint)id < (uint)Count ? _roles[id] : PortRole.Access;

    public IEnumerable<IPacketPort> All()
    {
        for (int i = 0; i < Count; i++) yield return _ports[i]!;
    }

    public IPacketPort? Find(string name)
    {
        for (int i = 0; i < Count; i++) if (_ports[i]!.Name == name) return _ports[i];
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

namespace VSwitch.Pipeline.Stages;

/// <summary>The ports of one switch by id. Changed only by the control plane before the worker starts.</summary>
public sealed class PortTable : ITraceNames
{
    private IPacketPort?[] _ports = new IPacketPort?[16];

    public int Count { get; private set; }

    public IPacketPort? this[int id] => id < _ports.Length ? _ports[id] : null;

    public ushort Add(IPacketPort port)
    {
        if (Count >= PortIds.MaxPorts) throw new InvalidOperationException($"at most {PortIds.MaxPorts} ports");
        if (Count == _ports.Length) Array.Resize(ref _ports, _ports.Length * 2);
        ushort id = (ushort)Count++;
        _ports[id] = port;
        port.Id = id;
        return id;
    }

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

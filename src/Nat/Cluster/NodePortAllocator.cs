using System.Text;

namespace VSwitch.Nat.Cluster;

/// <summary>Checks the node ports given in manifests and gives one to every NodePort/LoadBalancer port that has none
/// (hand-written manifests often leave them out, and there is no API server to allocate them).
/// <para>A port's preferred node port is a stable hash (32-bit FNV-1a of <c>namespace/name/port/PROTOCOL</c>) into the
/// range; if that is taken, the next ones are tried (linear probing, wrapping around). Explicit node ports and
/// health-check node ports are reserved first, and Services are allocated in namespace/name order, so the result
/// depends only on the set of Services, not on file or document order. As the API server does, a port that shares its
/// port number with a port of the other protocol in the same Service (DNS: 53/UDP and 53/TCP) gets that port's node
/// port.</para></summary>
internal static class NodePortAllocator
{
    /// <summary>32-bit FNV-1a over the UTF-8 bytes of <c>namespace/name/port/PROTOCOL</c>.</summary>
    public static uint Hash(string ns, string name, ushort port, byte protocol)
    {
        uint h = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes($"{ns}/{name}/{port}/{ManifestCommon.ProtocolName(protocol)}"))
            h = (h ^ b) * 16777619;
        return h;
    }

    /// <summary>The first node port tried for a port: the hash reduced into [min, max].</summary>
    public static int Preferred(string ns, string name, ushort port, byte protocol, int min, int max) =>
        min + (int)(Hash(ns, name, port, protocol) % (uint)(max - min + 1));

    /// <summary>Reports node ports used twice with the same protocol, then fills in the missing ones.</summary>
    public static void Assign(IReadOnlyList<ServiceEntry> services, ManifestOptions options)
    {
        var owners = new Dictionary<(byte Protocol, ushort NodePort), (ServiceEntry Service, int Index)>();
        var used = new HashSet<int>();
        foreach (ServiceEntry s in services)
        {
            for (int i = 0; i < s.Ports.Length; i++)
            {
                ServicePortSpec p = s.Ports[i];
                if (p.NodePort == 0) continue;
                if (owners.TryGetValue((p.Protocol, p.NodePort), out (ServiceEntry Service, int Index) o))
                {
                    string owner = o.Service == s ? o.Service.Sources[o.Index].Path : $"{o.Service.Scope.Label} ({o.Service.Sources[o.Index].Path})";
                    s.Scope.Error(s.Sources[i].NodePortNode!, s.Sources[i].Path + ".nodePort",
                        $"node port {p.NodePort}/{ManifestCommon.ProtocolName(p.Protocol)} is already used by {owner}");
                    continue;
                }
                owners.Add((p.Protocol, p.NodePort), (s, i));
                used.Add(p.NodePort);
            }
            if (s.HealthCheckNodePort != 0) used.Add(s.HealthCheckNodePort);
        }

        int size = options.NodePortMax - options.NodePortMin + 1;
        IEnumerable<ServiceEntry> ordered = services
            .Where(s => s.AllocatesNodePorts)
            .OrderBy(s => s.Service.Namespace, StringComparer.Ordinal)
            .ThenBy(s => s.Service.Name, StringComparer.Ordinal);
        foreach (ServiceEntry s in ordered)
        {
            for (int i = 0; i < s.Ports.Length; i++)
            {
                ServicePortSpec p = s.Ports[i];
                if (p.NodePort != 0 || p.Port == 0 || !s.Sources[i].Valid) continue;
                int chosen = Sibling(s, i, owners);
                if (chosen == 0)
                {
                    int start = Preferred(s.Service.Namespace, s.Service.Name, p.Port, p.Protocol, options.NodePortMin, options.NodePortMax);
                    for (int k = 0; k < size && chosen == 0; k++)
                    {
                        int candidate = options.NodePortMin + ((start - options.NodePortMin + k) % size);
                        if (!used.Contains(candidate)) chosen = candidate;
                    }
                }
                if (chosen == 0)
                {
                    s.Scope.Error(s.Sources[i].Node, s.Sources[i].Path + ".nodePort",
                        $"no free node port left in {options.NodePortMin}-{options.NodePortMax} to allocate (all are in use)");
                    continue;
                }
                s.Ports[i] = p with { NodePort = (ushort)chosen };
                owners[(p.Protocol, (ushort)chosen)] = (s, i);
                used.Add(chosen);
            }
        }
    }

    /// <summary>The node port of a port with the same number and the other protocol in the same Service, if that
    /// node port is still free for this port's protocol; otherwise 0.</summary>
    private static int Sibling(ServiceEntry s, int index, Dictionary<(byte, ushort), (ServiceEntry, int)> owners)
    {
        ServicePortSpec p = s.Ports[index];
        for (int j = 0; j < s.Ports.Length; j++)
        {
            ServicePortSpec q = s.Ports[j];
            if (j != index && q.Port == p.Port && q.Protocol != p.Protocol && q.NodePort != 0 && !owners.ContainsKey((p.Protocol, q.NodePort)))
                return q.NodePort;
        }
        return 0;
    }
}

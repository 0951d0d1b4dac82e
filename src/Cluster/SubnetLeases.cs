using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Cluster;

/// <summary>flannel's network config (<c>&lt;prefix&gt;/network/config</c>): the cluster's pod network, the size of a
/// node's subnet, the range subnets are leased from, and the backend (VXLAN, its VNI and UDP port).</summary>
public sealed record NetworkConfig
{
    [JsonPropertyName("Network")] public string? Network { get; init; }
    [JsonPropertyName("SubnetLen")] public int SubnetLen { get; init; } = 24;
    [JsonPropertyName("SubnetMin")] [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? SubnetMin { get; init; }
    [JsonPropertyName("SubnetMax")] [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? SubnetMax { get; init; }
    [JsonPropertyName("Backend")] public BackendConfig Backend { get; init; } = new();

    public sealed record BackendConfig
    {
        [JsonPropertyName("Type")] public string Type { get; init; } = "vxlan";
        [JsonPropertyName("VNI")] public long VNI { get; init; } = 1;
        [JsonPropertyName("Port")] public int Port { get; init; } = 4789;
    }

    /// <summary>The network and the first and last subnet that may be leased (flannel's defaults: the network's second
    /// subnet to its second-to-last). Throws <see cref="FormatException"/> naming the field that is wrong.</summary>
    public (Ipv4Prefix Network, uint First, uint Last) Range()
    {
        if (Network is null || !Ipv4Prefix.TryParse(Network, out Ipv4Prefix net, out Ipv4Address host) || host != net.Address)
            throw new FormatException($"Network: '{Network}' is not an IPv4 network like 10.244.0.0/16");
        if (SubnetLen < net.Length + 1 || SubnetLen > 30)
            throw new FormatException($"SubnetLen: {SubnetLen} must be between {net.Length + 1} and 30 for Network {net}");
        uint size = 1u << (32 - SubnetLen);
        uint first = net.Address.Value + size, last = net.Address.Value + (uint)((1UL << (32 - net.Length)) - 2 * size);
        if (SubnetMin is not null)
        {
            if (!Ipv4Address.TryParse(SubnetMin, out Ipv4Address min) || !net.Contains(min) || min.Value % size != 0)
                throw new FormatException($"SubnetMin: '{SubnetMin}' is not a /{SubnetLen} subnet address inside {net}");
            first = min.Value;
        }
        if (SubnetMax is not null)
        {
            if (!Ipv4Address.TryParse(SubnetMax, out Ipv4Address max) || !net.Contains(max) || max.Value % size != 0)
                throw new FormatException($"SubnetMax: '{SubnetMax}' is not a /{SubnetLen} subnet address inside {net}");
            last = max.Value;
        }
        if (first > last) throw new FormatException($"SubnetMin {new Ipv4Address(first)} is after SubnetMax {new Ipv4Address(last)}");
        if (Backend.Type != "vxlan") throw new FormatException($"Backend.Type: '{Backend.Type}' is not supported (vxlan)");
        if (Backend.VNI is < 0 or > 0xFFFFFF) throw new FormatException($"Backend.VNI: {Backend.VNI} is out of range 0..16777215");
        if (Backend.Port is < 1 or > 65535) throw new FormatException($"Backend.Port: {Backend.Port} is out of range 1..65535");
        return (net, first, last);
    }
}

/// <summary>A node's subnet lease, as flannel writes it at <c>&lt;prefix&gt;/network/subnets/10.244.N.0-24</c>.</summary>
public sealed record SubnetLease
{
    [JsonPropertyName("PublicIP")] public string? PublicIP { get; init; }
    [JsonPropertyName("PublicIPv6")] public string? PublicIPv6 { get; init; }
    [JsonPropertyName("BackendType")] public string BackendType { get; init; } = "vxlan";
    [JsonPropertyName("BackendData")] public VxlanData? BackendData { get; init; }

    public sealed record VxlanData
    {
        [JsonPropertyName("VNI")] public long VNI { get; init; }
        [JsonPropertyName("VtepMAC")] public string? VtepMAC { get; init; }
    }
}

/// <summary>A lease read from the store and checked: whose it is (underlay address), its subnet and VTEP MAC.</summary>
public sealed record LeasedSubnet(string Key, Ipv4Prefix Subnet, Ipv4Address PublicIP, MacAddress VtepMac, long Lease);

/// <summary>flannel's key layout and value formats.</summary>
public static class FlannelLayout
{
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNameCaseInsensitive = true, // Go's encoding/json matches field names case-insensitively
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static string ConfigKey(string prefix) => $"{prefix}/network/config";
    public static string SubnetsPrefix(string prefix) => $"{prefix}/network/subnets/";

    /// <summary><c>10.244.3.0/24</c> → <c>10.244.3.0-24</c>.</summary>
    public static string SubnetName(Ipv4Prefix subnet) => string.Create(CultureInfo.InvariantCulture, $"{subnet.Address}-{subnet.Length}");

    public static string SubnetKey(string prefix, Ipv4Prefix subnet) => SubnetsPrefix(prefix) + SubnetName(subnet);

    /// <summary>The subnet a lease key names (<c>.../subnets/10.244.3.0-24</c>), or null.</summary>
    public static Ipv4Prefix? SubnetOfKey(string key)
    {
        string name = key[(key.LastIndexOf('/') + 1)..];
        int dash = name.LastIndexOf('-');
        if (dash < 0) return null;
        return Ipv4Prefix.TryParse($"{name[..dash]}/{name[(dash + 1)..]}", out Ipv4Prefix p, out Ipv4Address a) && a == p.Address ? p : null;
    }

    public static NetworkConfig ParseConfig(string json)
    {
        NetworkConfig? c;
        try
        {
            c = JsonSerializer.Deserialize<NetworkConfig>(json, Json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"not a flannel network config: {e.Message}");
        }
        if (c is null) throw new FormatException("not a flannel network config: null");
        _ = c.Range();
        return c;
    }

    public static string Serialize(NetworkConfig c) => JsonSerializer.Serialize(c, Json);

    public static string Serialize(SubnetLease l) => JsonSerializer.Serialize(l, Json);

    /// <summary>Reads a lease entry; the reason it is unusable otherwise (the caller counts and logs it).</summary>
    public static LeasedSubnet? ParseLease(StoreEntry e, out string? error)
    {
        error = null;
        if (SubnetOfKey(e.Key) is not { } subnet)
        {
            error = $"{e.Key}: the key does not name a subnet (like 10.244.3.0-24)";
            return null;
        }
        SubnetLease? l;
        try
        {
            l = JsonSerializer.Deserialize<SubnetLease>(e.Value, Json);
        }
        catch (JsonException x)
        {
            error = $"{e.Key}: not a flannel lease: {x.Message}";
            return null;
        }
        if (l?.PublicIP is null || !Ipv4Address.TryParse(l.PublicIP, out Ipv4Address ip))
        {
            error = $"{e.Key}: PublicIP: '{l?.PublicIP}' is not an IPv4 address";
            return null;
        }
        if (l.BackendType != "vxlan")
        {
            error = $"{e.Key}: BackendType: '{l.BackendType}' is not vxlan";
            return null;
        }
        if (l.BackendData?.VtepMAC is not { } m || !MacAddress.TryParse(m, out MacAddress mac) || mac.IsMulticast || mac == MacAddress.Zero)
        {
            error = $"{e.Key}: BackendData.VtepMAC: '{l.BackendData?.VtepMAC}' is not a unicast MAC address";
            return null;
        }
        return new LeasedSubnet(e.Key, subnet, ip, mac, e.Lease);
    }
}

/// <summary>
/// This node's subnet lease, claimed and renewed flannel's way: the subnets under the network config are leased with a
/// create-if-absent transaction on their key, the value naming the node's underlay address and VTEP MAC, attached to an
/// etcd lease that the node keeps alive; a node that stops renewing loses the key when the TTL runs out, and every
/// watcher sees it go. A node takes back its previous subnet when it can: the lease that still carries its underlay
/// address, else the subnet it last held (from the state directory) if free, else a free one at random.
/// </summary>
public sealed class SubnetLeaser(EtcdStore store, string prefix, Ipv4Address publicIp, Func<Ipv4Prefix, MacAddress> vtepMacOf, int ttlSeconds)
{
    /// <summary>Claims attempted before giving up (each loses only to another node's concurrent claim).</summary>
    private const int MaxAttempts = 32;

    private long _vni;

    public long LeaseId { get; private set; }
    public LeasedSubnet? Current { get; private set; }
    public int TtlSeconds => ttlSeconds;

    /// <summary>Writes <paramref name="proposal"/> as the network config if there is none; the config in force.</summary>
    public async Task<NetworkConfig> EnsureNetworkConfigAsync(NetworkConfig proposal, CancellationToken ct)
    {
        string key = FlannelLayout.ConfigKey(prefix);
        _ = await store.CreateAsync(key, FlannelLayout.Serialize(proposal), 0, ct).ConfigureAwait(false);
        StoreEntry e = await store.GetAsync(key, ct).ConfigureAwait(false) ?? throw new StoreUnavailableException($"{key} vanished after it was written");
        try
        {
            return FlannelLayout.ParseConfig(e.Text);
        }
        catch (FormatException x)
        {
            throw new FormatException($"{key}: {x.Message}");
        }
    }

    /// <summary>Claims a subnet of <paramref name="config"/>'s network (see the class). Throws
    /// <see cref="InvalidOperationException"/> when every subnet is taken.</summary>
    public async Task<LeasedSubnet> ClaimAsync(NetworkConfig config, Ipv4Prefix? previous, CancellationToken ct)
    {
        (Ipv4Prefix _, uint first, uint last) = config.Range();
        uint size = 1u << (32 - config.SubnetLen);
        _vni = config.Backend.VNI;
        LeaseId = await store.GrantLeaseAsync(ttlSeconds, ct).ConfigureAwait(false);
        for (int attempt = 0; attempt < MaxAttempts; attempt++)
        {
            (List<StoreEntry> entries, long _) = await store.ListAsync(FlannelLayout.SubnetsPrefix(prefix), ct).ConfigureAwait(false);
            var taken = new HashSet<uint>();
            foreach (StoreEntry e in entries)
            {
                if (FlannelLayout.SubnetOfKey(e.Key) is not { } s) continue;
                taken.Add(s.Address.Value);
                // Our own lease from before a restart (same underlay address): take it over with the new etcd lease.
                if (FlannelLayout.ParseLease(e, out _) is { } mine && mine.PublicIP == publicIp && s.Length == config.SubnetLen
                    && s.Address.Value >= first && s.Address.Value <= last)
                {
                    string value = Value(s);
                    long? rev = await store.CommitAsync([(e.Key, e.ModRevision)], [(e.Key, value, LeaseId)], ct).ConfigureAwait(false);
                    if (rev is not null) return Current = new LeasedSubnet(e.Key, s, publicIp, vtepMacOf(s), LeaseId);
                }
            }
            Ipv4Prefix? pick = null;
            if (previous is { } p && p.Length == config.SubnetLen && p.Address.Value >= first && p.Address.Value <= last && !taken.Contains(p.Address.Value))
                pick = p;
            if (pick is null)
            {
                // A free subnet at random (as flannel does), so nodes starting together rarely collide.
                var free = new List<uint>();
                for (ulong a = first; a <= last && free.Count < 1024; a += size)
                    if (!taken.Contains((uint)a)) free.Add((uint)a);
                if (free.Count == 0) throw new InvalidOperationException($"no free /{config.SubnetLen} subnet left in {config.Network} ({taken.Count} leased)");
                pick = new Ipv4Prefix(new Ipv4Address(free[Random.Shared.Next(free.Count)]), (byte)config.SubnetLen);
            }
            string key = FlannelLayout.SubnetKey(prefix, pick.Value);
            if (await store.CreateAsync(key, Value(pick.Value), LeaseId, ct).ConfigureAwait(false))
                return Current = new LeasedSubnet(key, pick.Value, publicIp, vtepMacOf(pick.Value), LeaseId);
            previous = null; // someone took it between the list and the claim: look again
        }
        throw new InvalidOperationException($"could not claim a subnet in {MaxAttempts} attempts (other nodes kept taking the chosen ones)");
    }

    private string Value(Ipv4Prefix s) => FlannelLayout.Serialize(new SubnetLease
    {
        PublicIP = publicIp.ToString(),
        BackendType = "vxlan",
        BackendData = new SubnetLease.VxlanData { VNI = _vni, VtepMAC = vtepMacOf(s).ToString() },
    });

    /// <summary>Renews the lease. False when it had already expired (the key is gone: claim again).</summary>
    public async Task<bool> RenewAsync(CancellationToken ct)
    {
        if (Current is null) return false;
        long ttl = await store.KeepAliveOnceAsync(LeaseId, ct).ConfigureAwait(false);
        if (ttl > 0) return true;
        Current = null;
        return false;
    }

    /// <summary>Gives the subnet up (a clean shutdown that is not coming back: the others drop the routes at once).</summary>
    public async Task ReleaseAsync(CancellationToken ct)
    {
        if (LeaseId != 0) await store.RevokeLeaseAsync(LeaseId, ct).ConfigureAwait(false);
        Current = null;
    }
}

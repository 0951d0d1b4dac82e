using VSwitch.Pipeline.Wire;

namespace VSwitch.Cluster.Tests;

public sealed class SubnetLeaseTests(EtcdServer etcd) : IClassFixture<EtcdServer>
{
    private static string NewPrefix() => "/t" + Guid.NewGuid().ToString("N")[..8];

    private static MacAddress Vtep(Ipv4Prefix s) => new(0x0e_00_00_00_00_00UL | (s.Address.Value + 1));

    private static NetworkConfig Network(string? min = null, string? max = null) => new()
    {
        Network = "10.244.0.0/16",
        SubnetLen = 24,
        SubnetMin = min,
        SubnetMax = max,
        Backend = new NetworkConfig.BackendConfig { VNI = 1, Port = 4789 },
    };

    [Fact]
    public async Task The_first_node_writes_the_network_config_and_the_others_read_it()
    {
        string prefix = NewPrefix();
        using EtcdStore store = etcd.Open();
        var a = new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.1"), Vtep, 10);
        var b = new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.2"), Vtep, 10);
        NetworkConfig ca = await a.EnsureNetworkConfigAsync(Network(), default);
        NetworkConfig cb = await b.EnsureNetworkConfigAsync(Network() with { Network = "10.200.0.0/16" }, default);
        Assert.Equal("10.244.0.0/16", ca.Network);
        Assert.Equal("10.244.0.0/16", cb.Network);
        StoreEntry? raw = await store.GetAsync(prefix + "/network/config");
        Assert.Contains("\"Network\":\"10.244.0.0/16\"", raw!.Value.Text, StringComparison.Ordinal);
        Assert.Contains("\"VNI\":1", raw.Value.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nodes_claiming_at_once_get_different_subnets()
    {
        string prefix = NewPrefix();
        using EtcdStore store = etcd.Open();
        // Eight nodes race for eight subnets: every claim must succeed, none twice.
        NetworkConfig net = Network("10.244.1.0", "10.244.8.0");
        Task<LeasedSubnet>[] claims = Enumerable.Range(1, 8).Select(i => Task.Run(() =>
            new SubnetLeaser(store, prefix, Ipv4Address.Parse($"198.18.0.{i}"), Vtep, 30).ClaimAsync(net, null, default))).ToArray();
        LeasedSubnet[] got = await Task.WhenAll(claims);
        Assert.Equal(8, got.Select(g => g.Subnet).Distinct().Count());
        (List<StoreEntry> leases, _) = await store.ListAsync(FlannelLayout.SubnetsPrefix(prefix));
        Assert.Equal(8, leases.Count);
        foreach (StoreEntry e in leases)
        {
            LeasedSubnet? l = FlannelLayout.ParseLease(e, out string? err);
            Assert.Null(err);
            Assert.Contains(got, g => g.Subnet == l!.Subnet && g.PublicIP == l.PublicIP);
            Assert.NotEqual(0, e.Lease);
        }
        // A ninth finds the network full and says so.
        var ninth = new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.9"), Vtep, 30);
        InvalidOperationException full = await Assert.ThrowsAsync<InvalidOperationException>(() => ninth.ClaimAsync(net, null, default));
        Assert.Contains("no free /24 subnet", full.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_restarted_node_gets_its_subnet_back()
    {
        string prefix = NewPrefix();
        using EtcdStore store = etcd.Open();
        NetworkConfig net = Network();
        LeasedSubnet first = await new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.1"), Vtep, 30).ClaimAsync(net, null, default);
        await new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.2"), Vtep, 30).ClaimAsync(net, null, default);
        // Same underlay address, lease still there: taken over.
        var again = new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.1"), Vtep, 30);
        LeasedSubnet second = await again.ClaimAsync(net, null, default);
        Assert.Equal(first.Subnet, second.Subnet);
        StoreEntry? e = await store.GetAsync(first.Key);
        Assert.Equal(again.LeaseId, e!.Value.Lease);
        // Lease gone (revoked): the saved subnet is asked for and free, so it comes back too.
        await again.ReleaseAsync(default);
        Assert.Null(await store.GetAsync(first.Key));
        LeasedSubnet third = await new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.77"), Vtep, 30).ClaimAsync(net, first.Subnet, default);
        Assert.Equal(first.Subnet, third.Subnet);
    }

    [Fact]
    public async Task A_lease_that_is_not_renewed_expires_and_watchers_see_it_go()
    {
        string prefix = NewPrefix();
        using EtcdStore store = etcd.Open();
        var seen = new List<StoreEvent>();
        var watcher = new PrefixWatcher(store, FlannelLayout.SubnetsPrefix(prefix), (ev, _, _) =>
        {
            lock (seen) seen.AddRange(ev);
            return Task.CompletedTask;
        });
        using var cts = new CancellationTokenSource();
        Task run = watcher.RunAsync(_ => { }, cts.Token);
        var leaser = new SubnetLeaser(store, prefix, Ipv4Address.Parse("198.18.0.1"), Vtep, 2);
        LeasedSubnet l = await leaser.ClaimAsync(Network(), null, default);
        Assert.True(await leaser.RenewAsync(default));
        // No more renewals: etcd drops the key within the TTL (plus its expiry check interval).
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            lock (seen) if (seen.Any(e => e.Deleted && e.Entry.Key == l.Key)) break;
            await Task.Delay(100);
        }
        lock (seen)
        {
            Assert.Contains(seen, e => !e.Deleted && e.Entry.Key == l.Key);
            Assert.Contains(seen, e => e.Deleted && e.Entry.Key == l.Key);
        }
        Assert.False(await leaser.RenewAsync(default));
        Assert.Null(leaser.Current);
        await cts.CancelAsync();
        await run;
    }

    [Theory]
    [InlineData("{\"Network\":\"10.244.0.0/16\",\"SubnetLen\":8}", "SubnetLen: 8 must be between 17 and 30")]
    [InlineData("{\"Network\":\"10.244.1.0/16\"}", "Network: '10.244.1.0/16' is not an IPv4 network")]
    [InlineData("{\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"udp\"}}", "Backend.Type: 'udp' is not supported")]
    [InlineData("{\"Network\":\"10.244.0.0/16\",\"SubnetMin\":\"10.245.0.0\"}", "SubnetMin: '10.245.0.0' is not a /24 subnet address inside 10.244.0.0/16")]
    [InlineData("not json", "not a flannel network config")]
    public void A_bad_network_config_is_refused_with_the_field(string json, string message)
    {
        FormatException e = Assert.Throws<FormatException>(() => FlannelLayout.ParseConfig(json));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Flannels_own_lease_format_reads()
    {
        // As flannel (vxlan backend) writes it; field names matched case-insensitively as Go does.
        var e = new StoreEntry("/coreos.com/network/subnets/10.244.7.0-24",
            System.Text.Encoding.UTF8.GetBytes("{\"PublicIP\":\"198.18.0.9\",\"PublicIPv6\":null,\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"0e:00:0a:f4:07:01\"}}"), 1, 1, 0);
        LeasedSubnet? l = FlannelLayout.ParseLease(e, out string? err);
        Assert.Null(err);
        Assert.Equal("10.244.7.0/24", l!.Subnet.ToString());
        Assert.Equal("198.18.0.9", l.PublicIP.ToString());
        Assert.Equal("0e:00:0a:f4:07:01", l.VtepMac.ToString());
        var bad = e with { Value = System.Text.Encoding.UTF8.GetBytes("{\"PublicIP\":\"x\"}") };
        Assert.Null(FlannelLayout.ParseLease(bad, out err));
        Assert.Contains("PublicIP: 'x' is not an IPv4 address", err, StringComparison.Ordinal);
    }
}

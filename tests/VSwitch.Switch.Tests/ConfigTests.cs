using VSwitch.Switch.Config;

namespace VSwitch.Switch.Tests;

public sealed class ConfigTests
{
    [Fact]
    public void Embedded_default_is_valid()
    {
        SwitchConfig c = ConfigLoader.Parse(ConfigLoader.EmbeddedDefault, "default");
        Assert.Equal(3, c.Ports.Count);
        Assert.All(c.Ports, p => Assert.True(p.CreateNamespace));
    }

    [Theory]
    [InlineData("ports:\n  - name: a\n    interface: x\n    mtu: 20\n", "cfg.yaml: ports[0].mtu: 20 is out of range 68..9000")]
    [InlineData("ports:\n  - name: a\n    interface: x\n    address: 10.244.1.300/24\n", "cfg.yaml: ports[0].address: '10.244.1.300/24' is not an IPv4 address")]
    [InlineData("ports:\n  - name: a\n    type: vhost\n    interface: x\n", "cfg.yaml: ports[0].type: 'vhost' is not one of tap, af-packet")]
    [InlineData("ports:\n  - name: a\n    interface: x\n  - name: a\n    interface: y\n", "cfg.yaml: ports[1].name: duplicate port name 'a'")]
    [InlineData("ports:\n  - name: a\n    interface: x\n    mac: ff:ff:ff:ff:ff:ff\n", "ports[0].mac: 'ff:ff:ff:ff:ff:ff' is not a unicast MAC")]
    [InlineData("bridge:\n  macTableFullPolicy: panic\nports:\n  - name: a\n    interface: x\n", "bridge.macTableFullPolicy: 'panic' is not one of flood, drop")]
    [InlineData("bridge:\n  staticMacs:\n    - mac: 02:00:00:00:00:01\n      port: nope\nports:\n  - name: a\n    interface: x\n", "bridge.staticMacs[0].port: 'nope' is not the name of a configured port")]
    [InlineData("datapath:\n  podRxCpus: 0-x\nports:\n  - name: a\n    interface: x\n", "datapath.podRxCpus: '0-x' is not a CPU number or range")]
    [InlineData("datapath:\n  podRxCpus: 3-1\nports:\n  - name: a\n    interface: x\n", "datapath.podRxCpus: '3-1' is a range that ends before it starts")]
    [InlineData("datapath:\n  podRxCpus: 0,8000\nports:\n  - name: a\n    interface: x\n", "datapath.podRxCpus: CPU 8000 is not online here (online: 0")]
    [InlineData("ports:\n  - name: a\n    interface: x\n    txQueueLength: 8\n", "ports[0].txQueueLength: 8 is out of range 16..1048576")]
    [InlineData("ports:\n  - name: a\n    type: af-packet\n    interface: x\n    txQueueLength: 4000\n", "ports[0].txQueueLength: applies to tap ports only")]
    [InlineData("datapath:\n  adaptivePollMicros: 20000\nports:\n  - name: a\n    interface: x\n", "datapath.adaptivePollMicros: 20000 is out of range 0..10000")]
    [InlineData("metrics:\n  listen: localhost\nports: []\n", "metrics.listen: 'localhost' is not an IPv4 address:port")]
    [InlineData("ports:\n  - name: a\n    interface: x\n    namespace: p\n    routes: [10.96.0.0/12 through 10.244.1.1]\n", "ports[0].routes[0]: '10.96.0.0/12 through 10.244.1.1' is not 'prefix' or 'prefix via address'")]
    [InlineData("ports:\n  - name: a\n    interfaces: x\n", "cfg.yaml:3:5: unknown field 'interfaces' in a port (ports[])")]
    [InlineData("node:\n  nmae: n1\nports: []\n", "cfg.yaml:2:3: unknown field 'nmae' in node")]
    [InlineData("ports:\n  - name: a\n    interface: x\n    mtu: big\n", "cfg.yaml:4:10:")]
    [InlineData("ports: [\n", "cfg.yaml:")]
    [InlineData("cluster:\n  etcd: {endpoints: []}\noverlay: {localAddress: 198.18.0.1}\n", "cluster.etcd.endpoints: required")]
    [InlineData("cluster:\n  etcd: {endpoints: [http://198.18.0.11:2379]}\n", "cluster: needs overlay.localAddress")]
    [InlineData("cluster:\n  prefix: vswitch/\n  etcd: {endpoints: [http://198.18.0.11:2379]}\noverlay: {localAddress: 198.18.0.1}\n", "cluster.prefix: 'vswitch/' must start with '/'")]
    [InlineData("cluster:\n  leaseTTLSeconds: 1\n  etcd: {endpoints: [http://198.18.0.11:2379]}\noverlay: {localAddress: 198.18.0.1}\n", "cluster.leaseTTLSeconds: 1 is out of range 2..86400")]
    [InlineData("cluster:\n  etcd: {endpoints: [http://198.18.0.11:2379], caFile: /nonexistent/ca.crt}\noverlay: {localAddress: 198.18.0.1}\n", "cluster.etcd: caFile/certFile are set but the endpoints are http://")]
    [InlineData("cluster:\n  etcd: {endpoints: [https://198.18.0.11:2379], certFile: /nonexistent/c.crt}\noverlay: {localAddress: 198.18.0.1}\n", "cluster.etcd: certFile and keyFile go together")]
    [InlineData("cluster:\n  etcd: {endpoints: [http://198.18.0.11:2379]}\noverlay:\n  localAddress: 198.18.0.1\n  peers: [{name: b, address: 198.18.0.2, podCIDR: 10.244.2.0/24}]\n", "overlay.peers: not with a cluster store")]
    [InlineData("cluster:\n  etcd: {endpointz: []}\n", "unknown field 'endpointz'")]
    public void Bad_config_names_the_file_field_and_problem(string yaml, string expected)
    {
        ConfigException e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml, "cfg.yaml"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_cluster_node_needs_no_pod_subnet_it_leases_one()
    {
        SwitchConfig c = ConfigLoader.Parse(
            "node: {name: n1, labels: {topology.kubernetes.io/zone: a}}\noverlay: {localAddress: 198.18.0.1}\nservices: {}\nhost: {interface: vsw0}\n"
            + "cluster:\n  etcd: {endpoints: [https://198.18.0.11:2379, https://198.18.0.12:2379]}\nports: []\n", "cfg.yaml");
        Assert.Null(c.Node.PodCidr);
        Assert.Equal("/vswitch", c.Cluster!.Prefix);
        Assert.Equal(60, c.Cluster.LeaseTtlSeconds);
        Assert.Equal("a", c.Node.Labels["topology.kubernetes.io/zone"]);
    }

    [Fact]
    public void A_node_may_start_without_ports_and_get_them_through_the_api()
    {
        SwitchConfig c = ConfigLoader.Parse("node: {name: n1, podCIDR: 10.244.1.0/24}\nports: []\n", "cfg.yaml");
        Assert.Empty(c.Ports);
    }

    [Fact]
    public void Missing_file_is_reported_by_name()
    {
        ConfigException e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadFile("/nonexistent/vswitch.yaml"));
        Assert.Equal("/nonexistent/vswitch.yaml: config file not found", e.Message);
    }
}

public sealed class OverlayConfigTests
{
    private const string Ports = "ports:\n  - name: a\n    interface: x\n";

    [Fact]
    public void Node_overlay_and_host_sections_parse_with_kubernetes_style_names()
    {
        SwitchConfig c = ConfigLoader.Parse("""
            node: {name: n1, podCIDR: 10.244.1.0/24, clusterCIDR: 10.244.0.0/16}
            host: {interface: vsw0}
            overlay:
              localAddress: 198.18.0.1
              port: 8472
              vni: 42
              peers:
                - {name: n2, address: 198.18.0.2, podCIDR: 10.244.2.0/24, vtepMac: "0e:00:0a:f4:02:01"}
            ports:
              - {name: a, interface: x, address: 10.244.1.2/24}
            """, "cfg.yaml");
        Assert.Equal("10.244.1.0/24", c.Node.PodCidr);
        Assert.Equal(8472, c.Overlay!.Port);
        Assert.Equal(42, c.Overlay.Vni);
        Assert.Equal("10.244.2.0/24", Assert.Single(c.Overlay.Peers).PodCidr);
        Assert.Equal("vsw0", c.Host!.Interface);
    }

    [Theory]
    [InlineData("node: {podCIDR: 10.244.1.5/24}\n", "node.podCIDR: '10.244.1.5/24' is not an IPv4 network")]
    [InlineData("node: {podCIDR: 10.245.1.0/24}\n", "node.podCIDR: 10.245.1.0/24 is not inside node.clusterCIDR 10.244.0.0/16")]
    [InlineData("host: {interface: vsw0}\n", "host: needs node.podCIDR")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\noverlay: {port: 4789}\n", "overlay.localAddress: required")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\noverlay: {localAddress: 198.18.0.1, vni: 16777216}\n", "overlay.vni: 16777216 is out of range 0..16777215")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\noverlay: {localAddress: 198.18.0.1, peers: [{name: b, address: 198.18.0.2, podCIDR: 10.244.1.0/25}]}\n", "overlay.peers[0].podCIDR: 10.244.1.0/25 overlaps node.podCIDR 10.244.1.0/24")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\noverlay: {localAddress: 198.18.0.1, peers: [{name: b, address: 198.18.0.1}]}\n", "overlay.peers[0].address: 198.18.0.1 is this node's own overlay.localAddress")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\noverlay: {localAddress: 198.18.0.1, peers: [{name: b, address: 198.18.0.2}, {name: c, address: 198.18.0.2}]}\n", "overlay.peers[1].address: 198.18.0.2 is used by two peers")]
    [InlineData("overlay: {localAddress: 198.18.0.1, peerz: []}\n", "unknown field 'peerz' in overlay")]
    public void Bad_overlay_config_names_the_field(string yaml, string expected)
    {
        ConfigException e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml + Ports, "cfg.yaml"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    private const string UplinkBase = "node: {podCIDR: 10.244.1.0/24}\nhost: {interface: vsw0}\nservices: {nodeAddress: 198.18.0.1}\n";

    [Theory]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\nhost: {interface: vsw0}\nuplink: {interface: eth0}\n", "uplink: needs services")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\nservices: {nodeAddress: 198.18.0.1}\nuplink: {interface: eth0}\n", "uplink: needs host")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\nhost: {interface: vsw0}\nservices: {}\nuplink: {interface: eth0}\n", "uplink: needs the node address")]
    [InlineData(UplinkBase + "uplink: {masquerade: true}\n", "uplink.interface: required")]
    [InlineData(UplinkBase + "uplink: {interface: eth0, tap: vsw0}\n", "uplink.tap: 'vsw0' is also used by a port or the host interface")]
    [InlineData(UplinkBase + "uplink: {interface: eth0, tap: eth0}\n", "uplink.tap: 'eth0' is the uplink interface itself")]
    [InlineData(UplinkBase + "uplink: {interface: x}\n", "uplink.interface: 'x' is also used by a port")]
    [InlineData(UplinkBase + "uplink: {interface: eth0, masq: false}\n", "unknown field 'masq' in uplink")]
    [InlineData("node: {podCIDR: 10.244.1.0/24}\nservices: {nodePortRange: 30000-62000}\n", "services.nodePortRange: 30000-62000 overlaps the masquerade ports 61440-65535")]
    public void Bad_uplink_config_names_the_field(string yaml, string expected)
    {
        ConfigException e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml + Ports, "cfg.yaml"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Uplink_config_defaults()
    {
        SwitchConfig c = ConfigLoader.Parse(UplinkBase + "uplink: {interface: eth0}\n" + Ports, "cfg.yaml");
        Assert.Equal(("eth0", "vsw-uplink", true), (c.Uplink!.Interface, c.Uplink.Tap, c.Uplink.Masquerade));
    }

    [Theory]
    [InlineData("0", new[] { 0 }, "1", "0")]
    [InlineData("2-3", new[] { 2, 3 }, "c", "2-3")]
    [InlineData(" 6, 0-3 ,2", new[] { 0, 1, 2, 3, 6 }, "4f", "0-3,6")]
    [InlineData("32", new[] { 32 }, "1,00000000", "32")]
    [InlineData("0,33-34,64", new[] { 0, 33, 34, 64 }, "1,00000006,00000001", "0,33-34,64")]
    public void Cpu_lists_parse_and_become_sysfs_bitmaps(string text, int[] cpus, string mask, string folded)
    {
        Assert.True(CpuList.TryParse(text, out int[] got, out string error), error);
        Assert.Equal(cpus, got);
        Assert.Equal(mask, CpuList.ToMask(got));
        Assert.Equal(folded, CpuList.Format(got));
    }

    [Theory]
    [InlineData("")]
    [InlineData("-1")]
    [InlineData("1-")]
    [InlineData("a")]
    [InlineData("0,,1")]
    [InlineData("8192")]
    [InlineData("+1")]
    public void Bad_cpu_lists_are_refused(string text) => Assert.False(CpuList.TryParse(text, out _, out _));
}

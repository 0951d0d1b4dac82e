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
    [InlineData("ports: []\n", "ports: at least one port is required")]
    [InlineData("ports:\n  - name: a\n    interfaces: x\n", "cfg.yaml:3:5: unknown field 'interfaces' in a port (ports[])")]
    [InlineData("node:\n  nmae: n1\nports: []\n", "cfg.yaml:2:3: unknown field 'nmae' in node")]
    [InlineData("ports:\n  - name: a\n    interface: x\n    mtu: big\n", "cfg.yaml:4:10:")]
    [InlineData("ports: [\n", "cfg.yaml:")]
    public void Bad_config_names_the_file_field_and_problem(string yaml, string expected)
    {
        ConfigException e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml, "cfg.yaml"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_file_is_reported_by_name()
    {
        ConfigException e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadFile("/nonexistent/vswitch.yaml"));
        Assert.Equal("/nonexistent/vswitch.yaml: config file not found", e.Message);
    }
}

using VSwitch.Nat.Cluster;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat.Tests;

public class ObjectsTests
{
    [Fact]
    public void ServiceKeyIsNamespaceSlashName()
    {
        var s = new ServiceObject { Namespace = "default", Name = "web", ClusterIPs = [Ipv4Address.Parse("10.96.0.10")] };
        Assert.Equal("default/web", s.Key);
        Assert.Equal(10800, s.AffinityTimeoutSeconds);
    }
}

namespace VSwitch.Cluster.Tests;

public sealed class TlsTests(TlsEtcdServer fixture) : IClassFixture<TlsEtcdServer>
{
    private EtcdServer Etcd => fixture.Server;

    [Fact]
    public async Task Mutual_TLS_with_the_CA_and_a_client_certificate_works()
    {
        using EtcdStore s = Etcd.Open();
        await s.PutAsync("/tls", "yes");
        Assert.Equal("yes", (await s.GetAsync("/tls"))!.Value.Text);
    }

    [Fact]
    public async Task Without_a_client_certificate_the_store_refuses()
    {
        using EtcdStore s = Etcd.Open(new EtcdOptions { Endpoints = [Etcd.Endpoint], CaFile = Etcd.Pki!.CaCert, RequestTimeout = TimeSpan.FromSeconds(2) });
        await Assert.ThrowsAsync<StoreUnavailableException>(() => s.GetAsync("/tls"));
    }

    [Fact]
    public async Task A_server_not_signed_by_the_configured_CA_is_not_trusted()
    {
        using EtcdStore s = Etcd.Open(new EtcdOptions
        {
            Endpoints = [Etcd.Endpoint],
            CaFile = Etcd.Pki!.OtherCaCert,
            CertFile = Etcd.Pki.ClientCert,
            KeyFile = Etcd.Pki.ClientKey,
            RequestTimeout = TimeSpan.FromSeconds(2),
        });
        await Assert.ThrowsAsync<StoreUnavailableException>(() => s.GetAsync("/tls"));
    }

    [Fact]
    public void Options_name_the_field_that_is_wrong()
    {
        List<string> e = new EtcdOptions { Endpoints = ["etcd:2379", "https://a:2379"], CertFile = "/nonexistent.crt" }.Validate("cluster.etcd");
        Assert.Contains("cluster.etcd.endpoints[0]: 'etcd:2379' is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)", e);
        Assert.Contains("cluster.etcd: certFile and keyFile go together (the client certificate and its key)", e);
        Assert.Contains("cluster.etcd.certFile: /nonexistent.crt: no such file", e);
        Assert.Contains("cluster.etcd.endpoints: required (the etcd members' client URLs, like https://198.18.0.11:2379)", new EtcdOptions { Endpoints = [] }.Validate("cluster.etcd"));
    }
}

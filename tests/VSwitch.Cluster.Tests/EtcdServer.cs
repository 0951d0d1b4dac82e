using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace VSwitch.Cluster.Tests;

/// <summary>
/// A real single-member etcd (Debian's etcd-server, which <c>./run.sh test</c> installs) on loopback with free ports and
/// a temporary data directory, optionally with mutual TLS (certificates made by openssl). Started per test class.
/// </summary>
public sealed class EtcdServer : IDisposable
{
    private readonly Process _process;
    private readonly string _dir;

    public EtcdServer() : this(tls: false) { }

    internal EtcdServer(bool tls)
    {
        string etcd = new[] { "/usr/bin/etcd", "/usr/local/bin/etcd" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("etcd is not installed (Debian package etcd-server; ./run.sh test installs it)");
        _dir = Directory.CreateTempSubdirectory("vswitch-etcd-").FullName;
        int client = FreePort(), peer = FreePort();
        string scheme = tls ? "https" : "http";
        Endpoint = $"{scheme}://127.0.0.1:{client}";
        var args = new List<string>
        {
            "--name", "t", "--data-dir", Path.Combine(_dir, "data"),
            "--listen-client-urls", Endpoint, "--advertise-client-urls", Endpoint,
            "--listen-peer-urls", $"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{peer}",
            "--initial-cluster", $"t=http://127.0.0.1:{peer}", "--log-level", "error",
        };
        if (tls)
        {
            Pki = new TestPki(Path.Combine(_dir, "pki"));
            args.AddRange(["--cert-file", Pki.ServerCert, "--key-file", Pki.ServerKey, "--client-cert-auth", "--trusted-ca-file", Pki.CaCert]);
        }
        var psi = new ProcessStartInfo(etcd) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.ErrorDataReceived += (_, _) => { };
        _process.OutputDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, client);
                break;
            }
            catch (SocketException) when (sw.Elapsed < TimeSpan.FromSeconds(20) && !_process.HasExited)
            {
                Thread.Sleep(50);
            }
        }
        using EtcdStore s = Open();
        WaitWritable(s, TimeSpan.FromSeconds(20));
    }

    /// <summary>Until the store commits a write (a member that listens may not have a leader yet).</summary>
    internal static void WaitWritable(EtcdStore s, TimeSpan within)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                s.PutAsync("/ready", "1").GetAwaiter().GetResult();
                return;
            }
            catch (StoreUnavailableException) when (sw.Elapsed < within)
            {
                Thread.Sleep(100);
            }
        }
    }

    public string Endpoint { get; }
    public TestPki? Pki { get; }

    public EtcdStore Open(EtcdOptions? options = null) => new(options ?? new EtcdOptions
    {
        Endpoints = [Endpoint],
        CaFile = Pki?.CaCert,
        CertFile = Pki?.ClientCert,
        KeyFile = Pki?.ClientKey,
        RequestTimeout = TimeSpan.FromSeconds(3),
    });

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Three etcd members on loopback (plain HTTP), each of which can be killed and started again with its data.</summary>
public sealed class EtcdCluster : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vswitch-etcd3-").FullName;
    private readonly int[] _client = new int[3], _peer = new int[3];
    private readonly Process?[] _members = new Process?[3];

    public EtcdCluster()
    {
        for (int i = 0; i < 3; i++)
        {
            _client[i] = FreePort();
            _peer[i] = FreePort();
        }
        for (int i = 0; i < 3; i++) Start(i);
        using EtcdStore s = Open();
        EtcdServer.WaitWritable(s, TimeSpan.FromSeconds(30));
    }

    public IReadOnlyList<string> Endpoints => [.. _client.Select(p => $"http://127.0.0.1:{p}")];

    public EtcdStore Open() => new(new EtcdOptions { Endpoints = Endpoints, RequestTimeout = TimeSpan.FromSeconds(3) });

    public void Start(int i)
    {
        string cluster = string.Join(',', Enumerable.Range(0, 3).Select(k => $"m{k}=http://127.0.0.1:{_peer[k]}"));
        var psi = new ProcessStartInfo("/usr/bin/etcd") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in new[]
                 {
                     "--name", $"m{i}", "--data-dir", Path.Combine(_dir, $"m{i}"),
                     "--listen-client-urls", $"http://127.0.0.1:{_client[i]}", "--advertise-client-urls", $"http://127.0.0.1:{_client[i]}",
                     "--listen-peer-urls", $"http://127.0.0.1:{_peer[i]}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{_peer[i]}",
                     "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "t3", "--log-level", "error",
                 })
            psi.ArgumentList.Add(a);
        Process p = Process.Start(psi)!;
        p.ErrorDataReceived += (_, _) => { };
        p.OutputDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        _members[i] = p;
    }

    public void Kill(int i)
    {
        Process? p = _members[i];
        if (p is null) return;
        try
        {
            p.Kill();
            p.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }
        p.Dispose();
        _members[i] = null;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        for (int i = 0; i < 3; i++) Kill(i);
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

public sealed class TlsEtcdServer : IDisposable
{
    public EtcdServer Server { get; } = new(tls: true);
    public void Dispose() => Server.Dispose();
}

/// <summary>A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl as an operator would;
/// and a second CA that signed nothing the server trusts.</summary>
public sealed class TestPki
{
    public TestPki(string dir)
    {
        Directory.CreateDirectory(dir);
        Dir = dir;
        Run($"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout {CaKey} -out {CaCert}");
        Run($"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout {P("other-ca.key")} -out {OtherCaCert}");
        File.WriteAllText(P("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
        File.WriteAllText(P("client.ext"), "extendedKeyUsage=clientAuth\n");
        Run($"req -newkey rsa:2048 -nodes -subj /CN=etcd-server -keyout {ServerKey} -out {P("server.csr")}");
        Run($"x509 -req -in {P("server.csr")} -CA {CaCert} -CAkey {CaKey} -CAcreateserial -days 2 -extfile {P("server.ext")} -out {ServerCert}");
        Run($"req -newkey rsa:2048 -nodes -subj /CN=vswitch -keyout {ClientKey} -out {P("client.csr")}");
        Run($"x509 -req -in {P("client.csr")} -CA {CaCert} -CAkey {CaKey} -CAcreateserial -days 2 -extfile {P("client.ext")} -out {ClientCert}");
    }

    public string Dir { get; }
    private string P(string f) => Path.Combine(Dir, f);
    public string CaCert => P("ca.crt");
    public string CaKey => P("ca.key");
    public string OtherCaCert => P("other-ca.crt");
    public string ServerCert => P("server.crt");
    public string ServerKey => P("server.key");
    public string ClientCert => P("client.crt");
    public string ClientKey => P("client.key");

    private static void Run(string args)
    {
        var psi = new ProcessStartInfo("openssl") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in args.Split(' ')) psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"openssl {args}: {err}");
    }
}

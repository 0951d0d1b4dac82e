using System.Net;
using System.Net.Http;
using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace VSwitch.Cluster;

/// <summary>How to reach the etcd cluster: its client URLs and, for TLS, the CA that signed the members' certificates
/// and this client's certificate and key (mutual TLS), all PEM files.</summary>
public sealed record EtcdOptions
{
    public required IReadOnlyList<string> Endpoints { get; init; }
    public string? CaFile { get; init; }
    public string? CertFile { get; init; }
    public string? KeyFile { get; init; }
    /// <summary>The longest one request may take (a store without quorum answers nothing: the deadline ends the wait).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The problems with these options, each naming the field (empty when usable).</summary>
    public List<string> Validate(string at)
    {
        var errors = new List<string>();
        if (Endpoints.Count == 0) errors.Add($"{at}.endpoints: required (the etcd members' client URLs, like https://198.18.0.11:2379)");
        bool tls = false;
        for (int i = 0; i < Endpoints.Count; i++)
        {
            string e = Endpoints[i];
            if (!Uri.TryCreate(e, UriKind.Absolute, out Uri? u) || u.Scheme is not ("http" or "https") || u.Port <= 0 || u.AbsolutePath != "/")
                errors.Add($"{at}.endpoints[{i}]: '{e}' is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)");
            else tls |= u.Scheme == "https";
        }
        if (tls && Endpoints.Any(e => e.StartsWith("http://", StringComparison.OrdinalIgnoreCase)))
            errors.Add($"{at}.endpoints: mixes http:// and https:// members");
        if ((CertFile is null) != (KeyFile is null)) errors.Add($"{at}: certFile and keyFile go together (the client certificate and its key)");
        if (!tls && (CaFile ?? CertFile) is not null) errors.Add($"{at}: caFile/certFile are set but the endpoints are http:// (use https://)");
        foreach ((string field, string? file) in new[] { ("caFile", CaFile), ("certFile", CertFile), ("keyFile", KeyFile) })
            if (file is not null && !File.Exists(file)) errors.Add($"{at}.{field}: {file}: no such file");
        return errors;
    }
}

/// <summary>A store request that failed: the cluster unreachable, without quorum, or the deadline passed.</summary>
public sealed class StoreUnavailableException : Exception
{
    public StoreUnavailableException(string message, Exception? inner = null) : base(message, inner) { }
    public StoreUnavailableException() { }
    public StoreUnavailableException(string message) : base(message) { }
}

/// <summary>The store refused a request as invalid (too many operations in one transaction for its
/// <c>--max-txn-ops</c>, a request larger than its <c>--max-request-bytes</c>): retrying will not help.</summary>
public sealed class StoreRejectedException : Exception
{
    public StoreRejectedException(string message, Exception? inner = null) : base(message, inner) { }
    public StoreRejectedException() { }
    public StoreRejectedException(string message) : base(message) { }
}

/// <summary>A watch started from a revision the store has compacted away: list again.</summary>
public sealed class CompactedException(long compactRevision) : Exception($"revision compacted (now from {compactRevision})")
{
    public long CompactRevision { get; } = compactRevision;
}

/// <summary>One key as the store holds it.</summary>
public readonly record struct StoreEntry(string Key, byte[] Value, long CreateRevision, long ModRevision, long Lease)
{
    public string Text => System.Text.Encoding.UTF8.GetString(Value);
}

/// <summary>A change seen by a watch: a put (new or changed value) or a delete (also a lease's expiry).</summary>
public readonly record struct StoreEvent(bool Deleted, StoreEntry Entry);

/// <summary>
/// The cluster store: etcd's v3 API through the <c>dotnet-etcd</c> client's generated KV, lease and watch stubs, on one
/// gRPC channel per member; requests go to one member and move to the next when it fails, as etcd's own client does. Every request carries a deadline, so a store without quorum gives an
/// error instead of a hang; watches ask the member to have a leader (<c>hasleader</c>), so a member cut off from the
/// others ends them instead of going silent.
/// </summary>
public sealed class EtcdStore : IDisposable
{
    private readonly EtcdOptions _options;
    private static readonly Metadata RequireLeader = new() { { "hasleader", "true" } };

    public EtcdStore(EtcdOptions options)
    {
        _options = options;
        bool tls = options.Endpoints.Any(e => e.StartsWith("https://", StringComparison.OrdinalIgnoreCase));
        X509Certificate2Collection? roots = null;
        if (options.CaFile is { } ca)
        {
            roots = [];
            roots.ImportFromPemFile(ca);
            if (roots.Count == 0) throw new CryptographicException($"{ca}: no certificate in it");
        }
        X509Certificate2? clientCert = options.CertFile is { } cf ? LoadClientCertificate(cf, options.KeyFile!) : null;
        var hosts = options.Endpoints.Select(e => new Uri(e).Host).ToHashSet(StringComparer.OrdinalIgnoreCase);
        _connect = endpoint =>
        {
            var handler = new SocketsHttpHandler
            {
                ConnectTimeout = TimeSpan.FromSeconds(3),
                // HTTP/2 pings find a member that died without closing its connections (a killed process on another host).
                KeepAlivePingDelay = TimeSpan.FromSeconds(3),
                KeepAlivePingTimeout = TimeSpan.FromSeconds(3),
                KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
                EnableMultipleHttp2Connections = true,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            };
            if (tls)
            {
                handler.SslOptions = new SslClientAuthenticationOptions
                {
                    ClientCertificates = clientCert is null ? null : [clientCert],
                    RemoteCertificateValidationCallback = (_, cert, _, errors) => ValidateServer(cert, errors, roots, hosts),
                };
            }
            GrpcChannel channel = GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
            var client = new EtcdClient(channel.CreateCallInvoker());
            dotnet_etcd.interfaces.IConnection c = client.GetConnection();
            return new Member(endpoint, channel, c.KVClient, c.LeaseClient, c.WatchClient);
        };
        _members = [.. options.Endpoints.Select(_connect)];
    }

    /// <summary>One member: its own channel (one HTTP/2 connection) and the client's stubs on it.</summary>
    private sealed record Member(string Endpoint, GrpcChannel Channel, KV.KVClient Kv, Lease.LeaseClient Lease, Watch.WatchClient Watch);

    private readonly Func<string, Member> _connect;
    private volatile Member[] _members;
    private int _current;
    private long _lastReset;

    /// <summary>
    /// The member requests go to. Like etcd's own client, the store talks to one member at a time and moves to the next
    /// when that one fails (unreachable, no leader, no answer in time); a balancer spreading requests over members would
    /// keep sending some of them to a member that has lost its leader.
    /// </summary>
    private Member Pick() => _members[Volatile.Read(ref _current) % _members.Length];

    /// <summary>The member in use.</summary>
    public string CurrentMember => Pick().Endpoint;

    /// <summary>Moves to the next member when <paramref name="m"/> is still the one in use.</summary>
    private void Failed(Member m)
    {
        Member[] all = _members;
        int i = Array.IndexOf(all, m);
        if (i >= 0 && Interlocked.CompareExchange(ref _current, (i + 1) % all.Length, i) == i) Interlocked.Increment(ref _failovers);
    }

    private long _failovers;

    /// <summary>Times requests moved to another member after one failed.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    /// <summary>Drops every connection to the members and dials them again. Calls in flight finish on the old
    /// connections. At most once per <paramref name="minInterval"/>; true when it reset.</summary>
    public bool Reset(TimeSpan minInterval)
    {
        long now = Environment.TickCount64;
        long last = Interlocked.Read(ref _lastReset);
        if (last != 0 && now - last < minInterval.TotalMilliseconds) return false;
        if (Interlocked.CompareExchange(ref _lastReset, now, last) != last) return false;
        Member[] old = _members;
        _members = [.. _options.Endpoints.Select(_connect)];
        Resets++;
        // Let the calls still running on the old channels end before closing them.
        _ = Task.Delay(TimeSpan.FromSeconds(10)).ContinueWith(_ =>
        {
            foreach (Member m in old) m.Channel.Dispose();
        }, TaskScheduler.Default);
        return true;
    }

    /// <summary>How many times the connections were dropped and dialled again.</summary>
    public long Resets { get; private set; }

    public IReadOnlyList<string> Endpoints => _options.Endpoints;

    /// <summary>The client certificate with its key, from PEM (a certificate that SslStream can present on Linux).</summary>
    private static X509Certificate2 LoadClientCertificate(string certFile, string keyFile)
    {
        using X509Certificate2 pem = X509Certificate2.CreateFromPemFile(certFile, keyFile);
        // An ephemeral PEM key cannot always be used by the TLS stack: round-trip it through PKCS#12.
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A member's certificate is good when it chains to the configured CA (or the system's roots without one)
    /// and names the host of one of the configured endpoints (the channel dials the members under one logical name, so
    /// the usual host-name check is done here against the endpoint list).</summary>
    private static bool ValidateServer(X509Certificate? cert, SslPolicyErrors errors, X509Certificate2Collection? roots, HashSet<string> hosts)
    {
        if (cert is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0) return false;
        using var c2 = new X509Certificate2(cert);
        using var chain = new X509Chain();
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (roots is not null)
        {
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        }
        if (!chain.Build(c2)) return false;
        return hosts.Any(h => c2.MatchesHostname(h, allowWildcards: true, allowCommonName: false));
    }

    private DateTime Deadline => DateTime.UtcNow + _options.RequestTimeout;

    private static ByteString Bytes(string s) => ByteString.CopyFromUtf8(s);

    /// <summary>The end of the key range of every key starting with <paramref name="prefix"/>.</summary>
    internal static ByteString RangeEnd(string prefix)
    {
        byte[] b = System.Text.Encoding.UTF8.GetBytes(prefix);
        for (int i = b.Length - 1; i >= 0; i--)
        {
            if (b[i] < 0xff)
            {
                b[i]++;
                return ByteString.CopyFrom(b, 0, i + 1);
            }
        }
        return ByteString.CopyFrom(0);
    }

    private static StoreEntry Entry(Mvccpb.KeyValue kv) =>
        new(kv.Key.ToStringUtf8(), kv.Value.ToByteArray(), kv.CreateRevision, kv.ModRevision, kv.Lease);

    private async Task<T> Call<T>(Func<Member, CallOptions, AsyncUnaryCall<T>> call, string what, CancellationToken ct)
    {
        Member m = Pick();
        try
        {
            // The deadline ends the call; WaitAsync makes sure nothing here waits longer, whatever state the channel is in.
            return await call(m, new CallOptions(deadline: Deadline, cancellationToken: ct)).ResponseAsync
                .WaitAsync(_options.RequestTimeout + TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested && e.StatusCode is StatusCode.InvalidArgument or StatusCode.ResourceExhausted or StatusCode.FailedPrecondition)
        {
            throw new StoreRejectedException($"etcd refused the {what}: {e.Status.Detail}", e);
        }
        catch (Exception e) when (e is RpcException or TimeoutException)
        {
            throw Translate(e, m, what, ct);
        }
    }

    /// <summary>What a failed request means to the caller: canceled (the caller's token), or the member unusable (the
    /// next request goes to another one).</summary>
    private Exception Translate(Exception e, Member m, string what, CancellationToken ct)
    {
        if (ct.IsCancellationRequested) return new OperationCanceledException("canceled", e, ct);
        Failed(m);
        return new StoreUnavailableException(e is RpcException r
            ? $"etcd {what} at {m.Endpoint}: {Describe(r)}"
            : $"etcd {what} at {m.Endpoint}: no answer in time (no quorum, or the member unreachable)", e);
    }

    internal static string Describe(RpcException e) => e.StatusCode switch
    {
        StatusCode.DeadlineExceeded => "no answer in time (no quorum, or no member reachable)",
        StatusCode.Unavailable => $"unreachable ({e.Status.Detail})",
        _ => $"{e.StatusCode}: {e.Status.Detail}",
    };

    /// <summary>Every key under a prefix, and the store's revision they were read at.</summary>
    public async Task<(List<StoreEntry> Entries, long Revision)> ListAsync(string prefix, CancellationToken ct = default)
    {
        RangeResponse r = await Call((m, o) => m.Kv.RangeAsync(new RangeRequest { Key = Bytes(prefix), RangeEnd = RangeEnd(prefix) }, o), $"list {prefix}", ct).ConfigureAwait(false);
        return ([.. r.Kvs.Select(Entry)], r.Header.Revision);
    }

    public async Task<StoreEntry?> GetAsync(string key, CancellationToken ct = default)
    {
        RangeResponse r = await Call((m, o) => m.Kv.RangeAsync(new RangeRequest { Key = Bytes(key) }, o), $"get {key}", ct).ConfigureAwait(false);
        return r.Kvs.Count == 0 ? null : Entry(r.Kvs[0]);
    }

    /// <summary>The store's current revision (a cheap read that needs quorum: a health probe).</summary>
    public async Task<long> RevisionAsync(CancellationToken ct = default)
    {
        RangeResponse r = await Call((m, o) => m.Kv.RangeAsync(new RangeRequest { Key = Bytes("\0"), CountOnly = true }, o), "revision", ct).ConfigureAwait(false);
        return r.Header.Revision;
    }

    /// <summary>Puts <paramref name="value"/> at <paramref name="key"/> only if the key does not exist (flannel's lease
    /// claim). True when this call created it.</summary>
    public async Task<bool> CreateAsync(string key, string value, long lease = 0, CancellationToken ct = default)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = Bytes(key), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = Bytes(key), Value = Bytes(value), Lease = lease } });
        TxnResponse r = await Call((m, o) => m.Kv.TxnAsync(txn, o), $"create {key}", ct).ConfigureAwait(false);
        return r.Succeeded;
    }

    /// <summary>Writes every put and delete at once if every key is still at the given modification revision (0: absent);
    /// the new revision, or null when some key changed in between.</summary>
    public async Task<long?> CommitAsync(IReadOnlyList<(string Key, long ModRevision)> expect, IReadOnlyList<(string Key, string? Value, long Lease)> writes, CancellationToken ct = default)
    {
        var txn = new TxnRequest();
        foreach ((string key, long rev) in expect)
            txn.Compare.Add(new Compare { Key = Bytes(key), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = rev });
        foreach ((string key, string? value, long lease) in writes)
            txn.Success.Add(value is null
                ? new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = Bytes(key) } }
                : new RequestOp { RequestPut = new PutRequest { Key = Bytes(key), Value = Bytes(value), Lease = lease } });
        TxnResponse r = await Call((m, o) => m.Kv.TxnAsync(txn, o), "commit", ct).ConfigureAwait(false);
        return r.Succeeded ? r.Header.Revision : null;
    }

    public async Task<long> PutAsync(string key, string value, long lease = 0, CancellationToken ct = default)
    {
        PutResponse r = await Call((m, o) => m.Kv.PutAsync(new PutRequest { Key = Bytes(key), Value = Bytes(value), Lease = lease }, o), $"put {key}", ct).ConfigureAwait(false);
        return r.Header.Revision;
    }

    public async Task<long> DeleteAsync(string key, CancellationToken ct = default)
    {
        DeleteRangeResponse r = await Call((m, o) => m.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = Bytes(key) }, o), $"delete {key}", ct).ConfigureAwait(false);
        return r.Deleted;
    }

    /// <summary>Compacts the store's history up to <paramref name="revision"/> (tests, and operators through etcdctl).</summary>
    public async Task CompactAsync(long revision, CancellationToken ct = default) =>
        await Call((m, o) => m.Kv.CompactAsync(new CompactionRequest { Revision = revision, Physical = true }, o), "compact", ct).ConfigureAwait(false);

    /// <summary>A lease of <paramref name="ttlSeconds"/>: keys put with it go when it is revoked or not kept alive.</summary>
    public async Task<long> GrantLeaseAsync(long ttlSeconds, CancellationToken ct = default)
    {
        LeaseGrantResponse r = await Call((m, o) => m.Lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = ttlSeconds }, o), "lease grant", ct).ConfigureAwait(false);
        if (!string.IsNullOrEmpty(r.Error)) throw new StoreUnavailableException($"etcd lease grant: {r.Error}");
        return r.ID;
    }

    public async Task RevokeLeaseAsync(long lease, CancellationToken ct = default) =>
        await Call((m, o) => m.Lease.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease }, o), "lease revoke", ct).ConfigureAwait(false);

    /// <summary>Renews a lease once; its remaining TTL in seconds (0 or less: it had already expired).</summary>
    public async Task<long> KeepAliveOnceAsync(long lease, CancellationToken ct = default)
    {
        try
        {
            return await KeepAliveCoreAsync(lease, ct).WaitAsync(_options.RequestTimeout + TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
            Failed(Pick());
            throw new StoreUnavailableException("etcd lease keep-alive: no answer in time (no quorum, or the member unreachable)", e);
        }
    }

    private async Task<long> KeepAliveCoreAsync(long lease, CancellationToken ct)
    {
        Member m = Pick();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(_options.RequestTimeout);
        try
        {
            using AsyncDuplexStreamingCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse> call =
                m.Lease.LeaseKeepAlive(new CallOptions(headers: RequireLeader, deadline: Deadline, cancellationToken: cts.Token));
            await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = lease }, cts.Token).ConfigureAwait(false);
            if (!await call.ResponseStream.MoveNext(cts.Token).ConfigureAwait(false))
                throw new StoreUnavailableException("etcd lease keep-alive: the stream ended without an answer");
            return call.ResponseStream.Current.TTL;
        }
        catch (RpcException e)
        {
            throw Translate(e, m, "lease keep-alive", ct);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            Failed(m);
            throw new StoreUnavailableException($"etcd lease keep-alive at {m.Endpoint}: no answer in time (no quorum, or the member unreachable)");
        }
    }

    /// <summary>
    /// The changes under <paramref name="prefix"/> after <paramref name="afterRevision"/>, batch by batch (one batch per
    /// store transaction), with the revision each batch brings the reader to. Progress notifications (no events) come as
    /// empty batches. Ends with <see cref="CompactedException"/> when that history is gone, with
    /// <see cref="StoreUnavailableException"/> when the stream breaks (member gone, leader lost).
    /// </summary>
    public async IAsyncEnumerable<(List<StoreEvent> Events, long Revision)> WatchAsync(string prefix, long afterRevision,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        Member m = Pick();
        using AsyncDuplexStreamingCall<WatchRequest, WatchResponse> call = m.Watch.Watch(new CallOptions(headers: RequireLeader, cancellationToken: ct));
        try
        {
            await call.RequestStream.WriteAsync(new WatchRequest
            {
                CreateRequest = new WatchCreateRequest { Key = Bytes(prefix), RangeEnd = RangeEnd(prefix), StartRevision = afterRevision + 1, ProgressNotify = true },
            }, ct).WaitAsync(_options.RequestTimeout, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RpcException or TimeoutException)
        {
            throw Translate(e, m, $"watch {prefix}", ct);
        }
        long revision = afterRevision;
        var pending = new List<StoreEvent>();
        bool created = false;
        while (true)
        {
            WatchResponse r;
            try
            {
                // The member answers a new watch at once (created, or refused): a silent one is not usable.
                Task<bool> next = call.ResponseStream.MoveNext(ct);
                if (!await (created ? next : next.WaitAsync(_options.RequestTimeout, ct)).ConfigureAwait(false))
                {
                    Failed(m);
                    throw new StoreUnavailableException($"etcd watch {prefix} at {m.Endpoint}: the stream ended");
                }
                r = call.ResponseStream.Current;
                created = true;
            }
            catch (RpcException e) when (ct.IsCancellationRequested)
        {
            throw new OperationCanceledException("canceled", e, ct);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                Failed(m);
                throw new StoreUnavailableException($"etcd watch {prefix} at {m.Endpoint}: {Describe(e)}", e);
            }
            catch (TimeoutException e)
            {
                Failed(m);
                throw new StoreUnavailableException($"etcd watch {prefix} at {m.Endpoint}: no answer in time (no quorum, or the member unreachable)", e);
            }
            if (r.CompactRevision != 0) throw new CompactedException(r.CompactRevision);
            if (r.Canceled)
            {
                Failed(m);
                throw new StoreUnavailableException($"etcd watch {prefix} at {m.Endpoint}: canceled by the member ({r.CancelReason})");
            }
            if (r.Created)
            {
                yield return ([], revision); // established: the reader is current as of where it asked to start
                continue;
            }
            foreach (Mvccpb.Event e in r.Events) pending.Add(new StoreEvent(e.Type == Mvccpb.Event.Types.EventType.Delete, Entry(e.Kv)));
            if (r.Fragment) continue;
            // A progress notification promises every event up to its header's revision was sent; an event response only
            // up to its last event.
            revision = Math.Max(revision, r.Events.Count > 0 ? r.Events[^1].Kv.ModRevision : r.Header.Revision);
            yield return (pending, revision);
            pending = [];
        }
    }

    public void Dispose()
    {
        foreach (Member m in _members) m.Channel.Dispose();
    }
}

namespace VSwitch.Cluster.Tests;

/// <summary>The store losing quorum and getting it back, with three real members: requests fail (never hang) while it is
/// gone, and the same client works again — keep-alives, reads, watches — once it is back.</summary>
public sealed class QuorumTests : IDisposable
{
    private readonly EtcdCluster _cluster = new();

    public void Dispose() => _cluster.Dispose();

    private static async Task<T> Eventually<T>(Func<Task<T>> f, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            try
            {
                return await f();
            }
            catch (StoreUnavailableException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }
    }

    [Fact]
    public async Task Without_quorum_requests_fail_in_time_and_with_it_back_everything_works_again()
    {
        using EtcdStore s = _cluster.Open();
        long lease = await s.GrantLeaseAsync(8);
        await s.PutAsync("/q/a", "1", lease);
        var events = new List<StoreEvent>();
        var w = new PrefixWatcher(s, "/q/", (ev, _, _) =>
        {
            lock (events) events.AddRange(ev);
            return Task.CompletedTask;
        });
        using var cts = new CancellationTokenSource();
        Task run = w.RunAsync(_ => { }, cts.Token);

        _cluster.Kill(2);
        Assert.True(await Eventually(() => s.KeepAliveOnceAsync(lease), TimeSpan.FromSeconds(10)) > 0);
        _cluster.Kill(1);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await Assert.ThrowsAsync<StoreUnavailableException>(async () =>
        {
            // Within a few tries the remaining member has no leader: every call fails, none hangs.
            for (int i = 0; i < 10; i++)
            {
                await s.KeepAliveOnceAsync(lease);
                await Task.Delay(500);
            }
        });
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"took {sw.Elapsed}");
        await Assert.ThrowsAsync<StoreUnavailableException>(() => s.PutAsync("/q/b", "2"));

        _cluster.Start(1);
        sw.Restart();
        long ttl = await Eventually(() => s.KeepAliveOnceAsync(lease), TimeSpan.FromSeconds(20));
        Assert.True(ttl > 0);
        await Eventually(() => s.PutAsync("/q/c", "3"), TimeSpan.FromSeconds(10));
        // The watch resumed and saw the write made after the store came back.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            lock (events) if (events.Any(e => e.Entry.Key == "/q/c")) break;
            Assert.True(DateTime.UtcNow < deadline, $"the watch did not resume (breaks {w.Breaks}, error {w.LastError}, watching {w.Watching})");
            await Task.Delay(100);
        }
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(25), $"back after {sw.Elapsed}");
        await cts.CancelAsync();
        await run;
    }
}

namespace VSwitch.Cluster.Tests;

public sealed class WatchTests(EtcdServer etcd) : IClassFixture<EtcdServer>
{
    /// <summary>What a consumer builds from the watcher's batches: it must end equal to the store.</summary>
    private sealed class Mirror
    {
        public readonly Dictionary<string, string> State = new(StringComparer.Ordinal);
        public int Batches, Listed;

        public Task Apply(IReadOnlyList<StoreEvent> events, long revision, bool listed)
        {
            lock (State)
            {
                Batches++;
                if (listed) Listed++;
                foreach (StoreEvent e in events)
                    if (e.Deleted) State.Remove(e.Entry.Key);
                    else State[e.Entry.Key] = e.Entry.Text;
            }
            return Task.CompletedTask;
        }
    }

    private static async Task Until(Func<bool> done, int seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!done())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(50);
        }
    }

    private static async Task<Dictionary<string, string>> StoreState(EtcdStore s, string prefix) =>
        (await s.ListAsync(prefix)).Entries.ToDictionary(e => e.Key, e => e.Text, StringComparer.Ordinal);

    [Fact]
    public async Task Lists_then_hands_over_each_change_once()
    {
        string prefix = "/w" + Guid.NewGuid().ToString("N")[..8] + "/";
        using EtcdStore s = etcd.Open();
        await s.PutAsync(prefix + "a", "1");
        var m = new Mirror();
        var w = new PrefixWatcher(s, prefix, m.Apply);
        using var cts = new CancellationTokenSource();
        Task run = w.RunAsync(_ => { }, cts.Token);
        await Until(() => w.Watching);
        await s.PutAsync(prefix + "b", "2");
        await s.PutAsync(prefix + "a", "3");
        await s.DeleteAsync(prefix + "b");
        await s.PutAsync("/elsewhere/" + prefix, "x");
        long rev = await s.RevisionAsync();
        await Until(() => w.Revision >= rev - 1);
        lock (m.State) Assert.Equal(new Dictionary<string, string> { [prefix + "a"] = "3" }, m.State);
        Assert.Equal(3, w.Events); // put b, put a, delete b (the list is not an event)
        await cts.CancelAsync();
        await run;
    }

    [Fact]
    public async Task After_a_compaction_it_lists_again_and_converges_to_the_store()
    {
        string prefix = "/c" + Guid.NewGuid().ToString("N")[..8] + "/";
        using EtcdStore s = etcd.Open();
        for (int i = 0; i < 10; i++) await s.PutAsync($"{prefix}k{i}", $"v{i}");
        var m = new Mirror();
        var w = new PrefixWatcher(s, prefix, m.Apply);
        using (var cts = new CancellationTokenSource())
        {
            Task run = w.RunAsync(_ => { }, cts.Token);
            await Until(() => w.Watching);
            await cts.CancelAsync();
            await run;
        }
        // While nobody watched: changes, deletes, new keys, then the history compacted away.
        await s.PutAsync($"{prefix}k1", "changed");
        await s.DeleteAsync($"{prefix}k2");
        await s.DeleteAsync($"{prefix}k3");
        await s.PutAsync($"{prefix}new", "n");
        await s.CompactAsync(await s.RevisionAsync());
        int batchesBefore = m.Batches;
        using (var cts = new CancellationTokenSource())
        {
            Task run = w.RunAsync(_ => { }, cts.Token);
            try { await Until(() => w.Relists == 1 && w.Watching); } catch (Xunit.Sdk.XunitException) { Assert.Fail($"relists {w.Relists} watching {w.Watching} breaks {w.Breaks} lists {w.Lists} error {w.LastError} rev {w.Revision}"); }
            await s.PutAsync($"{prefix}after", "a");
            long rev = await s.RevisionAsync();
            await Until(() => w.Revision >= rev);
            await cts.CancelAsync();
            await run;
        }
        Dictionary<string, string> store = await StoreState(s, prefix);
        lock (m.State) Assert.Equal(store, m.State);
        Assert.Equal(1, w.Relists);
        // The relist handed over only the difference: k1 changed, k2 and k3 gone, new added (4 changes), not all 10 keys.
        Assert.True(m.Batches - batchesBefore <= 2);
    }

    [Fact]
    public async Task A_watcher_seeded_from_a_saved_state_hands_over_only_what_changed()
    {
        string prefix = "/s" + Guid.NewGuid().ToString("N")[..8] + "/";
        using EtcdStore s = etcd.Open();
        for (int i = 0; i < 5; i++) await s.PutAsync($"{prefix}k{i}", $"v{i}");
        (List<StoreEntry> entries, long rev) = await s.ListAsync(prefix);
        await s.PutAsync($"{prefix}k0", "changed");
        var changes = new List<StoreEvent>();
        var w = new PrefixWatcher(s, prefix, (ev, _, _) =>
        {
            lock (changes) changes.AddRange(ev);
            return Task.CompletedTask;
        });
        w.Seed(entries.Select(e => KeyValuePair.Create(e.Key, e.ModRevision)), rev);
        using var cts = new CancellationTokenSource();
        Task run = w.RunAsync(_ => { }, cts.Token);
        await Until(() => { lock (changes) return changes.Count > 0; });
        await cts.CancelAsync();
        await run;
        lock (changes) Assert.Equal([$"{prefix}k0"], changes.Select(c => c.Entry.Key));
    }

    [Fact]
    public async Task A_store_that_cannot_be_reached_is_reported_not_thrown()
    {
        using EtcdStore dead = new(new EtcdOptions { Endpoints = ["http://127.0.0.1:1"], RequestTimeout = TimeSpan.FromSeconds(1) });
        var w = new PrefixWatcher(dead, "/x/", (_, _, _) => Task.CompletedTask);
        string? state = null;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        await w.RunAsync(e => state = e, cts.Token);
        Assert.NotNull(state);
        Assert.False(w.Watching);
        Assert.True(w.Breaks >= 1);
        await Assert.ThrowsAsync<StoreUnavailableException>(() => dead.GetAsync("/x"));
    }
}

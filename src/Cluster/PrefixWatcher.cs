namespace VSwitch.Cluster;

/// <summary>
/// Follows every key under a prefix: lists it, then watches from the listed revision, handing each store transaction's
/// changes to the handler in order. When the watch breaks it resumes from the last revision handled; when that history
/// has been compacted away it lists again and hands over the difference against what it had handed before (puts for
/// keys new or changed, deletes for keys gone), so the handler converges to exactly the store's state without ever
/// seeing the whole set again. Only each key's modification revision is kept for that comparison.
/// </summary>
public sealed class PrefixWatcher
{
    private readonly EtcdStore _store;
    private readonly string _prefix;
    private readonly Func<IReadOnlyList<StoreEvent>, long, bool, Task> _handler;
    private readonly Dictionary<string, long> _known = new(StringComparer.Ordinal);

    /// <param name="handler">Called with a batch of changes, the revision they bring the reader to, and whether they
    /// come from a (re)list rather than the watch. Runs on the watcher's task, one batch at a time.</param>
    public PrefixWatcher(EtcdStore store, string prefix, Func<IReadOnlyList<StoreEvent>, long, bool, Task> handler)
    {
        _store = store;
        _prefix = prefix;
        _handler = handler;
    }

    public string Prefix => _prefix;
    /// <summary>The revision handled last (0 before the first list).</summary>
    public long Revision { get; private set; }
    public int Keys => _known.Count;
    public long Lists { get; private set; }
    public long Relists { get; private set; }
    public long Events { get; private set; }
    public long Breaks { get; private set; }
    /// <summary>True while a watch stream is established and current.</summary>
    public bool Watching { get; private set; }
    /// <summary>Set by every success and failure: null when the last attempt worked.</summary>
    public string? LastError { get; private set; }

    /// <summary>Seeds what was handed over before (keys and revisions restored from a saved state), so the first list
    /// hands over only what changed since.</summary>
    public void Seed(IEnumerable<KeyValuePair<string, long>> known, long revision)
    {
        foreach ((string k, long r) in known) _known[k] = r;
        Revision = revision;
    }

    public IReadOnlyDictionary<string, long> Known => _known;

    /// <summary>Lists (or resumes) and watches until <paramref name="ct"/> ends; never throws for store failures, which
    /// are reported through <see cref="LastError"/> and <paramref name="onState"/> and retried with backoff.</summary>
    public async Task RunAsync(Action<string?> onState, CancellationToken ct)
    {
        // Resume from the revision handled last (a previous run, or a saved state) when there is one: the store sends what
        // changed since, or says the history is compacted, and then the difference is listed.
        bool needList = Revision == 0;
        TimeSpan backoff = TimeSpan.FromMilliseconds(200);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (needList)
                {
                    await ListAsync(ct).ConfigureAwait(false);
                    needList = false;
                }
                await foreach ((List<StoreEvent> events, long revision) in _store.WatchAsync(_prefix, Revision, ct).ConfigureAwait(false))
                {
                    Watching = true;
                    if (LastError is not null)
                    {
                        LastError = null;
                        onState(null);
                    }
                    backoff = TimeSpan.FromMilliseconds(200);
                    if (events.Count > 0)
                    {
                        foreach (StoreEvent e in events)
                        {
                            if (e.Deleted) _known.Remove(e.Entry.Key);
                            else _known[e.Entry.Key] = e.Entry.ModRevision;
                        }
                        Events += events.Count;
                        await Handle(events, revision, false).ConfigureAwait(false);
                    }
                    Revision = revision;
                }
            }
            catch (CompactedException)
            {
                Watching = false;
                Relists++;
                needList = true;
            }
            catch (StoreUnavailableException e)
            {
                Watching = false;
                Breaks++;
                LastError = e.Message;
                onState(e.Message);
                try
                {
                    await Task.Delay(backoff, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 2000));
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Lists the prefix and hands over the difference against what is known.</summary>
    internal async Task ListAsync(CancellationToken ct)
    {
        (List<StoreEntry> entries, long revision) = await _store.ListAsync(_prefix, ct).ConfigureAwait(false);
        Lists++;
        var changes = new List<StoreEvent>();
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (StoreEntry e in entries)
        {
            present.Add(e.Key);
            if (!_known.TryGetValue(e.Key, out long r) || r != e.ModRevision) changes.Add(new StoreEvent(false, e));
        }
        foreach (string gone in _known.Keys.Where(k => !present.Contains(k)).ToList())
            changes.Add(new StoreEvent(true, new StoreEntry(gone, [], 0, revision, 0)));
        foreach (StoreEvent c in changes)
        {
            if (c.Deleted) _known.Remove(c.Entry.Key);
            else _known[c.Entry.Key] = c.Entry.ModRevision;
        }
        Revision = revision;
        await Handle(changes, revision, true).ConfigureAwait(false);
    }

    /// <summary>Times the handler failed on a batch (the batch counts as handled: the watch goes on).</summary>
    public long HandlerErrors { get; private set; }

    /// <summary>The last handler failure, kept apart from the store's state.</summary>
    public string? LastHandlerError { get; private set; }

    /// <summary>Runs the handler; its failure is counted and kept, never the end of the watch.</summary>
    private async Task Handle(IReadOnlyList<StoreEvent> events, long revision, bool listed)
    {
        try
        {
            await _handler(events, revision, listed).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            HandlerErrors++;
            LastHandlerError = e.Message;
        }
    }
}

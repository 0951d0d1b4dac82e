namespace VSwitch.Switch;

/// <summary>
/// How long a worker keeps polling its ports after traffic before it sleeps in epoll, learned from what its sleeps
/// cost. The rule is the kernel's haltpoll cpuidle governor's (grow on a short gap, shrink on a long one), applied to
/// the switch's wait instead of the CPU's idle loop, plus two conditions of our own that keep streams batched (a wake
/// that finds a batch; a period that carried a stream):
/// <list type="bullet">
/// <item>The worker slept and a few frames (at most <see cref="SmallWake"/>) woke it after a gap (since the last
/// traffic) no longer than the limit: request/response traffic, where the sleep added a wake-up to the exchange's
/// latency and polling that long would have saved it. The window grows (doubles, starting at <see cref="Start"/>, up
/// to <see cref="Limit"/>).</item>
/// <item>The gap was longer than the limit (or the wait timed out): polling would have been wasted. Or more frames
/// than that woke it: a stream that built up a batch while the worker slept, where the sleep cost no throughput and
/// the batch spares the receivers a wake-up per frame. The window halves, and below <see cref="Start"/> it closes
/// (0: sleep at once).</item>
/// <item>While the worker keeps finding traffic it never sleeps, so nothing above is observed: every
/// <see cref="Probe"/> of open window the window closes once, and the next sleeps decide again.</item>
/// <item>A period of <see cref="Probe"/> in which the worker took in more than <see cref="StreamFrames"/> frames (more
/// than 150,000 a second at the default 10 ms) or more than <see cref="StreamBytes"/> bytes (1 Gb/s: TCP super-frames
/// are few frames) was a stream, not requests and responses: the window closes and stays
/// closed through the next period, whatever the wakes find. A stream is what interrupt moderation batches: waking once
/// per batch, the switch hands each receiver a batch, not a wake-up per frame.</item>
/// </list>
/// Sparse traffic (pings 10 ms apart) keeps the window closed and costs nothing; a connection's packets tens of µs
/// apart open it and are served without wake-ups; a saturating stream keeps it closed. Polling that finds nothing
/// costs at most one window per gap, and the window is open only while gaps are shorter than the limit.
/// </summary>
public struct AdaptivePoll
{
    /// <summary>A wake that finds more frames than this found a batch, not a request.</summary>
    public const int SmallWake = 4;

    /// <param name="limit">Largest window, in timestamp ticks (0: never poll).</param>
    /// <param name="start">The window a first short gap opens, in ticks (clamped to 1..limit).</param>
    /// <param name="probe">How long the window stays open before it closes once to be decided again, in ticks; also the
    /// period over which the frames are counted.</param>
    /// <param name="streamFrames">More frames than this in one period make it a stream.</param>
    /// <param name="streamBytes">So do more bytes than this.</param>
    public AdaptivePoll(long limit, long start, long probe, int streamFrames, long streamBytes = long.MaxValue)
    {
        StreamBytes = Math.Max(1, streamBytes);
        Limit = Math.Max(0, limit);
        Start = Math.Clamp(start, 1, Math.Max(1, Limit));
        Probe = Math.Max(1, probe);
        StreamFrames = Math.Max(1, streamFrames);
    }

    public long Limit { get; }
    public long Start { get; }
    public long Probe { get; }
    public int StreamFrames { get; }
    public long StreamBytes { get; }
    /// <summary>The last full period carried a stream: the window stays closed.</summary>
    public bool Streaming { get; private set; }
    /// <summary>The current window, in ticks.</summary>
    public long Window { get; private set; }
    /// <summary>Times the window grew, shrank, and was closed to probe (for the status).</summary>
    public long Grown { get; private set; }
    public long Shrunk { get; private set; }
    public long Probed { get; private set; }
    private long _openedAt, _periodStart;
    private int _periodFrames;
    private long _periodBytes;

    /// <summary>The worker slept and woke at <paramref name="now"/>: <paramref name="gap"/> ticks after the last traffic,
    /// finding <paramref name="frames"/> frames (0: a wake for a control command, or a timeout).</summary>
    public void Woke(long now, long gap, int frames)
    {
        if (Limit == 0) return;
        if (frames is > 0 and <= SmallWake && gap <= Limit && !Streaming)
        {
            long w = Math.Min(Limit, Math.Max(Start, Window * 2));
            if (Window == 0) _openedAt = now;
            if (w != Window) Grown++;
            Window = w;
        }
        else if ((frames > SmallWake || gap > Limit) && Window > 0)
        {
            Window = Window / 2 < Start ? 0 : Window / 2;
            Shrunk++;
        }
    }

    /// <summary>Called before each wait with the frames (and bytes) taken in since the last call: the window, closed once if it has
    /// been open for <see cref="Probe"/>, and closed while the last period was a stream.</summary>
    public long Current(long now, int frames, long bytes = 0)
    {
        _periodFrames += frames;
        _periodBytes += bytes;
        if (now - _periodStart >= Probe)
        {
            Streaming = _periodFrames > StreamFrames || _periodBytes > StreamBytes;
            _periodFrames = 0;
            _periodBytes = 0;
            _periodStart = now;
        }
        if (Window > 0 && (Streaming || now - _openedAt >= Probe))
        {
            Window = 0;
            Probed++;
        }
        return Window;
    }
}

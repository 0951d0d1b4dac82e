using VSwitch.Switch;
using Xunit;

namespace VSwitch.Switch.Tests;

/// <summary>The adaptive polling window's rule, on a clock in µs (ticks = µs here).</summary>
public class AdaptivePollTests
{
    private const long Limit = 200, Start = 50, Probe = 10_000;
    private const int StreamFrames = 1_500;

    private static AdaptivePoll New() => new(Limit, Start, Probe, StreamFrames);

    [Fact]
    public void Short_gaps_with_a_frame_or_two_open_the_window_up_to_the_limit()
    {
        AdaptivePoll p = New();
        Assert.Equal(0, p.Current(0, 0));
        p.Woke(100, gap: 80, frames: 1);
        Assert.Equal(Start, p.Current(100, 1));
        p.Woke(300, gap: 120, frames: 2);
        Assert.Equal(100, p.Current(300, 2));
        p.Woke(500, gap: 150, frames: 1);
        p.Woke(700, gap: 150, frames: 1);
        Assert.Equal(Limit, p.Current(700, 2));
        Assert.Equal(3, p.Grown);
    }

    [Fact]
    public void Gaps_longer_than_the_limit_close_it_by_halves()
    {
        AdaptivePoll p = New();
        for (int i = 0; i < 3; i++) p.Woke(100 * (i + 1), gap: 60, frames: 1);
        Assert.Equal(Limit, p.Window);
        p.Woke(20_000, gap: 10_000, frames: 1); // a ping 10 ms after the last: polling would have been wasted
        Assert.Equal(100, p.Window);
        p.Woke(30_000, gap: 10_000, frames: 1);
        Assert.Equal(Start, p.Window);
        p.Woke(40_000, gap: 10_000, frames: 1);
        Assert.Equal(0, p.Window);
        p.Woke(50_000, gap: 10_000, frames: 1);
        Assert.Equal(0, p.Window);
    }

    [Fact]
    public void A_wake_that_finds_a_batch_shrinks_it_and_a_control_wake_changes_nothing()
    {
        AdaptivePoll p = New();
        p.Woke(100, gap: 60, frames: 1);
        p.Woke(200, gap: 60, frames: 1);
        Assert.Equal(100, p.Window);
        p.Woke(300, gap: 60, frames: AdaptivePoll.SmallWake + 1);
        Assert.Equal(Start, p.Window);
        p.Woke(400, gap: 60, frames: 0); // woken for a command, no traffic
        Assert.Equal(Start, p.Window);
    }

    [Fact]
    public void An_open_window_closes_once_per_probe_period_to_be_decided_again()
    {
        AdaptivePoll p = New();
        p.Woke(100, gap: 60, frames: 1);
        Assert.Equal(Start, p.Current(5_000, 10));
        Assert.Equal(0, p.Current(100 + Probe, 10));
        Assert.Equal(1, p.Probed);
        p.Woke(100 + Probe + 50, gap: 60, frames: 1); // still request/response: it opens again
        Assert.Equal(Start, p.Current(100 + Probe + 60, 1));
    }

    [Fact]
    public void A_period_with_a_stream_of_frames_keeps_it_closed_through_the_next()
    {
        AdaptivePoll p = New();
        Assert.Equal(0, p.Current(0, 0));
        p.Woke(100, gap: 60, frames: 1);
        Assert.Equal(Start, p.Current(200, StreamFrames + 1));
        Assert.Equal(0, p.Current(Probe, 0)); // the period had a stream
        Assert.True(p.Streaming);
        p.Woke(Probe + 100, gap: 30, frames: 2); // small wakes during a stream do not open it
        Assert.Equal(0, p.Current(Probe + 200, 2));
        Assert.Equal(0, p.Current(2 * Probe + 1, 0)); // a quiet period ends the stream
        Assert.False(p.Streaming);
        p.Woke(2 * Probe + 100, gap: 60, frames: 1);
        Assert.Equal(Start, p.Window);
    }

    [Fact]
    public void A_period_with_many_bytes_in_few_frames_is_a_stream_too()
    {
        AdaptivePoll p = new(Limit, Start, Probe, StreamFrames, streamBytes: 1_250_000);
        Assert.Equal(0, p.Current(0, 0, 0));
        p.Woke(100, gap: 60, frames: 1);
        Assert.Equal(Start, p.Current(200, 100, 100 * 65_000L)); // 100 TCP super-frames: 6.5 MB in the period
        Assert.Equal(0, p.Current(Probe, 0, 0));
        Assert.True(p.Streaming);
    }

    [Fact]
    public void A_zero_limit_never_polls()
    {
        AdaptivePoll p = new(0, 0, Probe, StreamFrames);
        p.Woke(100, gap: 1, frames: 1);
        Assert.Equal(0, p.Current(200, 1));
    }
}

using System.Runtime.CompilerServices;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.L2;
using VSwitch.Tap;
using static VSwitch.Switch.Tests.Frames;

namespace VSwitch.Switch.Tests;

public sealed class L2BridgeTests
{
    private readonly ManualClock _clock = new();

    private (Datapath Dp, MemoryPort[] Ports) Build(int ports = 3, int macTableSize = 1024, MacTableFullPolicy policy = MacTableFullPolicy.Flood, int agingSeconds = 300)
    {
        var dp = new Datapath(new DatapathOptions
        {
            MacTableSize = macTableSize,
            MacTableFullPolicy = policy,
            MacAging = TimeSpan.FromSeconds(agingSeconds),
            Slots = 512,
        }, _clock);
        var p = new MemoryPort[ports];
        for (int i = 0; i < ports; i++)
        {
            p[i] = new MemoryPort($"p{i}");
            dp.AddPort(p[i]);
        }
        return (dp, p);
    }

    private static long Drops(Datapath dp, string stage, string reason) =>
        dp.Graph.Drop.NonZero().Where(d => d.Stage == stage && d.Reason == reason).Sum(d => d.Count);

    private static long Event(Datapath dp, string stage, string counter)
    {
        Stage s = dp.Graph.Find(stage)!;
        return s.Counters[Array.IndexOf(s.Counters.Names, counter)];
    }

    [Fact]
    public void Metadata_fits_in_a_cache_line()
    {
        Assert.True(Unsafe.SizeOf<PacketMeta>() <= 64, $"PacketMeta is {Unsafe.SizeOf<PacketMeta>()} bytes");
    }

    [Fact]
    public void Unknown_unicast_floods_to_all_but_ingress_then_learned_reply_goes_direct()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        byte[] f1 = Make(Mac(2), Mac(1));
        p[0].Inject(f1);
        dp.RunOnce();
        Assert.Empty(p[0].Transmitted);
        Assert.Equal(f1, Assert.Single(p[1].Transmitted));
        Assert.Equal(f1, Assert.Single(p[2].Transmitted));
        Assert.Equal(1, Event(dp, "l2-forward", "unknown-unicast"));

        byte[] reply = Make(Mac(1), Mac(2));
        p[1].Inject(reply);
        dp.RunOnce();
        Assert.Equal(reply, Assert.Single(p[0].Transmitted));
        Assert.Single(p[2].Transmitted); // no new copy
        Assert.Equal(1, Event(dp, "l2-forward", "hit"));
        Assert.Equal(2, dp.Macs.Count);
    }

    [Fact]
    public void Broadcast_and_multicast_reach_every_port_but_the_ingress()
    {
        (Datapath dp, MemoryPort[] p) = Build(4);
        p[2].Inject(Make(MacAddress.Broadcast, Mac(7)));
        p[2].Inject(Make(new MacAddress(0x0100_5E00_0001UL), Mac(7)));
        dp.RunOnce();
        for (int i = 0; i < 4; i++) Assert.Equal(i == 2 ? 0 : 2, p[i].Transmitted.Count);
        Assert.Equal(1, Event(dp, "l2-forward", "broadcast"));
        Assert.Equal(1, Event(dp, "l2-forward", "multicast"));
    }

    [Fact]
    public void Learned_entries_age_out_and_destinations_flood_again()
    {
        (Datapath dp, MemoryPort[] p) = Build(agingSeconds: 300);
        p[1].Inject(Make(Mac(9), Mac(2)));
        dp.RunOnce();
        p[0].Inject(Make(Mac(2), Mac(1)));
        dp.RunOnce();
        Assert.Single(p[1].Transmitted);
        Assert.DoesNotContain(p[2].Transmitted, f => MacAddress.Read(f) == Mac(2));

        _clock.Advance(TimeSpan.FromSeconds(299));
        p[0].Inject(Make(Mac(2), Mac(1)));
        dp.RunOnce();
        Assert.DoesNotContain(p[2].Transmitted, f => MacAddress.Read(f) == Mac(2));

        _clock.Advance(TimeSpan.FromSeconds(2)); // Mac(2) last seen 301 s ago; Mac(1) refreshed 2 s ago
        p[0].Inject(Make(Mac(2), Mac(1)));
        dp.RunOnce();
        Assert.Single(p[2].Transmitted, f => MacAddress.Read(f) == Mac(2)); // flooded again
        Assert.True(dp.AgedOut >= 1);
        Assert.DoesNotContain(dp.Macs.Entries(_clock.GetTimestamp(), _clock.TimestampFrequency), e => e.Mac == Mac(2));
    }

    [Fact]
    public void Mac_move_updates_the_port_and_is_counted()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        p[0].Inject(Make(MacAddress.Broadcast, Mac(5)));
        dp.RunOnce();
        p[2].Inject(Make(MacAddress.Broadcast, Mac(5)));
        dp.RunOnce();
        Assert.Equal(1, Event(dp, "l2-learn", "moved"));
        p[1].Inject(Make(Mac(5), Mac(6)));
        dp.RunOnce();
        Assert.Single(p[2].Transmitted, f => MacAddress.Read(f) == Mac(5));
        Assert.DoesNotContain(p[0].Transmitted, f => MacAddress.Read(f) == Mac(5));
    }

    [Fact]
    public void Static_entries_never_move_and_spoofed_sources_are_dropped()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        Assert.True(dp.Macs.AddStatic(Mac(5), 0, 0));
        p[2].Inject(Make(MacAddress.Broadcast, Mac(5)));
        dp.RunOnce();
        Assert.Equal(1, Drops(dp, "l2-learn", "static-mac-spoof"));
        Assert.All(p, port => Assert.Empty(port.Transmitted));
        _clock.Advance(TimeSpan.FromDays(1));
        p[1].Inject(Make(Mac(5), Mac(6)));
        dp.RunOnce();
        Assert.Single(p[0].Transmitted);
    }

    [Fact]
    public void Full_table_with_flood_policy_counts_and_still_forwards()
    {
        (Datapath dp, MemoryPort[] p) = Build(macTableSize: 4);
        for (int i = 1; i <= 6; i++) p[0].Inject(Make(MacAddress.Broadcast, Mac(i)));
        dp.RunOnce();
        Assert.Equal(4, dp.Macs.Count);
        Assert.Equal(2, Event(dp, "l2-learn", "table-full"));
        Assert.Equal(6, p[1].Transmitted.Count);
    }

    [Fact]
    public void Full_table_with_drop_policy_drops_unlearnable_sources()
    {
        (Datapath dp, MemoryPort[] p) = Build(macTableSize: 4, policy: MacTableFullPolicy.Drop);
        for (int i = 1; i <= 6; i++) p[0].Inject(Make(MacAddress.Broadcast, Mac(i)));
        dp.RunOnce();
        Assert.Equal(4, p[1].Transmitted.Count);
        Assert.Equal(2, Drops(dp, "l2-learn", "table-full"));
        // Once entries age out, room returns.
        _clock.Advance(TimeSpan.FromSeconds(301));
        dp.Housekeeping();
        Assert.Equal(0, dp.Macs.Count);
    }

    [Fact]
    public void A_miss_between_two_hits_in_one_batch_does_not_disturb_the_hits()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        p[1].Inject(Make(MacAddress.Broadcast, Mac(2)));
        dp.RunOnce();
        p[0].Inject(Make(Mac(2), Mac(1)));
        p[0].Inject(Make(Mac(3), Mac(1)));
        p[0].Inject(Make(Mac(2), Mac(1)));
        dp.RunOnce();
        Assert.Equal(2, p[1].Transmitted.Count(f => MacAddress.Read(f) == Mac(2)));
        Assert.Empty(dp.Graph.Drop.NonZero());
    }

    [Fact]
    public void Frames_to_a_destination_behind_the_ingress_port_are_filtered()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        p[0].Inject(Make(MacAddress.Broadcast, Mac(1)));
        p[0].Inject(Make(Mac(1), Mac(2)));
        dp.RunOnce();
        Assert.Equal(1, Drops(dp, "l2-forward", "same-port"));
    }

    [Fact]
    public void Runts_and_bad_sources_are_counted_drops_and_buffers_come_back()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        int free = dp.Slab.FreeCount;
        p[0].Inject(new byte[10]);
        p[0].Inject(Make(Mac(2), MacAddress.Broadcast));
        p[0].Inject(Make(Mac(2), MacAddress.Zero));
        dp.RunOnce();
        Assert.Equal(1, Drops(dp, "ethernet-parse", "runt"));
        Assert.Equal(1, Drops(dp, "ethernet-parse", "group-source"));
        Assert.Equal(1, Drops(dp, "ethernet-parse", "zero-source"));
        Assert.All(p, port => Assert.Empty(port.Transmitted));
        Assert.Equal(free, dp.Slab.FreeCount);
    }

    [Fact]
    public void Vlans_are_separate_learning_domains_and_tags_are_kept()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        p[0].Inject(Make(MacAddress.Broadcast, Mac(1), vlan: 10));
        dp.RunOnce();
        byte[] tagged = Make(Mac(1), Mac(2), vlan: 10);
        byte[] untagged = Make(Mac(1), Mac(2));
        p[1].Inject(tagged);
        p[1].Inject(untagged);
        dp.RunOnce();
        Assert.Equal(tagged, Assert.Single(p[0].Transmitted, f => f.Length == tagged.Length && f[12] == 0x81 && f[13] == 0));
        Assert.Single(p[2].Transmitted, f => f.AsSpan().SequenceEqual(untagged)); // untagged Mac(1) unknown: flooded
    }

    [Fact]
    public void Trace_records_every_stage_for_sampled_packets_only()
    {
        (Datapath dp, MemoryPort[] p) = Build();
        dp.Context.Trace.Remaining = 1;
        p[0].Inject(Make(Mac(2), Mac(1)));
        p[0].Inject(Make(Mac(2), Mac(1)));
        dp.RunOnce();
        TraceRecord[] recs = dp.Context.Trace.Snapshot();
        Assert.All(recs, r => Assert.Equal(1u, r.TraceId));
        string[] stages = recs.Select(r => dp.Graph.Stages[r.Stage].Name).ToArray();
        Assert.Equal(["port-rx", "ethernet-parse", "l2-learn", "l2-forward", "port-tx"], stages);
        string text = string.Join("\n", recs.Select(r => dp.Graph.Stages[r.Stage].DescribeTrace(r, dp.Ports)));
        Assert.Contains("learned on port p0", text, StringComparison.Ordinal);
        Assert.Contains("unknown: flood", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Steady_state_forwarding_allocates_nothing()
    {
        (Datapath dp, MemoryPort[] p) = Build(2);
        foreach (MemoryPort port in p) port.RecordTx = false;
        p[0].SetReplay([Make(Mac(2), Mac(1)), Make(MacAddress.Broadcast, Mac(1)), Make(Mac(3), Mac(1))]);
        p[1].SetReplay([Make(Mac(1), Mac(2))]);
        for (int i = 0; i < 2000; i++) dp.RunOnce(); // warm up: learning, JIT tiers
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20_000; i++) dp.RunOnce();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.InRange(p[1].Counters[(int)PortCounter.TxPackets], 1_000_000, long.MaxValue);
    }
}

public sealed class MacTableTests
{
    [Fact]
    public void Random_inserts_lookups_and_sweeps_agree_with_a_dictionary()
    {
        var rng = new Random(12345);
        var table = new MacTable(512, agingTicks: 100);
        var oracle = new Dictionary<(ulong, ushort), (ushort Port, long Seen)>();
        long now = 1000;
        for (int step = 0; step < 200_000; step++)
        {
            now += rng.Next(0, 3);
            ulong mac = 0x0200_0000_0000UL | (uint)rng.Next(0, 2000);
            ushort vlan = (ushort)rng.Next(0, 3);
            switch (rng.Next(0, 10))
            {
                case < 6:
                    ushort port = (ushort)rng.Next(0, 4);
                    LearnResult r = table.Learn(mac, vlan, port, now, 0, out _);
                    bool live = oracle.TryGetValue((mac, vlan), out var o) && now - o.Seen <= 100;
                    int liveCount = oracle.Count;
                    if (r == LearnResult.Full) Assert.Equal(512, table.Count);
                    else oracle[(mac, vlan)] = (port, now);
                    if (r == LearnResult.Refreshed) Assert.True(oracle.ContainsKey((mac, vlan)));
                    break;
                case < 9:
                    bool found = table.TryLookup(mac, vlan, now, out ushort got);
                    bool expect = oracle.TryGetValue((mac, vlan), out var e) && now - e.Seen <= 100;
                    Assert.Equal(expect, found);
                    if (found) Assert.Equal(e.Port, got);
                    break;
                default:
                    table.Sweep(now);
                    foreach (var k in oracle.Where(kv => now - kv.Value.Seen > 100).Select(kv => kv.Key).ToList()) oracle.Remove(k);
                    Assert.Equal(oracle.Count, table.Count);
                    break;
            }
        }
    }
}

namespace VSwitch.Pipeline.Tests;

/// <summary>Graphs built from nodes and feature arcs: features fall in order by their constraints, empty arcs cost
/// nothing, and a stage joins an arc by registration alone.</summary>
public sealed class PipelineBuilderTests
{
    /// <summary>A stage that sends every packet down edge 1 and records that it ran.</summary>
    private sealed class Pass(string name, params string[] nexts) : Stage(name, nexts)
    {
        public int Batches { get; private set; }

        public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
        {
            Batches++;
            next[..batch.Count].Fill(1);
        }
    }

    private sealed class Sink(string name) : Stage(name, [])
    {
        public int Packets { get; private set; }

        public override void Process(WorkerContext ctx, PacketBatch batch, Span<byte> next)
        {
            Packets += batch.Count;
            next[..batch.Count].Fill(StageGraph.Consumed);
        }
    }

    private static PipelineBuilder Base() => new PipelineBuilder()
        .DefineArc("pre", "decide")
        .DefineArc("out", "tx")
        .AddNode(new Pass("rx", "arc:pre"))
        .AddNode(new Pass("decide", "arc:out"))
        .AddNode(new Sink("tx"))
        .AddNode(new DropStage());

    [Fact]
    public void Features_are_ordered_by_their_constraints_whatever_the_registration_order()
    {
        StageGraph g = Base()
            .AddFeature("pre", new Pass("nat", Stage.ArcNext), runsAfter: ["conntrack"])
            .AddFeature("pre", new Pass("policy", Stage.ArcNext), runsAfter: ["nat"], runsBefore: ["accounting"])
            .AddFeature("pre", new Pass("conntrack", Stage.ArcNext))
            .AddFeature("pre", new Pass("accounting", Stage.ArcNext), runsAfter: ["not-here"])
            .Build(8);
        Assert.Equal(["rx", "conntrack", "nat", "policy", "accounting", "decide", "tx", "drop"], g.Stages.Select(s => s.Name));
        (string Arc, IReadOnlyList<string> Features, string End) pre = g.Arcs.Single(a => a.Arc == "pre");
        Assert.Equal(["conntrack", "nat", "policy", "accounting"], pre.Features);
        // The last feature's next is the arc's end; the node that names the arc leads to its first feature.
        Assert.Equal("decide", g.Find("accounting")!.NextNames[1]);
        Assert.Equal("conntrack", g.Find("rx")!.NextNames[1]);
    }

    [Fact]
    public void An_empty_arc_leads_straight_to_its_end()
    {
        StageGraph g = Base().Build(8);
        Assert.Equal("decide", g.Find("rx")!.NextNames[1]);
        Assert.Equal("tx", g.Find("decide")!.NextNames[1]);
        var slab = new PacketSlab(64);
        var ctx = new WorkerContext(slab, TimeProvider.System);
        var batch = new PacketBatch(8);
        for (int i = 0; i < 3; i++)
        {
            Assert.True(slab.TryAlloc(out int s));
            batch.Add(s);
        }
        g.Run(ctx, batch);
        Assert.Equal(3, ((Sink)g.Find("tx")!).Packets);
    }

    [Fact]
    public void A_registered_stage_sees_the_traffic_of_its_arc_without_its_neighbours_changing()
    {
        var mine = new Pass("mine", Stage.ArcNext);
        StageGraph g = Base().AddFeature("out", mine).Build(8);
        var slab = new PacketSlab(64);
        var batch = new PacketBatch(8);
        Assert.True(slab.TryAlloc(out int s));
        batch.Add(s);
        g.Run(new WorkerContext(slab, TimeProvider.System), batch);
        Assert.Equal(1, mine.Batches);
        Assert.Equal(1, ((Sink)g.Find("tx")!).Packets);
    }

    [Fact]
    public void Bad_registrations_are_refused_with_the_reason()
    {
        Assert.Contains("unknown arc 'nope'", Assert.Throws<ArgumentException>(() => Base().AddFeature("nope", new Pass("x", Stage.ArcNext))).Message, StringComparison.Ordinal);
        InvalidOperationException cycle = Assert.Throws<InvalidOperationException>(() => Base()
            .AddFeature("pre", new Pass("a", Stage.ArcNext), runsAfter: ["b"])
            .AddFeature("pre", new Pass("b", Stage.ArcNext), runsAfter: ["a"])
            .Build(8));
        Assert.Contains("form a cycle", cycle.Message, StringComparison.Ordinal);
        Assert.Contains("no arc's feature", Assert.Throws<InvalidOperationException>(() => Base().AddNode(new Pass("loose", Stage.ArcNext)).Build(8)).Message, StringComparison.Ordinal);
        Assert.Contains("duplicate stage name 'rx'", Assert.Throws<InvalidOperationException>(() => Base().AddNode(new Pass("rx", "tx")).Build(8)).Message, StringComparison.Ordinal);
        Assert.Contains("unknown arc 'later'", Assert.Throws<InvalidOperationException>(() => Base().AddNode(new Pass("x", "arc:later")).Build(8)).Message, StringComparison.Ordinal);
    }
}

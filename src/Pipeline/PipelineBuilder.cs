namespace VSwitch.Pipeline;

/// <summary>
/// Builds a <see cref="StageGraph"/> from nodes and ordered feature arcs, as VPP builds its graph from nodes and
/// feature arcs (<c>ip4-unicast</c>, <c>ip4-output</c>, each feature registered with <c>runs_before</c>/<c>runs_after</c>).
/// <list type="bullet">
/// <item>A <b>node</b> is a stage with its own edges (a classifier or a decision: <c>l2-forward</c>, <c>ip4-route</c>).</item>
/// <item>An <b>arc</b> is a named, ordered list of <b>features</b> and an end (the node or arc that follows it). A feature
/// registers into an arc with order constraints; its edge <see cref="Stage.ArcNext"/> leads to the next feature of its
/// arc, or to the arc's end after the last one. An empty arc costs nothing: edges to it lead straight to its end.</item>
/// <item>Any edge may name an arc as <c>arc:NAME</c>: the arc's first feature.</item>
/// </list>
/// So a new stage (policy, encryption, a user's own) is one registration, and its neighbours' code does not change.
/// The stages are then laid out in topological order (every edge forward, <c>drop</c> last) for <see cref="StageGraph"/>.
/// </summary>
public sealed class PipelineBuilder
{
    private sealed record Arc(string Name, string End, List<Feature> Features);

    private sealed record Feature(Stage Stage, string[] RunsBefore, string[] RunsAfter, int Order);

    private readonly List<Stage> _nodes = [];
    private readonly Dictionary<string, Arc> _arcs = new(StringComparer.Ordinal);
    private readonly List<string> _arcOrder = [];
    private int _registered;

    /// <summary>The edge prefix that names an arc.</summary>
    public const string ArcPrefix = "arc:";

    /// <summary>Declares arc <paramref name="name"/> and what follows it (a node's name or <c>arc:OTHER</c>).</summary>
    public PipelineBuilder DefineArc(string name, string end)
    {
        if (!_arcs.TryAdd(name, new Arc(name, end, []))) throw new ArgumentException($"arc '{name}' is defined twice", nameof(name));
        _arcOrder.Add(name);
        return this;
    }

    /// <summary>Adds a node: a stage with edges of its own.</summary>
    public PipelineBuilder AddNode(Stage stage)
    {
        _nodes.Add(stage);
        return this;
    }

    /// <summary>Registers <paramref name="stage"/> as a feature of arc <paramref name="arc"/>, before the features named
    /// in <paramref name="runsBefore"/> and after those in <paramref name="runsAfter"/> (names not in the arc are
    /// ignored, so a constraint on an optional feature holds when it is there); otherwise in registration order.</summary>
    public PipelineBuilder AddFeature(string arc, Stage stage, string[]? runsBefore = null, string[]? runsAfter = null)
    {
        if (!_arcs.TryGetValue(arc, out Arc? a)) throw new ArgumentException($"stage '{stage.Name}' registers into unknown arc '{arc}'", nameof(arc));
        a.Features.Add(new Feature(stage, runsBefore ?? [], runsAfter ?? [], _registered++));
        return this;
    }

    /// <summary>The arcs with their features in order (what <c>vswitch graph</c> shows).</summary>
    public IReadOnlyList<(string Arc, IReadOnlyList<string> Features, string End)> Arcs =>
        [.. _arcOrder.Select(n => (n, (IReadOnlyList<string>)[.. Ordered(_arcs[n]).Select(f => f.Stage.Name)], _arcs[n].End))];

    /// <summary>Orders an arc's features by their constraints (registration order where they leave a choice).</summary>
    private static List<Feature> Ordered(Arc arc)
    {
        var names = arc.Features.Select(f => f.Stage.Name).ToHashSet(StringComparer.Ordinal);
        var after = arc.Features.ToDictionary(f => f.Stage.Name, _ => new HashSet<string>(StringComparer.Ordinal));
        foreach (Feature f in arc.Features)
        {
            foreach (string b in f.RunsBefore) if (names.Contains(b)) after[b].Add(f.Stage.Name);
            foreach (string a in f.RunsAfter) if (names.Contains(a)) after[f.Stage.Name].Add(a);
        }
        var result = new List<Feature>();
        var left = arc.Features.OrderBy(f => f.Order).ToList();
        while (left.Count > 0)
        {
            Feature? next = left.FirstOrDefault(f => after[f.Stage.Name].All(a => result.Any(r => r.Stage.Name == a)));
            if (next is null) throw new InvalidOperationException($"arc '{arc.Name}': the order constraints of {string.Join(", ", left.Select(f => f.Stage.Name))} form a cycle");
            result.Add(next);
            left.Remove(next);
        }
        return result;
    }

    /// <summary>Resolves every edge, lays the stages out in topological order (drop last) and builds the graph.</summary>
    public StageGraph Build(int batchCapacity, int pendingCapacity = 0)
    {
        var ordered = _arcOrder.ToDictionary(n => n, n => Ordered(_arcs[n]), StringComparer.Ordinal);
        var stages = new List<Stage>(_nodes);
        foreach (string a in _arcOrder) stages.AddRange(ordered[a].Select(f => f.Stage));
        DropStage drop = stages.OfType<DropStage>().SingleOrDefault() ?? throw new InvalidOperationException("the graph needs a drop stage");
        var byName = new Dictionary<string, Stage>(StringComparer.Ordinal);
        foreach (Stage s in stages)
            if (!byName.TryAdd(s.Name, s)) throw new InvalidOperationException($"duplicate stage name '{s.Name}'");

        string Resolve(string edge, int depth = 0)
        {
            if (depth > _arcs.Count) throw new InvalidOperationException($"arcs end in each other in a loop at '{edge}'");
            if (!edge.StartsWith(ArcPrefix, StringComparison.Ordinal)) return edge;
            string name = edge[ArcPrefix.Length..];
            if (!ordered.TryGetValue(name, out List<Feature>? features)) throw new InvalidOperationException($"edge names unknown arc '{name}'");
            return features.Count > 0 ? features[0].Stage.Name : Resolve(_arcs[name].End, depth + 1);
        }

        foreach (Stage s in stages)
        {
            string? arcNext = null;
            foreach (string a in _arcOrder)
            {
                List<Feature> fs = ordered[a];
                int at = fs.FindIndex(f => ReferenceEquals(f.Stage, s));
                if (at >= 0) arcNext = at + 1 < fs.Count ? fs[at + 1].Stage.Name : Resolve(_arcs[a].End);
            }
            var names = new string[s.NextNames.Count];
            for (int e = 0; e < names.Length; e++)
            {
                string n = s.NextNames[e];
                names[e] = n == Stage.ArcNext
                    ? arcNext ?? throw new InvalidOperationException($"stage '{s.Name}' uses {Stage.ArcNext} but is no arc's feature")
                    : Resolve(n);
            }
            s.ResolveNext(names);
        }

        // Topological order (Kahn's), keeping the order stages were given in where the edges leave a choice; drop last.
        var indegree = stages.ToDictionary(s => s, _ => 0);
        foreach (Stage s in stages)
            if (s != drop)
                foreach (string n in s.NextNames.Skip(1).Distinct())
                    indegree[byName.TryGetValue(n, out Stage? t) ? t : throw new InvalidOperationException($"stage '{s.Name}' names unknown next stage '{n}'")]++;
        var layout = new List<Stage>();
        var ready = stages.Where(s => s != drop && indegree[s] == 0).ToList();
        while (ready.Count > 0)
        {
            Stage s = ready[0];
            ready.RemoveAt(0);
            layout.Add(s);
            foreach (string n in s.NextNames.Skip(1).Distinct())
            {
                Stage t = byName[n];
                if (t != drop && --indegree[t] == 0) ready.Insert(0, t);
            }
            ready = [.. ready.OrderBy(stages.IndexOf)];
        }
        if (layout.Count != stages.Count - 1) throw new InvalidOperationException("the stages' edges form a cycle");
        layout.Add(drop);
        return new StageGraph(layout, batchCapacity, pendingCapacity) { Arcs = Arcs };
    }
}

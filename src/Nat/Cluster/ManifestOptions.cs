namespace VSwitch.Nat.Cluster;

/// <summary>Options of <see cref="ManifestReader"/>.</summary>
public sealed record ManifestOptions
{
    /// <summary>The defaults: node ports 30000-32767, as kube-apiserver's <c>--service-node-port-range</c>.</summary>
    public static readonly ManifestOptions Default = new();

    /// <summary>Lowest node port a Service may use or be given (inclusive).</summary>
    public int NodePortMin { get; init; } = 30000;

    /// <summary>Highest node port a Service may use or be given (inclusive).</summary>
    public int NodePortMax { get; init; } = 32767;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> unless 1 &lt;= NodePortMin &lt;= NodePortMax &lt;= 65535.
    /// (Bad options are the caller's mistake, not the manifests', so this is not a <see cref="ManifestException"/>.)</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(NodePortMin, 1, nameof(NodePortMin));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(NodePortMax, 65535, nameof(NodePortMax));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(NodePortMin, NodePortMax, nameof(NodePortMin));
    }
}

namespace VSwitch.Nat.Cluster;

/// <summary>The manifests are invalid. <see cref="Errors"/> holds every problem found in the whole document set, one per
/// entry, sorted by file, line and column, each as <c>file:line:col: Kind namespace/name: field.path: problem</c>
/// (the position, object and field are left out where they do not apply); <see cref="Exception.Message"/> is the
/// same lines joined by newlines.</summary>
public sealed class ManifestException : Exception
{
    public ManifestException() : base("invalid manifests") => Errors = [];

    public ManifestException(string message) : base(message) => Errors = [message];

    public ManifestException(string message, Exception inner) : base(message, inner) => Errors = [message];

    public ManifestException(IReadOnlyList<string> errors) : base(string.Join(Environment.NewLine, errors)) =>
        Errors = errors;

    /// <summary>One line per problem.</summary>
    public IReadOnlyList<string> Errors { get; }
}

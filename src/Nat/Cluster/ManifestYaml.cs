using System.Globalization;
using VSwitch.Pipeline.Wire;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace VSwitch.Nat.Cluster;

/// <summary>Collects manifest problems with their position and renders them sorted by source, line and column.</summary>
internal sealed class Diagnostics
{
    private readonly List<Entry> entries = [];

    public int Count => entries.Count;

    /// <summary>Adds <c>source:line:col: text</c>.</summary>
    public void Add(int source, string sourceName, Mark at, string text) =>
        entries.Add(new Entry(source, at.Line, at.Column, entries.Count, $"{sourceName}:{at.Line}:{at.Column}: {text}"));

    /// <summary>Adds <c>source: text</c>, for problems with the source as a whole (unreadable file).</summary>
    public void Add(int source, string sourceName, string text) =>
        entries.Add(new Entry(source, 0, 0, entries.Count, $"{sourceName}: {text}"));

    public IReadOnlyList<string> Sorted() =>
        [.. entries.OrderBy(e => e.Source).ThenBy(e => e.Line).ThenBy(e => e.Column).ThenBy(e => e.Seq).Select(e => e.Text)];

    private readonly record struct Entry(int Source, long Line, long Column, int Seq, string Text);
}

/// <summary>Where errors about one object go: its source and its label (<c>Service default/web</c>, or for a document
/// that is not yet known to be an object, a position such as <c>items[3]</c>; empty for none).</summary>
internal sealed class ObjectScope(Diagnostics diagnostics, int source, string sourceName, string label)
{
    public int Source => source;

    public string SourceName => sourceName;

    public string Label { get; set; } = label;

    public int ErrorCount { get; private set; }

    /// <summary>Reports <c>Label: path: message</c> at <paramref name="at"/>.</summary>
    public void Error(YamlNode at, string path, string message) => Error(at.Start, path, message);

    public void Error(Mark at, string path, string message)
    {
        ErrorCount++;
        string text = path.Length == 0 ? message : $"{path}: {message}";
        diagnostics.Add(source, sourceName, at, Label.Length == 0 ? text : $"{Label}: {text}");
    }

    /// <summary><c>source:line:col</c> of a node, to point at the other half of a conflict.</summary>
    public string Where(YamlNode node) => $"{sourceName}:{node.Start.Line}:{node.Start.Column}";
}

/// <summary>Node-level helpers: YAML null, value descriptions for messages, paths, typed scalars.</summary>
internal static class Yaml
{
    /// <summary>A plain empty, <c>~</c> or <c>null</c> scalar: an absent value, as Kubernetes treats it.</summary>
    public static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any } s && s.Value is null or "" or "~" or "null" or "Null" or "NULL";

    public static bool IsQuoted(YamlScalarNode s) => s.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted;

    /// <summary>How a node reads in a message: <c>'abc'</c>, <c>the quoted string '80'</c>, <c>a list</c>, <c>a mapping</c>.</summary>
    public static string Describe(YamlNode node) => node switch
    {
        YamlScalarNode s when IsQuoted(s) => $"the quoted string '{Shorten(s.Value)}'",
        YamlScalarNode s => $"'{Shorten(s.Value)}'",
        YamlSequenceNode => "a list",
        YamlMappingNode => "a mapping",
        _ => "an unexpected node",
    };

    /// <summary>A value cut to one short line for a message.</summary>
    public static string Shorten(string? value)
    {
        string v = (value ?? "").Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
        return v.Length <= 64 ? v : v[..61] + "...";
    }

    public static string Key(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    public static string Item(string path, int index) => $"{path}[{index}]";

    /// <summary>A plain decimal integer literal (JSON numbers are plain too); quoted strings are not integers.</summary>
    public static bool TryIntegerText(YamlNode node, out string text)
    {
        text = "";
        if (node is not YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any, Value: { Length: > 0 } v }) return false;
        int i = v[0] is '-' or '+' ? 1 : 0;
        if (i == v.Length) return false;
        for (; i < v.Length; i++)
            if (v[i] is < '0' or > '9') return false;
        text = v;
        return true;
    }

    /// <summary>An integer in [min, max]; otherwise reports <c>"{value} {outOfRange}"</c> or "expected an integer".</summary>
    public static int? Integer(ObjectScope scope, YamlNode node, string path, int min, int max, string outOfRange)
    {
        if (!TryIntegerText(node, out string text))
        {
            scope.Error(node, path, $"expected an integer, found {Describe(node)}");
            return null;
        }
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) && v >= min && v <= max)
            return (int)v;
        scope.Error(node, path, $"{Shorten(text)} {outOfRange}");
        return null;
    }

    /// <summary>A boolean: true/false, and the YAML 1.1 spellings kubectl accepts (yes/no/on/off), unquoted.</summary>
    public static bool? Boolean(ObjectScope scope, YamlNode node, string path)
    {
        if (node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any, Value: { } v })
        {
            switch (v)
            {
                case "true" or "True" or "TRUE" or "yes" or "Yes" or "YES" or "on" or "On" or "ON":
                    return true;
                case "false" or "False" or "FALSE" or "no" or "No" or "NO" or "off" or "Off" or "OFF":
                    return false;
            }
        }
        scope.Error(node, path, $"expected true or false, found {Describe(node)}");
        return null;
    }

    /// <summary>A scalar's text; reports a list or mapping.</summary>
    public static string? String(ObjectScope scope, YamlNode node, string path)
    {
        if (node is YamlScalarNode s) return s.Value ?? "";
        scope.Error(node, path, $"expected a string, found {Describe(node)}");
        return null;
    }

    /// <summary>A usable unicast IPv4 address; IPv6 gets its own "not supported" message.</summary>
    public static bool Address(ObjectScope scope, YamlNode node, string path, out Ipv4Address address)
    {
        address = default;
        string? text = String(scope, node, path);
        if (text is null) return false;
        if (text.Contains(':', StringComparison.Ordinal))
        {
            scope.Error(node, path, $"'{Shorten(text)}' is an IPv6 address: IPv6 is not supported (IPv4 only)");
            return false;
        }
        if (!Ipv4Address.TryParse(text, out address))
        {
            scope.Error(node, path, $"'{Shorten(text)}' is not an IPv4 address");
            return false;
        }
        if (address.IsUnspecified || address.IsMulticast || address.IsBroadcast || address.IsLoopback)
        {
            scope.Error(node, path, $"{address} is not a unicast address (unspecified, loopback, multicast and broadcast are not allowed)");
            return false;
        }
        return true;
    }
}

/// <summary>Typed access to the fields of one YAML mapping at a field path, reporting problems to an
/// <see cref="ObjectScope"/>. Absent and null-valued fields read as null.</summary>
internal readonly struct Fields(ObjectScope scope, YamlMappingNode node, string path)
{
    public ObjectScope Scope => scope;
    public YamlMappingNode Node => node;
    public string Path => path;

    public string At(string key) => Yaml.Key(path, key);

    /// <summary>The value of <paramref name="key"/>; null when absent or null.</summary>
    public YamlNode? Get(string key)
    {
        foreach (KeyValuePair<YamlNode, YamlNode> kv in node.Children)
            if (kv.Key is YamlScalarNode { Value: { } k } && k == key)
                return Yaml.IsNull(kv.Value) ? null : kv.Value;
        return null;
    }

    /// <summary>Reports every field not in <paramref name="known"/> as unsupported (with a hint for a wrong case).</summary>
    public void RejectUnknown(params string[] known)
    {
        foreach (KeyValuePair<YamlNode, YamlNode> kv in node.Children)
        {
            if (kv.Key is not YamlScalarNode { Value: { } k })
            {
                scope.Error(kv.Key, path, $"field names must be strings, found {Yaml.Describe(kv.Key)}");
                continue;
            }
            if (Array.IndexOf(known, k) >= 0) continue;
            string? near = Array.Find(known, x => string.Equals(x, k, StringComparison.OrdinalIgnoreCase))
                ?? (k.Length >= 5 ? Array.Find(known, x => Distance(x, k) <= 2) : null);
            scope.Error(kv.Key, At(Yaml.Shorten(k)), near is null ? "unsupported field" : $"unsupported field (did you mean '{near}'?)");
        }
    }

    /// <summary>Levenshtein distance, for "did you mean" hints.</summary>
    private static int Distance(string a, string b)
    {
        if (Math.Abs(a.Length - b.Length) > 2) return int.MaxValue;
        int[] prev = new int[b.Length + 1], cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }

    /// <summary>Reports the missing field <paramref name="key"/> at this mapping.</summary>
    public void Required(string key, string? why = null) => scope.Error(node, At(key), why is null ? "required" : $"required: {why}");

    public string? String(string key) => Get(key) is { } v ? Yaml.String(scope, v, At(key)) : null;

    /// <summary>A string field where the empty string means unset.</summary>
    public string? NonEmptyString(string key) => String(key) is { Length: > 0 } s ? s : null;

    public int? Integer(string key, int min, int max, string outOfRange) =>
        Get(key) is { } v ? Yaml.Integer(scope, v, At(key), min, max, outOfRange) : null;

    public bool? Boolean(string key) => Get(key) is { } v ? Yaml.Boolean(scope, v, At(key)) : null;

    public Fields? Map(string key)
    {
        if (Get(key) is not { } v) return null;
        if (v is YamlMappingNode m) return new Fields(scope, m, At(key));
        scope.Error(v, At(key), $"expected a mapping, found {Yaml.Describe(v)}");
        return null;
    }

    /// <summary>The items of a list field; empty when absent; reports a non-list.</summary>
    public IList<YamlNode> List(string key)
    {
        if (Get(key) is not { } v) return [];
        if (v is YamlSequenceNode q) return q.Children;
        scope.Error(v, At(key), $"expected a list, found {Yaml.Describe(v)}");
        return [];
    }

    /// <summary>A list item that must be a mapping; reports anything else as not <paramref name="what"/>.</summary>
    public Fields? Item(string listKey, int index, YamlNode item, string what)
    {
        string at = Yaml.Item(At(listKey), index);
        if (item is YamlMappingNode m) return new Fields(scope, m, at);
        scope.Error(item, at, $"expected {what} (a mapping), found {Yaml.Describe(item)}");
        return null;
    }
}

/// <summary>Bounds the nesting of collections while YamlDotNet builds its representation model, which recurses per
/// level: hostile input (<c>[[[[...</c>) becomes a <see cref="YamlException"/> instead of a stack overflow.</summary>
internal sealed class DepthLimitedParser(IParser inner, int maxDepth) : IParser
{
    private int depth;

    public ParsingEvent? Current => inner.Current;

    public bool MoveNext()
    {
        if (!inner.MoveNext()) return false;
        switch (inner.Current)
        {
            case MappingStart or SequenceStart:
                if (++depth > maxDepth)
                {
                    ParsingEvent e = inner.Current;
                    throw new YamlException(e.Start, e.End, $"collections nested deeper than {maxDepth} levels");
                }
                break;
            case MappingEnd or SequenceEnd:
                depth--;
                break;
        }
        return true;
    }
}

using System.ComponentModel;
using System.Reflection;

namespace VSwitch.Pipeline;

/// <summary>
/// A block of named counters owned by one worker: plain increments on the fast path, summed by the control plane.
/// Padded on both sides so two workers' blocks never share a cache line.
/// </summary>
public sealed class CounterSet
{
    private const int Pad = 8; // one cache line of longs

    private readonly long[] _values;

    public CounterSet(string[] names, string[] help)
    {
        if (names.Length != help.Length) throw new ArgumentException("names and help differ in length", nameof(help));
        Names = names;
        Help = help;
        _values = new long[names.Length + 2 * Pad];
    }

    public static CounterSet Empty { get; } = new([], []);

    public string[] Names { get; }
    public string[] Help { get; }
    public int Count => Names.Length;

    /// <summary>Increment counter <paramref name="index"/> (an enum value cast to int).</summary>
    public void Add(int index, long delta = 1) => _values[Pad + index] += delta;

    public long this[int index] => Volatile.Read(ref _values[Pad + index]);

    public void Reset() => Array.Clear(_values);

    /// <summary>Builds a counter set from an enum whose members carry <see cref="DescriptionAttribute"/>s.
    /// Member names become kebab-case counter names.</summary>
    public static CounterSet FromEnum<TEnum>() where TEnum : struct, Enum
    {
        (string[] names, string[] help) = Describe<TEnum>();
        return new CounterSet(names, help);
    }

    /// <summary>Kebab-case names and descriptions of an enum's members, in value order (values must be 0..n-1).</summary>
    public static (string[] Names, string[] Help) Describe<TEnum>() where TEnum : struct, Enum
    {
        TEnum[] values = Enum.GetValues<TEnum>();
        string[] names = new string[values.Length];
        string[] help = new string[values.Length];
        foreach (TEnum v in values)
        {
            int i = Convert.ToInt32(v, System.Globalization.CultureInfo.InvariantCulture);
            if (i < 0 || i >= values.Length) throw new InvalidOperationException($"{typeof(TEnum).Name} values must be 0..{values.Length - 1}");
            string name = v.ToString();
            names[i] = KebabCase(name);
            FieldInfo? f = typeof(TEnum).GetField(name);
            help[i] = f?.GetCustomAttribute<DescriptionAttribute>()?.Description ?? name;
        }
        return (names, help);
    }

    public static string KebabCase(string pascal)
    {
        var sb = new System.Text.StringBuilder(pascal.Length + 8);
        for (int i = 0; i < pascal.Length; i++)
        {
            char c = pascal[i];
            if (char.IsUpper(c))
            {
                if (i > 0 && (char.IsLower(pascal[i - 1]) || (i + 1 < pascal.Length && char.IsLower(pascal[i + 1])))) sb.Append('-');
                sb.Append(char.ToLowerInvariant(c));
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }
}

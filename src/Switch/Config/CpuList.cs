using System.Globalization;
using System.Text;

namespace VSwitch.Switch.Config;

/// <summary>A CPU list as the kernel writes them (cpuset, taskset -c, /sys/devices/system/cpu/online): "0", "0-3,6",
/// "8-11". Parsed to CPU numbers and formatted as the hexadecimal bitmap sysfs takes (rps_cpus): 32-bit groups,
/// most significant first, separated by commas.</summary>
public static class CpuList
{
    /// <summary>The highest CPU number accepted (the kernel's NR_CPUS is at most 8192).</summary>
    public const int MaxCpu = 8191;

    public static bool TryParse(string? text, out int[] cpus, out string error)
    {
        cpus = [];
        error = "";
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "is empty";
            return false;
        }
        var set = new SortedSet<int>();
        foreach (string raw in text.Split(','))
        {
            string part = raw.Trim();
            int dash = part.IndexOf('-', StringComparison.Ordinal);
            string lo = dash < 0 ? part : part[..dash], hi = dash < 0 ? part : part[(dash + 1)..];
            if (!TryCpu(lo, out int a) || !TryCpu(hi, out int b))
            {
                error = $"'{part}' is not a CPU number or range (like 0, 2-3) of CPUs 0..{MaxCpu}";
                return false;
            }
            if (b < a)
            {
                error = $"'{part}' is a range that ends before it starts";
                return false;
            }
            for (int c = a; c <= b; c++) set.Add(c);
        }
        cpus = [.. set];
        return true;
    }

    private static bool TryCpu(string s, out int cpu) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out cpu) && cpu <= MaxCpu;

    /// <summary>The CPUs online on this machine (/sys/devices/system/cpu/online), whatever this process's own affinity;
    /// null when that cannot be read.</summary>
    public static int[]? Online()
    {
        try
        {
            return TryParse(File.ReadAllText("/sys/devices/system/cpu/online").Trim(), out int[] cpus, out _) ? cpus : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The sysfs bitmap of <paramref name="cpus"/>: "1" for CPU 0, "c" for 2-3, "1,00000000" for CPU 32.</summary>
    public static string ToMask(IReadOnlyCollection<int> cpus)
    {
        int groups = cpus.Count == 0 ? 1 : cpus.Max() / 32 + 1;
        var words = new uint[groups];
        foreach (int c in cpus) words[c / 32] |= 1u << (c % 32);
        var sb = new StringBuilder();
        sb.Append(words[groups - 1].ToString("x", CultureInfo.InvariantCulture));
        for (int g = groups - 2; g >= 0; g--) sb.Append(',').Append(words[g].ToString("x8", CultureInfo.InvariantCulture));
        return sb.ToString();
    }

    /// <summary>"0-3,6" for {0,1,2,3,6}: ranges folded, as the kernel prints CPU lists.</summary>
    public static string Format(IReadOnlyList<int> cpus)
    {
        var parts = new List<string>();
        for (int i = 0; i < cpus.Count;)
        {
            int j = i;
            while (j + 1 < cpus.Count && cpus[j + 1] == cpus[j] + 1) j++;
            parts.Add(i == j ? cpus[i].ToString(CultureInfo.InvariantCulture) : $"{cpus[i]}-{cpus[j]}");
            i = j + 1;
        }
        return string.Join(',', parts);
    }
}

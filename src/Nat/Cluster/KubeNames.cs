namespace VSwitch.Nat.Cluster;

/// <summary>Kubernetes name syntaxes (k8s.io/apimachinery/pkg/util/validation).</summary>
internal static class KubeNames
{
    public const string DnsLabelRule = "lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
    public const string Dns1035LabelRule = "lower-case letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters";
    public const string DnsSubdomainRule = "dot-separated labels of lower-case letters, digits and '-', each starting and ending with a letter or digit, at most 253 characters";
    public const string PortNameRule = "lower-case letters, digits and '-', at least one letter, no leading, trailing or doubled '-', at most 15 characters";

    /// <summary>RFC 1123 label: <c>[a-z0-9]([-a-z0-9]*[a-z0-9])?</c>, at most 63 characters (namespaces, port names).</summary>
    public static bool IsDnsLabel(string s) => s.Length is >= 1 and <= 63 && IsLabelBody(s) && IsAlnum(s[0]);

    /// <summary>RFC 1035 label: as <see cref="IsDnsLabel"/> but starting with a letter (Service names).</summary>
    public static bool IsDns1035Label(string s) => IsDnsLabel(s) && s[0] is >= 'a' and <= 'z';

    /// <summary>RFC 1123 subdomain: labels joined by dots, at most 253 characters (object names, DNS names).</summary>
    public static bool IsDnsSubdomain(string s)
    {
        if (s.Length is < 1 or > 253) return false;
        foreach (string label in s.Split('.'))
            if (label.Length == 0 || !IsLabelBody(label) || !IsAlnum(label[0])) return false;
        return true;
    }

    /// <summary>IANA service name (a container port name, which a named targetPort refers to).</summary>
    public static bool IsPortName(string s)
    {
        if (s.Length is < 1 or > 15 || s[0] == '-' || s[^1] == '-' || s.Contains("--", StringComparison.Ordinal)) return false;
        bool letter = false;
        foreach (char c in s)
        {
            if (c is >= 'a' and <= 'z') letter = true;
            else if (c is not (>= '0' and <= '9' or '-')) return false;
        }
        return letter;
    }

    private static bool IsLabelBody(string s)
    {
        foreach (char c in s)
            if (!IsAlnum(c) && c != '-') return false;
        return s[^1] != '-';
    }

    private static bool IsAlnum(char c) => c is >= 'a' and <= 'z' or >= '0' and <= '9';
}

using System.Text;
using VSwitch.Nat.Cluster;

namespace VSwitch.Nat.Tests;

/// <summary>Random and mutated input must give <see cref="ClusterObjects"/> or a <see cref="ManifestException"/>, nothing
/// else; and what is accepted must be consistent.</summary>
public class ManifestFuzzTests
{
    private static readonly string[] Corpus =
    [
        ManifestFixtures.KubectlList,
        ManifestFixtures.KubectlJson,
        ManifestFixtures.HandWritten,
        ManifestTestKit.Service("type: NodePort\nclusterIP: 10.96.0.9\nsessionAffinity: ClientIP\nsessionAffinityConfig:\n  clientIP:\n    timeoutSeconds: 60\nports:\n- name: a\n  port: 80\n  targetPort: http\n- name: b\n  port: 53\n  protocol: UDP\n  nodePort: 30053"),
    ];

    private static readonly string[] Tokens =
    [
        "null", "~", "[]", "{}", "-1", "0", "70000", "30080", "\"80\"", "None", "SCTP", "UDP", "IPv6", "FQDN", "::1", "10.0.0.1",
        "&a ", "*a", "<<: *a", "---\n", "\n- ", ": ", "true", "'", "\"", "\t", "kind: List\nitems:\n", "? ", "!!str ", "|\n",
        "NodePort", "LoadBalancer", "ExternalName", "http", "\\u0000", "#", ",", "[", "]", "{", "}",
    ];

    private const string Alphabet = " :-[]{}#&*!|>'\",?\n\t0123456789abcxyzAZ.%@`\\/";

    private static string Mutate(Random rng, string text)
    {
        var sb = new StringBuilder(text);
        int mutations = rng.Next(1, 5);
        for (int m = 0; m < mutations && sb.Length > 0; m++)
        {
            int at = rng.Next(sb.Length);
            switch (rng.Next(8))
            {
                case 0:
                    sb[at] = Alphabet[rng.Next(Alphabet.Length)];
                    break;
                case 1:
                    sb.Remove(at, Math.Min(rng.Next(1, 20), sb.Length - at));
                    break;
                case 2:
                    sb.Insert(at, Tokens[rng.Next(Tokens.Length)]);
                    break;
                case 3:
                case 4:
                case 5:
                    {
                        // Line-level: duplicate, swap, re-indent, or replace a value.
                        List<string> lines = [.. sb.ToString().Split('\n')];
                        int i = rng.Next(lines.Count), j = rng.Next(lines.Count);
                        switch (rng.Next(4))
                        {
                            case 0: lines.Insert(i, lines[j]); break;
                            case 1: (lines[i], lines[j]) = (lines[j], lines[i]); break;
                            case 2: lines[i] = rng.Next(2) == 0 ? "  " + lines[i] : lines[i].TrimStart(); break;
                            default:
                                int colon = lines[i].IndexOf(": ", StringComparison.Ordinal);
                                if (colon >= 0) lines[i] = lines[i][..(colon + 2)] + Tokens[rng.Next(Tokens.Length)];
                                break;
                        }
                        sb.Clear().Append(string.Join('\n', lines));
                        break;
                    }
                case 6:
                    sb.Length = at;
                    break;
                default:
                    sb.Insert(at, (char)rng.Next(0, 0x3000));
                    break;
            }
        }
        return sb.ToString();
    }

    private static readonly string[] Keys =
    [
        "apiVersion", "kind", "metadata", "name", "namespace", "labels", "kubernetes.io/service-name", "spec", "status", "type",
        "clusterIP", "clusterIPs", "ports", "port", "targetPort", "nodePort", "protocol", "externalIPs", "externalName",
        "sessionAffinity", "sessionAffinityConfig", "clientIP", "timeoutSeconds", "externalTrafficPolicy", "ipFamilies",
        "publishNotReadyAddresses", "allocateLoadBalancerNodePorts", "loadBalancer", "ingress", "ip", "hostname",
        "addressType", "endpoints", "addresses", "conditions", "ready", "serving", "terminating", "nodeName", "items", "bogus",
    ];

    private static readonly string[] Scalars =
    [
        "v1", "discovery.k8s.io/v1", "Service", "EndpointSlice", "List", "IPv4", "IPv6", "TCP", "UDP", "SCTP", "None",
        "ClientIP", "Local", "Global", "NodePort", "LoadBalancer", "ExternalName", "10.96.0.1", "10.244.1.5", "fd00::1",
        "web", "http", "a.example.com", "", "Web", "x y",
    ];

    /// <summary>Random JSON: a valid Service or EndpointSlice with values randomly replaced and random fields (real
    /// names and others, of random shapes) added, so that both the accepting and every rejecting path are reached.</summary>
    private static string RandomObject(Random rng)
    {
        var sb = new StringBuilder();
        // A field's value: usually the valid one, sometimes a random value.
        void Value(string valid, int depth)
        {
            if (rng.Next(8) == 0) RandomValue(rng, sb, depth, mapping: false);
            else sb.Append(valid);
        }
        void Extras(int depth)
        {
            for (int n = rng.Next(6) == 0 ? rng.Next(1, 3) : 0; n > 0; n--)
            {
                sb.Append(", \"").Append(Keys[rng.Next(Keys.Length)]).Append("\": ");
                RandomValue(rng, sb, depth, mapping: false);
            }
        }
        string name = $"o{rng.Next(4)}";
        if (rng.Next(2) == 0)
        {
            string[] types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
            string type = types[rng.Next(types.Length)];
            sb.Append("{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"").Append(name).Append("\"}, \"spec\": {\"type\": ");
            Value($"\"{type}\"", 2);
            sb.Append(type == "ExternalName" ? ", \"externalName\": " : ", \"clusterIP\": ");
            Value(type == "ExternalName" ? "\"db.example.com\"" : $"\"10.96.0.{rng.Next(1, 255)}\"", 2);
            sb.Append(", \"ports\": [");
            int ports = rng.Next(1, 4);
            for (int i = 0; i < ports; i++)
            {
                sb.Append(i > 0 ? ", " : "").Append("{\"name\": ");
                Value($"\"p{i}\"", 3);
                sb.Append(", \"port\": ");
                Value($"{rng.Next(1, 100)}", 3);
                sb.Append(", \"protocol\": ");
                Value(rng.Next(2) == 0 ? "\"TCP\"" : "\"UDP\"", 3);
                if (rng.Next(3) == 0)
                {
                    sb.Append(", \"nodePort\": ");
                    Value($"{rng.Next(30000, 30016)}", 3);
                }
                Extras(3);
                sb.Append('}');
            }
            sb.Append(']');
            Extras(2);
            sb.Append('}');
        }
        else
        {
            sb.Append("{\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\", \"metadata\": {\"name\": \"").Append(name)
                .Append("\", \"labels\": {\"kubernetes.io/service-name\": \"o1\"}}, \"addressType\": ");
            Value("\"IPv4\"", 1);
            sb.Append(", \"endpoints\": [{\"addresses\": [");
            Value($"\"10.244.1.{rng.Next(1, 255)}\"", 3);
            sb.Append("], \"conditions\": {\"ready\": ");
            Value("true", 3);
            sb.Append(", \"serving\": ");
            Value("null", 3);
            Extras(3);
            sb.Append("}}], \"ports\": [{\"port\": ");
            Value($"{rng.Next(1, 100)}", 3);
            Extras(3);
            sb.Append("}]");
        }
        Extras(1);
        return sb.Append('}').ToString();
    }

    private static void RandomValue(Random rng, StringBuilder sb, int depth, bool mapping)
    {
        // Bounded depth: past 6 levels only scalars and empty mappings.
        int choice = depth > 6 ? (mapping ? 3 : 1) : mapping ? 0 : rng.Next(4);
        switch (choice)
        {
            case 3:
                sb.Append("{}");
                break;
            case 0:
                sb.Append('{');
                int n = rng.Next(0, 6);
                for (int i = 0; i < n; i++)
                {
                    if (i > 0) sb.Append(", ");
                    sb.Append('"').Append(Keys[rng.Next(Keys.Length)]).Append("\": ");
                    RandomValue(rng, sb, depth + 1, mapping: false);
                }
                sb.Append('}');
                break;
            case 1:
                switch (rng.Next(5))
                {
                    case 0: sb.Append(rng.Next(-5, 70_000)); break;
                    case 1: sb.Append(rng.Next(2) == 0 ? "true" : "false"); break;
                    case 2: sb.Append("null"); break;
                    default: sb.Append('"').Append(Scalars[rng.Next(Scalars.Length)]).Append('"'); break;
                }
                break;
            default:
                sb.Append('[');
                int m = rng.Next(0, 4);
                for (int i = 0; i < m; i++)
                {
                    if (i > 0) sb.Append(", ");
                    RandomValue(rng, sb, depth + 1, mapping: rng.Next(2) == 0);
                }
                sb.Append(']');
                break;
        }
    }

    /// <summary>Reads one input; fails the test on any exception but <see cref="ManifestException"/>, and checks the
    /// invariants of an accepted set. Returns whether it was accepted.</summary>
    private static bool Check(string text, int iteration, ManifestOptions options)
    {
        ClusterObjects o;
        try
        {
            o = ManifestReader.Read(text, "fuzz.yaml", options);
        }
        catch (ManifestException e)
        {
            Assert.NotEmpty(e.Errors);
            foreach (string line in e.Errors)
                Assert.True(line.StartsWith("fuzz.yaml", StringComparison.Ordinal) && !line.Contains('\n', StringComparison.Ordinal),
                    $"iteration {iteration}: malformed error line '{line}' for input:\n{text}");
            return false;
        }
        catch (Exception e)
        {
            Assert.Fail($"iteration {iteration}: {e.GetType().Name} escaped the reader: {e}\n--- input ---\n{text}");
            throw;
        }
        var nodePorts = new HashSet<(byte, ushort)>();
        foreach (ServiceObject s in o.Services)
        {
            Assert.True(s.ClusterIPs.Count <= 1 && (s.ClusterIPs.Count == 1 || s.Headless || s.Type == ServiceType.ExternalName), $"iteration {iteration}: {s.Key} addresses");
            foreach (ServicePortSpec p in s.Ports)
            {
                Assert.True(p.Port != 0 && p.Protocol is 6 or 17 && (p.TargetPort != 0) != (p.TargetPortName is not null), $"iteration {iteration}: {s.Key} port");
                if (p.NodePort == 0)
                {
                    Assert.False(s.Type == ServiceType.NodePort, $"iteration {iteration}: {s.Key} has a NodePort port without a node port");
                    continue;
                }
                Assert.InRange(p.NodePort, options.NodePortMin, options.NodePortMax);
                Assert.True(s.Type is ServiceType.NodePort or ServiceType.LoadBalancer);
                Assert.True(nodePorts.Add((p.Protocol, p.NodePort)), $"iteration {iteration}: node port {p.NodePort} used twice");
            }
        }
        Assert.Equal(o.Services.Count, o.Services.Select(s => s.Key).Distinct().Count());
        foreach (EndpointSliceObject e in o.EndpointSlices)
        {
            Assert.NotEmpty(e.ServiceName);
            Assert.All(e.Endpoints, ep => Assert.NotEmpty(ep.Addresses));
            Assert.All(e.Ports, p => Assert.NotEqual(0, p.Port));
        }
        return true;
    }

    [Fact]
    public void MutatedManifests()
    {
        var rng = new Random(20261121);
        int accepted = 0, rejected = 0;
        for (int i = 0; i < 4000; i++)
        {
            if (Check(Mutate(rng, Corpus[rng.Next(Corpus.Length)]), i, ManifestOptions.Default)) accepted++;
            else rejected++;
        }
        // Both outcomes must occur, or the mutations are not exercising the reader.
        Assert.True(accepted > 100 && rejected > 100, $"accepted {accepted}, rejected {rejected}");
    }

    [Fact]
    public void RandomObjects()
    {
        var rng = new Random(7);
        var options = new ManifestOptions { NodePortMin = 30000, NodePortMax = 30015 };
        int accepted = 0, rejected = 0;
        for (int i = 0; i < 3000; i++)
        {
            int count = rng.Next(1, 4);
            string text = string.Join("\n---\n", Enumerable.Range(0, count).Select(_ => RandomObject(rng)));
            if (Check(text, i, options)) accepted++;
            else rejected++;
        }
        Assert.True(accepted > 100 && rejected > 100, $"accepted {accepted}, rejected {rejected}");
    }

    [Fact]
    public void RandomBytes()
    {
        var rng = new Random(99);
        for (int i = 0; i < 2000; i++)
        {
            char[] chars = new char[rng.Next(0, 200)];
            for (int j = 0; j < chars.Length; j++) chars[j] = rng.Next(3) == 0 ? (char)rng.Next(0, 0xFFFF) : Alphabet[rng.Next(Alphabet.Length)];
            Check(new string(chars), i, ManifestOptions.Default);
        }
    }
}

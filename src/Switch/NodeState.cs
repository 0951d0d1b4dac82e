using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization;
using VSwitch.Nat;
using VSwitch.Nat.Cluster;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;
using VSwitch.Switch.Control;

namespace VSwitch.Switch;

/// <summary>What the switch was told through its API and must still know after a restart: the pod ports it added (their
/// TAPs outlive it), the peers as changed, the Services and EndpointSlices it was given. Saved in the state directory
/// (<c>state.json</c>) after every change.</summary>
public sealed record NodeState
{
    public const string KindName = "VSwitchNodeState";
    public const int CurrentVersion = 1;

    public string Kind { get; init; } = KindName;
    public int Version { get; init; } = CurrentVersion;
    /// <summary>The node the state belongs to (a state file of another node is refused).</summary>
    public string? Node { get; init; }
    public List<SavedPort> Ports { get; init; } = [];
    /// <summary>The overlay peers as the API left them; null when they were never changed (the config file's stand).</summary>
    public List<PeerSpec>? Peers { get; init; }
    public List<ServiceObject> Services { get; init; } = [];
    public List<EndpointSliceObject> EndpointSlices { get; init; } = [];
}

/// <summary>A pod port added through the API: how it was asked for, and the MAC its pod has.</summary>
public sealed record SavedPort(PortSpec Spec, string? Mac);

/// <summary>
/// The state directory (<c>state.directory</c>, default /var/lib/vswitch): <c>state.json</c> (<see cref="NodeState"/>,
/// written whole and atomically after every change through the API) and <c>conntrack.bin</c> (the tracked connections,
/// written at shutdown and read once at the next start). A file that cannot be read, is damaged, or belongs to another
/// node or version is moved aside (<c>*.rejected</c>) with the reason, and the switch starts clean.
/// </summary>
public sealed class StateDirectory
{
    private static readonly byte[] ConntrackMagic = "VSWCT\0\0\u0001"u8.ToArray();
    private const int ConntrackRecord = 13 + 13 + 4 + 8 * 5;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new Ipv4Converter(), new JsonStringEnumConverter() },
    };

    public StateDirectory(string path)
    {
        Path = path;
    }

    public string Path { get; }
    public string StateFile => System.IO.Path.Combine(Path, "state.json");
    public string ConntrackFile => System.IO.Path.Combine(Path, "conntrack.bin");

    /// <summary>Reads the node state; null when there is none. A bad or foreign file is moved aside and
    /// <paramref name="rejected"/> says why.</summary>
    public NodeState? Load(string node, out string? rejected)
    {
        rejected = null;
        if (!File.Exists(StateFile)) return null;
        NodeState? s;
        try
        {
            s = JsonSerializer.Deserialize<NodeState>(File.ReadAllText(StateFile), Json);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            rejected = Reject(StateFile, $"not a readable state file ({e.Message})");
            return null;
        }
        if (s is null || s.Kind != NodeState.KindName) rejected = Reject(StateFile, $"not a VSwitch node state (kind '{s?.Kind}')");
        else if (s.Version != NodeState.CurrentVersion) rejected = Reject(StateFile, $"state version {s.Version}, this switch reads {NodeState.CurrentVersion}");
        else if (s.Node != node) rejected = Reject(StateFile, $"the state of node '{s.Node}', this is node '{node}'");
        return rejected is null ? s : null;
    }

    /// <summary>Writes the node state atomically (a temporary file renamed over the old one).</summary>
    public void Save(NodeState state)
    {
        Directory.CreateDirectory(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string tmp = StateFile + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.WriteThrough))
        {
            JsonSerializer.Serialize(f, state, Json);
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, StateFile, overwrite: true);
    }

    /// <summary>Writes the connections of node <paramref name="node"/> (at shutdown).</summary>
    public void SaveConntrack(string node, IReadOnlyCollection<SavedConnection> connections)
    {
        Directory.CreateDirectory(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        byte[] name = System.Text.Encoding.UTF8.GetBytes(node);
        int head = ConntrackMagic.Length + 2 + name.Length + 4;
        byte[] buf = new byte[head + connections.Count * ConntrackRecord];
        ConntrackMagic.CopyTo(buf, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(buf.AsSpan(ConntrackMagic.Length), (ushort)name.Length);
        name.CopyTo(buf, ConntrackMagic.Length + 2);
        BinaryPrimitives.WriteInt32LittleEndian(buf.AsSpan(head - 4), connections.Count);
        int o = head;
        foreach (SavedConnection c in connections)
        {
            Span<byte> r = buf.AsSpan(o, ConntrackRecord);
            WriteKey(r, c.Orig);
            WriteKey(r[13..], c.Reply);
            r[26] = (byte)c.State;
            r[27] = (byte)c.Status;
            r[28] = (byte)c.Rule;
            r[29] = c.Fins;
            BinaryPrimitives.WriteInt64LittleEndian(r[30..], c.MillisecondsLeft);
            BinaryPrimitives.WriteInt64LittleEndian(r[38..], c.Packets0);
            BinaryPrimitives.WriteInt64LittleEndian(r[46..], c.Bytes0);
            BinaryPrimitives.WriteInt64LittleEndian(r[54..], c.Packets1);
            BinaryPrimitives.WriteInt64LittleEndian(r[62..], c.Bytes1);
            o += ConntrackRecord;
        }
        string tmp = ConntrackFile + ".tmp";
        File.WriteAllBytes(tmp, buf);
        File.Move(tmp, ConntrackFile, overwrite: true);
    }

    /// <summary>Reads the connections saved at the last shutdown and removes the file (they are restored once). A damaged
    /// file is moved aside and <paramref name="rejected"/> says why.</summary>
    public List<SavedConnection> TakeConntrack(string node, out string? rejected)
    {
        rejected = null;
        var list = new List<SavedConnection>();
        if (!File.Exists(ConntrackFile)) return list;
        byte[] buf;
        try
        {
            buf = File.ReadAllBytes(ConntrackFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            rejected = Reject(ConntrackFile, e.Message);
            return list;
        }
        if (buf.Length < ConntrackMagic.Length + 6 || !buf.AsSpan(0, ConntrackMagic.Length).SequenceEqual(ConntrackMagic))
        {
            rejected = Reject(ConntrackFile, "not a VSwitch connection table (bad magic or version)");
            return list;
        }
        int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(buf.AsSpan(ConntrackMagic.Length));
        int head = ConntrackMagic.Length + 2 + nameLength + 4;
        if (buf.Length < head)
        {
            rejected = Reject(ConntrackFile, "damaged: truncated header");
            return list;
        }
        string owner = System.Text.Encoding.UTF8.GetString(buf, ConntrackMagic.Length + 2, nameLength);
        if (owner != node)
        {
            rejected = Reject(ConntrackFile, $"the connections of node '{owner}', this is node '{node}'");
            return list;
        }
        int count = BinaryPrimitives.ReadInt32LittleEndian(buf.AsSpan(head - 4));
        if (count < 0 || (long)count * ConntrackRecord != buf.Length - head)
        {
            rejected = Reject(ConntrackFile, $"damaged: {count} connections announced, {buf.Length - head} bytes follow");
            return list;
        }
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> r = buf.AsSpan(head + i * ConntrackRecord, ConntrackRecord);
            var state = (CtState)r[26];
            if (state > CtState.Replied || r[28] > (byte)CtRule.Masquerade)
            {
                list.Clear();
                rejected = Reject(ConntrackFile, $"damaged: connection {i} has state {r[26]}, rule {r[28]}");
                return list;
            }
            list.Add(new SavedConnection(ReadKey(r), ReadKey(r[13..]), state, (CtStatus)r[27], (CtRule)r[28], r[29],
                BinaryPrimitives.ReadInt64LittleEndian(r[30..]), BinaryPrimitives.ReadInt64LittleEndian(r[38..]),
                BinaryPrimitives.ReadInt64LittleEndian(r[46..]), BinaryPrimitives.ReadInt64LittleEndian(r[54..]),
                BinaryPrimitives.ReadInt64LittleEndian(r[62..])));
        }
        File.Delete(ConntrackFile);
        return list;
    }

    private static void WriteKey(Span<byte> b, in FlowKey k)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, k.Src);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], k.Dst);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], k.SrcPort);
        BinaryPrimitives.WriteUInt16LittleEndian(b[10..], k.DstPort);
        b[12] = k.Proto;
    }

    private static FlowKey ReadKey(ReadOnlySpan<byte> b) => new(BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[8..]), BinaryPrimitives.ReadUInt16LittleEndian(b[10..]), b[12]);

    /// <summary>Moves a file aside as rejected; returns the reason with where it went.</summary>
    private static string Reject(string file, string why)
    {
        string aside = $"{file}.rejected";
        try
        {
            File.Move(file, aside, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{file}: {why} (could not move it aside: {e.Message})";
        }
        return $"{file}: {why}; moved to {aside}";
    }

    private sealed class Ipv4Converter : JsonConverter<Ipv4Address>
    {
        public override Ipv4Address Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            Ipv4Address.TryParse(reader.GetString(), out Ipv4Address a) ? a : throw new JsonException($"'{reader.GetString()}' is not an IPv4 address");

        public override void Write(Utf8JsonWriter writer, Ipv4Address value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
    }
}

using System.Runtime.CompilerServices;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat;

/// <summary>
/// Flow affinity between workers, for one worker's connection table. Every IPv4 packet is processed by the worker its
/// tuple's symmetric hash names (<see cref="SteerStage"/>), so both directions of an un-NATed flow meet the same entry.
/// A NATed connection's reply tuple hashes elsewhere in general. Every connection is kept by the worker its reply tuple
/// hashes to, so that any two connections whose reply tuples clash meet in one table and the second is remapped:
/// <list type="bullet">
/// <item>Source ports chosen for SNAT are picked so that the reply hashes to the worker deciding them.</item>
/// <item>A new Service connection without SNAT is decided (endpoint chosen) by the worker its original tuple hashes
/// to; when the reply tuple hashes to another worker, the packet is handed there with the decision, and that worker
/// creates the entry and tells the first to hand it the originator's packets (a redirect, original tuple → owner).</item>
/// <item>Where the two still differ (a decision made under a different Services snapshot), the owner tells the reply's
/// worker instead (reply tuple → owner).</item>
/// </list>
/// Redirects live as long as their connection: the owner sends the removal when it deletes the entry. Messages, not
/// locks: the tables stay owned by one worker each.
/// </summary>
public sealed class ConnectionSteering
{
    private readonly Dictionary<FlowKey, int> _redirects = new();
    private readonly int _capacity;

    public ConnectionSteering(WorkerMesh mesh, int self, int capacity)
    {
        Mesh = mesh;
        Self = self;
        _capacity = capacity;
    }

    public WorkerMesh Mesh { get; }
    public int Self { get; }
    /// <summary>Applies messages when a lookup misses (set by the worker).</summary>
    public IMeshHandler? Handler { get; set; }
    public int Redirects => _redirects.Count;
    /// <summary>Redirects not kept because the table was full.</summary>
    public long RedirectsDropped { get; private set; }

    /// <summary>The worker that processes packets with tuple <paramref name="k"/> (either direction).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Home(in FlowKey k) => Mesh.Home(FlowHash.Symmetric(k, Mesh.Salt));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsLocal(in FlowKey k) => Mesh.Count == 1 || Home(k) == Self;

    public enum HandOffResult
    {
        /// <summary>No other worker owns the tuple: process it here.</summary>
        None,
        HandedOff,
        /// <summary>Another worker owns it but would not take more now: drop.</summary>
        Refused,
    }

    /// <summary>On a connection-table miss: when another worker owns the connection the packet belongs to (either
    /// direction of its tuple), hands the packet there. Messages that arrived meanwhile are applied first, so a reply
    /// that beat its redirect message here still finds it.</summary>
    public HandOffResult TryHandOff(in FlowKey key, int slot)
    {
        int owner = Owner(key);
        if (owner < 0 && Handler is { } h && Mesh.DrainMessages(Self, h) > 0) owner = Owner(key);
        if (owner < 0 || owner == Self) return HandOffResult.None;
        return Mesh.HandOff(Self, owner, slot) ? HandOffResult.HandedOff : HandOffResult.Refused;
    }

    private int Owner(in FlowKey key)
    {
        if (_redirects.Count == 0) return -1;
        if (_redirects.TryGetValue(key, out int w)) return w;
        return _redirects.TryGetValue(key.Inverse(), out w) ? w : -1;
    }

    /// <summary>A connection was created here: when its reply hashes to another worker, that worker is told to send the
    /// replies here; when its original tuple does (a Service connection decided there, or created here again when its
    /// first packet reused a closed connection's tuple), that worker is told to send the originator's packets here. The
    /// entry is marked for each, so its deletion is told too. (TCP and UDP only: their tuple is the one the steer stage
    /// hashes; ICMP connections are always created where their original tuple is steered.)</summary>
    public void Created(ref CtEntry e)
    {
        int r = Home(e.Reply);
        if (r != Self && Mesh.Send(Self, r, Message(MeshKind.RedirectAdd, e.Reply, Self))) e.Status |= CtStatus.Redirected;
        if (e.Orig.Proto is not (IpProtocol.Tcp or IpProtocol.Udp)) return;
        int o = Home(e.Orig);
        if (o != Self && Mesh.Send(Self, o, Message(MeshKind.RedirectAdd, e.Orig, Self))) e.Status |= CtStatus.RedirectedOrig;
    }

    /// <summary>A marked connection is being deleted here.</summary>
    public void Removed(in CtEntry e)
    {
        if ((e.Status & CtStatus.Redirected) != 0) Mesh.Send(Self, Home(e.Reply), Message(MeshKind.RedirectRemove, e.Reply, Self));
        if ((e.Status & CtStatus.RedirectedOrig) != 0) Mesh.Send(Self, Home(e.Orig), Message(MeshKind.RedirectRemove, e.Orig, Self));
    }

    /// <summary>Hands a packet to another worker (a new Service connection, to the worker its reply tuple hashes to).
    /// False when that worker holds a full ring of this worker's packets.</summary>
    public bool HandTo(int worker, int slot) => Mesh.HandOff(Self, worker, slot);

    /// <summary>Tells every worker which endpoint a client got (sessionAffinity ClientIP holds across workers).</summary>
    public void AffinitySet(ulong service, uint client, uint endpoint, ushort port, long expires) =>
        Mesh.Broadcast(Self, new MeshMessage
        {
            Kind = MeshKind.AffinitySet,
            From = Self,
            A = service,
            B = (ulong)client << 32 | endpoint,
            C = port,
            D = (ulong)expires,
        });

    /// <summary>Applies a connection message; false for other kinds.</summary>
    public bool Handle(in MeshMessage m, NatEngine nat)
    {
        switch (m.Kind)
        {
            case MeshKind.RedirectAdd:
            {
                FlowKey k = Key(m);
                if (_redirects.Count >= _capacity && !_redirects.ContainsKey(k))
                {
                    RedirectsDropped++;
                    return true;
                }
                _redirects[k] = (int)m.C;
                return true;
            }
            case MeshKind.RedirectRemove:
            {
                FlowKey k = Key(m);
                if (_redirects.TryGetValue(k, out int w) && w == (int)m.C) _redirects.Remove(k);
                return true;
            }
            case MeshKind.AffinitySet:
                nat.Affinity.Set(m.A, (uint)(m.B >> 32), (uint)m.B, (ushort)m.C, (long)m.D);
                return true;
            default:
                return false;
        }
    }

    private static MeshMessage Message(int kind, in FlowKey k, int owner) => new()
    {
        Kind = kind,
        From = owner,
        A = (ulong)k.Src << 32 | k.Dst,
        B = (ulong)k.SrcPort << 32 | (ulong)k.DstPort << 16 | k.Proto,
        C = (ulong)owner,
    };

    private static FlowKey Key(in MeshMessage m) =>
        new((uint)(m.A >> 32), (uint)m.A, (ushort)(m.B >> 32), (ushort)(m.B >> 16), (byte)m.B);
}

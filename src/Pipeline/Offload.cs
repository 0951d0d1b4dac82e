using System.Buffers.Binary;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline;

/// <summary>What a port can take from the switch and hand on unfinished (the kernel's NETIF_F_* the TAP advertises).</summary>
[Flags]
public enum PortOffloads : byte
{
    None = 0,
    /// <summary>Frames whose TCP/UDP checksum is still to be computed (virtio NEEDS_CSUM).</summary>
    Checksum = 1 << 0,
    /// <summary>TCP/IPv4 super-frames (TSO4).</summary>
    Tso4 = 1 << 1,
    /// <summary>TCP/IPv6 super-frames (TSO6).</summary>
    Tso6 = 1 << 2,
    All = Checksum | Tso4 | Tso6,
}

/// <summary>
/// Kernel offloads carried through the pipeline. A port with offloads (a TAP with IFF_VNET_HDR) receives TCP super-frames
/// of up to 64 KB and packets whose checksum is left to the transmitter, described by the 10-byte virtio-net header; the
/// pipeline keeps that state in <see cref="PacketMeta.Gso"/>, <see cref="PacketMeta.GsoSize"/> and
/// <see cref="PacketFlags.ChecksumPartial"/>, and where a frame must leave through a port that cannot take it (the
/// tunnel, the uplink, AF_PACKET, memory ports) it is finished in software here first: the checksum is completed, the
/// super-frame cut into segments (the kernel's skb_checksum_help and tcp_gso_segment).
/// Invariant: a packet marked ChecksumPartial or Gso is an unfragmented IPv4/IPv6 TCP (or, for ChecksumPartial only, UDP)
/// packet whose checksum field sits at its transport header, as <see cref="TryLocateTransport"/> finds it.
/// </summary>
public static unsafe class Offload
{
    /// <summary>Size of <c>struct virtio_net_hdr</c>, the header a TAP with IFF_VNET_HDR puts before each frame.</summary>
    public const int VirtioHeaderSize = 10;
    /// <summary>Most segments one super-frame may be cut into: 64 KB at an MSS of 256 or more. Anything finer is refused.</summary>
    public const int MaxSegments = 256;

    private const byte VirtioNeedsCsum = 1;
    private const byte VirtioDataValid = 2;
    private const byte VirtioGsoNone = 0;
    private const byte VirtioGsoTcpV4 = 1;
    private const byte VirtioGsoTcpV6 = 4;

    /// <summary>The offloads a packet still needs from whoever transmits it.</summary>
    public static PortOffloads Needs(in PacketMeta m) => m.Gso switch
    {
        GsoType.Tcp4 => PortOffloads.Tso4 | PortOffloads.Checksum,
        GsoType.Tcp6 => PortOffloads.Tso6 | PortOffloads.Checksum,
        _ => (m.Flags & PacketFlags.ChecksumPartial) != 0 ? PortOffloads.Checksum : PortOffloads.None,
    };

    /// <summary>
    /// Finds the transport header of an Ethernet frame (802.1Q tag, IPv4 options and IPv6 extension headers skipped).
    /// False for anything else, for fragments and for truncated headers.
    /// </summary>
    public static bool TryLocateTransport(byte* f, int len, out int l3, out int l4, out byte protocol, out bool ipv6)
    {
        l3 = l4 = 0;
        protocol = 0;
        ipv6 = false;
        if (len < EthernetView.HeaderSize) return false;
        l3 = EthernetView.HeaderSize;
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(new ReadOnlySpan<byte>(f + 12, 2));
        if (type == EtherType.Vlan)
        {
            if (len < 18) return false;
            l3 = 18;
            type = BinaryPrimitives.ReadUInt16BigEndian(new ReadOnlySpan<byte>(f + 16, 2));
        }
        if (type == EtherType.Ipv4)
        {
            if (len < l3 + 20 || f[l3] >> 4 != 4) return false;
            int ihl = (f[l3] & 0x0F) * 4;
            if (ihl < 20) return false;
            if ((BinaryPrimitives.ReadUInt16BigEndian(new ReadOnlySpan<byte>(f + l3 + 6, 2)) & 0x3FFF) != 0) return false; // MF or offset
            l4 = l3 + ihl;
            protocol = f[l3 + 9];
            return l4 <= len;
        }
        if (type != EtherType.Ipv6 || len < l3 + 40 || f[l3] >> 4 != 6) return false;
        ipv6 = true;
        byte next = f[l3 + 6];
        int off = l3 + 40;
        for (int hops = 0; hops < 8 && next is 0 or 43 or 60; hops++) // hop-by-hop, routing, destination options
        {
            if (off + 8 > len) return false;
            next = f[off];
            off += (f[off + 1] + 1) * 8;
        }
        if (next is 0 or 43 or 44 or 60) return false; // a fragment, or too many extension headers
        l4 = off;
        protocol = next;
        return l4 <= len;
    }

    /// <summary>Offset of the checksum within the transport header for the protocols a partial checksum may be left in.</summary>
    private static int ChecksumField(byte protocol) =>
        protocol is IpProtocol.Tcp or IpProtocol.Udp ? Checksum.TransportChecksumOffset(protocol) : -1;

    /// <summary>
    /// Reads a virtio-net header into the packet's metadata (the frame is at <paramref name="f"/>). A partial checksum at
    /// an unusual place is completed here so the invariant holds. False for a header this switch never offered to take
    /// (UDP fragmentation offload, ECN) or one that contradicts its frame: the caller drops and counts it.
    /// </summary>
    public static bool Import(byte* h, byte* f, int len, ref PacketMeta m)
    {
        byte flags = h[0];
        byte gso = h[1];
        ushort gsoSize = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(h + 4, 2));
        ushort csumStart = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(h + 6, 2));
        ushort csumOffset = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(h + 8, 2));
        if ((flags & VirtioDataValid) != 0) m.Flags |= PacketFlags.ChecksumValid;
        if ((flags & VirtioNeedsCsum) == 0) return gso == VirtioGsoNone;
        bool located = TryLocateTransport(f, len, out _, out int l4, out byte protocol, out bool ipv6);
        bool standard = located && csumStart == l4 && csumOffset == ChecksumField(protocol) && l4 + csumOffset + 2 <= len;
        if (gso != VirtioGsoNone)
        {
            GsoType type = gso switch
            {
                VirtioGsoTcpV4 when standard && !ipv6 && protocol == IpProtocol.Tcp => GsoType.Tcp4,
                VirtioGsoTcpV6 when standard && ipv6 && protocol == IpProtocol.Tcp => GsoType.Tcp6,
                _ => GsoType.None,
            };
            if (type == GsoType.None || gsoSize == 0 || l4 + 20 > len) return false;
            m.Gso = type;
            m.GsoSize = gsoSize;
            m.Flags |= PacketFlags.ChecksumPartial;
            return true;
        }
        if (standard)
        {
            m.Flags |= PacketFlags.ChecksumPartial;
            return true;
        }
        if (csumStart + csumOffset + 2 > len) return false;
        CompleteChecksum(f, len, csumStart, csumOffset);
        m.Flags |= PacketFlags.ChecksumValid;
        return true;
    }

    /// <summary>Writes the virtio-net header that describes the packet to a port with offloads.</summary>
    public static void Export(in PacketMeta m, byte* f, byte* h)
    {
        new Span<byte>(h, VirtioHeaderSize).Clear();
        if ((m.Flags & PacketFlags.ChecksumPartial) != 0
            && TryLocateTransport(f, m.Length, out _, out int l4, out byte protocol, out _))
        {
            h[0] = VirtioNeedsCsum;
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(h + 6, 2), (ushort)l4);
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(h + 8, 2), (ushort)ChecksumField(protocol));
            if (m.Gso != GsoType.None)
            {
                h[1] = m.Gso == GsoType.Tcp4 ? VirtioGsoTcpV4 : VirtioGsoTcpV6;
                BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(h + 2, 2), (ushort)(l4 + ((f[l4 + 12] >> 4) * 4)));
                BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(h + 4, 2), m.GsoSize);
            }
        }
        else if ((m.Flags & PacketFlags.ChecksumValid) != 0)
        {
            h[0] = VirtioDataValid;
        }
    }

    /// <summary>Writes the virtio-net header for frame <paramref name="f"/> into the headroom just before it, where a TAP
    /// (IFF_VNET_HDR) or packet socket (PACKET_VNET_HDR) expects it. False when the frame has less headroom than that.</summary>
    public static bool TryExportBefore(in PacketMeta m, byte* f)
    {
        if (m.Offset < VirtioHeaderSize) return false;
        Export(m, f, f - VirtioHeaderSize);
        return true;
    }

    /// <summary>Computes the checksum over [<paramref name="start"/>, <paramref name="len"/>) into the field at
    /// start + <paramref name="fieldOffset"/>, which holds the pseudo-header sum (the kernel's skb_checksum_help).</summary>
    public static void CompleteChecksum(byte* f, int len, int start, int fieldOffset)
    {
        ushort c = Checksum.Compute(new ReadOnlySpan<byte>(f + start, len - start));
        BinaryPrimitives.WriteUInt16BigEndian(new Span<byte>(f + start + fieldOffset, 2), c == 0 ? (ushort)0xFFFF : c);
    }

    /// <summary>Completes a partial checksum in place and clears the mark. False when the frame no longer fits the invariant.</summary>
    public static bool CompleteChecksum(PacketSlab slab, int slot)
    {
        ref PacketMeta m = ref slab.Meta[slot];
        byte* f = slab.SlotPointer(slot) + m.Offset;
        if (!TryLocateTransport(f, m.Length, out _, out int l4, out byte protocol, out _)) return false;
        int field = ChecksumField(protocol);
        if (field < 0 || l4 + field + 2 > m.Length) return false;
        CompleteChecksum(f, m.Length, l4, field);
        m.Flags = (m.Flags & ~PacketFlags.ChecksumPartial) | PacketFlags.ChecksumValid;
        return true;
    }

    /// <summary>
    /// Cuts a TCP super-frame into segments of at most <see cref="PacketMeta.GsoSize"/> payload bytes, each a complete
    /// frame in a new slot with its own IPv4 length, id and header checksum (or IPv6 payload length), sequence number, flags
    /// (FIN and PSH on the last segment only, CWR on the first) and full TCP checksum; metadata is inherited. Writes the
    /// new slots to <paramref name="segments"/> and returns how many, or -1 (nothing allocated) when the frame is
    /// malformed, needs more than <paramref name="segments"/> holds, or the slab runs out. The caller frees the original.
    /// </summary>
    public static int Segment(PacketSlab slab, int slot, Span<int> segments)
    {
        ref PacketMeta m = ref slab.Meta[slot];
        byte* f = slab.SlotPointer(slot) + m.Offset;
        int len = m.Length;
        if (!TryLocateTransport(f, len, out int l3, out int l4, out byte protocol, out bool ipv6) || protocol != IpProtocol.Tcp) return -1;
        if (l4 + 20 > len) return -1;
        int hdr = l4 + (f[l4 + 12] >> 4) * 4;
        int mss = m.GsoSize;
        int payload = len - hdr;
        if (hdr > len || mss == 0 || hdr < l4 + 20) return -1;
        int count = payload <= 0 ? 1 : (payload + mss - 1) / mss;
        if (count > segments.Length) return -1;
        uint seq = BinaryPrimitives.ReadUInt32BigEndian(new ReadOnlySpan<byte>(f + l4 + 4, 4));
        byte tcpFlags = f[l4 + 13];
        ushort ipId = ipv6 ? (ushort)0 : BinaryPrimitives.ReadUInt16BigEndian(new ReadOnlySpan<byte>(f + l3 + 4, 2));
        for (int k = 0; k < count; k++)
        {
            int chunk = Math.Min(mss, Math.Max(payload - k * mss, 0));
            int segLen = hdr + chunk;
            int s;
            bool ok = segLen <= slab.MaxFrameLength ? slab.TryAlloc(out s) : slab.TryAllocLarge(out s);
            if (!ok)
            {
                for (int j = 0; j < k; j++) slab.Free(segments[j]);
                return -1;
            }
            ref PacketMeta sm = ref slab.Meta[s];
            int offset = sm.Offset;
            sm = m;
            sm.Offset = offset;
            sm.Length = segLen;
            sm.Gso = GsoType.None;
            sm.GsoSize = 0;
            sm.Flags = (m.Flags & ~PacketFlags.ChecksumPartial) | PacketFlags.ChecksumValid;
            byte* d = slab.SlotPointer(s) + offset;
            new ReadOnlySpan<byte>(f, hdr).CopyTo(new Span<byte>(d, hdr));
            ushort payloadSum = Checksum.SumAndCopy(new ReadOnlySpan<byte>(f + hdr + k * mss, chunk), new Span<byte>(d + hdr, chunk));
            var ip = new Span<byte>(d + l3, segLen - l3);
            if (ipv6)
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(segLen - l3 - 40));
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(segLen - l3));
                BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(ipId + k));
                Ipv4View.TryCreate(ip, out Ipv4View v4); // the header was valid in the super-frame and its lengths fit
                v4.UpdateChecksum();
            }
            var tcp = new Span<byte>(d + l4, segLen - l4);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], seq + (uint)(k * mss));
            byte fl = tcpFlags;
            if (k < count - 1) fl &= unchecked((byte)~(0x01 | 0x08)); // FIN, PSH: last segment only
            if (k > 0) fl &= unchecked((byte)~0x80); // CWR: first segment only
            tcp[13] = fl;
            tcp[16] = tcp[17] = 0;
            ushort pseudo = ipv6 ? PseudoHeaderSum6(ip, tcp.Length) : PseudoHeaderSum4(ip, tcp.Length);
            ushort headerSum = Checksum.Sum(tcp[..(hdr - l4)], pseudo); // a whole number of 32-bit words: sums chain
            BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], (ushort)~Checksum.Fold((ulong)headerSum + payloadSum));
            segments[k] = s;
        }
        return count;
    }

    private static ushort PseudoHeaderSum4(ReadOnlySpan<byte> ip, int transportLength) =>
        Checksum.PseudoHeaderSum(new Ipv4Address(BinaryPrimitives.ReadUInt32BigEndian(ip[12..])),
            new Ipv4Address(BinaryPrimitives.ReadUInt32BigEndian(ip[16..])), IpProtocol.Tcp, transportLength);

    private static ushort PseudoHeaderSum6(ReadOnlySpan<byte> ip, int transportLength) =>
        Checksum.Fold((ulong)Checksum.Sum(ip.Slice(8, 32)) + (uint)(transportLength >> 16) + (uint)(transportLength & 0xFFFF) + IpProtocol.Tcp);

    /// <summary>Most datagrams in one UDP GRO train (the kernel's UDP_GRO_CNT_MAX) and in one UDP GSO send.</summary>
    public const int MaxTrainSegments = 64;

    private const byte TcpFin = 0x01, TcpSyn = 0x02, TcpRst = 0x04, TcpPsh = 0x08, TcpAck = 0x10, TcpUrg = 0x20, TcpCwr = 0x80;

    /// <summary>
    /// Receive-side coalescing, the counterpart of <see cref="Segment"/> (the kernel's TCP GRO), applied to a train of
    /// datagrams read at once from a UDP GRO socket: the <paramref name="length"/> bytes at <paramref name="train"/> are
    /// datagrams of <paramref name="stride"/> bytes (the last may be shorter), each <paramref name="prefix"/> bytes of
    /// encapsulation header followed by an Ethernet frame. Takes the longest run of datagrams from the first whose frames
    /// are consecutive segments of one TCP/IPv4 flow and writes to <paramref name="dst"/> the first datagram's prefix and
    /// headers followed by the run's payloads: one super-frame with the IPv4 total length and header checksum set, the
    /// last segment's TCP flags and the TCP checksum field holding the pseudo-header sum (partial, as <see cref="Segment"/>
    /// and a TSO-capable TAP expect). Returns its length (prefix included), the payload size of a full segment in
    /// <paramref name="mss"/> and the datagrams used in <paramref name="merged"/> (at least 2); or 0 when not even the
    /// first two qualify (the caller delivers the first datagram as it is and tries again from the next).
    /// A run holds datagrams with the same prefix, Ethernet header (IPv4, untagged), IPv4 header (no options, not a
    /// fragment) but for length, id and checksum, and TCP header but for sequence number, checksum and PSH; ACK set and
    /// no SYN, FIN, RST, URG or CWR; consecutive sequence numbers; correct IPv4 and TCP checksums (a bad one reaches the
    /// receiver as it is). Like the kernel's GRO, a segment with PSH (the end of a sender's super-frame) ends the run, and
    /// it stays within <paramref name="room"/>, an IPv4 length and <see cref="MaxTrainSegments"/> datagrams.
    /// </summary>
    public static int CoalesceTcp4(byte* train, int length, int stride, int prefix, byte* dst, int room, out ushort mss, out int merged)
    {
        mss = 0;
        merged = 0;
        if (stride <= 0 || prefix < 0 || length <= stride) return 0;
        int count = Math.Min((length + stride - 1) / stride, MaxTrainSegments);
        const int l3 = EthernetView.HeaderSize;
        const int l4 = l3 + Ipv4View.MinHeaderSize;
        byte* f0 = train + prefix;
        int frame = stride - prefix;
        if (frame < l4 + TcpView.MinHeaderSize) return 0;
        if (f0[12] != 0x08 || f0[13] != 0x00 || f0[l3] != 0x45 || f0[l3 + 9] != IpProtocol.Tcp) return 0;
        if ((f0[l3 + 6] & 0x3F) != 0 || f0[l3 + 7] != 0) return 0; // MF or an offset: a fragment
        int hdr = l4 + (f0[l4 + 12] >> 4) * 4;
        int seg = frame - hdr;
        byte flags0 = f0[l4 + 13];
        if (hdr < l4 + TcpView.MinHeaderSize || seg <= 0) return 0;
        if ((flags0 & TcpAck) == 0 || (flags0 & (TcpFin | TcpSyn | TcpRst | TcpPsh | TcpUrg | TcpCwr)) != 0) return 0;
        if (prefix + hdr + seg > room) return 0;
        // Payloads are copied into place as their checksums are verified (one pass); a datagram that fails leaves
        // bytes past the run's end, which are not part of the result.
        byte* w = dst + prefix + hdr;
        if (!CopyVerified(f0, frame, hdr, w)) return 0;
        uint seq0 = BinaryPrimitives.ReadUInt32BigEndian(new ReadOnlySpan<byte>(f0 + l4 + 4, 4));
        int tcpHeader = hdr - l4;
        int n = 1;
        int payload = seg;
        for (int k = 1; k < count; k++)
        {
            byte* d = train + (nint)k * stride;
            byte* f = d + prefix;
            int flen = Math.Min(stride, length - k * stride) - prefix;
            int chunk = flen - hdr;
            if (chunk <= 0 || prefix + hdr + payload + chunk > room || hdr - l3 + payload + chunk > ushort.MaxValue) break;
            // Everything that must match the first segment: prefix, Ethernet, IPv4 version..TOS, flags/fragment, TTL,
            // protocol, addresses; TCP ports, ack, data offset, window, urgent pointer, options.
            if (!new ReadOnlySpan<byte>(train, prefix + l3 + 2).SequenceEqual(new ReadOnlySpan<byte>(d, prefix + l3 + 2))
                || !new ReadOnlySpan<byte>(f0 + l3 + 6, 4).SequenceEqual(new ReadOnlySpan<byte>(f + l3 + 6, 4))
                || !new ReadOnlySpan<byte>(f0 + l3 + 12, 8 + 4).SequenceEqual(new ReadOnlySpan<byte>(f + l3 + 12, 8 + 4))
                || !new ReadOnlySpan<byte>(f0 + l4 + 8, 5).SequenceEqual(new ReadOnlySpan<byte>(f + l4 + 8, 5))
                || !new ReadOnlySpan<byte>(f0 + l4 + 14, 2).SequenceEqual(new ReadOnlySpan<byte>(f + l4 + 14, 2))
                || !new ReadOnlySpan<byte>(f0 + l4 + 18, tcpHeader - 18).SequenceEqual(new ReadOnlySpan<byte>(f + l4 + 18, tcpHeader - 18)))
                break;
            byte fl = f[l4 + 13];
            if ((fl != flags0 && fl != (flags0 | TcpPsh))
                || BinaryPrimitives.ReadUInt32BigEndian(new ReadOnlySpan<byte>(f + l4 + 4, 4)) != seq0 + (uint)payload
                || !CopyVerified(f, flen, hdr, w + payload))
                break;
            payload += chunk;
            n++;
            if (fl != flags0 || chunk < seg) break; // PSH, or the train's short last datagram: the end of a run
        }
        if (n < 2) return 0;
        Buffer.MemoryCopy(train, dst, prefix + hdr, prefix + hdr);
        byte* o = dst + prefix;
        int total = hdr + payload;
        var oip = new Span<byte>(o + l3, total - l3);
        BinaryPrimitives.WriteUInt16BigEndian(oip[2..], (ushort)(total - l3));
        Ipv4View.TryCreate(oip, out Ipv4View v4); // the first segment's header, valid, with a length that fits
        v4.UpdateChecksum();
        o[l4 + 13] = train[(nint)(n - 1) * stride + prefix + l4 + 13];
        BinaryPrimitives.WriteUInt16BigEndian(new Span<byte>(o + l4 + 16, 2), PseudoHeaderSum4(oip, total - l4));
        mss = (ushort)seg;
        merged = n;
        return prefix + total;
    }

    /// <summary>Copies the payload of one Ethernet/IPv4 (no options)/TCP frame (headers <paramref name="hdr"/> bytes) to
    /// <paramref name="to"/> and checks the IPv4 total length, header checksum and TCP checksum on the way.</summary>
    private static bool CopyVerified(byte* f, int flen, int hdr, byte* to)
    {
        const int l4 = EthernetView.HeaderSize + Ipv4View.MinHeaderSize;
        var ip = new ReadOnlySpan<byte>(f + EthernetView.HeaderSize, flen - EthernetView.HeaderSize);
        if (BinaryPrimitives.ReadUInt16BigEndian(ip[2..]) != ip.Length || !Checksum.IsValid(ip[..Ipv4View.MinHeaderSize])) return false;
        ushort payloadSum = Checksum.SumAndCopy(new ReadOnlySpan<byte>(f + hdr, flen - hdr), new Span<byte>(to, flen - hdr));
        ushort headerSum = Checksum.Sum(new ReadOnlySpan<byte>(f + l4, hdr - l4), PseudoHeaderSum4(ip, flen - l4));
        return Checksum.Fold((ulong)headerSum + payloadSum) == 0xFFFF;
    }

    /// <summary>
    /// Finishes, in place and in order, every packet of <paramref name="batch"/> that needs an offload its egress (as
    /// <paramref name="egress"/> tells) cannot take: a super-frame is replaced by its segments, a partial checksum is
    /// completed. A packet that cannot be finished (malformed, too many segments, slab or batch full) is freed and counted
    /// in the return value; <paramref name="segmented"/> counts the super-frames cut. <paramref name="scratch"/> must hold
    /// the batch's capacity. Costs one scan of the metadata when nothing needs finishing.
    /// </summary>
    public static int Resolve<TEgress>(PacketSlab slab, PacketBatch batch, ref TEgress egress, int[] scratch, out int segmented)
        where TEgress : struct, IEgressOffloads
    {
        segmented = 0;
        PacketMeta[] meta = slab.Meta;
        int[] slots = batch.Slots;
        int count = batch.Count;
        int first = -1;
        for (int i = 0; i < count; i++)
        {
            ref PacketMeta m = ref meta[slots[i]];
            PortOffloads needs = Needs(m);
            if (needs != PortOffloads.None && (egress.For(ref m) & needs) != needs)
            {
                first = i;
                break;
            }
        }
        if (first < 0) return 0;
        int room = Math.Min(scratch.Length, batch.Capacity) - first;
        int w = 0;
        int dropped = 0;
        for (int i = first; i < count; i++)
        {
            int s = slots[i];
            ref PacketMeta m = ref meta[s];
            PortOffloads needs = Needs(m);
            int left = room - w - (count - i - 1); // keep a place for every packet still to come
            if (needs == PortOffloads.None || (egress.For(ref m) & needs) == needs)
            {
                scratch[w++] = s;
                continue;
            }
            if (m.Gso != GsoType.None)
            {
                int n = left > 0 ? Segment(slab, s, scratch.AsSpan(w, Math.Min(left, MaxSegments))) : -1;
                slab.Free(s);
                if (n < 0)
                {
                    dropped++;
                }
                else
                {
                    w += n;
                    segmented++;
                }
                continue;
            }
            if (CompleteChecksum(slab, s))
            {
                scratch[w++] = s;
            }
            else
            {
                slab.Free(s);
                dropped++;
            }
        }
        batch.ReplaceTail(first, scratch.AsSpan(0, w));
        return dropped;
    }
}

/// <summary>Tells <see cref="Offload.Resolve{TEgress}"/> what the egress of a packet can take (a struct, so the call inlines).</summary>
public interface IEgressOffloads
{
    PortOffloads For(ref PacketMeta m);
}

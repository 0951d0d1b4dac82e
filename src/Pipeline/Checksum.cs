using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Pipeline;

/// <summary>
/// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
/// "Sum" values are the folded one's-complement sum (not complemented), in host order, so they can be chained;
/// a checksum field holds the complement of a sum.
/// </summary>
public static class Checksum
{
    /// <summary>
    /// One's-complement sum of <paramref name="data"/> (as big-endian 16-bit words; an odd last byte is padded with zero),
    /// added to <paramref name="initial"/> and folded to 16 bits. When chaining, only the last chunk may have an odd length.
    /// </summary>
    public static ushort Sum(ReadOnlySpan<byte> data, ushort initial = 0)
    {
        // RFC 1071 §2(B): the sum is byte-order independent, so add native-order 32-bit halves of 64-bit loads
        // into a 64-bit accumulator (no carries lost below 2^31 iterations) and swap once at the end.
        ulong acc = BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(initial) : initial;
        ref byte p = ref MemoryMarshal.GetReference(data);
        int n = data.Length;
        int i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 128)
        {
            // The same, 32 bytes per load: 32-bit lanes widened into 64-bit lane accumulators.
            Vector256<ulong> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; i + 64 <= n; i += 64)
            {
                (Vector256<ulong> a, Vector256<ulong> b) = Vector256.Widen(Vector256.LoadUnsafe(ref Unsafe.As<byte, uint>(ref Unsafe.Add(ref p, i))));
                (Vector256<ulong> c, Vector256<ulong> d) = Vector256.Widen(Vector256.LoadUnsafe(ref Unsafe.As<byte, uint>(ref Unsafe.Add(ref p, i + 32))));
                s0 += a;
                s1 += b;
                s2 += c;
                s3 += d;
            }
            acc += Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        return SumTail(ref p, i, n, acc);
    }

    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="destination"/> (at least as long) and returns the sum of the
    /// bytes copied, as <see cref="Sum"/> would: one pass over the data instead of two (the kernel's csum_and_copy).
    /// </summary>
    public static ushort SumAndCopy(ReadOnlySpan<byte> source, Span<byte> destination, ushort initial = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, source.Length, nameof(destination));
        ulong acc = BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(initial) : initial;
        ref byte p = ref MemoryMarshal.GetReference(source);
        ref byte q = ref MemoryMarshal.GetReference(destination);
        int n = source.Length;
        int i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 128)
        {
            Vector256<ulong> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; i + 64 <= n; i += 64)
            {
                Vector256<uint> v = Vector256.LoadUnsafe(ref Unsafe.As<byte, uint>(ref Unsafe.Add(ref p, i)));
                Vector256<uint> w = Vector256.LoadUnsafe(ref Unsafe.As<byte, uint>(ref Unsafe.Add(ref p, i + 32)));
                v.StoreUnsafe(ref Unsafe.As<byte, uint>(ref Unsafe.Add(ref q, i)));
                w.StoreUnsafe(ref Unsafe.As<byte, uint>(ref Unsafe.Add(ref q, i + 32)));
                (Vector256<ulong> a, Vector256<ulong> b) = Vector256.Widen(v);
                (Vector256<ulong> c, Vector256<ulong> d) = Vector256.Widen(w);
                s0 += a;
                s1 += b;
                s2 += c;
                s3 += d;
            }
            acc += Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        source[i..].CopyTo(destination[i..]);
        return SumTail(ref p, i, n, acc);
    }

    /// <summary>Adds bytes [<paramref name="i"/>, <paramref name="n"/>) to <paramref name="acc"/> and folds.</summary>
    private static ushort SumTail(ref byte p, int i, int n, ulong acc)
    {
        for (; i + 32 <= n; i += 32)
        {
            ulong a = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i));
            ulong b = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i + 8));
            ulong c = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i + 16));
            ulong d = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i + 24));
            acc += (a & 0xFFFF_FFFF) + (a >> 32) + (b & 0xFFFF_FFFF) + (b >> 32)
                 + (c & 0xFFFF_FFFF) + (c >> 32) + (d & 0xFFFF_FFFF) + (d >> 32);
        }
        for (; i + 8 <= n; i += 8)
        {
            ulong a = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i));
            acc += (a & 0xFFFF_FFFF) + (a >> 32);
        }
        if (i + 4 <= n)
        {
            acc += Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref p, i));
            i += 4;
        }
        if (i + 2 <= n)
        {
            acc += Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref p, i));
            i += 2;
        }
        if (i < n)
        {
            // The odd byte is the high byte of a big-endian word: in little-endian memory order that is the low byte.
            byte last = Unsafe.Add(ref p, i);
            acc += BitConverter.IsLittleEndian ? last : (ulong)last << 8;
        }
        ushort folded = Fold(acc);
        return BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(folded) : folded;
    }

    /// <summary>Folds a wide one's-complement accumulator to 16 bits with end-around carry.</summary>
    public static ushort Fold(ulong sum)
    {
        sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>The checksum field value for <paramref name="data"/> (with its checksum field zeroed): the complement of <see cref="Sum"/>.</summary>
    public static ushort Compute(ReadOnlySpan<byte> data, ushort initial = 0) => (ushort)~Sum(data, initial);

    /// <summary>True when <paramref name="data"/>, including its checksum field, sums to 0xFFFF (negative zero).</summary>
    public static bool IsValid(ReadOnlySpan<byte> data, ushort initial = 0) => Sum(data, initial) == 0xFFFF;

    /// <summary>Sum of the IPv4 pseudo-header (RFC 793/768): source, destination, zero+protocol, transport length.</summary>
    public static ushort PseudoHeaderSum(Ipv4Address source, Ipv4Address destination, byte protocol, int transportLength)
    {
        ulong acc = (ulong)(source.Value >> 16) + (source.Value & 0xFFFF)
                  + (destination.Value >> 16) + (destination.Value & 0xFFFF)
                  + protocol + (uint)(ushort)transportLength;
        return Fold(acc);
    }

    /// <summary>Offset of the checksum field inside the transport header of <paramref name="protocol"/>, or -1 if not handled.</summary>
    public static int TransportChecksumOffset(byte protocol) => protocol switch
    {
        IpProtocol.Tcp => 16,
        IpProtocol.Udp => 6,
        IpProtocol.Icmp => 2,
        _ => -1,
    };

    /// <summary>
    /// Computes the TCP, UDP or ICMP checksum of the (unfragmented) datagram in <paramref name="ip"/>, ignoring the current
    /// checksum field. For UDP a computed 0 is returned as 0xFFFF (0 on the wire means "no checksum").
    /// Returns false for fragments, other protocols, or a payload too short to hold the checksum field.
    /// </summary>
    public static bool TryComputeTransport(Ipv4View ip, out ushort checksum)
    {
        checksum = 0;
        byte proto = ip.Protocol;
        int off = TransportChecksumOffset(proto);
        Span<byte> l4 = ip.Payload;
        if (off < 0 || ip.IsFragment || l4.Length < off + 2) return false;
        ushort sum = proto == IpProtocol.Icmp ? (ushort)0 : PseudoHeaderSum(ip.Source, ip.Destination, proto, l4.Length);
        sum = Sum(l4[..off], sum);
        sum = Sum(l4[(off + 2)..], sum);
        checksum = (ushort)~sum;
        if (proto == IpProtocol.Udp && checksum == 0) checksum = 0xFFFF;
        return true;
    }

    /// <summary>Computes and writes the transport checksum; false under the same conditions as <see cref="TryComputeTransport"/>.</summary>
    public static bool TryUpdateTransport(Ipv4View ip)
    {
        if (!TryComputeTransport(ip, out ushort checksum)) return false;
        BinaryPrimitives.WriteUInt16BigEndian(ip.Payload[TransportChecksumOffset(ip.Protocol)..], checksum);
        return true;
    }

    /// <summary>
    /// Verifies the transport checksum of an unfragmented TCP, UDP or ICMP datagram. A UDP checksum of 0 ("none") verifies.
    /// Returns false when the checksum is wrong or cannot be checked (fragment, other protocol, too short).
    /// </summary>
    public static bool VerifyTransport(Ipv4View ip)
    {
        byte proto = ip.Protocol;
        int off = TransportChecksumOffset(proto);
        Span<byte> l4 = ip.Payload;
        if (off < 0 || ip.IsFragment || l4.Length < off + 2) return false;
        if (proto == IpProtocol.Udp && BinaryPrimitives.ReadUInt16BigEndian(l4[off..]) == 0) return true;
        ushort sum = proto == IpProtocol.Icmp ? (ushort)0 : PseudoHeaderSum(ip.Source, ip.Destination, proto, l4.Length);
        return Sum(l4, sum) == 0xFFFF;
    }

    /// <summary>RFC 1624 eqn. 3: the checksum after one 16-bit word covered by it changes from <paramref name="oldWord"/> to <paramref name="newWord"/>.</summary>
    public static ushort Update(ushort oldChecksum, ushort oldWord, ushort newWord)
    {
        // HC' = ~(~HC + ~m + m')
        uint acc = (uint)(ushort)~oldChecksum + (ushort)~oldWord + newWord;
        return (ushort)~Fold(acc);
    }

    /// <summary>RFC 1624 for a 32-bit field (an IPv4 address, a TCP sequence number): both halves at once.</summary>
    public static ushort Update(ushort oldChecksum, uint oldValue, uint newValue)
    {
        uint notOld = ~oldValue;
        ulong acc = (ulong)(ushort)~oldChecksum
                  + (notOld >> 16) + (notOld & 0xFFFF)
                  + (newValue >> 16) + (newValue & 0xFFFF);
        return (ushort)~Fold(acc);
    }

    /// <summary>
    /// <see cref="Update(ushort, ushort, ushort)"/> for a UDP checksum: 0 ("no checksum") stays 0, and a result of 0 is sent as 0xFFFF.
    /// </summary>
    public static ushort UpdateUdp(ushort oldChecksum, ushort oldWord, ushort newWord)
    {
        if (oldChecksum == 0) return 0;
        ushort c = Update(oldChecksum, oldWord, newWord);
        return c == 0 ? (ushort)0xFFFF : c;
    }

    /// <summary><see cref="Update(ushort, uint, uint)"/> with the UDP rules of <see cref="UpdateUdp(ushort, ushort, ushort)"/>.</summary>
    public static ushort UpdateUdp(ushort oldChecksum, uint oldValue, uint newValue)
    {
        if (oldChecksum == 0) return 0;
        ushort c = Update(oldChecksum, oldValue, newValue);
        return c == 0 ? (ushort)0xFFFF : c;
    }
}

using System.Buffers.Binary;
using VSwitch.Pipeline;
using VSwitch.Pipeline.Wire;

namespace VSwitch.Nat.Tests;

/// <summary>NAT of packets whose TCP/UDP checksum is left to the transmitter (offloads): rewriting then completing must
/// give the same bytes as rewriting a packet with its full checksum.</summary>
public unsafe class NatPartialChecksumTests
{
    private static byte[] Packet(byte proto, bool partial, int payload)
    {
        int l4Len = (proto == IpProtocol.Tcp ? 20 : 8) + payload;
        var p = new byte[20 + l4Len];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
        p[8] = 64;
        p[9] = proto;
        new byte[] { 10, 244, 1, 2 }.CopyTo(p, 12);
        new byte[] { 10, 96, 0, 10 }.CopyTo(p, 16);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), Checksum.Compute(p.AsSpan(0, 20)));
        Span<byte> l4 = p.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(l4, 41000);
        BinaryPrimitives.WriteUInt16BigEndian(l4[2..], 80);
        if (proto == IpProtocol.Tcp) l4[12] = 5 << 4;
        else BinaryPrimitives.WriteUInt16BigEndian(l4[4..], (ushort)l4Len);
        for (int i = l4Len - payload; i < l4Len; i++) l4[i] = (byte)(i * 13);
        int field = proto == IpProtocol.Tcp ? 16 : 6;
        ushort pseudo = Checksum.PseudoHeaderSum(new Ipv4Address(0x0AF40102), new Ipv4Address(0x0A60000A), proto, l4Len);
        BinaryPrimitives.WriteUInt16BigEndian(l4[field..], partial ? pseudo : Checksum.Compute(l4, pseudo));
        return p;
    }

    [Theory]
    [InlineData(IpProtocol.Tcp, 0)]
    [InlineData(IpProtocol.Tcp, 1001)]
    [InlineData(IpProtocol.Udp, 18)]
    [InlineData(IpProtocol.Udp, 777)]
    public void Rewriting_a_partial_checksum_then_completing_it_equals_rewriting_the_full_one(byte proto, int payload)
    {
        // DNAT to an endpoint and SNAT of the source, ports included: both addresses and both ports change.
        var to = new FlowKey(0xC612_0001, 0x0AF4_0203, 61500, 8080, proto);
        byte[] full = Packet(proto, partial: false, payload);
        byte[] part = Packet(proto, partial: true, payload);
        NatRewrite.Apply(full, to);
        NatRewrite.Apply(part, to, partial: true);
        int field = proto == IpProtocol.Tcp ? 16 : 6;
        fixed (byte* p = part) Offload.CompleteChecksum(p, part.Length, 20, field);
        Assert.Equal(Convert.ToHexString(full), Convert.ToHexString(part));
        Assert.True(Checksum.IsValid(full.AsSpan(20), Checksum.PseudoHeaderSum(new Ipv4Address(0xC6120001), new Ipv4Address(0x0AF40203), proto, full.Length - 20)));
    }
}

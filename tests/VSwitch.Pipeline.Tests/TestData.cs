using System.Diagnostics;

namespace VSwitch.Pipeline.Tests;

/// <summary>Hand-checked frames used as golden input. Where a frame comes from a fixture, tshark reported its checksums "Good".</summary>
internal static class Frames
{
    public static byte[] Hex(string s) => Convert.FromHexString(s.Replace(" ", "", StringComparison.Ordinal));

    /// <summary>pod-side.pcap frame 12: ARP who-has 10.244.0.12 tell 10.244.0.11, from 3a:5c:29:82:94:d1 (42 bytes, unpadded as captured on the sender).</summary>
    public static readonly byte[] ArpRequest = Hex(
        "ffffffffffff 3a5c298294d1 0806" +
        "0001 0800 06 04 0001 3a5c298294d1 0af4000b 000000000000 0af4000c");

    /// <summary>pod-side.pcap frame 13: the ARP reply 10.244.0.12 is-at 9e:9e:a0:7d:fc:03.</summary>
    public static readonly byte[] ArpReply = Hex(
        "3a5c298294d1 9e9ea07dfc03 0806" +
        "0001 0800 06 04 0002 9e9ea07dfc03 0af4000c 3a5c298294d1 0af4000b");

    /// <summary>pod-side.pcap frame 14: ICMP echo request 10.244.0.11 → 10.244.0.12, id 0x284a seq 1, 56 data bytes (98 bytes).</summary>
    public static readonly byte[] EchoRequest = Hex(
        "9e9ea07dfc03 3a5c298294d1 0800" +
        "4500 0054 8a4a 4000 40 01 9a60 0af4000b 0af4000c" +
        "08 00 70cc 284a 0001" +
        "e485016b00000000af240b0000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637");

    /// <summary>
    /// pod-side.pcap frame 1: IGMPv3 report 0.0.0.0 → 224.0.0.22 with an IP Router Alert option (IHL 6), DSCP CS6, DF, TTL 1.
    /// </summary>
    public static readonly byte[] IgmpWithRouterAlert = Hex(
        "01005e000016 42a2048a8d6f 0800" +
        "46c0 0028 0000 4000 01 02 03fa 00000000 e0000016 94040000" +
        "2200f993 00000001 04000000 e000006a");

    /// <summary>pod-side.pcap frame 48, IPv4 header only: first fragment (MF, offset 0) of a 1508-byte ICMP echo, id 0x8afd, total length 1444.</summary>
    public static readonly byte[] FirstFragmentHeader = Hex("4500 05a4 8afd 2000 40 01 b45d 0af4000b 0af4000c");

    /// <summary>pod-side.pcap frame 49, IPv4 header only: last fragment, offset 1424 bytes (field 0xb2), total length 104, MF clear.</summary>
    public static readonly byte[] LastFragmentHeader = Hex("4500 0068 8afd 00b2 40 01 d8e7 0af4000b 0af4000c");

    /// <summary>pod-side.pcap frame 52: UDP 10.244.0.11:54569 → 10.244.0.12:9999 carrying "x\n" (44 bytes, UDP checksum 0x7598).</summary>
    public static readonly byte[] Udp = Hex(
        "9e9ea07dfc03 3a5c298294d1 0800" +
        "4500 001e 0de9 4000 40 11 16e8 0af4000b 0af4000c" +
        "d529 270f 000a 7598 780a");

    /// <summary>
    /// <see cref="Udp"/> with an 802.1Q tag inserted by hand (TPID 0x8100, TCI 0x2064: PCP 1, DEI 0, VID 100).
    /// </summary>
    public static readonly byte[] UdpTagged = Hex(
        "9e9ea07dfc03 3a5c298294d1 8100 2064 0800" +
        "4500 001e 0de9 4000 40 11 16e8 0af4000b 0af4000c" +
        "d529 270f 000a 7598 780a");

    /// <summary>
    /// pod-side.pcap frame 34: TCP SYN 10.244.0.11:60394 → 10.244.0.12:8080, seq 0xfb4688dc, window 64860, data offset 10,
    /// options MSS 1410, SACK permitted, timestamps 147141503/0, NOP, window scale 10 (74 bytes).
    /// </summary>
    public static readonly byte[] TcpSyn = Hex(
        "9e9ea07dfc03 3a5c298294d1 0800" +
        "4500 003c c4bd 4000 40 06 6000 0af4000b 0af4000c" +
        "ebea 1f90 fb4688dc 00000000 a0 02 fd5c 68f1 0000" +
        "020405820402080a08c5337f000000000103030a");

    /// <summary>
    /// Composed by hand: a router 10.244.0.1 (02:00:00:00:00:01) tells 10.244.0.11 "fragmentation needed, next-hop MTU 1400",
    /// quoting the IPv4 header of pod-side.pcap frame 48 and the first 8 bytes of its payload. Checksums computed with a
    /// separate script (IP 0x64d2, ICMP 0xb90f) and confirmed "correct" by tshark after text2pcap (70 bytes).
    /// </summary>
    public static readonly byte[] FragmentationNeeded = Hex(
        "3a5c298294d1 020000000001 0800" +
        "4500 0038 0000 0000 40 01 64d2 0af40001 0af4000b" +
        "03 04 b90f 0000 0578" +
        "450005a48afd20004001b45d0af4000b0af4000c 08000e17285c0001");

    public static byte[] Filled(int length, byte value = 0xA5)
    {
        byte[] b = new byte[length];
        b.AsSpan().Fill(value);
        return b;
    }

    public static void AssertAllA5(ReadOnlySpan<byte> b)
    {
        int i = b.IndexOfAnyExcept((byte)0xA5);
        Assert.True(i < 0, $"byte {i} after the header was overwritten");
    }
}

internal static class Fixtures
{
    /// <summary>The fixtures directory: <c>tests/fixtures</c> in the repository (the folder holding VSwitch.sln).</summary>
    public static string Directory
    {
        get
        {
            string? dir = AppContext.BaseDirectory;
            while (dir is not null && !File.Exists(Path.Combine(dir, "VSwitch.sln")))
                dir = Path.GetDirectoryName(dir.TrimEnd(Path.DirectorySeparatorChar));
            Assert.True(dir is not null, $"no VSwitch.sln above {AppContext.BaseDirectory}");
            string fixtures = Path.GetFullPath(Path.Combine(dir!, "tests", "fixtures"));
            Assert.True(System.IO.Directory.Exists(fixtures), $"fixtures directory {fixtures} is missing");
            return fixtures;
        }
    }

    public static string PathOf(string name) => Path.Combine(Directory, name);
}

internal static class Tshark
{
    /// <summary>Runs tshark with <paramref name="args"/>; fails the test (not skips) when tshark is missing — it is a declared dependency.</summary>
    public static string Run(params string[] args)
    {
        var psi = new ProcessStartInfo("tshark")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException("Process.Start returned null");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"tshark is required on PATH for interop tests (apt-get install tshark): {e.Message}");
            throw;
        }
        using (p)
        {
            Task<string> stderr = p.StandardError.ReadToEndAsync();
            string stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"tshark exited with {p.ExitCode}: {stderr.Result}");
            return stdout;
        }
    }
}

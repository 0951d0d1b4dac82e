using System.Runtime.InteropServices;

namespace VSwitch.Tap;

/// <summary>
/// A libnftables context held for the switch's lifetime. Tables created through it with <c>flags owner</c> belong to
/// its netlink socket: nobody else may change them, and the kernel deletes them when the process exits for any reason
/// (so a crashed switch never leaves traffic steered into a TAP nobody reads). Commands in one buffer are one atomic
/// transaction. Thread-safe (one lock; the data path never calls it).
/// </summary>
public sealed partial class Nftables : IDisposable
{
    private const string Lib = "libnftables.so.1";
    private readonly Lock _lock = new();
    private nint _ctx;

    private Nftables(nint ctx) => _ctx = ctx;

    /// <summary>Opens a context; a clear <see cref="PortException"/> when libnftables is not installed.</summary>
    public static Nftables Open()
    {
        nint ctx;
        try
        {
            ctx = NftCtxNew(0);
        }
        catch (DllNotFoundException)
        {
            throw new PortException($"{Lib} is not installed: the uplink needs nftables (apt-get install nftables)");
        }
        if (ctx == 0) throw new PortException("nft_ctx_new failed");
        _ = NftCtxBufferOutput(ctx);
        _ = NftCtxBufferError(ctx);
        return new Nftables(ctx);
    }

    /// <summary>Runs <paramref name="commands"/> (nft syntax) as one transaction; returns the output, or throws a
    /// <see cref="PortException"/> carrying nft's own error message.</summary>
    public string Run(string commands)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_ctx == 0, this);
            int rc = NftRunCmdFromBuffer(_ctx, commands);
            string output = Marshal.PtrToStringUTF8(NftCtxGetOutputBuffer(_ctx)) ?? "";
            string error = Marshal.PtrToStringUTF8(NftCtxGetErrorBuffer(_ctx)) ?? "";
            if (rc != 0) throw new PortException($"nftables: {(error.Length > 0 ? error.Trim() : "command failed")}");
            return output;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_ctx == 0) return;
            NftCtxFree(_ctx);
            _ctx = 0;
        }
    }

    [LibraryImport(Lib, EntryPoint = "nft_ctx_new")]
    private static partial nint NftCtxNew(uint flags);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_free")]
    private static partial void NftCtxFree(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_buffer_output")]
    private static partial int NftCtxBufferOutput(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_buffer_error")]
    private static partial int NftCtxBufferError(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_get_output_buffer")]
    private static partial nint NftCtxGetOutputBuffer(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_ctx_get_error_buffer")]
    private static partial nint NftCtxGetErrorBuffer(nint ctx);

    [LibraryImport(Lib, EntryPoint = "nft_run_cmd_from_buffer", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NftRunCmdFromBuffer(nint ctx, string buf);
}

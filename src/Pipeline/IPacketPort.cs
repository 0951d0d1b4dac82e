namespace VSwitch.Pipeline;

/// <summary>Per-port counters, written only by the worker that owns the port.</summary>
public enum PortCounter
{
    [System.ComponentModel.Description("Frames received")] RxPackets,
    [System.ComponentModel.Description("Bytes received")] RxBytes,
    [System.ComponentModel.Description("Frames lost on receive: no free buffer, truncated or read errors")] RxDropped,
    [System.ComponentModel.Description("Receive errors reported by the kernel")] RxErrors,
    [System.ComponentModel.Description("Frames transmitted")] TxPackets,
    [System.ComponentModel.Description("Bytes transmitted")] TxBytes,
    [System.ComponentModel.Description("Frames not transmitted because the kernel queue was full")] TxDropped,
    [System.ComponentModel.Description("Transmit errors reported by the kernel")] TxErrors,
    [System.ComponentModel.Description("Super-frames received: TSO frames from a TAP, TCP segment trains coalesced from the tunnel's UDP GRO")] RxSuperFrames,
    [System.ComponentModel.Description("Super-frames transmitted: TSO frames to a TAP, datagram trains sent with UDP GSO on the tunnel")] TxSuperFrames,
}

/// <summary>
/// A switch port. I/O is batched: one call receives or sends up to a batch of frames, straight into/out of slab slots.
/// </summary>
public interface IPacketPort : IDisposable
{
    /// <summary>Port name as configured (shown by the CLI).</summary>
    string Name { get; }
    /// <summary>Kind shown by the CLI: tap, af-packet, memory.</summary>
    string Kind { get; }
    /// <summary>Kernel interface name, or empty for in-memory ports.</summary>
    string InterfaceName { get; }
    /// <summary>Port id within its switch; set when added.</summary>
    ushort Id { get; set; }
    /// <summary>File descriptor to wait on for readability, or -1 when the port is polled (memory).</summary>
    int PollHandle { get; }
    CounterSet Counters { get; }
    /// <summary>Offloads the port's kernel side was offered and takes (TSO super-frames, partial checksums); frames that
    /// need one the port lacks are finished in software before they reach <see cref="Send"/>.</summary>
    PortOffloads Offloads => PortOffloads.None;
    /// <summary>True when the port holds received data it could not hand over in the last <see cref="Receive"/> (the
    /// batch filled up): the worker calls Receive again without waiting for the descriptor to become readable.</summary>
    bool HasPending => false;

    /// <summary>Receives up to <paramref name="max"/> frames into newly allocated slab slots appended to <paramref name="batch"/>;
    /// sets each packet's Offset, Length and InPort. Returns the number received (0 when none is waiting).</summary>
    int Receive(PacketSlab slab, PacketBatch batch, int max);

    /// <summary>Transmits the frames in <paramref name="slots"/> (the slots stay owned by the caller). Returns the number accepted.</summary>
    int Send(PacketSlab slab, ReadOnlySpan<int> slots);
}

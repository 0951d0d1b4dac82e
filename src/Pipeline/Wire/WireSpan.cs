using System.Runtime.InteropServices;

namespace VSwitch.Pipeline.Wire;

internal static class WireSpan
{
    /// <summary>
    /// Views are over mutable spans; a <c>…Repr.TryParse</c> only reads through its view, so it may look at read-only input
    /// without copying the whole packet. Never write through the result.
    /// </summary>
    public static Span<byte> ForReading(ReadOnlySpan<byte> b) =>
        MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(b), b.Length);
}

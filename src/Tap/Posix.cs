namespace VSwitch.Tap;

/// <summary>Process-wide POSIX settings the control plane needs.</summary>
public static class Posix
{
    private static readonly Lock Gate = new();

    /// <summary>Runs <paramref name="create"/> with the file-creation mask <paramref name="mask"/> (e.g. 0177: files
    /// are created 0600), so a socket or file is never visible with wider permissions, not even for an instant.
    /// The mask is process-wide: only one such section runs at a time.</summary>
    public static T WithUmask<T>(uint mask, Func<T> create)
    {
        lock (Gate)
        {
            uint old = Native.Umask(mask);
            try
            {
                return create();
            }
            finally
            {
                _ = Native.Umask(old);
            }
        }
    }
}

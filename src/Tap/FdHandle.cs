using System.Runtime.InteropServices;

namespace VSwitch.Tap;

/// <summary>A file descriptor owned by a SafeHandle, closed exactly once.</summary>
public sealed class FdHandle : SafeHandle
{
    public FdHandle(int fd) : base(-1, ownsHandle: true)
    {
        SetHandle(fd);
    }

    public FdHandle() : base(-1, ownsHandle: true) { }

    public override bool IsInvalid => handle == -1;

    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => Native.Close((int)handle) == 0;
}

public static class Privileges
{
    public static bool IsRoot => Native.GetEuid() == 0;
}

using System.Runtime.InteropServices;

namespace VSwitch.Tap;

/// <summary>An epoll set (level-triggered) plus an eventfd the control plane writes to wake the worker.</summary>
public sealed unsafe class Epoll : IDisposable
{
    public const ulong WakeToken = ulong.MaxValue;

    private readonly FdHandle _ep;
    private readonly FdHandle _wake;
    private readonly Native.EpollEvent* _events;
    private readonly int _max;

    public Epoll(int maxEvents = 64)
    {
        int ep = Native.EpollCreate1(Native.EPOLL_CLOEXEC);
        if (ep < 0) throw PortException.FromErrno("epoll_create1", Marshal.GetLastPInvokeError());
        _ep = new FdHandle(ep);
        int ev = Native.EventFd(0, Native.EFD_NONBLOCK | Native.EFD_CLOEXEC);
        if (ev < 0) throw PortException.FromErrno("eventfd", Marshal.GetLastPInvokeError());
        _wake = new FdHandle(ev);
        _max = maxEvents;
        _events = (Native.EpollEvent*)NativeMemory.AllocZeroed((nuint)(maxEvents * sizeof(Native.EpollEvent)));
        Add(ev, WakeToken);
    }

    public void Add(int fd, ulong token)
    {
        Native.EpollEvent e = default;
        e.Events = Native.EPOLLIN;
        e.Data = token;
        if (Native.EpollCtl(_ep.Fd, Native.EPOLL_CTL_ADD, fd, &e) < 0)
            throw PortException.FromErrno("epoll_ctl(ADD)", Marshal.GetLastPInvokeError());
    }

    /// <summary>Takes <paramref name="fd"/> out of the set (before it is closed; a descriptor not in it is ignored).</summary>
    public void Remove(int fd)
    {
        Native.EpollEvent e = default;
        _ = Native.EpollCtl(_ep.Fd, Native.EPOLL_CTL_DEL, fd, &e);
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> and writes ready tokens into <paramref name="tokens"/>. The wake token is consumed here.</summary>
    public int Wait(Span<ulong> tokens, int timeoutMs, out bool woken)
    {
        woken = false;
        int n = Native.EpollWait(_ep.Fd, _events, Math.Min(_max, tokens.Length), timeoutMs);
        if (n < 0) return 0; // EINTR
        int k = 0;
        for (int i = 0; i < n; i++)
        {
            ulong t = _events[i].Data;
            if (t == WakeToken)
            {
                ulong v;
                _ = Native.Read(_wake.Fd, (byte*)&v, 8);
                woken = true;
                continue;
            }
            tokens[k++] = t;
        }
        return k;
    }

    /// <summary>Wakes the waiting worker (any thread).</summary>
    public void Wake()
    {
        ulong one = 1;
        _ = Native.Write(_wake.Fd, (byte*)&one, 8);
    }

    public void Dispose()
    {
        _ep.Dispose();
        _wake.Dispose();
        NativeMemory.Free(_events);
    }
}

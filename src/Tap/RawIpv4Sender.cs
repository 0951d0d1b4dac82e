using System.Runtime.InteropServices;
using VSwitch.Pipeline;

namespace VSwitch.Tap;

/// <summary>
/// A raw IPv4 socket (<c>IPPROTO_RAW</c>: the packet carries its own header) with a preallocated <c>sendmmsg</c> vector:
/// <see cref="Add"/> queues packets that stay in their slab slots, <see cref="Flush"/> sends them in one system call per
/// up to 256. The kernel routes each packet by its destination and resolves the next hop. Used by the overlay's send
/// side and by the uplink.
/// </summary>
public sealed unsafe class RawIpv4Sender : IDisposable
{
    public const int MaxBatch = 256;

    private readonly FdHandle _fd;
    private readonly Native.MMsgHdr* _msgs;
    private readonly Native.IoVec* _iov;
    private readonly Native.SockAddrIn* _addr;
    private int _count;
    private bool _disposed;

    private RawIpv4Sender(FdHandle fd)
    {
        _fd = fd;
        _msgs = (Native.MMsgHdr*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.MMsgHdr)));
        _iov = (Native.IoVec*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.IoVec)));
        _addr = (Native.SockAddrIn*)NativeMemory.AllocZeroed((nuint)(MaxBatch * sizeof(Native.SockAddrIn)));
        for (int i = 0; i < MaxBatch; i++)
        {
            _msgs[i].Hdr.Iov = &_iov[i];
            _msgs[i].Hdr.IovLength = 1;
            _msgs[i].Hdr.Name = &_addr[i];
            _msgs[i].Hdr.NameLength = (uint)sizeof(Native.SockAddrIn);
            _addr[i].Family = Native.AF_INET;
        }
    }

    /// <param name="what">Names the socket in errors ("the overlay", "the uplink").</param>
    /// <param name="mark">SO_MARK for every packet (0: none).</param>
    public static RawIpv4Sender Open(string what, int sendBuffer, uint mark = 0)
    {
        int fd = Native.Socket(Native.AF_INET, Native.SOCK_RAW | Native.SOCK_NONBLOCK | Native.SOCK_CLOEXEC, Native.IPPROTO_RAW);
        if (fd < 0) throw PortException.FromErrno($"cannot open {what}'s raw IPv4 socket", Marshal.GetLastPInvokeError());
        var handle = new FdHandle(fd);
        Native.SetBufferSize(fd, send: true, sendBuffer);
        if (mark != 0 && Native.SetSockOpt(fd, Native.SOL_SOCKET, Native.SO_MARK, &mark, sizeof(uint)) < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw PortException.FromErrno($"cannot mark {what}'s raw socket (SO_MARK)", e);
        }
        return new RawIpv4Sender(handle);
    }

    /// <summary>True when <see cref="Flush"/> must run before the next <see cref="Add"/>.</summary>
    public bool IsFull => _count == MaxBatch;

    /// <summary>Queues the IPv4 packet at <paramref name="packet"/> for <paramref name="destination"/> (network order).</summary>
    public void Add(byte* packet, int length, uint destination)
    {
        _iov[_count].Base = packet;
        _iov[_count].Length = (nuint)length;
        _addr[_count].Address = destination;
        _count++;
    }

    /// <summary>Sends what was queued; counts drops and errors in <paramref name="counters"/>, adds the bytes sent to
    /// <paramref name="bytes"/>, returns the packets sent.</summary>
    public int Flush(CounterSet counters, ref long bytes)
    {
        if (_count == 0) return 0;
        int sent = Native.SendBatch(_fd.Fd, _msgs, _iov, _count, counters, ref bytes);
        _count = 0;
        return sent;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _fd.Dispose();
        NativeMemory.Free(_msgs);
        NativeMemory.Free(_iov);
        NativeMemory.Free(_addr);
    }
}

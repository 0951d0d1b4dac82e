using System.Runtime.InteropServices;

namespace VSwitch.Tap;

/// <summary>libc entry points, one <c>LibraryImport</c> each; errors come back as -1 with errno in <see cref="Marshal.GetLastPInvokeError"/>.</summary>
internal static unsafe partial class Native
{
    private const string Libc = "libc";

    public const int O_RDWR = 0x2;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;

    public const int EAGAIN = 11;
    public const int EINTR = 4;
    public const int EPERM = 1;
    public const int EACCES = 13;
    public const int ENOENT = 2;
    public const int ENODEV = 19;
    public const int EBUSY = 16;
    public const int EINVAL = 22;
    public const int ENOBUFS = 105;
    public const int ENETDOWN = 100;
    public const int ENXIO = 6;
    public const int EIO = 5;
    public const int EMSGSIZE = 90;

    public const int AF_PACKET = 17;
    public const int AF_INET = 2;
    public const int SOCK_DGRAM = 2;
    public const int IPPROTO_RAW = 255;
    public const int EADDRINUSE = 98;
    public const int EADDRNOTAVAIL = 99;
    public const int SOCK_RAW = 3;
    public const int SOCK_NONBLOCK = 0x800;
    public const int SOCK_CLOEXEC = 0x80000;
    public const ushort ETH_P_ALL = 0x0003;
    public const int SOL_SOCKET = 1;
    public const int SO_RCVBUF = 8;
    public const int SO_SNDBUF = 7;
    public const int SO_RCVBUFFORCE = 33;
    public const int SO_SNDBUFFORCE = 32;
    public const int SO_MARK = 36;
    public const int SO_REUSEPORT = 15;
    public const int SOL_PACKET = 263;
    public const int PACKET_ADD_MEMBERSHIP = 1;
    public const int PACKET_IGNORE_OUTGOING = 23;
    public const int PACKET_MR_PROMISC = 1;
    public const byte PACKET_OUTGOING = 4;
    public const int MSG_DONTWAIT = 0x40;
    public const int IPPROTO_IP = 0;
    public const int IP_TTL = 2;
    public const int IP_MTU_DISCOVER = 10;
    /// <summary>Never set DF (the kernel vxlan device's default for the outer header).</summary>
    public const int IP_PMTUDISC_DONT = 0;
    public const int SOL_UDP = 17;
    /// <summary>UDP GSO: a control message (u16) gives the size each datagram of a train is cut to.</summary>
    public const int UDP_SEGMENT = 103;
    /// <summary>UDP GRO: a train of datagrams of one flow may be read at once; a control message (int) gives their size.</summary>
    public const int UDP_GRO = 104;
    public const int MSG_TRUNC = 0x20;

    public const int PACKET_RX_RING = 5;
    public const int PACKET_STATISTICS = 6;
    public const int PACKET_VERSION = 10;
    public const int PACKET_COPY_THRESH = 7;
    public const int PACKET_VNET_HDR = 15;
    public const int TPACKET_V2 = 1;
    public const uint TP_STATUS_KERNEL = 0;
    public const uint TP_STATUS_USER = 0x1;
    public const uint TP_STATUS_COPY = 0x2;
    public const uint TP_STATUS_LOSING = 0x4;
    public const uint TP_STATUS_VLAN_VALID = 0x10;
    public const uint TP_STATUS_VLAN_TPID_VALID = 0x40;
    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x01;

    public const ulong TUNSETIFF = 0x400454ca;
    public const ulong TUNGETIFF = 0x800454d2;
    /// <summary>_IOW('T', 203, int): keep (1) or drop (0) the device when the last descriptor closes.</summary>
    public const ulong TUNSETPERSIST = 0x400454cb;
    public const int O_RDONLY = 0x0;
    public const int CLONE_NEWNET = 0x40000000;
    public const short IFF_TAP = 0x0002;
    public const short IFF_NO_PI = 0x1000;
    public const short IFF_MULTI_QUEUE = 0x0100;
    /// <summary>Each frame read or written is preceded by a struct virtio_net_hdr (offloads).</summary>
    public const short IFF_VNET_HDR = 0x4000;
    /// <summary>_IOW('T', 208, unsigned int): which offloads this reader takes (the argument is the value, not a pointer).</summary>
    public const ulong TUNSETOFFLOAD = 0x400454d0;
    /// <summary>_IOW('T', 216, int): the size of the virtio-net header (the argument points to it).</summary>
    public const ulong TUNSETVNETHDRSZ = 0x400454d8;
    public const uint TUN_F_CSUM = 0x01;
    public const uint TUN_F_TSO4 = 0x02;
    public const uint TUN_F_TSO6 = 0x04;

    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const uint EPOLLIN = 0x001;
    public const int EFD_NONBLOCK = 0x800;
    public const int EFD_CLOEXEC = 0x80000;

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "setns", SetLastError = true)]
    public static partial int Setns(int fd, int nstype);

    [LibraryImport(Libc, EntryPoint = "umask")]
    public static partial uint Umask(uint mask);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buf, nint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buf, nint count);

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, ulong request, void* arg);

    [LibraryImport(Libc, EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Libc, EntryPoint = "bind", SetLastError = true)]
    public static partial int Bind(int fd, void* addr, int addrlen);

    [LibraryImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    public static partial int SetSockOpt(int fd, int level, int name, void* value, int len);

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    public static partial int GetSockOpt(int fd, int level, int name, void* value, int* len);

    [LibraryImport(Libc, EntryPoint = "mmap", SetLastError = true)]
    public static partial void* Mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport(Libc, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(void* addr, nuint length);

    [LibraryImport(Libc, EntryPoint = "recvmmsg", SetLastError = true)]
    public static partial int RecvMmsg(int fd, MMsgHdr* msgs, uint vlen, int flags, void* timeout);

    [LibraryImport(Libc, EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint SendMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport(Libc, EntryPoint = "getsockname", SetLastError = true)]
    public static partial int GetSockName(int fd, void* addr, int* addrlen);

    [LibraryImport(Libc, EntryPoint = "sendmmsg", SetLastError = true)]
    public static partial int SendMmsg(int fd, MMsgHdr* msgs, uint vlen, int flags);

    [LibraryImport(Libc, EntryPoint = "if_nametoindex", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial uint IfNameToIndex(string name);

    [LibraryImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int EpollCreate1(int flags);

    [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    public static partial int EpollCtl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    public static partial int EpollWait(int epfd, EpollEvent* events, int maxevents, int timeout);

    [LibraryImport(Libc, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initval, int flags);

    [LibraryImport(Libc, EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    [LibraryImport(Libc, EntryPoint = "strerror")]
    private static partial nint StrError(int errnum);

    public static string ErrorText(int errno) => Marshal.PtrToStringUTF8(StrError(errno)) ?? $"errno {errno}";

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MMsgHdr
    {
        public MsgHdr Hdr;
        public uint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrLl
    {
        public ushort Family;
        public ushort Protocol; // network order
        public int IfIndex;
        public ushort HaType;
        public byte PktType;
        public byte HaLength;
        public fixed byte Address[8];
    }

    /// <summary>struct sockaddr_in (16 bytes); port and address in network order.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrIn
    {
        public ushort Family;
        public ushort Port;
        public uint Address;
        public ulong Zero;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PacketMreq
    {
        public int IfIndex;
        public ushort Type;
        public ushort AddressLength;
        public fixed byte Address[8];
    }

    /// <summary>struct tpacket_req: the geometry of a PACKET_RX_RING.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TPacketReq
    {
        public uint BlockSize;
        public uint BlockCount;
        public uint FrameSize;
        public uint FrameCount;
    }

    /// <summary>struct tpacket2_hdr (32 bytes) at the start of each TPACKET_V2 ring frame; sockaddr_ll follows it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TPacket2Hdr
    {
        public uint Status;
        public uint Length;
        public uint SnapLength;
        public ushort Mac;
        public ushort Net;
        public uint Sec;
        public uint Nsec;
        public ushort VlanTci;
        public ushort VlanTpid;
        public uint Padding;
    }

    /// <summary>struct tpacket_stats; reading it (PACKET_STATISTICS) resets it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TPacketStats
    {
        public uint Packets;
        public uint Drops;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct CMsgHdr
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    /// <summary>Sets a socket buffer size past <c>net.core.[rw]mem_max</c> (SO_*BUFFORCE, root), else as far as the limit
    /// allows. Never fails: a smaller buffer only means earlier drops under load.</summary>
    public static void SetBufferSize(int fd, bool send, int bytes)
    {
        if (SetSockOpt(fd, SOL_SOCKET, send ? SO_SNDBUFFORCE : SO_RCVBUFFORCE, &bytes, sizeof(int)) < 0)
            _ = SetSockOpt(fd, SOL_SOCKET, send ? SO_SNDBUF : SO_RCVBUF, &bytes, sizeof(int));
    }

    /// <summary>CMSG_SPACE(<paramref name="dataSize"/>): room one control message takes (64-bit alignment).</summary>
    public static int ControlSpace(int dataSize) => sizeof(CMsgHdr) + ((dataSize + 7) & ~7);

    /// <summary>The data of the first control message of <paramref name="level"/>/<paramref name="type"/> with at least
    /// <paramref name="minData"/> bytes in the ancillary data the kernel returned with <paramref name="h"/>, or null.</summary>
    public static byte* FindControl(ref MsgHdr h, int level, int type, int minData)
    {
        if (h.Control == null || h.ControlLength < (nuint)sizeof(CMsgHdr)) return null;
        byte* c = (byte*)h.Control;
        byte* end = c + h.ControlLength;
        while (c + sizeof(CMsgHdr) <= end)
        {
            var cm = (CMsgHdr*)c;
            if (cm->Length < (nuint)sizeof(CMsgHdr) || c + cm->Length > end) return null;
            if (cm->Level == level && cm->Type == type && cm->Length >= (nuint)(sizeof(CMsgHdr) + minData)) return c + sizeof(CMsgHdr);
            c += (cm->Length + 7) & ~(nuint)7;
        }
        return null;
    }

    /// <summary>struct epoll_event is packed on x86-64 (12 bytes).</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct IfReq
    {
        public fixed byte Name[16];
        public short Flags;
        public fixed byte Pad[22];
    }

    public static ushort HostToNetwork(ushort v) => (ushort)((v >> 8) | (v << 8));

    /// <summary>
    /// Sends <paramref name="n"/> prepared messages with <c>sendmmsg</c> until all are sent or the kernel queue is full.
    /// A full queue counts the rest as tx-dropped; a message the kernel refuses (too big, no route) counts one tx-error
    /// and the rest still go. Adds the bytes sent to <paramref name="bytes"/>; returns the messages sent.
    /// </summary>
    public static int SendBatch(int fd, MMsgHdr* msgs, IoVec* iov, int n, Pipeline.CounterSet counters, ref long bytes)
    {
        int done = 0, sent = 0;
        while (done < n)
        {
            int r = SendMmsg(fd, msgs + done, (uint)(n - done), MSG_DONTWAIT);
            if (r < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                if (e == EINTR) continue;
                if (e is EAGAIN or ENOBUFS)
                {
                    counters.Add((int)Pipeline.PortCounter.TxDropped, n - done);
                    break;
                }
                counters.Add((int)Pipeline.PortCounter.TxErrors);
                done++;
                continue;
            }
            for (int i = done; i < done + r; i++) bytes += (long)iov[i].Length;
            done += r;
            sent += r;
        }
        return sent;
    }
}

/// <summary>An error from a system call or setup step, with a message meant for the operator.</summary>
public sealed class PortException : Exception
{
    public PortException(string message, int errno = 0) : base(message)
    {
        Errno = errno;
    }

    public PortException() { }
    public PortException(string message) : base(message) { }
    public PortException(string message, Exception inner) : base(message, inner) { }

    public int Errno { get; }

    internal static PortException FromErrno(string what, int errno)
    {
        string hint = errno is Native.EPERM or Native.EACCES
            ? " (needs root or CAP_NET_ADMIN/CAP_NET_RAW)"
            : "";
        return new PortException($"{what}: {Native.ErrorText(errno)}{hint}", errno);
    }
}

using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace VSwitch.Switch.Control;

/// <summary>
/// The local control socket: a Unix stream socket readable by root only (directory 0700, socket 0600). One request per
/// connection: a line "command args…", answered by "ok" or "error: message" on the first line and the body after it.
/// </summary>
public sealed partial class ControlServer : IDisposable
{
    private readonly string _path;
    private readonly ControlHandler _handler;
    private readonly ILogger _log;
    private Socket? _listener;
    private Thread? _thread;
    private volatile bool _stopping;

    public ControlServer(string path, ControlHandler handler, ILogger log)
    {
        _path = path;
        _handler = handler;
        _log = log;
    }

    public void Start()
    {
        string dir = Path.GetDirectoryName(_path)!;
        Directory.CreateDirectory(dir);
        if (File.Exists(_path))
        {
            if (IsAlive(_path)) throw new Tap.PortException($"another vswitch is already serving control socket {_path}");
            File.Delete(_path); // stale, from a process that died
        }
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Bind(new UnixDomainSocketEndPoint(_path));
            File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            s.Listen(16);
        }
        catch (SocketException e)
        {
            s.Dispose();
            throw new Tap.PortException($"cannot listen on control socket {_path}: {e.Message}");
        }
        _listener = s;
        _thread = new Thread(AcceptLoop) { IsBackground = true, Name = "vswitch-control" };
        _thread.Start();
    }

    private static bool IsAlive(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private void AcceptLoop()
    {
        while (!_stopping)
        {
            Socket c;
            try
            {
                c = _listener!.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (_stopping) return;
                continue;
            }
            ThreadPool.UnsafeQueueUserWorkItem(static state => state.Self.Serve(state.Client), (Self: this, Client: c), preferLocal: false);
        }
    }

    private void Serve(Socket c)
    {
        using (c)
        {
            try
            {
                c.ReceiveTimeout = 5000;
                c.SendTimeout = 5000;
                using var stream = new NetworkStream(c, ownsSocket: false);
                using var reader = new StreamReader(stream, Encoding.UTF8, false, 1024, leaveOpen: true);
                string? line = reader.ReadLine();
                string response;
                if (line is null || line.Length > 4096) response = "error: empty or oversized request\n";
                else
                {
                    string[] args = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    try
                    {
                        response = "ok\n" + _handler.Handle(args);
                    }
                    catch (ControlException e)
                    {
                        response = $"error: {e.Message}\n";
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        // A failing command must never take the data plane down with it.
                        LogCommandFailed(line, e.ToString());
                        response = $"error: internal error running '{line}': {e.GetBaseException().Message}\n";
                    }
                }
                byte[] bytes = Encoding.UTF8.GetBytes(response);
                stream.Write(bytes);
            }
            catch (Exception e) when (e is IOException or SocketException or TimeoutException)
            {
                LogClientFailed(e.Message);
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _listener?.Dispose();
        try
        {
            if (File.Exists(_path)) File.Delete(_path);
        }
        catch (IOException) { }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "control command '{Command}' failed: {Error}")]
    private partial void LogCommandFailed(string command, string error);

    [LoggerMessage(Level = LogLevel.Debug, Message = "control client failed: {Error}")]
    private partial void LogClientFailed(string error);
}

public sealed class ControlException : Exception
{
    public ControlException(string message) : base(message) { }
    public ControlException() { }
    public ControlException(string message, Exception inner) : base(message, inner) { }
}

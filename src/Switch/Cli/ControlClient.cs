using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using VSwitch.Switch.Control;

namespace VSwitch.Switch.Cli;

/// <summary>The switch is not reachable on its control socket (exit code 4).</summary>
public sealed class UnreachableException : Exception
{
    public UnreachableException(string message) : base(message) { }
    public UnreachableException() { }
    public UnreachableException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// A client of the control API over the switch's Unix socket: HTTP/1.1 requests to <c>http://localhost/v1/...</c>,
/// as <c>curl --unix-socket</c> sends them. Errors the switch answers (a Kubernetes <c>Status</c>) become
/// <see cref="ApiException"/>s; a socket nobody serves becomes <see cref="UnreachableException"/>.
/// </summary>
public sealed class ControlClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly string _socket;

    public ControlClient(string socketPath, TimeSpan? timeout = null)
    {
        _socket = socketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct).ConfigureAwait(false);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        _http = new HttpClient(handler) { BaseAddress = new Uri("http://localhost"), Timeout = timeout ?? TimeSpan.FromSeconds(30) };
    }

    /// <summary>Sends a request and returns the body of a successful answer (JSON, or text for metrics).</summary>
    public string Send(HttpMethod method, string path, string? body = null, string contentType = "application/json")
    {
        using var req = new HttpRequestMessage(method, path);
        if (body is not null) req.Content = new StringContent(body, Encoding.UTF8, new MediaTypeHeaderValue(contentType));
        HttpResponseMessage resp;
        try
        {
            resp = _http.Send(req);
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException se)
        {
            throw new UnreachableException(Why(se));
        }
        catch (HttpRequestException e)
        {
            throw new UnreachableException(e.Message);
        }
        catch (TaskCanceledException)
        {
            throw new ApiException(504, "Timeout", $"no answer from {_socket} within {_http.Timeout.TotalSeconds:F0} s");
        }
        using (resp)
        {
            string answer = resp.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            if (resp.IsSuccessStatusCode) return answer;
            ApiStatus? status = null;
            try
            {
                status = JsonSerializer.Deserialize<ApiStatus>(answer, ApiJson.Options);
            }
            catch (JsonException)
            {
            }
            throw status is { Message: not null }
                ? new ApiException(status.Code, status.Reason, status.Message)
                : new ApiException((int)resp.StatusCode, resp.StatusCode.ToString(), $"HTTP {(int)resp.StatusCode}: {answer.Trim()}");
        }
    }

    public T Get<T>(string path) => Parse<T>(Send(HttpMethod.Get, path));

    public static T Parse<T>(string json) => JsonSerializer.Deserialize<T>(json, ApiJson.Options)
        ?? throw new ApiException(502, "BadGateway", "the switch answered with an empty body");

    private string Why(SocketException e)
    {
        string why = e.SocketErrorCode switch
        {
            SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported => "no such socket",
            SocketError.ConnectionRefused => "nothing is listening (stale socket?)",
            SocketError.AccessDenied => "permission denied (the control socket is root-only)",
            _ => e.Message,
        };
        if (e.SocketErrorCode != SocketError.AccessDenied && !File.Exists(_socket)) why = "no such socket";
        return $"cannot reach the switch at {_socket}: {why}. Is 'vswitch run' running? (--socket or VSWITCH_SOCKET select another)";
    }

    public void Dispose() => _http.Dispose();
}

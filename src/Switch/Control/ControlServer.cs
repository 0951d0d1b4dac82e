using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace VSwitch.Switch.Control;

/// <summary>
/// The control API: HTTP/1.1 + JSON under <c>/v1/</c> on a root-only Unix socket (its directory 0700, the socket 0600 from
/// the moment it exists), served by Kestrel. Optionally a second, plain-HTTP TCP listener (config <c>metrics.listen</c>)
/// serves <c>/metrics</c> (Prometheus text), <c>/healthz</c> and <c>/readyz</c>, as kube-proxy and Cilium do.
/// Errors are Kubernetes <c>Status</c> objects with the HTTP code, a reason and a message.
/// </summary>
public sealed partial class ControlServer : IDisposable
{
    /// <summary>Largest request body the API takes (a port spec, a Service manifest).</summary>
    public const long MaxBodyBytes = 4 << 20;

    private readonly string _path;
    private readonly ControlService _service;
    private readonly ILogger _log;
    private readonly string? _metricsListen;
    private WebApplication? _app;
    private WebApplication? _metrics;

    public ControlServer(string path, ControlService service, ILogger log, string? metricsListen = null)
    {
        _path = path;
        _service = service;
        _log = log;
        _metricsListen = metricsListen;
    }

    /// <summary>True once the workers run and the initial state is loaded (<c>/readyz</c>).</summary>
    public Func<bool> Ready { get; set; } = () => true;
    /// <summary>Why the node is degraded (the cluster store unreachable), or null.</summary>
    public Func<string?> Degraded { get; set; } = () => null;

    /// <summary>Null when healthy, else why not (<c>/healthz</c>).</summary>
    public Func<string?> Unhealthy { get; set; } = () => null;

    public void Start()
    {
        string dir = Path.GetDirectoryName(_path)!;
        const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        if (!Directory.Exists(dir)) Directory.CreateDirectory(dir, Private);
        if (File.Exists(_path))
        {
            if (IsAlive(_path)) throw new Tap.PortException($"another vswitch is already serving control socket {_path}");
            File.Delete(_path); // stale, from a process that died
        }
        WebApplication app = Build(o => o.ListenUnixSocket(_path));
        MapApi(app);
        try
        {
            // The socket is created 0600 (umask 0177): no window in which anyone else may connect.
            Tap.Posix.WithUmask(0b001_111_111, () =>
            {
                app.StartAsync().GetAwaiter().GetResult();
                return 0;
            });
        }
        catch (Exception e) when (e is IOException or SocketException or InvalidOperationException)
        {
            app.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw new Tap.PortException($"cannot listen on control socket {_path}: {e.GetBaseException().Message}");
        }
        _app = app;
        if (_metricsListen is { } listen)
        {
            if (!IPEndPoint.TryParse(listen, out IPEndPoint? ep) || ep.Port == 0)
                throw new Tap.PortException($"metrics.listen: '{listen}' is not an address:port");
            WebApplication m = Build(o => o.Listen(ep));
            MapProbes(m);
            try
            {
                m.StartAsync().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is IOException or SocketException or InvalidOperationException)
            {
                m.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw new Tap.PortException($"metrics.listen: cannot listen on {listen}: {e.GetBaseException().Message}");
            }
            _metrics = m;
        }
    }

    private static WebApplication Build(Action<KestrelServerOptions> listen)
    {
        WebApplicationBuilder b = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "vswitch", ContentRootPath = AppContext.BaseDirectory });
        b.Logging.ClearProviders();
        b.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        b.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        b.Logging.SetMinimumLevel(LogLevel.Warning);
        b.WebHost.ConfigureKestrel(o =>
        {
            o.AddServerHeader = false;
            o.Limits.MaxRequestBodySize = MaxBodyBytes;
            o.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            o.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(5);
            o.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(30);
            listen(o);
        });
        b.Services.Configure<Microsoft.AspNetCore.Http.Json.JsonOptions>(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = ApiJson.Options.PropertyNamingPolicy;
            o.SerializerOptions.DefaultIgnoreCondition = ApiJson.Options.DefaultIgnoreCondition;
            o.SerializerOptions.WriteIndented = true;
        });
        return b.Build();
    }

    private void MapProbes(IEndpointRouteBuilder app)
    {
        app.MapGet("/metrics", () => Run(() => Results.Text(_service.MetricsText(), "text/plain; version=0.0.4; charset=utf-8")));
        app.MapGet("/healthz", () => Unhealthy() is { } why ? Results.Text(why + "\n", "text/plain", statusCode: 503) : Results.Text("ok\n", "text/plain"));
        app.MapGet("/readyz", () => !Ready() ? Results.Text("not ready\n", "text/plain", statusCode: 503)
            : Degraded() is { } why ? Results.Text($"degraded: {why}\n", "text/plain", statusCode: 503)
            : Results.Text("ok\n", "text/plain"));
    }

    private void MapApi(WebApplication app)
    {
        MapProbes(app);
        ControlService s = _service;
        RouteGroupBuilder v1 = app.MapGroup("/v1");
        v1.MapGet("/status", () => Run(s.Status));
        v1.MapGet("/ports", () => Run(s.Ports));
        v1.MapGet("/ports/{name}", (string name) => Run(() => s.Port(name)));
        v1.MapPost("/ports", async (HttpRequest req) =>
        {
            PortSpec? spec;
            try
            {
                spec = await Body<PortSpec>(req).ConfigureAwait(false);
            }
            catch (ApiException e)
            {
                return Error(e);
            }
            return await RunAsync(() => s.Host.AddPortAsync(spec!), created: true).ConfigureAwait(false);
        });
        v1.MapDelete("/ports/{name}", (string name) => RunAsync(() => s.Host.RemovePortAsync(name)));
        v1.MapGet("/mac", () => Run(s.Macs));
        v1.MapGet("/routes", () => Run(s.Routes));
        v1.MapGet("/neighbors", () => Run(s.Neighbors));
        v1.MapGet("/peers", () => Run(s.Peers));
        v1.MapPost("/peers", async (HttpRequest req) =>
        {
            PeerSpec spec;
            try
            {
                spec = await Body<PeerSpec>(req).ConfigureAwait(false);
            }
            catch (ApiException e)
            {
                return Error(e);
            }
            return await RunAsync(() => s.Host.AddPeerAsync(spec), created: true).ConfigureAwait(false);
        });
        v1.MapPut("/peers/{name}", async (string name, HttpRequest req) =>
        {
            PeerSpec spec;
            try
            {
                spec = await Body<PeerSpec>(req).ConfigureAwait(false);
            }
            catch (ApiException e)
            {
                return Error(e);
            }
            return await RunAsync(() => s.Host.UpdatePeerAsync(name, spec)).ConfigureAwait(false);
        });
        v1.MapDelete("/peers/{name}", (string name) => RunAsync(() => s.Host.RemovePeerAsync(name)));
        v1.MapGet("/conntrack", (HttpRequest req) => Run(() => s.Connections(IntQuery(req, "max", 1000, 1, 10_000_000))));
        v1.MapGet("/services", () => Run(s.Services));
        v1.MapPost("/services/reload", () => Run(s.Reload));
        // A manifest (YAML or JSON) with any number of Service and EndpointSlice objects, as kubectl apply takes.
        v1.MapPut("/services", async (HttpRequest req) =>
        {
            (string? text, ApiException? error) = await TextBody(req).ConfigureAwait(false);
            return error is null ? Run(() => s.ApplyServices(text!)) : Error(error);
        });
        v1.MapDelete("/services/{ns}/{name}", (string ns, string name) => Run(() => s.DeleteServiceObject("Service", ns, name)));
        v1.MapDelete("/endpointslices/{ns}/{name}", (string ns, string name) => Run(() => s.DeleteServiceObject("EndpointSlice", ns, name)));
        v1.MapGet("/uplink", () => Run(s.Uplink));
        v1.MapGet("/counters", () => Run(s.Counters));
        v1.MapGet("/graph", () => Run(s.Graph));
        v1.MapGet("/metrics", () => Run(() => Results.Text(s.MetricsText(), "text/plain; version=0.0.4; charset=utf-8")));
        v1.MapGet("/trace", (HttpRequest req) => Run(() => s.Trace(IntQuery(req, "last", 10, 1, 100_000))));
        v1.MapPost("/trace", async (HttpRequest req) =>
        {
            try
            {
                TraceRequest? t = await Body<TraceRequest>(req).ConfigureAwait(false);
                return Run(() => s.TraceAdd(t!.Count));
            }
            catch (ApiException e)
            {
                return Error(e);
            }
        });
        v1.MapDelete("/trace", () => Run(s.TraceClear));
        // Anything else: a Status, never an HTML page or an empty 404.
        v1.MapGet("/cluster", () => Run(s.ClusterStatus));
        // kubectl apply's job: a manifest (YAML or JSON, any number of objects of the kinds the store keeps).
        v1.MapPost("/objects", async (HttpRequest req) =>
        {
            (string? text, ApiException? error) = await TextBody(req).ConfigureAwait(false);
            return error is null ? await RunAsync(() => s.ApplyObjectsAsync(text!)).ConfigureAwait(false) : Error(error);
        });
        v1.MapGet("/objects/{resource}", (string resource, HttpRequest req) =>
            RunText(() => s.GetObjectsAsync(resource, null, req.Query["namespace"])));
        v1.MapGet("/objects/{resource}/{name}", (string resource, string name, HttpRequest req) =>
            RunText(() => s.GetObjectsAsync(resource, name, req.Query["namespace"])));
        v1.MapDelete("/objects/{resource}/{name}", (string resource, string name, HttpRequest req) =>
            RunAsync(() => s.DeleteObjectAsync(resource, name, req.Query["namespace"],
                req.Query["resourceVersion"] is { Count: > 0 } rv ? (long.TryParse(rv, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v : throw ApiException.BadRequest($"resourceVersion: '{rv}' is not a number")) : null)));
        app.MapFallback((HttpContext ctx) => Error(ApiException.NotFound($"no resource {ctx.Request.Method} {ctx.Request.Path}")));
        app.Use(async (ctx, next) =>
        {
            await next(ctx).ConfigureAwait(false);
            if (ctx.Response.StatusCode == 405 && !ctx.Response.HasStarted)
                await Error(new ApiException(405, "MethodNotAllowed", $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}")).ExecuteAsync(ctx).ConfigureAwait(false);
        });
    }

    private static int IntQuery(HttpRequest req, string name, int dflt, int min, int max)
    {
        string? v = req.Query[name];
        if (v is null) return dflt;
        return int.TryParse(v, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n >= min && n <= max
            ? n
            : throw ApiException.BadRequest($"{name}: '{v}' is not a number between {min} and {max}");
    }

    private static async Task<T> Body<T>(HttpRequest req) where T : class
    {
        try
        {
            T? value = await JsonSerializer.DeserializeAsync<T>(req.Body, ApiJson.Options).ConfigureAwait(false);
            return value ?? throw ApiException.BadRequest("the request body is empty (a JSON object is expected)");
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not a valid {typeof(T).Name}: {e.Message}");
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
        {
            throw new ApiException(e.StatusCode, e.StatusCode == 413 ? "RequestEntityTooLarge" : "BadRequest", e.Message);
        }
    }

    internal static IResult Error(ApiException e) =>
        Results.Json(new ApiStatus { Message = e.Message, Reason = e.Reason, Code = e.Code }, ApiJson.Options, statusCode: e.Code);

    private IResult Run<T>(Func<T> f)
    {
        try
        {
            T value = f();
            return value is IResult r ? r : Results.Json(value, ApiJson.Options);
        }
        catch (ApiException e)
        {
            return Error(e);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A failing request must never take the data plane down with it.
            LogRequestFailed(e.ToString());
            return Error(new ApiException(500, "InternalError", $"internal error: {e.GetBaseException().Message}"));
        }
    }

    private async Task<IResult> RunAsync<T>(Func<Task<T>> f, bool created = false)
    {
        try
        {
            T value = await f().ConfigureAwait(false);
            return Results.Json(value, ApiJson.Options, statusCode: created ? 201 : 200);
        }
        catch (ApiException e)
        {
            return Error(e);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            LogRequestFailed(e.ToString());
            return Error(new ApiException(500, "InternalError", $"internal error: {e.GetBaseException().Message}"));
        }
    }

    /// <summary>A request body as text (a manifest), or the error that reading it gave (too large, cut short).</summary>
    private static async Task<(string? Text, ApiException? Error)> TextBody(HttpRequest req)
    {
        try
        {
            using var reader = new StreamReader(req.Body);
            return (await reader.ReadToEndAsync().ConfigureAwait(false), null);
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
        {
            return (null, new ApiException(e.StatusCode, e.StatusCode == 413 ? "RequestEntityTooLarge" : "BadRequest", e.Message));
        }
    }

    /// <summary>A request whose answer is JSON text already (Kubernetes objects, serialized by their own library).</summary>
    private async Task<IResult> RunText(Func<Task<string>> f)
    {
        try
        {
            return Results.Text(await f().ConfigureAwait(false), "application/json");
        }
        catch (ApiException e)
        {
            return Error(e);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            LogRequestFailed(e.ToString());
            return Error(new ApiException(500, "InternalError", $"internal error: {e.GetBaseException().Message}"));
        }
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

    public void Dispose()
    {
        foreach (WebApplication? a in new[] { _metrics, _app })
        {
            if (a is null) continue;
            try
            {
                a.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(2)).Token).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException) { }
            a.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        _app = _metrics = null;
        try
        {
            if (File.Exists(_path)) File.Delete(_path);
        }
        catch (IOException) { }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "control request failed: {Error}")]
    private partial void LogRequestFailed(string error);
}

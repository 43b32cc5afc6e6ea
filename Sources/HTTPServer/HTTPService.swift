#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Event
import Gzip
import HTTP
import ShmTable
import TLS

/// What a location's content handler prepared for it when the worker started (a `proxy_pass` location's
/// balancer and header templates), kept with the location's settings.
public protocol LocationState: AnyObject {}

/// What the request path needs of a server or location, resolved once per worker: its merged settings,
/// held in a class so that requests borrow them in place (reading them through Config's classes copied the
/// whole, large, struct on every access), and what its content handler prepared.
public final class SettingsScope {
    public let settings: HTTPSettings
    public internal(set) var handlerState: LocationState?
    init(_ settings: HTTPSettings) { self.settings = settings }

    /// How request heads are read here (large_client_header_buffers, merge_slashes, ignore_invalid_headers,
    /// underscores_in_headers), each setting read in place: a copy of the core settings would retain every
    /// array and string in them. `maxHeadLength` replaces the buffers' count × size.
    func requestRules(maxHeadLength: Int? = nil) -> RequestRules {
        let large = settings.core.largeClientHeaderBuffers
        return RequestRules(maxLineLength: large.size, maxHeadLength: maxHeadLength ?? large.count * large.size,
                            mergeSlashes: settings.core.mergeSlashes, ignoreInvalidHeaders: settings.core.ignoreInvalidHeaders,
                            underscoresInHeaders: settings.core.underscoresInHeaders)
    }
}

/// A content handler another layer provides (`proxy_pass`, from HTTPProxy): it answers requests through
/// their response sink, at once or later from its own events.
public protocol RequestHandler: AnyObject {
    func handle(_ r: RequestContext)
    /// Whether a request routed here reads its body as it streams in (`proxy_request_buffering off`) rather
    /// than whole before the handler runs.
    func streamsBody(_ r: RequestContext) -> Bool
}

/// The HTTP side of one worker: the configuration's servers and locations as the request path reads them,
/// the router, the pipeline, the worker's buffer pools, gzip streams, logs and counters. Connections and
/// requests reach the worker through this and nothing else; it knows nothing of the process around it.
public final class HTTPService {
    public let config: Configuration
    public let loop: EventLoop
    public let log: ErrorLog
    public let counters: SharedCounters
    /// The configuration's TLS contexts, built by the master before it forked this worker.
    public let tls: TLSBundle
    /// The shared segment: check verdicts and admin states (check_status, the status location's writes).
    public let segment: Segment
    public let router: Router
    public private(set) var pipeline: RequestPipeline!
    public let accessLogs: RequestLogFiles
    /// Connection and upstream byte buffers kept for the next request.
    public let buffers = BufferPools()
    /// The header blocks and field lists of finished requests, for the parser to fill again. They come back
    /// while their request still holds them, so they are emptied when taken (then their only reference).
    var headBlocks = ArrayPool<UInt8>(keep: 32, maxCapacity: 4096)
    var fieldLists = ArrayPool<HeaderField>(keep: 32, maxCapacity: 64)
    /// Deflate streams of finished gzip responses, reset for the next.
    public let gzipStreams = GzipPool()
    /// The Authorization headers auth_basic let in, with the password files they matched.
    var credentials = CredentialCache()
    /// The limit_req and limit_conn zones, by their index in the configuration's `limitZones`.
    let limitZones: [LimitZoneUse]
    /// The `*_cache_path` keys zones, by their index in the configuration's `cacheZones`.
    public let cacheZones: [CacheZone]
    /// `proxy_pass` locations' handler (HTTPProxy attaches itself).
    public var proxyHandler: RequestHandler?
    /// Per server and location.
    private var scopes: [ObjectIdentifier: SettingsScope] = [:]
    /// For a connection whose address has no server block (nginx then uses the http block's settings).
    public let httpScope: SettingsScope
    public let hostname: String = {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(cString: buf)
    }()
    /// Names of temporary body files: a sequence from a start no other worker shares.
    var tempFileSerial = UInt64(getpid()) &* 100_000

    /// Set by the process around it: a graceful stop began (no new keep-alive promises), and its grace
    /// period for idle keep-alive connections is over (one that falls idle closes at once).
    public var isShuttingDown = false
    public var idleGraceOver = false
    /// Hears every connection close (the worker's connection set).
    public var connectionClosed: ((ClientConnection) -> Void)?
    /// Hears a connection change protocol (HTTP/1 to HTTP/2 on the same socket).
    public var connectionReplaced: ((ClientConnection) -> Void)?
    /// What every HTTP/2 connection of the worker reads into (nginx's http2_recv_buffer_size, one per
    /// worker): the frame reader takes all of it at once, so a connection holds no input buffer of its own.
    private var h2InputBuffer: ByteBuffer?
    func h2Input(_ size: Int) -> ByteBuffer {
        if let b = h2InputBuffer { return b }
        let b = ByteBuffer(capacity: size)
        h2InputBuffer = b
        return b
    }

    public init(config: Configuration, loop: EventLoop, log: ErrorLog, counters: SharedCounters, tls: TLSBundle, segment: Segment,
                accessLogs: RequestLogFiles, zones: SharedZones = SharedZones()) {
        precondition(zones.limits.count == config.limitZones.count && zones.caches.count == config.cacheZones.count,
                     "the master maps every shared zone before it forks")
        self.config = config
        self.loop = loop
        self.log = log
        self.counters = counters
        self.tls = tls
        self.segment = segment
        router = Router(config: config)
        self.accessLogs = accessLogs
        self.limitZones = zip(zones.limits, config.limitZones).map { LimitZoneUse(zone: $0, spec: $1) }
        cacheZones = zones.caches
        httpScope = SettingsScope(config.http?.settings ?? HTTPSettings())
        func add(_ locations: [Location]) {
            for loc in locations {
                scopes[ObjectIdentifier(loc)] = SettingsScope(loc.settings)
                add(loc.configured)
            }
        }
        for server in config.http?.servers ?? [] {
            scopes[ObjectIdentifier(server)] = SettingsScope(server.settings)
            add(server.locations)
        }
        pipeline = RequestPipeline(service: self)
    }

    /// The settings a request in `location` (or, without one, in `server`) runs with.
    public func scope(server: Server, location: Location?) -> SettingsScope {
        scopes[ObjectIdentifier(location ?? server)] ?? httpScope
    }

    /// Attaches what a content handler prepared for `location`.
    public func attach(_ state: LocationState, to location: Location) {
        scopes[ObjectIdentifier(location)]?.handlerState = state
    }

    /// The settings a connection reads request heads with before the Host header is known: the default
    /// server's for its address (client_header_buffer_size, large_client_header_buffers and
    /// client_header_timeout may be set per server).
    func defaultScope(for listen: Listen) -> SettingsScope {
        router.defaultServer(for: listen.address).map { scope(server: $0, location: nil) } ?? httpScope
    }

    /// `-s reopen`.
    public func reopenLogs() { accessLogs.reopen() }
}

#if canImport(Glibc)
import Glibc
#endif
import CShim
import Core
import Config
import HTTP
import Script

/// What the request path needs of a server or location, resolved once per worker: its merged settings,
/// held in a class of this module so that requests borrow them in place (reading them through Config's
/// classes copied the whole, large, struct on every access), and for a `proxy_pass` location its balancer
/// and header templates.
final class SettingsScope {
    let settings: HTTPSettings
    let proxyRoute: ProxyRoute?
    init(_ settings: HTTPSettings, proxyRoute: ProxyRoute? = nil) {
        self.settings = settings
        self.proxyRoute = proxyRoute
    }
}

/// One request in flight on a client connection: where it was routed and what has been answered. It is
/// also what the rewrite scripts run on: their variables, a URI and arguments they may change.
final class RequestContext: ScriptContext {
    let head: RequestHead
    let server: Server
    private(set) var location: Location?
    private var scope: SettingsScope
    unowned(unsafe) let connection: ClientConnection
    private unowned(unsafe) let worker: WorkerProcess
    /// $uri and $args: the request's, until a `rewrite` changes them.
    var uri: String { didSet { rewritten = true } }
    var args: String? { didSet { rewritten = true } }
    /// A script changed the URI since the location was chosen: nginx then chooses again.
    var rewritten = false
    var captures: Captures?
    /// The method handlers see: an error page's internal redirect makes it GET.
    var method: String
    /// Set while an error page is served: no second error page, and the status the answer carries.
    var inErrorPage = false
    var statusOverride: Int?
    /// $proxy_host when proxy_pass takes it from variables.
    var proxyHost: String?
    /// Values of `set` variables, by their index in the configuration's table.
    private var userValues: [String?] = []
    /// The location's merged settings (the server's when there is no location).
    var settings: HTTPSettings { _read { yield scope.settings } }
    /// Set for a request in a `proxy_pass` location (every one is resolved at worker start).
    var proxyRoute: ProxyRoute? { scope.proxyRoute }
    /// When the request began, on the loop's cached clock (as nginx's $request_time).
    let startUs: UInt64
    let requestLength: Int
    var status = 0
    var bodyBytesSent = 0
    var headerBytesSent = 0
    /// Each upstream tried, in order; the $upstream_* strings are made only if something reads them.
    var upstreamAttempts = UpstreamAttempts()
    var upstreamAddr: String? { upstreamList { $0.address } }
    var upstreamStatus: String? { upstreamList { $0.status.map(String.init) } }
    var upstreamResponseTime: String? { upstreamList { $0.elapsedUs.map(Clock.seconds(fromMicroseconds:)) } }

    private func upstreamList(_ field: (UpstreamAttempt) -> String?) -> String? {
        let parts = upstreamAttempts.compactMap(field)
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
    /// The request body, when a handler needs it whole (proxying).
    var body: [UInt8] = []
    /// How the body is being read (ClientConnection.readBody): not yet (a location that may stream it), what
    /// runs when it is complete, the proxied request it streams to, whether reading paused for it, how much
    /// came, the temporary file past client_body_buffer_size.
    var bodyPending = false
    var afterBody: (() -> Void)?
    weak var bodySink: ProxySession?
    var bodyPaused = false
    var bodyReceived = 0
    var bodyFile: BodyFile?

    init(head: consuming RequestHead, server: Server, location: Location?, scope: SettingsScope, connection: ClientConnection, requestLength: Int) {
        uri = head.path
        args = head.query
        method = head.method
        startUs = connection.worker.loop.nowUs
        self.head = head
        self.server = server
        self.location = location
        self.scope = scope
        self.connection = connection
        self.worker = connection.worker
        self.requestLength = requestLength
    }

    /// The header block and fields go back for the next request's parse to fill (their only reference once
    /// `head` is gone, unless a copy of the head lives on). `head` stays a `let`: reading a `var` struct of a
    /// class to call a method on it copies the whole head, every reference in it retained and released.
    deinit {
        // The worker's pools, not the connection's: a request can outlive its connection (its proxied
        // session may let go of it last).
        worker.headBlocks.give(head.block)
        worker.fieldLists.give(head.fields)
    }

    /// The first value of header `name`, read in place (nil: no such header).
    func withHeader<R>(_ name: String, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        let fields = head.fields
        return head.block.withUnsafeBytes { RequestHead.value(of: name, in: $0, fields).map(body) }
    }

    func header(_ name: String) -> String? { withHeader(name) { String(decoding: $0, as: UTF8.self) } }

    /// The location chosen again for a rewritten URI.
    func relocate(_ location: Location?, scope: SettingsScope) {
        self.location = location
        self.scope = scope
        rewritten = false
    }

    func select(ifBlock: Int) {
        guard let base = location.map({ $0.parent ?? $0 }) else { return }
        let block = base.ifBlocks[ifBlock]
        location = block
        scope = connection.worker.scope(server: server, location: block)
    }

    func value(_ v: Variable) -> String? { Variables(request: self, connection: connection).value(v) }

    func setUser(_ index: Int, _ value: String) {
        if index >= userValues.count { userValues.append(contentsOf: repeatElement(nil, count: index + 1 - userValues.count)) }
        userValues[index] = value
    }

    func userValue(_ index: Int) -> String? { index < userValues.count ? userValues[index] : nil }

    /// What goes to the upstream (and names a static file): the request's own target while no script changed
    /// it, else the rewritten URI with its arguments.
    var target: String { uri == head.path && args == head.query ? head.target : uri + (args.map { "?" + $0 } ?? "") }

    /// nginx's `$host`: the Host header without port, lowercased, else the first server_name.
    var host: String {
        if var h = head.host?.lowercased(), !h.isEmpty {
            if h.hasPrefix("[") { return String(h.prefix(while: { $0 != "]" })) + "]" }
            if let c = h.firstIndex(of: ":") { h = String(h[..<c]) }
            return h
        }
        return server.serverNames.first ?? ""
    }
}

/// One upstream a request was sent to: its address, the status it gave (or 502/504 for a failure) and how
/// long it took.
struct UpstreamAttempt {
    let address: String
    var status: Int?
    var elapsedUs: UInt64?
}

/// The upstreams a request tried, in order. Nearly every request tries one: it is kept inline, and only a
/// retry allocates.
struct UpstreamAttempts {
    private var first: UpstreamAttempt?
    private var retries: [UpstreamAttempt] = []

    var isEmpty: Bool { first == nil }

    mutating func append(_ a: UpstreamAttempt) {
        if first == nil { first = a } else { retries.append(a) }
    }

    mutating func removeLast() {
        if retries.isEmpty { first = nil } else { retries.removeLast() }
    }

    /// Records the outcome of the attempt in progress (the last one made); nil leaves a field as it is.
    /// A method, not a `_modify` accessor: an accessor's coroutine frame is allocated where it is not inlined.
    mutating func updateLast(status: Int? = nil, elapsedUs: UInt64? = nil) {
        func update(_ a: inout UpstreamAttempt) {
            if let status { a.status = status }
            if let elapsedUs { a.elapsedUs = elapsedUs }
        }
        if retries.isEmpty { update(&first!) } else { update(&retries[retries.count - 1]) }
    }

    func compactMap(_ field: (UpstreamAttempt) -> String?) -> [String] {
        guard let first else { return [] }
        return ([first] + retries).compactMap(field)
    }
}

/// Values of nginx variables for a request on a connection (log formats, proxy_set_header).
struct Variables {
    let request: RequestContext
    let connection: ClientConnection

    func value(_ variable: Variable) -> String? {
        switch variable {
        case .remoteAddr: return connection.remoteAddress
        case .remotePort: return String(connection.remotePort)
        case .timeLocal: return Clock.timeLocal()
        case .msec:
            return Clock.msec(vigil_realtime_ms())
        case .request: return request.head.requestLine
        case .requestMethod: return request.method
        case .requestURI: return request.head.target
        case .uri: return request.uri
        case .args: return request.args
        case .isArgs: return request.args == nil ? "" : "?"
        case .serverProtocol: return "HTTP/\(request.head.versionMajor).\(request.head.versionMinor)"
        case .scheme: return connection.tls == nil ? "http" : "https"
        case .https: return connection.tls == nil ? "" : "on"
        case .sslProtocol: return connection.tls?.protocolName
        case .sslCipher: return connection.tls?.cipherName
        case .sslServerName: return connection.tls?.serverName
        case .sslSessionReused: return connection.tls.map { $0.sessionReused ? "r" : "." }
        case .host: return request.host
        case .hostname: return connection.worker.hostname
        case .serverName: return request.server.serverNames.first ?? ""
        case .serverPort: return String(connection.listening.listen.address.port)
        case .serverAddr: return connection.listening.listen.address.host
        case .status: return String(request.status)
        case .bodyBytesSent: return String(request.bodyBytesSent)
        case .bytesSent: return String(request.bodyBytesSent + request.headerBytesSent)
        case .requestLength: return String(request.requestLength)
        case .requestTime: return Clock.seconds(fromMicroseconds: connection.worker.loop.nowUs - request.startUs)
        case .connection: return String(connection.serial)
        case .connectionRequests: return String(connection.requestsServed + 1)
        case .pid: return String(getpid())
        case .contentLength: return request.head.contentLength.map(String.init)
        case .contentType: return request.header("content-type")
        case .upstreamAddr: return request.upstreamAddr
        case .upstreamStatus: return request.upstreamStatus
        case .upstreamResponseTime: return request.upstreamResponseTime
        case .proxyHost:
            if let h = request.proxyHost { return h }
            if case .proxy(let p)? = request.location?.content { return p.hostHeader }
            return nil
        case .proxyAddXForwardedFor:
            if let xff = request.header("x-forwarded-for") { return xff + ", " + connection.remoteAddress }
            return connection.remoteAddress
        case .httpHeader(let name): return request.header(name)
        case .arg(let key):
            guard let q = request.head.query else { return nil }
            for pair in q.split(separator: "&") where pair.hasPrefix(key + "=") { return String(pair.dropFirst(key.count + 1)) }
            return nil
        case .cookie(let name): return Variables.cookie(name, in: request.header("cookie"))
        case .user(let i): return request.userValue(i) ?? mapped(i)
        case .capture(let n): return request.captures?.group(n)
        case .timeISO8601: return Clock.iso8601()
        case .documentRoot: return request.settings.core.root
        case .buffersHeld: return String(connection.worker.buffers.held)
        case .buffersPooled: return String(connection.worker.buffers.pooled)
        case .realpathRoot:
            // The root with its symbolic links resolved (nginx: a root that does not exist is an error, empty here).
            guard let root = value(.documentRoot), let real = realpath(root, nil) else { return nil }
            defer { free(real) }
            return String(cString: real)
        case .requestBody: return request.body.isEmpty ? nil : String(decoding: request.body, as: UTF8.self)
        case .none: return nil
        }
    }

    /// A `map` variable, chosen when first read and kept for the request unless the map is volatile.
    private func mapped(_ i: Int) -> String? {
        guard let map = connection.worker.config.http?.variables.maps[i] else { return nil }
        let v = map.evaluate(request)
        if !map.volatile { request.setUser(i, v) }
        return v
    }

    /// `$cookie_name`: the value of `name` in the Cookie header (`a=1; b=2`).
    static func cookie(_ name: String, in header: String?) -> String? {
        guard let header else { return nil }
        for pair in header.split(separator: ";") {
            let p = pair.drop(while: { $0 == " " })
            if p.hasPrefix(name + "=") { return String(p.dropFirst(name.count + 1)) }
        }
        return nil
    }
}

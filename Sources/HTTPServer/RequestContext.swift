#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Gzip
import HTTP
import Script

/// One request in flight, whatever connection it came on: where it was routed, its body, what has been
/// answered and how. It is also what the rewrite scripts run on: their variables, a URI and arguments they
/// may change. The pipeline's phases run on it; content handlers answer through `sink`.
public final class RequestContext: ScriptContext {
    public let head: RequestHead
    public let server: Server
    public private(set) var location: Location?
    private var scope: SettingsScope
    /// Strong `let`s, read in place: the compiler retained an unowned(unsafe) one around each use (the
    /// variables read the client a dozen times a request). The client (the connection or the HTTP/2 stream)
    /// holds its current request too; it lets go of it when the request ends or it closes.
    public let service: HTTPService
    public let client: ClientInfo
    /// The connection (HTTP/1), stream or subrequest it came on. Not retained: the transport holds its current
    /// request and outlives it (when it closes it stops the request's handler and lets go of the request).
    public unowned(unsafe) let transport: RequestTransport
    /// The request this one is a subrequest of (nginx's r->parent), which holds it while it runs: nil for a
    /// client's request. A subrequest shares the parent's head, connection and variables.
    public unowned(unsafe) let parent: RequestContext?
    /// Whether `parent` is set, read where the parent may be gone (a subrequest released after it).
    private let isSubrequest: Bool
    /// $uri and $args: the request's, until a `rewrite` changes them.
    public var uri: String { didSet { rewritten = true } }
    public var args: String? { didSet { rewritten = true } }
    /// A script changed the URI since the location was chosen: nginx then chooses again.
    var rewritten = false
    /// A rewrite or an internal redirect (error_page, try_files, a named location) brought the request here:
    /// `internal` locations take it.
    var isInternal = false
    /// Rewrite cycles and internal redirects left before nginx's "rewrite or internal redirection cycle" 500.
    var uriChangesLeft = 11
    /// The URI is still one the location was chosen by (nginx's valid_location): a `break` after a rewrite in
    /// the location clears it, and a proxy_pass URI then no longer replaces the location's part of the URI.
    public internal(set) var validLocation = true
    /// The URI is a proxy_pass location's name without its final slash: nginx redirects to the name.
    var addsSlash = false
    /// try_files found the file for a regex location's alias: the URI is appended to the alias.
    var uriAddsToAlias = false
    public var captures: Captures?
    /// It came behind another request on its connection, already read when that one was answered: $pipe "p".
    public var isPipelined = false
    /// The method handlers see: an error page's internal redirect makes it GET.
    public var method: String
    /// Set while an error page is served: no second error page, and the status the answer carries.
    public var inErrorPage = false
    public var statusOverride: Int?
    /// A request made by the server whose response goes nowhere (the upstream cache's background refresh).
    public var isBackground = false
    /// $proxy_host when proxy_pass takes it from variables.
    public var proxyHost: String?
    /// Values of `set` variables, by their index in the configuration's table (a subrequest's are its parent's).
    private var userValues: [String?] = []
    /// Where the access phase is (AccessPhase.swift).
    var access = AccessProgress()
    /// The location's merged settings (the server's when there is no location).
    public var settings: HTTPSettings { _read { yield scope.settings } }
    /// What the location's content handler prepared for it at worker start.
    public var handlerState: LocationState? { scope.handlerState }
    /// When the request began, on the loop's cached clock (as nginx's $request_time).
    public let startUs: UInt64
    /// Bytes of the request: its head and body, and what the client sent through a tunnel.
    public var requestLength: Int
    public var status = 0
    public var bodyBytesSent = 0
    public var headerBytesSent = 0
    /// Each upstream tried, in order; the $upstream_* strings are made only if something reads them.
    public var upstreamAttempts = UpstreamAttempts()
    /// The last upstream response's head (its header lines), kept when a template reads `$upstream_http_*`.
    public var upstreamHead: (block: [UInt8], fields: [HeaderField])?
    /// `$upstream_cache_status`: what the upstream cache's lookup found (nil: the cache was not asked).
    public var cacheStatus: String?
    /// A stale cached response's Last-Modified and ETag while a refresh revalidates it (`*_cache_revalidate`).
    public var cacheValidators: (lastModified: String?, etag: String?)?
    /// The response head as far as it is written, kept when a template reads `$sent_http_*`.
    var sentHead: [UInt8]?
    /// The trailers add_trailer has written so far.
    var sentTrailers: [(name: String, value: String)] = []
    /// The request body as it is read (RequestBody.swift).
    public var body = RequestBody()
    /// How the response is going out (ResponseSink.swift).
    public var response = ResponseState()
    /// The response's limit_rate, resolved when its head is written.
    var rate: ResponseRate?
    /// nginx's r->limit_rate, which $limit_rate reads: `set $limit_rate` or an upstream's X-Accel-Limit-Rate sets
    /// it; else it is the location's limit_rate once the head is written.
    public var limitRate: Int?
    /// What limit_req and limit_conn did ($limit_req_status, $limit_conn_status); once set, the phase is not
    /// run again for this request (nginx's r->main->limit_req_status).
    var limitReqStatus = LimitStatus.none
    var limitConnStatus = LimitStatus.none
    /// limit_conn's counts, held until the request ends.
    var heldConnections = HeldConnections()
    /// Headers an upstream's response hands on to the response served after it, as nginx keeps them: those of
    /// an X-Accel-Redirect (its Content-Type stands in for the content handler's), an intercepted 401's
    /// WWW-Authenticate.
    public var carriedHeaders: [(name: String, value: String)] = []
    var carriedContentType: String? { carriedHeaders.last { $0.name.lowercased() == "content-type" }?.value }
    /// The content handler's work in flight (a proxied request's upstream session), held until the request
    /// ends; the connection stops it if the client goes away first.
    public var handler: ActiveHandler?

    init(head: consuming RequestHead, server: Server, location: Location?, service: HTTPService, transport: RequestTransport,
         requestLength: Int, parent: RequestContext? = nil) {
        uri = head.path
        args = head.query
        method = head.method
        startUs = service.loop.nowUs
        self.head = head
        self.server = server
        self.location = location
        self.scope = service.scope(server: server, location: location)
        self.service = service
        self.transport = transport
        self.client = transport.client
        self.requestLength = requestLength
        self.parent = parent
        isSubrequest = parent != nil
    }

    /// A copy of this request whose response goes to `transport` (the upstream cache's background refresh, as
    /// nginx's background clone subrequest): the same head, server, location, URI, method and variables, its
    /// own life.
    func clone(on transport: RequestTransport) -> RequestContext {
        let r = RequestContext(head: head, server: server, location: location, service: service, transport: transport, requestLength: 0)
        r.uri = uri
        r.args = args
        r.rewritten = false
        r.method = method
        r.userValues = userValues
        r.captures = captures
        r.proxyHost = proxyHost
        r.validLocation = validLocation
        r.isInternal = isInternal
        return r
    }

    /// The header block and fields go back for the next request's parse to fill (their only reference once
    /// `head` is gone, unless a copy of the head lives on). `head` stays a `let`: reading a `var` struct of a
    /// class to call a method on it copies the whole head, every reference in it retained and released.
    deinit {
        // A subrequest's head is its parent's, which gives it back.
        if !isSubrequest {
            service.headBlocks.give(head.block)
            service.fieldLists.give(head.fields)
        }
        if let gz = response.gzip { service.gzipStreams.give(gz) }
        heldConnections.release(service.limitZones)
    }

    /// Stops the handler's work: the client went away, or the request ended or failed before it did.
    func stopHandler() {
        guard let h = handler else { return }
        handler = nil
        if !h.isFinished { h.abort() }
    }

    /// The response side: head, body and end, through the filters.
    public var sink: ResponseSink { ResponseSink(self) }

    /// What answers the request in its location (or server, for a server-level `check_status`).
    public var content: Config.ContentHandler { location?.content ?? server.content }

    /// The first value of header `name`, read in place (nil: no such header).
    public func withHeader<R>(_ name: String, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        let fields = head.fields
        return head.block.withUnsafeBytes { RequestHead.value(of: name, in: $0, fields).map(body) }
    }

    /// Where this request's errors go: its level's `error_log`, or the main one.
    public var log: ErrorLog { settings.log.errorLogSet.map { service.accessLogs.errorLogs[$0] } ?? service.log }

    public func header(_ name: String) -> String? { withHeader(name) { String(decoding: $0, as: UTF8.self) } }

    /// All the values of header `name` as one: a Cookie's joined by "; ", any other's by ", ".
    public func joinedHeader(_ name: String) -> String? {
        let fields = head.fields
        return head.block.withUnsafeBytes {
            RequestHead.joinedValues(of: name, in: $0, fields, separator: RequestContext.separator(joining: name))
        }
    }

    /// The same value, appended to `out` as bytes; false when there is none.
    public func appendJoinedHeader(_ name: String, to out: OutputQueue) -> Bool {
        let fields = head.fields
        return head.block.withUnsafeBytes {
            RequestHead.appendJoinedValues(of: name, in: $0, fields, separator: RequestContext.separator(joining: name), to: out)
        }
    }

    private static func separator(joining name: String) -> String { name == "cookie" ? "; " : ", " }

    /// The location chosen again for a rewritten URI (a regex location's groups become the request's), or a
    /// named one.
    func relocate(_ choice: LocationChoice) {
        location = choice.location
        addsSlash = choice.addsSlash
        validLocation = true
        scope = service.scope(server: server, location: location)
        if let (re, m) = choice.match { Program.take(m, of: re, self) }
        rewritten = false
    }

    public func select(ifBlock: Int) {
        guard let base = location.map({ $0.parent ?? $0 }) else { return }
        enter(base.ifBlocks[ifBlock])
    }

    /// A nameless location inside the current one (an `if` or `limit_except` block) takes the request.
    func enter(_ block: Location) {
        location = block
        scope = service.scope(server: server, location: block)
    }

    public func value(_ v: Variable) -> String? { Variables(request: self).value(v) }

    public func appendValue(_ v: Variable, to out: OutputQueue) -> Bool { Variables(request: self).append(v, to: out) }

    public var uriWasQuoted: Bool { head.pathWasEscaped || head.path.utf8.contains(UInt8(ascii: "+")) }

    public func setUser(_ index: Int, _ value: String) {
        if let parent { return parent.setUser(index, value) }
        if index >= userValues.count { userValues.append(contentsOf: repeatElement(nil, count: index + 1 - userValues.count)) }
        userValues[index] = value
    }

    public func setBuiltin(_ v: Variable, _ value: String) {
        if case .args = v {
            // As nginx's set handler: the arguments change, and the location is not chosen again.
            let chosen = rewritten
            args = value
            rewritten = chosen
            return
        }
        guard case .limitRate = v else { return }
        // As nginx's ngx_parse_size: k and m, no g; a value that is not a size changes nothing.
        guard let rate = Values.size(value, allowGiga: false) else {
            return service.log.error("invalid $limit_rate \"\(value)\"\(logContext)")
        }
        limitRate = rate
    }

    func userValue(_ index: Int) -> String? {
        if let parent { return parent.userValue(index) }
        return index < userValues.count ? userValues[index] : nil
    }

    /// `set` or `auth_request_set`: a declared variable takes the value, a built-in its set handler's effect.
    func assign(_ v: Variable, _ value: String) {
        if case .user(let index) = v { setUser(index, value) } else { setBuiltin(v, value) }
    }

    /// A script or an internal redirect made the URI or the arguments other than the request's own.
    public var uriChanged: Bool { uri != head.path || args != head.query }

    /// nginx's `$host`: the Host header without port and trailing dot, lowercased, else the first server_name.
    public var host: String {
        if let h = head.host.map(HostName.serverName), !h.isEmpty { return h }
        return server.name
    }

    /// nginx's tail of an error line about a request: `, client: …, server: …, request: "…"`.
    public var logContext: String {
        let main = ", client: \(client.address), server: \(server.name), request: \"\(head.requestLine)\""
        return parent == nil ? main : main + ", subrequest: \"\(uri)\""
    }
}

/// One upstream a request was sent to: its address, the status it gave (or 502/504 for a failure), how long
/// connecting, the response head and the whole took (nil: not reached, nginx's "-"), and the bytes it sent.
public struct UpstreamAttempt {
    public let address: String
    public var status: Int?
    public var connectUs: UInt64?
    public var headerUs: UInt64?
    public var elapsedUs: UInt64?
    /// Bytes received (and of them the response head's, and the protocol's own framing: FastCGI's record
    /// headers, padding, STDERR and END_REQUEST) and sent.
    public var bytesReceived = 0
    public var headLength = 0
    public var framingLength = 0
    public var bytesSent = 0
    public init(address: String) { self.address = address }
}

/// The upstreams a request tried, in order. Nearly every request tries one: it is kept inline, and only a
/// retry allocates.
public struct UpstreamAttempts {
    private var first: UpstreamAttempt?
    private var retries: [UpstreamAttempt] = []

    public var isEmpty: Bool { first == nil }

    public mutating func append(_ a: UpstreamAttempt) {
        if first == nil { first = a } else { retries.append(a) }
    }

    public mutating func removeLast() {
        if retries.isEmpty { first = nil } else { retries.removeLast() }
    }

    /// Records what the attempt in progress (the last one made) has reached; nothing when none was made (a
    /// response from the cache). A method, not a `_modify` accessor: an accessor's coroutine frame is allocated
    /// where it is not inlined.
    public mutating func updateLast(_ update: (inout UpstreamAttempt) -> Void) {
        if !retries.isEmpty { update(&retries[retries.count - 1]) } else if first != nil { update(&first!) }
    }

    /// `$upstream_addr`-style lists: one field of each attempt, ", "-separated, "-" for an attempt that has
    /// none (as nginx); nil when no upstream was tried.
    func list(_ field: (UpstreamAttempt) -> String?) -> String? {
        guard let first else { return nil }
        return ([first] + retries).map { field($0) ?? "-" }.joined(separator: ", ")
    }
}

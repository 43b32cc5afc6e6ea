#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Event
import HTTP
import HTTPServer
import ShmTable
import TLS
import Upstream

/// Proxies one request: picks a peer (skipping those down by check), connects (or takes a kept-alive
/// connection), sends the request (UpstreamRequest.swift), relays the response to the request's sink with
/// back-pressure (UpstreamResponse.swift), and retries on the next peer as the retry policy allows.
final class ProxySession: UpstreamConnectionDelegate, ActiveHandler {
    enum Phase { case connecting, sending, readingHead, relaying, tunnel, done }

    let request: RequestContext
    let pass: ProxyPass
    /// What the upstream speaks: HTTP/1, or a gateway protocol (GatewayRequest.swift; FastCGI's records,
    /// FastCGIResponse.swift).
    let proto: UpstreamProtocol
    /// A gateway's per-location state.
    let gateway: GatewayRoute?
    /// http or https: the proxy_pass URL's, or, for a URL from variables, what they gave; a gateway's protocol
    /// name (fastcgi, scgi, uwsgi, or suwsgi for uwsgi over TLS), as nginx's log lines give it.
    let scheme: String
    let balancer: UpstreamBalancer
    /// The headers a request whose response may be stored sends are the cache's (nginx's headers_cache).
    var headers: ProxyHeaders { cacheable ? route.cachingHeaders ?? route.headers : route.headers }
    /// The location's route and the handler, both kept by the worker as long as itself. Strong `let`s: the
    /// compiler reads a strong `let` of a live object in place, where it retained an unowned(unsafe) one
    /// around each use (callgrind: 11 retains a proxied request fewer).
    let route: ProxyRoute
    let proxy: ProxyHandler
    /// Set for `proxy_pass https://…`.
    let upstreamTLS: UpstreamTLS?
    /// proxy_ssl_certificate with variables: what this request named.
    var clientCertificate: CertificatePair?
    let retry: RetryPolicy
    /// Peers that failed this request before the current one (most requests have none: no array).
    var tried: [Peer] = []
    var peer: Peer?
    /// The current attempt's connection: new, or taken from the keepalive pool.
    var connection: UpstreamConnection?
    var tls: TLSStream? { connection?.tls }
    /// The upstream's socket, or the cached file a response is read from.
    var fd: Int32 { replaying ? cached?.fd ?? -1 : connection?.fd ?? -1 }
    /// Whether the current attempt counts in its peer's connections (least_conn, max_conns).
    var counted = false
    var phase = Phase.connecting
    /// The request as it goes upstream (head, and an inline body or the current piece of one that is not).
    let outgoing: OutputQueue
    let response: ByteBuffer
    /// When the first attempt started (proxy_next_upstream_timeout) and the current one (its timing).
    var firstAttemptMs: UInt64 = 0
    var startedUs: UInt64 = 0
    /// The connection came from the keepalive pool (a failure on it is retried on a fresh one, uncounted).
    var reused = false
    /// After a 101 to a client that asked to upgrade: the bytes both ways (Tunnel.swift).
    var tunnel: Tunnel?
    /// The upstream fd is edge-triggered: readiness seen while not reading is remembered, not re-reported.
    var readReady = false
    /// Bytes read from and written to the current attempt's upstream.
    var received = 0
    /// Of them, FastCGI's framing: not the response ($upstream_response_length).
    var framing = 0
    var sentToUpstream = 0
    /// The upstream closed (or failed): read to the end instead of stopping at a short read.
    var hungUp = false
    var noDelay = false

    // The response (UpstreamResponse.swift).
    var head: ResponseHead?
    var bodyRemaining: Int?
    var decoder: ChunkedDecoder?
    var passChunked = false
    /// proxy_store's file for this response's body.
    var stored: StoredResponse?
    var paused = false

    // The request (UpstreamRequest.swift).
    /// With variables in proxy_pass, the URI they gave (nil: the request's own, as without variables).
    let dynamicURI: String?
    var bodySource = BodySource.inline
    var requestHead: [UInt8] = []
    /// Bytes of the body handed to the upstream (file offset, or how much of a stream is gone for good).
    var bodySent = 0
    var clientBodyEnded = false
    /// The temporary body file could not be read: the request cannot be sent.
    var bodyReadFailed = false
    var lastChunkQueued = false
    /// How a body that is not inline is framed on its way: as it is, in chunks, in FastCGI STDIN records.
    var bodyFraming = RequestBodyFraming.plain

    // The upstream cache (UpstreamCache.swift).
    var cacheKey: [UInt8] = []
    /// The cache the request uses, when its key was looked up.
    var cacheStore: CacheStore?
    var cacheDigest: CacheDigest?
    var cachePath = ""
    /// The key's file the lookup found: fresh and being served, or stale and kept.
    var cached: OpenCacheFile?
    /// The response comes from `cached`, not from a peer.
    var replaying = false
    /// The upstream's response may be stored (the method, `*_cache_min_uses`, the lock's timeout decide).
    var cacheable = false
    /// This request holds the key's fill lock in the zone.
    var holdsCacheLock = false
    var cacheLockTimer: Timer?
    var cacheValidUntil = 0
    /// A varying response's lookup went on to its secondary key: the main key, and the Vary its file had.
    var mainKey: (key: [UInt8], digest: CacheDigest, path: String)?
    var mainVaryNames: [String] = []
    /// The method sent instead of the request's (a HEAD the cache asks for as a GET).
    var upstreamMethod: String?
    /// The upstream's body is read (into the cache) but not sent: the client asked for the head only.
    var discardsBody = false

    // FastCGI's response: its records as read, what they said so far.
    /// The records as read from the socket, before their STDOUT content goes to `response`.
    var records: ByteBuffer?
    var recordDecoder = FastCGI.Decoder()
    var stdoutClosed = false
    /// END_REQUEST came (and nothing after it, for the connection to be kept).
    var requestEnded = false

    init(request: RequestContext, pass: ProxyPass, scheme: String, route: ProxyRoute, balancer: UpstreamBalancer, proxy: ProxyHandler,
         uri: String?, streamsBody: Bool) {
        self.scheme = scheme
        proto = pass.upstreamProtocol
        gateway = route.gateway
        if streamsBody { bodySource = .stream }
        if proto == .fastcgi {
            bodyFraming = .fastcgi
            records = request.service.buffers.takeResponse()
        } else if streamsBody && request.head.chunked {
            bodyFraming = .chunked
        }
        self.proxy = proxy
        self.retry = route.retry
        self.response = request.service.buffers.takeResponse()
        self.outgoing = request.service.buffers.takeOutput()
        self.request = request
        self.pass = pass
        self.dynamicURI = uri
        self.balancer = balancer
        self.route = route
        self.upstreamTLS = scheme == "https" || scheme == "suwsgi" ? route.tls : nil
    }

    deinit {
        endCache()
        request.service.buffers.giveResponse(response)
        if let records { request.service.buffers.giveResponse(records) }
        request.service.buffers.giveOutput(outgoing)
    }

    /// Borrowed, not copied: HTTPSettings is large and read several times per request.
    var settings: HTTPSettings { _read { yield request.settings } }
    /// The upstream family's settings of this protocol's module (proxy_*, fastcgi_*, …), borrowed from the
    /// route: an accessor that chose among the request's settings by protocol copied all of ProxySettings at
    /// each field it read.
    var conf: ProxySettings { _read { yield route.conf } }
    /// The upstream as nginx's log lines name it: an HTTP one with the request's URI, others without.
    var upstreamText: String {
        "\(scheme)://\(peer?.address.description ?? "")" + (proto == .http ? request.head.target : "")
    }
    var loop: EventLoop { proxy.loop }

    func start() {
        if let cache = route.cache, lookUpCache(cache) { return }
        askUpstream()
    }

    /// The request goes to the upstream: built, then sent to the first peer the balancer picks.
    func askUpstream() {
        if case .inline = bodySource, let file = request.body.file, conf.passRequestBody, proto != .http || conf.setBody == nil {
            bodySource = .file(file)
        }
        if proto == .http {
            buildRequest()
        } else if !buildGatewayRequest() {
            return giveUp(500)
        }
        // Kept to send again on a retry when the body is not part of `outgoing`.
        if case .inline = bodySource {} else { requestHead = outgoing.bytes }
        // As nginx: a certificate its variables name that does not load is the request's 500.
        switch upstreamTLS?.certificate(for: request) {
        case .success(let pair): clientCertificate = pair
        case .failure(let failure):
            request.log.error("\(failure)\(request.logContext)")
            return giveUp(500)
        case nil: break
        }
        next()
    }

    var isFinished: Bool { phase == .done }

    /// Picks the next peer or answers 502 when none is left.
    private func next() {
        if let failedPeer = peer { tried.append(failedPeer) }
        if tried.isEmpty { firstAttemptMs = loop.now }
        let client = request.client
        guard let p = balancer.select(clientAddress: { client.addressBytes }, hashKey: hashKey(), now: loop.now, tried: tried) else {
            if tried.isEmpty && awaitFirstVerdicts() { return }
            if tried.isEmpty {
                let uri = proto == .http ? request.head.target : ""
                request.log.error("no live upstreams while connecting to upstream\(request.logContext), upstream: \"\(scheme)://\(balancer.name)\(uri)\"")
            }
            // As nginx: the attempt that found no peer is logged under the upstream's name ($upstream_addr).
            var none = UpstreamAttempt(address: balancer.name)
            none.status = 502
            none.elapsedUs = 0
            request.upstreamAttempts.append(none)
            if servesStale(after: .error) { return }
            giveUp(502)
            return
        }
        peer = p
        connect(p)
    }

    /// When this request began to wait for new peers' first verdicts (0: it has not), and the timer it polls on.
    private var waitingSinceMs: UInt64 = 0
    private var waitTimer: Timer?

    /// No peer is live, but some are new to the check table and still in their first round of probes (a cold
    /// start, a reload that added them): instead of a 502 the request looks again every 10 ms until one is
    /// live or every first round has decided, for at most the check's timeout. True while it waits.
    private func awaitFirstVerdicts() -> Bool {
        let now = loop.now
        if waitingSinceMs == 0 { waitingSinceMs = now }
        guard now - waitingSinceMs < balancer.firstVerdictWaitMs, balancer.awaitsFirstVerdicts else { return false }
        waitTimer = loop.schedule(after: 10) { [weak self] in
            guard let self, self.phase == .connecting else { return }
            self.waitTimer = nil
            self.next()
        }
        return true
    }

    private func hashKey() -> String? {
        guard case .hash(let key, _) = balancer.method else { return nil }
        return key.render(request)
    }

    private func connect(_ p: Peer, allowCached: Bool = true) {
        phase = .connecting
        rewindRequest()
        startedUs = loop.nowUs
        received = 0
        framing = 0
        sentToUpstream = 0
        request.upstreamAttempts.append(UpstreamAttempt(address: p.name))
        if allowCached, let pooled = balancer.pool?.take(p.address, for: self) {
            connection = pooled
            reused = true
            request.upstreamAttempts.updateLast { $0.connectUs = 0 }
            count(p)
            phase = .sending
            arm(conf.sendTimeout, .sending)
            sendRequest()
            return
        }
        reused = false
        noDelay = false
        let c = proxy.upstreamConnections.take() ?? UpstreamConnection(loop: loop)
        c.delegate = self
        connection = c
        guard let address = p.socketAddress else { return failed(.error, "connect() failed (\(Errno.text(EINVAL)))") }
        switch c.connect(to: address, peer: p.address, delayAck: true, tls: tlsSetup(for: p), localAddress: localAddress()) {
        case .failed(let failure): return upstreamFailed(failure)
        case .inProgress, .connected: break
        }
        count(p)
        do {
            try c.watch()
        } catch {
            failed(.error, "\(error)")
            return
        }
        arm(conf.connectTimeout, .connecting)
    }

    /// proxy_bind's address for this request: none when it is off, empty, or not an address (logged, as nginx).
    private func localAddress() -> (SocketAddress, anyPort: Bool)? {
        guard let t = conf.bind else { return nil }
        let text = t.render(request)
        guard !text.isEmpty else { return nil }
        guard let (host, port) = Resolver.hostAndPort(text, defaultPort: 0), Resolver.isNumericAddress(host),
              let address = SocketAddress(host: host, port: port, isIPv6: host.contains(":")) else {
            request.log.error("invalid local address \"\(text)\"\(request.logContext)")
            return nil
        }
        return (address, port == 0)
    }

    /// The attempt counts in its peer's connections until its connection closes or is parked.
    private func count(_ p: Peer) {
        counted = true
        balancer.connected(p, delta: 1)
    }

    private func uncount() {
        guard counted, let p = peer else { return }
        counted = false
        balancer.connected(p, delta: -1)
    }

    /// TLS to the upstream, inside proxy_connect_timeout as in nginx; the session of the peer's last
    /// connection is offered again (proxy_ssl_session_reuse); the name is checked as proxy_ssl_verify says.
    private func tlsSetup(for p: Peer) -> UpstreamTLSSetup? {
        guard let u = upstreamTLS else { return nil }
        let name = u.name.render(request)
        return UpstreamTLSSetup(context: u.context, serverName: u.sendsServerName ? UpstreamTLS.sniName(name) : nil,
                                session: u.sessionSlot(for: p), verification: .upstream(name: name), certificate: clientCertificate)
    }

    // MARK: the connection's events

    /// What the running timeout waits for: its message is made only if it fires (a string stored per phase
    /// cost a release and a retain each time).
    enum Waiting {
        case connecting, sending, readingHead, readingBody

        var message: String {
            let what: String
            switch self {
            case .connecting: what = "connecting to upstream"
            case .sending: what = "sending request to upstream"
            case .readingHead: what = "reading response header from upstream"
            case .readingBody: what = "reading upstream"
            }
            return "upstream timed out (110: Connection timed out) while " + what
        }
    }
    var waiting = Waiting.connecting

    /// Each phase re-arms the connection's timer for what it waits for.
    func arm(_ ms: Int, _ what: Waiting) {
        waiting = what
        connection?.arm(after: ms)
    }

    func disarm() { connection?.disarm() }

    func upstreamTimedOut() {
        if phase == .tunnel { return tunnel?.timedOut() ?? () }
        failed(.timeout, waiting.message)
    }

    func upstreamFailed(_ failure: UpstreamConnection.Failure) {
        switch failure {
        case .connect(let e): failed(.error, "connect() failed (\(Errno.text(e))) while connecting to upstream")
        case .socket(let e): failed(.error, "socket() failed (\(Errno.text(e))) while connecting to upstream")
        case .bind(let e): failed(.error, "bind(\(conf.bind?.render(request) ?? "")) failed (\(Errno.text(e))) while connecting to upstream")
        case .handshake(let text), .verify(let text): failed(.error, "\(text) while SSL handshaking to upstream")
        }
    }

    func upstreamReady(_ events: UInt32) {
        noteReadiness(events)
        let now = loop.nowUs
        request.upstreamAttempts.updateLast { $0.connectUs = now - startedUs }
        phase = .sending
        arm(conf.sendTimeout, .sending)
        sendRequest()
    }

    func upstreamEvent(_ events: UInt32) {
        noteReadiness(events)
        switch phase {
        case .sending:
            if events & Events.writable != 0 { sendRequest() }
        case .readingHead, .relaying:
            readResponse()
        case .tunnel:
            tunnel?.upstreamEvent(events)
        case .connecting, .done:
            break
        }
    }

    private func noteReadiness(_ events: UInt32) {
        if events & (Events.readable | Events.readHangup | Events.hangup | Events.error) != 0 { readReady = true }
        if events & (Events.readHangup | Events.hangup | Events.error) != 0 { hungUp = true }
    }

    // MARK: failures and the end

    /// Whether the failed attempt may go on to another peer: proxy_next_upstream names the failure, a peer is
    /// left, the tries and proxy_next_upstream_timeout allow one more, and no streamed body byte is gone.
    func canRetry(_ failure: UpstreamFailure) -> Bool {
        canResend && retry.covers(failure, method: request.method, requestSent: outgoing.sent > 0)
            && tried.count + 1 < balancer.peerCount
            && retry.allowsAnother(after: tried.count + 1, startedMs: firstAttemptMs, nowMs: loop.now)
    }

    /// A peer failed before the response started: account it and try the next one or answer 502/504.
    func failed(_ failure: UpstreamFailure, _ message: String?) {
        guard phase != .done else { return }
        // A cached connection the upstream had closed: not the peer's fault, try again on a fresh one.
        if reused, let p = peer, phase == .sending || (phase == .readingHead && response.isEmpty), !failure.isTimeout, canResend {
            request.upstreamAttempts.removeLast()
            closeUpstream()
            connect(p, allowCached: false)
            return
        }
        if let message {
            request.log.error("\(message)\(request.logContext), upstream: \"\(upstreamText)\"")
        }
        if case .status(let s) = failure { recordAttempt(status: s) } else { recordAttempt(status: failure.isTimeout ? 504 : 502) }
        closeUpstream()
        if let p = peer { balancer.finished(p, failed: failure.countsAgainstPeer, now: loop.now) }
        if phase == .relaying {
            finish(abortClient: true)
            return
        }
        if canRetry(failure) {
            next()
        } else if !servesStale(after: failure) {
            giveUp(failure.isTimeout ? 504 : 502)
        }
    }

    func giveUp(_ status: Int) {
        phase = .done
        disarm()
        endCache()
        request.service.pipeline.respondError(request, status)
    }

    /// The response is complete (or broke off): the connection is parked for reuse when the upstream keeps
    /// it and it was read to its end, else closed; the client's response ends (or the client is dropped).
    func finish(abortClient: Bool = false) {
        guard phase != .done else { return }
        phase = .done
        disarm()
        recordAttempt(status: nil)
        if let p = peer { balancer.finished(p, failed: false, now: loop.now) }
        // The whole response was read and the upstream keeps the connection (no close came with it): park it.
        if !abortClient, !hungUp, let pool = balancer.pool, let c = connection, let h = head, keepsConnection(h) {
            uncount()
            connection = nil
            pool.put(c)
        }
        closeUpstream()
        if abortClient { return request.transport.abort() }
        if let s = stored {
            stored = nil
            if cacheDigest != nil { commitCached(s) } else { s.commit(lastModified: request.response.lastModified) }
        }
        endCache()
        request.sink.finish()
    }

    /// Whether the upstream's connection may serve another request once this response was read: HTTP's
    /// persistence, or FastCGI's END_REQUEST of a request that asked to keep the connection (fastcgi_keep_conn).
    private func keepsConnection(_ h: ResponseHead) -> Bool {
        guard response.isEmpty else { return false }
        switch proto {
        case .fastcgi: return gateway?.keepConn == true && requestEnded && records?.isEmpty == true
        // SCGI and uwsgi applications end each response by closing.
        case .scgi, .uwsgi: return false
        case .http: break
        }
        return h.versionMinor >= 1 && !h.connectionClose && !(bodyRemaining == nil && decoder == nil && h.hasBody && request.method != "HEAD")
    }

    /// Closes the current attempt's record: its time and, for a failure, the status it stands for.
    func recordAttempt(status: Int?) {
        guard !request.upstreamAttempts.isEmpty else { return }
        let now = loop.nowUs, received = self.received, sent = sentToUpstream, framing = self.framing
        request.upstreamAttempts.updateLast {
            if let status { $0.status = status }
            $0.elapsedUs = now - startedUs
            $0.bytesReceived = received
            $0.framingLength = framing
            $0.bytesSent = sent
        }
    }

    func closeUpstream() {
        uncount()
        if let c = connection {
            c.close()
            proxy.upstreamConnections.give(c)
            connection = nil
        }
        response.consume(response.readable)
        if let records {
            records.consume(records.readable)
            recordDecoder = FastCGI.Decoder()
            stdoutClosed = false
            requestEnded = false
        }
        readReady = false
        hungUp = false
        head = nil
        decoder = nil
        bodyRemaining = nil
        passChunked = false
        paused = false
        reused = false
    }

    /// The client went away or the request ended first: drop the upstream side (the attempt's time so far is
    /// still logged, as nginx's).
    func abort() {
        if phase != .done { recordAttempt(status: nil) }
        phase = .done
        waitTimer?.cancel()
        tunnel = nil
        closeUpstream()
        endCache()
    }

    // MARK: tunnels

    /// The upstream answered 101 to a request that asked to upgrade: the head has gone to the client's
    /// transport, and the connection becomes a tunnel (nginx's upgraded connection: never kept alive).
    func startTunnel() {
        guard let c = connection else { return finish(abortClient: true) }
        phase = .tunnel
        hungUp = true   // never parked
        let t = Tunnel(session: self, upstream: c)
        tunnel = t
        if !t.attach(upstreamSent: response) {
            request.log.error("connection upgrade is not possible on this connection\(request.logContext)")
            tunnel = nil
            phase = .relaying
            finish(abortClient: true)
        }
    }

    /// Bytes the tunnel moved, for $upstream_bytes_received and $upstream_bytes_sent.
    func tunneled(received: Int, sent: Int) {
        self.received += received
        sentToUpstream += sent
    }

    /// Either side closed (or failed, or went quiet): the request ends, and its log line is written.
    func tunnelEnded() {
        tunnel = nil
        phase = .relaying
        request.transport.disableKeepAlive()
        finish()
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CShim
import Core
import Config
import Event
import HTTP
import Script
import TLS
import Upstream

/// Proxies one request: picks a peer (skipping those down by check), connects, sends the request,
/// relays the response with back-pressure, and retries on the next peer per `proxy_next_upstream`.
final class ProxySession: UpstreamConnectionDelegate {
    enum Phase { case connecting, sending, readingHead, relaying, done }
    typealias Failure = UpstreamFailure

    unowned(unsafe) let client: ClientConnection   // see ClientConnection.worker
    let request: RequestContext
    let pass: ProxyPass
    let balancer: UpstreamBalancer
    let headers: ProxyHeaders
    /// Set for `proxy_pass https://…`.
    private let upstreamTLS: UpstreamTLS?
    /// Peers that failed this request before the current one (most requests have none: no array).
    private var tried: [Peer] = []
    private var peer: Peer?
    /// The current attempt's connection: new, or taken from the keepalive pool.
    private var connection: UpstreamConnection?
    private var tls: TLSStream? { connection?.tls }
    private var fd: Int32 { connection?.fd ?? -1 }
    /// Whether the current attempt counts in its peer's connections (least_conn, max_conns).
    private var counted = false
    private var phase = Phase.connecting
    /// The request as it goes upstream (head, and an inline body or the current piece of one that is not).
    private let outgoing: OutputQueue
    private let response: ByteBuffer
    private unowned(unsafe) let worker: WorkerProcess
    private let retry: RetryPolicy
    /// When the first attempt started (proxy_next_upstream_timeout).
    private var firstAttemptMs: UInt64 = 0
    private var head: ResponseHead?
    private var bodyRemaining: Int?
    private var decoder: ChunkedDecoder?
    private var passChunked = false
    private var startedUs: UInt64 = 0
    private var paused = false
    /// The connection came from the keepalive pool (a failure on it is retried on a fresh one, uncounted).
    private var reused = false
    /// The upstream fd is edge-triggered: readiness seen while not reading is remembered, not re-reported.
    private var readReady = false
    /// The upstream closed (or failed): read to the end instead of stopping at a short read.
    private var hungUp = false
    private var noDelay = false

    /// With variables in proxy_pass, the URI they gave (nil: the request's own, as without variables).
    private let dynamicURI: String?

    /// Where the request body comes from: inside `outgoing` with the head, a temporary file read as it is
    /// sent, or the client as it sends it (`proxy_request_buffering off`, chunked again when it came chunked).
    private enum BodySource { case inline, file(BodyFile), stream(chunked: Bool) }
    private var bodySource = BodySource.inline
    private var requestHead: [UInt8] = []
    /// Bytes of the body handed to the upstream (file offset, or how much of a stream is gone for good).
    private var bodySent = 0
    private var clientBodyEnded = false
    /// The temporary body file could not be read: the request cannot be sent.
    private var bodyReadFailed = false
    private var lastChunkQueued = false

    init(client: ClientConnection, request: RequestContext, pass: ProxyPass, balancer: UpstreamBalancer, uri: String? = nil,
         streamsBody: Bool = false) {
        if streamsBody { bodySource = .stream(chunked: request.head.chunked) }
        self.client = client
        self.worker = client.worker
        self.retry = RetryPolicy(request.settings.proxy)
        self.response = client.worker.buffers.takeResponse()
        self.outgoing = client.worker.buffers.takeOutput()
        self.request = request
        self.pass = pass
        self.dynamicURI = uri
        // proxy_pass is a location directive, so a proxied request always has its location's route.
        let route = request.proxyRoute!
        self.balancer = balancer
        self.headers = route.headers
        self.upstreamTLS = route.tls
    }

    /// Borrowed, not copied: HTTPSettings is large and read several times per request.
    private var settings: HTTPSettings { _read { yield request.settings } }

    deinit {
        worker.buffers.giveResponse(response)
        worker.buffers.giveOutput(outgoing)
    }

    private var loop: EventLoop { worker.loop }

    func start() {
        if case .inline = bodySource, let file = client.requestBodyFile, settings.proxy.passRequestBody { bodySource = .file(file) }
        buildRequest()
        // Kept to send again on a retry when the body is not part of `outgoing`.
        if case .inline = bodySource {} else { requestHead = outgoing.bytes }
        next()
    }

    var isFinished: Bool { phase == .done }

    /// The client sent more of a streamed body: send it unless a send is already waiting on the socket.
    func bodyArrived() {
        if phase == .sending && outgoing.isEmpty { sendRequest() }
    }

    func bodyEnded() {
        clientBodyEnded = true
        bodyArrived()
    }

    /// Refills `outgoing` with the next piece of a body that is not inline; false when none is ready.
    private func refill() -> Bool {
        switch bodySource {
        case .inline:
            return false
        case .file(let file):
            guard bodySent < file.size else { return false }
            outgoing.clear()
            let piece = min(65536, file.size - bodySent)
            let n = outgoing.append(upTo: piece) { file.read(at: bodySent, count: piece, into: $0) }
            guard n > 0 else {
                bodyReadFailed = true
                return false
            }
            bodySent += n
            return true
        case .stream(let chunked):
            outgoing.clear()
            if !request.body.isEmpty {
                if chunked { outgoing.appendHex(request.body.count); outgoing.append("\r\n") }
                outgoing.append(request.body)
                if chunked { outgoing.append("\r\n") }
                bodySent += request.body.count
                request.body.removeAll(keepingCapacity: true)
                client.bodyDrained()
            }
            if clientBodyEnded && chunked && !lastChunkQueued {
                outgoing.append("0\r\n\r\n")
                lastChunkQueued = true
            }
            return !outgoing.isEmpty
        }
    }

    /// Whether the whole body has been handed to the upstream.
    private var bodyComplete: Bool {
        switch bodySource {
        case .inline: return true
        case .file(let file): return bodySent >= file.size
        case .stream: return clientBodyEnded && request.body.isEmpty
        }
    }

    /// Picks the next peer or answers 502 when none is left.
    private func next() {
        if let failedPeer = peer { tried.append(failedPeer) }
        if tried.isEmpty { firstAttemptMs = loop.now }
        guard let p = balancer.select(clientAddress: { client.remoteBytes }, hashKey: hashKey(), now: loop.now, tried: tried) else {
            if tried.isEmpty {
                worker.log.error("no live upstreams while connecting to upstream\(client.logContext(request)), upstream: \"http://\(balancer.name)\(request.head.target)\"")
            }
            giveUp(502)
            return
        }
        peer = p
        connect(p)
    }

    private func hashKey() -> String? {
        guard case .hash(let key, _) = balancer.method else { return nil }
        return key.render(request)
    }

    private func connect(_ p: Peer, allowCached: Bool = true) {
        phase = .connecting
        switch bodySource {
        case .inline:
            outgoing.rewind()
        case .file:
            outgoing.clear()
            outgoing.append(requestHead)
            bodySent = 0
        case .stream where bodySent == 0:
            // Nothing of the body is gone yet (canResend): the head goes again, and the last chunk with it.
            outgoing.clear()
            outgoing.append(requestHead)
            lastChunkQueued = false
        case .stream:
            outgoing.rewind()
        }
        bodyReadFailed = false
        startedUs = loop.nowUs
        request.upstreamAttempts.append(UpstreamAttempt(address: p.name))
        if allowCached, let pooled = balancer.pool?.take(p.address, for: self) {
            connection = pooled
            reused = true
            count(p)
            phase = .sending
            arm(settings.proxy.sendTimeout, .sending)
            sendRequest()
            return
        }
        reused = false
        noDelay = false
        let c = worker.upstreamConnections.take() ?? UpstreamConnection(loop: loop)
        c.delegate = self
        connection = c
        guard let address = p.socketAddress else { return failed(.error, "connect() failed (\(Errno.text(EINVAL)))") }
        switch c.connect(to: address, peer: p.address, delayAck: true, tls: tlsSetup(for: p)) {
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
        arm(settings.proxy.connectTimeout, .connecting)
    }

    /// The attempt counts in its peer's connections until its connection closes or is parked.
    private func count(_ p: Peer) {
        counted = true
        balancer.connected(p, delta: 1)
    }

    /// TLS to the upstream, inside proxy_connect_timeout as in nginx; the session of the peer's last
    /// connection is offered again (proxy_ssl_session_reuse); the name is checked as proxy_ssl_verify says.
    private func tlsSetup(for p: Peer) -> UpstreamTLSSetup? {
        guard let u = upstreamTLS else { return nil }
        let name = u.name.render(request)
        return UpstreamTLSSetup(context: u.context, serverName: u.sendsServerName ? UpstreamTLS.sniName(name) : nil,
                                session: u.sessionSlot(for: p), verification: .upstream(name: name))
    }

    /// What the running timeout waits for: its message is made only if it fires (a string stored per phase
    /// cost a release and a retain each time).
    private enum Waiting {
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
    private var waiting = Waiting.connecting

    /// Each phase re-arms the connection's timer for what it waits for.
    private func arm(_ ms: Int, _ what: Waiting) {
        waiting = what
        connection?.arm(after: ms)
    }

    private func disarm() { connection?.disarm() }

    func upstreamTimedOut() { failed(.timeout, waiting.message) }

    func upstreamFailed(_ failure: UpstreamConnection.Failure) {
        switch failure {
        case .connect(let e): failed(.error, "connect() failed (\(Errno.text(e))) while connecting to upstream")
        case .socket(let e): failed(.error, "socket() failed (\(Errno.text(e))) while connecting to upstream")
        case .handshake(let text), .verify(let text): failed(.error, "\(text) while SSL handshaking to upstream")
        }
    }

    func upstreamReady(_ events: UInt32) {
        noteReadiness(events)
        phase = .sending
        arm(settings.proxy.sendTimeout, .sending)
        sendRequest()
    }

    private func noteReadiness(_ events: UInt32) {
        if events & (Events.readable | Events.readHangup | Events.hangup | Events.error) != 0 { readReady = true }
        if events & (Events.readHangup | Events.hangup | Events.error) != 0 { hungUp = true }
    }

    func upstreamEvent(_ events: UInt32) {
        noteReadiness(events)
        switch phase {
        case .sending:
            if events & Events.writable != 0 { sendRequest() }
        case .readingHead, .relaying:
            readResponse()
        case .connecting, .done:
            break
        }
    }

    private func sendRequest() {
        while !outgoing.isEmpty || refill() {
            switch outgoing.flush(to: fd, tls: tls) {
            case .drained: continue
            case .wouldBlock:
                // A request too big for one send: let its last, short segment go without waiting for an
                // ACK (Nagle). A request that fits one send, the usual case, never needs the system call.
                if !noDelay {
                    var one: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    noDelay = true
                }
                return
            case .failed:
                failed(.error, "send() failed (\(Errno.text(errno))) while sending request to upstream")
                return
            }
        }
        if bodyReadFailed {
            return failed(.error, "pread() of the request body's temporary file failed while sending request to upstream")
        }
        // The rest of a streamed body is still on its way from the client (client_body_timeout runs meanwhile).
        guard bodyComplete else { return disarm() }
        phase = .readingHead
        arm(settings.proxy.readTimeout, .readingHead)
        // Its edge may have come while we were still connecting or sending; over TLS the handshake may also
        // have read past its own records, so look at once.
        if readReady || tls != nil { readResponse() }
    }

    private func readResponse() {
        readReady = false
        while phase == .readingHead || phase == .relaying {
            if paused { return }
            let n = response.receive(from: fd, tls: tls, limit: 65536)
            if n > 0 {
                if phase == .readingHead { parseHead() } else { relay() }
                // A short read emptied the socket: the next bytes, or the close, bring a new edge. Not so
                // over TLS, where a short read ends a record and more may wait: read on to EAGAIN.
                if response.drained && tls == nil && !hungUp && !paused {
                    if phase == .relaying { armBodyReadTimeout() }
                    return
                }
                continue
            }
            if n == -2 { if phase == .readingHead { failed(.invalidHeader, "upstream sent too big header while reading response header from upstream") }; return }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                // As in nginx, proxy_read_timeout bounds the whole head but only the wait between two reads of the body.
                if phase == .relaying { armBodyReadTimeout() }
                return
            }
            // EOF or error.
            if phase == .readingHead {
                let msg = n == 0 ? "upstream prematurely closed connection while reading response header from upstream"
                    : "recv() failed (\(Errno.text(errno))) while reading response header from upstream"
                failed(response.isEmpty ? .error : .invalidHeader, msg)
            } else if bodyRemaining == nil && decoder == nil {
                finish()   // close-delimited body ends here
            } else {
                worker.log.error("upstream prematurely closed connection while reading upstream, client: \(client.remoteAddress), upstream: \"\(peer?.address.description ?? "")\"")
                finish(abortClient: true)
            }
            return
        }
    }

    private func parseHead() {
        let result = response.withReadable { ResponseParser.parse($0, fields: &worker.responseFields) }
        switch result {
        case .incomplete:
            return
        case .invalid(let reason):
            failed(.invalidHeader, "\(reason) while reading response header from upstream")
        case .complete(let h, let consumed):
            if retry.retriesStatus(h.status), canRetry(.status(h.status)) {
                failed(.status(h.status), nil)
                return
            }
            // proxy_intercept_errors: an upstream error that has an error_page is answered with that page.
            if h.status >= 300, settings.proxy.interceptErrors, !request.inErrorPage,
               settings.core.errorPages.contains(where: { $0.codes.contains(h.status) }) ?? false {
                request.upstreamAttempts.updateLast(status: h.status)
                recordAttempt(status: nil)
                if let p = peer { balancer.finished(p, failed: false, now: loop.now) }
                phase = .done
                closeUpstream()
                client.respondError(h.status)
                return
            }
            head = h
            // The header lines are copied before they are consumed.
            response.withReadable { startRelay(h, fields: worker.responseFields, parsed: $0) }
            response.consume(consumed)
            armBodyReadTimeout()
            relay()
        }
    }

    /// Sets up the body's framing and queues the client's response head, its header lines (`fields`) copied
    /// from the upstream's bytes (`parsed`) as they are.
    private func startRelay(_ h: ResponseHead, fields: [HeaderField], parsed: UnsafeRawBufferPointer) {
        phase = .relaying
        request.upstreamAttempts.updateLast(status: h.status)
        request.status = h.status
        let isHead = request.head.method == "HEAD"
        // A body of unknown length is chunked for HTTP/1.1 clients unless chunked_transfer_encoding is off;
        // otherwise the connection's close ends it.
        let canChunk = request.head.isHTTP11 && settings.core.chunkedTransferEncoding
        if !h.hasBody || isHead {
            bodyRemaining = 0
        } else if h.chunked {
            decoder = ChunkedDecoder()
            if canChunk {
                passChunked = true
            } else {
                client.setKeepAlive(false)
            }
        } else if let len = h.contentLength {
            bodyRemaining = len
        } else {
            client.setKeepAlive(false)   // close-delimited: the client learns the end from our close
        }
        // gzip, decided on the upstream's head: the body is then decoded from the upstream's framing,
        // compressed, and sent in chunks of our own (to an HTTP/1.0 client: until the connection closes).
        var contentType: Range<Int>?, encoded = false
        for f in fields where settings.gzip.on {
            if RequestParser.matches(parsed[f.name], lowercase: "content-type") { contentType = f.value }
            if RequestParser.matches(parsed[f.name], lowercase: "content-encoding") && !parsed[f.value].isEmpty { encoded = true }
        }
        let compressible = contentType.map {
            GzipPolicy.eligible(request, status: h.status, contentType: UnsafeRawBufferPointer(rebasing: parsed[$0]),
                                contentLength: h.contentLength, encoded: encoded)
        } ?? false
        let gzipping = compressible && h.hasBody && !isHead && GzipPolicy.accepted(request)
            && client.startGzip(level: settings.gzip.compLevel, length: h.contentLength, chunked: canChunk)
        if gzipping {
            passChunked = false
            if !canChunk { client.setKeepAlive(false) }
        }
        let vary = compressible && (settings.gzip.vary)
        let chunked = passChunked || (gzipping && canChunk)
        let hidden = settings.proxy.hideHeaders, passed = settings.proxy.passHeaders
        func relayed(_ name: String) -> Bool {
            passed.contains(name) && fields.contains { ProxyHeaders.named(parsed[$0.name], name) }
        }
        let upstreamSent = (server: relayed("server"), date: relayed("date"))
        client.queueHead(status: h.status, upstreamSent: upstreamSent) { out in
            for f in fields where ProxyHeaders.passes(parsed[f.name], hidden: hidden, passed: passed)
                && !(gzipping && RequestParser.matches(parsed[f.name], lowercase: "content-length")) {
                out.append(UnsafeRawBufferPointer(rebasing: parsed[f.name]))
                out.append(": ")
                let isLocation = RequestParser.matches(parsed[f.name], lowercase: "location")
                if isLocation || RequestParser.matches(parsed[f.name], lowercase: "refresh") {
                    let value = String(decoding: parsed[f.value], as: UTF8.self)
                    let rewritten = redirected(value) ?? value
                    // A Location that is a path is made absolute, as for nginx's own redirects.
                    out.append(isLocation ? client.absolute(rewritten) : rewritten)
                } else {
                    out.append(UnsafeRawBufferPointer(rebasing: parsed[f.value]))
                }
                out.append("\r\n")
            }
            if gzipping { out.append("Content-Encoding: gzip\r\n") }
            if vary { out.append("Vary: Accept-Encoding\r\n") }
            if chunked { out.append("Transfer-Encoding: chunked\r\n") }
        }
    }

    /// proxy_redirect on a Location or Refresh value: the first rule whose prefix it starts with replaces that
    /// prefix. `default` (nginx's default) maps the proxy_pass URL to the location's prefix, so a backend
    /// that redirects to `http://backend/login` (the Host it was sent) sends the client to `/login`.
    private func redirected(_ value: String) -> String? {
        for rule in settings.proxy.redirects {
            switch rule {
            case .off:
                return nil
            case .default:
                // As in nginx, `default` has nothing to map when proxy_pass takes its URL from variables.
                guard let loc = request.location, case .proxy(let p) = loc.content else { continue }
                if case .variable = p.target { continue }
                let base = "\(p.scheme)://\(p.hostHeader)"
                let (prefix, replacement) = p.uri.map { (base + $0, loc.pattern) } ?? (base + "/", "/")
                // Refresh carries "5; url=…": the URL is rewritten where it stands.
                if let r = value.firstRange(of: prefix), value.hasPrefix(prefix) || value[..<r.lowerBound].hasSuffix("url=") {
                    var v = value
                    v.replaceSubrange(r, with: replacement)
                    return v
                }
            case .rule(let prefix, let replacement):
                if value.hasPrefix(prefix) { return replacement.render(request) + value.dropFirst(prefix.count) }
            case .regex(let re, let replacement):
                if let m = re.match(value) {
                    Program.take(m, of: re, request)
                    return replacement.render(request)
                }
            }
        }
        return nil
    }

    /// Re-armed after each read of the body (nginx: the timeout runs only between two successive reads).
    /// While reading is paused for a backed-up client it does not run: the client's send_timeout does.
    private func armBodyReadTimeout() {
        arm(settings.proxy.readTimeout, .readingBody)
    }

    /// Moves response bytes to the client; pauses reading the upstream while the client is backed up.
    private func relay() {
        guard phase == .relaying else { return }
        if response.isEmpty {
            if bodyRemaining == 0 { finish() }
            return
        }
        var done = false
        var keepGoing = true
        if var d = decoder {
            let event = response.withReadable { buf -> ChunkedDecoder.Event in
                d.feed(buf) { range in
                    if !passChunked { keepGoing = client.sendBody(UnsafeRawBufferPointer(rebasing: buf[range])) && keepGoing }
                }
            }
            decoder = d
            var consumed = response.readable
            switch event {
            case .end(let c): consumed = c; done = true
            case .error:
                worker.log.error("upstream sent invalid chunked response while reading upstream, client: \(client.remoteAddress)")
                finish(abortClient: true)
                return
            case .data: break
            }
            if passChunked {
                response.withReadable { keepGoing = client.sendStreaming(UnsafeRawBufferPointer(rebasing: $0[0..<consumed])) }
            }
            response.consume(consumed)
        } else if let remaining = bodyRemaining {
            let take = min(remaining, response.readable)
            response.withReadable { keepGoing = client.sendBody(UnsafeRawBufferPointer(rebasing: $0[0..<take]), last: take == remaining) }
            response.consume(take)
            bodyRemaining = remaining - take
            done = bodyRemaining == 0
        } else {
            response.withReadable { keepGoing = client.sendBody($0) }
            response.consume(response.readable)
        }
        if done { finish(); return }
        if !keepGoing {
            paused = true
            disarm()
            client.onDrain = { [weak self] in self?.resume() }
        }
    }

    private func resume() {
        guard paused, phase == .relaying else { return }
        paused = false
        client.onDrain = nil
        readResponse()
    }

    /// Whether the failed attempt may go on to another peer: proxy_next_upstream names the failure, a peer is
    /// left, the tries and proxy_next_upstream_timeout allow one more, and no streamed body byte is gone.
    private func canRetry(_ failure: Failure) -> Bool {
        canResend && retry.covers(failure, method: request.head.method, requestSent: outgoing.sent > 0)
            && tried.count + 1 < balancer.peerCount
            && retry.allowsAnother(after: tried.count + 1, startedMs: firstAttemptMs, nowMs: loop.now)
    }

    /// A peer failed before the response started: account it and try the next one or answer 502/504.
    private func failed(_ failure: Failure, _ message: String?) {
        guard phase != .done else { return }
        // A cached connection the upstream had closed: not the peer's fault, try again on a fresh one.
        if reused, let p = peer, phase == .sending || (phase == .readingHead && response.isEmpty), !failure.isTimeout, canResend {
            request.upstreamAttempts.removeLast()
            closeUpstream()
            connect(p, allowCached: false)
            return
        }
        if let message {
            worker.log.error("\(message)\(client.logContext(request)), upstream: \"\(pass.scheme)://\(peer?.address.description ?? "")\(request.head.target)\"")
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
        } else {
            giveUp(failure.isTimeout ? 504 : 502)
        }
    }

    /// Whether the request can go again from its first byte: not once streamed body bytes are gone.
    private var canResend: Bool {
        if case .stream = bodySource { return bodySent == 0 }
        return true
    }

    private func giveUp(_ status: Int) {
        phase = .done
        disarm()
        client.respondError(status)
    }

    private func finish(abortClient: Bool = false) {
        guard phase != .done else { return }
        phase = .done
        disarm()
        recordAttempt(status: nil)
        if let p = peer { balancer.finished(p, failed: false, now: loop.now) }
        if !abortClient, let pool = balancer.pool, let c = connection, let h = head, h.versionMinor >= 1, !h.connectionClose,
           !(bodyRemaining == nil && decoder == nil && h.hasBody && request.head.method != "HEAD"), response.isEmpty {
            // The whole response was read and the upstream keeps the connection: park it.
            uncount()
            connection = nil
            pool.put(c)
        }
        closeUpstream()
        if abortClient { client.close(); return }
        client.finishBody()
        client.completeResponse()
    }

    /// Closes the current attempt's record: its time and, for a failure, the status it stands for.
    private func recordAttempt(status: Int?) {
        guard !request.upstreamAttempts.isEmpty else { return }
        request.upstreamAttempts.updateLast(status: status, elapsedUs: loop.nowUs - startedUs)
    }

    private func uncount() {
        guard counted, let p = peer else { return }
        counted = false
        balancer.connected(p, delta: -1)
    }

    private func closeUpstream() {
        uncount()
        if let c = connection {
            c.close()
            worker.upstreamConnections.give(c)
            connection = nil
        }
        response.consume(response.readable)
        readReady = false
        hungUp = false
        head = nil
        decoder = nil
        bodyRemaining = nil
        passChunked = false
        paused = false
        reused = false
    }

    /// The client went away: drop the upstream side.
    func abort() {
        phase = .done
        closeUpstream()
    }

    /// nginx's request to the upstream: HTTP/1.0 (or proxy_http_version), Host $proxy_host,
    /// Connection close, proxy_set_header values, then the client's end-to-end headers.
    /// Writes the request head (and an inline body) into `outgoing`.
    private func buildRequest() {
        var uri = request.target
        if let dynamicURI {
            uri = dynamicURI
        } else if let passURI = pass.uri, let loc = request.location {
            // Only prefix and exact locations may give proxy_pass a URI: it replaces the part the location matched.
            let rest = request.uri.dropFirst(min(loc.pattern.utf8.count, request.uri.utf8.count))
            uri = passURI + rest + (request.args.map { "?" + $0 } ?? "")
        }
        let passBody = settings.proxy.passRequestBody
        let body = passBody ? request.body : []
        let out = outgoing
        out.clear()
        out.append(settings.proxy.method ?? request.method)
        out.append(" ")
        out.append(uri)
        out.append(" HTTP/")
        out.append(settings.proxy.httpVersion.rawValue)
        out.append("\r\n")
        // Elements read in place: binding a (name, value) tuple per header retained and released both strings.
        headers.set.withUnsafeBufferPointer { set in
            for i in set.indices {
                let value = set[i].1.render(request)
                if !value.isEmpty { out.header(set[i].0, value) }
            }
        }
        if settings.proxy.passRequestHeaders {
            // The head's fields read directly: a method called on `request.head` copies the whole head.
            let fields = request.head.fields
            request.head.block.withUnsafeBytes { bytes in
                for f in fields {
                    let name = UnsafeRawBufferPointer(rebasing: bytes[f.name])
                    if !headers.skips(name) { out.header(name, UnsafeRawBufferPointer(rebasing: bytes[f.value])) }
                }
            }
        }
        switch bodySource {
        case .inline:
            if request.head.hasBody || !body.isEmpty { out.header("Content-Length", body.count) }
            out.append("\r\n")
            out.append(body)
        case .file(let file):
            out.header("Content-Length", file.size)
            out.append("\r\n")
        case .stream(let chunked):
            if chunked { out.header("Transfer-Encoding", "chunked") } else { out.header("Content-Length", request.head.contentLength ?? 0) }
            out.append("\r\n")
        }
    }
}

extension ProxySession.Failure {
    var isTimeout: Bool { if case .timeout = self { return true } else { return false } }
}

/// `Host $proxy_host` and `Connection close` (nginx's defaults) overridden by `proxy_set_header`, and the
/// client headers that are not passed on: hop-by-hop ones, framing, and those set here.
struct ProxyHeaders {
    /// Names with their values compiled once.
    let set: [(String, Template)]
    private let skipped: [String]

    init(_ configured: [HeaderSetting]) {
        var set: [(String, Template)] = [("Host", ProxyHeaders.proxyHost), ("Connection", ProxyHeaders.close)]
        for h in configured {
            if let i = set.firstIndex(where: { $0.0.lowercased() == h.name.lowercased() }) { set[i] = (h.name, h.value) } else { set.append((h.name, h.value)) }
        }
        self.set = set
        skipped = set.map { $0.0.lowercased() } + ["keep-alive", "te", "upgrade", "proxy-connection",
                                                   "transfer-encoding", "content-length", "expect"]
    }

    /// nginx's defaults: `Host $proxy_host` and `Connection close`.
    private static let proxyHost: Template = {
        let t = Template("$proxy_host")
        t.resolve(VariableTable())
        return t
    }()
    private static let close = Template("close")

    /// A handful of names, compared in place: cheaper than lowercasing each client header for a set lookup.
    func skips(_ name: UnsafeRawBufferPointer) -> Bool { skipped.contains { RequestParser.equalsIgnoringASCIICase(name, $0) } }

    /// Whether an upstream header goes to the client: not hop-by-hop or nginx's own (unless proxy_pass_header
    /// names it), and not named by proxy_hide_header.
    static func passes(_ name: Slice<UnsafeRawBufferPointer>, hidden: [String]?, passed: [String]?) -> Bool {
        if let hidden, hidden.contains(where: { named(name, $0) }) { return false }
        guard dropsFromResponse(name) else { return true }
        return passed?.contains(where: { named(name, $0) }) ?? false
    }

    /// A header name compared with a lowercase one from the configuration, in place.
    static func named(_ name: Slice<UnsafeRawBufferPointer>, _ lower: String) -> Bool {
        guard name.count == lower.utf8.count else { return false }
        var i = name.startIndex
        for c in lower.utf8 {
            let b = name[i]
            if (b | (b >= 0x41 && b <= 0x5A ? 0x20 : 0)) != c { return false }
            i += 1
        }
        return true
    }

    /// Upstream response headers nginx does not pass on: hop-by-hop ones, those it sets itself (Server,
    /// Date), X-Pad and the five X-Accel-* headers it would act on (others, X-Accel-Info say, go through).
    /// Compared in place, without lowercasing a copy of each name.
    static func dropsFromResponse(_ b: Slice<UnsafeRawBufferPointer>) -> Bool {
        func named(_ lower: StaticString) -> Bool { RequestParser.matches(b, lowercase: lower) }
        switch b.count {
        case 4: return named("date")
        case 5: return named("x-pad")
        case 6: return named("server")
        case 7: return named("upgrade")
        case 10: return named("connection") || named("keep-alive")
        case 15: return named("x-accel-expires") || named("x-accel-charset")
        case 16: return named("proxy-connection") || named("x-accel-redirect")
        case 17: return named("transfer-encoding") || named("x-accel-buffering")
        case 18: return named("x-accel-limit-rate")
        default: return false
        }
    }
}

/// What a `proxy_pass` location needs per request, prepared once per worker.
/// A class: each request reads it, and copying a struct of references retained each of them.
final class ProxyRoute {
    /// nil for `proxy_pass` with variables: the balancer is chosen per request.
    let balancer: UpstreamBalancer?
    let headers: ProxyHeaders
    let tls: UpstreamTLS?

    init(balancer: UpstreamBalancer?, headers: ProxyHeaders, tls: UpstreamTLS?) {
        self.balancer = balancer
        self.headers = headers
        self.tls = tls
    }
}

/// A `proxy_pass https://` location's TLS: its context, the name it verifies and may send in SNI, and the
/// last session of each peer (nginx keeps one per peer for proxy_ssl_session_reuse).
final class UpstreamTLS {
    let context: TLSClientContext
    /// proxy_ssl_name, else the host of proxy_pass ($proxy_host).
    let name: Template
    let sendsServerName: Bool
    private var sessions: [PeerAddress: TLSSessionSlot] = [:]

    init(context: TLSClientContext, settings: HTTPSettings, pass: ProxyPass, variables: VariableTable?) {
        self.context = context
        name = settings.proxySSL.name ?? {
            let t = Template(pass.hostText)
            t.resolve(variables ?? VariableTable())
            return t
        }()
        sendsServerName = settings.proxySSL.serverName
    }

    func sessionSlot(for peer: Peer) -> TLSSessionSlot? {
        guard context.sessionReuse else { return nil }
        if let s = sessions[peer.address] { return s }
        // Peers named by variables come and go: the table stays bounded.
        if sessions.count >= 1024 { sessions.removeAll() }
        let s = TLSSessionSlot()
        sessions[peer.address] = s
        return s
    }

    /// SNI carries a host name only (RFC 6066): no port, no address literal.
    static func sniName(_ name: String) -> String? {
        var host = Substring(name)
        if host.hasPrefix("[") { return nil }
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        var v4 = in_addr()
        return host.isEmpty || inet_pton(AF_INET, String(host), &v4) == 1 ? nil : String(host)
    }
}

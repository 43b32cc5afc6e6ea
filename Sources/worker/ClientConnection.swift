#if canImport(Glibc)
import Glibc
#endif
import CShim
import Core
import Config
import DNS
import Event
import Gzip
import Upstream
import HTTP
import Script
import TLS

/// The worker's client connections, so that shutdown can close idle ones and count the rest.
final class ConnectionSet {
    unowned let worker: WorkerProcess
    /// Indexed by fd, as nginx's connection array: a slot costs 8 bytes, a dictionary entry several times that.
    private var open: [ClientConnection?] = []
    private(set) var count = 0
    private var serial = 0

    init(worker: WorkerProcess) { self.worker = worker }

    func accept(fd: Int32, peer: sockaddr_storage, listening: ListeningSocket) {
        worker.counters.add(.accepted)
        if count >= worker.config.workerConnections {
            worker.log.alert("\(worker.config.workerConnections) worker_connections are not enough")
            close(fd)
            return
        }
        worker.counters.add(.handled)
        serial += 1
        let c = ClientConnection(fd: fd, peer: peer, listening: listening, worker: worker, serial: serial)
        do {
            try worker.loop.register(fd: fd, events: Events.readable | Events.readHangup, handler: c)
        } catch {
            worker.log.alert("\(error)")
            close(fd)
            return
        }
        if Int(fd) >= open.count { open += Array(repeating: nil, count: Int(fd) + 64 - open.count) }
        open[Int(fd)] = c
        count += 1
        worker.counters.add(.active)
        c.start()
    }

    func closed(_ c: ClientConnection) {
        open[Int(c.fd)] = nil
        count -= 1
        worker.counters.add(.active, -1)
        worker.stopIfDrained()
    }

    func closeIdle() { for case let c? in open where c.isIdle { c.close() } }
    func closeAll() { for case let c? in open { c.close() } }
}

/// One client connection: HTTP/1.x keep-alive with pipelined requests answered in order.
final class ClientConnection: EventHandler {
    enum State { case handshake, head, body, handling, lingering, closed }

    let fd: Int32
    let listening: ListeningSocket
    /// unowned(unsafe) here and in ProxySession and the timers' actions: the worker outlives every
    /// connection, a connection its session, and a connection cancels its timers when it closes; checked
    /// unowned references cost an atomic increment and decrement on every use (1% of a busy worker).
    unowned(unsafe) let worker: WorkerProcess
    let serial: Int
    let remoteAddress: String
    let remotePort: UInt16
    let isIPv6: Bool
    /// The client's address as bytes (ip_hash, allow/deny), made when asked for: an idle connection holds
    /// no array for it.
    var remoteBytes: [UInt8] { ClientConnection.addressBytes(remoteAddress, isIPv6: isIPv6) }

    /// Taken from the worker's pool on first use and given back, storage and all, when the connection goes
    /// idle on keep-alive: an idle connection holds neither buffer object nor storage, as nginx frees a
    /// request's buffers in ngx_http_set_keepalive, and a busy one allocates neither.
    private var inputBuffer: ByteBuffer? { didSet { worker.buffers.held += (inputBuffer == nil ? 0 : 1) - (oldValue == nil ? 0 : 1) } }
    private var input: ByteBuffer {
        if let b = inputBuffer { return b }
        let b = worker.buffers.takeInput(capacity: defaultScope.settings.core.clientHeaderBufferSize)
        inputBuffer = b
        return b
    }
    private var outputQueue: OutputQueue? { didSet { worker.buffers.held += (outputQueue == nil ? 0 : 1) - (oldValue == nil ? 0 : 1) } }
    var output: OutputQueue {
        if let q = outputQueue { return q }
        let q = worker.buffers.takeOutput()
        outputQueue = q
        return q
    }
    /// Bytes received and not yet consumed (none when there is no buffer).
    private var hasInput: Bool { !(inputBuffer?.isEmpty ?? true) }
    private var state = State.head
    /// Set once the handshake starts on a `listen … ssl` address; every read and write then goes through it.
    private(set) var tls: TLSStream?
    /// A plain HTTP request arrived on a TLS address: it is read, then answered with nginx's 400 page.
    private var plainOnTLSPort = false
    private var interest: UInt32 = Events.readable | Events.readHangup
    private var timer: Timer?
    private(set) var requestsServed = 0
    private var noDelay = false
    private func setNoDelay() {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        noDelay = true
    }

    /// For keepalive_time: a connection older than that closes after its current request.
    private let openedAt: UInt64
    private(set) var request: RequestContext?
    private var keepAlive = false
    private var bodyRemaining = 0
    private var chunked: ChunkedDecoder?
    private var sawFirstByte = false
    /// The answer went out before the request body was read (413, 400 on a bad chunk): linger on close.
    private var unreadBody = false
    // The body's reading state lives in the request (RequestContext): an idle connection holds none of it.
    private var bodyPending: Bool { get { request?.bodyPending ?? false } set { request?.bodyPending = newValue } }
    private var afterBody: (() -> Void)? { get { request?.afterBody } set { request?.afterBody = newValue } }
    private var bodySink: ProxySession? { get { request?.bodySink } set { request?.bodySink = newValue } }
    private var bodyPaused: Bool { get { request?.bodyPaused ?? false } set { request?.bodyPaused = newValue } }
    private var bodyReceived: Int { get { request?.bodyReceived ?? 0 } set { request?.bodyReceived = newValue } }
    private var bodyFile: BodyFile? { get { request?.bodyFile } set { request?.bodyFile = newValue } }
    private var countedReading = false
    /// Called when the output queue drains (a proxied body waiting on a slow client).
    var onDrain: (() -> Void)?
    /// Set once the response for the current request is fully queued.
    private var responseComplete = false
    var proxy: ProxySession?

    init(fd: Int32, peer: sockaddr_storage, listening: ListeningSocket, worker: WorkerProcess, serial: Int) {
        self.fd = fd
        self.listening = listening
        self.worker = worker
        self.serial = serial
        openedAt = worker.loop.now
        var p = peer
        (remoteAddress, remotePort, isIPv6) = ClientConnection.describe(&p)
        // Before the Host header is known, nginx reads the head with the default server's settings
        // (client_header_buffer_size, large_client_header_buffers, client_header_timeout may be set per server).
        defaultScope = worker.router.server(for: listening.listen.address, host: nil).map { worker.scope(server: $0, location: nil) }
            ?? worker.httpScope
    }

    deinit { worker.buffers.held -= (inputBuffer == nil ? 0 : 1) + (outputQueue == nil ? 0 : 1) }

    var isIdle: Bool { state == .head && !hasInput && request == nil }

    /// The default server for this address: its settings govern reading request heads.
    private let defaultScope: SettingsScope
    private var settings: HTTPSettings { _read { yield defaultScope.settings } }
    private var limits: RequestLimits {
        let large = settings.core.largeClientHeaderBuffers
        return RequestLimits(maxLineLength: large.size, maxHeadLength: large.count * large.size)
    }

    func start() {
        if listening.listen.ssl { state = .handshake }
        arm(UInt64(settings.core.clientHeaderTimeout))
    }

    /// One timer per connection, re-armed for each phase (header, body, keep-alive, lingering).
    private func arm(_ ms: UInt64) {
        if timer == nil { timer = worker.loop.makeTimer { [unowned(unsafe) self] in self.timedOut() } }
        timer!.rearm(after: ms)
    }

    private func timedOut() {
        if state == .lingering { return close() }
        if state == .handshake {
            worker.log.info("client timed out (110: Connection timed out) while SSL handshaking, client: \(remoteAddress), server: \(listening.listen.address)")
            return close()
        }
        if state == .handling {
            // send_timeout: the client took no bytes for that long (nginx logs it at info, like the others).
            worker.log.info("client timed out (110: Connection timed out) while sending to client, client: \(remoteAddress)")
            if let r = request { logAccess(r) }
            return close()
        }
        if state == .head && !sawFirstByte && requestsServed > 0 {
            close()   // keep-alive timeout: silent, as nginx
            return
        }
        worker.log.info("client timed out (110: Connection timed out) while \(state == .head ? "reading client request headers" : "reading client request body"), client: \(remoteAddress)")
        if let r = request { r.status = 408; logAccess(r) }
        close()
    }

    // MARK: events

    func handleEvent(_ events: UInt32) {
        if state == .closed { return }
        if state == .handshake { return handshake() }
        if events & Events.writable != 0 { writable() }
        if state == .closed { return }
        if events & (Events.readable | Events.readHangup | Events.error | Events.hangup) != 0 { readable() }
    }

    /// nginx's ngx_http_ssl_handshake: the first byte tells a TLS record (0x16, or 0x80 for an SSLv2-style
    /// hello) from a plain HTTP request sent to the TLS port; then the handshake runs on readiness events.
    private func handshake() {
        if tls == nil {
            var first: UInt8 = 0
            let n = recv(fd, &first, 1, Int32(MSG_PEEK))
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            guard n > 0 else { return close() }
            if first != 0x16 && first != 0x80 {
                plainOnTLSPort = true
                state = .head
                return readable()
            }
            guard let server = worker.router.server(for: listening.listen.address, host: nil),
                  let context = worker.tls.context(for: server), let stream = TLSStream(accepting: fd, context: context) else {
                worker.log.alert("SSL_new() failed, client: \(remoteAddress), server: \(listening.listen.address)")
                return close()
            }
            stream.nameHandler = self
            tls = stream
            // As nginx (tcp_nodelay on): the session tickets that end a TLS 1.3 handshake are still unacknowledged
            // when the first response goes out, and Nagle would hold that response for the client's delayed ACK.
            if settings.core.tcpNodelay { setNoDelay() }
        }
        switch tls!.handshake() {
        case .done:
            state = .head
            setInterest(reading: true, writing: false)
            readable()   // the first request may have come with the client's Finished
        case .wantRead:
            setInterest(reading: true, writing: false)
        case .wantWrite:
            setInterest(reading: false, writing: true)
        case .failed:
            worker.log.info("\(tls!.failure) while SSL handshaking, client: \(remoteAddress), server: \(listening.listen.address)")
            close()
        }
    }

    private func readable() {
        if state == .lingering { discardInput(); return }
        guard state == .head || state == .body else {
            // Busy with a response: stop watching input until it is done (pipelined bytes wait in the kernel).
            setInterest(reading: false)
            return
        }
        if bodyPaused { return setInterest(reading: false) }
        let limit = state == .head ? limits.maxHeadLength + 1 : max(65536, input.readable + 65536)
        while state == .head || state == .body && !bodyPaused {
            let n = input.receive(from: fd, tls: tls, limit: limit)
            if n > 0 {
                sawFirstByte = true
                if state == .head { startReading() }
                process()
                // Drained, or answered and gone idle with its buffer back in the pool: being level-triggered,
                // more input brings another event.
                if inputBuffer?.drained ?? true { return }
                continue
            }
            if n == -2 { process(); return }
            if n == 0 {
                // Client closed. Anything half-read is dropped (nginx logs 400 only if bytes arrived).
                close()
                return
            }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            close()
            return
        }
    }

    private func writable() {
        switch outputQueue?.flush(to: fd, tls: tls) ?? .drained {
        case .failed:
            close()
        case .wouldBlock:
            setInterest(writing: true)
            armSendTimeout()
        case .drained:
            setInterest(writing: false)
            if state == .handling { timer?.cancel() }
            if let d = onDrain { d() }
            if responseComplete { finishRequest() }
        }
    }

    private func setInterest(reading: Bool? = nil, writing: Bool? = nil) {
        var want = interest
        if let r = reading { want = r ? want | Events.readable : want & ~Events.readable }
        if let w = writing { want = w ? want | Events.writable : want & ~Events.writable }
        if want != interest {
            interest = want
            try? worker.loop.modify(fd: fd, events: want)
        }
    }

    // MARK: request head and body

    private func process() {
        while state == .head || state == .body {
            if state == .head {
                if !hasInput { return }
                let result = input.withReadable { RequestParser.parse($0, limits: limits, storage: HeadStorage(block: worker.headBlocks.take(), fields: worker.fieldLists.take())) }
                // Consumed, so that the head moves into the request instead of being copied (and every string
                // in it retained).
                switch consume result {
                case .incomplete:
                    return
                case .failure(let status, let reason):
                    worker.log.info("\(reason) while reading client request headers, client: \(remoteAddress)")
                    failBeforeRouting(status)
                    return
                case .complete(let head, let consumed):
                    input.consume(consumed)
                    begin(head, length: consumed)
                }
            } else {
                readBody()
                // The rest of the body has not arrived yet: wait for the socket, do not spin.
                if state == .body { return }
            }
        }
    }

    private func failBeforeRouting(_ status: Int) {
        stopReading()
        worker.counters.add(.writing)
        let head = RequestHead(method: "-", target: "-", path: "/", query: nil, versionMajor: 1, versionMinor: 1,
                               host: nil, contentLength: nil, keepAlive: false)
        let server = worker.router.server(for: listening.listen.address, host: nil)
        guard let server else { close(); return }
        request = RequestContext(head: head, server: server, location: nil,
                                 scope: worker.scope(server: server, location: nil), connection: self, requestLength: input.readable)
        state = .handling
        respondError(status, close: true)
    }

    private func begin(_ parsed: consuming RequestHead, length: Int) {
        stopReading()
        worker.counters.add(.writing)
        guard let (server, nameMatch) = worker.router.route(listening.listen.address, host: parsed.host) else { close(); return }
        let location = worker.router.location(in: server, path: parsed.path)
        let r = RequestContext(head: parsed, server: server, location: location,
                               scope: worker.scope(server: server, location: location), connection: self, requestLength: length)
        if let (re, m) = nameMatch { Program.take(m, of: re, r) }
        request = r
        if plainOnTLSPort {
            worker.log.info("client sent plain HTTP request to HTTPS port while reading client request headers\(logContext(r))")
            unreadBody = r.head.hasBody
            state = .handling
            respondError(497, close: true)
            return
        }
        keepAlive = r.head.keepAlive && !worker.isShuttingDown && (r.settings.core.keepaliveTimeout) > 0
            && requestsServed + 1 < (r.settings.core.keepaliveRequests)
            && worker.loop.now - openedAt < UInt64(r.settings.core.keepaliveTime)
        responseComplete = false

        if case let limit = r.settings.core.clientMaxBodySize, limit > 0, let len = r.head.contentLength, len > limit {
            worker.log.error("client intended to send too large body: \(len) bytes\(logContext(r))")
            unreadBody = true
            state = .handling
            respondError(413, close: true)
            return
        }
        if r.head.hasBody {
            bodyRemaining = r.head.contentLength ?? 0
            chunked = r.head.chunked ? ChunkedDecoder() : nil
            if !r.settings.proxy.requestBuffering, case .proxy = r.location?.content ?? r.server.content {
                bodyPending = true
                state = .handling
                timer?.cancel()
                dispatch()
            } else {
                readBody(r, then: nil)
            }
        } else {
            state = .handling
            timer?.cancel()
            dispatch()
        }
    }

    /// client_body_timeout: it runs between two reads of the body, as nginx's.
    private func armBodyTimeout(_ r: RequestContext) { arm(UInt64(r.settings.core.clientBodyTimeout)) }

    /// Starts reading the body (nginx's ngx_http_read_client_request_body); `then` runs when it is complete.
    private func readBody(_ r: RequestContext, then: (() -> Void)?) {
        if r.head.expectContinue && r.head.isHTTP11 { output.append("HTTP/1.1 100 Continue\r\n\r\n") }
        if !output.isEmpty { writable() }
        guard state != .closed else { return }   // the 100 Continue found the client gone
        afterBody = then
        state = .body
        armBodyTimeout(r)
        readBody()
    }

    /// Takes the body bytes that have arrived (bounded by client_max_body_size): into the request, past
    /// client_body_buffer_size into a temporary file, or, streaming, to the proxied request. When the body
    /// is complete the handler waiting for it (or the phases) runs.
    private func readBody() {
        guard let r = request else { return }
        let limit = r.settings.core.clientMaxBodySize
        let before = r.body.count, received = bodyReceived
        if var decoder = chunked {
            let event = input.withReadable { buf -> ChunkedDecoder.Event in
                decoder.feed(buf) { range in r.body.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[range])) }
            }
            chunked = decoder
            switch event {
            case .error(let reason):
                worker.log.info("\(reason), client: \(remoteAddress)")
                return bodyFailed(400)
            case .end(let consumed):
                input.consume(consumed)
            case .data:
                input.consume(input.readable)
            }
            bodyReceived += r.body.count - before
            if limit > 0 && bodyReceived > limit {
                worker.log.error("client intended to send too large chunked body: \(bodyReceived) bytes\(logContext(r))")
                return bodyFailed(413)
            }
        } else {
            let take = min(bodyRemaining, input.readable)
            if take > 0 {
                input.withReadable { r.body.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[0..<take])) }
                input.consume(take)
                bodyRemaining -= take
                bodyReceived += take
            }
        }
        let complete = chunked?.isDone ?? (bodyRemaining == 0)
        if let sink = bodySink {
            if complete {
                state = .handling
                timer?.cancel()
                bodySink = nil
                sink.bodyEnded()
                return
            }
            sink.bodyArrived()
            guard state == .body else { return }
            if r.body.count >= 65536 {
                // Held back by the upstream: client_body_timeout waits until reading resumes.
                bodyPaused = true
                timer?.cancel()
                setInterest(reading: false)
            } else if bodyReceived > received {
                armBodyTimeout(r)
            }
            return
        }
        if r.body.count > (r.settings.core.clientBodyBufferSize) || bodyFile != nil, !spill(r) { return }
        guard complete else {
            if bodyReceived > received { armBodyTimeout(r) }
            return
        }
        state = .handling
        timer?.cancel()
        if let k = afterBody {
            afterBody = nil
            k()
        } else {
            dispatch()
        }
    }

    /// A body that does not fit client_body_buffer_size goes on to a temporary file (nginx warns about it).
    private func spill(_ r: RequestContext) -> Bool {
        if bodyFile == nil {
            let dir = r.settings.core.clientBodyTempPath
            switch BodyFile.create(in: dir, worker: worker) {
            case .success(let f):
                bodyFile = f
                worker.log.warn("a client request body is buffered to a temporary file \(f.path)\(logContext(r))")
            case .failure(let message):
                worker.log.log(.crit, "\(message)\(logContext(r))")
                bodyFailed(500)
                return false
            }
        }
        if let e = bodyFile!.append(r.body) {
            worker.log.log(.crit, "write() \"\(bodyFile!.path)\" failed (\(Errno.text(e))), client: \(remoteAddress)")
            bodyFailed(500)
            return false
        }
        r.body.removeAll(keepingCapacity: true)
        return true
    }

    /// The body cannot be taken: answer and close, with what is left of it unread.
    private func bodyFailed(_ status: Int) {
        unreadBody = true
        state = .handling
        bodySink = nil
        afterBody = nil
        // A proxied request the body was streaming to (or waiting for it) ends with it.
        proxy?.abort()
        proxy = nil
        respondError(status, close: true)
    }

    /// The proxied request took what the body had gathered: read on if reading had paused.
    func bodyDrained() {
        guard bodyPaused, let r = request else { return }
        bodyPaused = false
        armBodyTimeout(r)
        // Level-triggered: bytes already waiting in the kernel bring an event at once; bytes OpenSSL already
        // decrypted do not, so they are read from the loop.
        setInterest(reading: true)
        if let tls, tls.hasPending { worker.loop.schedule(after: 0) { [weak self] in self?.readable() } }
    }

    /// The request body in a temporary file, for the proxied request to send.
    var requestBodyFile: BodyFile? { bodyFile }

    // MARK: handlers

    /// nginx's phases: server rewrite, find the location, location rewrite (a changed URI finds the location
    /// again, at most 10 times), access, content.
    private func dispatch() {
        guard let r = request else { return }
        guard rewrite(r) else { return }
        serve(r)
    }

    /// nginx's tail of an error line about a request: `, client: …, server: …, request: "…"`.
    func logContext(_ r: RequestContext) -> String {
        ", client: \(remoteAddress), server: \(r.server.serverNames.first ?? ""), request: \"\(r.head.requestLine)\""
    }

    /// The access and content phases for the location the request ended in.
    private func serve(_ r: RequestContext) {
        if case let rules = r.settings.log.accessRules, !rules.isEmpty, !AccessCheck.allows(rules, remoteBytes) {
            worker.log.error("access forbidden by rule\(logContext(r))")
            respondError(403)
            return
        }
        // Switched on in place: a copy of the enum would retain everything a ProxyPass holds.
        switch r.location?.content ?? r.server.content {
        case .proxy(let pass):
            if case .variable(let t) = pass.target { return proxy(r, pass, to: t.render(r)) }
            guard let balancer = r.proxyRoute?.balancer else { return respondError(500) }
            startProxy(r, pass, balancer, uri: nil)
        case .stubStatus:
            guard r.method == "GET" || r.method == "HEAD" else { respondError(405); return }
            let c = worker.counters
            let active = c.value(.active), reading = max(0, c.value(.reading)), writing = max(0, c.value(.writing))
            let body = "Active connections: \(active) \nserver accepts handled requests\n \(c.value(.accepted)) \(c.value(.handled)) \(c.value(.requests)) \nReading: \(reading) Writing: \(writing) Waiting: \(max(0, active - reading - writing)) \n"
            respond(status: 200, contentType: "text/plain", body: Array(body.utf8))
        case .checkStatus:
            let page = StatusPage(worker: worker, request: r).render()
            respond(status: page.status, contentType: page.contentType, body: page.body, omitLengthForHead: true)
        case .none:
            StaticFiles(connection: self, request: r).serve()
        }
    }

    /// A body not read yet streams to the upstream with `proxy_request_buffering off` (unless it is chunked and
    /// the upstream speaks HTTP/1.0, which cannot carry it: then it is read whole first, as nginx does);
    /// otherwise it is read whole before the request starts.
    private func startProxy(_ r: RequestContext, _ pass: ProxyPass, _ balancer: UpstreamBalancer, uri: String?) {
        let streams = bodyPending && !r.settings.proxy.requestBuffering
            && !(r.head.chunked && r.settings.proxy.httpVersion == .http10)
        let session = ProxySession(client: self, request: r, pass: pass, balancer: balancer, uri: uri, streamsBody: streams)
        proxy = session
        guard bodyPending else { return session.start() }
        if streams {
            bodySink = session
            session.start()
            // Answered at once (no live upstream): the body stays unread and the connection closes after.
            guard !session.isFinished else { bodySink = nil; return }
            bodyPending = false
            readBody(r, then: nil)
        } else {
            bodyPending = false
            readBody(r) { session.start() }
        }
    }

    /// `proxy_pass` with variables (`target` is what they gave): the host names an upstream block or is an
    /// address; any other name is resolved with the location's `resolver` while the request waits.
    private func proxy(_ r: RequestContext, _ pass: ProxyPass, to target: String) {
        let slash = target.firstIndex(of: "/")
        let hostPort = String(slash.map { target[..<$0] } ?? Substring(target))
        let uri = slash.map { String(target[$0...]) }
        r.proxyHost = hostPort
        let defaultPort: UInt16 = pass.scheme == "https" ? 443 : 80
        if let balancer = worker.balancer(forHost: hostPort, defaultPort: defaultPort) {
            return startProxy(r, pass, balancer, uri: uri)
        }
        guard let (host, port) = Resolver.hostAndPort(hostPort, defaultPort: defaultPort) else {
            worker.log.error("invalid URL prefix in \"\(pass.scheme)://\(target)\"\(logContext(r))")
            return respondError(500)
        }
        guard let resolver = r.settings.core.resolver.map({ worker.dns($0) }) else {
            worker.log.error("no resolver defined to resolve \(host)\(logContext(r))")
            return respondError(502)
        }
        resolver.resolve(host, timeoutMs: r.settings.core.resolverTimeout) { [weak self] result in
            guard let self, self.request === r, self.state != .closed else { return }
            switch result {
            case .success(let addresses):
                let peers = addresses.map { PeerAddress(host: $0.host, port: port, isIPv6: $0.isIPv6) }
                self.startProxy(r, pass, UpstreamBalancer(literal: hostPort, addresses: peers), uri: uri)
            case .failure(let error):
                self.worker.log.error("\(host) could not be resolved (\(error))\(self.logContext(r))")
                self.respondError(502)
            }
        }
    }

    /// Runs the server's and the location's scripts; false when one of them answered the request.
    private func rewrite(_ r: RequestContext) -> Bool {
        if !r.server.script.isEmpty, case .respond(let code, let text) = r.server.script.run(r) {
            respondReturn(code, text)
            return false
        }
        var cycles = 0
        while true {
            if r.rewritten {
                cycles += 1
                if cycles > 10 {
                    worker.log.error("rewrite or internal redirection cycle while processing \"\(r.uri)\"\(logContext(r))")
                    respondError(500)
                    return false
                }
                let location = worker.router.location(in: r.server, path: r.uri)
                r.relocate(location, scope: worker.scope(server: r.server, location: location))
            }
            guard let script = r.location?.script, !script.isEmpty else { return true }
            switch script.run(r) {
            case .respond(let code, let text):
                respondReturn(code, text)
                return false
            case .stop:
                r.rewritten = false
                return true
            case .last:
                continue
            case .next:
                if !r.rewritten { return true }
            }
        }
    }

    /// `return`: a redirect with its Location, a text body, or nginx's page for the code; 444 closes at once.
    private func respondReturn(_ code: Int, _ text: String?) {
        guard let r = request else { return }
        if code == 444 { return close() }
        if ClientConnection.isRedirect(code), let url = text {
            respondError(code, location: url)
        } else if let text {
            respond(status: code, contentType: contentType(for: r), body: Array(text.utf8))
        } else {
            respondError(code)
        }
    }

    func contentType(for r: RequestContext, path: String? = nil) -> String {
        let name = path ?? r.uri
        if let dot = name.lastIndex(of: "."), !name[dot...].contains("/"),
           let t = r.settings.core.types[String(name[name.index(after: dot)...]).lowercased()] {
            return t
        }
        return r.settings.core.defaultType
    }

    var serverHeader: String {
        (request?.settings.core.serverTokens ?? true) ? Version.serverToken : Version.serverName
    }

    /// Queues the status line, the headers every response carries and those `headers` writes, and records
    /// the head's size. Written straight into the output queue: no intermediate strings.
    /// `upstreamSent` names the Server and Date an upstream's reply already carries (proxy_pass_header).
    func queueHead(status original: Int, upstreamSent: (server: Bool, date: Bool) = (false, false), _ headers: (OutputQueue) -> Void) {
        // One reference each for the whole head: every `output`/`request` access would retain and release.
        let out = output, r = request
        // An error page answers with the error's status (or the one `error_page … =code` names).
        let status = r?.statusOverride ?? original
        r?.status = status
        let before = out.count
        out.append(Status.line(status))
        out.append("\r\n")
        if !upstreamSent.server {
            out.append("Server: ")
            out.append(serverHeader)
            out.append("\r\n")
        }
        if !upstreamSent.date {
            out.append("Date: ")
            out.append(Clock.httpDate())
            out.append("\r\n")
        }
        headers(out)
        if let r {
            let e = r.settings.headers.expires
            if e != .off, ClientConnection.takesAddedHeaders(status) { expiresHeaders(e, out) }
            let added = r.settings.headers.addHeaders
            if !added.isEmpty { addHeaders(added, status: status, r, out) }
        }
        if bodyPending || state == .body { keepAlive = false }
        out.append(keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n")
        // keepalive_timeout's second value: the Keep-Alive header that tells clients how long we wait.
        if keepAlive, let t = r?.settings.core.keepaliveHeaderTimeout {
            out.append("Keep-Alive: timeout=")
            out.append(t / 1000)
            out.append("\r\n")
        }
        out.append("\r\n")
        r?.headerBytesSent = out.count - before
    }

    /// Statuses a Location goes with (`return`, error_page URLs).
    static func isRedirect(_ status: Int) -> Bool {
        switch status {
        case 301, 302, 303, 307, 308: return true
        default: return false
        }
    }

    /// Statuses nginx's headers filter adds `add_header` and `expires` headers to (unless `always`); a switch,
    /// not a Set, as it runs for every response head.
    static func takesAddedHeaders(_ status: Int) -> Bool {
        switch status {
        case 200, 201, 204, 206, 304: return true
        default: return isRedirect(status)
        }
    }

    /// `expires`: Expires and Cache-Control as nginx's headers filter writes them.
    private func expiresHeaders(_ e: ExpiresSetting, _ output: OutputQueue) {
        switch e {
        case .off: return
        case .epoch:
            output.header("Expires", "Thu, 01 Jan 1970 00:00:01 GMT")
            output.header("Cache-Control", "no-cache")
        case .max:
            output.header("Expires", "Thu, 31 Dec 2037 23:55:55 GMT")
            output.header("Cache-Control", "max-age=315360000")
        case .seconds(let n):
            output.header("Expires", Clock.httpDate(at: Int(time(nil)) + n))
            output.header("Cache-Control", n < 0 ? "no-cache" : "max-age=\(n)")
        }
    }

    /// `add_header`: on the statuses nginx adds them to (any with `always`); an empty value adds nothing.
    private func addHeaders(_ added: [AddedHeader], status: Int, _ r: RequestContext, _ output: OutputQueue) {
        let normal = ClientConnection.takesAddedHeaders(status)
        for h in added where h.always || normal {
            let value = h.value.render(r)
            if !value.isEmpty { output.header(h.name, value) }
        }
    }

    func respond(status: Int, contentType: String?, body plain: [UInt8], extra: [(String, String)] = [], omitLengthForHead: Bool = false) {
        guard let r = request else { return }
        r.status = status
        let isHead = r.head.method == "HEAD"
        var body = plain
        var encoding: String?
        let compressible = GzipPolicy.eligible(r, status: r.statusOverride ?? status, contentType: contentType,
                                               contentLength: body.count, encoded: false)
        // A body known whole is compressed whole, and keeps a Content-Length.
        if compressible, GzipPolicy.accepted(r), let gz = worker.gzipStreams.take(level: Int32(r.settings.gzip.compLevel), length: body.count) {
            var packed: [UInt8] = []
            body.withUnsafeBytes { b in gz.compress(b, finish: true) { packed.append(contentsOf: $0) } }
            worker.gzipStreams.give(gz)
            body = packed
            encoding = "gzip"
        }
        let vary = compressible && (r.settings.gzip.vary)
        queueHead(status: status) { out in
            if let contentType { out.header("Content-Type", contentType) }
            if !(isHead && omitLengthForHead) && status != 304 { out.header("Content-Length", body.count) }
            if let encoding { out.header("Content-Encoding", encoding) }
            if vary { out.header("Vary", "Accept-Encoding") }
            for (name, value) in extra { out.header(name, value) }
        }
        if !isHead {
            output.append(body)
            r.bodyBytesSent = body.count
        }
        completeResponse()
    }

    /// nginx's built-in page for an error or redirect status.
    /// 494 is nginx's internal "header too large": a 400 with its own page.
    func respondError(_ status: Int, close closeAfter: Bool = false, location: String? = nil) {
        // As nginx, these statuses end the connection whether or not an error page answers them.
        if closeAfter || [400, 408, 413, 414, 494, 497, 500, 501, 505].contains(status) { keepAlive = false }
        if location == nil, !closeAfter, let r = request, !r.inErrorPage,
           let page = r.settings.core.errorPages.first(where: { $0.codes.contains(status) }) {
            return errorPage(page, status: status, r)
        }
        let page = Status.errorPage(status, serverTokens: serverHeader) ?? ""
        var extra: [(String, String)] = []
        if let location { extra.append(("Location", absolute(location))) }
        respond(status: status == 494 || status == 497 ? 400 : status, contentType: page.isEmpty ? nil : "text/html", body: Array(page.utf8), extra: extra)
    }

    /// `error_page`: a URL answers with a redirect; a URI is an internal redirect (the method becomes GET,
    /// except HEAD) that goes through the rewrite phases again; `@name` continues in a named location. The
    /// answer keeps the error's status unless `=code` names another or a bare `=` takes the page's own.
    /// An error while serving the page is answered plainly (nginx's recursive_error_pages off).
    private func errorPage(_ page: ErrorPage, status: Int, _ r: RequestContext) {
        r.inErrorPage = true
        let target = page.uri.render(r)
        if !target.hasPrefix("/") && !target.hasPrefix("@") {
            let code = page.overrideCode.flatMap { ClientConnection.isRedirect($0) ? $0 : nil } ?? 302
            return respondError(code, location: target)
        }
        r.statusOverride = page.overrideCode == 0 ? nil : (page.overrideCode ?? status)
        if r.method != "HEAD" { r.method = "GET" }
        if target.hasPrefix("@") {
            guard let named = r.server.locations.first(where: { $0.match == .named && $0.pattern == target }) else {
                worker.log.error("could not find named location \"\(target)\"\(logContext(r))")
                r.statusOverride = nil
                return respondError(500)
            }
            r.relocate(named, scope: worker.scope(server: r.server, location: named))
            if !named.script.isEmpty, case .respond(let code, let text) = named.script.run(r) { return respondReturn(code, text) }
            return serve(r)
        }
        if let q = target.firstIndex(of: "?") {
            r.uri = String(target[..<q])
            r.args = String(target[target.index(after: q)...])
        } else {
            r.uri = target
        }
        dispatch()
    }

    /// nginx's `absolute_redirect on`: a Location that is a path gets the scheme, the request's host (or the
    /// server's name, with `server_name_in_redirect on`) and, unless it is the scheme's default or
    /// `port_in_redirect off`, the port the request came in on.
    func absolute(_ location: String) -> String {
        guard location.hasPrefix("/"), let r = request, r.settings.core.absoluteRedirect else { return location }
        let https = tls != nil
        let host = r.settings.core.serverNameInRedirect ? (r.server.serverNames.first ?? r.host) : r.host
        let port = listening.listen.address.port
        let showPort = r.settings.core.portInRedirect && port != 0 && port != (https ? 443 : 80)
        return (https ? "https://" : "http://") + host + (showPort ? ":\(port)" : "") + location
    }

    /// The response is fully queued: flush, and when it is on the wire, finish the request.
    func completeResponse() {
        responseComplete = true
        writable()
    }

    /// A streamed body compressed on its way (gzip), sent in chunks when `chunked`.
    private var bodyGzip: GzipStream?
    private var bodyChunked = false

    /// Compresses what follows of a streamed body (a proxied response).
    func startGzip(level: Int, length: Int?, chunked: Bool) -> Bool {
        guard let gz = worker.gzipStreams.take(level: Int32(level), length: length) else { return false }
        bodyGzip = gz
        bodyChunked = chunked
        return true
    }

    /// A piece of a streamed body: compressed and chunked when the response is, else sent as it is. Deflate
    /// hands out its output in small, uneven pieces: they go out once 16 kB has gathered, or with the end.
    /// `last`: the body ends with this piece, so deflate finishes the stream in the same call (as nginx's
    /// filter does with the last buffer) instead of a second call from `finishBody`.
    func sendBody(_ bytes: UnsafeRawBufferPointer, last: Bool = false) -> Bool {
        guard let gz = bodyGzip else { return sendStreaming(bytes) }
        gz.compress(bytes, finish: last) { queueChunk($0) }
        guard output.count >= 16384 else { return true }
        return sendStreaming(UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// The end of a streamed body: the rest of the gzip stream and the last chunk, in the same write as
    /// whatever is still queued.
    func finishBody() {
        guard let gz = bodyGzip else { return }
        gz.compress(UnsafeRawBufferPointer(start: nil, count: 0), finish: true) { queueChunk($0) }
        _ = sendStreaming(UnsafeRawBufferPointer(start: nil, count: 0), chunkEnd: bodyChunked)
        releaseGzip()
    }

    private func queueChunk(_ piece: UnsafeRawBufferPointer) {
        let out = output
        if bodyChunked {
            out.appendHex(piece.count)
            out.append("\r\n")
        }
        out.append(piece)
        if bodyChunked { out.append("\r\n") }
        if let r = request { r.bodyBytesSent += piece.count }
    }

    private func releaseGzip() {
        if let gz = bodyGzip { worker.gzipStreams.give(gz) }
        bodyGzip = nil
        bodyChunked = false
    }

    /// Streaming responses (proxy, files) push bytes here; returns false when the client is backed up.
    /// `chunkEnd` writes the last, empty chunk.
    func sendStreaming(_ bytes: UnsafeRawBufferPointer, chunkEnd: Bool = false) -> Bool {
        let out = output
        out.append(bytes)
        if chunkEnd { out.append("0\r\n\r\n") }
        if let r = request { r.bodyBytesSent += bytes.count }
        switch out.flush(to: fd, tls: tls) {
        case .failed: close(); return false
        case .wouldBlock:
            setInterest(writing: true)
            armSendTimeout()
            return out.count < 256 * 1024
        case .drained: return true
        }
    }

    /// send_timeout runs between two writes that make progress, while a response waits on the client.
    private func armSendTimeout() {
        if state == .handling, let r = request { arm(UInt64(r.settings.core.sendTimeout)) }
    }

    func setKeepAlive(_ on: Bool) { keepAlive = keepAlive && on }
    var willKeepAlive: Bool { keepAlive }

    private func finishRequest() {
        guard let r = request else { return }
        if bodyPending || state == .body {
            // Answered before its body was read (a `return` in a streaming location, an early upstream reply).
            bodyPending = false
            bodySink = nil
            unreadBody = true
            keepAlive = false
        }
        afterBody = nil
        responseComplete = false
        onDrain = nil
        // Answered before the upstream finished (a body error while streaming): its socket and timer go too.
        if let p = proxy, !p.isFinished { p.abort() }
        proxy = nil
        logAccess(r)
        worker.counters.add(.writing, -1)
        requestsServed += 1
        request = nil
        // A response that promised keep-alive keeps it even if a graceful stop began meanwhile: the client's
        // next request is answered with `Connection: close` (or, if none comes, the grace period ends it).
        guard keepAlive, !worker.idleGraceOver else {
            lingeringClose()
            return
        }
        state = .head
        sawFirstByte = hasInput
        // As nginx with tcp_nodelay on: a connection kept alive sends without Nagle from now on, so the last
        // small write of a response never waits on the client's delayed ACK. One system call a connection.
        if !noDelay, r.settings.core.tcpNodelay { setNoDelay() }
        setInterest(reading: true)
        arm(UInt64(r.settings.core.keepaliveTimeout))
        if hasInput {
            startReading()   // a pipelined request is already here
            process()
        } else if let tls, tls.hasPending {
            readable()   // the next request is decrypted inside OpenSSL, where epoll cannot see it
        } else {
            if let b = inputBuffer { worker.buffers.giveInput(b) }
            inputBuffer = nil
            if let q = outputQueue, q.isEmpty {
                worker.buffers.giveOutput(q)
                outputQueue = nil
            }
        }
    }

    /// nginx's stub_status accounting: a connection is "reading" (and its request counted) from the first
    /// byte of a request head until the head is parsed; before that, and between keep-alive requests, it is
    /// "waiting".
    private func startReading() {
        guard !countedReading else { return }
        countedReading = true
        worker.counters.add(.reading)
        worker.counters.add(.requests)
    }

    private func stopReading() {
        guard countedReading else { return }
        countedReading = false
        worker.counters.add(.reading, -1)
    }

    private func logAccess(_ r: RequestContext) {
        let logs = r.settings.log.accessLogs
        for target in logs {
            if let c = target.condition {
                let v = c.render(r)
                if v.isEmpty || v == "0" { continue }
            }
            guard let fmt = worker.accessLogs.format(target.format), let fd = worker.accessLogs.fd(for: target.path) else { continue }
            let e = writeAll(fd, fmt.template.logLine(r, escape: fmt.escape))
            if e != 0 {
                worker.accessLogs.writeFailed(target.path, errno: e, context: logContext(r))
            }
        }
    }

    /// Half-close, then (nginx's lingering_close) read and discard what the client is still sending, so that
    /// the kernel does not answer unread data with a reset that would destroy the response on its way.
    private func lingeringClose() {
        tls?.shutdown()
        shutdown(fd, Int32(SHUT_WR))
        var b: UInt8 = 0
        let pending = unreadBody || hasInput || recv(fd, &b, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) > 0
        guard pending else { close(); return }
        state = .lingering
        inputBuffer?.consume(inputBuffer!.readable)
        setInterest(reading: true, writing: false)
        arm(5000)   // nginx's lingering_timeout
        discardInput()
    }

    private func discardInput() {
        var scratch = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            close()
            return
        }
    }

    func close() {
        guard state != .closed else { return }
        if countedReading { stopReading() } else if request != nil { worker.counters.add(.writing, -1) }
        state = .closed
        timer?.cancel()
        proxy?.abort()
        proxy = nil
        bodySink = nil
        afterBody = nil   // it may hold the proxied request, which holds the request
        bodyFile = nil
        releaseGzip()
        tls?.shutdown()
        tls = nil
        worker.loop.close(fd: fd)
        worker.connections.closed(self)
    }

    /// The peer's printable address, port and family, from what accept4() returned.
    static func describe(_ ss: inout sockaddr_storage) -> (String, UInt16, Bool) {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
            withUnsafePointer(to: &ss) {
                // A unix-domain client: nginx's $remote_addr is "unix:".
                if Int32($0.pointee.ss_family) == AF_UNIX { return ("unix:", 0, false) }
                if Int32($0.pointee.ss_family) == AF_INET6 {
                    return $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                        var a = p.pointee.sin6_addr
                        inet_ntop(AF_INET6, &a, buf.baseAddress, 64)
                        return (String(cString: buf.baseAddress!), UInt16(bigEndian: p.pointee.sin6_port), true)
                    }
                }
                return $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    var a = p.pointee.sin_addr
                    inet_ntop(AF_INET, &a, buf.baseAddress, 64)
                    return (String(cString: buf.baseAddress!), UInt16(bigEndian: p.pointee.sin_port), false)
                }
            }
        }
    }

    /// A printable address back to its 4 or 16 bytes.
    static func addressBytes(_ text: String, isIPv6: Bool) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: isIPv6 ? 16 : 4)
        _ = bytes.withUnsafeMutableBytes { inet_pton(isIPv6 ? AF_INET6 : AF_INET, text, $0.baseAddress) }
        return bytes
    }
}

/// `allow` / `deny`: the first rule that matches decides; no match allows.
enum AccessCheck {
    static func allows(_ rules: [AccessRule], _ addr: [UInt8]) -> Bool {
        for rule in rules {
            guard let net = rule.network else { return rule.allow }
            guard net.count == addr.count else { continue }
            var matches = true
            var bits = rule.prefix
            for i in 0..<net.count where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if net[i] & mask != addr[i] & mask { matches = false; break }
                bits -= 8
            }
            if matches { return rule.allow }
        }
        return true
    }
}

extension ClientConnection: TLSServerNameHandler {
    /// SNI picks the server block, and with it the certificate, before any request names a Host.
    func tlsContext(forServerName name: String) -> TLSServerContext? {
        worker.router.server(for: listening.listen.address, host: name).flatMap { worker.tls.context(for: $0) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import Event
import HTTP
import TLS

/// One HTTP/1.x client connection: TLS and SNI, request heads, the request body's framing (Content-Length
/// or chunked), pipelined requests answered in order, keep-alive and lingering close, and the response's
/// HTTP/1 form (status line, Connection, chunks). What a request means is the pipeline's business: each
/// parsed head goes to `RequestPipeline`, which answers through the request's sink, which writes here.
public final class H1Connection: ClientInfo, EventHandler, RequestTransport, TunnelEnd, ClientConnection {
    enum State { case proxyHeader, handshake, head, body, handling, tunnel, lingering, closed }

    /// A strong `let`: the compiler reads it in place, where an unowned(unsafe) one was retained around each
    /// use. (The timers' actions keep unowned(unsafe) references: the service outlives every connection, and
    /// a connection cancels its timers when it closes.)
    let service: HTTPService

    /// Taken from the worker's pool on first use and given back, storage and all, when the connection goes
    /// idle on keep-alive: an idle connection holds neither buffer object nor storage, as nginx frees a
    /// request's buffers when it keeps the connection alive, and a busy one allocates neither.
    private var inputBuffer: ByteBuffer? { didSet { service.buffers.held += (inputBuffer == nil ? 0 : 1) - (oldValue == nil ? 0 : 1) } }
    private var input: ByteBuffer {
        if let b = inputBuffer { return b }
        let b = service.buffers.takeInput(capacity: defaultScope.settings.core.clientHeaderBufferSize)
        inputBuffer = b
        return b
    }
    private var outputQueue: OutputQueue? { didSet { service.buffers.held += (outputQueue == nil ? 0 : 1) - (oldValue == nil ? 0 : 1) } }
    private var output: OutputQueue {
        if let q = outputQueue { return q }
        let q = service.buffers.takeOutput()
        outputQueue = q
        return q
    }
    /// Bytes received and not yet consumed (none when there is no buffer).
    private var hasInput: Bool { !(inputBuffer?.isEmpty ?? true) }
    private var state = State.head
    /// A plain HTTP request arrived on a TLS address: it is read, then answered with nginx's 400 page.
    private var plainOnTLSPort = false
    private var interest: UInt32 = Events.readable | Events.readHangup
    private var timer: Timer?
    private var noDelay = false
    public private(set) var request: RequestContext?
    private var keepAlive = false
    /// The current request body's framing.
    private var bodyRemaining = 0
    private var chunked: ChunkedDecoder?
    private var sawFirstByte = false
    /// The next request's bytes were already read when the last response ended (nginx's hc->pipeline).
    private var nextIsPipelined = false
    /// The answer went out before the request body was read (413, 400 on a bad chunk): linger on close.
    private var unreadBody = false
    private var countedReading = false
    /// How the current response's body is framed.
    private var framing = BodyFraming.length
    /// limit_rate holds the rest of the response back until the timer fires.
    private var writeDelayed = false
    public var onDrain: (() -> Void)?
    /// The default server for this address: its settings govern reading request heads.
    private let defaultScope: SettingsScope
    /// The server the TLS client named in SNI.
    private var sniServer: Server?

    public init(fd: Int32, peer: sockaddr_storage, listen: Listen, service: HTTPService, serial: Int) {
        self.service = service
        defaultScope = service.defaultScope(for: listen)
        var p = peer
        let (address, port, isIPv6) = ClientInfo.describe(&p)
        super.init(fd: fd, address: address, port: port, isIPv6: isIPv6, listen: listen, serial: serial, openedAt: service.loop.now)
    }

    deinit { service.buffers.held -= (inputBuffer == nil ? 0 : 1) + (outputQueue == nil ? 0 : 1) }

    public var client: ClientInfo { self }

    public var isIdle: Bool { state == .head && !hasInput && request == nil }

    private var rules: RequestRules { defaultScope.requestRules() }

    public func start() {
        if listen.proxyProtocol { state = .proxyHeader } else if listen.ssl { state = .handshake }
        arm(UInt64(defaultScope.settings.core.clientHeaderTimeout))
    }

    /// One timer per connection, re-armed for each phase (header, body, send, keep-alive, lingering).
    private func arm(_ ms: UInt64) {
        if timer == nil { timer = service.loop.makeTimer { [unowned(unsafe) self] in self.timedOut() } }
        timer!.rearm(after: ms)
    }

    private func timedOut() {
        if writeDelayed {
            writeDelayed = false
            return writable()
        }
        if state == .lingering { return close() }
        if state == .proxyHeader {
            service.log.info("client timed out (110: Connection timed out) while reading PROXY protocol, client: \(address), server: \(listen.address)")
            return close()
        }
        if state == .handshake {
            service.log.info("client timed out (110: Connection timed out) while SSL handshaking, client: \(address), server: \(listen.address)")
            return close()
        }
        if state == .handling {
            // send_timeout: the client took no bytes for that long (nginx logs it at info, like the others).
            service.log.info("client timed out (110: Connection timed out) while sending to client, client: \(address)")
            if let r = request { service.pipeline.finished(r) }
            return closeTimedOut()
        }
        if state == .head && !sawFirstByte && requestsServed > 0 {
            close()   // keep-alive timeout: silent, as nginx
            return
        }
        service.log.info("client timed out (110: Connection timed out) while \(state == .head ? "reading client request headers" : "reading client request body"), client: \(address)")
        if let r = request {
            r.status = 408
            service.pipeline.finished(r)
        }
        closeTimedOut()
    }

    /// reset_timedout_connection (by the request's location, or the server's before there is one) closes a
    /// client that timed out with a RST.
    private func closeTimedOut() {
        if (request?.settings ?? defaultScope.settings).core.resetTimedoutConnection { Socket.resetOnClose(fd) }
        close()
    }

    // MARK: events

    public func handleEvent(_ events: UInt32) {
        if state == .closed { return }
        if state == .proxyHeader { return readProxyHeader() }
        if state == .handshake { return handshake() }
        if state == .tunnel, let t = tunnel { return t.clientEvent(events) }
        if events & Events.writable != 0 { writable() }
        if state == .closed { return }
        if events & (Events.readable | Events.readHangup | Events.error | Events.hangup) != 0 { readable(events) }
    }

    /// Bytes of a PROXY protocol header that came without its end (read, as they are all the header's).
    private var partialProxyHeader: [UInt8] = []

    /// `listen … proxy_protocol`: the header comes first, before a TLS handshake too. It is peeked at and only
    /// its own bytes are taken from the socket, so that what follows is read as if the connection began
    /// there (OpenSSL reads the socket itself); a header that comes in pieces is kept until it ends, within
    /// client_header_timeout.
    private func readProxyHeader() {
        let limit = max(ProxyProtocol.v1MaxLength, defaultScope.settings.core.clientHeaderBufferSize)
        withUnsafeTemporaryAllocation(byteCount: limit, alignment: 1) { buf in
            let base = buf.baseAddress!
            let held = partialProxyHeader.count
            partialProxyHeader.withUnsafeBytes { if held > 0 { base.copyMemory(from: $0.baseAddress!, byteCount: held) } }
            let n = recv(fd, base + held, limit - held, Int32(MSG_PEEK))
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            guard n > 0 else { return close() }
            let bytes = UnsafeRawBufferPointer(start: base, count: held + n)
            switch ProxyProtocol.parse(bytes, limit: limit) {
            case .incomplete:
                guard recv(fd, base + held, n, 0) == n else { return close() }
                partialProxyHeader = Array(bytes)
            case .complete(let length, let header):
                guard recv(fd, base + held, length - held, 0) == length - held else { return close() }
                partialProxyHeader = []
                proxyProtocol = header
                if listen.ssl {
                    state = .handshake
                    handshake()
                } else {
                    state = .head
                    readable()
                }
            case .invalid(let message):
                if let message {
                    service.log.error("\(message) while reading PROXY protocol, client: \(address), server: \(listen.address)")
                }
                close()
            }
        }
    }

    /// The first byte tells a TLS record (0x16, or 0x80 for an SSLv2-style hello) from a plain HTTP request
    /// sent to the TLS port, as nginx's does; then the handshake runs on readiness events.
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
            guard let server = service.router.defaultServer(for: listen.address),
                  let context = service.tls.context(for: server), let stream = TLSStream(accepting: fd, context: context) else {
                service.log.alert("SSL_new() failed, client: \(address), server: \(listen.address)")
                return close()
            }
            stream.nameHandler = self
            tls = stream
            // As nginx (tcp_nodelay on): the session tickets that end a TLS 1.3 handshake are still unacknowledged
            // when the first response goes out, and Nagle would hold that response for the client's delayed ACK.
            if defaultScope.settings.core.tcpNodelay { setNoDelay() }
        }
        switch tls!.handshake() {
        case .done:
            if tls!.alpnProtocol == "h2" { return becomeHTTP2(preread: UnsafeRawBufferPointer(start: nil, count: 0)) }
            state = .head
            setInterest(reading: true, writing: false)
            readable()   // the first request may have come with the client's Finished
        case .wantRead:
            setInterest(reading: true, writing: false)
        case .wantWrite:
            setInterest(reading: false, writing: true)
        case .failed:
            service.log.info("\(tls!.failure) while SSL handshaking, client: \(address), server: \(listen.address)")
            close()
        }
    }

    private func readable(_ events: UInt32 = 0) {
        if state == .lingering { discardInput(); return }
        guard state == .head || state == .body else {
            // The client went away while a handler waits on an upstream: as nginx's (proxy_ignore_client_abort
            // off), the request ends with 499 and the upstream connection goes too.
            if events & (Events.readHangup | Events.hangup | Events.error) != 0, let r = request {
                if let h = r.handler, !h.isFinished { return clientClosedPrematurely(r) }
                // A response held back by limit_rate: nothing else would notice the client left.
                if writeDelayed {
                    r.log.info("client prematurely closed connection while sending response to client\(r.logContext)")
                    r.stopHandler()
                    service.pipeline.finished(r)
                    return close()
                }
            }
            // Busy with a response: stop watching input, and its hang-up, until it is done (pipelined bytes wait
            // in the kernel; a level-triggered hang-up would otherwise be reported on every turn).
            setInterest(reading: false)
            return
        }
        if request?.body.paused ?? false { return setInterest(reading: false) }
        let limit = state == .head ? rules.maxHeadLength + 1 : max(65536, input.readable + 65536)
        while state == .head || state == .body && !(request?.body.paused ?? false) {
            let n = input.receive(from: fd, tls: tls, limit: limit)
            if n > 0 {
                if state == .head && !sawFirstByte && requestsServed == 0 && awaitsHTTP2Preface() { return }
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
        switch flushOutput() {
        case .failed:
            close()
        case .wouldBlock:
            setInterest(writing: true)
            armSendTimeout()
        case .limited:
            delayWriting()
        case .drained:
            setInterest(writing: false)
            if state == .handling { timer?.cancel() }
            if let d = onDrain { d() }
            // onDrain may have queued more (a proxied body's rest) and completed the response: it ends only once
            // that is out too, or a close would cut it short.
            if request?.response.complete ?? false, outputQueue?.isEmpty ?? true { finishRequest() }
        }
    }

    /// Reading means the input and its hang-up.
    private func setInterest(reading: Bool? = nil, writing: Bool? = nil) {
        var want = interest
        let input = Events.readable | Events.readHangup
        if let r = reading { want = r ? want | input : want & ~input }
        if let w = writing { want = w ? want | Events.writable : want & ~Events.writable }
        if want != interest {
            interest = want
            try? service.loop.modify(fd: fd, events: want)
        }
    }

    private func setNoDelay() {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        noDelay = true
    }

    // MARK: request heads and bodies

    private func process() {
        while state == .head || state == .body {
            if state == .head {
                if !hasInput { return }
                // The arrays are taken inside the closure: captured from outside, they would be copies, and the
                // parser's in-place reuse of their storage would allocate instead.
                let result = input.withReadable {
                    RequestParser.parse($0, rules: rules, storage: HeadStorage(block: service.headBlocks.take(), fields: service.fieldLists.take()))
                }
                // Consumed, so that the head moves into the request instead of being copied (and every string
                // in it retained).
                switch consume result {
                case .incomplete:
                    return
                case .failure(let status, let reason):
                    service.log.info("\(reason) while reading client request headers, client: \(address)")
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
        service.counters.add(.writing)
        guard let r = service.pipeline.makeFailedRequest(transport: self, length: input.readable) else { return close() }
        request = r
        r.isPipelined = nextIsPipelined
        state = .handling
        service.pipeline.respondError(r, status, close: true)
    }

    private func begin(_ parsed: consuming RequestHead, length: Int) {
        stopReading()
        service.counters.add(.writing)
        guard let r = service.pipeline.makeRequest(parsed, transport: self, length: length) else { return close() }
        request = r
        r.isPipelined = nextIsPipelined
        if plainOnTLSPort {
            r.log.info("client sent plain HTTP request to HTTPS port while reading client request headers\(r.logContext)")
            unreadBody = r.head.hasBody
            state = .handling
            return service.pipeline.respondError(r, 497, close: true)
        }
        // Read in place: a copy of the core settings would retain every array and string in them.
        keepAlive = r.head.keepAlive && !service.isShuttingDown && r.settings.core.keepaliveTimeout > 0
            && requestsServed + 1 < r.settings.core.keepaliveRequests && service.loop.now - openedAt < UInt64(r.settings.core.keepaliveTime)
            && !UserAgent.keepaliveDisabled(r)
        bodyRemaining = r.head.contentLength ?? 0
        chunked = r.head.chunked ? ChunkedDecoder() : nil
        state = .handling
        timer?.cancel()
        service.pipeline.start(r)
    }

    /// client_body_timeout: it runs between two reads of the body, as nginx's.
    private func armBodyTimeout(_ r: RequestContext) { arm(UInt64(r.settings.core.clientBodyTimeout)) }

    public func bodyArrivedWhole(within room: Int) -> Bool {
        if chunked == nil && bodyRemaining > room { return false }
        let limit = input.readable + (chunked == nil ? bodyRemaining : room)
        while true {
            if var decoder = chunked {
                if case .end = input.withReadable({ decoder.feed($0) { _ in } }) { return true }
            } else if input.readable >= bodyRemaining {
                return true
            }
            guard input.receive(from: fd, tls: tls, limit: limit) > 0 else { return false }
        }
    }

    public func readBody(_ r: RequestContext) {
        if r.head.expectContinue { output.append("HTTP/1.1 100 Continue\r\n\r\n") }
        if !output.isEmpty { writable() }
        guard state != .closed else { return }   // the 100 Continue found the client gone
        state = .body
        armBodyTimeout(r)
        readBody()
    }

    /// Takes the body bytes that have arrived out of their framing and hands them to the request, which
    /// keeps them, spills them to a file or streams them on.
    private func readBody() {
        guard let r = request else { return }
        let before = r.body.received
        if var decoder = chunked {
            let event = input.withReadable { buf -> ChunkedDecoder.Event in
                decoder.feed(buf) { range in r.receiveBody(UnsafeRawBufferPointer(rebasing: buf[range])) }
            }
            chunked = decoder
            switch event {
            case .error(let reason):
                service.log.info("\(reason), client: \(address)")
                return bodyFailed(400)
            case .end(let consumed):
                input.consume(consumed)
            case .data:
                input.consume(input.readable)
            }
        } else {
            let take = min(bodyRemaining, input.readable)
            if take > 0 {
                input.withReadable { r.receiveBody(UnsafeRawBufferPointer(rebasing: $0[0..<take])) }
                input.consume(take)
                bodyRemaining -= take
            }
        }
        let complete = chunked?.isDone ?? (bodyRemaining == 0)
        switch r.bodyProgress(complete: complete, announced: chunked?.announced) {
        case .failed(let status):
            bodyFailed(status)
        case .finished:
            state = .handling
            timer?.cancel()
            r.bodyFinished()
        case .pause:
            // Held back by the upstream: client_body_timeout waits until reading resumes.
            guard state == .body else { return }
            r.body.paused = true
            timer?.cancel()
            setInterest(reading: false)
        case .read:
            if state == .body && r.body.received > before { armBodyTimeout(r) }
        }
    }

    /// The body cannot be taken: answer and close, with what is left of it unread.
    private func bodyFailed(_ status: Int) {
        guard let r = request else { return }
        unreadBody = true
        state = .handling
        r.dropBodyReaders()
        // A handler the body was streaming to (or waiting for it) ends with it.
        r.stopHandler()
        service.pipeline.respondError(r, status, close: true)
    }

    private func clientClosedPrematurely(_ r: RequestContext) {
        r.log.info("epoll_wait() reported that client prematurely closed connection, so upstream connection is closed too\(r.logContext)")
        if r.headerBytesSent == 0 { r.status = 499 }
        // Stopped before the log line, which then has the upstream's time so far.
        r.stopHandler()
        service.pipeline.finished(r)
        close()
    }

    public func resumeBody() {
        guard let r = request else { return }
        armBodyTimeout(r)
        // Level-triggered: bytes already waiting in the kernel bring an event at once; bytes OpenSSL already
        // decrypted do not, so they are read from the loop.
        setInterest(reading: true)
        if let tls, tls.hasPending { service.loop.schedule(after: 0) { [weak self] in self?.readable() } }
    }

    public func abandonBody() { unreadBody = true }

    public func isServing(_ r: RequestContext) -> Bool { request === r && state != .closed }

    // MARK: tunnels

    /// Who the connection's events go to while it is a tunnel.
    private weak var tunnel: TunnelEventHandler?

    /// The 101 head is queued: the socket becomes the tunnel's, with what is still queued and what was read
    /// (send_timeout and the keep-alive machinery stand aside until the response ends).
    public func becomeTunnel(_ handler: TunnelEventHandler, unsent: (UnsafeRawBufferPointer) -> Void,
                             received: (UnsafeRawBufferPointer) -> Void) -> TunnelEnd? {
        guard state == .handling else { return nil }
        state = .tunnel
        tunnel = handler
        keepAlive = false
        timer?.cancel()
        if let out = outputQueue {
            out.withUnsent(unsent)
            out.clear()
        }
        if let b = inputBuffer, !b.isEmpty {
            b.withReadable(received)
            b.consume(b.readable)
        }
        if !noDelay, request?.settings.core.tcpNodelay ?? true { setNoDelay() }
        return self
    }

    public var secureStream: SecureStream? { tls }

    public func setReading(_ on: Bool) { setInterest(reading: on) }

    public func setWriting(_ on: Bool) { setInterest(writing: on) }



    // MARK: responses

    public func writeHead(status: Int, reason: String?, framing: BodyFraming, _ leading: (OutputQueue) -> Void,
                          _ trailing: (OutputQueue) -> Void) -> Int {
        // One reference for the whole head: every `output` access would retain and release.
        let out = output
        let before = out.count
        self.framing = framing
        if let r = request { r.rate = ResponseRate(r, nowMs: service.loop.now) }
        out.statusLine(status, reason: reason)
        leading(out)
        switch framing {
        case .chunked, .chunksPassedThrough: out.append("Transfer-Encoding: chunked\r\n")
        case .close: keepAlive = false   // the client learns the end from our close
        case .length: break
        }
        let keepsHead = service.config.http?.readsSentHeaders == true
        if keepsHead { request?.sentHead = out.withUnsent { Array($0[before...]) } }
        trailing(out)
        if let r = request, r.body.pending || state == .body { keepAlive = false }
        // As nginx: a 101 says the connection is being upgraded, and is not kept for another request; a head
        // written once a graceful stop began (a request limit_req delayed, an upstream's late answer) says close.
        if status == 101 || service.isShuttingDown { keepAlive = false }
        out.append(status == 101 ? "Connection: upgrade\r\n" : keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n")
        // keepalive_timeout's second value: the Keep-Alive header that tells clients how long we wait.
        if keepAlive, let t = request?.settings.core.keepaliveHeaderTimeout {
            out.append("Keep-Alive: timeout=")
            out.append(t / 1000)
            out.append("\r\n")
        }
        out.append("\r\n")
        if keepsHead { request?.sentHead = out.withUnsent { Array($0[before...]) } }
        return out.count - before
    }

    public func queueBody(_ bytes: UnsafeRawBufferPointer) {
        if framing == .chunked { ChunkedFilter.piece(bytes, into: output) } else { output.append(bytes) }
    }

    public func flushBody() -> Bool {
        if writeDelayed { return queuedBytes < 256 * 1024 }
        switch flushOutput() {
        case .failed: close(); return false
        case .wouldBlock:
            setInterest(writing: true)
            armSendTimeout()
            return queuedBytes < 256 * 1024
        case .limited:
            delayWriting()
            return queuedBytes < 256 * 1024
        case .drained: return true
        }
    }

    /// Writes what is queued, within the response's limit_rate.
    private func flushOutput() -> OutputQueue.FlushResult {
        guard let out = outputQueue else { return .drained }
        guard let r = request, let rate = r.rate else { return out.flush(to: fd, tls: tls) }
        let budget = rate.budget(nowMs: service.loop.now)
        if budget <= 0 { return out.isEmpty ? .drained : .limited }
        let before = out.count
        let result = out.flush(to: fd, tls: tls, limit: budget)
        r.rate?.sent += before - out.count
        return result
    }

    /// limit_rate spent its budget: the connection's timer brings writing back when some is due again
    /// (send_timeout does not run meanwhile, as in nginx).
    private func delayWriting() {
        guard let rate = request?.rate else { return }
        // Watching input again, for the client's hang-up.
        setInterest(reading: true, writing: false)
        writeDelayed = true
        arm(rate.delayMs(nowMs: service.loop.now))
    }

    public var queuedBytes: Int { outputQueue?.count ?? 0 }

    /// A body of unknown length can be chunked for HTTP/1.1 clients unless chunked_transfer_encoding is off;
    /// an upstream's chunks then pass through as they are.
    public var framesUnknownLength: Bool {
        guard let r = request else { return false }
        return r.head.isHTTP11 && r.settings.core.chunkedTransferEncoding
    }

    public var passesChunks: Bool { framesUnknownLength }

    public func endResponse(framing: BodyFraming) {
        // A tunnel's end: the connection is the response's again, which ends it (the log line) and closes.
        if state == .tunnel {
            state = .handling
            tunnel = nil
        }
        if framing == .chunked { ChunkedFilter.end(request, into: output) }
        writable()
    }

    public func disableKeepAlive() { keepAlive = false }

    /// The response broke off: what is queued goes out as far as the socket takes it now (nginx has written
    /// it already), then the connection closes.
    public func abort() {
        if state != .closed && !writeDelayed { _ = flushOutput() }
        close()
    }

    /// send_timeout runs between two writes that make progress, while a response waits on the client.
    private func armSendTimeout() {
        if state == .handling, let r = request { arm(UInt64(r.settings.core.sendTimeout)) }
    }

    private func finishRequest() {
        guard let r = request else { return }
        if r.body.pending || state == .body {
            // Answered before its body was read (a `return` in a streaming location, an early upstream reply).
            r.body.pending = false
            unreadBody = true
            keepAlive = false
        }
        r.dropBodyReaders()
        onDrain = nil
        // Answered before the handler finished (a body error while streaming): its sockets and timers go too.
        r.stopHandler()
        service.pipeline.finished(r)
        service.counters.add(.writing, -1)
        requestsServed += 1
        request = nil
        framing = .length
        // A response that promised keep-alive keeps it even if a graceful stop began meanwhile: the client's
        // next request is answered with `Connection: close` (or, if none comes, the grace period ends it).
        guard keepAlive, !service.idleGraceOver else { return lingeringClose() }
        state = .head
        sawFirstByte = hasInput
        // As nginx with tcp_nodelay on: a connection kept alive sends without Nagle from now on, so the last
        // small write of a response never waits on the client's delayed ACK. One system call a connection.
        if !noDelay, r.settings.core.tcpNodelay { setNoDelay() }
        setInterest(reading: true)
        arm(UInt64(r.settings.core.keepaliveTimeout))
        nextIsPipelined = hasInput
        if hasInput {
            startReading()   // a pipelined request is already here
            process()
        } else if let tls, tls.hasPending {
            readable()   // the next request is decrypted inside OpenSSL, where epoll cannot see it
        } else {
            if let b = inputBuffer { service.buffers.giveInput(b) }
            inputBuffer = nil
            if let q = outputQueue, q.isEmpty {
                service.buffers.giveOutput(q)
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
        service.counters.add(.reading)
        service.counters.add(.requests)
    }

    private func stopReading() {
        guard countedReading else { return }
        countedReading = false
        service.counters.add(.reading, -1)
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

    private func discardInput() { if Socket.discardInput(fd) { close() } }

    // MARK: HTTP/2

    /// The connection preface h2c clients begin with (RFC 9113 §3.4).
    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// On a plain address where the default server speaks HTTP/2, the first bytes tell h2c's preface from an
    /// HTTP/1 request, as nginx 1.25 does: true when they were the preface (the connection is HTTP/2's now) or
    /// its beginning (wait for the rest, which may come in another packet).
    private func awaitsHTTP2Preface() -> Bool {
        guard tls == nil, !plainOnTLSPort, let server = service.router.defaultServer(for: listen.address),
              service.router.speaksHTTP2(listen.address, server) else { return false }
        let match = input.withReadable { $0.starts(with: H1Connection.preface.prefix($0.count)) }
        guard match else { return false }
        if input.readable < H1Connection.preface.count { return true }
        input.withReadable { becomeHTTP2(preread: $0) }
        return true
    }

    /// Hands the socket to an HTTP/2 connection, with what was read of it: this object is done with it.
    private func becomeHTTP2(preread: UnsafeRawBufferPointer) {
        state = .closed
        timer?.cancel()
        let h2 = H2Connection(taking: self, service: service, scope: defaultScope)
        tls?.nameHandler = nil
        tls = nil
        service.loop.setHandler(fd: fd, h2)
        service.connectionReplaced?(h2)
        h2.start(preread: preread)
        if let b = inputBuffer {
            b.consume(b.readable)
            service.buffers.giveInput(b)
            inputBuffer = nil
        }
    }

    public func shutdownBegan() {}

    public func close() {
        guard state != .closed else { return }
        if countedReading { stopReading() } else if request != nil { service.counters.add(.writing, -1) }
        state = .closed
        timer?.cancel()
        if let r = request {
            r.stopHandler()
            r.dropBodyReaders()   // they may hold the proxied request, which holds the request
            r.body.file = nil
            GzipFilter.release(r)
            // The request holds this connection (its transport): let go of it, or the two keep each other.
            request = nil
        }
        tls?.shutdown()
        tls = nil
        service.loop.close(fd: fd)
        service.connectionClosed?(self)
    }
}

extension H1Connection: TLSServerNameHandler {
    /// SNI picks the server block, and with it the certificate, before any request names a Host.
    public func tlsContext(forServerName name: String?) -> TLSServerContext? {
        guard let server = handshakeServer(name) else { return nil }
        if name != nil { sniServer = server }
        return service.tls.context(for: server)
    }

    /// ALPN offers h2 when the server SNI chose (else the default one) speaks HTTP/2.
    public var tlsOffersHTTP2: Bool {
        guard let server = sniServer ?? service.router.defaultServer(for: listen.address) else { return false }
        return service.router.speaksHTTP2(listen.address, server)
    }

    private func handshakeServer(_ name: String?) -> Server? {
        guard let name else { return service.router.defaultServer(for: listen.address) }
        return service.router.route(listen.address, host: name)?.server
    }

    /// As nginx's ngx_http_ssl_certificate: the variables are those of a request on the server SNI chose.
    public func tlsUseCertificates(of context: TLSServerContext, on stream: TLSStream) -> Bool {
        guard let cache = context.certificateCache, let server = handshakeServer(stream.serverName?.lowercased()),
              let r = service.pipeline.makeFailedRequest(transport: self, length: 0, server: server) else { return false }
        for (cert, key) in context.variableCertificates {
            do {
                try stream.use(cache.pair(certificate: cert.template?.render(r) ?? cert.path, key: key.template?.render(r) ?? key.path).get())
            } catch {
                service.log.error("\(error) while SSL handshaking, client: \(address), server: \(listen.address)")
                return false
            }
        }
        return true
    }
}

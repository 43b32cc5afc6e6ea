#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Event
import HTTP

/// One HTTP/2 stream: a request's transport, as nginx gives each stream a connection of its own (its
/// realip address, its `$connection_requests`), on the socket and TLS stream of its `H2Connection`. Its
/// request head comes as HPACK-decoded fields and goes through the same parser as an HTTP/1 head (Host and
/// URI rules alike); its response head's fields become HEADERS, its body DATA frames that the connection
/// takes from `pending` as flow control allows. It also holds the stream's protocol state: its windows and
/// which ends are closed.
final class H2Stream: ClientInfo, RequestTransport {
    let id: UInt32
    /// Strong, read in place (an unowned(unsafe) one was retained around each use); the connection drops the
    /// stream when it closes, or closes itself.
    let connection: H2Connection
    /// The client's window for this stream's DATA, and the one it sends its body against.
    var sendWindow: H2SendWindow
    var receiveWindow: H2ReceiveWindow
    /// END_STREAM came from the client (remote) or went to it (local).
    var remoteClosed = false
    var localClosed = false
    /// The response head submitted, for the connection's next send.
    var pendingHead: (status: Int, fields: H2Fields, endStream: Bool)?
    /// When this stream last sent a DATA frame (the connection's count): round robin among equals.
    var lastFrame = 0
    /// The request head as HTTP/1 text, built field by field: the parser's input.
    private var method: String?, path: String?, scheme: String?
    private var authority: String?
    /// Why nginx would answer this head with 400, if it would.
    private var refusal: String?
    private var fields: [UInt8] = []
    private var cookies: [UInt8] = []
    /// What is left of large_client_header_buffers' count × size for this head.
    private var headRoom: Int
    private(set) var request: RequestContext?
    /// The response head's fields, kept until the response is submitted with or without a body.
    private var responseHead: (status: Int, fields: H2Fields)?
    private var submitted = false
    /// Response body bytes not yet in a DATA frame.
    let pending = ByteBuffer(capacity: 0)
    /// The response is whole: the body ends when `pending` is empty.
    private(set) var ended = false
    /// limit_rate holds the body back: it waits for `resume`.
    var deferred = false
    /// `flushBody` said the stream is backed up: `onDrain` runs once its bytes went into frames.
    var wantsDrain = false
    var onDrain: (() -> Void)?
    /// add_trailer's fields, submitted after the last DATA frame.
    private var trailers: [(String, String)] = []
    /// Request body bytes the client sent before the pipeline asked for them (within the stream's window).
    private var preread: [UInt8] = []
    /// The client ended its side: the request body, if any, is all here.
    private(set) var bodyComplete = false
    /// Body bytes received in all, and why nginx would refuse the body (more or less than its Content-Length).
    private var bodyReceived = 0
    private var bodyRefusal: String?
    /// Queued for delivery after the current read (H2Connection.deliverLater).
    var deliveryQueued = false
    /// When the client last gave this stream something it waits for: the stream's start while its head is
    /// incomplete, the last DATA while its body is read (client_header_timeout and client_body_timeout run
    /// from there, as nginx runs them per stream).
    private var waitingSince: UInt64
    private var headPending = true
    /// The pipeline reads the body (readBody was called).
    private var readingBody = false
    /// The request body is not read to its end: the stream is reset once the response is sent.
    private var bodyAbandoned = false
    private(set) var finished = false

    init(id: UInt32, connection c: H2Connection, requestsBefore: Int, sendWindow: Int, receiveWindow: Int) {
        self.id = id
        connection = c
        self.sendWindow = H2SendWindow(sendWindow)
        self.receiveWindow = H2ReceiveWindow(receiveWindow)
        headRoom = c.headerRoom
        waitingSince = c.service.loop.now
        fields = c.service.headBlocks.take()
        super.init(fd: c.fd, address: c.peerAddress, port: c.peerPort, isIPv6: c.peerIsIPv6, listen: c.listen, serial: c.serial,
                   openedAt: c.openedAt)
        tls = c.tls
        proxyProtocol = c.proxyProtocol
        requestsServed = requestsBefore
    }

    /// When the client's time is up for what this stream waits on from it; nil when it waits on nothing.
    var clientDeadline: UInt64? {
        guard !finished else { return nil }
        if headPending { return waitingSince + UInt64(connection.defaultScope.settings.core.clientHeaderTimeout) }
        if readingBody && !bodyComplete, let r = request, !r.body.paused { return waitingSince + UInt64(r.settings.core.clientBodyTimeout) }
        return nil
    }

    /// The client let its deadline pass: nginx resets the stream with PROTOCOL_ERROR, and a request whose body
    /// was being read ends as a 408; the connection and its other streams go on.
    func clientTimedOut() {
        let reading = headPending ? "reading client request headers" : "reading client request body"
        connection.service.log.info("client timed out (110: Connection timed out) while \(reading), client: \(peerAddress)")
        if let r = request, r.headerBytesSent == 0 { r.status = 408 }
        headPending = false
        readingBody = false
        reset(.protocolError)
    }

    var client: ClientInfo { self }

    // MARK: the request head

    /// One decoded field; false when the head outgrows large_client_header_buffers (nginx ends the connection
    /// with ENHANCE_YOUR_CALM then). A field nginx refuses makes the request a 400, as nginx answers it.
    func addField(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        headRoom -= name.count + value.count
        if headRoom < 0 || name.count + value.count > connection.defaultScope.settings.core.largeClientHeaderBuffers.size {
            connection.service.log.info("client sent too large header\(headRoom < 0 ? "" : " field"), client: \(peerAddress)")
            return false
        }
        guard refusal == nil else { return true }
        let pseudo = name.first == UInt8(ascii: ":")
        // nginx's rules (ngx_http_v2_validate_header): lowercase names; no NUL, CR or LF anywhere, which the
        // HTTP/1 text this head becomes could not carry either.
        if name.count == Int(pseudo ? 1 : 0) || name.dropFirst(pseudo ? 1 : 0).contains(where: { $0 <= 0x20 || $0 == 0x7f || $0 == UInt8(ascii: ":") || ($0 >= 65 && $0 <= 90) }) {
            refusal = "client sent invalid header name: \"\(String(decoding: name, as: UTF8.self))\""
            return true
        }
        if value.contains(where: { $0 == 0 || $0 == 10 || $0 == 13 }) {
            refusal = "client sent header \"\(String(decoding: name, as: UTF8.self))\" with invalid value: \"\(String(decoding: value, as: UTF8.self))\""
            return true
        }
        if pseudo {
            let v = String(decoding: value, as: UTF8.self)
            switch name.count {
            case 7 where name.equals(":method"): setPseudo(&method, v, "method")
            case 5 where name.equals(":path"): setPseudo(&path, v, "path")
            case 7 where name.equals(":scheme"): setPseudo(&scheme, v, "scheme")
            case 10 where name.equals(":authority"): authority = v
            default: refusal = "client sent unknown pseudo-header \"\(String(decoding: name, as: UTF8.self))\""
            }
            return true
        }
        if name.equals("cookie") {
            // Cookie crumbs are one header again, joined as nginx joins them.
            if !cookies.isEmpty { cookies.append(ascii: "; ") }
            cookies += value
            return true
        }
        // nginx 1.22 takes :authority as the Host: a host field beside it is not a second one. The connection's
        // own fields mean nothing in HTTP/2 (RFC 9113 §8.2.2) and must not reach an upstream as HTTP/1's.
        if authority != nil && name.equals("host") || H2Fields.connectionSpecific(name) { return true }
        fields += name
        fields.append(ascii: ": ")
        fields += value
        fields.append(ascii: "\r\n")
        return true
    }

    private func setPseudo(_ slot: inout String?, _ value: String, _ name: String) {
        if slot != nil { refusal = "client sent duplicate :\(name) header" } else { slot = value }
    }

    /// The head is complete: it is parsed as its HTTP/1.1 equal and handed to the pipeline, which may answer
    /// at once. `endStream`: no body follows.
    func headComplete(endStream: Bool, frameLength: Int) {
        bodyComplete = endStream
        headPending = false
        waitingSince = connection.service.loop.now
        let service = connection.service
        service.counters.add(.requests)
        guard let method, let path, scheme != nil, refusal == nil else {
            return fail(400, refusal ?? "client sent no :\(method == nil ? "method" : scheme == nil ? "scheme" : "path") header")
        }
        // Both arrays come from the worker's pool and go back to it: the parser keeps a copy of its own.
        var text = service.headBlocks.take()
        text.reserveCapacity(method.utf8.count + path.utf8.count + fields.count + cookies.count + 64)
        text.append(utf8: method)
        text.append(UInt8(ascii: " "))
        text.append(utf8: path)
        text.append(ascii: " HTTP/1.1\r\n")
        if let authority {
            text.append(ascii: "Host: ")
            text.append(utf8: authority)
            text.append(ascii: "\r\n")
        }
        text += fields
        if !cookies.isEmpty {
            text.append(ascii: "Cookie: ")
            text += cookies
            text.append(ascii: "\r\n")
        }
        text.append(ascii: "\r\n")
        service.headBlocks.give(fields)
        fields = []
        cookies = []
        // The head's size was held to large_client_header_buffers field by field; the parser takes it whole.
        let rules = connection.defaultScope.requestRules(maxHeadLength: text.count + 1)
        let result = text.withUnsafeBytes {
            RequestParser.parse($0, rules: rules, storage: HeadStorage(block: service.headBlocks.take(), fields: service.fieldLists.take()))
        }
        service.headBlocks.give(text)
        switch consume result {
        case .incomplete:
            fail(400, "client sent invalid header")
        case .failure(let status, let reason):
            fail(status, reason)
        case .complete(var head, _):
            head.versionMajor = 2
            head.versionMinor = 0
            head.keepAlive = true
            head.expectContinue = false
            // A body without a length is read as HTTP/1.1 chunks would be (and sent on chunked).
            head.chunked = !endStream && head.contentLength == nil
            guard let r = service.pipeline.makeRequest(head, transport: self, length: frameLength) else { return reset(.internalError) }
            request = r
            service.counters.add(.writing)
            if !connection.servesHTTP2(r.server) {
                r.log.info("client attempted to request the server name different from the one that was negotiated\(r.logContext)")
                abandonBody()
                return service.pipeline.respondError(r, 421)
            }
            service.pipeline.start(r)
        }
    }

    private func fail(_ status: Int, _ reason: String) {
        connection.service.log.info("\(reason) while reading client request headers, client: \(peerAddress)")
        guard let r = connection.service.pipeline.makeFailedRequest(transport: self, length: 0) else { return reset(.internalError) }
        request = r
        connection.service.counters.add(.writing)
        abandonBody()
        connection.service.pipeline.respondError(r, status)
    }

    // MARK: the request body

    /// DATA from the client (flow control already took it from the window; `consume` gives it back). Held
    /// against a declared Content-Length, as nginx holds it; handed on once the batch read is through.
    func receiveData(_ bytes: UnsafeRawBufferPointer) {
        bodyReceived += bytes.count
        waitingSince = connection.service.loop.now
        if let declared = request?.head.contentLength, bodyReceived > declared, bodyRefusal == nil {
            bodyRefusal = "client intended to send body data larger than declared"
        }
        if bodyAbandoned || bodyRefusal != nil {
            connection.consume(id, bytes.count)
        } else {
            preread += bytes
        }
        if readingBody { connection.deliverLater(self) }
    }

    /// END_STREAM from the client.
    func clientEnded() {
        bodyComplete = true
        if let declared = request?.head.contentLength, bodyReceived < declared, bodyRefusal == nil {
            bodyRefusal = "client prematurely closed stream: only \(bodyReceived) out of \(declared) bytes of request body received"
        }
        if readingBody { connection.deliverLater(self) }
    }

    func bodyFollows(_ head: RequestHead) -> Bool { head.hasBody || !bodyComplete }

    func bodyArrivedWhole(within room: Int) -> Bool { bodyComplete && preread.count <= room }

    func readBody(_ r: RequestContext) {
        readingBody = true
        waitingSince = connection.service.loop.now
        deliverBody()
    }

    /// Hands what has arrived to the request (which keeps it, spills it or streams it on), opens the window
    /// for as much, and tells the request when the body is complete.
    func deliverBody() {
        guard let r = request, !r.body.paused, readingBody else { return }
        if let reason = bodyRefusal {
            readingBody = false
            r.log.info(reason + r.logContext)
            abandonBody()
            r.dropBodyReaders()
            r.stopHandler()
            return r.headerBytesSent == 0 ? connection.service.pipeline.respondError(r, 400) : reset(.protocolError)
        }
        let taken = preread.count
        if taken > 0 {
            preread.withUnsafeBytes { r.receiveBody($0) }
            preread.removeAll(keepingCapacity: true)
        }
        let announced = r.head.contentLength == nil ? r.body.received : nil
        switch r.bodyProgress(complete: bodyComplete, announced: announced) {
        case .failed(let status):
            readingBody = false
            abandonBody()
            r.dropBodyReaders()
            r.stopHandler()
            connection.service.pipeline.respondError(r, status)
        case .finished:
            readingBody = false
            r.bodyFinished()
        case .pause:
            r.body.paused = true
        case .read:
            break
        }
        if taken > 0 { connection.consume(id, taken) }
    }

    func resumeBody() {
        waitingSince = connection.service.loop.now
        deliverBody()
    }

    func abandonBody() {
        guard !bodyComplete else { return }
        bodyAbandoned = true
        if !preread.isEmpty {
            connection.consume(id, preread.count)
            preread = []
        }
    }

    func isServing(_ r: RequestContext) -> Bool { request === r && !finished }

    // MARK: the response

    func writeHead(status: Int, reason: String?, framing: BodyFraming, _ leading: (OutputQueue) -> Void,
                   _ trailing: (OutputQueue) -> Void) -> Int {
        // The head is written as HTTP/1 lines into a queue of the worker's pool (no connection keeps one).
        let q = connection.service.buffers.takeOutput()
        leading(q)
        trailing(q)
        let lines = q.withUnsent { Array($0) }
        q.clear()
        connection.service.buffers.giveOutput(q)
        if let r = request, connection.service.config.http?.readsSentHeaders == true {
            r.sentHead = Array("HTTP/2.0 \(status)\r\n".utf8) + lines
        }
        let fields = H2Fields(lines)
        responseHead = (status, fields)
        if let r = request { r.rate = ResponseRate(r, nowMs: connection.service.loop.now) }
        return 9 + fields.byteCount
    }

    /// Submits the response head: with a body to pull unless the response is already whole and empty
    /// (then HEADERS carries END_STREAM, as nginx sends a header-only response).
    private func submit() {
        guard !submitted, let head = responseHead, !finished else { return }
        submitted = true
        responseHead = nil
        let headerOnly = ended && pending.isEmpty && trailers.isEmpty
        connection.submitResponse(self, status: head.status, fields: head.fields, withBody: !headerOnly)
    }

    func queueBody(_ bytes: UnsafeRawBufferPointer) {
        guard !finished else { return }
        pending.append(bytes)
        if submitted && deferred { connection.resume(self) }
    }

    func flushBody() -> Bool {
        guard !finished else { return false }
        submit()
        connection.sendSoon()
        if pending.readable < H2Stream.backlog { return true }
        wantsDrain = true
        return false
    }

    /// What a stream may hold of a response before its producer waits for `onDrain`.
    static let backlog = 256 * 1024

    var queuedBytes: Int { pending.readable }
    /// HTTP/2 frames every body: no chunks, no close.
    var framesUnknownLength: Bool { true }
    var passesChunks: Bool { false }

    func endResponse(framing: BodyFraming) {
        guard !finished else { return }
        ended = true
        if let r = request, r.response.trailers { trailers = HeadersFilter.trailers(r) }
        submit()
        if deferred { connection.resume(self) }
        connection.sendSoon()
    }

    /// A DATA frame can go now: the response's bytes within both windows (each above 0), or, nothing left to
    /// send, its end, an empty frame that no window holds back.
    func canSend(connectionWindow: Int) -> Bool {
        guard submitted && pendingHead == nil && !deferred && !localClosed && !finished else { return false }
        if pending.readable > 0 { return sendWindow.value > 0 && connectionWindow > 0 }
        return ended
    }

    /// Response bytes wait for the client (its window or the socket), not for limit_rate: send_timeout runs.
    var waitsForClient: Bool { pending.readable > 0 && !(rateTimer?.isArmed ?? false) }

    /// limit_rate held the body back: the connection tries again after `ms`.
    private var rateTimer: Timer?
    func resumeAfter(_ ms: UInt64) {
        if rateTimer == nil {
            rateTimer = connection.service.loop.makeTimer { [unowned(unsafe) self] in
                guard !self.finished, self.deferred else { return }
                self.connection.resume(self)
                self.connection.send()
            }
        }
        rateTimer!.rearm(after: ms)
    }

    /// The trailers go as a HEADERS frame after the body's last DATA frame.
    func takeTrailers() -> [(String, String)] {
        defer { trailers = [] }
        return trailers
    }
    var hasTrailers: Bool { !trailers.isEmpty }

    func disableKeepAlive() {}

    /// 444, a broken upstream: the stream is reset, the connection lives on.
    func abort() { reset(.internalError) }

    private func reset(_ code: H2ErrorCode) {
        guard !finished else { return }
        connection.reset(self, code: code)
    }

    func becomeTunnel(_ handler: TunnelEventHandler, unsent: (UnsafeRawBufferPointer) -> Void,
                      received: (UnsafeRawBufferPointer) -> Void) -> TunnelEnd? { nil }

    /// The response's last frame went out: the request ends (its log line), and a body the client is still
    /// sending, which no one will read, is refused with RST_STREAM NO_ERROR (RFC 9113 §8.1).
    func responseSent() {
        guard !finished else { return }
        let unread = !bodyComplete
        finish(status: nil)
        if unread { connection.reset(self, code: .noError) }
    }

    /// The stream closed (both ends done, or a reset either way): a request still in flight ends as nginx
    /// ends one whose client went away (499 before a head was sent).
    func closed(errorCode: H2ErrorCode) {
        guard !finished else { return }
        if let r = request, !(r.response.complete) {
            r.log.info("client prematurely closed stream\(errorCode == .noError ? "" : ": RST_STREAM with \(errorCode.name)")\(r.logContext)")
            finish(status: r.headerBytesSent == 0 ? 499 : nil)
        } else {
            finish(status: nil)
        }
    }

    private func finish(status: Int?) {
        finished = true
        rateTimer?.cancel()
        pending.consume(pending.readable)
        onDrain = nil
        guard let r = request else { return }
        if let status { r.status = status }
        r.dropBodyReaders()
        r.body.file = nil
        r.stopHandler()
        GzipFilter.release(r)
        connection.service.pipeline.finished(r)
        connection.service.counters.add(.writing, -1)
        request = nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CNGHTTP2
import CShim
import Config
import Core
import Event
import TLS

/// What the worker's connection set asks of a client connection, whatever its protocol.
public protocol ClientConnection: AnyObject {
    var fd: Int32 { get }
    /// Nothing in flight: a graceful stop may close it at once.
    var isIdle: Bool { get }
    func close()
    /// A graceful stop began: HTTP/2 says GOAWAY now (HTTP/1 answers its next request with Connection: close).
    func shutdownBegan()
}

/// One HTTP/2 client connection, h2 by ALPN or h2c by its preface: nghttp2's session does the framing, HPACK
/// and flow control through memory, driven from this connection's readiness events on the worker's loop
/// (no thread, no socket I/O in the library). Each stream is an `H2Stream` feeding the one request pipeline.
public final class H2Connection: ClientInfo, EventHandler, ClientConnection {
    unowned(unsafe) let service: HTTPService
    /// The default server of the address: its settings govern the connection (limits, timeouts).
    let defaultScope: SettingsScope
    private var session: OpaquePointer!
    /// Where the session's memory comes from (see vigil_lazy_malloc).
    private let arena: UnsafeMutablePointer<vigil_lazy_arena> = {
        let a = UnsafeMutablePointer<vigil_lazy_arena>.allocate(capacity: 1)
        a.initialize(to: vigil_lazy_arena())
        return a
    }()
    /// When the connection, without streams, times out (keepalive_timeout, or client_header_timeout before the
    /// first stream); its timer fires a second into the idleness first, to give memory back.
    private var idleUntil: UInt64 = 0
    private var streams = StreamTable()
    /// Taken from the worker's pool while bytes wait for the socket.
    private var outputQueue: OutputQueue?
    private var timer: Timer?
    private var interest: UInt32 = Events.readable | Events.readHangup
    /// Inside nghttp2 (mem_recv's callbacks) or the send loop: a send asked for now runs when it returns.
    private var busy = false
    private var sendAgain = false
    private var closed = false
    private var lingering = false
    private var goingAway = false
    /// Streams begun on this connection (`$connection_requests`).
    private var streamsBegun = 0
    private var lastStreamBegun: Int32 = 0
    /// Bytes of the frames received, and of their request payload (nginx's flood accounting).
    private var totalBytes = 0, payloadBytes = 0
    /// Ended with GOAWAY for a flood or a header block too large: no lingering close.
    private var misbehaved = false
    /// The client sent RFC 7540 priorities (a PRIORITY frame or a HEADERS frame's): DATA goes in nginx's order.
    private var prioritized = false
    /// Where an idle stream (one a PRIORITY frame placed) sat in the tree as the HEADERS opening it began.
    private var idlePlace: (id: Int32, parent: Int32, weight: Int32, children: [(id: Int32, weight: Int32)])?
    /// Streams whose DATA waits while a stream nginx puts first can go (see `yieldsToPriority`), and whether
    /// the next send must not hold any back (what was held back got nowhere).
    private var heldBack: [H2Stream] = []
    private var holdOff = false

    /// Takes over a connection whose first bytes (or ALPN) said HTTP/2: its socket, TLS stream and PROXY
    /// header; `preread` is what was read of it already (the preface, or part of it).
    init(taking c: ClientInfo, service: HTTPService, scope: SettingsScope) {
        self.service = service
        defaultScope = scope
        super.init(fd: c.fd, address: c.peerAddress, port: c.peerPort, isIPv6: c.peerIsIPv6, listen: c.listen, serial: c.serial, openedAt: c.openedAt)
        tls = c.tls
        proxyProtocol = c.proxyProtocol
    }

    deinit {
        if let session { nghttp2_session_del(session) }
        arena.deallocate()
    }

    /// Starts the session: our SETTINGS and the connection window nginx opens, then whatever was read already.
    func start(preread: UnsafeRawBufferPointer) {
        var s: OpaquePointer?
        var memory = nghttp2_mem(mem_user_data: arena, malloc: vigil_lazy_malloc, free: vigil_lazy_free, calloc: vigil_lazy_calloc,
                                 realloc: vigil_lazy_realloc)
        guard nghttp2_session_server_new3(&s, H2Connection.callbacks, Unmanaged.passUnretained(self).toOpaque(), H2Connection.options,
                                          &memory) == 0,
              let s else { return close() }
        session = s
        vigil_lazy_note_idle_block(arena)
        let h2 = defaultScope.settings.http2
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(h2.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(h2.bodyPrereadSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: UInt32(16_777_215)),
        ]
        nghttp2_submit_settings(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32.max)
        if preread.count > 0 && !receive(preread) { return }
        send()
        guard !closed else { return }
        // TLS may hold decrypted bytes that came with the handshake, which epoll cannot see.
        readable()
    }

    public var isIdle: Bool { streams.isEmpty }

    /// A server on this connection speaks HTTP/2: its own `http2 on`, or `listen … http2` on the address.
    func servesHTTP2(_ server: Server) -> Bool { service.router.speaksHTTP2(listen.address, server) }

    // MARK: events

    public func handleEvent(_ events: UInt32) {
        if closed { return }
        if lingering { return discard() }
        if events & Events.writable != 0 { send() }
        if closed { return }
        if events & (Events.readable | Events.readHangup | Events.error | Events.hangup) != 0 { readable() }
    }

    private func readable() {
        let buffer = service.h2Input(defaultScope.settings.http2.recvBufferSize)
        while !closed && !lingering {
            let n = buffer.receive(from: fd, tls: tls, limit: buffer.capacity)
            if n > 0 {
                let ok = buffer.withReadable { receive($0) }
                buffer.consume(buffer.readable)
                guard ok else { return }
                send()
                // One read a turn, unless TLS holds decrypted bytes epoll cannot report: level-triggered, the
                // rest brings another event, and the other connections get their turn in between.
                if !(tls?.hasPending ?? false) { return }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
            // The client closed, or the socket failed: every stream still open ends with it.
            return close()
        }
    }

    /// The client's first bytes, held until its first frame's header is in (see `receive`); nil after.
    private var opening: [UInt8]? = []
    private static let magicLength = 24, frameHeaderLength = 9

    /// Feeds bytes to nghttp2; false when the connection had to close (a fatal protocol error or a flood).
    /// nghttp2 insists that the client's first frame be SETTINGS, as RFC 9113 §3.4 says; nginx takes any
    /// frame after the preface (its test suite's client sends none until it has ours), so an empty SETTINGS
    /// stands in where the client's is missing.
    private func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard var held = opening else { return feed(bytes) }
        held += bytes
        let headerEnd = H2Connection.magicLength + H2Connection.frameHeaderLength
        guard held.count >= headerEnd else {
            opening = held
            return true
        }
        opening = nil
        let type = held[H2Connection.magicLength + 3], flags = held[H2Connection.magicLength + 4]
        guard type != UInt8(NGHTTP2_SETTINGS.rawValue) || flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 else {
            return held.withUnsafeBytes { feed($0) }
        }
        let emptySettings: [UInt8] = [0, 0, 0, UInt8(NGHTTP2_SETTINGS.rawValue), 0, 0, 0, 0, 0]
        return held.withUnsafeBytes { all in
            feed(UnsafeRawBufferPointer(rebasing: all[..<H2Connection.magicLength]))
                && emptySettings.withUnsafeBytes { feed($0) }
                && feed(UnsafeRawBufferPointer(rebasing: all[H2Connection.magicLength...]))
        }
    }

    private func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        busy = true
        let rc = nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        busy = false
        // Body bytes go on once per read, not per DATA frame: an upstream gets what came together as one chunk.
        while !deliveries.isEmpty {
            let s = deliveries.removeFirst()
            s.deliveryQueued = false
            if !s.finished { s.deliverBody() }
        }
        if rc < 0 {
            let code = nghttp2_error(rawValue: Int32(rc))
            if code == NGHTTP2_ERR_BAD_CLIENT_MAGIC {
                service.log.info("client sent invalid HTTP/2 preface, client: \(peerAddress)")
            } else {
                service.log.info("client violated HTTP/2 (\(String(cString: nghttp2_strerror(Int32(rc))))), client: \(peerAddress)")
            }
            // nghttp2 queued a GOAWAY for most violations: it goes if the socket takes it at once.
            send()
            close()
            return false
        }
        return true
    }

    // MARK: sending

    private var output: OutputQueue {
        if let q = outputQueue { return q }
        let q = service.buffers.takeOutput()
        outputQueue = q
        return q
    }

    /// Moves frames from nghttp2 to the socket until either has nothing more, then lets backed-up producers
    /// go on; runs once more if one of them (or a callback) asked for a send meanwhile.
    func send() {
        guard !closed, session != nil else { return }
        if busy { sendAgain = true; return }
        busy = true
        repeat {
            sendAgain = false
            guard pump() else { busy = false; return }
            runDrains()
        } while sendAgain && !closed
        busy = false
        guard !closed else { return }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 && (outputQueue?.isEmpty ?? true) {
            // A connection ended for misbehaving closes at once; a graceful end lingers.
            return misbehaved ? close() : lingeringClose()
        }
        if let q = outputQueue, q.isEmpty {
            service.buffers.giveOutput(q)
            outputQueue = nil
        }
        armIdleTimer()
    }

    /// A send at the end of this turn of the loop: the responses of every stream whose upstream answered in
    /// this turn go out in one write, as nginx's posted events batch them.
    func sendSoon() {
        if busy { sendAgain = true; return }
        if flushTimer == nil { flushTimer = service.loop.makeTimer { [unowned(unsafe) self] in self.send() } }
        if !flushTimer!.isArmed { flushTimer!.rearm(after: 0) }
    }
    private var flushTimer: Timer?

    /// False when the connection closed.
    private func pump() -> Bool {
        while true {
            let out = output
            while out.count < 65536 {
                var p: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &p)
                if n < 0 {
                    close()
                    return false
                }
                if n > 0 { out.append(UnsafeRawBufferPointer(start: p, count: n)) }
                // Streams held back for a better one queue again behind it, in nginx's order; if nothing went
                // meanwhile, they go next without being held back again.
                let spun = n == 0 && !heldBack.isEmpty
                holdOff = spun
                if !heldBack.isEmpty { releaseHeldBack() }
                if n == 0 && !spun { break }
            }
            if out.isEmpty {
                setInterest(writing: false)
                return true
            }
            switch out.flush(to: fd, tls: tls) {
            case .drained, .limited:
                continue
            case .wouldBlock:
                setInterest(writing: true)
                timer(UInt64(defaultScope.settings.core.sendTimeout))
                return true
            case .failed:
                close()
                return false
            }
        }
    }

    /// nginx's place for a stream in its output queue (ngx_http_v2_queue_frame): a lower rank (nearer the root
    /// of the dependency tree) first, then a larger share of the weights on the way to the root.
    private typealias QueuePlace = (rank: Int, share: Double)
    private static func precedes(_ a: QueuePlace, _ b: QueuePlace) -> Bool { a.rank < b.rank || a.rank == b.rank && a.share > b.share }

    /// nil past `deepest`: a stream deeper than the one it is compared with cannot go first (and a browser's
    /// chain of exclusive dependencies is as deep as its streams are many).
    private func queuePlace(_ id: Int32, deepest: Int = .max) -> QueuePlace? {
        var node = nghttp2_session_find_stream(session, id)
        guard node != nil else { return nil }
        var rank = 0, share = 1.0
        while let n = node, nghttp2_stream_get_stream_id(n) != 0 {
            rank += 1
            if rank > deepest { return nil }
            share *= Double(nghttp2_stream_get_weight(n)) / 256
            node = nghttp2_stream_get_parent(n)
        }
        return (rank, share)
    }

    /// Whether `s`'s DATA should wait for another stream's that nginx would send first and that can go now.
    /// nghttp2's fair queueing sends streams that enter its queue at once in the order they entered, whatever
    /// their weights (a stream the connection window held back queues ahead of one its own window held back).
    private func yieldsToPriority(_ s: H2Stream) -> Bool {
        guard let mine = queuePlace(s.id) else { return false }
        for other in streams.values where other !== s && other.hasDataToSend && !heldBack.contains(where: { $0 === other })
            && nghttp2_session_get_stream_remote_window_size(session, other.id) > 0 {
            if let place = queuePlace(other.id, deepest: mine.rank), H2Connection.precedes(place, mine) { return true }
        }
        return false
    }

    private func releaseHeldBack() {
        let held = heldBack.map { ($0, queuePlace($0.id) ?? (.max, 0)) }.sorted { H2Connection.precedes($0.1, $1.1) }
        heldBack.removeAll()
        for (s, _) in held where !s.finished { nghttp2_session_resume_data(session, s.id) }
    }

    /// nghttp2 gives an idle stream the default priority when a HEADERS frame without one opens it, and moves
    /// its children up; nginx keeps the place a PRIORITY frame gave it (RFC 7540 §5.3.4), and its children.
    private func restoreIdlePlace(_ id: Int32) {
        guard let place = idlePlace, place.id == id else { return }
        idlePlace = nil
        // A stream at the root gets the default weight again, as in nginx.
        if place.parent != 0 {
            var spec = nghttp2_priority_spec(stream_id: place.parent, weight: place.weight, exclusive: 0)
            nghttp2_session_change_stream_priority(session, id, &spec)
        }
        for child in place.children {
            var spec = nghttp2_priority_spec(stream_id: id, weight: child.weight, exclusive: 0)
            nghttp2_session_change_stream_priority(session, child.id, &spec)
        }
    }

    /// Streams whose producer waits (flushBody said backed up) go on once nghttp2 has taken their bytes.
    private func runDrains() {
        for s in streams.values where s.wantsDrain && s.pending.readable < H2Stream.backlog {
            s.wantsDrain = false
            s.onDrain?()
        }
    }

    private func setInterest(writing: Bool) {
        let want = writing ? interest | Events.writable : interest & ~Events.writable
        if want != interest {
            interest = want
            try? service.loop.modify(fd: fd, events: want)
        }
    }

    private func timer(_ ms: UInt64) {
        if timer == nil { timer = service.loop.makeTimer { [unowned(unsafe) self] in self.timedOut() } }
        timer!.rearm(after: ms)
    }

    /// No stream open: client_header_timeout for the first, keepalive_timeout between them (nginx 1.19.7+
    /// for HTTP/2 too). With streams: send_timeout while a response waits for the client's window (as for a
    /// full socket), else the earliest of the streams' client_header_timeout and client_body_timeout.
    private func armIdleTimer() {
        if interest & Events.writable != 0 { return }
        // Read in place: a copy of the core settings would retain every array and string in them.
        if streams.isEmpty {
            let limit = UInt64(streamsBegun == 0 ? defaultScope.settings.core.clientHeaderTimeout : defaultScope.settings.core.keepaliveTimeout)
            idleUntil = service.loop.now + limit
            timer(min(limit, 1000))
        } else if streams.values.contains(where: \.waitsForClient) {
            timer(UInt64(defaultScope.settings.core.sendTimeout))
        } else if let deadline = earliestClientDeadline {
            if timer == nil { timer = service.loop.makeTimer { [unowned(unsafe) self] in self.timedOut() } }
            timer!.rearm(at: deadline)
        } else {
            timer?.cancel()
        }
    }

    private var earliestClientDeadline: UInt64? {
        var earliest: UInt64?
        for s in streams.values { if let d = s.clientDeadline, d < (earliest ?? .max) { earliest = d } }
        return earliest
    }

    private func timedOut() {
        if lingering { return close() }
        if interest & Events.writable != 0 || streams.values.contains(where: \.waitsForClient) {
            service.log.info("client timed out (110: Connection timed out) while sending to client, client: \(peerAddress)")
            return close()
        }
        if !streams.isEmpty {
            let now = service.loop.now
            for s in streams.values where (s.clientDeadline ?? .max) <= now { s.clientTimedOut() }
            return send()
        }
        // Idle a second: nghttp2's frame buffer has nothing to send, and its pages go back until the next frame.
        if service.loop.now < idleUntil {
            vigil_lazy_release_idle_block(arena)
            timer!.rearm(at: idleUntil)
            return
        }
        // Idle past keepalive_timeout: GOAWAY, then the close.
        goAway()
        if !closed { send() }
    }

    // MARK: streams (called by H2Stream)

    func submitResponse(_ s: H2Stream, status: Int, fields: consuming H2Fields, withBody: Bool) {
        let rc = fields.withNV(status: status) { nva in
            guard withBody else { return nghttp2_submit_response(session, s.id, nva.baseAddress, nva.count, nil) }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: Unmanaged.passUnretained(s).toOpaque()),
                                                 read_callback: H2Connection.readBody)
            return nghttp2_submit_response(session, s.id, nva.baseAddress, nva.count, &provider)
        }
        if rc != 0 { reset(s, code: NGHTTP2_INTERNAL_ERROR) }
    }

    func resume(_ s: H2Stream) {
        s.deferred = false
        nghttp2_session_resume_data(session, s.id)
    }

    func reset(_ s: H2Stream, code: nghttp2_error_code) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), s.id, code.rawValue)
        send()
    }

    private var deliveries: [H2Stream] = []

    func deliverLater(_ s: H2Stream) {
        guard !s.deliveryQueued else { return }
        s.deliveryQueued = true
        deliveries.append(s)
    }

    /// Request body bytes were taken: the window opens for as many.
    func consume(_ id: Int32, _ n: Int) {
        nghttp2_session_consume(session, id, n)
        sendSoon()
    }

    /// Says GOAWAY naming the last stream taken (by default the last one begun): no more are taken, those
    /// open finish.
    private func goAway(last: Int32? = nil) {
        guard !goingAway, let session else { return }
        goingAway = true
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last ?? nghttp2_session_get_last_proc_stream_id(session),
                              NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    public func shutdownBegan() {
        goAway(last: streams.values.map(\.id).max() ?? lastStreamBegun)
        send()
    }

    // MARK: closing

    /// nginx's lingering close: the write side shuts, and what the client still sends (a PING after our
    /// GOAWAY) is read and dropped, so that it does not turn into a reset that destroys the last response.
    private func lingeringClose() {
        guard !lingering else { return }
        lingering = true
        tls?.shutdown()
        shutdown(fd, Int32(SHUT_WR))
        setInterest(writing: false)
        timer(5000)
        discard()
    }

    private func discard() { if Socket.discardInput(fd) { close() } }

    public func close() {
        guard !closed else { return }
        closed = true
        timer?.cancel()
        flushTimer?.cancel()
        for s in streams.values { s.closed(errorCode: NGHTTP2_NO_ERROR.rawValue) }
        streams.removeAll()
        if let q = outputQueue {
            q.clear()
            service.buffers.giveOutput(q)
            outputQueue = nil
        }
        tls?.shutdown()
        tls = nil
        service.loop.close(fd: fd)
        service.connectionClosed?(self)
    }

    /// nghttp2's name for an error code, as a log line says it.
    static func errorName(_ code: UInt32) -> String { String(cString: nghttp2_http2_strerror(code)) }

    // MARK: nghttp2 callbacks

    private static func connection(_ user: UnsafeMutableRawPointer?) -> H2Connection {
        Unmanaged<H2Connection>.fromOpaque(user!).takeUnretainedValue()
    }

    private static let options: OpaquePointer = {
        var o: OpaquePointer?
        nghttp2_option_new(&o)
        // The window opens as the request consumes a body, not as bytes arrive: a stalled upstream holds a
        // client back instead of filling memory.
        nghttp2_option_set_no_auto_window_update(o, 1)
        // The request's rules are nginx's, checked in H2Stream (a bad field or a body longer or shorter than its
        // Content-Length is a 400 there, where nghttp2 would reset the stream).
        nghttp2_option_set_no_http_messaging(o, 1)
        // Closed streams are not kept for the priority tree: less work and memory per stream.
        nghttp2_option_set_no_closed_streams(o, 1)
        return o!
    }()

    private static let callbacks: OpaquePointer = {
        var c: OpaquePointer?
        nghttp2_session_callbacks_new(&c)
        nghttp2_session_callbacks_set_on_begin_frame_callback(c, beginFrame)
        nghttp2_session_callbacks_set_on_begin_headers_callback(c, beginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(c, header)
        nghttp2_session_callbacks_set_on_frame_recv_callback(c, frameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, dataReceived)
        nghttp2_session_callbacks_set_on_frame_send_callback(c, frameSent)
        nghttp2_session_callbacks_set_on_stream_close_callback(c, streamClosed)
        nghttp2_session_callbacks_set_data_source_read_length_callback(c, frameLength)
        return c!
    }()

    /// A HEADERS frame without a priority of its own begins on a stream a PRIORITY frame placed: where it sits
    /// is noted before nghttp2 forgets it (`restoreIdlePlace`).
    private static let beginFrame: nghttp2_on_begin_frame_callback = { session, hd, user in
        guard let hd, hd.pointee.type == UInt8(NGHTTP2_HEADERS.rawValue), hd.pointee.flags & UInt8(NGHTTP2_FLAG_PRIORITY.rawValue) == 0 else { return 0 }
        let c = connection(user)
        guard c.prioritized, let stream = nghttp2_session_find_stream(session, hd.pointee.stream_id),
              nghttp2_stream_get_state(stream) == NGHTTP2_STREAM_STATE_IDLE, let parent = nghttp2_stream_get_parent(stream) else { return 0 }
        var children: [(id: Int32, weight: Int32)] = []
        var child = nghttp2_stream_get_first_child(stream)
        while let ch = child {
            children.append((nghttp2_stream_get_stream_id(ch), nghttp2_stream_get_weight(ch)))
            child = nghttp2_stream_get_next_sibling(ch)
        }
        c.idlePlace = (hd.pointee.stream_id, nghttp2_stream_get_stream_id(parent), nghttp2_stream_get_weight(stream), children)
        return 0
    }

    private static let beginHeaders: nghttp2_on_begin_headers_callback = { _, frame, user in
        guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
              frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
        let c = connection(user)
        let id = frame.pointee.hd.stream_id
        c.restoreIdlePlace(id)
        c.streams.insert(H2Stream(id: id, connection: c, requestsBefore: c.streamsBegun))
        c.streamsBegun += 1
        c.lastStreamBegun = id
        // keepalive_requests, keepalive_time and keepalive_timeout 0 end the connection after this stream, as
        // nginx's GOAWAY names it the last; so does a graceful stop.
        let scope = c.defaultScope
        if c.streamsBegun >= scope.settings.core.keepaliveRequests || scope.settings.core.keepaliveTimeout == 0 || c.service.isShuttingDown
            || c.service.loop.now - c.openedAt >= UInt64(scope.settings.core.keepaliveTime) {
            c.goAway(last: id)
        }
        return 0
    }

    private static let header: nghttp2_on_header_callback = { session, frame, name, namelen, value, valuelen, _, user in
        guard let frame, frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST,
              let s = connection(user).streams[frame.pointee.hd.stream_id] else { return 0 }
        guard s.addField(name: UnsafeRawBufferPointer(start: name, count: namelen), value: UnsafeRawBufferPointer(start: value, count: valuelen)) else {
            connection(user).misbehaved = true
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
            return Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        return 0
    }

    private static let frameReceived: nghttp2_on_frame_recv_callback = { session, frame, user in
        guard let frame else { return 0 }
        let c = connection(user)
        // nginx's flood check: frames that carry (almost) no request bytes — empty DATA, PRIORITY, WINDOW_UPDATE
        // without end (CVE-2019-9518's shapes, which nghttp2 does not limit) — may come to at most eight times
        // the payload, plus 1 MB, per connection.
        c.totalBytes += 9 + frame.pointee.hd.length
        let type = frame.pointee.hd.type
        if type == UInt8(NGHTTP2_DATA.rawValue) || type == UInt8(NGHTTP2_HEADERS.rawValue) { c.payloadBytes += frame.pointee.hd.length }
        if type == UInt8(NGHTTP2_PRIORITY.rawValue) || type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_PRIORITY.rawValue) != 0 {
            c.prioritized = true
        }
        if c.totalBytes / 8 > c.payloadBytes + 1 << 20 {
            c.service.log.info("http2 flood detected, client: \(c.peerAddress)")
            c.misbehaved = true
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
            return 0
        }
        guard let s = c.streams[frame.pointee.hd.stream_id] else { return 0 }
        let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch frame.pointee.hd.type {
        case UInt8(NGHTTP2_HEADERS.rawValue):
            if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                s.headComplete(endStream: endStream, frameLength: frame.pointee.hd.length)
            } else if endStream {
                s.clientEnded()   // trailers end the body
            }
        case UInt8(NGHTTP2_DATA.rawValue):
            s.request?.requestLength += frame.pointee.hd.length
            if endStream { s.clientEnded() }
        default:
            break
        }
        return 0
    }

    private static let dataReceived: nghttp2_on_data_chunk_recv_callback = { _, _, id, data, length, user in
        let c = connection(user)
        if let s = c.streams[id] {
            s.receiveData(UnsafeRawBufferPointer(start: data, count: length))
        } else {
            nghttp2_session_consume(c.session, id, length)
        }
        return 0
    }

    private static let frameSent: nghttp2_on_frame_send_callback = { _, frame, user in
        guard let frame, frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
              frame.pointee.hd.type == UInt8(NGHTTP2_DATA.rawValue) || frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
              let s = connection(user).streams[frame.pointee.hd.stream_id] else { return 0 }
        s.responseSent()
        return 0
    }

    private static let streamClosed: nghttp2_on_stream_close_callback = { _, id, code, user in
        let c = connection(user)
        guard let s = c.streams.remove(id) else { return 0 }
        s.closed(errorCode: code)
        return 0
    }

    /// DATA frames as large as the client's SETTINGS_MAX_FRAME_SIZE and the windows allow, within
    /// http2_chunk_size (nghttp2 would stop at 16 kB).
    private static let frameLength: nghttp2_data_source_read_length_callback = { _, _, id, connectionWindow, streamWindow, maxFrame, user in
        let chunk = connection(user).streams[id]?.request?.settings.http2.chunkSize ?? 8192
        return max(1, min(Int(connectionWindow), Int(streamWindow), Int(maxFrame), chunk))
    }

    /// nghttp2 pulls a response body: what the stream has queued, up to http2_chunk_size a frame; an empty
    /// queue defers the stream until more comes (or the end, with add_trailer's trailers after it).
    private static let readBody: nghttp2_data_source_read_callback = { session, id, buf, length, flags, source, user in
        let s = Unmanaged<H2Stream>.fromOpaque(source!.pointee.ptr).takeUnretainedValue()
        let c = connection(user)
        if c.prioritized && !c.holdOff && c.yieldsToPriority(s) {
            c.heldBack.append(s)
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        var n = min(length, s.pending.readable)
        // limit_rate, per stream as nginx applies it: past the budget the stream waits for its timer.
        if n > 0, let r = s.request, let rate = r.rate {
            let now = c.service.loop.now
            let budget = rate.budget(nowMs: now)
            guard budget > 0 else {
                s.deferred = true
                s.resumeAfter(rate.delayMs(nowMs: now))
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            }
            n = min(n, budget)
            r.rate?.sent += n
        }
        if n > 0 {
            s.pending.withReadable { buf!.update(from: $0.baseAddress!.assumingMemoryBound(to: UInt8.self), count: n) }
            s.pending.consume(n)
        }
        if s.pending.isEmpty && s.ended {
            flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if s.hasTrailers {
                flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                submitTrailers(session, id, s.takeTrailers())
            }
            return n
        }
        if n == 0 {
            s.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        return n
    }

    private static func submitTrailers(_ session: OpaquePointer?, _ id: Int32, _ fields: [(String, String)]) {
        var block = H2Fields(lines: fields.map { "\($0.0): \($0.1)\r\n" }.joined())
        _ = block.withNV(status: nil) { nghttp2_submit_trailer(session, id, $0.baseAddress, $0.count) }
    }
}

/// A response head's (or trailers') fields as HTTP/1 lines, the form the response sink writes them in, with
/// where each name and value lies: HTTP/2 sends them lowercased, without the connection's own fields.
struct H2Fields {
    private var block: [UInt8]
    private var lines: [(name: Range<Int>, value: Range<Int>)] = []

    init(lines text: String) { self.init(Array(text.utf8)) }

    init(_ bytes: [UInt8]) {
        block = bytes
        var found: [(name: Range<Int>, value: Range<Int>)] = []
        // One allocation for the list: a line per LF.
        found.reserveCapacity(bytes.withUnsafeBytes { b in b.reduce(0) { $1 == 0x0A ? $0 + 1 : $0 } })
        block.withUnsafeMutableBytes { b in
            var start = 0
            while start < b.count, let nl = memchr(b.baseAddress! + start, 0x0A, b.count - start) {
                let end = nl - UnsafeMutableRawPointer(b.baseAddress!)
                let lineEnd = end > start && b[end - 1] == 0x0D ? end - 1 : end
                if let colonAt = memchr(b.baseAddress! + start, 0x3A, lineEnd - start) {
                    let c = colonAt - UnsafeMutableRawPointer(b.baseAddress!)
                    var v = c + 1
                    while v < lineEnd && b[v] == 0x20 { v += 1 }
                    for i in start..<c where b[i] >= 65 && b[i] <= 90 { b[i] |= 0x20 }
                    if !H2Fields.connectionSpecific(UnsafeRawBufferPointer(rebasing: b[start..<c])) { found.append((start..<c, v..<lineEnd)) }
                }
                start = end + 1
            }
        }
        lines = found
    }

    var byteCount: Int { block.count }

    /// Fields HTTP/2 forbids (RFC 9113 §8.2.2), lowercase: the connection's own.
    static func connectionSpecific(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 7: return same(name, "upgrade")
        case 10: return same(name, "connection") || same(name, "keep-alive")
        case 16: return same(name, "proxy-connection")
        case 17: return same(name, "transfer-encoding")
        default: return false
        }
    }

    /// Byte equality with a literal (a generic elementsEqual over String.UTF8View showed in profiles).
    @inline(__always) static func same(_ a: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
        a.count == s.utf8CodeUnitCount && (a.count == 0 || memcmp(a.baseAddress!, s.utf8Start, a.count) == 0)
    }

    /// nghttp2's view of the fields, `:status` first when given; valid during `body` (nghttp2 copies them).
    mutating func withNV(status: Int?, _ body: (UnsafeBufferPointer<nghttp2_nv>) -> Int32) -> Int32 {
        let lines = self.lines
        // ":status" and its three digits, and the list, on the stack: nghttp2 copies them.
        var pseudo: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0x3A, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0, 0, 0)
        return withUnsafeMutableBytes(of: &pseudo) { p in
            let code = min(max(status ?? 0, 0), 999)
            p[7] = UInt8(0x30 + code / 100)
            p[8] = UInt8(0x30 + code / 10 % 10)
            p[9] = UInt8(0x30 + code % 10)
            let base = p.baseAddress!.assumingMemoryBound(to: UInt8.self)
            return block.withUnsafeMutableBufferPointer { b in
                withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: lines.count + 1) { nva in
                    var n = 0
                    if status != nil {
                        nva[n] = nghttp2_nv(name: base, value: base + 7, namelen: 7, valuelen: 3, flags: 0)
                        n += 1
                    }
                    for (name, value) in lines {
                        nva[n] = nghttp2_nv(name: b.baseAddress! + name.lowerBound, value: b.baseAddress! + value.lowerBound,
                                            namelen: name.count, valuelen: value.count, flags: 0)
                        n += 1
                    }
                    return body(UnsafeBufferPointer(rebasing: nva[..<n]))
                }
            }
        }
    }
}

/// A connection's open streams. An array searched by id: a connection has a few open at a time (at most
/// http2_max_concurrent_streams), and every header field, DATA chunk and frame looks its stream up, which a
/// dictionary paid a hash for.
struct StreamTable {
    private(set) var values: [H2Stream] = []

    var isEmpty: Bool { values.isEmpty }

    subscript(id: Int32) -> H2Stream? {
        for s in values where s.id == id { return s }
        return nil
    }

    mutating func insert(_ s: H2Stream) { values.append(s) }

    mutating func remove(_ id: Int32) -> H2Stream? {
        guard let i = values.firstIndex(where: { $0.id == id }) else { return nil }
        return values.remove(at: i)
    }

    mutating func removeAll() { values.removeAll() }
}

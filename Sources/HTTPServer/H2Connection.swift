#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import Event
import HTTP
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

/// One HTTP/2 client connection, h2 by ALPN or h2c by its preface, driven from its readiness events on the
/// worker's loop. `H2FrameReader` turns the bytes read into frames, which this connection acts on as nginx
/// does (stream states, flow control, priorities, the flood limits); each stream is an `H2Stream` feeding the
/// one request pipeline. Frames go out through the worker's output queues: HEADERS as a response head is
/// submitted, DATA as the streams' bodies and the peer's windows allow, in nginx's priority order. An idle
/// connection holds no frame buffer and no stream state, and no HPACK table until a request's header block
/// inserts into it (the client's table lives as long as the connection).
public final class H2Connection: ClientInfo, EventHandler, ClientConnection, H2FrameSink {
    let service: HTTPService
    /// The default server of the address: its settings govern the connection (limits, timeouts).
    let defaultScope: SettingsScope
    /// What a request's fields may take, large_client_header_buffers' count times its size: the bound of the
    /// header blocks read, of the HPACK decoder's header list, and of each stream's fields.
    let headerRoom: Int
    private var reader: H2FrameReader
    /// Made at the first request head; its table at the client's first insert.
    private var decoder: HPACKDecoder?
    private var encoder = HPACKEncoder()
    private var peer = H2PeerSettings()
    /// The client's connection window for our DATA.
    private var sendWindow = H2SendWindow(H2.defaultWindow)
    /// What the client may still send on the connection: kept near 2^31-1, as nginx keeps it.
    private var receiveWindow = H2.defaultWindow
    private var priorities = H2PriorityTree()
    /// The values of a SETTINGS frame whose end is still to come.
    private var pendingSettings: H2PeerSettings.Pending?
    /// The client acknowledged our SETTINGS.
    private var settingsAcknowledged = false
    /// When the connection, without streams, times out (keepalive_timeout, or client_header_timeout before the
    /// first stream); its timer fires a second into the idleness first, to give memory back.
    private var idleUntil: UInt64 = 0
    private var streams = StreamTable()
    /// Taken from the worker's pool while bytes wait for the socket.
    private var outputQueue: OutputQueue?
    private var timer: Timer?
    private var interest: UInt32 = Events.readable | Events.readHangup
    /// Inside a read or the send loop: a send asked for now runs when it returns.
    private var busy = false
    private var sendAgain = false
    private var closed = false
    private var lingering = false
    private var goingAway = false
    /// The last stream the graceful GOAWAY named: a later GOAWAY names none higher.
    private var goAwayLast: UInt32?
    /// Streams begun on this connection (`$connection_requests`).
    private var streamsBegun = 0
    /// The highest stream identifier a client HEADERS frame used (the GOAWAY's last stream).
    private var lastStreamID: UInt32 = 0
    /// Bytes of the frames received, and of their request payload (nginx's flood accounting).
    private var totalBytes = 0, payloadBytes = 0
    /// PRIORITY frames the client may still send: nginx's budget, which each new stream raises.
    private var priorityBudget: Int
    /// The client's resets of open streams (CVE-2023-44487): nghttp2's allowance of a burst of 1000, then 33 a
    /// second, which Vigil's HTTP/2 kept.
    private var resetAllowance = H2RateLimit(burst: 1000, perSecond: 33)
    /// Frames appended since the output last drained (ACKs, RST_STREAM, WINDOW_UPDATE, responses): past
    /// `maxUnsentFrames` the client, which sends but does not read, is flooding us (nginx's limit of 10000).
    private var unsentFrames = 0
    private static let maxUnsentFrames = 10_000
    /// Ended with GOAWAY for a flood or a header block too large: no lingering close.
    private var misbehaved = false
    /// The client sent RFC 7540 priorities: DATA goes in nginx's order rather than round robin.
    private var prioritized = false
    /// The stream whose DATA frame is being read, if it takes the data.
    private var dataStream: H2Stream?
    /// Streams whose request body goes on after this read (see `deliverLater`).
    private var deliveries: [H2Stream] = []
    /// Counts DATA frames sent: each stream notes its last, and the least recent goes next among equals.
    private var framesSent = 0

    /// Takes over a connection whose first bytes (or ALPN) said HTTP/2: its socket, TLS stream and PROXY
    /// header; `preread` is what was read of it already (the preface, or part of it).
    init(taking c: ClientInfo, service: HTTPService, scope: SettingsScope) {
        self.service = service
        defaultScope = scope
        let large = scope.settings.core.largeClientHeaderBuffers
        headerRoom = large.count * large.size
        // A header block may take what its fields may and a frame's worth more.
        reader = H2FrameReader(maxHeaderBlock: headerRoom + H2.defaultMaxFrameSize)
        priorityBudget = max(scope.settings.http2.maxConcurrentStreams, 100)
        super.init(fd: c.fd, address: c.peerAddress, port: c.peerPort, isIPv6: c.peerIsIPv6, listen: c.listen, serial: c.serial, openedAt: c.openedAt)
        tls = c.tls
        proxyProtocol = c.proxyProtocol
    }

    /// Starts the connection: our SETTINGS and the connection window nginx opens, then whatever was read already.
    func start(preread: UnsafeRawBufferPointer) {
        let h2 = defaultScope.settings.http2
        H2FrameWriter.appendSettings([(.maxConcurrentStreams, UInt32(clamping: h2.maxConcurrentStreams)), (.initialWindowSize, UInt32(h2.bodyPrereadSize)),
                                      (.maxFrameSize, UInt32(H2.largestFrameSize))], to: output)
        openReceiveWindow()
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

    /// Reads frames from `bytes`; false when the connection had to close (a protocol error or a flood).
    private func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        busy = true
        let result = Result { () throws(H2Violation) in try reader.read(bytes, into: self) }
        busy = false
        noteIncompleteHead()
        // Body bytes go on once per read, not per DATA frame: an upstream gets what came together as one chunk.
        var k = 0
        while k < deliveries.count {
            let s = deliveries[k]
            s.deliveryQueued = false
            if !s.finished { s.deliverBody() }
            k += 1
        }
        deliveries.removeAll(keepingCapacity: true)
        switch result {
        case .success(let goOn):
            return goOn && !closed
        case .failure(let violation):
            fail(violation.code, violation.reason)
            return false
        }
    }

    /// A connection error (RFC 9113 §5.4.1): logged as nginx logs it, GOAWAY with its code, and the close.
    private func fail(_ code: H2ErrorCode, _ reason: String) {
        guard !closed else { return }
        service.log.info("\(reason), client: \(peerAddress)")
        terminate(code)
    }

    /// GOAWAY with `code` naming the last stream begun (or the one a GOAWAY named already, if lower: the last
    /// stream never rises, RFC 9113 §6.8); what the socket takes of it goes, then the close.
    private func terminate(_ code: H2ErrorCode) {
        H2FrameWriter.appendGoAway(lastStream: min(lastStreamID, goAwayLast ?? .max), code: code, to: output)
        goingAway = true
        busy = false
        _ = output.flush(to: fd, tls: tls)
        close()
    }

    // MARK: frames received (H2FrameSink)

    public func frameBegins(_ h: H2FrameHeader) -> Bool {
        // nginx's flood check: frames that carry (almost) no request bytes — empty DATA, PRIORITY, WINDOW_UPDATE
        // without end (CVE-2019-9518's shapes) — may come to at most eight times the payload, plus 1 MB.
        totalBytes += H2.frameHeaderLength + h.length
        if h.type == .data || h.type == .headers || h.type == .continuation { payloadBytes += h.length }
        if h.type == .priority || h.type == .headers && h.has(H2Flag.priority) { prioritized = true }
        if totalBytes / 8 > payloadBytes + 1 << 20 || unsentFrames > H2Connection.maxUnsentFrames {
            endMisbehaving("http2 flood detected", .enhanceYourCalm)
            return false
        }
        return true
    }

    public func frame(_ h: H2FrameHeader, payload: UnsafeRawBufferPointer) -> Bool {
        switch h.type {
        case .settings:
            if h.has(H2Flag.ack) {
                settingsAcknowledged = true
                return true
            }
            return settings(h, entries: payload, last: true)
        case .ping:
            guard !h.has(H2Flag.ack) else { return true }
            H2FrameWriter.appendPingAck(payload, to: frameOutput())
            return true
        case .priority:
            return priorityReceived(h.streamID, H2Priority(payload.baseAddress!))
        case .rstStream:
            return resetReceived(h.streamID, H2Payload.errorCode(payload))
        case .windowUpdate:
            return windowUpdateReceived(h.streamID, H2Payload.windowIncrement(payload))
        default:
            // GOAWAY: the client opens no more streams; those open finish (nginx reads past it too).
            return true
        }
    }

    /// A SETTINGS frame's entries as they come: validated at once, applied at the frame's end.
    public func settings(_ h: H2FrameHeader, entries: UnsafeRawBufferPointer, last: Bool) -> Bool {
        var next = pendingSettings ?? H2PeerSettings.Pending(peer)
        pendingSettings = nil
        do throws(H2Violation) {
            try next.take(entries)
        } catch {
            fail(error.code, error.reason)
            return false
        }
        guard last else {
            pendingSettings = next
            return true
        }
        let change = next.apply(to: &peer)
        if let size = change.headerTableSize { encoder.peerTableSizeChanged(to: size) }
        if change.windowDelta != 0 {
            for s in streams.values where !s.sendWindow.grow(by: change.windowDelta) {
                fail(.flowControlError, "client sent SETTINGS frame with incorrect INITIAL_WINDOW_SIZE value \(peer.initialWindowSize)")
                return false
            }
        }
        H2FrameWriter.appendSettingsAck(to: frameOutput())
        return true
    }

    /// A flood or a client past its limits: logged (unless `reason` is nil: logged already), then GOAWAY with
    /// `code` and the close, without lingering.
    private func endMisbehaving(_ reason: String?, _ code: H2ErrorCode) {
        if let reason { service.log.info("\(reason), client: \(peerAddress)") }
        misbehaved = true
        terminate(code)
    }

    private func priorityReceived(_ id: UInt32, _ priority: H2Priority) -> Bool {
        priorityBudget -= 1
        guard priorityBudget > 0 else {
            fail(.enhanceYourCalm, "client sent too many PRIORITY frames")
            return false
        }
        guard priority.dependency != id else {
            fail(.protocolError, "client sent PRIORITY frame for stream \(id) with incorrect dependency")
            return false
        }
        priorities.prioritize(id, priority)
        return true
    }

    private func resetReceived(_ id: UInt32, _ code: H2ErrorCode) -> Bool {
        guard let s = streams[id] else { return true }
        guard resetAllowance.take(nowMs: service.loop.now) else {
            endMisbehaving("client reset too many streams", .internalError)
            return false
        }
        closeStream(s, code: code)
        return true
    }

    /// An increment of 0 is a connection error on stream 0 and a stream error on a stream (RFC 9113 §6.9;
    /// nginx 1.22 ends the connection for both).
    private func windowUpdateReceived(_ id: UInt32, _ increment: Int) -> Bool {
        if id == 0 {
            guard increment > 0 else {
                fail(.protocolError, "client sent WINDOW_UPDATE frame with incorrect window increment 0")
                return false
            }
            guard sendWindow.grow(by: increment) else {
                fail(.flowControlError, "client violated connection flow control: received WINDOW_UPDATE frame with window increment \(increment) not allowed for window \(sendWindow.value)")
                return false
            }
            return true
        }
        guard let s = streams[id] else { return true }
        guard increment > 0 else {
            service.log.info("client sent WINDOW_UPDATE frame for stream \(id) with incorrect window increment 0, client: \(peerAddress)")
            reset(s, code: .protocolError)
            return true
        }
        if !s.sendWindow.grow(by: increment) {
            service.log.info("client violated flow control for stream \(id): received WINDOW_UPDATE frame with window increment \(increment) not allowed for window \(s.sendWindow.value), client: \(peerAddress)")
            reset(s, code: .flowControlError)
        }
        return true
    }

    public func headerBlock(_ h: H2FrameHeader, priority: H2Priority?, block: UnsafeRawBufferPointer, length: Int) -> Bool {
        let id = h.streamID
        let endStream = h.has(H2Flag.endStream)
        if let s = streams[id], !s.remoteClosed {
            // Trailers: they end the body (and must say so).
            guard decodeBlock(block, into: nil) else { return false }
            guard endStream else {
                reset(s, code: .protocolError)
                return true
            }
            s.request?.requestLength += length
            s.remoteClosed = true
            s.clientEnded()
            return true
        }
        guard id % 2 == 1 && id > lastStreamID else {
            fail(.protocolError, "client sent HEADERS frame with incorrect identifier \(id), the last was \(lastStreamID)")
            return false
        }
        guard priority?.dependency != id else {
            fail(.protocolError, "client sent HEADERS frame for stream \(id) with incorrect dependency")
            return false
        }
        lastStreamID = id
        let h2 = defaultScope.settings.http2
        if goingAway || id == timedOutHead { return decodeBlock(block, into: nil) }
        if streams.count >= h2.maxConcurrentStreams {
            service.log.info("concurrent streams exceeded \(streams.count), client: \(peerAddress)")
            return refuse(id, block)
        }
        if !settingsAcknowledged && !endStream && h2.bodyPrereadSize < H2.defaultWindow {
            service.log.info("client sent stream with data before settings were acknowledged, client: \(peerAddress)")
            return refuse(id, block)
        }
        let s = H2Stream(id: id, connection: self, requestsBefore: streamsBegun, sendWindow: peer.initialWindowSize,
                         receiveWindow: h2.bodyPrereadSize)
        s.remoteClosed = endStream
        streams.insert(s)
        priorities.open(id, priority: priority)
        priorityBudget += h2.maxConcurrentStreams
        streamsBegun += 1
        // keepalive_requests, keepalive_time and keepalive_timeout 0 end the connection after this stream, as
        // nginx's GOAWAY names it the last; so does a graceful stop.
        let core = defaultScope.settings.core
        if streamsBegun >= core.keepaliveRequests || core.keepaliveTimeout == 0 || service.isShuttingDown
            || service.loop.now - openedAt >= UInt64(core.keepaliveTime) {
            goAway(last: id)
        }
        guard decodeBlock(block, into: s) else { return false }
        s.headComplete(endStream: endStream, frameLength: length)
        return !closed
    }

    /// REFUSED_STREAM, the header block decoded all the same (the HPACK table must stay in step).
    private func refuse(_ id: UInt32, _ block: UnsafeRawBufferPointer) -> Bool {
        H2FrameWriter.appendRstStream(stream: id, code: .refusedStream, to: frameOutput())
        return decodeBlock(block, into: nil)
    }

    /// Decodes a header block, handing its fields to `s` (nil: read and dropped); false when the connection
    /// ended: a block HPACK cannot decode (COMPRESSION_ERROR), or a head larger than large_client_header_buffers
    /// (ENHANCE_YOUR_CALM, as nginx).
    private func decodeBlock(_ block: UnsafeRawBufferPointer, into s: H2Stream?) -> Bool {
        if decoder == nil {
            decoder = HPACKDecoder(maxHeaderListSize: headerRoom + 65536)
        }
        var tooLarge = false
        do throws(HPACKError) {
            try decoder!.decode(block) { field in
                guard !tooLarge, let s else { return }
                if !s.addField(name: field.name, value: field.value) { tooLarge = true }
            }
        } catch .headerListTooLarge {
            service.log.info("client sent too large header, client: \(peerAddress)")
            tooLarge = true
        } catch .truncated, .stringPastBlock {
            fail(.frameSizeError, "client sent header block with incorrect length")
            return false
        } catch {
            fail(.compressionError, "client sent invalid header block (\(error))")
            return false
        }
        guard tooLarge else { return true }
        endMisbehaving(nil, .enhanceYourCalm)
        return false
    }

    public func dataBegins(_ h: H2FrameHeader, dataLength: Int) -> Bool {
        guard h.length <= receiveWindow else {
            fail(.flowControlError, "client violated connection flow control: received DATA frame length \(h.length), available window \(receiveWindow)")
            return false
        }
        receiveWindow -= h.length
        if receiveWindow < H2.maxWindow / 4 { openReceiveWindow() }
        dataStream = nil
        guard let s = streams[h.streamID] else { return true }
        guard s.receiveWindow.receive(h.length) else {
            service.log.info("client violated flow control for stream \(h.streamID): received DATA frame length \(h.length), available window \(s.receiveWindow.available), client: \(peerAddress)")
            reset(s, code: .flowControlError)
            return true
        }
        guard !s.remoteClosed else {
            service.log.info("client sent DATA frame for half-closed stream \(h.streamID), client: \(peerAddress)")
            reset(s, code: .streamClosed)
            return true
        }
        s.request?.requestLength += h.length
        // Padding is consumed as it arrives.
        if h.length > dataLength { consume(s.id, h.length - dataLength) }
        dataStream = s
        return true
    }

    /// The connection window opens to its largest, as nginx keeps it open.
    private func openReceiveWindow() {
        H2FrameWriter.appendWindowUpdate(stream: 0, increment: H2.maxWindow - receiveWindow, to: frameOutput())
        receiveWindow = H2.maxWindow
    }

    public func data(_ h: H2FrameHeader, _ bytes: UnsafeRawBufferPointer) -> Bool {
        dataStream?.receiveData(bytes)
        return true
    }

    public func dataEnds(_ h: H2FrameHeader) -> Bool {
        guard let s = dataStream else { return true }
        dataStream = nil
        if h.has(H2Flag.endStream) {
            s.remoteClosed = true
            s.clientEnded()
            if s.localClosed { closeStream(s, code: .noError) }
        }
        return true
    }

    // MARK: sending

    /// The output for one more frame, counted against `maxUnsentFrames`.
    private func frameOutput() -> OutputQueue {
        unsentFrames += 1
        return output
    }

    private var output: OutputQueue {
        if let q = outputQueue { return q }
        let q = service.buffers.takeOutput()
        outputQueue = q
        return q
    }

    /// Writes frames to the socket until there is nothing more to send or the socket is full, then lets
    /// backed-up producers go on; runs once more if one of them asked for a send meanwhile.
    func send() {
        guard !closed else { return }
        if busy { sendAgain = true; return }
        busy = true
        repeat {
            sendAgain = false
            guard pump() else { busy = false; return }
            runDrains()
        } while sendAgain && !closed
        busy = false
        guard !closed else { return }
        if goingAway && streams.isEmpty && (outputQueue?.isEmpty ?? true) {
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
            sendHeads()
            while out.count < 65536, let s = nextSender() {
                sendData(s, to: out)
            }
            finishSentStreams()
            if out.isEmpty {
                unsentFrames = 0
                setInterest(writing: false)
                return true
            }
            switch out.flush(to: fd, tls: tls) {
            case .drained:
                unsentFrames = 0
                continue
            case .limited:
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

    /// The stream whose DATA goes next: among those with something the windows let go, the first in nginx's
    /// order once the client sent priorities, and the one that sent least recently among equals.
    private func nextSender() -> H2Stream? {
        var best: H2Stream?
        var bestPlace: H2QueuePlace?
        for s in streams.values where s.canSend(connectionWindow: sendWindow.value) {
            guard let b = best else {
                best = s
                continue
            }
            if prioritized {
                let mine = priorities.queuePlace(s.id)!
                let theirs = bestPlace ?? priorities.queuePlace(b.id)!
                bestPlace = theirs
                if mine.precedes(theirs) || !theirs.precedes(mine) && s.lastFrame < b.lastFrame {
                    best = s
                    bestPlace = mine
                }
            } else if s.lastFrame < b.lastFrame {
                best = s
            }
        }
        return best
    }

    /// One DATA frame of `s`: as large as the windows, the client's SETTINGS_MAX_FRAME_SIZE and
    /// http2_chunk_size allow, held to limit_rate; END_STREAM on the last (or the trailers after it).
    private func sendData(_ s: H2Stream, to out: OutputQueue) {
        framesSent += 1
        s.lastFrame = framesSent
        let chunk = s.request?.settings.http2.chunkSize ?? 8192
        // A window the client's SETTINGS_INITIAL_WINDOW_SIZE lowered may be negative (RFC 9113 §6.9.2): no bytes
        // go then, though the empty DATA frame with END_STREAM may (`canSend` lets only that case through).
        var n = max(0, min(s.pending.readable, s.sendWindow.value, sendWindow.value, peer.maxFrameSize, chunk))
        // limit_rate, per stream as nginx applies it: past the budget the stream waits for its timer.
        if n > 0, let r = s.request, let rate = r.rate {
            let now = service.loop.now
            let budget = rate.budget(nowMs: now)
            guard budget > 0 else {
                s.deferred = true
                s.resumeAfter(rate.delayMs(nowMs: now))
                return
            }
            n = min(n, budget)
            r.rate?.sent += n
        }
        let last = n == s.pending.readable && s.ended
        let trailers = last && s.hasTrailers
        // Trailers after an empty body follow the response head at once, as nginx sends them.
        if n > 0 || !trailers {
            unsentFrames += 1
            H2FrameWriter.appendHeader(H2FrameHeader(length: n, type: .data, flags: last && !trailers ? H2Flag.endStream : 0, streamID: s.id), to: out)
        }
        if n > 0 {
            s.pending.withReadable { out.append(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            s.pending.consume(n)
            s.sendWindow.take(n)
            sendWindow.take(n)
        }
        if trailers { appendHeaders(s, status: nil, fields: H2Fields(lines: s.takeTrailers().map { "\($0.0): \($0.1)\r\n" }.joined()), endStream: true) }
        if last { s.localClosed = true }
    }

    /// Streams whose last frame went into the output: the request ends, and a stream closed both ways goes.
    /// Walked by index: a stream may leave the table meanwhile (a reset), and a copy of it would allocate.
    private func finishSentStreams() {
        var i = 0
        while i < streams.count {
            let s = streams.values[i]
            if s.localClosed && !s.finished { s.responseSent() }
            if s.localClosed && s.remoteClosed { closeStream(s, code: .noError) }
            if i < streams.count && streams.values[i] === s { i += 1 }
        }
    }

    /// A stream is done (both ends closed, or reset either way): out of the table and the tree, and the
    /// request told if it was still in flight.
    private func closeStream(_ s: H2Stream, code: H2ErrorCode) {
        guard streams.remove(s.id) != nil else { return }
        priorities.close(s.id)
        if dataStream === s { dataStream = nil }
        s.closed(errorCode: code)
    }

    /// Streams whose producer waits (flushBody said backed up) go on once their bytes went into frames.
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

    private func timer(_ ms: UInt64) { timer(at: service.loop.now + ms) }

    private func timer(at deadline: UInt64) {
        if timer == nil { timer = service.loop.makeTimer { [unowned(unsafe) self] in self.timedOut() } }
        timer!.rearm(at: deadline)
    }

    /// A HEADERS frame (or its CONTINUATION) still coming: client_header_timeout runs for its stream from the
    /// read that began it, as nginx runs it for a stream whose head is incomplete.
    private func noteIncompleteHead() {
        guard let id = reader.incompleteHeadStream else {
            incompleteHead = nil
            return
        }
        if incompleteHead?.id != id { incompleteHead = (id, service.loop.now + UInt64(defaultScope.settings.core.clientHeaderTimeout)) }
    }
    private var incompleteHead: (id: UInt32, deadline: UInt64)?
    /// The stream whose head timed out before it was complete: its block is decoded when it comes, and dropped.
    private var timedOutHead: UInt32?

    /// The incomplete head's time is up: RST_STREAM PROTOCOL_ERROR, as nginx resets it; the connection goes on.
    private func headTimedOut(_ id: UInt32) {
        service.log.info("client timed out (110: Connection timed out) while reading client request headers, client: \(peerAddress)")
        incompleteHead = nil
        timedOutHead = id
        // nginx had begun the stream: keepalive_timeout, not client_header_timeout, runs once it is gone.
        streamsBegun += 1
        H2FrameWriter.appendRstStream(stream: id, code: .protocolError, to: frameOutput())
        send()
    }

    /// No stream open: client_header_timeout for the first, keepalive_timeout between them (nginx 1.19.7+
    /// for HTTP/2 too). With streams: send_timeout while a response waits for the client's window (as for a
    /// full socket), else the earliest of the streams' client_header_timeout and client_body_timeout.
    private func armIdleTimer() {
        if interest & Events.writable != 0 { return }
        if let head = incompleteHead, streams.isEmpty || head.deadline < (earliestClientDeadline ?? .max) {
            timer(at: head.deadline)
            return
        }
        // Read in place: a copy of the core settings would retain every array and string in them.
        if streams.isEmpty {
            let limit = UInt64(streamsBegun == 0 ? defaultScope.settings.core.clientHeaderTimeout : defaultScope.settings.core.keepaliveTimeout)
            idleUntil = service.loop.now + limit
            timer(min(limit, 1000))
        } else if streams.values.contains(where: \.waitsForClient) {
            timer(UInt64(defaultScope.settings.core.sendTimeout))
        } else if let deadline = earliestClientDeadline {
            timer(at: deadline)
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
        if let head = incompleteHead, head.deadline <= service.loop.now { return headTimedOut(head.id) }
        if interest & Events.writable != 0 || streams.values.contains(where: \.waitsForClient) {
            service.log.info("client timed out (110: Connection timed out) while sending to client, client: \(peerAddress)")
            return close()
        }
        if !streams.isEmpty {
            let now = service.loop.now
            for s in streams.values where (s.clientDeadline ?? .max) <= now { s.clientTimedOut() }
            return send()
        }
        // Idle a second: what the busy connection kept for the next request goes back, as nginx frees its buffers.
        if service.loop.now < idleUntil {
            releaseIdleMemory()
            timer(at: idleUntil)
            return
        }
        // Idle past keepalive_timeout: GOAWAY, then the close.
        goAway()
        if !closed { send() }
    }

    private func releaseIdleMemory() {
        decoder?.releaseScratch()
        priorities.releaseStorage()
        streams.releaseStorage()
        deliveries = []
    }

    // MARK: streams (called by H2Stream)

    /// The response head goes out at the next send, before the stream's DATA (not at once: a stream the
    /// client resets in the same read gets no frame after its RST_STREAM).
    func submitResponse(_ s: H2Stream, status: Int, fields: consuming H2Fields, withBody: Bool) {
        s.pendingHead = (status, fields, !withBody)
        sendSoon()
    }

    /// The HEADERS frames of the response heads submitted since the last send.
    private func sendHeads() {
        for s in streams.values {
            guard let head = s.pendingHead else { continue }
            s.pendingHead = nil
            appendHeaders(s, status: head.status, fields: head.fields, endStream: head.endStream)
            if head.endStream { s.localClosed = true }
        }
    }

    /// A HEADERS frame (and CONTINUATION frames if the block is larger than the client's frames may be).
    private func appendHeaders(_ s: H2Stream, status: Int?, fields: H2Fields, endStream: Bool) {
        var block = service.headBlocks.take()
        fields.encode(status: status, with: &encoder, into: &block)
        block.withUnsafeBytes {
            H2FrameWriter.appendHeaders(stream: s.id, block: $0, endStream: endStream, maxFrameSize: peer.maxFrameSize, to: frameOutput())
        }
        service.headBlocks.give(block)
    }

    func resume(_ s: H2Stream) {
        s.deferred = false
        sendSoon()
    }

    /// RST_STREAM with `code`: the stream ends at once.
    func reset(_ s: H2Stream, code: H2ErrorCode) {
        guard streams[s.id] === s else { return }
        H2FrameWriter.appendRstStream(stream: s.id, code: code, to: frameOutput())
        closeStream(s, code: code)
        send()
    }

    func deliverLater(_ s: H2Stream) {
        guard !s.deliveryQueued else { return }
        s.deliveryQueued = true
        deliveries.append(s)
    }

    /// Request body bytes were taken: the stream's window opens once half of it is consumed.
    func consume(_ id: UInt32, _ n: Int) {
        guard let s = streams[id], !s.remoteClosed, let increment = s.receiveWindow.consume(n) else { return }
        H2FrameWriter.appendWindowUpdate(stream: id, increment: increment, to: frameOutput())
        sendSoon()
    }

    /// Says GOAWAY naming the last stream taken (by default the last one begun): no more are taken, those
    /// open finish.
    private func goAway(last: UInt32? = nil) {
        guard !goingAway, !closed else { return }
        goingAway = true
        goAwayLast = last ?? lastStreamID
        H2FrameWriter.appendGoAway(lastStream: goAwayLast!, code: .noError, to: output)
    }

    public func shutdownBegan() {
        goAway(last: streams.values.map(\.id).max() ?? lastStreamID)
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
        for s in streams.values { s.closed(errorCode: .noError) }
        streams.removeAll()
        dataStream = nil
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
}

/// A connection's open streams. An array searched by id: a connection has a few open at a time (at most
/// http2_max_concurrent_streams), and every DATA frame and WINDOW_UPDATE looks its stream up, which a
/// dictionary paid a hash for.
struct StreamTable {
    private(set) var values: [H2Stream] = []

    var isEmpty: Bool { values.isEmpty }
    var count: Int { values.count }

    subscript(id: UInt32) -> H2Stream? {
        for s in values where s.id == id { return s }
        return nil
    }

    mutating func insert(_ s: H2Stream) { values.append(s) }

    mutating func remove(_ id: UInt32) -> H2Stream? {
        guard let i = values.firstIndex(where: { $0.id == id }) else { return nil }
        return values.remove(at: i)
    }

    mutating func removeAll() { values.removeAll() }

    /// Gives back the storage once no stream is open (an idle connection's memory).
    mutating func releaseStorage() { if values.isEmpty { values = [] } }
}

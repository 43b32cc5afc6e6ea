#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Event
import HTTP
import ShmTable

/// The prober that runs in the elected checker (design.md §3): one event loop, each peer's first probe
/// spread over its interval, never two probes of one peer at once, one timeout covering connect + send +
/// receive, a fresh connection per probe, and the reference module's rise/fall state machine.
public final class CheckEngine {
    let loop: EventLoop
    let segment: Segment
    let peers: [CheckedPeer]
    let pid: Int32
    let log: (LogLevelName, String) -> Void
    /// Whether info lines are wanted: failure texts are only built when someone will read them.
    let logsInfo: Bool
    var states: [PeerState]
    let payloads: [[UInt8]]
    /// Created with the engine, so that a stop requested before the thread runs is not lost.
    private let stopFd: Int32 = vigil_eventfd(0)
    private var stopper: StopHandler?
    /// `check_keepalive_requests` > 1: an idle check connection per peer, with the requests it has carried.
    var parked: [Int: ParkedConnection] = [:]

    public enum LogLevelName { case error, warn, info }

    public init(segment: Segment, peers: [CheckedPeer], pid: Int32, logsInfo: Bool,
                log: @escaping (LogLevelName, String) -> Void) throws {
        self.logsInfo = logsInfo
        self.loop = try EventLoop()
        self.segment = segment
        self.peers = Array(peers.prefix(segment.peerCount))
        self.pid = pid
        self.log = log
        // Start from what the segment holds: the previous checker's results or the carried-over state.
        self.states = (0..<self.peers.count).map { segment.slot($0).read() }
        self.payloads = self.peers.map { Probes.payload(for: $0.check) }
    }

    /// Runs until `stop()` is called from any thread (or the lock is lost).
    public func run() {
        stopper = StopHandler(engine: self)
        try? loop.register(fd: stopFd, events: Events.readable, handler: stopper!)
        var seed = UInt64(pid) &* 0x9E37_79B9_7F4A_7C15 ^ vigil_monotonic_us()
        for i in peers.indices {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let window = UInt64(max(1, min(peers[i].check.interval, 1000)))
            loop.schedule(after: (seed >> 33) % window) { [unowned self] in self.startProbe(i) }
        }
        heartbeat()
        loop.run()
        for kept in parked.values { Glibc.close(kept.fd) }
        parked.removeAll()
    }

    deinit { Glibc.close(stopFd) }

    /// Thread-safe: wakes the loop, which then stops (at once if it has not started yet: the count stays set).
    public func stop() {
        var one: UInt64 = 1
        _ = write(stopFd, &one, 8)
    }

    private final class StopHandler: EventHandler {
        unowned let engine: CheckEngine
        init(engine: CheckEngine) { self.engine = engine }
        func handleEvent(_ events: UInt32) { engine.loop.stop() }
    }

    private func heartbeat() {
        let lock = segment.checker
        guard lock.holder == pid else {
            log(.warn, "checker lock for generation \(segment.generation) was taken over, worker \(pid) stops checking")
            loop.stop()
            return
        }
        lock.heartbeat(pid: pid, nowMs: vigil_monotonic_ms())
        loop.schedule(after: 250) { [unowned self] in self.heartbeat() }
    }

    private func startProbe(_ i: Int) {
        Probe(engine: self, index: i).start()
    }

    /// Applies one result (check-module.md §2) and schedules the next probe `interval` after it.
    func record(_ i: Int, success: Bool, rttUs: UInt64, reason: FailureReason, message: () -> String?) {
        let peer = peers[i]
        let c = peer.check
        var s = states[i]
        let now = vigil_monotonic_ms()
        s.checked = true
        s.checks &+= 1
        s.lastCheckMs = now
        s.rttUs = UInt32(min(rttUs, UInt64(UInt32.max)))
        if success {
            s.rise &+= 1
            s.fall = 0
            if s.down && Int(s.rise) >= c.rise {
                s.down = false
                s.lastChangeMs = now
                log(.error, "enable check peer: \(peer.checkAddress) in upstream \"\(peer.upstream)\"")
            }
        } else {
            s.failures &+= 1
            s.reason = reason
            s.fall &+= 1
            s.rise = 0
            let flips = !s.down && Int(s.fall) >= c.fall
            if logsInfo || flips {
                let text = message() ?? reason.text
                if logsInfo { log(.info, text) }
                if flips { log(.error, "disable check peer: \(peer.checkAddress) in upstream \"\(peer.upstream)\": \(text)") }
            }
            if flips {
                s.down = true
                s.lastChangeMs = now
            }
        }
        states[i] = s
        segment.slot(i).write(s)   // the checker is the slot's only writer
        loop.schedule(after: UInt64(c.interval)) { [unowned self] in self.startProbe(i) }
    }
}

/// An idle kept-alive check connection. Anything it signals (the peer closing it, stray bytes) ends it;
/// that is not a check result (check-module.md §2).
final class ParkedConnection: EventHandler {
    let fd: Int32
    let requests: Int
    let index: Int
    unowned let engine: CheckEngine
    init(fd: Int32, requests: Int, index: Int, engine: CheckEngine) {
        self.fd = fd
        self.requests = requests
        self.index = index
        self.engine = engine
    }
    func handleEvent(_ events: UInt32) {
        engine.parked[index] = nil
        engine.loop.unregister(fd: fd)
        close(fd)
    }
}

/// One probe of one peer: connect (or reuse a kept-alive connection), send the payload, read until the
/// verdict, then close or park the connection.
final class Probe: EventHandler {
    unowned let engine: CheckEngine
    let index: Int
    private var fd: Int32 = -1
    private var sent = 0
    private var reply: [UInt8] = []
    private var connected = false
    private var timer: Timer?
    private let startedUs = vigil_monotonic_us()
    private var finished = false
    private var peer: CheckedPeer { engine.peers[index] }
    /// Requests this connection carried before this probe (kept-alive http checks).
    private var requestsBefore = 0
    private var reused = false
    /// A connect refused at once never reaches epoll; closing it then needs no epoll_ctl.
    private var registered = false

    init(engine: CheckEngine, index: Int) {
        self.engine = engine
        self.index = index
    }

    func start() {
        timer = engine.loop.schedule(after: UInt64(peer.check.timeout)) { [unowned self] in
            self.fail(.timedOut, "check time out with peer: \(self.peer.checkAddress) ")
        }
        if let kept = engine.parked.removeValue(forKey: index) {
            fd = kept.fd
            requestsBefore = kept.requests
            reused = true
            registered = true
            connected = true
            engine.loop.setHandler(fd: fd, self)
            try? engine.loop.modify(fd: fd, events: Events.writable | Events.readable | Events.readHangup)
            return
        }
        connect()
    }

    private func connect() {
        let a = peer.checkAddress
        fd = socket(a.isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            let e = errno
            return fail(.connectFailed, "socket() failed (\(e): \(String(cString: strerror(e))))")
        }
        let rc = Socket.withSockaddr(host: a.host, port: a.port, isIPv6: a.isIPv6) { Glibc.connect(fd, $0, $1) } ?? -1
        if rc != 0 && errno != EINPROGRESS { return connectFailed(errno) }
        do {
            try engine.loop.register(fd: fd, events: Events.writable | Events.readable | Events.readHangup, handler: self)
            registered = true
        } catch {
            return fail(.connectFailed, "\(error)")
        }
    }

    /// A kept-alive connection the peer had closed: not a result; check again on a fresh connection.
    private func retryFresh() {
        engine.loop.unregister(fd: fd)
        registered = false
        close(fd)
        fd = -1
        reused = false
        connected = false
        requestsBefore = 0
        sent = 0
        reply.removeAll()
        connect()
    }

    private func connectFailed(_ err: Int32) {
        fail(err == ECONNREFUSED ? .connectRefused : .connectFailed,
             "connect() failed (\(err): \(String(cString: strerror(err)))) with peer: \(peer.checkAddress) ")
    }

    func handleEvent(_ events: UInt32) {
        if finished { return }
        if !connected {
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 { return connectFailed(err) }
            if events & (Events.writable | Events.readable) == 0 { return }
            connected = true
            if peer.check.type == .tcp { return tcpVerdict() }
        }
        let payload = engine.payloads[index]
        while sent < payload.count {
            let n = payload.withUnsafeBytes { send(fd, $0.baseAddress! + sent, payload.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if reused { return retryFresh() }
            let e = errno
            return fail(.sendFailed, "send() failed (\(e): \(String(cString: strerror(e)))) with peer: \(peer.checkAddress) ")
        }
        if events & Events.writable != 0 { try? engine.loop.modify(fd: fd, events: Events.readable | Events.readHangup) }
        receive()
    }

    /// tcp: the connect succeeded; a non-consuming peek tells a live socket from one closed at once.
    private func tcpVerdict() {
        var b: UInt8 = 0
        let n = recv(fd, &b, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { return succeed() }
        let e = errno
        fail(.closed, n == 0 ? "peer closed connection, peer: \(peer.checkAddress) "
                              : "recv() failed (\(e): \(String(cString: strerror(e)))) with peer: \(peer.checkAddress) ")
    }

    private func receive() {
        var buf = [UInt8](repeating: 0, count: 4096)
        var eof = false
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                reply += buf[0..<n]
                // Bounded: a peer that floods is judged on what it sent first.
                if reply.count > 65536 { break }
                continue
            }
            if n == 0 { eof = true; break }
            if errno == EAGAIN || errno == EINTR { break }
            if reused && reply.isEmpty { return retryFresh() }
            let e = errno
            return fail(.recvFailed, "recv() failed (\(e): \(String(cString: strerror(e)))) with peer: \(peer.checkAddress) ")
        }
        if eof && reused && reply.isEmpty { return retryFresh() }
        let c = peer.check
        switch Probes.evaluate(c.type, reply, eof: eof || reply.count > 65536, expect: c.effectiveExpectAlive,
                               expectSet: c.expectAlive != nil, peer: peer.checkAddress.description) {
        case .needMore: return
        case .up: finish(success: true, reason: .none, message: { nil }, keep: !eof && reusable())
        case .down(let reason, let message): fail(reason, message)
        }
    }

    /// Whether the connection can carry the next check (check_keepalive_requests, fixed: the reference never
    /// reuses it): an http check whose whole response is in, framed by Content-Length, below 400, not closing.
    private func reusable() -> Bool {
        let c = peer.check
        guard c.type == .http, requestsBefore + 1 < c.keepaliveRequests else { return false }
        let parsed = reply.withUnsafeBytes { ResponseParser.parse($0) }
        guard case .complete(let head, let consumed) = parsed, head.status < 400, !head.connectionClose, !head.chunked else { return false }
        let body = head.hasBody ? (head.contentLength ?? -1) : 0
        return body >= 0 && reply.count == consumed + body
    }

    private func succeed() { finish(success: true, reason: .none, message: { nil }) }
    /// The text is built only if it will be logged; callers capture errno before anything else runs.
    private func fail(_ reason: FailureReason, _ message: @autoclosure () -> String) {
        finish(success: false, reason: reason, message: message)
    }

    private func finish(success: Bool, reason: FailureReason, message: () -> String?, keep: Bool = false) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        if keep {
            let kept = ParkedConnection(fd: fd, requests: requestsBefore + 1, index: index, engine: engine)
            engine.parked[index] = kept
            engine.loop.setHandler(fd: fd, kept)
            try? engine.loop.modify(fd: fd, events: Events.readable | Events.readHangup)
            fd = -1
        } else if fd >= 0 {
            if registered { engine.loop.unregister(fd: fd) }
            close(fd)
            fd = -1
        }
        engine.record(index, success: success, rttUs: vigil_monotonic_us() - startedUs, reason: reason, message: message)
    }
}

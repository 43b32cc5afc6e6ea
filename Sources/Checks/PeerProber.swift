#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import Event
import HTTP
import ShmTable
import TLS
import Upstream

/// Probes one peer for the life of the checker: connect (or reuse a kept-alive connection), send the
/// payload, read until the verdict, then close or park the connection and wait `interval` on the engine's
/// grid. Its connection (an `UpstreamConnection`, as the proxy's) connects, handshakes, verifies and runs the
/// probe's timeout; its own timer brings a re-check forward. A probe costs no allocation.
final class PeerProber: UpstreamConnectionDelegate {
    private enum Phase { case idle, probing, parked }

    /// unowned(unsafe): the engine owns its probers and outlives them; a checked unowned load per use showed
    /// in the checker's profile.
    unowned(unsafe) let engine: CheckEngine
    let index: Int
    let peer: CheckedPeer
    /// rise and fall, read on every verdict without touching `peer`.
    let riseThreshold: Int
    let fallThreshold: Int
    private let payload: [UInt8]
    /// Parsed once; nil only for an address the resolver should never have produced.
    private let address: SocketAddress?
    /// The address as verdicts name it, spelled once rather than on every reply.
    private let addressText: String
    /// A re-check brought forward (`recheckNow`).
    private var timer: Timer!
    /// Whether the probe's timeout is armed: a refused connect never arms it, and at 10,000 peers cancelling an
    /// idle timer was a cache miss on one more object per probe.
    private var timeoutArmed = false
    /// The peer's verdict state, published to its slot after each probe (CheckEngine.record); kept here, in the
    /// object every probe touches anyway, not in an array of its own.
    var state: PeerState

    private var phase = Phase.idle
    private let connection: UpstreamConnection
    private var sent = 0
    private var reply: [UInt8] = []
    private var startedUs: UInt64 = 0
    /// Requests the current connection carried before this probe (kept-alive http checks).
    private var requestsBefore = 0
    private var reused = false
    /// `type=https`: the handshake (SNI: check_ssl_server_name, else the server's host name) and, with
    /// check_ssl_verify, the chain's verification, inside the probe's one timeout. The peer's last session is
    /// offered again (as HAProxy does for its checks): a resumed handshake skips the certificate and most of
    /// the key exchange, which were most of an https probe's cost.
    private let tlsSetup: UpstreamTLSSetup?

    init(engine: CheckEngine, index: Int, peer: CheckedPeer) {
        self.engine = engine
        self.index = index
        self.peer = peer
        self.riseThreshold = peer.check.rise
        self.fallThreshold = peer.check.fall
        self.payload = Probes.payload(for: peer.check)
        let a = peer.checkAddress
        self.address = SocketAddress(host: a.host, port: a.port, isIPv6: a.isIPv6)
        self.addressText = a.description
        self.tlsSetup = peer.check.type == .https ? engine.tls?.checkContext(upstream: peer.upstream).map {
            UpstreamTLSSetup(context: $0, serverName: peer.check.sslServerName ?? peer.hostName, session: TLSSessionSlot(), verification: .chain)
        } : nil
        self.connection = UpstreamConnection(loop: engine.loop)
        // Start from what the segment holds: the previous checker's results or the carried-over state.
        self.state = engine.segment.slot(index).read()
        self.timer = engine.loop.makeTimer { [unowned(unsafe) self] in self.recheckDue() }
        connection.delegate = self
    }

    func scheduleFirst(after ms: UInt64) {
        anchorMs = vigil_monotonic_ms()
        wait(ms, nowMs: anchorMs)
    }

    /// Scheduled probes start on a grid of `gridMs` (a tenth of the interval, 100 ms at most), so the probes of
    /// many peers share one wake-up: at 1,000 peers and 1 s, 10 wake-ups a second instead of ~100, which brings
    /// the checker's CPU to within a few percent of the kernel's cost for the probes' own system calls. The
    /// next probe is timed from when this one was due, not from when it ran, so the cadence stays the interval
    /// and the grid only fixes each peer's phase.
    private func wait(_ ms: UInt64, nowMs: UInt64) {
        let grid = gridMs
        let due = max(anchorMs + ms, nowMs)
        dueAtMs = (due + grid - 1) / grid * grid
        engine.grid.add(index, at: dueAtMs)
    }

    /// The grid tick this prober waited for has come (an entry it left behind when it started otherwise since,
    /// on a re-check, is ignored).
    func gridTick(_ tick: UInt64) {
        guard tick == dueAtMs, phase != .probing else { return }
        anchorMs = dueAtMs
        start()
    }

    /// A new peer's first round runs on a finer grid: its probes are due within milliseconds, and 100 ms of
    /// rounding would be most of the wait.
    private var gridMs: UInt64 { UInt64(min(max(peer.check.interval / 10, 1), state.firstRound ? 10 : 100)) }

    /// When the current (or last) probe was due: scheduled probes count their next wait from here.
    private var anchorMs: UInt64 = 0

    /// Closes whatever connection is open; the engine is stopping.
    func abandon() {
        disarm()
        timer.cancel()
        dueAtMs = .max
        closeConnection()
        phase = .idle
    }

    /// A worker's request failed on this peer: probe now. A probe already running may have begun before the
    /// failure, so one more follows it if it passes. Probes triggered this way start at most once per timeout
    /// (a flood of failing requests costs one extra probe per timeout); scheduled probes do not count.
    func recheckNow() {
        if phase == .probing { recheckAfterProbe = true; return }
        let now = vigil_monotonic_ms()
        let at = max(now, lastTriggeredMs &+ UInt64(peer.check.timeout))
        guard at < dueAtMs else { return }
        lastTriggeredMs = at
        if at == now { anchorMs = now; return start() }
        dueAtMs = at
        timer.rearm(at: at)
    }

    /// When the last triggered probe started (or is due): the monotonic clock is far past any timeout at first.
    private var lastTriggeredMs: UInt64 = 0
    private var recheckAfterProbe = false

    /// When the next probe is due (monotonic ms): a re-check only ever brings it forward.
    private var dueAtMs: UInt64 = .max

    /// A re-check that recheckNow() set for later.
    private func recheckDue() {
        guard phase != .probing else { return }
        anchorMs = dueAtMs
        start()
    }

    func upstreamTimedOut() {
        timeoutArmed = false
        if phase == .probing { fail(.timedOut, "check time out with peer: \(peer.checkAddress) ") }
    }

    private func start() {
        startedUs = vigil_monotonic_us()
        dueAtMs = .max
        sent = 0
        if !reply.isEmpty { reply.removeAll(keepingCapacity: true) }
        if phase == .parked {
            phase = .probing
            reused = true
            armTimeout()
            // The kept connection can take the request now; its reply brings the next edge.
            return exchange(0)
        }
        phase = .probing
        reused = false
        requestsBefore = 0
        connect()
    }

    private func connect() {
        guard let address else { return fail(.connectFailed, "bad check address \(peer.checkAddress)") }
        let socket = engine.probeSocket(family: address.family)
        guard socket >= 0 else {
            let e = errno
            return fail(.connectFailed, "socket() failed (\(Errno.text(e)))")
        }
        switch connection.connect(to: address, peer: peer.checkAddress, socket: socket, delayAck: false, tls: tlsSetup) {
        case .failed(let failure):
            return upstreamFailed(failure)
        case .connected:
            break
        case .inProgress:
            if tlsSetup == nil && !payload.isEmpty {
                // A plain request goes out at once: on loopback the handshake is usually done by now, a
                // connection still on its way says EAGAIN, and a refusal shows as send's error.
                let n = payload.withUnsafeBytes { send(connection.fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 {
                    connection.markConnected()
                    sent = n
                } else if errno != EAGAIN {
                    let e = errno
                    // One more connect() returns a refused socket to unconnected (ECONNABORTED) for reuse.
                    if e == ECONNREFUSED && connection.knownRefusal(address) == ECONNABORTED { keepRefusedSocket(family: address.family) }
                    return connectFailed(e)
                }
            } else if let e = connection.knownRefusal(address) {
                // A refusal on loopback is already known here, and a second connect() reports it without a trip
                // through epoll. It also leaves the socket unconnected, so the next probe of any peer reuses it:
                // a refused probe, what every probe of a down peer is, costs two connect()s instead of
                // socket(), connect(), getsockopt() and close().
                if e == ECONNREFUSED { keepRefusedSocket(family: address.family) }
                return connectFailed(e)
            }
        }
        do {
            try connection.watch()
        } catch {
            return fail(.connectFailed, "\(error)")
        }
        armTimeout()
    }

    /// Hands the socket of a refused connect, unconnected again, to the engine for the next probe.
    private func keepRefusedSocket(family: Int32) {
        engine.keepSpareSocket(connection.detachSocket(), family: family)
    }

    private func armTimeout() {
        timeoutArmed = true
        connection.arm(after: peer.check.timeout)
    }

    private func disarm() {
        guard timeoutArmed else { return }
        timeoutArmed = false
        connection.disarm()
    }

    /// A kept-alive connection the peer had closed: not a result; check again on a fresh connection.
    private func retryFresh() {
        closeConnection()
        reused = false
        requestsBefore = 0
        sent = 0
        reply.removeAll(keepingCapacity: true)
        connect()
    }

    private func connectFailed(_ err: Int32) {
        fail(err == ECONNREFUSED ? .connectRefused : .connectFailed,
             "connect() failed (\(Errno.text(err))) with peer: \(peer.checkAddress) ")
    }

    func upstreamFailed(_ failure: UpstreamConnection.Failure) {
        switch failure {
        case .connect(let e): connectFailed(e)
        case .socket(let e): fail(.connectFailed, "socket() failed (\(Errno.text(e)))")
        case .bind(let e): fail(.connectFailed, "bind() failed (\(Errno.text(e)))")
        case .handshake(let text): fail(.sslHandshakeFailed, "\(text) with peer: \(peer.checkAddress) ")
        case .verify(let text): fail(.certificateVerifyFailed, "\(text) with peer: \(peer.checkAddress) ")
        }
    }

    /// Connected (and handshaken): a tcp check has its verdict; the others send their payload.
    func upstreamReady(_ events: UInt32) {
        guard phase == .probing else { return }
        if peer.check.type == .tcp { return tcpVerdict() }
        exchange(events)
    }

    func upstreamEvent(_ events: UInt32) {
        switch phase {
        case .idle: return
        case .parked:
            // Room to write (a late ACK's edge) means nothing; anything else an idle kept-alive connection
            // signals (the peer closing it, stray bytes) ends it; that is not a check result.
            if events & (Events.readable | Events.readHangup | Events.hangup | Events.error) == 0 { return }
            closeConnection()
            phase = .idle
        case .probing:
            exchange(events)
        }
    }

    /// Sends what is left of the payload, then reads the reply.
    private func exchange(_ events: UInt32) {
        let tls = connection.tls, fd = connection.fd
        while sent < payload.count {
            let n = payload.withUnsafeBytes { p in
                tls.map { $0.write(p.baseAddress! + sent, count: payload.count - sent) }
                    ?? send(fd, p.baseAddress! + sent, payload.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if reused { return retryFresh() }
            let e = errno
            return fail(.sendFailed, "send() failed (\(Errno.text(e))) with peer: \(peer.checkAddress) ")
        }
        // The request is out and this edge brings nothing to read: the reply's arrival is the next edge, so no
        // recv to find nothing (TLS may hold bytes epoll cannot see, so it reads anyway).
        if !payload.isEmpty && tls == nil && events & (Events.readable | Events.readHangup | Events.hangup | Events.error) == 0 { return }
        receive(events)
    }

    /// tcp: the connect succeeded; a non-consuming peek tells a live socket from one closed at once.
    private func tcpVerdict() {
        var b: UInt8 = 0
        let n = recv(connection.fd, &b, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { return succeed() }
        let e = errno
        fail(.closed, n == 0 ? "peer closed connection, peer: \(peer.checkAddress) "
                              : "recv() failed (\(Errno.text(e))) with peer: \(peer.checkAddress) ")
    }

    /// A peer that floods is judged on what it sent first (a head and a body a check may read).
    private static let replyLimit = Probes.bodyLimit + 16384

    private func receive(_ events: UInt32) {
        // The peer has closed its side: its end of stream brings no further edge, so a reply that is not
        // complete yet is read on to that end.
        let peerClosed = events & (Events.readHangup | Events.hangup | Events.error) != 0
        var eof = false
        let tls = connection.tls, fd = connection.fd
        while true {
            let room = engine.readBuffer.count
            let n = engine.readBuffer.withUnsafeMutableBytes { p in
                tls.map { $0.read(into: p.baseAddress!, count: p.count) } ?? recv(fd, p.baseAddress, p.count, 0)
            }
            if n > 0 {
                reply.append(contentsOf: engine.readBuffer[0..<n])
                // A short read of a plain socket took all that was queued (more bytes bring another edge); TLS
                // returns a record at a time and reads on.
                if reply.count <= Self.replyLimit && (n == room || tls != nil) { continue }
            } else if n == 0 {
                eof = true
            } else if errno != EAGAIN && errno != EINTR {
                if reused && reply.isEmpty { return retryFresh() }
                let e = errno
                return fail(.recvFailed, "recv() failed (\(Errno.text(e))) with peer: \(peer.checkAddress) ")
            }
            if eof && reused && reply.isEmpty { return retryFresh() }
            let c = peer.check
            switch Probes.evaluate(c.type, reply, eof: eof || reply.count > Self.replyLimit, expect: c.effectiveExpectAlive,
                                   expectSet: c.expectAlive != nil, peer: addressText, match: c.matchesResponse ? c : nil) {
            case .needMore:
                if peerClosed && n > 0 { continue }
                return
            case .up: return finish(success: true, reason: .none, message: { nil }, keep: !eof && !peerClosed && reusable())
            case .down(let reason, let message): return fail(reason, message)
            }
        }
    }

    /// Whether the connection can carry the next check (check_keepalive_requests, fixed: the reference never
    /// reuses it): an http check whose whole response is in, framed by Content-Length, below 400, not closing.
    private func reusable() -> Bool {
        let c = peer.check
        guard c.type == .http || c.type == .https, requestsBefore + 1 < c.keepaliveRequests else { return false }
        let parsed = reply.withUnsafeBytes { ResponseParser.parse($0, fields: &engine.replyFields) }
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
        guard phase == .probing else { return }
        disarm()   // the timeout; the next probe waits on the grid
        if keep {
            phase = .parked
            requestsBefore += 1
        } else {
            phase = .idle
            closeConnection()
        }
        let status = peer.check.type == .http || peer.check.type == .https ? Probes.statusCode(reply) : 0
        let nowUs = vigil_monotonic_us()
        engine.record(self, nowMs: nowUs / 1000, success: success, rttUs: nowUs - startedUs, reason: reason, status: status,
                      message: message)
        wait(Self.delay(before: state, interval: peer.check.interval), nowMs: nowUs / 1000)
        if recheckAfterProbe {
            recheckAfterProbe = false
            if success { recheckNow() }
        }
    }

    /// The wait before the next probe: `interval`, halved while the peer is on its way to flipping (an up
    /// peer that has failed, a down peer that has passed), as HAProxy's `fastinter` does. A dead peer is then
    /// marked down after interval/2 more, not a whole interval: with fall=2 at 1 s, detection takes 0.5-1.5 s
    /// instead of 1-2 s. Steady peers, up or down, are still probed once per interval.
    /// A new peer in its first round is probed again after `firstRoundGapMs` (or its interval, if shorter): it
    /// still needs `rise` passes in a row to come up (`fall` failures to go down), only they come 100 ms apart,
    /// so with rise=2 a new live peer is up about 0.1 s after its first probe instead of interval/2 later.
    static func delay(before state: PeerState, interval: Int) -> UInt64 {
        if state.firstRound { return UInt64(min(interval, firstRoundGapMs)) }
        let changing = state.down ? state.rise > 0 : state.fall > 0
        return UInt64(changing ? max(interval / 2, 1) : interval)
    }

    static let firstRoundGapMs = 100

    private func closeConnection() { connection.close() }
}

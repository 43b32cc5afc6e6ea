#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Event
import TLS

/// What a connection's user hears from it: readiness once it can carry bytes, the failure of the connect,
/// handshake or verification before that, and its timer. One protocol for the proxy and the checker's
/// prober, so neither calls the other's types.
public protocol UpstreamConnectionDelegate: AnyObject {
    /// Connected and, over TLS, handshaken and verified: the request can go out. `events` is the readiness
    /// epoll reported with it.
    func upstreamReady(_ events: UInt32)
    /// Readiness after that (edge-triggered, both directions).
    func upstreamEvent(_ events: UInt32)
    func upstreamFailed(_ failure: UpstreamConnection.Failure)
    /// The timeout armed with `arm(after:)` ran out.
    func upstreamTimedOut()
}

/// TLS towards the peer: the context, the name sent in SNI, the session offered again, and how the
/// certificate is judged.
public struct UpstreamTLSSetup {
    public enum Verification {
        /// Only if the context verifies: the chain, then the name (nginx's proxy_ssl_verify and its wording).
        case upstream(name: String?)
        /// The chain, if the context verifies (the checker's check_ssl_verify).
        case chain
    }
    public let context: TLSClientContext
    public let serverName: String?
    public let session: TLSSessionSlot?
    public let verification: Verification
    /// A client certificate named by variables for this connection (proxy_ssl_certificate $…).
    public let certificate: CertificatePair?

    public init(context: TLSClientContext, serverName: String?, session: TLSSessionSlot?, verification: Verification,
                certificate: CertificatePair? = nil) {
        self.context = context
        self.serverName = serverName
        self.session = session
        self.verification = verification
        self.certificate = certificate
    }
}

/// One connection to an upstream peer: a non-blocking connect, the TLS handshake and the certificate check,
/// each phase under the timer its user arms, then readiness handed to its delegate. The descriptor is
/// registered edge-triggered for both directions once, so no phase costs an epoll_ctl. Objects are reused:
/// a keepalive pool parks them with their descriptor and TLS stream, and a closed one can connect again.
public final class UpstreamConnection: EventHandler {
    public enum State { case closed, connecting, handshaking, ready, idle }

    /// Why a connection never became ready; the caller words it for its log.
    public enum Failure {
        /// The connect's errno (ECONNREFUSED, …), or the socket() that failed before it.
        case connect(Int32)
        case socket(Int32)
        /// The local address proxy_bind gave could not be bound.
        case bind(Int32)
        /// OpenSSL's account, `SSL_do_handshake() failed (SSL: …)`.
        case handshake(String)
        /// The certificate check's account.
        case verify(String)
    }

    public private(set) var fd: Int32 = -1
    public private(set) var tls: TLSStream?
    public private(set) var state = State.closed
    /// The peer it is connected to (a keepalive pool matches on it).
    public private(set) var peer: PeerAddress?
    /// Requests it carried before the current one, and when it was opened (keepalive_requests, keepalive_time).
    public var requests = 0
    public private(set) var openedAt: UInt64 = 0
    public unowned(unsafe) var delegate: UpstreamConnectionDelegate?

    let loop: EventLoop
    private var pendingTLS: UpstreamTLSSetup?
    private var verification = UpstreamTLSSetup.Verification.chain
    /// Whether a certificate that does not verify fails the handshake (the context's setting).
    private var verifies = false
    /// One timer for the connection's life: connect, send and read timeouts of its user, idle time in a pool.
    private let timer: Timer
    /// Set while parked in a keepalive pool.
    unowned(unsafe) var pool: KeepalivePool?
    var idleSince: UInt64 = 0

    public init(loop: EventLoop) {
        self.loop = loop
        timer = loop.makeTimer()
        timer.setAction { [unowned(unsafe) self] in self.timerFired() }
    }

    deinit {
        // Its timer's action reaches this object unretained: it must not fire once the object is gone.
        timer.cancel()
        if fd >= 0 { loop.close(fd: fd) }
    }

    public enum Start {
        /// The connect is on its way (EINPROGRESS): `watch()` to hear how it ends.
        case inProgress
        /// Connected at once (a unix-domain socket may be).
        case connected
        case failed(Failure)
    }

    /// Starts connecting to `address` on `socket`, or on a new non-blocking socket. Not yet registered with the
    /// loop: a caller may learn the outcome first (the checker does, on loopback), then `watch()`.
    /// `delayAck`: the handshake's last ACK rides on the first data segment (TCP_QUICKACK off, HAProxy's
    /// tcp-smart-connect), for a caller that sends as soon as it can.
    public func connect(to address: SocketAddress, peer: PeerAddress, socket given: Int32? = nil, delayAck: Bool,
                        tls: UpstreamTLSSetup?, localAddress: (SocketAddress, anyPort: Bool)? = nil) -> Start {
        precondition(fd < 0, "connect on an open upstream connection")
        self.peer = peer
        requests = 0
        openedAt = loop.now
        pendingTLS = tls
        let s = given ?? socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return .failed(.socket(errno)) }
        fd = s
        if let (local, anyPort) = localAddress, Socket.bind(s, to: local, portChosenAtConnect: anyPort) != 0 { return .failed(.bind(errno)) }
        if delayAck && address.family != AF_UNIX { Socket.delayHandshakeAck(s) }
        state = .connecting
        if Socket.connect(s, to: address) == 0 { return .connected }
        return errno == EINPROGRESS ? .inProgress : .failed(.connect(errno))
    }

    /// Registers the descriptor (edge-triggered, both directions, for its whole life).
    public func watch() throws {
        try loop.register(fd: fd, events: Events.writable | Events.readable | Events.readHangup | Events.edgeTriggered, handler: self)
    }

    /// The caller learned by itself that the connection is up (its first send went through).
    public func markConnected() {
        if state == .connecting && pendingTLS == nil { state = .ready }
    }

    /// A second connect() reports a refusal already known when the first returned, without a trip through
    /// epoll; it also returns the socket to unconnected, so it can serve another connect. nil: not known yet.
    public func knownRefusal(_ address: SocketAddress) -> Int32? {
        if Socket.connect(fd, to: address) == 0 { return nil }
        return errno == EALREADY || errno == EINPROGRESS || errno == EISCONN ? nil : errno
    }

    /// Hands over the (unregistered) socket and forgets it: a refused one can serve the next connect.
    public func detachSocket() -> Int32 {
        let s = fd
        fd = -1
        state = .closed
        return s
    }

    /// Arms the connection's one timeout (re-arming replaces it).
    public func arm(after ms: Int) { timer.rearm(after: UInt64(ms)) }
    public func disarm() { timer.cancel() }

    private func timerFired() {
        if state == .idle { pool?.drop(self); return }
        delegate?.upstreamTimedOut()
    }

    public func handleEvent(_ events: UInt32) {
        switch state {
        case .ready:
            delegate?.upstreamEvent(events)
        case .connecting:
            // A failed connect reports EPOLLERR (and EPOLLHUP): only then is its error worth a system call.
            if events & (Events.error | Events.hangup) != 0 {
                let err = Socket.pendingError(fd)
                if err != 0 {
                    delegate?.upstreamFailed(.connect(err))
                    return
                }
            }
            if events & (Events.writable | Events.readable) == 0 { return }
            connected(events)
        case .handshaking:
            continueHandshake(events)
        case .idle:
            // Bytes, a close or an error end an idle connection; room to write (the late ACK of the last
            // request, an edge of the edge-triggered registration) does not.
            if events & (Events.readable | Events.readHangup | Events.hangup | Events.error) != 0 { pool?.drop(self) }
        case .closed:
            break
        }
    }

    /// The connect completed: over TLS the handshake starts, else the delegate may send.
    public func connected(_ events: UInt32) {
        guard let setup = pendingTLS else {
            state = .ready
            delegate?.upstreamReady(events)
            return
        }
        pendingTLS = nil
        guard let stream = TLSStream(connecting: fd, context: setup.context, serverName: setup.serverName, session: setup.session) else {
            delegate?.upstreamFailed(.handshake("SSL_new() failed"))
            return
        }
        tls = stream
        if let pair = setup.certificate {
            do { try stream.use(pair) } catch {
                delegate?.upstreamFailed(.handshake("\(error)"))
                return
            }
        }
        verification = setup.verification
        verifies = setup.context.verify
        state = .handshaking
        continueHandshake(events)
    }

    private func continueHandshake(_ events: UInt32) {
        guard let stream = tls else { return }
        switch stream.handshake() {
        case .wantRead, .wantWrite:
            return   // edge-triggered both ways: the next edge in the direction it waits for brings it back
        case .failed:
            delegate?.upstreamFailed(.handshake(stream.failure))
        case .done:
            if verifies, let problem = verifyProblem(stream) {
                delegate?.upstreamFailed(.verify(problem))
                return
            }
            state = .ready
            delegate?.upstreamReady(events)
        }
    }

    private func verifyProblem(_ stream: TLSStream) -> String? {
        switch verification {
        case .upstream(let name): return stream.verifyPeer(name: name)
        case .chain: return stream.verifyFailure
        }
    }

    /// Parked in `pool` (its handler stays this object; the timer now counts idle time).
    func park(in pool: KeepalivePool, timeoutMs: UInt64) {
        state = .idle
        self.pool = pool
        idleSince = loop.now
        delegate = nil
        timer.rearm(after: timeoutMs)
    }

    /// Taken out of a pool by a new user.
    func unpark(for delegate: UpstreamConnectionDelegate) {
        timer.cancel()
        pool = nil
        state = .ready
        self.delegate = delegate
    }

    /// Closes the descriptor (which takes it out of epoll) and the TLS stream; the object can connect again.
    public func close() {
        timer.cancel()
        tls = nil
        pendingTLS = nil
        if fd >= 0 {
            loop.close(fd: fd)
            fd = -1
        }
        state = .closed
        pool = nil
        peer = nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Config
import Event

/// `keepalive N`: idle upstream connections kept per worker and upstream. As in nginx's cache, at most N
/// stay idle and the least recently used go first; unlike nginx, a connection above N is closed once it has
/// been idle for `excessIdleMs`, not at once. Under bursty load (more clients than N) nginx closes a
/// connection as a burst ends and opens one as the next begins, a handshake every few requests; the grace
/// turns those into reuses, and the backend never holds more connections than the last second's peak needed.
/// Upstream fds are registered edge-triggered for reading and writing once; an idle one that signals
/// anything was closed or broken by the upstream, and is dropped.
public final class KeepalivePool {
    /// One cached connection. The records (and their timers) are recycled, so caching a connection after
    /// each request allocates nothing.
    final class Idle: EventHandler {
        var fd: Int32 = -1
        var address: PeerAddress
        var requests = 0
        /// When the connection was opened (upstream keepalive_time counts from there).
        var openedAt: UInt64 = 0
        /// When it was put in the pool.
        var idleSince: UInt64 = 0
        /// What else the connection carries (its TLS session), kept and handed back with it.
        var attachment: AnyObject?
        unowned let pool: KeepalivePool
        private(set) var timer: Timer!
        init(address: PeerAddress, pool: KeepalivePool) {
            self.address = address
            self.pool = pool
            timer = pool.loop.makeTimer { [unowned self] in self.pool.drop(self) }
        }
        /// Bytes, a close or an error end an idle connection; room to write (the ACK of the last request
        /// arriving late, an edge of the edge-triggered registration) does not.
        func handleEvent(_ events: UInt32) {
            if events & (Events.readable | Events.readHangup | Events.hangup | Events.error) != 0 { pool.drop(self) }
        }
    }

    let capacity: Int
    let timeoutMs: UInt64
    let maxRequests: Int
    let maxAgeMs: UInt64
    let loop: EventLoop
    private var idle: [Idle] = []   // most recently used last
    private var spare: [Idle] = []
    /// How long a connection above capacity may stay idle before it is closed.
    public static let excessIdleMs: UInt64 = 1000
    private lazy var trim = loop.makeTimer { [unowned self] in self.closeExcess() }

    public init(capacity: Int, timeoutMs: Int, maxRequests: Int, maxAgeMs: Int, loop: EventLoop) {
        self.capacity = capacity
        self.timeoutMs = UInt64(timeoutMs)
        self.maxRequests = maxRequests
        self.maxAgeMs = UInt64(maxAgeMs)
        self.loop = loop
    }

    /// A cached connection to `address`, with the number of requests it has carried and when it was opened.
    /// It stays registered with the loop; the caller adopts it with its own handler.
    public func take(_ address: PeerAddress) -> (fd: Int32, requests: Int, openedAt: UInt64, attachment: AnyObject?)? {
        guard let i = idle.lastIndex(where: { $0.address == address }) else { return nil }
        let c = idle.remove(at: i)
        c.timer.cancel()
        spare.append(c)
        defer { c.attachment = nil }
        return (c.fd, c.requests, c.openedAt, c.attachment)
    }

    /// Keeps `fd` (registered with the loop) for reuse; past capacity, the least recently used connections
    /// are closed once they have been idle `excessIdleMs`. One that has carried keepalive_requests or lived
    /// keepalive_time is closed instead.
    public func put(_ fd: Int32, address: PeerAddress, requests: Int, openedAt: UInt64, attachment: AnyObject? = nil) {
        guard requests < maxRequests, loop.now - openedAt < maxAgeMs else { loop.close(fd: fd); return }
        if idle.count >= capacity, !trim.isArmed { trim.rearm(after: Self.excessIdleMs) }
        let c = spare.popLast() ?? Idle(address: address, pool: self)
        c.fd = fd
        c.address = address
        c.requests = requests
        c.openedAt = openedAt
        c.idleSince = loop.now
        c.attachment = attachment
        loop.setHandler(fd: fd, c)
        c.timer.rearm(after: timeoutMs)
        idle.append(c)
    }

    /// Closes the least recently used connections above capacity that have been idle `excessIdleMs` (in one
    /// pass: after a burst of thousands, removing them one by one from the front would shift the rest each
    /// time), and comes back when the next one will have.
    private func closeExcess() {
        var expired = 0
        while idle.count - expired > capacity, loop.now - idle[expired].idleSince >= Self.excessIdleMs {
            close(idle[expired])
            expired += 1
        }
        idle.removeFirst(expired)
        if idle.count > capacity { trim.rearm(at: idle[0].idleSince + Self.excessIdleMs) }
    }

    func drop(_ c: Idle) {
        guard let i = idle.firstIndex(where: { $0 === c }) else { return }
        idle.remove(at: i)
        close(c)
    }

    private func close(_ c: Idle) {
        c.timer.cancel()
        c.attachment = nil
        loop.close(fd: c.fd)
        spare.append(c)
    }
}

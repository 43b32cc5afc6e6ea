import Config
import Core
import Event

/// `keepalive N`: idle upstream connections kept per worker and upstream. As in nginx's cache, at most N
/// stay idle and the least recently used go first; unlike nginx, a connection above N is closed once it has
/// been idle for `excessIdleMs`, not at once. Under bursty load (more clients than N) nginx closes a
/// connection as a burst ends and opens one as the next begins, a handshake every few requests; the grace
/// turns those into reuses, and the backend never holds more connections than the last second's peak needed.
/// A parked connection stays registered with the loop as its own handler: anything it signals but room to
/// write means the upstream closed or broke it, and it is dropped.
public final class KeepalivePool {
    let capacity: Int
    let timeoutMs: UInt64
    let maxRequests: Int
    let maxAgeMs: UInt64
    let loop: EventLoop
    private var idle: [UpstreamConnection] = []   // most recently used last
    /// Closed connection objects, for the next connect of any upstream of this loop's user.
    let spare: Pool<UpstreamConnection>
    /// How long a connection above capacity may stay idle before it is closed.
    public static let excessIdleMs: UInt64 = 1000
    private lazy var trim = loop.makeTimer { [unowned self] in self.closeExcess() }

    public init(capacity: Int, timeoutMs: Int, maxRequests: Int, maxAgeMs: Int, loop: EventLoop, spare: Pool<UpstreamConnection>) {
        self.capacity = capacity
        self.timeoutMs = UInt64(timeoutMs)
        self.maxRequests = maxRequests
        self.maxAgeMs = UInt64(maxAgeMs)
        self.loop = loop
        self.spare = spare
    }

    /// A parked connection to `address`, now `delegate`'s; its descriptor stays registered with the loop.
    public func take(_ address: PeerAddress, for delegate: UpstreamConnectionDelegate) -> UpstreamConnection? {
        guard let i = idle.lastIndex(where: { $0.peer == address }) else { return nil }
        let c = idle.remove(at: i)
        c.unpark(for: delegate)
        return c
    }

    /// Keeps `c`, which has just carried a request, for reuse; past capacity, the least recently used
    /// connections are closed once they have been idle `excessIdleMs`. One that has carried keepalive_requests
    /// or lived keepalive_time is closed instead.
    public func put(_ c: UpstreamConnection) {
        c.requests += 1
        guard c.requests < maxRequests, loop.now - c.openedAt < maxAgeMs else { return recycle(c) }
        if idle.count >= capacity, !trim.isArmed { trim.rearm(after: Self.excessIdleMs) }
        c.park(in: self, timeoutMs: timeoutMs)
        idle.append(c)
    }

    /// Closes the least recently used connections above capacity that have been idle `excessIdleMs` (in one
    /// pass: after a burst of thousands, removing them one by one from the front would shift the rest each
    /// time), and comes back when the next one will have.
    private func closeExcess() {
        var expired = 0
        while idle.count - expired > capacity, loop.now - idle[expired].idleSince >= Self.excessIdleMs {
            recycle(idle[expired])
            expired += 1
        }
        idle.removeFirst(expired)
        if idle.count > capacity { trim.rearm(at: idle[0].idleSince + Self.excessIdleMs) }
    }

    /// An idle connection the upstream closed, or whose keepalive_timeout ran out.
    func drop(_ c: UpstreamConnection) {
        guard let i = idle.firstIndex(where: { $0 === c }) else { return }
        idle.remove(at: i)
        recycle(c)
    }

    private func recycle(_ c: UpstreamConnection) {
        c.close()
        spare.give(c)
    }
}

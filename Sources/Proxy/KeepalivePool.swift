#if canImport(Glibc)
import Glibc
#endif
import Config
import Event

/// `keepalive N`: idle upstream connections kept per worker and upstream (nginx's cache: at most N in
/// total, least recently used evicted). Upstream fds are registered edge-triggered for reading and
/// writing once; an idle one that signals anything was closed or broken by the upstream, and is dropped.
public final class KeepalivePool {
    final class Idle: EventHandler {
        let fd: Int32
        let address: PeerAddress
        let requests: Int
        unowned let pool: KeepalivePool
        var timer: Timer?
        init(fd: Int32, address: PeerAddress, requests: Int, pool: KeepalivePool) {
            self.fd = fd
            self.address = address
            self.requests = requests
            self.pool = pool
        }
        func handleEvent(_ events: UInt32) { pool.drop(self) }
    }

    let capacity: Int
    let timeoutMs: UInt64
    let maxRequests: Int
    let loop: EventLoop
    private var idle: [Idle] = []   // most recently used last

    public init(capacity: Int, timeoutMs: Int, maxRequests: Int, loop: EventLoop) {
        self.capacity = capacity
        self.timeoutMs = UInt64(timeoutMs)
        self.maxRequests = maxRequests
        self.loop = loop
    }

    /// A cached connection to `address`, with the number of requests it has carried. It stays registered
    /// with the loop; the caller adopts it with its own handler.
    public func take(_ address: PeerAddress) -> (fd: Int32, requests: Int)? {
        guard let i = idle.lastIndex(where: { $0.address == address }) else { return nil }
        let c = idle.remove(at: i)
        c.timer?.cancel()
        return (c.fd, c.requests)
    }

    /// Keeps `fd` (registered with the loop) for reuse, evicting the least recently used connection when full.
    public func put(_ fd: Int32, address: PeerAddress, requests: Int) {
        guard requests < maxRequests else { loop.unregister(fd: fd); close(fd); return }
        if idle.count >= capacity { drop(idle[0]) }
        let c = Idle(fd: fd, address: address, requests: requests, pool: self)
        loop.setHandler(fd: fd, c)
        c.timer = loop.schedule(after: timeoutMs) { [weak self, weak c] in
            if let self, let c { self.drop(c) }
        }
        idle.append(c)
    }

    func drop(_ c: Idle) {
        guard let i = idle.firstIndex(where: { $0 === c }) else { return }
        idle.remove(at: i)
        c.timer?.cancel()
        loop.unregister(fd: c.fd)
        close(c.fd)
    }

}

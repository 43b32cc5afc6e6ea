import Synchronization

/// A peer's passive state, nginx's `ngx_http_upstream_rr_peer_t` fields that `zone` shares: connections (for
/// max_conns and least_conn), failures, and when its failure window began and it last failed. A record in the
/// segment's zone area, which every worker of the generation updates. Lock-free: each field is an atomic of
/// its own; a reader may see one field of a concurrent update before another, as nginx's balancers may
/// between their peer locks.
public struct PeerCounters {
    let base: UnsafeMutableRawPointer

    private static let connectionsOffset = 0
    private static let failsOffset = 8
    private static let checkedOffset = 16
    private static let accessedOffset = 24

    @inline(__always) private func int(_ offset: Int) -> UnsafeMutablePointer<Atomic<Int>> {
        (base + offset).assumingMemoryBound(to: Atomic<Int>.self)
    }
    @inline(__always) private func time(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (base + offset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// Open connections to the peer (nginx's `conns`).
    @inline(__always) public var connections: Int { int(Self.connectionsOffset).pointee.load(ordering: .relaxed) }
    @inline(__always) public func addConnections(_ delta: Int) { int(Self.connectionsOffset).pointee.wrappingAdd(delta, ordering: .relaxed) }

    /// Failures in the current window (nginx's `fails`).
    @inline(__always) public var fails: Int { int(Self.failsOffset).pointee.load(ordering: .relaxed) }
    @inline(__always) public func addFail() { int(Self.failsOffset).pointee.wrappingAdd(1, ordering: .relaxed) }
    @inline(__always) public func clearFails() {
        // A load first: a peer without failures keeps its cache line clean for the other workers.
        if fails != 0 { int(Self.failsOffset).pointee.store(0, ordering: .relaxed) }
    }

    /// When the failure window began (monotonic ms; nginx's `checked`).
    @inline(__always) public var checkedAt: UInt64 {
        get { time(Self.checkedOffset).pointee.load(ordering: .relaxed) }
        nonmutating set { time(Self.checkedOffset).pointee.store(newValue, ordering: .relaxed) }
    }
    /// When the peer last failed (monotonic ms; nginx's `accessed`).
    @inline(__always) public var accessedAt: UInt64 {
        get { time(Self.accessedOffset).pointee.load(ordering: .relaxed) }
        nonmutating set { time(Self.accessedOffset).pointee.store(newValue, ordering: .relaxed) }
    }
}

import CShim
import Synchronization

/// A peer's passive state, nginx's `ngx_http_upstream_rr_peer_t` fields that `zone` shares: connections (for
/// max_conns and least_conn), failures, and when its failure window began and it last failed. A record in the
/// segment's zone area, which every worker of the generation updates. Lock-free: each field is an atomic of
/// its own; a reader may see one field of a concurrent update before another, as nginx's balancers may
/// between their peer locks.
public struct PeerCounters {
    let base: UnsafeMutableRawPointer
    /// A resolved peer's counters live in its dynamic record, which is reused after the peer leaves: the
    /// record's incarnation word and the one this view belongs to. A request that outlived its peer's record
    /// then changes nothing, reads zeros, and cannot skew its successor's counts. nil for the zone area's records.
    let incarnation: (word: UnsafeMutablePointer<UInt32>, value: UInt32)?

    init(base: UnsafeMutableRawPointer, incarnation: (word: UnsafeMutablePointer<UInt32>, value: UInt32)? = nil) {
        self.base = base
        self.incarnation = incarnation
    }

    /// Whether the record still belongs to the peer this view was made for.
    @inline(__always) public var live: Bool {
        guard let i = incarnation else { return true }
        return vigil_load_acquire_u32(i.word) == i.value
    }

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
    @inline(__always) public var connections: Int { live ? int(Self.connectionsOffset).pointee.load(ordering: .relaxed) : 0 }
    @inline(__always) public func addConnections(_ delta: Int) {
        if live { int(Self.connectionsOffset).pointee.wrappingAdd(delta, ordering: .relaxed) }
    }

    /// Failures in the current window (nginx's `fails`).
    @inline(__always) public var fails: Int { live ? int(Self.failsOffset).pointee.load(ordering: .relaxed) : 0 }
    @inline(__always) public func addFail() { if live { int(Self.failsOffset).pointee.wrappingAdd(1, ordering: .relaxed) } }
    @inline(__always) public func clearFails() {
        // A load first: a peer without failures keeps its cache line clean for the other workers.
        if fails != 0 && live { int(Self.failsOffset).pointee.store(0, ordering: .relaxed) }
    }

    /// When the failure window began (monotonic ms; nginx's `checked`).
    @inline(__always) public var checkedAt: UInt64 {
        get { live ? time(Self.checkedOffset).pointee.load(ordering: .relaxed) : 0 }
        nonmutating set { if live { time(Self.checkedOffset).pointee.store(newValue, ordering: .relaxed) } }
    }
    /// When the peer last failed (monotonic ms; nginx's `accessed`).
    @inline(__always) public var accessedAt: UInt64 {
        get { live ? time(Self.accessedOffset).pointee.load(ordering: .relaxed) : 0 }
        nonmutating set { if live { time(Self.accessedOffset).pointee.store(newValue, ordering: .relaxed) } }
    }
}

import Config
import Event
import ShmTable

/// One upstream peer as a worker sees it: static settings, nginx's smooth-weighted-round-robin state,
/// passive failure accounting and connections (shared by every worker when its upstream has a `zone`), and the
/// index of its slot in the shared segment when it is checked.
public final class Peer {
    public let address: PeerAddress
    /// `address` as text, made once ($upstream_addr, log lines).
    public let name: String
    /// `address` in binary form, parsed once rather than on every connect.
    public let socketAddress: SocketAddress?
    /// The `server` line's address as written: consistent hashing places peers by it, as nginx does.
    let serverText: String
    public let weight: Int
    /// slow_start in ms (0: none): after the peer comes up its weight ramps from 1 over this long.
    let slowStartMs: UInt64
    /// How much effective weight a selection gives back after failures: nginx's 1, times the slow_start scale.
    let weightStep: Int
    let maxFails: Int
    let failTimeout: UInt64
    let maxConns: Int
    let configuredDown: Bool
    /// Index of the check slot; nil for unchecked peers (always "up" for the balancer, as in the reference).
    public let slot: Int?

    var currentWeight = 0
    var effectiveWeight: Int
    /// Failures, their window, connections: the zone's record, or (`ownsCounters`) storage of this worker's own.
    let counters: PeerCounters
    private let ownsCounters: Bool
    public var connections: Int { counters.connections }

    /// `scale` multiplies the weights of an upstream with slow_start, so that even weight 1 has a ramp.
    /// `shared`: the peer's record in the segment's zone area, when its upstream has a `zone`.
    init(address: PeerAddress, server: UpstreamServer, slot: Int?, scale: Int = 1, shared: PeerCounters? = nil) {
        self.address = address
        self.name = address.description
        self.socketAddress = SocketAddress(host: address.host, port: address.port, isIPv6: address.isIPv6)
        self.serverText = server.text
        self.weight = server.weight * scale
        self.effectiveWeight = server.weight * scale
        self.slowStartMs = scale > 1 ? UInt64(server.slowStart) : 0
        self.weightStep = scale
        self.maxFails = server.maxFails
        self.failTimeout = UInt64(server.failTimeout)
        self.maxConns = server.maxConns
        self.configuredDown = server.down
        self.slot = slot
        if let shared {
            counters = shared
            ownsCounters = false
        } else {
            let own = UnsafeMutableRawPointer.allocate(byteCount: Layout.zoneRecordSize, alignment: Layout.zoneRecordSize)
            own.initializeMemory(as: UInt8.self, repeating: 0, count: Layout.zoneRecordSize)
            counters = PeerCounters(base: own)
            ownsCounters = true
        }
    }

    deinit { if ownsCounters { counters.base.deallocate() } }

    /// Milliseconds from `since` to `now`; 0 when another worker, whose loop's clock ran ahead of this one's,
    /// wrote `since`.
    @inline(__always) static func elapsed(_ since: UInt64, _ now: UInt64) -> UInt64 { now > since ? now - since : 0 }
}

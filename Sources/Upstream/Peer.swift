import Config
import Core
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
    /// A peer a `resolve` name brought: its dynamic slot, checked or not (nil for configured peers).
    let dynamicSlot: Int?

    var currentWeight = 0
    var effectiveWeight: Int
    /// Failures, their window and connections: the zone's record when the upstream has `zone`, else the
    /// fields below, this worker's own (no allocation: a `proxy_pass` with variables makes peers per request).
    private let shared: PeerCounters?
    private var ownConnections = 0, ownFails = 0
    private var ownCheckedAt: UInt64 = 0, ownAccessedAt: UInt64 = 0

    /// Whether its shared counters, if any, are still its own (a resolved peer's record may be reused).
    var sharesCurrentRecord: Bool { shared?.live ?? true }

    /// Open connections (nginx's `conns`).
    public var connections: Int { shared?.connections ?? ownConnections }
    func addConnections(_ delta: Int) { if let shared { shared.addConnections(delta) } else { ownConnections += delta } }
    /// Failures in the current window (nginx's `fails`).
    var fails: Int { shared?.fails ?? ownFails }
    func addFail() { if let shared { shared.addFail() } else { ownFails += 1 } }
    func clearFails() { if let shared { shared.clearFails() } else { ownFails = 0 } }
    /// When the failure window began (nginx's `checked`).
    var checkedAt: UInt64 {
        get { shared?.checkedAt ?? ownCheckedAt }
        set { if let shared { shared.checkedAt = newValue } else { ownCheckedAt = newValue } }
    }
    /// When the peer last failed (nginx's `accessed`).
    var accessedAt: UInt64 {
        get { shared?.accessedAt ?? ownAccessedAt }
        set { if let shared { shared.accessedAt = newValue } else { ownAccessedAt = newValue } }
    }

    /// `scale` multiplies the weights of an upstream with slow_start, so that even weight 1 has a ramp.
    /// `shared`: the peer's record in the segment's zone area, when its upstream has a `zone`.
    init(address: PeerAddress, server: UpstreamServer, slot: Int?, scale: Int = 1, shared: PeerCounters? = nil, dynamicSlot: Int? = nil) {
        self.dynamicSlot = dynamicSlot
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
        self.shared = shared
    }

    /// Milliseconds from `since` to `now`; 0 when another worker, whose loop's clock ran ahead of this one's,
    /// wrote `since`.
    @inline(__always) static func elapsed(_ since: UInt64, _ now: UInt64) -> UInt64 { now > since ? now - since : 0 }
}

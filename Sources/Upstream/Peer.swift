import Config
import Event

/// One upstream peer as a worker sees it: static settings, nginx's smooth-weighted-round-robin state,
/// passive failure accounting, and the index of its slot in the shared segment when it is checked.
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
    var fails = 0
    var checkedAt: UInt64 = 0   // time of the last failure window start (nginx's `checked`)
    var accessedAt: UInt64 = 0
    public internal(set) var connections = 0

    /// `scale` multiplies the weights of an upstream with slow_start, so that even weight 1 has a ramp.
    init(address: PeerAddress, server: UpstreamServer, slot: Int?, scale: Int = 1) {
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
    }
}

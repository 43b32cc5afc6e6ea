import Config
import Event
import ShmTable

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

/// Balancing state for one upstream block in one worker (nginx keeps it per worker too).
public final class UpstreamBalancer {
    public let name: String
    public let method: Balancer
    let primaries: [Peer]
    let backups: [Peer]
    let segment: Segment?
    /// `keepalive N` connections, when the upstream block asks for them.
    public var pool: KeepalivePool?
    /// `hash … consistent`: the ketama points.
    var points: ConsistentHashRing?
    /// ip_hash and hash: a draining peer keeps the clients whose keys lead to it.
    private let sticky: Bool
    /// check_fail_open: the share of checked peers (percent) past which the down bit is ignored.
    private let failOpenPercent: Int?
    private var failOpenCheckedAt: UInt64 = .max
    private var failOpen = false
    /// Where a switch into or out of fail-open is reported (the worker's error log).
    public var log: ((String) -> Void)?

    /// `checkedIndex` maps (upstream, address) to shm slots, built from `Configuration.checkedPeers`.
    public init(upstream: Upstream, segment: Segment?, checkedIndex: [String: Int]) {
        name = upstream.name
        method = upstream.balancer
        self.segment = segment
        sticky = upstream.balancer == .ipHash || { if case .hash = upstream.balancer { return true } else { return false } }()
        failOpenPercent = upstream.failOpenPercent
        // slow_start ramps weights in steps of 1/16 of a unit of weight, for round robin and least_conn.
        let ramps = (method == .roundRobin || method == .leastConn) && upstream.check != nil && upstream.servers.contains { $0.slowStart > 0 }
        var p: [Peer] = [], b: [Peer] = []
        for server in upstream.servers {
            for a in server.addresses {
                let slot = upstream.check == nil || server.down ? nil : checkedIndex["\(upstream.name)\u{0}\(a)"]
                let peer = Peer(address: a, server: server, slot: slot, scale: ramps ? 16 : 1)
                if server.backup { b.append(peer) } else { p.append(peer) }
            }
        }
        primaries = p
        backups = b
        if case .hash(_, true) = method { points = ConsistentHashRing(primaries) }
    }

    init(name: String, peers: [Peer]) {
        self.name = name
        method = .roundRobin
        segment = nil
        sticky = false
        failOpenPercent = nil
        primaries = peers
        backups = []
    }

    /// A peer's weight under slow_start: from 1 up to its weight, linearly over the window that began when its
    /// check last brought it up (NGINX Plus's ramp); its weight once the window is over.
    @inline(__always) func rampedWeight(_ p: Peer, now: UInt64) -> Int {
        guard p.slowStartMs > 0, let s = p.slot, let seg = segment else { return p.weight }
        let upSince = seg.slot(s).lastChangeMs
        guard upSince > 0 else { return p.weight }
        guard now > upSince else { return 1 }   // up since after this loop's cached clock: just now
        guard now - upSince < p.slowStartMs else { return p.weight }
        return max(1, Int(UInt64(p.weight) * (now - upSince) / p.slowStartMs))
    }

    /// Whether more than check_fail_open of the checked peers are down (counted once per loop tick), so that
    /// all of them are balanced over; each switch is logged.
    private func failingOpen(_ now: UInt64) -> Bool {
        guard let percent = failOpenPercent, let seg = segment else { return false }
        if now == failOpenCheckedAt { return failOpen }
        failOpenCheckedAt = now
        var checked = 0, down = 0
        for p in primaries + backups {
            guard let s = p.slot else { continue }
            checked += 1
            if seg.slot(s).isDown { down += 1 }
        }
        let open = checked > 0 && down * 100 > percent * checked
        if open != failOpen {
            log?(open ? "upstream \"\(name)\": \(down) of \(checked) checked peers are down, more than check_fail_open \(percent)%: balancing over all of them"
                      : "upstream \"\(name)\": \(down) of \(checked) checked peers are down, no longer more than check_fail_open \(percent)%")
        }
        failOpen = open
        return open
    }

    public static func slotKey(upstream: String, address: PeerAddress) -> String { "\(upstream)\u{0}\(address)" }

    public var peerCount: Int { primaries.count + backups.count }

    /// The state every balancer consults first: configured `down`, the shared check bit, passive failures,
    /// `max_conns`, and the peers this request already tried.
    @inline(__always) func usable(_ p: Peer, now: UInt64, tried: [Peer]) -> Bool {
        if p.configuredDown { return false }
        if let s = p.slot, let seg = segment {
            let slot = seg.slot(s)
            if slot.isDown && !failingOpen(now) { return false }
            switch slot.admin {
            case .ready: break
            case .maint: return false
            // A draining peer takes no new traffic, except the keys ip_hash and hash send it.
            case .drain: if !sticky { return false }
            }
        }
        if p.maxFails > 0 && p.fails >= p.maxFails && now - p.checkedAt <= p.failTimeout { return false }
        if p.maxConns > 0 && p.connections >= p.maxConns { return false }
        return !tried.contains { $0 === p }
    }

    /// Chooses a peer, or nil when none is usable ("no live upstreams"). The client's address is asked
    /// for only by ip_hash.
    public func select(clientAddress: () -> [UInt8], hashKey: String?, now: UInt64, tried: [Peer]) -> Peer? {
        switch method {
        case .ipHash:
            if let p = ipHash(clientAddress(), now: now, tried: tried) { return p }
        case .hash(_, let consistent):
            if let key = hashKey {
                let p = consistent ? points?.select(key, from: primaries, now: now, usable: { usable($0, now: now, tried: tried) }, pick: { roundRobin($0, now: now, tried: tried) })
                                   : keyHash(key, now: now, tried: tried)
                if let p { return p }
            }
        case .leastConn:
            return leastConn(primaries, now: now, tried: tried) ?? leastConn(backups, now: now, tried: tried)
        default:
            break
        }
        return roundRobin(primaries, now: now, tried: tried) ?? roundRobin(backups, now: now, tried: tried)
    }

    /// nginx's smooth weighted round robin (ngx_http_upstream_get_peer).
    func roundRobin(_ peers: [Peer], now: UInt64, tried: [Peer]) -> Peer? {
        var best: Peer?
        var total = 0
        for p in peers where usable(p, now: now, tried: tried) {
            let weight = p.slowStartMs > 0 ? min(p.effectiveWeight, rampedWeight(p, now: now)) : p.effectiveWeight
            p.currentWeight += weight
            total += weight
            if p.effectiveWeight < p.weight { p.effectiveWeight = min(p.weight, p.effectiveWeight + p.weightStep) }
            if best == nil || p.currentWeight > best!.currentWeight { best = p }
        }
        guard let chosen = best else { return nil }
        chosen.currentWeight -= total
        if now - chosen.checkedAt > chosen.failTimeout { chosen.checkedAt = now }
        return chosen
    }

    /// ngx_http_upstream_ip_hash: the first three octets of IPv4 (the whole IPv6 address), 20 tries, then round robin.
    func ipHash(_ addr: [UInt8], now: UInt64, tried: [Peer]) -> Peer? {
        guard !primaries.isEmpty else { return nil }
        let octets = addr.count == 4 ? Array(addr.prefix(3)) : addr
        let totalWeight = primaries.reduce(0) { $0 + $1.weight }
        var hash = 89
        for _ in 0..<20 {
            for o in octets { hash = (hash * 113 + Int(o)) % 6271 }
            let p = primary(atWeight: hash % totalWeight)
            if usable(p, now: now, tried: tried) { return p }
        }
        return nil
    }

    /// The primary whose share of the total weight contains `w` (nginx's weighted hash placement).
    private func primary(atWeight w: Int) -> Peer {
        var w = w
        var i = 0
        while w >= primaries[i].weight {
            w -= primaries[i].weight
            i += 1
        }
        return primaries[i]
    }

    /// ngx_http_upstream_hash (non-consistent): crc32 of the key, rehashed on misses, 20 tries.
    func keyHash(_ key: String, now: UInt64, tried: [Peer]) -> Peer? {
        guard !primaries.isEmpty else { return nil }
        let totalWeight = primaries.reduce(0) { $0 + $1.weight }
        var hash = CRC32.of(Array(key.utf8))
        for attempt in 0..<20 {
            let p = primary(atWeight: Int(hash % UInt32(totalWeight)))
            if usable(p, now: now, tried: tried) { return p }
            // nginx: hash = crc32(attempt number + key) with the previous hash mixed in
            hash = CRC32.of(Array("\(attempt + 1)".utf8) + Array(key.utf8) + withUnsafeBytes(of: hash.littleEndian) { Array($0) })
        }
        return nil
    }

    /// ngx_http_upstream_least_conn: fewest connections per weight; ties go to weighted round robin.
    func leastConn(_ peers: [Peer], now: UInt64, tried: [Peer]) -> Peer? {
        var best: Peer?
        for p in peers where usable(p, now: now, tried: tried) {
            if best == nil || p.connections * rampedWeight(best!, now: now) < best!.connections * rampedWeight(p, now: now) { best = p }
        }
        guard let b = best else { return nil }
        let bw = rampedWeight(b, now: now)
        let ties = peers.filter { usable($0, now: now, tried: tried) && $0.connections * bw == b.connections * rampedWeight($0, now: now) }
        return ties.count > 1 ? roundRobin(ties, now: now, tried: tried) : b
    }

    /// Passive accounting after a request to `peer` (max_fails / fail_timeout).
    public func finished(_ peer: Peer, failed: Bool, now: UInt64) {
        if failed {
            // Traffic-triggered re-check: the checker probes this peer now instead of at its next interval.
            if let i = peer.slot, let seg = segment, seg.slot(i).requestRecheck() { seg.ringDoorbell() }
            peer.fails += 1
            peer.accessedAt = now
            peer.checkedAt = now
            if peer.maxFails > 0 {
                peer.effectiveWeight -= peer.weight / peer.maxFails
            }
            if peer.effectiveWeight < 0 { peer.effectiveWeight = 0 }
        } else if peer.accessedAt < peer.checkedAt {
            peer.fails = 0
        }
    }

    public func connected(_ peer: Peer, delta: Int) { peer.connections += delta }
}

/// nginx's `hash … consistent` (ngx_http_upstream_init_chash): 160 × weight points per server, each
/// crc32(HOST \0 PORT PREV_HASH) — the placement of Cache::Memcached::Fast, so keys land where nginx puts them.
struct ConsistentHashRing {
    private(set) var points: [(hash: UInt32, server: String)] = []

    init(_ peers: [Peer]) {
        for peer in peers {
            let text = Array(peer.serverText.utf8)
            // Split a trailing ":digits" off as the port; the rest is the host.
            var host = text[...], port = text[text.endIndex...]
            if let colon = text.lastIndex(of: UInt8(ascii: ":")), text[(colon + 1)...].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                host = text[..<colon]
                port = text[(colon + 1)...]
            }
            let base = Array(host) + [0] + Array(port)
            var prev: UInt32 = 0
            for _ in 0..<(peer.weight * 160) {
                let hash = CRC32.of(base + withUnsafeBytes(of: prev.littleEndian) { Array($0) })
                points.append((hash, peer.serverText))
                prev = hash
            }
        }
        points.sort { $0.hash < $1.hash }
        var unique: [(hash: UInt32, server: String)] = []
        for p in points where unique.last?.hash != p.hash { unique.append(p) }
        points = unique
    }

    /// The first point at or after the key's hash, walking on (20 tries) past servers that are not usable;
    /// among the peers of one server (a name with several addresses), weighted round robin decides.
    func select(_ key: String, from peers: [Peer], now: UInt64, usable: (Peer) -> Bool, pick: ([Peer]) -> Peer?) -> Peer? {
        guard !points.isEmpty else { return nil }
        let h = CRC32.of(Array(key.utf8))
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid].hash < h { lo = mid + 1 } else { hi = mid }
        }
        var index = lo
        for _ in 0...20 {
            let server = points[index % points.count].server
            let candidates = peers.filter { $0.serverText == server && usable($0) }
            if !candidates.isEmpty, let p = pick(candidates) { return p }
            index += 1
        }
        return nil
    }
}

/// CRC-32 (IEEE), as ngx_crc32_long, for `hash` placement.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func of(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}

extension UpstreamBalancer {
    /// The implicit upstream of `proxy_pass http://host:port`: never checked, plain round robin.
    public convenience init(literal text: String, addresses: [PeerAddress]) {
        self.init(name: text, peers: addresses.map {
            Peer(address: $0, server: UpstreamServer(text: text, addresses: [$0], location: SourceLocation(file: "", line: 0)), slot: nil)
        })
    }
}

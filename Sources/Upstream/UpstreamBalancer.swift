import Config
import Core
import Event
import ShmTable

/// Balancing state for one upstream block in one worker (nginx keeps it per worker too).
public final class UpstreamBalancer {
    public let name: String
    public let method: Balancer
    private(set) var primaries: [Peer] = []
    private(set) var backups: [Peer] = []
    let segment: Segment?
    /// `keepalive N` connections, when the upstream block asks for them.
    public var pool: KeepalivePool?
    /// `hash … consistent`: the ketama points.
    var points: ConsistentHashRing?
    /// The primaries' weights summed: the range the hash methods and `random` place into.
    private(set) var totalWeight = 0
    /// `random`'s draws, seeded only for that method (a literal address's balancer is made per request when
    /// `proxy_pass` has variables: a getrandom() each would be a system call per request).
    var draws = RandomDraws(seed: 0)
    /// ip_hash and hash: a draining peer keeps the clients whose keys lead to it.
    private let sticky: Bool
    /// check_fail_open: the share of checked peers (percent) past which the down bit is ignored.
    private let failOpenPercent: Int?
    private var failOpenCheckedAt: UInt64 = .max
    private var failOpen = false
    /// Where a switch into or out of fail-open is reported (at warn).
    public var log: ErrorLog?
    /// How long a request that finds no live peer may wait for new peers' first verdicts: the check's
    /// `timeout` (0: not checked, never waits), or 1 s for the first answers of `resolve` names.
    public let firstVerdictWaitMs: UInt64
    /// `server … resolve`: the upstream's index among the segment's dynamic upstreams (-1: none), kept apart
    /// so that a pick tests an integer, and the membership version the list was built at.
    private let dynamicIndex: Int
    private var builtVersion: UInt64 = 0
    /// What a rebuilt list starts from: the upstream, its configured peers, the slow_start scale.
    private let configured: (upstream: Upstream, primaries: [Peer], backups: [Peer], scale: Int)?

    /// `checkedIndex` maps (upstream, address) to shm slots, built from `Configuration.checkedPeers`.
    public init(upstream: Upstream, segment: Segment?, checkedIndex: [String: Int]) {
        name = upstream.name
        method = upstream.balancer
        self.segment = segment
        sticky = upstream.balancer == .ipHash || { if case .hash = upstream.balancer { return true } else { return false } }()
        failOpenPercent = upstream.failOpenPercent
        firstVerdictWaitMs = UInt64(upstream.check?.timeout ?? (upstream.hasRunTimePeers ? 1000 : 0))
        // slow_start ramps weights in steps of 1/16 of a unit of weight, for round robin and least_conn.
        let ramps = (method == .roundRobin || method == .leastConn) && upstream.check != nil && upstream.servers.contains { $0.slowStart > 0 }
        var p: [Peer] = [], b: [Peer] = []
        // With `zone`, the peers' records follow one another from the upstream's first (Configuration numbers them so).
        var record = segment == nil ? nil : upstream.zoneRecord
        for server in upstream.servers {
            for a in server.addresses {
                let slot = upstream.check == nil || server.down ? nil : checkedIndex["\(upstream.name)\u{0}\(a)"]
                let peer = Peer(address: a, server: server, slot: slot, scale: ramps ? 16 : 1, shared: record.map { segment!.zoneRecord($0) })
                record = record.map { $0 + 1 }
                if server.backup { b.append(peer) } else { p.append(peer) }
            }
        }
        dynamicIndex = upstream.hasRunTimePeers ? segment?.dynamicUpstreamIndex(upstream.name) ?? -1 : -1
        configured = dynamicIndex >= 0 ? (upstream, p, b, ramps ? 16 : 1) : nil
        install(p, b)
        if case .random = method { draws = RandomDraws(seed: .random(in: .min ... .max)) }
        refreshMembership()
    }

    /// With `resolve` servers or `upsync`: when the checker has published a change (one load to see), the list
    /// becomes the configured peers plus the resolved ones now active; once etcd has given servers, they replace
    /// the configured ones (upsync's bootstrap servers, or its dump's). A peer still listed keeps its object (and its
    /// round-robin state); one that left is dropped here, while requests already on it finish with it.
    @inline(__always) private func refreshMembership() {
        guard dynamicIndex >= 0, let seg = segment else { return }
        let version = seg.membershipVersion
        if version != builtVersion { rebuild(seg, version) }
    }

    private func rebuild(_ seg: Segment, _ version: UInt64) {
        guard let d = configured else { return }
        builtVersion = version
        var bySlot: [Int: Peer] = [:]
        for peer in primaries + backups { if let s = peer.dynamicSlot { bySlot[s] = peer } }
        let active = seg.activeDynamicPeers().filter { $0.peer.upstream == dynamicIndex && $0.peer.server <= d.upstream.storeLine }
        let fromStore = d.upstream.hasStore && active.contains { $0.peer.server == d.upstream.storeLine }
        var p = fromStore ? [] : d.primaries, b = fromStore ? [] : d.backups
        for (slot, found) in active {
            let address = PeerAddress(host: found.host, port: found.port, isIPv6: found.isIPv6)
            let peer: Peer
            // The same peer still (a slot reused for the same address has a new record incarnation).
            if let kept = bySlot[slot], kept.address == address, kept.sharesCurrentRecord, kept.configuredDown == found.down {
                peer = kept
            } else {
                let line = Self.line(for: found, address: address, in: d.upstream)
                peer = Peer(address: address, server: line, slot: d.upstream.check == nil || line.down ? nil : slot,
                            scale: d.scale, shared: seg.dynamicCounters(slot: slot), dynamicSlot: slot)
            }
            if found.backup { b.append(peer) } else { p.append(peer) }
        }
        install(p, b)
    }

    /// The peer lists, and what picks read derived from them.
    private func install(_ p: [Peer], _ b: [Peer]) {
        primaries = p
        backups = b
        single = p.count == 1 && b.isEmpty
        totalWeight = p.reduce(0) { $0 + $1.weight }
        peerCount = (p + b).count(where: { !$0.configuredDown })
        if case .hash(_, true) = method { points = ConsistentHashRing(primaries) }
    }

    /// The `server` line a run-time peer balances as: its name's line with its own address (consistent hashing
    /// places each address, not the name) and an SRV record's weight; or, from etcd, a line of its own values.
    private static func line(for found: DynamicPeer, address: PeerAddress, in upstream: Upstream) -> UpstreamServer {
        var line = found.server < upstream.servers.count ? upstream.servers[found.server]
            : UpstreamServer(text: address.description, addresses: [address], location: upstream.declared ?? upstream.firstMention)
        line.text = address.description
        line.addresses = [address]
        line.weight = max(found.weight, 1)
        if let n = found.maxFails { line.maxFails = n }
        if let s = found.failTimeout { line.failTimeout = s * 1000 }
        if let n = found.maxConns { line.maxConns = n }
        if found.down { line.down = true }
        return line
    }

    init(name: String, peers: [Peer]) {
        self.name = name
        method = .roundRobin
        segment = nil
        sticky = false
        failOpenPercent = nil
        firstVerdictWaitMs = 0
        dynamicIndex = -1
        configured = nil
        install(peers, [])
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
            log?.warn(open ? "upstream \"\(name)\": \(down) of \(checked) checked peers are down, more than check_fail_open \(percent)%: balancing over all of them"
                      : "upstream \"\(name)\": \(down) of \(checked) checked peers are down, no longer more than check_fail_open \(percent)%")
        }
        failOpen = open
        return open
    }

    /// Whether some checked peer is new and its first round of probes has not decided yet (SegmentPlan marks
    /// them): a request that found no live peer then waits rather than failing. Asked only on that path.
    public var awaitsFirstVerdicts: Bool {
        guard let seg = segment else { return false }
        refreshMembership()
        if dynamicIndex >= 0 && !seg.namesResolved { return true }
        return primaries.contains { $0.slot.map { seg.slot($0).inFirstRound } ?? false }
            || backups.contains { $0.slot.map { seg.slot($0).inFirstRound } ?? false }
    }

    public static func slotKey(upstream: String, address: PeerAddress) -> String { "\(upstream)\u{0}\(address)" }

    /// The peers a request may try, as nginx counts its tries: those not marked `down`.
    public private(set) var peerCount = 0
    /// One peer and no backup (a `proxy_pass` to one address, too): as nginx's `peers->single`, its passive
    /// failures never make it unusable, there being nothing else to send the request to.
    private var single = false

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
        if !single && p.maxFails > 0 && p.fails >= p.maxFails && Peer.elapsed(p.checkedAt, now) <= p.failTimeout { return false }
        if p.maxConns > 0 && p.connections >= p.maxConns { return false }
        return !tried.contains { $0 === p }
    }

    /// Chooses a peer, or nil when none is usable ("no live upstreams"); then, as nginx does, every peer's
    /// failures are forgotten, so the next request tries them again instead of every request failing until
    /// fail_timeout. The client's address is asked for only by ip_hash.
    public func select(clientAddress: () -> [UInt8], hashKey: String?, now: UInt64, tried: [Peer]) -> Peer? {
        refreshMembership()
        if let p = pick(clientAddress: clientAddress, hashKey: hashKey, now: now, tried: tried) { return p }
        for p in primaries { p.clearFails() }
        for p in backups { p.clearFails() }
        return nil
    }

    private func pick(clientAddress: () -> [UInt8], hashKey: String?, now: UInt64, tried: [Peer]) -> Peer? {
        switch method {
        case .ipHash:
            if let p = ipHash(clientAddress(), now: now, tried: tried) { return p }
        case .hash(_, let consistent):
            // An empty key is round robin's, as in nginx.
            if let key = hashKey, !key.isEmpty {
                let p = consistent ? points?.select(key, from: primaries, now: now, usable: { usable($0, now: now, tried: tried) }, pick: { roundRobin($0, now: now, tried: tried) })
                                   : keyHash(key, now: now, tried: tried)
                if let p { return p }
            }
        case .leastConn:
            return leastConn(primaries, now: now, tried: tried) ?? leastConn(backups, now: now, tried: tried)
        case .random(let two):
            if let p = random(two: two, now: now, tried: tried) { return p }
        default:
            break
        }
        return roundRobin(primaries, now: now, tried: tried) ?? roundRobin(backups, now: now, tried: tried)
    }

    /// Passive accounting after a request to `peer` (max_fails / fail_timeout).
    public func finished(_ peer: Peer, failed: Bool, now: UInt64) {
        if failed {
            // Traffic-triggered re-check: the checker probes this peer now instead of at its next interval.
            if let i = peer.slot, let seg = segment, seg.slot(i).requestRecheck() { seg.ringDoorbell() }
            peer.addFail()
            peer.accessedAt = now
            peer.checkedAt = now
            if peer.maxFails > 0 {
                peer.effectiveWeight -= peer.weight / peer.maxFails
            }
            if peer.effectiveWeight < 0 { peer.effectiveWeight = 0 }
        } else if peer.accessedAt < peer.checkedAt {
            peer.clearFails()
        }
    }

    public func connected(_ peer: Peer, delta: Int) { peer.addConnections(delta) }
}

extension UpstreamBalancer {
    /// The implicit upstream of `proxy_pass http://host:port`: never checked, plain round robin.
    public convenience init(literal text: String, addresses: [PeerAddress]) {
        self.init(name: text, peers: addresses.map {
            Peer(address: $0, server: UpstreamServer(text: text, addresses: [$0], location: SourceLocation(file: "", line: 0)), slot: nil)
        })
    }
}

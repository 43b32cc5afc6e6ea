import Config
import ShmTable

/// What goes into a generation's segment: one entry per checked peer, with state carried over from the
/// previous generation for each peer whose identity is unchanged: upstream + address + how it is checked
/// (the reference module keys by the address alone).
struct SegmentPlan {
    let entries: [PeerEntry]
    let checksum: UInt64
    let bytesNeeded: Int
    let size: Int
    /// The zone area's records; their state starts afresh each generation, as nginx maps its upstream zones anew
    /// on every reload (`noreuse`): old workers go on counting their connections in the old segment.
    let zoneRecords: Int
    let zones: [UpstreamZone]
    /// Mapped apart from the segment (LimitZone), but sized here too: nginx refuses a zone no directive sized.
    let limitZones: [LimitZoneSpec]
    /// The upstreams with `server … resolve` (the segment keeps slots for their peers), and the peers the
    /// previous generation had found for the same `server` lines: they stay, with their state when the check
    /// is unchanged, until the new checker's answers say otherwise.
    let dynamicUpstreams: [String]
    let carriedDynamic: [(peer: DynamicPeer, state: PeerState, admin: AdminState, type: UInt8, port: UInt16)]
    /// Whether every name of the new configuration had an answer in the previous generation.
    let namesResolved: Bool

    /// Identity of a checked peer across reloads.
    static func key(_ p: CheckedPeer) -> String {
        let c = p.check
        return "\(p.upstream)\u{0}\(p.address)\u{0}\(c.type.rawValue)\u{0}\(c.port)\u{0}\(c.httpSend)\u{0}\(c.effectiveExpectAlive.rawValue)"
    }

    static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325

    /// FNV-1a over `text`, continuing from `hash`: the configuration's checksum and the state file's identities.
    static func fnv1a(_ text: String, from hash: UInt64 = fnvOffset) -> UInt64 {
        var h = hash
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// `restored`: what a check_state_file saved, by StateFile.identity, for peers with no previous generation.
    init(config: Configuration, previous: (config: Configuration, segment: Segment)? = nil, restored: [String: StateFile.Saved] = [:]) {
        var carried: [String: (PeerState, AdminState)] = [:]
        if let previous {
            for (i, p) in previous.config.checkedPeers.enumerated() where i < previous.segment.peerCount {
                let slot = previous.segment.slot(i)
                carried[SegmentPlan.key(p)] = (slot.read(), slot.admin)
            }
        }
        var hash = SegmentPlan.fnvOffset
        entries = config.checkedPeers.map { p in
            let key = SegmentPlan.key(p)
            hash = SegmentPlan.fnv1a(key, from: hash)
            let saved = restored.isEmpty ? nil : restored[StateFile.identity(key: key)].map { (PeerState(down: $0.down), $0.admin) }
            // Only a peer neither carried over nor restored is new to the table: it alone is fast-tracked.
            let (state, admin) = carried[key] ?? saved ?? (PeerState.unseen(down: p.check.defaultDown), .ready)
            return PeerEntry(upstream: p.upstream, server: p.address.description, type: p.check.type.code,
                             port: UInt16(p.check.port), state: state, admin: admin)
        }
        checksum = hash
        let resolving = config.resolvingUpstreams
        dynamicUpstreams = resolving.map(\.name)
        bytesNeeded = Layout.bytesNeeded(peers: entries.count,
                                         stringBytes: Segment.stringBytes(entries.map { ($0.upstream, $0.server) },
                                                                          dynamicUpstreams: dynamicUpstreams)) + 4 * dynamicUpstreams.count
        (carriedDynamic, namesResolved) = SegmentPlan.carryDynamic(resolving, previous: previous)
        size = config.shmSize
        zoneRecords = config.zonedPeerCount
        zones = config.upstreamZones
        limitZones = config.limitZones
    }

    /// The previous generation's resolved peers whose upstream and `server` line (by its text) are still there.
    private static func carryDynamic(_ resolving: [Upstream], previous: (config: Configuration, segment: Segment)?)
        -> ([(peer: DynamicPeer, state: PeerState, admin: AdminState, type: UInt8, port: UInt16)], Bool) {
        guard let previous, !resolving.isEmpty else { return ([], false) }
        let old = previous.config.resolvingUpstreams
        var out: [(peer: DynamicPeer, state: PeerState, admin: AdminState, type: UInt8, port: UInt16)] = []
        var allKnown = previous.segment.namesResolved
        for (k, u) in resolving.enumerated() {
            let before = old.first { $0.name == u.name }
            for (s, server) in u.servers.enumerated() where server.resolve != nil {
                guard let before, let oldLine = before.servers.firstIndex(where: { $0.resolve != nil && $0.text == server.text }),
                      let oldIndex = previous.segment.dynamicUpstreamIndex(u.name) else {
                    allKnown = false
                    continue
                }
                let sameCheck = before.check == u.check && before.servers[oldLine].down == server.down
                let check = server.down ? nil : u.check
                for (slot, p) in previous.segment.activeDynamicPeers() where p.upstream == oldIndex && p.server == oldLine {
                    var peer = p
                    peer.upstream = k
                    peer.server = s
                    peer.weight = server.weight
                    peer.backup = server.backup
                    let kept = previous.segment.slot(slot)
                    let state = sameCheck ? kept.read() : check.map { PeerState.unseen(down: $0.defaultDown) } ?? PeerState(down: false)
                    out.append((peer, state, kept.admin, check?.type.code ?? 0, UInt16(check?.port ?? 0)))
                }
            }
            // Servers from a store stay while the upstream reads the same store (the same keys of the same etcd, or
            // the same state file); the new checker's first read then says what is there now.
            guard u.hasStore else { continue }
            guard let before, before.upsync?.authority == u.upsync?.authority, before.upsync?.prefix == u.upsync?.prefix,
                  before.stateFile == u.stateFile, let oldIndex = previous.segment.dynamicUpstreamIndex(u.name) else {
                allKnown = false
                continue
            }
            let sameCheck = before.check == u.check
            var any = false
            for (slot, p) in previous.segment.activeDynamicPeers() where p.upstream == oldIndex && p.server == before.storeLine {
                var peer = p
                peer.upstream = k
                peer.server = u.storeLine
                let check = peer.down ? nil : u.check
                let kept = previous.segment.slot(slot)
                let state = sameCheck ? kept.read() : check.map { PeerState.unseen(down: $0.defaultDown) } ?? PeerState(down: false)
                out.append((peer, state, kept.admin, check?.type.code ?? 0, UInt16(check?.port ?? 0)))
                any = true
            }
            if !any { allKnown = false }
        }
        return (out, allKnown)
    }

    /// nginx-style refusal when a zone has no size or its peers do not fit it, or the check table does not fit
    /// check_shm_size, with the size that would.
    var fitError: String? {
        if let name = zones.first(where: { $0.size == 0 })?.name ?? limitZones.first(where: { $0.size == 0 })?.name {
            return "zero size shared memory zone \"\(name)\""
        }
        for z in zones where z.peers * Layout.zoneRecordSize > z.size {
            return "no memory in upstream zone \"\(z.name)\": its \(z.peers) peers need \(z.peers * Layout.zoneRecordSize) bytes in \(z.location)"
        }
        guard bytesNeeded > size else { return nil }
        let mib = (bytesNeeded + (1 << 20) - 1) >> 20
        return "check_shm_size \(size) is too small for \(entries.count) checked peers: they need \(bytesNeeded) bytes, "
            + "set \"check_shm_size \(mib)M;\" or more"
    }
}

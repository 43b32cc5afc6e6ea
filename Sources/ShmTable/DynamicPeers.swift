#if canImport(Glibc)
import Glibc
#endif
import CShim

/// A peer that joined an upstream at run time (a name's `resolve`): which upstream and `server` line it came
/// from, its address, and what the balancer needs of it.
public struct DynamicPeer: Equatable, Sendable {
    /// Index into the segment's dynamic upstream names (`Segment.dynamicUpstreamName`).
    public var upstream: Int
    /// The `server` line of that upstream, in configuration order.
    public var server: Int
    public var host: String
    public var port: UInt16
    public var isIPv6: Bool
    public var weight: Int
    public var backup: Bool
    /// A peer from a store (upsync's etcd) carries its own parameters; one from a name takes its `server`
    /// line's (nil here).
    public var maxFails: Int? = nil
    /// Seconds.
    public var failTimeout: Int? = nil
    public var down = false
    /// A store's `max_conns` (0: no limit); a name's peers take their line's.
    public var maxConns: Int? = nil

    public init(upstream: Int, server: Int, host: String, port: UInt16, isIPv6: Bool, weight: Int = 1, backup: Bool = false,
                maxFails: Int? = nil, failTimeout: Int? = nil, down: Bool = false, maxConns: Int? = nil) {
        self.upstream = upstream
        self.server = server
        self.host = host
        self.port = port
        self.isIPv6 = isIPv6
        self.weight = weight
        self.backup = backup
        self.maxFails = maxFails
        self.failTimeout = failTimeout
        self.down = down
        self.maxConns = maxConns
    }

    /// `host:port`, `[v6]:port`: how the status pages and the log name it.
    public var name: String { DynamicPeer.name(host, port, isIPv6) }
    public static func name(_ host: String, _ port: UInt16, _ isIPv6: Bool) -> String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The segment's room for peers that appear at run time: after the configured peers' slots come
/// `dynamicCapacity` more slots (numbered on from `peerCount`, so the checker and the status pages index them
/// as any slot), and a 128-byte record per slot saying whose it is. One writer (the checker's thread) adds and
/// retires peers and then bumps the membership version; workers compare the version with the one they built
/// their peer lists from (one load) and rescan the records when it moved. A retired record is reused only
/// after `DynamicRecords.graceMs`, so that a request still holding the old peer never reads a stranger's slot
/// for long; when no record is free the add fails and the caller logs it.
///
///     record: 0 state u32 (0 free, 1 active, 2 retired) · 4 server u16 · 6 upstream u16 · 8 retired at (ms)
///             16 weight u32 · 20 flags u32 (bit 0 backup, bit 1 down, bit 2 own max_fails, fail_timeout and
///             max_conns; bits 8-31 max_conns) · 24 port u16 · 26 IPv6 u8 · 28 incarnation u32
///             32 host (u16 length + up to 46 bytes) · 80 name (u16 length + up to 46 bytes)
///             128 the peer's passive counters (PeerCounters: connections, failures, their window; 32 of the 64
///             bytes a zone record has), which every worker updates, as the zone area's records · 184 max_fails
///             u16 · 186 fail_timeout u16 (s), a store's own
public enum DynamicRecords {
    public static let recordSize = 192
    /// Bytes one dynamic peer costs in check_shm_size: its slot and its record.
    public static let bytesPerPeer = Layout.slotSize + recordSize
    public static let graceMs: UInt64 = 60_000

    static let free: UInt32 = 0, active: UInt32 = 1, retired: UInt32 = 2
    static let stateOffset = 0, serverOffset = 4, upstreamOffset = 6, retiredAtOffset = 8
    static let weightOffset = 16, flagsOffset = 20, portOffset = 24, ipv6Offset = 26, incarnationOffset = 28
    static let countersOffset = 128, maxFailsOffset = 184, failTimeoutOffset = 186
    static let backupFlag: UInt32 = 1, downFlag: UInt32 = 2, ownFailuresFlag: UInt32 = 4
    static let hostOffset = 32, nameOffset = 80, textRoom = 46
}

extension Segment {
    /// Slots past the configured peers', for peers added at run time (0 when no upstream resolves names).
    public var dynamicCapacity: Int { Int(field32(Layout.dynamicCapacityOffset)) }
    /// Every slot, configured and dynamic: what the checker and the status pages may index.
    public var slotCount: Int { peerCount + dynamicCapacity }
    /// Records ever used: readers scan this many.
    public var dynamicUsed: Int { Int(vigil_load_acquire_u32(word32(Layout.dynamicUsedOffset))) }
    /// Moves whenever peers were added or retired; workers rebuild their lists when it has.
    @inline(__always) public var membershipVersion: UInt64 { vigil_load_acquire_u64(word64(Layout.membershipOffset)) }

    public var dynamicUpstreamCount: Int { Int(field32(Layout.dynamicUpstreamCountOffset)) }
    public func dynamicUpstreamName(_ k: Int) -> String {
        guard k >= 0, k < dynamicUpstreamCount else { return "?" }
        return string(at: field32(Int(field32(Layout.dynamicUpstreamsOffset)) + 4 * k))
    }
    /// The index a DynamicPeer names its upstream by, or nil when the segment reserved nothing for it.
    public func dynamicUpstreamIndex(_ name: String) -> Int? {
        (0..<dynamicUpstreamCount).first { dynamicUpstreamName($0) == name }
    }

    private func record(_ j: Int) -> UnsafeMutableRawPointer { base + Int(field32(Layout.dynamicRecordsOffset)) + j * DynamicRecords.recordSize }
    private func state(_ j: Int) -> UnsafeMutablePointer<UInt32> { (record(j) + DynamicRecords.stateOffset).assumingMemoryBound(to: UInt32.self) }

    /// The active dynamic peers, each with its slot index: what a worker balances over and the checker probes.
    public func activeDynamicPeers() -> [(slot: Int, peer: DynamicPeer)] {
        (0..<min(dynamicUsed, dynamicCapacity)).compactMap { j in dynamicPeer(slot: peerCount + j).map { (peerCount + j, $0) } }
    }

    /// The peer in dynamic slot `slot`, if it is active.
    public func dynamicPeer(slot: Int) -> DynamicPeer? {
        let j = slot - peerCount
        guard j >= 0, j < dynamicCapacity, vigil_load_acquire_u32(state(j)) == DynamicRecords.active else { return nil }
        let r = record(j)
        let flags = r.load(fromByteOffset: DynamicRecords.flagsOffset, as: UInt32.self)
        let own = flags & DynamicRecords.ownFailuresFlag != 0
        let p = DynamicPeer(upstream: Int(r.load(fromByteOffset: DynamicRecords.upstreamOffset, as: UInt16.self)),
                            server: Int(r.load(fromByteOffset: DynamicRecords.serverOffset, as: UInt16.self)),
                            host: string(at: UInt32(r - base + DynamicRecords.hostOffset)),
                            port: r.load(fromByteOffset: DynamicRecords.portOffset, as: UInt16.self),
                            isIPv6: r.load(fromByteOffset: DynamicRecords.ipv6Offset, as: UInt8.self) != 0,
                            weight: Int(r.load(fromByteOffset: DynamicRecords.weightOffset, as: UInt32.self)),
                            backup: flags & DynamicRecords.backupFlag != 0,
                            maxFails: own ? Int(r.load(fromByteOffset: DynamicRecords.maxFailsOffset, as: UInt16.self)) : nil,
                            failTimeout: own ? Int(r.load(fromByteOffset: DynamicRecords.failTimeoutOffset, as: UInt16.self)) : nil,
                            down: flags & DynamicRecords.downFlag != 0,
                            maxConns: own ? Int(flags >> 8) : nil)
        // A record retired and reused while it was read is left for the next scan (the version moved).
        return vigil_load_acquire_u32(state(j)) == DynamicRecords.active ? p : nil
    }

    /// Single writer (the checker's thread): takes a record for `peer` and fills its slot with `state`, checked
    /// as `type` on `checkPort`. nil when every record is active or retired less than `graceMs` ago. The peer
    /// is visible once `publishMembership()` runs.
    public func addDynamicPeer(_ peer: DynamicPeer, state s: PeerState, type: UInt8, checkPort: UInt16, nowMs: UInt64,
                               graceMs: UInt64 = DynamicRecords.graceMs) -> Int? {
        guard peer.upstream < dynamicUpstreamCount else { return nil }
        var j: Int
        let used = dynamicUsed
        if used < dynamicCapacity {
            j = used
        } else {
            // The record retired longest ago, if its grace is over.
            var oldest: (j: Int, at: UInt64)?
            for i in 0..<dynamicCapacity where vigil_load_acquire_u32(state(i)) == DynamicRecords.retired {
                let at = record(i).load(fromByteOffset: DynamicRecords.retiredAtOffset, as: UInt64.self)
                if oldest == nil || at < oldest!.at { oldest = (i, at) }
            }
            guard let o = oldest, nowMs >= o.at &+ graceMs else { return nil }
            j = o.j
        }
        vigil_store_release_u32(state(j), DynamicRecords.free)
        let r = record(j)
        r.storeBytes(of: UInt16(peer.server), toByteOffset: DynamicRecords.serverOffset, as: UInt16.self)
        r.storeBytes(of: UInt16(peer.upstream), toByteOffset: DynamicRecords.upstreamOffset, as: UInt16.self)
        r.storeBytes(of: UInt32(clamping: peer.weight), toByteOffset: DynamicRecords.weightOffset, as: UInt32.self)
        let own = peer.maxFails != nil || peer.failTimeout != nil || peer.maxConns != nil
        r.storeBytes(of: (peer.backup ? DynamicRecords.backupFlag : 0) | (peer.down ? DynamicRecords.downFlag : 0)
                         | (own ? DynamicRecords.ownFailuresFlag : 0) | UInt32(min(peer.maxConns ?? 0, 0xFF_FFFF)) << 8,
                     toByteOffset: DynamicRecords.flagsOffset, as: UInt32.self)
        r.storeBytes(of: peer.port, toByteOffset: DynamicRecords.portOffset, as: UInt16.self)
        r.storeBytes(of: peer.isIPv6 ? UInt8(1) : 0, toByteOffset: DynamicRecords.ipv6Offset, as: UInt8.self)
        putText(peer.host, at: r + DynamicRecords.hostOffset)
        putText(peer.name, at: r + DynamicRecords.nameOffset)
        // A new incarnation: views of the record's previous peer stop counting, and the counts start at zero.
        let incarnation = (r + DynamicRecords.incarnationOffset).assumingMemoryBound(to: UInt32.self)
        vigil_store_release_u32(incarnation, vigil_load_acquire_u32(incarnation) &+ 1)
        memset(r + DynamicRecords.countersOffset, 0, Layout.zoneRecordSize)
        // After the counters' clearing: a store's parameters share their 64 bytes.
        r.storeBytes(of: UInt16(clamping: peer.maxFails ?? 0), toByteOffset: DynamicRecords.maxFailsOffset, as: UInt16.self)
        r.storeBytes(of: UInt16(clamping: peer.failTimeout ?? 0), toByteOffset: DynamicRecords.failTimeoutOffset, as: UInt16.self)
        let slot = slotBase(peerCount + j)
        slot.storeBytes(of: field32(Int(field32(Layout.dynamicUpstreamsOffset)) + 4 * peer.upstream),
                        toByteOffset: Layout.upstreamNameOffset, as: UInt32.self)
        slot.storeBytes(of: UInt32(r - base + DynamicRecords.nameOffset), toByteOffset: Layout.serverNameOffset, as: UInt32.self)
        slot.storeBytes(of: type, toByteOffset: Layout.typeOffset, as: UInt8.self)
        slot.storeBytes(of: checkPort, toByteOffset: Layout.portOffset, as: UInt16.self)
        PeerSlot(base: slot).write(s)
        PeerSlot(base: slot).clearControl()
        vigil_store_release_u32(state(j), DynamicRecords.active)
        if j == used { vigil_store_release_u32(word32(Layout.dynamicUsedOffset), UInt32(used + 1)) }
        return peerCount + j
    }

    /// Single writer: the peer in `slot` leaves its upstream (visible once `publishMembership()` runs). Requests
    /// already on it finish; its record is reused after the grace period.
    public func retireDynamicPeer(slot: Int, nowMs: UInt64) {
        let j = slot - peerCount
        guard j >= 0, j < dynamicCapacity, vigil_load_acquire_u32(state(j)) == DynamicRecords.active else { return }
        record(j).storeBytes(of: nowMs, toByteOffset: DynamicRecords.retiredAtOffset, as: UInt64.self)
        vigil_store_release_u32(state(j), DynamicRecords.retired)
    }

    /// Whether every `resolve` name has had its first answer in this generation (or peers were carried over
    /// into it): until then a request that finds no peer waits, as for new peers' first verdicts.
    public var namesResolved: Bool { vigil_load_acquire_u32(word32(Layout.namesResolvedOffset)) != 0 }
    public func markNamesResolved() { vigil_store_release_u32(word32(Layout.namesResolvedOffset), 1) }

    /// The passive counters of the peer now in dynamic slot `slot`, bound to this incarnation of its record.
    public func dynamicCounters(slot: Int) -> PeerCounters? {
        let j = slot - peerCount
        guard j >= 0, j < dynamicCapacity else { return nil }
        let word = (record(j) + DynamicRecords.incarnationOffset).assumingMemoryBound(to: UInt32.self)
        return PeerCounters(base: record(j) + DynamicRecords.countersOffset, incarnation: (word, vigil_load_acquire_u32(word)))
    }

    /// Tells the workers that the dynamic peers changed.
    public func publishMembership() { _ = vigil_fetch_add_u64(word64(Layout.membershipOffset), 1) }

    private func putText(_ s: String, at p: UnsafeMutableRawPointer) {
        let bytes = Array(s.utf8.prefix(DynamicRecords.textRoom))
        p.storeBytes(of: UInt16(bytes.count), as: UInt16.self)
        bytes.withUnsafeBytes { (p + 2).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }

    func field32(_ offset: Int) -> UInt32 { base.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    private func word32(_ offset: Int) -> UnsafeMutablePointer<UInt32> { (base + offset).assumingMemoryBound(to: UInt32.self) }
    private func word64(_ offset: Int) -> UnsafeMutablePointer<UInt64> { (base + offset).assumingMemoryBound(to: UInt64.self) }
}

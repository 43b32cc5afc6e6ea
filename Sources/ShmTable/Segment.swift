#if canImport(Glibc)
import Glibc
#endif
import CShim
import Core

public struct ShmError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
    static func sys(_ what: String, _ err: Int32 = errno) -> ShmError {
        ShmError("\(what) failed (\(Errno.text(err)))")
    }
}

/// What the master writes into a new slot.
public struct PeerEntry {
    public var upstream: String
    public var server: String
    public var type: UInt8
    public var port: UInt16
    public var state: PeerState
    /// The operator's state, carried over a reload like the verdict.
    public var admin: AdminState

    public init(upstream: String, server: String, type: UInt8, port: UInt16, state: PeerState, admin: AdminState = .ready) {
        self.upstream = upstream
        self.server = server
        self.type = type
        self.port = port
        self.state = state
        self.admin = admin
    }
}

/// The mutable part of a slot, as one consistent snapshot (also what a reload carries over).
public struct PeerState: Equatable, Sendable {
    public var down: Bool
    public var checked = false
    public var rise: UInt32 = 0
    public var fall: UInt32 = 0
    public var lastCheckMs: UInt64 = 0
    public var checks: UInt32 = 0
    public var failures: UInt32 = 0
    public var lastChangeMs: UInt64 = 0
    public var rttUs: UInt32 = 0
    public var reason: FailureReason = .none
    /// The status line's code of the last http(s) check (0: none or another type).
    public var lastStatus: UInt16 = 0
    public var stateChanges: UInt16 = 0
    /// StateBits.firstRound: the checker has yet to decide this new peer's state.
    public var firstRound = false

    public init(down: Bool) { self.down = down }

    /// A peer the table has never seen: `down` as default_down says, its first round of probes to come.
    public static func unseen(down: Bool) -> PeerState {
        var s = PeerState(down: down)
        s.firstRound = true
        return s
    }
}

/// A mapped segment. The master creates it before fork; workers inherit the mapping; `shmdump` attaches read-only.
public final class Segment {
    public let name: String
    public let size: Int
    public let base: UnsafeMutableRawPointer
    let owner: Bool
    /// An eventfd made with the segment, before the workers fork (they inherit it): a worker that asks for a
    /// re-check rings it, and the checker's loop wakes on it instead of scanning the slots on a timer, which
    /// cost an idle checker 50 wake-ups a second. -1 for a segment attached read-only (shmdump).
    public let doorbell: Int32

    private init(name: String, size: Int, base: UnsafeMutableRawPointer, owner: Bool, doorbell: Int32 = -1) {
        self.name = name
        self.size = size
        self.base = base
        self.owner = owner
        self.doorbell = doorbell
    }

    deinit {
        munmap(base, size)
        if doorbell >= 0 { close(doorbell) }
    }

    /// Wakes the checker: some slot has a new re-check request.
    public func ringDoorbell() { vigil_eventfd_signal(doorbell) }

    /// Bytes the string table needs for these peers and the names of the upstreams that resolve names at run
    /// time (each upstream name is stored once).
    public static func stringBytes(_ peers: [(upstream: String, server: String)], dynamicUpstreams: [String] = []) -> Int {
        var seen = Set<String>()
        var total = 0
        for p in peers {
            if seen.insert(p.upstream).inserted { total += 2 + min(p.upstream.utf8.count, 0xFFFF) }
            total += 2 + min(p.server.utf8.count, 0xFFFF)
        }
        for u in dynamicUpstreams where seen.insert(u).inserted { total += 2 + min(u.utf8.count, 0xFFFF) }
        return total
    }

    /// Dynamic slots that fit beside `peers` configured peers whose strings take `stringBytes`, for
    /// `upstreams` resolving upstreams: whatever check_shm_size has left (none without such upstreams).
    public static func dynamicCapacity(checkSize: Int, peers: Int, stringBytes: Int, upstreams: Int) -> Int {
        guard upstreams > 0 else { return 0 }
        let fixed = Layout.bytesNeeded(peers: peers, stringBytes: stringBytes) + 4 * upstreams + Layout.slotSize
        return max(0, (checkSize - fixed) / DynamicRecords.bytesPerPeer)
    }

    /// Creates and fills a new segment: the check table in `size` bytes (check_shm_size), then `zoneRecords`
    /// zeroed peer records. Fails (and leaves nothing behind) if the checked peers do not fit in `size`.
    /// `dynamicUpstreams`: the upstreams that resolve names at run time; what is left of `size` becomes slots
    /// for their peers.
    public static func create(name: String, size checkSize: Int, generation: UInt64, masterPid: Int32,
                              checksum: UInt64, peers: [PeerEntry], zoneRecords: Int = 0,
                              dynamicUpstreams: [String] = []) throws -> Segment {
        let strings = stringBytes(peers.map { ($0.upstream, $0.server) }, dynamicUpstreams: dynamicUpstreams)
        let needed = Layout.bytesNeeded(peers: peers.count, stringBytes: strings) + 4 * dynamicUpstreams.count
        guard needed <= checkSize else {
            throw ShmError("check_shm_size is too small: \(peers.count) peers need \(needed) bytes, the segment has \(checkSize)")
        }
        let size = zoneRecords > 0 ? Layout.zoneOffset(checkSize: checkSize) + zoneRecords * Layout.zoneRecordSize : checkSize
        _ = vigil_shm_unlink(name)   // a stale object of a dead master that had our pid
        let fd = vigil_shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw ShmError.sys("shm_open(\"\(name)\")") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let e = errno
            _ = vigil_shm_unlink(name)
            throw ShmError.sys("ftruncate(\"\(name)\", \(size))", e)
        }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            let e = errno
            _ = vigil_shm_unlink(name)
            throw ShmError.sys("mmap(\"\(name)\")", e)
        }
        let doorbell = vigil_eventfd(0)
        guard doorbell >= 0 else {
            let e = errno
            munmap(p, size)
            _ = vigil_shm_unlink(name)
            throw ShmError.sys("eventfd()", e)
        }
        let seg = Segment(name: name, size: size, base: p, owner: true, doorbell: doorbell)
        seg.fill(generation: generation, masterPid: masterPid, checksum: checksum, peers: peers, stringBytes: strings,
                 checkSize: checkSize, zoneRecords: zoneRecords, dynamicUpstreams: dynamicUpstreams)
        return seg
    }

    /// A new object reads as zeros, so the zone area's records start with no connections and no failures.
    private func fill(generation: UInt64, masterPid: Int32, checksum: UInt64, peers: [PeerEntry], stringBytes: Int,
                      checkSize: Int, zoneRecords: Int, dynamicUpstreams: [String]) {
        let dynamic = Segment.dynamicCapacity(checkSize: checkSize, peers: peers.count, stringBytes: stringBytes,
                                              upstreams: dynamicUpstreams.count)
        memset(base, 0, Layout.headerSize + (peers.count + dynamic) * Layout.slotSize)
        Layout.magic.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        put(Layout.versionOffset, Layout.version)
        put(Layout.headerSizeOffset, UInt32(Layout.headerSize))
        put(Layout.segmentSizeOffset, UInt64(size))
        put(Layout.generationOffset, generation)
        put(Layout.masterPidOffset, UInt32(bitPattern: masterPid))
        put(Layout.peerCountOffset, UInt32(peers.count))
        let free = checkSize - Layout.headerSize - stringBytes
        put(Layout.peerCapacityOffset, UInt32(dynamicUpstreams.isEmpty ? free / Layout.slotSize : peers.count + dynamic))
        put(Layout.slotSizeOffset, UInt32(Layout.slotSize))
        put(Layout.dynamicCapacityOffset, UInt32(dynamic))
        let stringsAt = Layout.headerSize + (peers.count + dynamic) * Layout.slotSize
        put(Layout.stringTableOffset, UInt32(stringsAt))
        put(Layout.stringTableSizeOffset, UInt32(stringBytes))
        put(Layout.checksumOffset, checksum)
        put(Layout.createdAtOffset, UInt64(bitPattern: vigil_realtime_ms()))
        put(Layout.zoneOffsetOffset, UInt32(zoneRecords > 0 ? Layout.zoneOffset(checkSize: checkSize) : 0))
        put(Layout.zoneRecordsOffset, UInt32(zoneRecords))

        var cursor = stringsAt
        var upstreamOffsets: [String: UInt32] = [:]
        func addString(_ s: String) -> UInt32 {
            let bytes = Array(s.utf8.prefix(0xFFFF))
            let at = cursor
            put(at, UInt16(bytes.count))
            bytes.withUnsafeBytes { (base + at + 2).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            cursor += 2 + bytes.count
            return UInt32(at)
        }
        for (i, peer) in peers.enumerated() {
            let upOff: UInt32
            if let o = upstreamOffsets[peer.upstream] { upOff = o } else {
                upOff = addString(peer.upstream)
                upstreamOffsets[peer.upstream] = upOff
            }
            let slot = slotBase(i)
            slot.storeBytes(of: upOff, toByteOffset: Layout.upstreamNameOffset, as: UInt32.self)
            slot.storeBytes(of: addString(peer.server), toByteOffset: Layout.serverNameOffset, as: UInt32.self)
            slot.storeBytes(of: peer.type, toByteOffset: Layout.typeOffset, as: UInt8.self)
            slot.storeBytes(of: peer.port, toByteOffset: Layout.portOffset, as: UInt16.self)
            PeerSlot(base: slot).write(peer.state)
            PeerSlot(base: slot).setAdmin(peer.admin)
        }
        // The resolving upstreams' names, then their offsets, then the dynamic records (zeroed: free).
        let names = dynamicUpstreams.map { u -> UInt32 in
            if let o = upstreamOffsets[u] { return o }
            let o = addString(u)
            upstreamOffsets[u] = o
            return o
        }
        put(Layout.dynamicUpstreamsOffset, UInt32(cursor))
        put(Layout.dynamicUpstreamCountOffset, UInt32(names.count))
        for (k, o) in names.enumerated() { put(cursor + 4 * k, o) }
        let records = (cursor + 4 * names.count + Layout.slotSize - 1) / Layout.slotSize * Layout.slotSize
        put(Layout.dynamicRecordsOffset, UInt32(records))
        if dynamic > 0 { memset(base + records, 0, dynamic * DynamicRecords.recordSize) }
        // The header becomes valid (magic already set) before any worker exists; fence for attachers.
        vigil_fence_release()
    }

    /// Attaches to an existing segment read-only and validates it; every failure is one clear line.
    public static func attach(name: String) throws -> Segment {
        let fd = vigil_shm_open(name, O_RDONLY, 0)
        guard fd >= 0 else { throw ShmError.sys("shm_open(\"\(name)\")") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ShmError.sys("fstat(\"\(name)\")") }
        let size = Int(st.st_size)
        guard size >= Layout.headerSize else {
            throw ShmError("segment \"\(name)\" is truncated: \(size) bytes, the header alone needs \(Layout.headerSize)")
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw ShmError.sys("mmap(\"\(name)\")")
        }
        let seg = Segment(name: name, size: size, base: p, owner: false)
        try seg.validate()
        return seg
    }

    func validate() throws {
        let magic = (0..<8).map { base.load(fromByteOffset: $0, as: UInt8.self) }
        guard magic == Layout.magic else { throw ShmError("segment \"\(name)\" is not a vigil segment (bad magic)") }
        guard layoutVersion == Layout.version else {
            throw ShmError("segment \"\(name)\" has layout version \(layoutVersion), this shmdump reads version \(Layout.version)")
        }
        let declared = Int(field(Layout.segmentSizeOffset, UInt64.self))
        guard declared <= size else {
            throw ShmError("segment \"\(name)\" is truncated: \(size) bytes of the \(declared) its header declares")
        }
        guard Int(field(Layout.slotSizeOffset, UInt32.self)) == Layout.slotSize,
              Int(field(Layout.headerSizeOffset, UInt32.self)) == Layout.headerSize else {
            throw ShmError("segment \"\(name)\" has an unexpected header or slot size")
        }
        let slotsEnd = Layout.headerSize + slotCount * Layout.slotSize
        let stringsEnd = Int(field(Layout.stringTableOffset, UInt32.self)) + Int(field(Layout.stringTableSizeOffset, UInt32.self))
        guard slotsEnd <= size, stringsEnd <= size else {
            throw ShmError("segment \"\(name)\" is truncated: \(peerCount) peers do not fit in \(size) bytes")
        }
        guard Int(field32(Layout.dynamicRecordsOffset)) + dynamicCapacity * DynamicRecords.recordSize <= size,
              Int(field32(Layout.dynamicUpstreamsOffset)) + 4 * dynamicUpstreamCount <= size else {
            throw ShmError("segment \"\(name)\" is truncated: \(dynamicCapacity) dynamic peers do not fit in \(size) bytes")
        }
        guard zoneOffset + zoneRecords * Layout.zoneRecordSize <= size else {
            throw ShmError("segment \"\(name)\" is truncated: \(zoneRecords) zone records do not fit in \(size) bytes")
        }
    }

    /// Removes the name; mappings stay valid until every process unmaps.
    public func unlink() { _ = vigil_shm_unlink(name) }

    // MARK: header

    public var layoutVersion: UInt32 { field(Layout.versionOffset, UInt32.self) }
    public var generation: UInt64 { field(Layout.generationOffset, UInt64.self) }
    public var masterPid: Int32 { Int32(bitPattern: field(Layout.masterPidOffset, UInt32.self)) }
    public var peerCount: Int { Int(field(Layout.peerCountOffset, UInt32.self)) }
    public var peerCapacity: Int { Int(field(Layout.peerCapacityOffset, UInt32.self)) }
    public var checksum: UInt64 { field(Layout.checksumOffset, UInt64.self) }
    public var createdAtMs: Int64 { Int64(bitPattern: field(Layout.createdAtOffset, UInt64.self)) }

    public var checker: CheckerLock { CheckerLock(base: base) }

    var zoneOffset: Int { Int(field(Layout.zoneOffsetOffset, UInt32.self)) }
    public var zoneRecords: Int { Int(field(Layout.zoneRecordsOffset, UInt32.self)) }

    /// The passive state of peer record `i` of the zone area.
    public func zoneRecord(_ i: Int) -> PeerCounters {
        precondition(i >= 0 && i < zoneRecords, "zone record \(i) out of range")
        return PeerCounters(base: base + zoneOffset + i * Layout.zoneRecordSize)
    }

    public func slot(_ i: Int) -> PeerSlot {
        precondition(i >= 0 && i < slotCount, "peer index \(i) out of range")
        return PeerSlot(base: slotBase(i))
    }

    /// A string from the table, bounds-checked so a damaged segment cannot make a reader crash.
    public func string(at offset: UInt32) -> String {
        let o = Int(offset)
        guard o >= Layout.headerSize, o + 2 <= size else { return "?" }
        let len = Int(base.loadUnaligned(fromByteOffset: o, as: UInt16.self))
        guard o + 2 + len <= size else { return "?" }
        return String(decoding: UnsafeRawBufferPointer(start: base + o + 2, count: len), as: UTF8.self)
    }

    public func upstreamName(_ i: Int) -> String { string(at: slotBase(i).load(fromByteOffset: Layout.upstreamNameOffset, as: UInt32.self)) }
    public func serverName(_ i: Int) -> String { string(at: slotBase(i).load(fromByteOffset: Layout.serverNameOffset, as: UInt32.self)) }

    func slotBase(_ i: Int) -> UnsafeMutableRawPointer { base + Layout.headerSize + i * Layout.slotSize }

    private func put<T: FixedWidthInteger>(_ offset: Int, _ v: T) { base.storeBytes(of: v.littleEndian, toByteOffset: offset, as: T.self) }
    private func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T { T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self)) }
}

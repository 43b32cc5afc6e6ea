import Glibc
import XCTest
@testable import ShmTable

final class SegmentTests: XCTestCase {
    var segName = ""

    override func setUp() { segName = "/vigil-unit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }
    override func tearDown() { shm_unlink(segName) }

    func peers(_ n: Int, down: Bool = true) -> [PeerEntry] {
        (0..<n).map { i in
            PeerEntry(upstream: "u\(i % 7)", server: "10.\(i / 65536).\((i / 256) % 256).\(i % 256):8080",
                      type: 1, port: i % 2 == 0 ? 0 : 9000, state: PeerState(down: down))
        }
    }

    func testCreateAttachAndRead() throws {
        let seg = try Segment.create(name: segName, size: 1 << 20, generation: 3, masterPid: 4242, checksum: 99, peers: peers(5))
        XCTAssertEqual(seg.generation, 3)
        XCTAssertEqual(seg.masterPid, 4242)
        XCTAssertEqual(seg.peerCount, 5)
        XCTAssertEqual(seg.checksum, 99)
        let ro = try Segment.attach(name: segName)
        XCTAssertEqual(ro.peerCount, 5)
        XCTAssertEqual(ro.upstreamName(3), "u3")
        XCTAssertEqual(ro.serverName(3), "10.0.0.3:8080")
        XCTAssertEqual(ro.slot(1).port, 9000)
        XCTAssertEqual(ro.slot(1).type, 1)
        XCTAssertTrue(ro.slot(0).isDown)
        XCTAssertEqual(ro.slot(0).read(), PeerState(down: true))
    }

    func testWriterUpdatesAreVisibleToReaders() throws {
        let seg = try Segment.create(name: segName, size: 1 << 20, generation: 1, masterPid: 1, checksum: 0, peers: peers(2))
        var s = PeerState(down: false)
        s.checked = true
        s.rise = 7
        s.fall = 0
        s.checks = 12
        s.failures = 3
        s.rttUs = 450
        s.reason = .timedOut
        s.lastCheckMs = 123_456
        seg.slot(1).write(s)
        let ro = try Segment.attach(name: segName)
        XCTAssertFalse(ro.slot(1).isDown)
        XCTAssertEqual(ro.slot(1).read(), s)
        XCTAssertTrue(ro.slot(0).isDown, "neighbouring slot untouched")
        XCTAssertFalse(ro.slot(1).inFirstRound)
        seg.slot(0).write(.unseen(down: true))
        XCTAssertTrue(ro.slot(0).inFirstRound)
        XCTAssertEqual(ro.slot(0).read(), .unseen(down: true))
    }

    /// A re-check request rings the doorbell once until the checker takes it; a read-only attach has none.
    func testRecheckRequestsRingTheDoorbellOnce() throws {
        let seg = try Segment.create(name: segName, size: 1 << 20, generation: 1, masterPid: 1, checksum: 0, peers: peers(3))
        XCTAssertGreaterThanOrEqual(seg.doorbell, 0)
        XCTAssertEqual(try Segment.attach(name: segName).doorbell, -1)
        var count: UInt64 = 0
        XCTAssertEqual(read(seg.doorbell, &count, 8), -1, "nothing rung yet")
        XCTAssertTrue(seg.slot(2).requestRecheck())
        XCTAssertFalse(seg.slot(2).requestRecheck(), "already pending: no second ring")
        seg.ringDoorbell()
        XCTAssertEqual(read(seg.doorbell, &count, 8), 8)
        XCTAssertEqual(count, 1)
        XCTAssertFalse(seg.slot(1).takeRecheck())
        XCTAssertTrue(seg.slot(2).takeRecheck())
        XCTAssertTrue(seg.slot(2).requestRecheck(), "taken: the next failure asks again")
    }

    /// 1 MiB holds at least 10,000 peers (the reference fits 4,475); 20,000 do not fit and say so.
    func testCapacity() throws {
        let tenK = peers(10_000)
        let needed = Layout.bytesNeeded(peers: tenK.count, stringBytes: Segment.stringBytes(tenK.map { ($0.upstream, $0.server) }))
        XCTAssertLessThanOrEqual(needed, 1 << 20)
        let seg = try Segment.create(name: segName, size: 1 << 20, generation: 1, masterPid: 1, checksum: 0, peers: tenK)
        XCTAssertEqual(seg.serverName(9_999), "10.0.39.15:8080")
        XCTAssertThrowsError(try Segment.create(name: segName + "x", size: 1 << 20, generation: 1, masterPid: 1, checksum: 0, peers: peers(20_000))) {
            XCTAssertTrue("\($0)".contains("20000 peers need"), "\($0)")
        }
    }

    func testCheckerLockElection() throws {
        let seg = try Segment.create(name: segName, size: 1 << 20, generation: 1, masterPid: 1, checksum: 0, peers: [])
        let lock = seg.checker
        XCTAssertEqual(lock.holder, 0)
        XCTAssertTrue(lock.tryAcquire(pid: 100, nowMs: 1_000, staleAfterMs: 750))
        XCTAssertEqual(lock.holder, 100)
        XCTAssertFalse(lock.tryAcquire(pid: 200, nowMs: 1_500, staleAfterMs: 750), "fresh heartbeat keeps the holder")
        lock.heartbeat(pid: 100, nowMs: 1_600)
        XCTAssertFalse(lock.tryAcquire(pid: 200, nowMs: 2_300, staleAfterMs: 750))
        XCTAssertTrue(lock.tryAcquire(pid: 200, nowMs: 2_400, staleAfterMs: 750), "stale heartbeat is taken over")
        XCTAssertEqual(lock.holder, 200)
        XCTAssertEqual(lock.heartbeatMs, 2_400)
        XCTAssertFalse(lock.release(ifHeldBy: 100), "only the holder's release counts")
        XCTAssertTrue(lock.release(ifHeldBy: 200))
        XCTAssertEqual(lock.holder, 0)
    }

    func testAttachRejectsForeignAndTruncatedSegments() throws {
        let fd = shm_open(segName, O_RDWR | O_CREAT, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        ftruncate(fd, 64)
        close(fd)
        XCTAssertThrowsError(try Segment.attach(name: segName)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        let seg = try Segment.create(name: segName, size: 1 << 20, generation: 1, masterPid: 1, checksum: 0, peers: peers(3))
        _ = seg
        let fd2 = shm_open(segName, O_RDWR, 0)
        ftruncate(fd2, 4096)   // shrink below the declared size
        close(fd2)
        XCTAssertThrowsError(try Segment.attach(name: segName)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
    }

    /// The zone area lies past check_shm_size, a zeroed record per zoned peer; what one mapping's counters
    /// write, another mapping of the same object reads.
    func testZoneRecords() throws {
        let seg = try Segment.create(name: segName, size: (1 << 20) + 1, generation: 1, masterPid: 1, checksum: 0, peers: peers(3), zoneRecords: 5)
        XCTAssertEqual(seg.zoneRecords, 5)
        XCTAssertEqual(seg.size, (1 << 20) + 64 + 5 * Layout.zoneRecordSize, "the area starts on the next cache line")
        XCTAssertEqual(seg.peerCapacity, try Segment.create(name: segName + "b", size: (1 << 20) + 1, generation: 1, masterPid: 1,
                                                              checksum: 0, peers: peers(3)).peerCapacity, "the area takes nothing from the check table")
        shm_unlink(segName + "b")
        let r = seg.zoneRecord(4)
        XCTAssertEqual([r.connections, r.fails], [0, 0])
        XCTAssertEqual([r.checkedAt, r.accessedAt], [0, 0])
        r.addConnections(3)
        r.addConnections(-1)
        r.addFail()
        r.checkedAt = 1234
        let attached = try Segment.attach(name: segName)   // kept: its records point into its mapping
        let other = attached.zoneRecord(4)
        XCTAssertEqual([other.connections, other.fails], [2, 1])
        XCTAssertEqual(other.checkedAt, 1234)
        XCTAssertEqual(seg.zoneRecord(3).connections, 0, "records do not overlap")
        r.clearFails()
        XCTAssertEqual(other.fails, 0)
        withExtendedLifetime(attached) {}
    }

    func testSegmentNames() {
        XCTAssertEqual(Layout.segmentName(masterPid: 123, generation: 4), "/vigil.123.4")
        XCTAssertEqual(Layout.parseSegmentName("vigil.123.4")?.pid, 123)
        XCTAssertEqual(Layout.parseSegmentName("/vigil.123.4")?.generation, 4)
        XCTAssertNil(Layout.parseSegmentName("vigil.x.4"))
        XCTAssertNil(Layout.parseSegmentName("other.1.2"))
    }
}

import Glibc
import XCTest
@testable import ShmTable

/// Slots for peers that join at run time: numbered on from the configured ones, published by a version bump,
/// retired ones reused only after the grace period, and a full table refused, not overrun.
final class DynamicPeersTests: XCTestCase {
    var segName = ""

    override func setUp() { segName = "/vigil-unit-dyn-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }
    override func tearDown() { shm_unlink(segName) }

    func segment(size: Int = 1 << 20, upstreams: [String] = ["app", "api"]) throws -> Segment {
        let configured = [PeerEntry(upstream: "app", server: "10.0.0.1:80", type: 1, port: 0, state: PeerState(down: false))]
        return try Segment.create(name: segName, size: size, generation: 1, masterPid: getpid(), checksum: 0, peers: configured,
                                  dynamicUpstreams: upstreams)
    }

    func testAddedPeersGetSlotsAfterTheConfiguredOnesAndAppearOnPublish() throws {
        let seg = try segment()
        XCTAssertEqual(seg.dynamicUpstreamName(0), "app")
        XCTAssertEqual(seg.dynamicUpstreamIndex("api"), 1)
        // 1 MiB less the header, one slot and the strings: 256 bytes a dynamic peer.
        XCTAssertGreaterThan(seg.dynamicCapacity, 4000)
        let version = seg.membershipVersion
        let peer = DynamicPeer(upstream: 1, server: 2, host: "fd00::7", port: 8080, isIPv6: true, weight: 5, backup: true)
        let slot = try XCTUnwrap(seg.addDynamicPeer(peer, state: .unseen(down: true), type: 2, checkPort: 9000, nowMs: 1000))
        XCTAssertEqual(slot, 1, "numbered on from the configured peers")
        XCTAssertEqual(seg.membershipVersion, version, "not announced until published")
        seg.publishMembership()
        XCTAssertNotEqual(seg.membershipVersion, version)

        let ro = try Segment.attach(name: segName)
        XCTAssertEqual(ro.activeDynamicPeers().map(\.slot), [1])
        XCTAssertEqual(ro.activeDynamicPeers().first?.peer, peer)
        XCTAssertEqual(ro.upstreamName(1), "api")
        XCTAssertEqual(ro.serverName(1), "[fd00::7]:8080")
        XCTAssertEqual(ro.slot(1).type, 2)
        XCTAssertEqual(ro.slot(1).port, 9000)
        XCTAssertTrue(ro.slot(1).inFirstRound)
        XCTAssertEqual(ro.upstreamName(0), "app", "the configured peer is untouched")
    }

    func testRetiredRecordsAreReusedOnlyAfterTheGraceAndAFullTableRefuses() throws {
        // Room for a handful of dynamic peers only.
        let seg = try segment(size: 128 + 64 + 64 + 40 + 3 * DynamicRecords.bytesPerPeer)
        let capacity = seg.dynamicCapacity
        XCTAssertGreaterThanOrEqual(capacity, 2)
        func peer(_ i: Int) -> DynamicPeer { DynamicPeer(upstream: 0, server: 0, host: "10.1.0.\(i)", port: 80, isIPv6: false) }
        let slots = (0..<capacity).compactMap { seg.addDynamicPeer(peer($0), state: PeerState(down: false), type: 1, checkPort: 0, nowMs: 0) }
        XCTAssertEqual(slots.count, capacity)
        XCTAssertNil(seg.addDynamicPeer(peer(99), state: PeerState(down: false), type: 1, checkPort: 0, nowMs: 0), "full")
        seg.retireDynamicPeer(slot: slots[0], nowMs: 5000)
        seg.publishMembership()
        XCTAssertEqual(seg.activeDynamicPeers().count, capacity - 1)
        XCTAssertNil(seg.addDynamicPeer(peer(99), state: PeerState(down: false), type: 1, checkPort: 0, nowMs: 5000 + DynamicRecords.graceMs - 1),
                     "a request may still hold the retired peer")
        let old = try XCTUnwrap(seg.dynamicCounters(slot: slots[0]))
        old.addConnections(2)
        old.addFail()
        let reused = seg.addDynamicPeer(peer(99), state: PeerState(down: false), type: 1, checkPort: 0, nowMs: 5000 + DynamicRecords.graceMs)
        XCTAssertEqual(reused, slots[0])
        // The record's new peer counts from zero; a request that outlived the old one changes nothing.
        let new = try XCTUnwrap(seg.dynamicCounters(slot: slots[0]))
        XCTAssertEqual(new.connections, 0)
        XCTAssertEqual(new.fails, 0)
        XCTAssertFalse(old.live)
        old.addConnections(-2)
        XCTAssertEqual(new.connections, 0)
        new.addConnections(1)
        let ro = try Segment.attach(name: segName)
        XCTAssertEqual(ro.dynamicCounters(slot: slots[0])?.connections, 1, "shared with every process")
        XCTAssertEqual(seg.serverName(slots[0]), "10.1.0.99:80")
        XCTAssertEqual(seg.activeDynamicPeers().count, capacity)
    }

    func testNoResolvingUpstreamNoDynamicSlots() throws {
        let seg = try segment(upstreams: [])
        XCTAssertEqual(seg.dynamicCapacity, 0)
        XCTAssertEqual(seg.slotCount, 1)
        XCTAssertNil(seg.addDynamicPeer(DynamicPeer(upstream: 0, server: 0, host: "10.0.0.2", port: 80, isIPv6: false),
                                        state: PeerState(down: false), type: 1, checkPort: 0, nowMs: 0))
    }
}

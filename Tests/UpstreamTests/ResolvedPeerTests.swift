import Glibc
import XCTest
@testable import Config
import ShmTable
@testable import Upstream

/// An upstream with `server … resolve`: the balancer's list is the configured peers plus the resolved ones the
/// segment holds, rebuilt when the checker publishes a change; until the names had their first answer, a
/// request that finds no peer waits.
final class ResolvedPeerTests: XCTestCase {
    func testResolvedPeersJoinAndLeaveWithTheMembershipVersion() throws {
        let (conf, upstream) = try parseUpstream("""
            upstream u { zone u 64k; resolver 127.0.0.1; server 127.0.0.1:8001; server app.invalid:8080 resolve weight=2;
                         check interval=1000 timeout=500; }
            """)
        let name = "/vigil-unit-resolved-\(getpid())"
        addTeardownBlock { shm_unlink(name) }
        let segment = try Segment.create(name: name, size: 1 << 20, generation: 1, masterPid: getpid(), checksum: 0,
                                         peers: conf.checkedPeers.map { PeerEntry(upstream: $0.upstream, server: $0.address.description,
                                                                                  type: 1, port: 0, state: PeerState(down: false)) },
                                         zoneRecords: conf.zonedPeerCount, dynamicUpstreams: conf.resolvingUpstreams.map { $0.name })
        let balancer = UpstreamBalancer(upstream: upstream, segment: segment,
                                        checkedIndex: [UpstreamBalancer.slotKey(upstream: "u", address: conf.checkedPeers[0].address): 0])
        XCTAssertEqual(Set(balancer.picks(4, now: 1000)), ["127.0.0.1:8001"])
        XCTAssertEqual(balancer.firstVerdictWaitMs, 500)
        XCTAssertTrue(balancer.awaitsFirstVerdicts, "app.invalid has had no answer yet")
        segment.markNamesResolved()
        XCTAssertFalse(balancer.awaitsFirstVerdicts)

        let found = DynamicPeer(upstream: 0, server: 1, host: "10.0.0.9", port: 8080, isIPv6: false, weight: 2)
        let slot = try XCTUnwrap(segment.addDynamicPeer(found, state: .unseen(down: true), type: 1, checkPort: 0, nowMs: 0))
        XCTAssertEqual(Set(balancer.picks(4, now: 1001)), ["127.0.0.1:8001"], "not published yet")
        segment.publishMembership()
        XCTAssertEqual(Set(balancer.picks(4, now: 1002)), ["127.0.0.1:8001"], "published, but new: no traffic until it passes")
        XCTAssertTrue(balancer.awaitsFirstVerdicts, "its first round is under way")
        segment.slot(slot).write(PeerState(down: false))
        XCTAssertEqual(counts(balancer.picks(30, now: 1003)), ["127.0.0.1:8001": 10, "10.0.0.9:8080": 20], "weight=2 from the server line")
        XCTAssertEqual(balancer.peerCount, 2)
        // Its passive state is in the segment: another worker's balancer sees this one's connections.
        let other = UpstreamBalancer(upstream: upstream, segment: segment, checkedIndex: [:])
        let mine = try XCTUnwrap(balancer.primaries.first { $0.name == "10.0.0.9:8080" })
        balancer.connected(mine, delta: 3)
        XCTAssertEqual(other.primaries.first { $0.name == "10.0.0.9:8080" }?.connections, 3)
        balancer.connected(mine, delta: -3)

        segment.retireDynamicPeer(slot: slot, nowMs: 5)
        segment.publishMembership()
        XCTAssertEqual(Set(balancer.picks(4, now: 1004)), ["127.0.0.1:8001"], "gone from the list once retired")
        XCTAssertEqual(balancer.peerCount, 1)
    }
}

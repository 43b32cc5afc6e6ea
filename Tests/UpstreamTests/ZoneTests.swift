import Glibc
import XCTest
@testable import Config
import ShmTable
@testable import Upstream

/// `zone`: two balancers over one segment stand for two workers. What one counts (failures, connections) the
/// other balances by; without `zone` each keeps its own, as nginx's workers do.
final class ZoneTests: XCTestCase {
    let a = "127.0.0.1:8001", b = "127.0.0.1:8002", c = "127.0.0.1:8003"
    private var made = 0

    /// Two "workers'" balancers for the first upstream of `http`, over one fresh segment with its zone area.
    func workers(_ http: String) throws -> (UpstreamBalancer, UpstreamBalancer) {
        let conf = try Configuration.parse(text: "events {}\nhttp {\n\(http)\n}\n")
        let upstream = try XCTUnwrap(conf.http?.upstreams.first)
        made += 1
        let name = "/vigil-unit-zone-\(getpid())-\(made)"
        addTeardownBlock { shm_unlink(name) }
        let segment = try Segment.create(name: name, size: 1 << 16, generation: 1, masterPid: getpid(), checksum: 0, peers: [],
                                         zoneRecords: conf.zonedPeerCount)
        return (UpstreamBalancer(upstream: upstream, segment: segment, checkedIndex: [:]),
                UpstreamBalancer(upstream: upstream, segment: segment, checkedIndex: [:]))
    }

    func testAFailureCountsInEveryWorker() throws {
        let (w1, w2) = try workers("upstream u { zone u 64k; server \(a); server \(b); }")
        w1.finished(w1.peer(a), failed: true, now: 1000)
        XCTAssertEqual(Set(w2.picks(10, now: 1001)), [b], "a failed in the other worker: max_fails=1 reached")
        XCTAssertEqual(Set(w2.picks(10, now: 11_001)), [a, b], "fail_timeout over")
        // A success after the window moved on clears the failures for both.
        w2.finished(w2.peer(a), failed: false, now: 11_002)
        XCTAssertEqual(w1.peer(a).fails, 0)
    }

    func testAFailureWrittenAheadOfThisWorkersClockStillCounts() throws {
        // The other worker's loop read the clock later than this one's cached `now`.
        let (w1, w2) = try workers("upstream u { zone u 64k; server \(a); server \(b); }")
        w1.finished(w1.peer(a), failed: true, now: 5000)
        XCTAssertEqual(Set(w2.picks(10, now: 4990)), [b])
    }

    func testConnectionsCountInEveryWorker() throws {
        let (w1, w2) = try workers("upstream u { zone u 64k; least_conn; server \(a) max_conns=2; server \(b); }")
        w1.connected(w1.peer(a), delta: 2)
        XCTAssertEqual(w2.peer(a).connections, 2)
        XCTAssertEqual(Set(w2.picks(10, now: 1000)), [b], "a is at max_conns by the other worker's connections")
        w2.connected(w2.peer(b), delta: 3)
        XCTAssertEqual(w1.pick(now: 1000), b, "b's three against a's two, but a is full")
        w1.connected(w1.peer(a), delta: -2)
        XCTAssertEqual(w2.pick(now: 1000), a, "least_conn: a's none against b's three")
    }

    func testWithoutZoneEachWorkerCountsAlone() throws {
        let (w1, w2) = try workers("upstream u { server \(a) max_conns=1; server \(b); }")
        w1.finished(w1.peer(a), failed: true, now: 1000)
        w1.connected(w1.peer(a), delta: 1)
        XCTAssertEqual(w2.peer(a).connections, 0)
        XCTAssertEqual(Set(w2.picks(10, now: 1001)), [a, b])
    }

    func testRandomTwoSeesTheOtherWorkersConnections() throws {
        let (w1, w2) = try workers("upstream u { zone u 64k; random two least_conn; server \(a); server \(b); }")
        w1.connected(w1.peer(a), delta: 1)
        XCTAssertEqual(Set(w2.picks(50, now: 1000)), [b])
    }
}

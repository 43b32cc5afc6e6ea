import XCTest
@testable import Config
@testable import Upstream

/// least_conn: the peer with the fewest connections for its weight; ties go to weighted round robin.
final class LeastConnTests: XCTestCase {
    let a = "127.0.0.1:8001", b = "127.0.0.1:8002", c = "127.0.0.1:8003"

    func testFewestConnectionsWins() throws {
        let lc = try balancer("upstream u { least_conn; server \(a); server \(b); server \(c); }")
        XCTAssertEqual(lc.method, .leastConn)
        lc.connected(lc.peer(a), delta: 3)
        lc.connected(lc.peer(b), delta: 1)
        lc.connected(lc.peer(c), delta: 2)
        XCTAssertEqual(lc.picks(5, now: 1000), Array(repeating: b, count: 5), "selection alone does not count a connection")
        lc.connected(lc.peer(b), delta: 2)   // b: 3, c: 2
        XCTAssertEqual(lc.pick(now: 1000), c)
    }

    func testEachConnectionShiftsTheChoice() throws {
        // Every chosen peer gets its connection at once: the load stays level across the three.
        let lc = try balancer("upstream u { least_conn; server \(a); server \(b); server \(c); }")
        for _ in 0..<30 {
            let p = try XCTUnwrap(lc.select(clientAddress: { [] }, hashKey: nil, now: 1000, tried: []))
            lc.connected(p, delta: 1)
        }
        XCTAssertEqual([a, b, c].map { lc.peer($0).connections }, [10, 10, 10])
    }

    func testConnectionsAreWeighed() throws {
        let lc = try balancer("upstream u { least_conn; server \(a) weight=3; server \(b); }")
        lc.connected(lc.peer(a), delta: 2)
        lc.connected(lc.peer(b), delta: 1)
        XCTAssertEqual(lc.pick(now: 1000), a, "2 connections for weight 3 is less than 1 for weight 1")
        lc.connected(lc.peer(a), delta: 2)   // 4/3 > 1/1
        XCTAssertEqual(lc.pick(now: 1000), b)
        // Kept busy in step, a carries three times b's connections.
        let busy = try balancer("upstream u { least_conn; server \(a) weight=3; server \(b); }")
        for _ in 0..<40 { busy.connected(try XCTUnwrap(busy.select(clientAddress: { [] }, hashKey: nil, now: 1000, tried: [])), delta: 1) }
        XCTAssertEqual(busy.peer(a).connections, 30)
        XCTAssertEqual(busy.peer(b).connections, 10)
    }

    func testTiesGoRoundRobin() throws {
        let even = try balancer("upstream u { least_conn; server \(a); server \(b); server \(c); }")
        XCTAssertEqual(even.picks(6, now: 1000), [a, b, c, a, b, c])
        // A tie between two of three: only those two alternate.
        let two = try balancer("upstream u { least_conn; server \(a); server \(b); server \(c); }")
        two.connected(two.peer(b), delta: 1)
        XCTAssertEqual(two.picks(4, now: 1000), [a, c, a, c])
        // Weighted ties: nginx's smooth sequence.
        let weighted = try balancer("upstream u { least_conn; server \(a) weight=5; server \(b); server \(c); }")
        XCTAssertEqual(weighted.picks(7, now: 1000), [a, a, b, a, c, a, a])
    }

    func testUnusablePeersAndBackups() throws {
        let lc = try balancer("upstream u { least_conn; server \(a); server \(b) max_conns=1; server \(c) backup; }")
        lc.connected(lc.peer(a), delta: 5)
        XCTAssertEqual(lc.pick(now: 1000), b)
        lc.connected(lc.peer(b), delta: 1)
        XCTAssertEqual(lc.pick(now: 1000), a, "b is at max_conns: a, though busier")
        XCTAssertEqual(lc.pick(now: 1000, tried: [lc.peer(a)]), c, "no primary left: the backup")
        lc.finished(lc.peer(a), failed: true, now: 1000)
        XCTAssertEqual(lc.pick(now: 1001), c)
        XCTAssertEqual(lc.pick(now: 1001, tried: [lc.peer(c)]), "-")
    }

    /// As nginx's, least_conn moves the chosen peer's failure window on once fail_timeout has passed, whether
    /// it won outright or through the round robin among ties.
    func testSuccessesClearAnEarlierFailure() throws {
        let lc = try balancer("upstream u { least_conn; server \(a) max_fails=2; server \(b); }")
        lc.connected(lc.peer(b), delta: 1)   // a wins outright: no tie, no round robin
        XCTAssertTrue(survivesSparseFailures(lc, lc.peer(a)) { lc.select(clientAddress: { [] }, hashKey: nil, now: $0, tried: []) },
                      "two failures an hour apart, with successes between, should not reach max_fails=2")
    }
}

import XCTest
@testable import Config
@testable import Upstream

/// nginx's `random [two [least_conn]]`: weighted draws over the primaries, the usual exclusions (down,
/// max_fails, max_conns, peers already tried), `two` taking the less loaded of two different peers.
final class RandomTests: XCTestCase {
    let a = "127.0.0.1:8001", b = "127.0.0.1:8002", c = "127.0.0.1:8003"

    /// A random balancer with fixed draws, so a run is repeatable.
    func random(_ body: String, seed: UInt64 = 7) throws -> UpstreamBalancer {
        let r = try balancer("upstream u { \(body) }")
        r.draws = RandomDraws(seed: seed)
        return r
    }

    func testDrawsFollowTheWeights() throws {
        let r = try random("random; server \(a) weight=3; server \(b); server \(c) weight=6;")
        let n = counts(r.picks(10_000, now: 1000))
        // Expected 3000 / 1000 / 6000; a fair generator stays well within 5%.
        XCTAssertEqual(Double(n[a] ?? 0), 3000, accuracy: 150)
        XCTAssertEqual(Double(n[b] ?? 0), 1000, accuracy: 150)
        XCTAssertEqual(Double(n[c] ?? 0), 6000, accuracy: 150)
    }

    func testUnusablePeersAreNeverDrawn() throws {
        let r = try random("random; server \(a); server \(b) down; server \(c) max_conns=1;")
        r.connected(r.peer(c), delta: 1)
        XCTAssertEqual(Set(r.picks(200, now: 1000)), [a], "down and at max_conns: never chosen")
        XCTAssertEqual(r.pick(now: 1000, tried: [r.peer(a)]), "-", "nothing left once a was tried")
        r.connected(r.peer(c), delta: -1)
        r.finished(r.peer(a), failed: true, now: 1000)
        XCTAssertEqual(Set(r.picks(200, now: 1001)), [c], "a failed (max_fails=1) within fail_timeout")
        XCTAssertEqual(Set(r.picks(200, now: 1000 + 10_001)), [a, c], "fail_timeout over: a is drawn again")
    }

    func testSinglePeerGoesToRoundRobin() throws {
        let one = try random("random two; server \(a);")
        XCTAssertEqual(one.picks(3, now: 1000), [a, a, a])
        let down = try random("random; server \(a) down;")
        XCTAssertEqual(down.pick(now: 1000), "-")
    }

    func testTwoTakesTheLessLoaded() throws {
        let r = try random("random two least_conn; server \(a); server \(b);")
        r.connected(r.peer(a), delta: 1)
        // With two peers every choice compares both: the idle one wins every time.
        XCTAssertEqual(Set(r.picks(100, now: 1000)), [b])
        r.connected(r.peer(b), delta: 2)
        XCTAssertEqual(Set(r.picks(100, now: 1000)), [a])
        // Weighted: 2 connections for weight 3 are fewer than 1 for weight 1.
        let w = try random("random two; server \(a) weight=3; server \(b);")
        w.connected(w.peer(a), delta: 2)
        w.connected(w.peer(b), delta: 1)
        XCTAssertEqual(Set(w.picks(100, now: 1000)), [a])
    }

    func testTwoWithEqualLoadsTakesTheSecondDraw() throws {
        let r = try random("random two; server \(a) weight=3; server \(b);")
        let n = counts(r.picks(4000, now: 1000))
        // As nginx: a tie goes to the second of two different draws. The first is a with 3/4 (then the second is
        // b, chosen) and b with 1/4 (then a is chosen): a 1000, b 3000.
        XCTAssertEqual(Double(n[a] ?? 0), 1000, accuracy: 150)
        XCTAssertEqual(Double(n[b] ?? 0), 3000, accuracy: 150)
    }

    func testTwoSkipsUnusablePeers() throws {
        let r = try random("random two; server \(a); server \(b) max_conns=1; server \(c) down;")
        r.connected(r.peer(b), delta: 1)
        XCTAssertEqual(Set(r.picks(50, now: 1000)), [a], "no second usable peer: round robin after the draws")
    }
}

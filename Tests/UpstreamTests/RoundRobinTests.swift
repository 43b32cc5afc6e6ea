import XCTest
@testable import Config
@testable import Upstream

/// nginx's smooth weighted round robin and the peer state every balancer consults: `down`, `backup`, the
/// peers a request already tried, max_fails/fail_timeout and max_conns. Time is the `now` argument (ms).
final class RoundRobinTests: XCTestCase {
    let a = "127.0.0.1:8001", b = "127.0.0.1:8002", c = "127.0.0.1:8003", d = "127.0.0.1:8004"

    func testSmoothWeightedSequenceMatchesNginx() throws {
        let rr = try balancer("upstream u { server \(a) weight=5; server \(b); server \(c); }")
        XCTAssertEqual(rr.method, .roundRobin)
        // nginx's smooth round robin with weights 5, 1, 1: { a, a, b, a, c, a, a }, then again.
        let cycle = [a, a, b, a, c, a, a]
        XCTAssertEqual(rr.picks(21, now: 1000), cycle + cycle + cycle)
    }

    func testEqualWeightsAlternateAndWeightsSetTheShares() throws {
        let even = try balancer("upstream u { server \(a); server \(b); server \(c); }")
        XCTAssertEqual(even.picks(6, now: 1000), [a, b, c, a, b, c])
        let weighted = try balancer("upstream u { server \(a) weight=3; server \(b) weight=2; }")
        let n = counts(weighted.picks(500, now: 1000))
        XCTAssertEqual(n[a], 300)
        XCTAssertEqual(n[b], 200)
    }

    func testDownPeerIsNeverChosen() throws {
        let rr = try balancer("upstream u { server \(a) weight=5; server \(b) down; server \(c); }")
        let n = counts(rr.picks(60, now: 1000))
        XCTAssertNil(n[b], "a peer marked down is never chosen")
        XCTAssertEqual(n[a], 50)
        XCTAssertEqual(n[c], 10)
    }

    func testBackupOnlyWhenEveryPrimaryIsUnusable() throws {
        let rr = try balancer("upstream u { server \(a); server \(b); server \(c) backup; server \(d) backup weight=2; }")
        XCTAssertFalse(rr.picks(20, now: 1000).contains { $0 == c || $0 == d }, "backups idle while a primary is usable")

        // One primary out (failed once, max_fails=1): the other primary, still no backup.
        rr.finished(rr.peer(a), failed: true, now: 2000)
        XCTAssertEqual(Set(rr.picks(10, now: 2001)), [b])
        // Both primaries out: the backups, in their own weighted round robin.
        rr.finished(rr.peer(b), failed: true, now: 2000)
        XCTAssertEqual(counts(rr.picks(30, now: 2002)), [c: 10, d: 20])
        XCTAssertEqual(rr.pick(now: 2003, tried: [rr.peer(c)]), d, "a retry goes to the other backup")
        // The primaries' fail_timeout (10 s by default) over: each gets one request to prove itself (nginx's
        // `checked`), the backups the rest until those report back.
        XCTAssertEqual(rr.picks(2, now: 12_001).sorted(), [a, b])
        XCTAssertEqual(Set(rr.picks(6, now: 12_002)), [c, d])
        rr.finished(rr.peer(a), failed: false, now: 12_003)
        rr.finished(rr.peer(b), failed: false, now: 12_003)
        XCTAssertEqual(Set(rr.picks(10, now: 12_004)), [a, b], "both succeeded: back to the primaries")
    }

    func testTriedPeersAreSkipped() throws {
        let rr = try balancer("upstream u { server \(a) weight=5; server \(b); server \(c); }")
        let pa = rr.peer(a), pb = rr.peer(b), pc = rr.peer(c)
        XCTAssertFalse(rr.picks(20, now: 1000, tried: [pa]).contains(a))
        XCTAssertEqual(Set(rr.picks(20, now: 1000, tried: [pa])), [b, c])
        XCTAssertEqual(Set(rr.picks(5, now: 1000, tried: [pa, pc])), [b])
        XCTAssertEqual(rr.pick(now: 1000, tried: [pa, pb, pc]), "-", "all tried: no live upstream")
    }

    func testMaxFailsTakesPeerOutForFailTimeout() throws {
        let rr = try balancer("upstream u { server \(a) max_fails=2 fail_timeout=5s; server \(b); }")
        let pa = rr.peer(a)
        XCTAssertEqual(Set(rr.picks(4, now: 1000)), [a, b])

        rr.finished(pa, failed: true, now: 1000)
        XCTAssertTrue(rr.picks(6, now: 1001).contains(a), "one failure of max_fails=2: still in")
        rr.finished(pa, failed: true, now: 1002)
        XCTAssertEqual(Set(rr.picks(10, now: 1003)), [b], "max_fails reached: out")
        XCTAssertEqual(Set(rr.picks(10, now: 1002 + 5000)), [b], "still out at exactly fail_timeout (nginx: <=)")
        XCTAssertEqual(rr.picks(2, now: 1002 + 5001), [a, b], "back once fail_timeout has passed, for one request")
        XCTAssertEqual(Set(rr.picks(6, now: 1002 + 5002)), [b], "out again until that request reports back")

        // A success after its return clears the failures: two more failures are needed to take it out again.
        rr.finished(pa, failed: false, now: 7000)
        rr.finished(pa, failed: true, now: 7001)
        XCTAssertTrue(rr.picks(6, now: 7002).contains(a), "the count started again from zero")
    }

    func testALonePeerIsNeverTakenOutByFailures() throws {
        // nginx's peers->single: with nothing else to try, failures leave the one peer usable (a 502 per
        // failed request, never "no live upstreams" for fail_timeout); `down` and max_conns still count.
        let rr = try balancer("upstream u { server \(a) max_fails=1 fail_timeout=10s; }")
        rr.finished(rr.peer(a), failed: true, now: 1000)
        XCTAssertEqual(rr.pick(now: 1001), a)
        let withBackup = try balancer("upstream u { server \(a) max_fails=1 fail_timeout=10s; server \(b) backup; }")
        withBackup.finished(withBackup.peer(a), failed: true, now: 1000)
        XCTAssertEqual(withBackup.pick(now: 1001), b)
    }

    func testMaxFailsZeroNeverTakesPeerOut() throws {
        let rr = try balancer("upstream u { server \(a) max_fails=0; server \(b); }")
        for t in 0..<10 { rr.finished(rr.peer(a), failed: true, now: 1000 + UInt64(t)) }
        XCTAssertTrue(rr.picks(4, now: 1100).contains(a), "max_fails=0 disables the accounting")
    }

    func testFailedPeerWeightRecoversGradually() throws {
        // nginx lowers a failed peer's effective weight by weight/max_fails and adds 1 back per selection round.
        let rr = try balancer("upstream u { server \(a) weight=10 max_fails=10; server \(b) weight=10; }")
        XCTAssertEqual(counts(rr.picks(20, now: 1000)), [a: 10, b: 10])
        for t in 0..<9 { rr.finished(rr.peer(a), failed: true, now: 2000 + UInt64(t)) }   // effective weight 10 → 1
        let after = rr.picks(20, now: 2010)
        XCTAssertEqual(Array(after.prefix(3)), [b, b, b], "a peer that just failed gets less than its share")
        XCTAssertEqual(counts(after), [a: 8, b: 12])
        XCTAssertEqual(counts(rr.picks(200, now: 2020)), [a: 100, b: 100], "and its full share once recovered")
    }

    func testMaxConnsFollowsConnectedCount() throws {
        let rr = try balancer("upstream u { server \(a) max_conns=2; server \(b); }")
        let pa = rr.peer(a)
        rr.connected(pa, delta: 1)
        XCTAssertTrue(rr.picks(4, now: 1000).contains(a), "one connection of max_conns=2")
        rr.connected(pa, delta: 1)
        XCTAssertEqual(pa.connections, 2)
        XCTAssertEqual(Set(rr.picks(10, now: 1000)), [b], "at max_conns: skipped")
        rr.connected(pa, delta: -1)
        XCTAssertTrue(rr.picks(4, now: 1000).contains(a), "below max_conns again")
    }

    func testMaxConnsOnEveryPeerLeavesNoneAndBackupTakesOver() throws {
        let rr = try balancer("upstream u { server \(a) max_conns=1; server \(b) backup; }")
        rr.connected(rr.peer(a), delta: 1)
        XCTAssertEqual(rr.pick(now: 1000), b)
        let single = try balancer("upstream u { server \(a) max_conns=1; }")
        single.connected(single.peer(a), delta: 1)
        XCTAssertEqual(single.pick(now: 1000), "-")
    }

    func testServerWithSeveralAddressesGivesAPeerPerAddress() throws {
        // `proxy_pass http://127.0.0.1:9` without an upstream block: the literal balancer, plain round robin.
        let literal = UpstreamBalancer(literal: "x", addresses: [PeerAddress(host: "127.0.0.1", port: 9, isIPv6: false),
                                                                 PeerAddress(host: "::1", port: 9, isIPv6: true)])
        XCTAssertEqual(literal.peerCount, 2)
        XCTAssertEqual(literal.picks(4, now: 1), ["127.0.0.1:9", "[::1]:9", "127.0.0.1:9", "[::1]:9"])
    }

    /// Round robin forgets a failure once a request
    /// after fail_timeout succeeds, as nginx does.
    func testSuccessesClearAnEarlierFailure() throws {
        let rr = try balancer("upstream u { server \(a) max_fails=2; server \(b) backup; }")
        XCTAssertTrue(survivesSparseFailures(rr, rr.peer(a)) { rr.select(clientAddress: { [] }, hashKey: nil, now: $0, tried: []) },
                      "two failures an hour apart, with successes between, do not reach max_fails=2")
    }

    /// nginx: when no peer is left, every peer's `fails` is
    /// reset ("mark them as live for quick recovery"), so the request after a "no live upstreams" tries them
    /// again instead of failing for the whole fail_timeout.
    func testNoLivePeerMarksThemLiveForQuickRecovery() throws {
        let rr = try balancer("upstream u { server \(a); server \(b); }")
        rr.finished(rr.peer(a), failed: true, now: 1000)
        rr.finished(rr.peer(b), failed: true, now: 1000)
        XCTAssertEqual(rr.pick(now: 1001), "-", "both failed: no live upstreams")
        XCTAssertNotEqual(rr.pick(now: 1002), "-", "nginx: the next request tries the peers again")
    }
}

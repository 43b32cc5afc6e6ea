import XCTest
@testable import Config
@testable import Upstream

/// `hash key` and `hash key consistent`: the key is a template in the configuration; select() gets it rendered.
/// A key always lands on the same peer; the ketama ring moves only the keys of a removed server.
final class HashTests: XCTestCase {
    let servers = (1...4).map { "127.0.0.1:800\($0)" }
    let keys = (0..<1000).map { "/item/\($0)" }

    func block(_ servers: [String], consistent: Bool) -> String {
        "upstream u { hash $request_uri\(consistent ? " consistent" : ""); " + servers.map { "server \($0);" }.joined(separator: " ") + " }"
    }

    func assignments(_ b: UpstreamBalancer, now: UInt64 = 1000) -> [String] {
        keys.map { b.pick(now: now, key: $0) }
    }

    func testKeyIsTheConfiguredTemplate() throws {
        let h = try balancer(block(servers, consistent: false))
        guard case .hash(let key, let consistent) = h.method else { return XCTFail("method \(h.method)") }
        XCTAssertEqual(key.text, "$request_uri")
        XCTAssertFalse(consistent)
        let c = try balancer(block(servers, consistent: true))
        guard case .hash(_, true) = c.method else { return XCTFail("method \(c.method)") }
    }

    func testPlainHashIsStablePerKeyAndSpreads() throws {
        let h = try balancer(block(servers, consistent: false))
        let first = assignments(h)
        XCTAssertFalse(first.contains("-"))
        XCTAssertEqual(assignments(h, now: 5000), first, "the same key, the same peer, call after call")
        XCTAssertEqual(assignments(try balancer(block(servers, consistent: false))), first, "and in another worker")
        let n = counts(first)
        XCTAssertEqual(Set(n.keys), Set(servers))
        for (peer, count) in n { XCTAssertGreaterThan(count, 150, "\(peer): \(count) of 1000 keys") }
    }

    func testPlainHashSkipsAnUnusablePeerOnlyForItsKeys() throws {
        let h = try balancer(block(servers, consistent: false))
        let before = assignments(h)
        h.finished(h.peer(servers[1]), failed: true, now: 2000)
        let during = assignments(h, now: 2001)
        XCTAssertFalse(during.contains(servers[1]))
        XCTAssertFalse(during.contains("-"))
        for i in keys.indices where before[i] != servers[1] { XCTAssertEqual(during[i], before[i], keys[i]) }
        // fail_timeout over: one of its keys tries it again; once that succeeds, all its keys come back.
        let first = try XCTUnwrap(keys.indices.first { before[$0] == servers[1] })
        XCTAssertEqual(h.pick(now: 12_001, key: keys[first]), servers[1])
        h.finished(h.peer(servers[1]), failed: false, now: 12_002)
        XCTAssertEqual(assignments(h, now: 12_003), before)
    }

    func testNoKeyFallsBackToRoundRobin() throws {
        let h = try balancer(block(Array(servers.prefix(2)), consistent: false))
        XCTAssertEqual(h.picks(4, now: 1000), [servers[0], servers[1], servers[0], servers[1]])
    }

    func testConsistentHashIsStableAndSpreads() throws {
        let c = try balancer(block(servers, consistent: true))
        let first = assignments(c)
        XCTAssertFalse(first.contains("-"))
        XCTAssertEqual(assignments(c, now: 9000), first)
        XCTAssertEqual(assignments(try balancer(block(servers, consistent: true))), first)
        let n = counts(first)
        XCTAssertEqual(Set(n.keys), Set(servers))
        for (peer, count) in n { XCTAssertGreaterThan(count, 120, "\(peer): \(count) of 1000 keys") }
    }

    func testConsistentHashMovesOnlyTheKeysOfARemovedServer() throws {
        let removed = servers[2]
        let four = assignments(try balancer(block(servers, consistent: true)))
        let three = assignments(try balancer(block(servers.filter { $0 != removed }, consistent: true)))
        let moved = keys.indices.filter { four[$0] != three[$0] }
        XCTAssertLessThan(moved.count, 400, "a minority moves")
        XCTAssertGreaterThan(moved.count, 100, "the removed server had its quarter or so")
        for i in moved { XCTAssertEqual(four[i], removed, "\(keys[i]) moved from \(four[i]), a server still there") }

        // Plain hash, by contrast, re-deals most keys when the number of peers changes.
        let plainFour = assignments(try balancer(block(servers, consistent: false)))
        let plainThree = assignments(try balancer(block(servers.filter { $0 != removed }, consistent: false)))
        XCTAssertGreaterThan(keys.indices.filter { plainFour[$0] != plainThree[$0] }.count, 500)
    }

    func testConsistentHashWalksPastAFailedServerAndComesBack() throws {
        let c = try balancer(block(servers, consistent: true))
        let before = assignments(c)
        c.finished(c.peer(servers[0]), failed: true, now: 2000)
        let during = assignments(c, now: 2001)
        XCTAssertFalse(during.contains(servers[0]))
        XCTAssertFalse(during.contains("-"))
        for i in keys.indices where before[i] != servers[0] { XCTAssertEqual(during[i], before[i], keys[i]) }
        // fail_timeout over: its first key tries it again (nginx's one probe), and once that succeeds every
        // key it had comes back.
        let first = try XCTUnwrap(keys.indices.first { before[$0] == servers[0] })
        XCTAssertEqual(c.pick(now: 12_001, key: keys[first]), servers[0])
        c.finished(c.peer(servers[0]), failed: false, now: 12_002)
        XCTAssertEqual(assignments(c, now: 12_003), before)
    }

    func testConsistentHashSkipsTriedPeer() throws {
        let c = try balancer(block(servers, consistent: true))
        for key in keys.prefix(50) {
            let first = try XCTUnwrap(c.select(clientAddress: { [] }, hashKey: key, now: 1000, tried: []))
            let retry = try XCTUnwrap(c.select(clientAddress: { [] }, hashKey: key, now: 1000, tried: [first]))
            XCTAssertFalse(first === retry, key)
        }
    }

    func testWeightWidensTheShareOnTheRing() throws {
        let c = try balancer("upstream u { hash $request_uri consistent; server \(servers[0]) weight=3; server \(servers[1]); }")
        let n = counts(assignments(c))
        XCTAssertGreaterThan(n[servers[0]] ?? 0, 600, "\(n)")
    }

    /// As nginx's, hash moves the chosen peer's failure window on once fail_timeout has passed, so a later
    /// success clears its failures.
    func testPlainHashSuccessesClearAnEarlierFailure() throws {
        let h = try balancer("upstream u { hash $request_uri; server \(servers[0]) max_fails=2; server \(servers[1]); server \(servers[2]); }")
        let key = try XCTUnwrap(keys.first { h.pick(now: 1, key: $0) == servers[0] })
        XCTAssertTrue(survivesSparseFailures(h, h.peer(servers[0])) { h.select(clientAddress: { [] }, hashKey: key, now: $0, tried: []) },
                      "two failures an hour apart, with successes between, should not reach max_fails=2")
    }

    /// A key goes where nginx puts it: ((crc32(key) >> 16) & 0x7fff) % total_weight, Cache::Memcached's
    /// formula. Expected peers computed with that formula (Python's zlib.crc32).
    func testPlainHashPlacesKeysWhereNginxDoes() throws {
        let h = try balancer(block(Array(servers.prefix(3)), consistent: false))
        let nginx = [1, 2, 3, 3, 1, 3, 3, 2, 1, 1, 2, 1].map { servers[$0 - 1] }
        XCTAssertEqual((0..<12).map { h.pick(now: 1000, key: "/item/\($0)") }, nginx)
    }
}

import Glibc
import XCTest
@testable import ShmTable

final class LimitZoneTests: XCTestCase {
    func zone(_ kind: LimitZone.Kind, size: Int = 32 * 1024) -> LimitZone {
        LimitZone(name: "z", size: size, kind: kind, key: "$binary_remote_addr")!
    }

    func key(_ s: String) -> [UInt8] { Array(s.utf8) }

    // MARK: the bucket

    func testExcessFollowsNginxArithmetic() {
        // 2r/s = 2000 milli-requests a second: 250 ms drain 500; each request adds 1000.
        XCTAssertEqual(LeakyBucket.excess(0, rate: 2000, elapsedMs: 0), 1000)
        XCTAssertEqual(LeakyBucket.excess(1000, rate: 2000, elapsedMs: 250), 1500)
        XCTAssertEqual(LeakyBucket.excess(1000, rate: 2000, elapsedMs: 1000), 0)
        // 30r/m = 500: never below zero however long the key was idle, nor overflowing.
        XCTAssertEqual(LeakyBucket.excess(3000, rate: 500, elapsedMs: 60_000), 0)
        XCTAssertEqual(LeakyBucket.excess(3000, rate: 1_000_000, elapsedMs: .max / 2), 0)
    }

    func testElapsedGuardsAClockGoingBack() {
        XCTAssertEqual(LeakyBucket.elapsed(now: 10_500, since: 10_000), 500)
        XCTAssertEqual(LeakyBucket.elapsed(now: 10_000, since: 10_500), 0)
        XCTAssertEqual(LeakyBucket.elapsed(now: 10_000, since: 100_000), 1)
    }

    func testDelayIsTheDrainBackToTheAllowance() {
        // 30r/m with delay=1: an excess of 2000 waits for 1000 to drain at 500 a second.
        XCTAssertEqual(LeakyBucket.delay(excess: 2000, allowed: 1000, rate: 500), 2000)
        XCTAssertEqual(LeakyBucket.delay(excess: 1000, allowed: 1000, rate: 500), 0)
        XCTAssertEqual(LeakyBucket.delay(excess: 1500, allowed: 0, rate: 2000), 750)
    }

    // MARK: limit_req lookups

    func testFirstRequestIsFreeThenTheBurstHolds() {
        let z = zone(.requests)
        let k = key("10.0.0.1")
        let look = { (now: UInt64) in k.withUnsafeBytes { z.lookup($0, rate: 2000, burst: 1000, account: true, now: now) } }
        XCTAssertEqual(look(1000), .passed(excess: 0))
        XCTAssertEqual(look(1000), .passed(excess: 1000))
        XCTAssertEqual(look(1000), .busy(excess: 2000))
        // A refused request is not counted: half a second later the bucket drained to 0, and one more fits.
        XCTAssertEqual(look(1500), .passed(excess: 1000))
        XCTAssertEqual(z.liveNodes, 1)
    }

    func testHeldNodeIsAccountedOrReleased() {
        let z = zone(.requests)
        let k = key("a")
        let held = k.withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: false, now: 5000) }
        guard case .held(let node, 0) = held else { return XCTFail("\(held)") }
        XCTAssertEqual(k.withUnsafeBytes { z.state(of: $0)?.count }, 1)
        XCTAssertEqual(z.account(node, rate: 1000, now: 5000), 0)
        XCTAssertEqual(k.withUnsafeBytes { z.state(of: $0)?.count }, 0)
        guard case .held(let again, let excess) = k.withUnsafeBytes({ z.lookup($0, rate: 1000, burst: 5000, account: false, now: 5000) }) else {
            return XCTFail()
        }
        XCTAssertEqual(excess, 1000)
        z.release(again)
        // Released, not accounted: the excess stays where the first request left it.
        XCTAssertEqual(k.withUnsafeBytes { z.state(of: $0)?.excess }, 0)
    }

    func testLongKeysMatchByHashLengthAndPrefix() {
        let z = zone(.requests)
        let long1 = key(String(repeating: "x", count: 200) + "1")
        let long2 = key(String(repeating: "x", count: 200) + "2")
        _ = long1.withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: true, now: 1) }
        _ = long2.withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: true, now: 1) }
        XCTAssertEqual(z.liveNodes, 2)
        XCTAssertEqual(long1.withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: true, now: 1) }, .busy(excess: 1000))
    }

    // MARK: eviction and a full zone

    func testFullZoneEvictsIdleKeysAsNginx() {
        let z = zone(.requests)
        let cap = z.capacity
        XCTAssertGreaterThan(cap, 200)
        for i in 0..<cap {
            XCTAssertEqual(key("k\(i)").withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: true, now: 1000) }, .passed(excess: 0))
        }
        XCTAssertEqual(z.liveNodes, cap)
        // Still within a minute of their last request: nothing expires by age, so the oldest goes by force.
        XCTAssertEqual(key("new").withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: true, now: 2000) }, .passed(excess: 0))
        XCTAssertEqual(z.liveNodes, cap)
        XCTAssertNil(key("k0").withUnsafeBytes { z.state(of: $0) })
        XCTAssertNotNil(key("k1").withUnsafeBytes { z.state(of: $0) })
        // A minute later, each new key's lookup drops up to two drained ones from the old end.
        for i in 0..<3 { _ = key("later\(i)").withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: true, now: 70_000) } }
        XCTAssertEqual(z.liveNodes, cap - 3)
    }

    func testZoneHeldByRequestsInFlightIsFull() {
        let z = zone(.requests)
        for i in 0..<z.capacity {
            guard case .held = key("k\(i)").withUnsafeBytes({ z.lookup($0, rate: 1000, burst: 0, account: false, now: 1000) }) else {
                return XCTFail()
            }
        }
        // The oldest node is in the middle of a request's accounting: nothing can go.
        XCTAssertEqual(key("new").withUnsafeBytes { z.lookup($0, rate: 1000, burst: 0, account: true, now: 100_000) }, .full)
    }

    // MARK: limit_conn

    func testConnectionsCountUpToTheLimitAndTheKeyGoesWithTheLast() {
        let z = zone(.connections)
        let k = key("\u{7f}\0\0\u{1}")
        let count = { k.withUnsafeBytes { z.countConnection($0, limit: 2) } }
        guard case .counted(let a) = count(), case .counted(let b) = count() else { return XCTFail() }
        XCTAssertEqual(a, b)
        XCTAssertEqual(count(), .limited)
        z.releaseConnection(a)
        guard case .counted = count() else { return XCTFail() }
        z.releaseConnection(a)
        z.releaseConnection(a)
        XCTAssertEqual(z.liveNodes, 0)
        XCTAssertNil(k.withUnsafeBytes { z.state(of: $0) })
    }

    func testFullConnectionZoneRefusesANewKeyAndReusesFreedNodes() {
        let z = zone(.connections)
        var nodes: [UInt32] = []
        for i in 0..<z.capacity {
            guard case .counted(let n) = key("c\(i)").withUnsafeBytes({ z.countConnection($0, limit: 1) }) else { return XCTFail() }
            nodes.append(n)
        }
        XCTAssertEqual(key("one more").withUnsafeBytes { z.countConnection($0, limit: 1) }, .full)
        z.releaseConnection(nodes[7])
        guard case .counted(let n) = key("one more").withUnsafeBytes({ z.countConnection($0, limit: 1) }) else { return XCTFail() }
        XCTAssertEqual(n, nodes[7])
    }

    func testSizesHoldAboutAsManyKeysAsNginx() {
        XCTAssertEqual(zone(.requests, size: 1 << 20).capacity, 7942)
        XCTAssertEqual(zone(.connections, size: 1 << 20).capacity, 15_417)
    }

    // MARK: across processes and reloads

    func testCountsAreSharedWithAForkedProcess() {
        let z = zone(.connections)
        let k = key("shared")
        let pid = fork()
        if pid == 0 {
            let r = k.withUnsafeBytes { z.countConnection($0, limit: 5) }
            _exit(r == .counted(node: 1) ? 0 : 1)
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        XCTAssertEqual(status, 0)
        XCTAssertEqual(k.withUnsafeBytes { z.state(of: $0)?.count }, 1)
    }

    func testReloadKeepsAZoneOfTheSameNameKindAndSize() throws {
        let first = try LimitZone.mapping([("one", 32768, .requests, "$binary_remote_addr"), ("c", 32768, .connections, "$uri")])
        let second = try LimitZone.mapping([("one", 32768, .requests, "$binary_remote_addr"), ("c", 65536, .connections, "$uri")], previous: first)
        XCTAssertTrue(second[0] === first[0])
        XCTAssertFalse(second[1] === first[1])
        XCTAssertThrowsError(try LimitZone.mapping([("one", 32768, .requests, "$uri")], previous: first)) { e in
            XCTAssertEqual("\(e)", "limit_req \"one\" uses the \"$uri\" key while previously it used the \"$binary_remote_addr\" key")
        }
    }
}

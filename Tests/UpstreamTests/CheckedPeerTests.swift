import Glibc
import XCTest
@testable import Config
import CShim
import ShmTable
@testable import Upstream

/// Balancing over checked peers: the checker's verdict lives in a shared segment (one slot per checked peer,
/// numbered as `Configuration.checkedPeers`), and the balancer reads its down bit and admin state on every
/// selection. Segments are real POSIX shm objects, made the way the master makes them.
final class CheckedPeerTests: XCTestCase {
    let a = "127.0.0.1:8001", b = "127.0.0.1:8002", c = "127.0.0.1:8003"
    private var made = 0

    /// A balancer for `block` over a fresh segment holding every checked peer up; the segment is unlinked
    /// when the test ends.
    func checked(_ block: String) throws -> (UpstreamBalancer, Segment, (String) -> PeerSlot) {
        let (conf, upstream) = try parseUpstream(block)
        made += 1
        let name = "/vigil-unit-upstream-\(getpid())-\(made)"
        addTeardownBlock { shm_unlink(name) }
        let segment = try Segment.create(name: name, size: 1 << 16, generation: 1, masterPid: getpid(), checksum: 0,
                                         peers: conf.checkedPeers.map { PeerEntry(upstream: $0.upstream, server: $0.address.description,
                                                                                  type: 1, port: 0, state: PeerState(down: false)) })
        var index: [String: Int] = [:]
        for (i, p) in conf.checkedPeers.enumerated() { index[UpstreamBalancer.slotKey(upstream: p.upstream, address: p.address)] = i }
        let balancer = UpstreamBalancer(upstream: upstream, segment: segment, checkedIndex: index)
        let slotOf: (String) -> PeerSlot = { name in
            let i = conf.checkedPeers.firstIndex { $0.address.description == name }
            precondition(i != nil, "\(name) is not checked")
            return segment.slot(i!)
        }
        return (balancer, segment, slotOf)
    }

    func setDown(_ slot: PeerSlot, _ down: Bool, changedAt: UInt64 = 0) {
        var s = slot.read()
        s.down = down
        s.lastChangeMs = changedAt
        slot.write(s)
    }

    func testDownBitTakesCheckedPeerOut() throws {
        let (rr, _, slot) = try checked("upstream u { server \(a); server \(b); server \(c); check interval=1000; }")
        XCTAssertNotNil(rr.peer(b).slot, "a checked peer has a slot")
        XCTAssertEqual(Set(rr.picks(6, now: 1000)), [a, b, c])
        setDown(slot(b), true)
        XCTAssertEqual(counts(rr.picks(30, now: 1001)), [a: 15, c: 15], "the checker's down verdict is obeyed")
        setDown(slot(a), true)
        XCTAssertEqual(Set(rr.picks(5, now: 1002)), [c])
        setDown(slot(c), true)
        XCTAssertEqual(rr.pick(now: 1003), "-", "all checked peers down: no live upstream (no check_fail_open)")
        setDown(slot(b), false)
        XCTAssertEqual(Set(rr.picks(5, now: 1004)), [b], "up again: chosen again")
    }

    /// A request that finds no live peer waits only while some checked peer is new and undecided (the bit the
    /// master sets for peers it has no state for, which the checker clears when their first round decides), for
    /// at most the check's timeout.
    func testFirstVerdictsAreAwaitedWhileANewPeerIsUndecided() throws {
        let (rr, _, slot) = try checked("upstream u { server \(a); server \(b); check interval=30000 timeout=700; }")
        XCTAssertEqual(rr.firstVerdictWaitMs, 700)
        XCTAssertFalse(rr.awaitsFirstVerdicts, "peers with a state are not waited for")
        slot(a).write(PeerState.unseen(down: true))
        slot(b).write(PeerState.unseen(down: true))
        XCTAssertEqual(rr.pick(now: 1000), "-")
        XCTAssertTrue(rr.awaitsFirstVerdicts)
        var failed = slot(a).read()
        failed.firstRound = false
        slot(a).write(failed)
        XCTAssertTrue(rr.awaitsFirstVerdicts, "b is still undecided")
        slot(b).write(failed)
        XCTAssertFalse(rr.awaitsFirstVerdicts, "every first round has decided: no live upstream")
        let (_, plain) = try parseUpstream("upstream p { server \(a); }")
        XCTAssertEqual(UpstreamBalancer(upstream: plain, segment: nil, checkedIndex: [:]).firstVerdictWaitMs, 0, "unchecked: never waits")
    }

    func testConfiguredDownServerHasNoSlot() throws {
        let (rr, segment, _) = try checked("upstream u { server \(a); server \(b) down; check interval=1000; }")
        XCTAssertEqual(segment.peerCount, 1)
        XCTAssertNil(rr.peer(b).slot)
        XCTAssertEqual(Set(rr.picks(4, now: 1000)), [a])
    }

    func testDownBitAppliesToEveryMethod() throws {
        for method in ["ip_hash;", "hash $request_uri;", "hash $request_uri consistent;", "least_conn;"] {
            let (bal, _, slot) = try checked("upstream u { \(method) server \(a); server \(b); check interval=1000; }")
            setDown(slot(a), true)
            for i in 0..<50 {
                XCTAssertEqual(bal.pick(now: 1000, key: "/k/\(i)", client: [10, 0, UInt8(i), 1]), b, method)
            }
        }
    }

    func testCheckFailOpenBalancesOverAllPastTheThreshold() throws {
        let (rr, _, slot) = try checked("upstream u { server \(a); server \(b); server \(c); check interval=1000; check_fail_open 50%; }")
        setDown(slot(a), true)   // 1 of 3: 33%, not more than 50%
        XCTAssertEqual(Set(rr.picks(12, now: 2000)), [b, c])
        setDown(slot(b), true)   // 2 of 3: 67%: fail open
        XCTAssertEqual(counts(rr.picks(12, now: 2001)), [a: 4, b: 4, c: 4], "past check_fail_open every checked peer takes traffic")
        setDown(slot(c), true)   // all down: still open
        XCTAssertEqual(Set(rr.picks(12, now: 2002)), [a, b, c])
        setDown(slot(b), false)
        setDown(slot(c), false)  // 1 of 3 again: closed
        XCTAssertEqual(Set(rr.picks(12, now: 2003)), [b, c])

        // Passive failures still count while failing open: a down peer that also failed is skipped.
        let (open, _, slot2) = try checked("upstream u { server \(a); server \(b); check interval=1000; check_fail_open 0%; }")
        setDown(slot2(a), true)
        XCTAssertEqual(Set(open.picks(6, now: 3000)), [a, b], "0%: any down peer opens")
        open.finished(open.peer(a), failed: true, now: 3001)
        XCTAssertEqual(Set(open.picks(6, now: 3002)), [b])
    }

    func testAdminMaintenanceAndDrain() throws {
        let (rr, _, slot) = try checked("upstream u { server \(a); server \(b); check interval=1000; }")
        slot(a).setAdmin(.maint)
        XCTAssertEqual(Set(rr.picks(6, now: 1000)), [b])
        slot(a).setAdmin(.drain)
        XCTAssertEqual(Set(rr.picks(6, now: 1001)), [b], "round robin sends a draining peer nothing new")
        slot(a).setAdmin(.ready)
        XCTAssertEqual(Set(rr.picks(6, now: 1002)), [a, b])

        // ip_hash keeps sending a draining peer the clients that hash to it (sessions stay put); maint moves them.
        let (ih, _, islot) = try checked("upstream u { ip_hash; server \(a); server \(b); check interval=1000; }")
        let before = (0..<100).map { ih.pick(now: 1000, client: [10, 1, UInt8($0), 1]) }
        XCTAssertTrue(before.contains(a))
        islot(a).setAdmin(.drain)
        XCTAssertEqual((0..<100).map { ih.pick(now: 1001, client: [10, 1, UInt8($0), 1]) }, before)
        islot(a).setAdmin(.maint)
        XCTAssertFalse((0..<100).map { ih.pick(now: 1002, client: [10, 1, UInt8($0), 1]) }.contains(a))
    }

    func testFailedRequestAsksTheCheckerForARecheck() throws {
        let (rr, segment, slot) = try checked("upstream u { server \(a); server \(b); check interval=1000; }")
        XCTAssertFalse(slot(a).takeRecheck())
        rr.finished(rr.peer(a), failed: true, now: 1000)
        var pfd = pollfd(fd: segment.doorbell, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&pfd, 1, 0), 1, "the doorbell rang")
        XCTAssertTrue(slot(a).takeRecheck(), "a re-check of a is pending")
        XCTAssertFalse(slot(b).takeRecheck())
        rr.finished(rr.peer(b), failed: false, now: 1000)
        XCTAssertFalse(slot(b).takeRecheck(), "a success asks nothing")
    }

    func testSlowStartRampsWeightAfterThePeerComesUp() throws {
        let (rr, _, slot) = try checked("upstream u { server \(a) slow_start=10s; server \(b); check interval=1000; }")
        let upAt: UInt64 = 50_000
        setDown(slot(a), false, changedAt: upAt)
        // 10% into the window: weight 1/16 of b's (weights are scaled by 16 under slow_start).
        XCTAssertEqual(counts(rr.picks(170, now: upAt + 1000)), [a: 10, b: 160])
        // Half way: half of b's.
        let half = counts(rr.picks(240, now: upAt + 5000))
        XCTAssertEqual(half[a], 80)
        // Window over: equal shares.
        XCTAssertEqual(counts(rr.picks(320, now: upAt + 10_000)), [a: 160, b: 160])
        // A peer that never flipped (lastChange 0) has its full weight from the start.
        let (fresh, _, _) = try checked("upstream u { server \(a) slow_start=10s; server \(b); check interval=1000; }")
        XCTAssertEqual(counts(fresh.picks(64, now: 1000)), [a: 32, b: 32])
    }
}

import Foundation
import Glibc
import XCTest
@testable import Config
import Core
import CShim
import Event
@testable import Upstream

/// `keepalive N` with real connected sockets on an event loop: parking and taking by address, the 1 s grace
/// for connections above N, connections the upstream closes while parked, and keepalive_requests /
/// keepalive_time / keepalive_timeout.
final class KeepalivePoolTests: XCTestCase {
    var loop: EventLoop!
    var owned: [Int32] = []
    var connections: [UpstreamConnection] = []
    var pool: KeepalivePool!
    var spare: Pool<UpstreamConnection>!

    override func setUpWithError() throws {
        loop = try EventLoop()
        spare = Pool(keep: 16)
    }

    override func tearDown() {
        connections.forEach { $0.close() }
        connections = []
        owned.forEach { close($0) }
        owned = []
        pool = nil
        spare = nil
        loop = nil
    }

    func makePool(capacity: Int, timeoutMs: Int = 60_000, maxRequests: Int = 1000, maxAgeMs: Int = 3_600_000) -> KeepalivePool {
        pool = KeepalivePool(capacity: capacity, timeoutMs: timeoutMs, maxRequests: maxRequests, maxAgeMs: maxAgeMs, loop: loop, spare: spare)
        return pool
    }

    func listener() -> (fd: Int32, port: UInt16) {
        let l = listeningSocket()
        owned.append(l.fd)
        return l
    }

    /// A connection to `port` that is ready, and the server's end of it.
    func connected(to l: (fd: Int32, port: UInt16), file: StaticString = #filePath, line: UInt = #line) -> (UpstreamConnection, Int32) {
        let c = UpstreamConnection(loop: loop), d = RecordingDelegate()
        connections.append(c)
        start(c, port: l.port, delegate: d, file: file, line: line)
        var server: Int32 = -1
        XCTAssertTrue(drive(loop, until: { !d.ready.isEmpty && server >= 0 }, between: { if server < 0 { server = acceptOne(l.fd) } }),
                      "connect to \(l.port): \(d.failureTexts)", file: file, line: line)
        if server >= 0 { owned.append(server) }
        return (c, server)
    }

    func address(_ l: (fd: Int32, port: UInt16)) -> PeerAddress { PeerAddress(host: "127.0.0.1", port: l.port, isIPv6: false) }

    /// Whether the server's end reads the end of the stream (the pool closed the connection).
    func peerSeesClose(_ server: Int32) -> Bool {
        var pfd = pollfd(fd: server, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 1000) == 1 else { return false }
        var b: UInt8 = 0
        return read(server, &b, 1) == 0
    }

    func testPutAndTakeByAddress() throws {
        let l1 = listener(), l2 = listener()
        let pool = makePool(capacity: 4)
        let (a1, _) = connected(to: l1)
        let (b1, serverB1) = connected(to: l2)
        let (a2, _) = connected(to: l1)
        pool.put(a1)
        pool.put(b1)
        pool.put(a2)
        for c in [a1, b1, a2] {
            XCTAssertEqual(c.state, .idle)
            XCTAssertNil(c.delegate, "a parked connection has no user")
            XCTAssertEqual(c.requests, 1, "put counts the request it carried")
        }
        XCTAssertNil(pool.take(PeerAddress(host: "127.0.0.1", port: 1, isIPv6: false), for: RecordingDelegate()))

        let user = RecordingDelegate()
        let b = try XCTUnwrap(pool.take(address(l2), for: user))
        XCTAssertTrue(b === b1, "the connection to that address")
        XCTAssertEqual(b.state, .ready)
        XCTAssertTrue(b.delegate === user)
        XCTAssertNil(pool.take(address(l2), for: RecordingDelegate()), "taken once")
        // The most recently parked first.
        XCTAssertTrue(pool.take(address(l1), for: RecordingDelegate()) === a2)
        XCTAssertTrue(pool.take(address(l1), for: RecordingDelegate()) === a1)
        XCTAssertNil(pool.take(address(l1), for: RecordingDelegate()))

        // A taken connection still carries bytes, and its new user hears of them.
        XCTAssertEqual(write(serverB1, "x", 1), 1)
        XCTAssertTrue(drive(loop, until: { !user.events.isEmpty }))
        XCTAssertNotEqual(user.events.reduce(0, |) & Events.readable, 0)
        XCTAssertEqual(spare.count, 0, "nothing was closed")
    }

    func testExcessAboveCapacityIsClosedAfterOneSecondIdle() throws {
        let l = listener()
        let pool = makePool(capacity: 1)
        let conns = (0..<3).map { _ in connected(to: l) }
        let started = Date()
        for (c, _) in conns { pool.put(c) }
        loop.runOnce(waitingAtMost: 0)
        XCTAssertEqual(conns.map { $0.0.state }, [.idle, .idle, .idle], "above capacity, but not closed at once")

        XCTAssertTrue(drive(loop, for: 3, until: { conns[0].0.state == .closed && conns[1].0.state == .closed }),
                      "the excess is closed within 3 s")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(elapsed, Double(KeepalivePool.excessIdleMs) / 1000 - 0.02, "not before excessIdleMs")
        XCTAssertLessThan(elapsed, 2.5)
        XCTAssertEqual(conns[2].0.state, .idle, "the most recently used stays, within capacity")
        XCTAssertEqual(spare.count, 2, "closed connections go to the spare pool")
        XCTAssertTrue(peerSeesClose(conns[0].1))
        XCTAssertTrue(peerSeesClose(conns[1].1))
        XCTAssertTrue(pool.take(address(l), for: RecordingDelegate()) === conns[2].0)
        XCTAssertEqual(loop.pendingTimers, 0, "nothing left to trim")
    }

    func testExcessReusedWithinTheGraceIsKept() throws {
        let l = listener()
        let pool = makePool(capacity: 1)
        let (c1, _) = connected(to: l)
        let (c2, _) = connected(to: l)
        pool.put(c1)
        pool.put(c2)
        drive(loop, for: 0.3, until: { false })
        // The next burst takes one back before the second is up: nothing is above capacity any more.
        let user = RecordingDelegate()
        let again = try XCTUnwrap(pool.take(address(l), for: user))
        XCTAssertTrue(again === c2)
        drive(loop, for: 1.2, until: { false })
        XCTAssertEqual(c1.state, .idle, "at capacity after the take: kept")
        XCTAssertEqual(c2.state, .ready)
        XCTAssertEqual(spare.count, 0)
    }

    func testParkedConnectionThePeerClosesIsDropped() throws {
        let l = listener()
        let pool = makePool(capacity: 4)
        let (c, server) = connected(to: l)
        let (other, _) = connected(to: l)
        pool.put(c)
        pool.put(other)
        let before = openDescriptors()
        close(server)
        owned.removeAll { $0 == server }
        XCTAssertTrue(drive(loop, until: { c.state == .closed }), "the upstream's close drops the parked connection")
        XCTAssertEqual(openDescriptors(), before - 2, "the server's end and ours are both gone")
        XCTAssertEqual(spare.count, 1)
        XCTAssertTrue(pool.take(address(l), for: RecordingDelegate()) === other, "only the live one is left")
        XCTAssertNil(pool.take(address(l), for: RecordingDelegate()))
    }

    func testBytesOnAParkedConnectionDropIt() throws {
        let l = listener()
        let pool = makePool(capacity: 4)
        let (c, server) = connected(to: l)
        pool.put(c)
        XCTAssertEqual(write(server, "HTTP/1.1 408 Request Timeout\r\n\r\n", 32), 32)
        XCTAssertTrue(drive(loop, until: { c.state == .closed }), "unexpected bytes end an idle connection")
        XCTAssertNil(pool.take(address(l), for: RecordingDelegate()))
    }

    func testKeepaliveTimeoutClosesAnIdleConnection() throws {
        let l = listener()
        let pool = makePool(capacity: 4, timeoutMs: 150)
        let (c, server) = connected(to: l)
        let started = Date()
        pool.put(c)
        XCTAssertTrue(drive(loop, until: { c.state == .closed }))
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.14)
        XCTAssertTrue(peerSeesClose(server))
        XCTAssertNil(pool.take(address(l), for: RecordingDelegate()))
        // A connection taken before its timeout is not closed by it later.
        let (d, _) = connected(to: l)
        pool.put(d)
        XCTAssertNotNil(pool.take(address(l), for: RecordingDelegate()))
        drive(loop, for: 0.3, until: { false })
        XCTAssertEqual(d.state, .ready)
    }

    func testKeepaliveRequestsClosesInsteadOfParking() throws {
        let l = listener()
        let pool = makePool(capacity: 4, maxRequests: 3)
        let (c, server) = connected(to: l)
        for carried in 1...2 {
            pool.put(c)
            XCTAssertEqual(c.state, .idle, "request \(carried) of 3: parked")
            XCTAssertTrue(pool.take(address(l), for: RecordingDelegate()) === c)
        }
        pool.put(c)
        XCTAssertEqual(c.requests, 3)
        XCTAssertEqual(c.state, .closed, "the third request was its last")
        XCTAssertEqual(c.fd, -1)
        XCTAssertNil(pool.take(address(l), for: RecordingDelegate()))
        XCTAssertTrue(peerSeesClose(server))
        XCTAssertEqual(spare.count, 1)

        let one = makePool(capacity: 4, maxRequests: 1)
        let (d, _) = connected(to: l)
        one.put(d)
        XCTAssertEqual(d.state, .closed, "keepalive_requests 1: never parked")
    }

    func testKeepaliveTimeClosesAnOldConnection() throws {
        let l = listener()
        let pool = makePool(capacity: 4, maxAgeMs: 100)
        let (young, _) = connected(to: l)
        pool.put(young)
        XCTAssertEqual(young.state, .idle, "younger than keepalive_time: parked")
        XCTAssertTrue(pool.take(address(l), for: RecordingDelegate()) === young)
        usleep(150_000)
        loop.runOnce(waitingAtMost: 0)   // the loop's clock moves on
        pool.put(young)
        XCTAssertEqual(young.state, .closed, "older than keepalive_time: closed instead of parked")
        XCTAssertNil(pool.take(address(l), for: RecordingDelegate()))
    }

    func testTakenConnectionReconnectsFromTheSparePool() throws {
        // A closed connection object is handed out again by the spare pool and connects like a new one.
        let l = listener()
        let pool = makePool(capacity: 4, maxRequests: 1)
        let (c, _) = connected(to: l)
        pool.put(c)
        let pooled: UpstreamConnection? = spare!.take()
        let reused = try XCTUnwrap(pooled)
        XCTAssertTrue(reused === c)
        let d = RecordingDelegate()
        start(reused, port: l.port, delegate: d)
        XCTAssertTrue(drive(loop, until: { d.heardAnything }))
        XCTAssertEqual(d.ready.count, 1)
        XCTAssertEqual(reused.requests, 0, "a new connection starts its count again")
    }
}

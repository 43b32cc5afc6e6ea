import Core
import Glibc
import XCTest
@testable import Checks
@testable import Config
import CShim
import ShmTable

/// The engine itself, in process: what it leaves behind when it stops.
final class CheckEngineTests: XCTestCase {
    private func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    /// A socket bound to a loopback port: refuses connections until listen() is called on it.
    private func boundSocket() -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
            XCTAssertEqual(bind(fd, p, len), 0)
            XCTAssertEqual(getsockname(fd, p, &len), 0)
        } }
        return (fd, UInt16(bigEndian: sa.sin_port))
    }

    /// Peers at 127.0.0.1 on `ports`, all checked alike.
    private func peers(_ ports: [UInt16], type: CheckType, interval: Int, timeout: Int) -> [CheckedPeer] {
        var check = CheckSettings()
        check.type = type
        check.interval = interval
        check.timeout = timeout
        return ports.map { CheckedPeer(upstream: "unit", address: PeerAddress(host: "127.0.0.1", port: $0, isIPv6: false), check: check) }
    }

    /// A segment for `peers`, all down (`state`), its checker lock held by this process; unlinked when the test ends.
    private func segment(for peers: [CheckedPeer], state: PeerState = PeerState(down: true)) throws -> Segment {
        let name = "/vigil-unit-engine-\(getpid())"
        addTeardownBlock { shm_unlink(name) }
        let segment = try Segment.create(name: name, size: 1 << 20, generation: 1, masterPid: getpid(), checksum: 0,
                                         peers: peers.map { PeerEntry(upstream: $0.upstream, server: $0.address.description,
                                                                      type: 1, port: 0, state: state) })
        XCTAssertTrue(segment.checker.tryAcquire(pid: getpid(), nowMs: vigil_monotonic_ms(), staleAfterMs: 1000))
        return segment
    }

    /// A checker that stops (the lock lost to a stalled heartbeat, the worker exiting) closes the
    /// connections of the probes it had in flight: a worker that is no longer the checker holds no check fds.
    func testStoppingClosesConnectionsOfProbesInFlight() throws {
        // A listener that completes handshakes (the kernel does) but never answers: http probes stay in flight.
        let listener = boundSocket()
        defer { close(listener.fd) }
        XCTAssertEqual(listen(listener.fd, 64), 0)
        let peers = self.peers(Array(repeating: listener.port, count: 4), type: .http, interval: 1000, timeout: 30_000)
        let segment = try self.segment(for: peers)

        let before = openDescriptors()
        var thread: CheckerThread? = CheckerThread(engine: try CheckEngine(segment: segment, peers: peers, pid: getpid(),
                                                                          log: ErrorLog()))
        thread!.start()
        // Every first probe starts within min(interval, 1 s); all four then wait for a reply that never comes.
        let deadline = Date().addingTimeInterval(5)
        while openDescriptors() < before + 4 + 2 && Date() < deadline { usleep(20_000) }
        XCTAssertGreaterThanOrEqual(openDescriptors(), before + 4 + 2, "epoll, eventfd and four probe connections")
        thread!.stop()
        thread = nil
        XCTAssertEqual(openDescriptors(), before)
    }

    /// A refused probe (tcp: the second connect() says so; http: the send does) leaves its socket unconnected
    /// for the next probe, of any peer: the checker then holds one spare descriptor, not one per down peer;
    /// probes on a reused socket judge live peers up and refusing ones down as fresh sockets do; the spare is
    /// closed when the checker stops.
    func testRefusedProbesReuseOneSocket() throws {
        let refusing = (0..<4).map { _ in boundSocket() }
        let live = (0..<2).map { _ in boundSocket() }
        defer { (refusing + live).forEach { close($0.fd) } }
        for l in live { XCTAssertEqual(listen(l.fd, 128), 0) }

        let peers = self.peers(refusing.prefix(2).map(\.port), type: .http, interval: 100, timeout: 1000)
            + self.peers((refusing.suffix(2) + live).map(\.port), type: .tcp, interval: 100, timeout: 1000)
        let segment = try self.segment(for: peers)

        let before = openDescriptors()
        var engine: CheckEngine? = try CheckEngine(segment: segment, peers: peers, pid: getpid(), log: ErrorLog())
        var thread: CheckerThread? = CheckerThread(engine: engine!)
        thread!.start()
        var most = 0
        let deadline = Date().addingTimeInterval(1.5)
        while Date() < deadline {
            most = max(most, openDescriptors())
            usleep(5_000)
        }
        // epoll and the stop eventfd, the spare, and at most the two live peers' probes in flight.
        XCTAssertLessThanOrEqual(most, before + 2 + 1 + 2)
        let states = peers.indices.map { segment.slot($0).read() }
        for s in states.prefix(4) {
            XCTAssertTrue(s.down)
            XCTAssertEqual(s.reason, .connectRefused)
            XCTAssertGreaterThanOrEqual(s.checks, 5)
        }
        for s in states.suffix(2) {
            XCTAssertFalse(s.down, "a live peer probed on reused sockets is up")
            XCTAssertGreaterThanOrEqual(s.checks, 5)
        }
        thread!.stop()
        thread = nil
        // A live peer's probe keeps the socket it connected; every other probe found the spare.
        let liveProbes = peers.indices.suffix(2).map { Int(segment.slot($0).read().checks) }.reduce(0, +)
        let allProbes = peers.indices.map { Int(segment.slot($0).read().checks) }.reduce(0, +)
        XCTAssertLessThanOrEqual(engine!.socketsOpened, liveProbes + 1, "of \(allProbes) probes")
        engine = nil
        XCTAssertEqual(openDescriptors(), before, "the spare socket is closed with the checker")
    }

    /// Peers new to the table, with the module's defaults (interval=30000 rise=2): probed at once and again
    /// 100 ms later, so a live one is up within a few hundred ms, having passed `rise` probes; a refusing one
    /// ends its first round at its first failure and waits its interval; nothing else is probed meanwhile.
    func testNewPeersAreProbedAtOnceUntilTheirFirstRoundDecides() throws {
        let live = (0..<2).map { _ in boundSocket() }
        let refusing = boundSocket()
        defer { (live + [refusing]).forEach { close($0.fd) } }
        for l in live { XCTAssertEqual(listen(l.fd, 16), 0) }
        var peers = self.peers((live + [refusing]).map(\.port), type: .tcp, interval: 30_000, timeout: 1000)
        for i in peers.indices { peers[i].check.rise = 2 }
        let segment = try self.segment(for: peers, state: .unseen(down: true))
        XCTAssertTrue(segment.slot(0).inFirstRound)

        let started = Date()
        let thread = CheckerThread(engine: try CheckEngine(segment: segment, peers: peers, pid: getpid(), log: ErrorLog()))
        thread.start()
        defer { thread.stop() }
        XCTAssertTrue(waitUntil(2) { !segment.slot(0).isDown && !segment.slot(1).isDown && !segment.slot(2).inFirstRound })
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.6, "two probes 100 ms apart, not interval/2")
        usleep(300_000)
        let states = peers.indices.map { segment.slot($0).read() }
        for s in states.prefix(2) {
            XCTAssertEqual(s.checks, 2, "rise=2: two passes, then the interval")
            XCTAssertFalse(s.firstRound)
        }
        XCTAssertTrue(states[2].down)
        XCTAssertEqual(states[2].checks, 1, "a failure ends the first round")
        XCTAssertEqual(states[2].reason, .connectRefused)
    }

    /// Polls `condition` every 5 ms until it holds or `seconds` pass.
    private func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(5_000)
        }
        return condition()
    }

    /// Steady peers wait a whole interval; a peer on its way to flipping is probed again after half of one.
    func testPeersAboutToFlipAreProbedAtHalfTheInterval() {
        func state(down: Bool, rise: UInt32 = 0, fall: UInt32 = 0) -> PeerState {
            var s = PeerState(down: down)
            s.rise = rise
            s.fall = fall
            return s
        }
        XCTAssertEqual(PeerProber.delay(before: state(down: false), interval: 1000), 1000)
        XCTAssertEqual(PeerProber.delay(before: state(down: true), interval: 1000), 1000)
        XCTAssertEqual(PeerProber.delay(before: state(down: false, fall: 1), interval: 1000), 500)
        XCTAssertEqual(PeerProber.delay(before: state(down: true, rise: 1), interval: 1000), 500)
        XCTAssertEqual(PeerProber.delay(before: state(down: true, fall: 3), interval: 1000), 1000, "down and still failing: steady")
        XCTAssertEqual(PeerProber.delay(before: state(down: false, rise: 5), interval: 1000), 1000, "up and passing: steady")
        XCTAssertEqual(PeerProber.delay(before: state(down: false, fall: 1), interval: 1), 1)
        XCTAssertEqual(PeerProber.delay(before: .unseen(down: true), interval: 30_000), 100, "a new peer's first round")
        XCTAssertEqual(PeerProber.delay(before: .unseen(down: false), interval: 50), 50, "never longer than the interval")
    }
}

import Foundation
import TestHarness
import XCTest

/// Killed processes: a worker or the checker SIGKILLed while clients keep sending requests through the proxy,
/// the master SIGKILLed, and what a dead master leaves behind.
final class ProcessFaultTests: FaultTestCase {
    var vigil: Vigil!
    /// A separate Vigil plays the backend, so that killing a proxy worker never takes backend connections with it.
    var backend: Vigil!
    var port: UInt16 = 0
    /// Load: half keep-alive clients, half one connection per request.
    static let keepAliveClients = 8, freshClients = 8
    static var clients: Int { keepAliveClients + freshClients }

    override func setUpWithError() throws {
        port = freePort()
        let backendPort = freePort()
        backend = try Vigil(config: Vigil.config(workers: 1, http: """
            server { listen 127.0.0.1:\(backendPort); keepalive_requests 100000; location / { return 200 "ok"; } }
            """))
        vigil = try Vigil(config: Vigil.config(workers: 2, http: """
            upstream app {
                server 127.0.0.1:\(backendPort);
                keepalive 8;
                check interval=1000 rise=1 fall=2 timeout=500 type=tcp;
            }
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
            }
            """))
    }

    override func tearDown() {
        vigil.cleanup()
        backend.cleanup()
    }

    /// Starts the backend and the proxy, and waits until the first check has brought the peer up.
    func startProxy() throws -> (master: Int32, workers: [Int32]) {
        _ = try backend.start()
        let master = try vigil.start()
        let workers = vigil.waitForWorkers(master, count: 2)
        XCTAssertEqual(workers.count, 2)
        XCTAssertTrue(waitFor(5) { httpGet(self.port, "/")?.body == "ok" }, "the proxy never answered 200")
        return (master, workers)
    }

    func startLoad() -> Load {
        Load(port: port, keepAlive: Self.keepAliveClients, fresh: Self.freshClients, seconds: 4, body: "ok")
    }

    /// Checks made so far on the one peer, from the segment.
    func checks() -> Int { ((vigil.shmdumpJSON()["peers"] as? [[String: Any]])?.first?["checks"] as? Int) ?? -1 }

    /// The load's verdict around a kill at `killedAt` (1 s into its 4 s): no failure before it, at most one per
    /// client (what was in flight on the killed worker's connections), none in the last 1.5 s.
    func assertLoad(_ load: Load, killedAt: Date, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(load.wait(), "the load did not finish", file: file, line: line)
        let failures = load.failures
        XCTAssertEqual(failures.filter { $0.at < killedAt }.map(\.what), [], "failures before the kill", file: file, line: line)
        XCTAssertLessThanOrEqual(failures.count, Self.clients, "more failures than connections in flight: \(failures)", file: file, line: line)
        XCTAssertEqual(failures.filter { $0.at > killedAt.addingTimeInterval(1.5) }.map(\.what), [], "failures after the worker was replaced",
                       file: file, line: line)
        XCTAssertGreaterThan(load.ok, 100, file: file, line: line)
    }

    func testKilledWorkerUnderLoad() throws {
        let (master, workers) = try startProxy()
        // Kill the worker that does not hold the checker lock: the checker has a test of its own.
        let checker = vigil.checkerPid()
        let victim = workers.first { $0 != checker }!
        let load = startLoad()
        usleep(1_000_000)
        kill(victim, SIGKILL)
        let killedAt = Date()
        var after: [Int32] = []
        XCTAssertTrue(waitFor(5) {
            after = childPids(of: master)
            return after.count == 2 && !after.contains(victim)
        }, "the killed worker was not replaced: \(after)")
        let refork = Date().timeIntervalSince(killedAt)
        assertLoad(load, killedAt: killedAt)
        record("SIGKILL of 1 of 2 workers, \(Self.clients) clients for 4 s",
               String(format: "sent %d, failed %d (bound %d), re-forked in %.0f ms", load.sent, load.failures.count, Self.clients, refork * 1000))
        XCTAssertTrue(vigil.errorLog().contains("worker process \(victim) exited on signal 9"), vigil.errorLog())
        XCTAssertTrue(processAlive(master))
    }

    func testKilledCheckerUnderLoad() throws {
        let (master, workers) = try startProxy()
        var old: Int32?
        XCTAssertTrue(waitFor(5) { old = self.vigil.checkerPid(); return old != nil }, "no checker elected")
        let checker = try XCTUnwrap(old)
        XCTAssertTrue(workers.contains(checker))
        let load = startLoad()
        usleep(1_000_000)
        kill(checker, SIGKILL)
        let killedAt = Date()
        // A dead checker writes nothing more: the counter read now is the last it made.
        let before = checks()
        var next: Int32?
        XCTAssertTrue(waitFor(5) { next = self.vigil.checkerPid(); return next != nil && next != checker }, "no new checker")
        let takeover = Date().timeIntervalSince(killedAt)
        XCTAssertTrue(waitFor(5) { self.checks() > before }, "no probe after the checker was killed")
        let resumed = Date().timeIntervalSince(killedAt)
        assertLoad(load, killedAt: killedAt)
        record("SIGKILL of the checker worker, \(Self.clients) clients for 4 s, interval=1000",
               String(format: "sent %d, failed %d (bound %d), new checker in %.2f s, probes again in %.2f s",
                      load.sent, load.failures.count, Self.clients, takeover, resumed))
        // Its duties move within about one interval: election tick plus the first probe, spread over the interval.
        XCTAssertLessThan(resumed, 2.5, "checks resumed \(resumed) s after the checker was killed")
        XCTAssertTrue(childPids(of: master).contains(try XCTUnwrap(next)), "the new checker is not a live worker")
    }

    /// SIGKILL of the master: its workers notice (parent death signal) and exit cleanly; a new master starts over
    /// the leftovers, removing the dead master's segment and taking over its pid file.
    func testWorkersExitWhenTheMasterIsKilled() throws {
        try vigil.write(config: Vigil.config(workers: 2, http: "server { listen 127.0.0.1:\(port); return 200 \"ok\"; }"))
        let master = try vigil.start()
        let workers = vigil.waitForWorkers(master, count: 2)
        XCTAssertEqual(workers.count, 2)
        kill(master, SIGKILL)
        let killedAt = Date()
        XCTAssertTrue(waitFor(5) { workers.allSatisfy { !processAlive($0) } }, "workers outlived their master")
        let gone = Date().timeIntervalSince(killedAt)
        XCTAssertTrue(waitFor(5) { !canConnect(self.port) }, "the port is still open")
        // Cleanly: each worker logged its own exit (it handled the signal; it was not killed).
        let log = vigil.errorLog().split(separator: "\n")
        for w in workers {
            XCTAssertTrue(log.contains { $0.contains(" \(w)#") && $0.hasSuffix(": exit") }, "worker \(w) did not log its exit")
        }
        // The pid file and segment of the dead master are still there; a new start takes over.
        XCTAssertTrue(FileManager.default.fileExists(atPath: vigil.pidPath))
        XCTAssertEqual(shmSegments(ofMaster: master).count, 1)
        let second = try vigil.start()
        XCTAssertNotEqual(second, master)
        XCTAssertEqual(vigil.masterPid(), second)
        XCTAssertEqual(shmSegments(ofMaster: master), [], "the dead master's segment was not removed")
        XCTAssertEqual(httpGet(port, "/")?.body, "ok")
        record("SIGKILL of the master (2 workers)",
               String(format: "workers exited in %.2f s, logged \"exit\"; restart removed the stale segment", gone))
    }

    func testStaleSegmentsOfDeadMastersAreRemoved() throws {
        // Find a pid that is not running and plant a segment for it.
        var dead: Int32 = 4_000_000
        while kill(dead, 0) == 0 || errno != ESRCH { dead -= 1 }
        let stale = "/dev/shm/vigil.\(dead).7"
        _ = FileManager.default.createFile(atPath: stale, contents: Data(repeating: 0, count: 128))
        defer { unlink(stale) }
        let master = try vigil.start()
        _ = vigil.waitForWorkers(master, count: 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        record("segment of a dead master (pid \(dead)) in /dev/shm", "removed at start")
    }
}

import Foundation
import TestHarness
import XCTest

/// Resources that run out: a full disk under the logs (/dev/full fails every write with ENOSPC) and the
/// descriptor limit. Each must be logged and survived; the worker keeps serving.
final class ResourceFaultTests: FaultTestCase {
    var vigil: Vigil?
    var port: UInt16 = 0

    override func setUp() { port = freePort() }
    override func tearDown() { vigil?.cleanup() }

    func start(_ config: String) throws -> (master: Int32, worker: Int32) {
        let v = try Vigil(config: config)
        vigil = v
        let master = try v.start()
        let worker = try XCTUnwrap(v.waitForWorkers(master, count: 1).first)
        XCTAssertTrue(waitFor(5) { httpGet(self.port, "/")?.status == 200 }, "no 200 from a fresh start")
        return (master, worker)
    }

    func testAccessLogOnAFullDisk() throws {
        let (master, worker) = try start(Vigil.config(http: """
            server { listen 127.0.0.1:\(port); access_log /dev/full; location / { return 200 "ok"; } }
            """))
        let requests = 200
        let answered = (0..<requests).filter { _ in httpGet(port, "/")?.body == "ok" }.count
        XCTAssertEqual(answered, requests)
        let failure = "write() to \"/dev/full\" failed (28: No space left on device) while logging request"
        XCTAssertTrue(waitFor(3) { self.vigil!.errorLog().contains(failure) }, "no \(failure) in the error log")
        let lines = vigil!.errorLog().split(separator: "\n").filter { $0.contains(failure) }
        record("access_log /dev/full (ENOSPC), \(requests) requests", "\(answered) answered 200, \(lines.count) error log line")
        // nginx's rule: one alert per log file a minute, not one per request.
        XCTAssertEqual(lines.count, 1, lines.prefix(3).joined(separator: "\n"))
        XCTAssertTrue(lines.allSatisfy { $0.contains(" [alert] ") && $0.contains(", client: 127.0.0.1") }, lines.prefix(3).joined(separator: "\n"))
        XCTAssertEqual(childPids(of: master), [worker], "the worker was replaced")
    }

    func testErrorLogOnAFullDisk() throws {
        // The only error log is /dev/full: every line is lost, nothing else may be.
        let conf = Vigil.config(workers: 2, http: "server { listen 127.0.0.1:\(port); location / { return 200 \"ok\"; } }")
            .replacingOccurrences(of: "error_log logs/error.log info;", with: "error_log /dev/full info;")
        let v = try Vigil(config: conf)
        vigil = v
        let master = try v.start()
        let workers = v.waitForWorkers(master, count: 2)
        XCTAssertEqual(workers.count, 2)
        XCTAssertTrue(waitFor(5) { httpGet(self.port, "/")?.status == 200 })
        // A reload and a killed worker both write to the error log.
        XCTAssertEqual(v.vigil(["-s", "reload"]).status, 0)
        var reloaded: [Int32] = []
        XCTAssertTrue(waitFor(10) { reloaded = childPids(of: master); return reloaded.count == 2 && Set(reloaded).isDisjoint(with: workers) })
        kill(reloaded[0], SIGKILL)
        XCTAssertTrue(waitFor(5) { let w = childPids(of: master); return w.count == 2 && !w.contains(reloaded[0]) })
        let answered = (0..<50).filter { _ in httpGet(port, "/")?.body == "ok" }.count
        XCTAssertEqual(answered, 50)
        XCTAssertTrue(processAlive(master))
        let stop = v.vigil(["-s", "stop"])
        XCTAssertEqual(stop.status, 0, stop.stderr)
        XCTAssertTrue(waitFor(5) { !processAlive(master) })
        record("error_log /dev/full: reload, killed worker, stop", "\(answered) of 50 answered 200, reload and stop exit 0")
    }

    func testDescriptorLimitExhausted() throws {
        let clients = 100
        XCTAssertGreaterThanOrEqual(ensureDescriptors(clients + 200), clients + 200)
        let (master, worker) = try start(Vigil.config(http: """
            server { listen 127.0.0.1:\(port); location / { return 200 "ok"; } }
            """, main: "worker_rlimit_nofile 64;"))
        // More idle connections than the worker may hold descriptors: the rest wait in the listen queue.
        var idle: [HTTPConnection] = []
        for _ in 0..<clients { idle.append(try HTTPConnection(port: port)) }
        let failure = "accept4() failed (24: Too many open files)"
        XCTAssertTrue(waitFor(3) { self.vigil!.errorLog().contains(failure) }, "no \(failure) in the error log")
        // It does not spin on a listening socket it cannot accept from (nginx stops accepting for 500 ms).
        let t0 = try XCTUnwrap(cpuTicks(worker))
        usleep(1_000_000)
        let busy = try XCTUnwrap(cpuTicks(worker)) - t0
        let held = openDescriptors(worker)
        let lines = vigil!.errorLog().split(separator: "\n").filter { $0.contains(failure) }
        for c in idle { c.close() }
        var status: Int?
        XCTAssertTrue(waitFor(5) { status = httpGet(self.port, "/")?.status; return status == 200 },
                      "no 200 after the idle connections closed (last: \(status.map(String.init) ?? "none"))")
        record("worker_rlimit_nofile 64, \(clients) idle connections",
               "\(held) descriptors held, worker CPU \(busy)% over 1 s, \(lines.count) \"accept4() failed (24)\" lines, 200 after")
        XCTAssertLessThan(busy, 20, "the worker used \(busy)% of a CPU while out of descriptors")
        XCTAssertLessThanOrEqual(held, 64)
        XCTAssertTrue(lines.allSatisfy { $0.contains(" [crit] ") }, lines.prefix(3).joined(separator: "\n"))
        XCTAssertLessThan(lines.count, 20, "the failure is logged on every attempt")
        XCTAssertEqual(childPids(of: master), [worker], "the worker was replaced")
    }
}

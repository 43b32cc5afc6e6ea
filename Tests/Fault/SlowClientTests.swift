import Foundation
import TestHarness
import XCTest

/// Slow and greedy clients against the real binary, on 127.0.0.1 only: idle and byte-at-a-time connections
/// must not slow everyone else down, `client_header_timeout` must end a stalled head, and running out of
/// `worker_connections` must be logged and survived. One worker, so every connection lands on the same loop.
final class SlowClientTests: FaultTestCase {
    var vigil: Vigil?
    var port: UInt16 = 0

    override func setUp() {
        port = freePort()
    }

    override func tearDown() {
        vigil?.cleanup()
    }

    @discardableResult
    func start(workerConnections: Int, http: String, file: StaticString = #filePath, line: UInt = #line) throws -> Int32 {
        let v = try Vigil(config: Vigil.config(workerConnections: workerConnections, http: http))
        vigil = v
        let master = try v.start(file: file, line: line)
        XCTAssertTrue(waitFor(5) { canConnect(self.port) }, "vigil does not listen on \(port)", file: file, line: line)
        return master
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Seconds for one GET on a fresh connection, response read in full.
    func timedGet(_ path: String = "/") throws -> Double {
        let t0 = Self.now()
        let c = try HTTPConnection(port: port)
        defer { c.close() }
        try c.send(getRequest(path))
        let r = try c.readResponse()
        let t = Self.now() - t0
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "ok\n")
        return t
    }

    /// `Active connections: N` from stub_status (the request asking counts itself).
    func activeConnections() -> Int? {
        guard let r = httpGet(port, "/nginx_status"), r.status == 200,
              let line = r.body.split(separator: "\n").first, line.hasPrefix("Active connections: ") else { return nil }
        return Int(line.dropFirst("Active connections: ".count).trimmingCharacters(in: .whitespaces))
    }

    /// Sends one byte on each slow connection every 200 ms, on its own thread, until stopped.
    final class Dripper: @unchecked Sendable {
        private let lock = NSLock()
        private var stopped = false
        private let done = DispatchSemaphore(value: 0)
        let connections: [HTTPConnection]
        let requests: [[UInt8]]
        private(set) var sent: [Int]
        private(set) var sendFailures = 0
        private(set) var ticks = 0

        init(connections: [HTTPConnection], requests: [[UInt8]]) {
            self.connections = connections
            self.requests = requests
            sent = Array(repeating: 0, count: connections.count)
        }

        func start() {
            let t = Thread { self.run() }
            t.start()
        }

        private func run() {
            while true {
                lock.lock()
                let stop = stopped
                lock.unlock()
                if stop { break }
                for (k, c) in connections.enumerated() where sent[k] < requests[k].count - 1 {
                    // Never the last byte: the heads stay incomplete until the test finishes them.
                    do {
                        try c.send([requests[k][sent[k]]])
                        sent[k] += 1
                    } catch {
                        sendFailures += 1
                    }
                }
                ticks += 1
                usleep(200_000)
            }
            done.signal()
        }

        /// Stops and waits for the thread; afterwards `sent` and `sendFailures` are stable.
        func stop() {
            lock.lock()
            stopped = true
            lock.unlock()
            done.wait()
        }
    }

    // MARK: (a) idle and slow connections do not delay others

    func testIdleAndSlowConnectionsDoNotDelayOtherRequests() throws {
        var idleCount = 300, slowCount = 300
        // Both ends of every connection live on this machine: the test holds one descriptor per connection,
        // the worker another. Leave room for the test runner and the worker's own descriptors.
        let limit = ensureDescriptors(idleCount + slowCount + 200)
        if limit < idleCount + slowCount + 200 {
            let room = max(0, limit - 200)
            idleCount = room / 2
            slowCount = room / 2
            print("RLIMIT_NOFILE is \(limit): \(idleCount) idle and \(slowCount) slow connections")
        }
        try XCTSkipIf(idleCount < 50, "RLIMIT_NOFILE \(limit) is too low for this test")

        try start(workerConnections: 1024, http: """
            server {
                listen 127.0.0.1:\(port);
                location / { return 200 "ok\\n"; }
                location = /nginx_status { stub_status; }
            }
            """)

        // Baseline: the same requests against an otherwise idle server (after a warm-up).
        for _ in 0..<5 { _ = try timedGet() }
        let baseline = Self.median(try (0..<20).map { _ in try timedGet() })

        var idle: [HTTPConnection] = []
        for _ in 0..<idleCount { idle.append(try HTTPConnection(port: port)) }
        var slow: [HTTPConnection] = []
        var requests: [[UInt8]] = []
        for k in 0..<slowCount {
            slow.append(try HTTPConnection(port: port))
            requests.append(Array(getRequest("/slow-\(k)", headers: ["X-Pad: " + String(repeating: "p", count: 40)]).utf8))
        }
        let dripper = Dripper(connections: slow, requests: requests)
        dripper.start()
        var stopped = false
        defer { if !stopped { dripper.stop() } }

        // The worker holds them all (they are not waiting in the listen queue), then a few drips go by.
        var active: Int?
        XCTAssertTrue(waitFor(5, interval: 50_000) {
            active = self.activeConnections()
            return (active ?? 0) >= idleCount + slowCount + 1
        }, "the worker holds \(active.map(String.init) ?? "?") connections, expected \(idleCount + slowCount + 1)")
        usleep(600_000)

        let loaded = try (0..<20).map { _ in try timedGet() }
        let loadedMedian = Self.median(loaded)
        dripper.stop()
        stopped = true
        record("\(idleCount) idle + \(slowCount) byte-at-a-time clients on one worker",
               String(format: "median GET %.2f ms (%.2f ms without them), max %.2f ms, %d drip ticks", loadedMedian * 1000, baseline * 1000,
                      loaded.max()! * 1000, dripper.ticks))
        XCTAssertEqual(dripper.sendFailures, 0, "the server dropped slow connections while they were sending")
        XCTAssertGreaterThanOrEqual(dripper.ticks, 3)
        XCTAssertLessThan(loadedMedian, baseline + 0.050,
                          String(format: "median GET %.1f ms with slow clients vs %.1f ms without", loadedMedian * 1000, baseline * 1000))

        // Every held connection is still served: the slow ones finish their heads, the idle ones send one.
        for (k, c) in slow.enumerated() {
            try c.send(Array(requests[k][dripper.sent[k]...]))
        }
        for c in idle { try c.send(getRequest("/idle")) }
        var served = 0
        for c in slow + idle {
            if let r = try? c.readResponse(), r.status == 200, r.text == "ok\n" { served += 1 }
            c.close()
        }
        XCTAssertEqual(served, idleCount + slowCount, "held connections that got no answer at the end")
    }

    // MARK: (b) client_header_timeout

    func testClientHeaderTimeoutClosesAHalfSentRequestLine() throws {
        try start(workerConnections: 64, http: """
            client_header_timeout 1s;
            server {
                listen 127.0.0.1:\(port);
                location / { return 200 "ok\\n"; }
            }
            """)
        let c = try HTTPConnection(port: port, timeout: 6)
        let t0 = Self.now()
        try c.send("GET /index.html HT")
        // Nothing is sent back (nginx closes without a 408 response), and the close comes after ~1 s.
        XCTAssertTrue(c.peerClosed(within: 5), "the connection is still open (or got bytes) 5 s after half a request line")
        let elapsed = Self.now() - t0
        record("half a request line, client_header_timeout 1s", String(format: "closed after %.2f s, no bytes sent", elapsed))
        XCTAssertGreaterThanOrEqual(elapsed, 0.9, "closed before client_header_timeout")
        XCTAssertLessThanOrEqual(elapsed, 3.0, "closed \(elapsed) s after the request started, client_header_timeout is 1 s")
        XCTAssertTrue(waitFor(3) { self.vigil?.errorLog().contains("client timed out") ?? false },
                      "no \"client timed out\" in the error log:\n\(vigil?.errorLog() ?? "")")
        let line = vigil?.errorLog().split(separator: "\n").first { $0.contains("client timed out") } ?? ""
        XCTAssertTrue(line.contains("while reading client request headers"), String(line))
        XCTAssertTrue(line.contains("client: 127.0.0.1"), String(line))
        // The server itself is fine.
        XCTAssertLessThan(try timedGet(), 1)
    }

    // MARK: (c) worker_connections exhausted

    func testWorkerConnectionsExhaustedIsLoggedAndSurvived() throws {
        let master = try start(workerConnections: 8, http: """
            server {
                listen 127.0.0.1:\(port);
                location / { return 200 "ok\\n"; }
            }
            """)
        let workers = try XCTUnwrap(vigil).waitForWorkers(master, count: 1)
        XCTAssertEqual(workers.count, 1)

        // 20 connections at once: the worker can hold 8, and closes the others as it accepts them.
        var held: [HTTPConnection] = []
        for _ in 0..<20 { held.append(try HTTPConnection(port: port)) }
        var closed: [Int] = []
        XCTAssertTrue(waitFor(5) {
            closed = held.indices.filter { !held[$0].stillOpen(after: 0) }
            return closed.count >= 12
        }, "only \(closed.count) of 20 connections were closed with worker_connections 8")
        // Exactly the 8 it could hold stay open, silently.
        usleep(200_000)
        let open = held.indices.filter { held[$0].stillOpen(after: 0) }
        XCTAssertEqual(open.count, 8, "connections still open")
        for k in held.indices where !open.contains(k) { XCTAssertTrue(held[k].peerClosed(within: 1), "connection \(k) got bytes") }

        XCTAssertTrue(waitFor(3) { self.vigil?.errorLog().contains("worker_connections are not enough") ?? false })
        let alerts = (vigil?.errorLog() ?? "").split(separator: "\n").filter { $0.contains("worker_connections are not enough") }
        record("worker_connections 8, 20 connections at once", "\(closed.count) closed at once, \(open.count) held, \(alerts.count) alert lines")
        XCTAssertFalse(alerts.isEmpty)
        for a in alerts {
            XCTAssertTrue(a.contains(" [alert] ") && a.hasSuffix(": 8 worker_connections are not enough"), String(a))
        }

        // While all 8 are held, another client is turned away too.
        XCTAssertNil(httpGet(port, "/", timeout: 2), "served a request beyond worker_connections")

        // The worker survived (the same pid), and serves again once the held connections close.
        XCTAssertTrue(processAlive(master))
        XCTAssertEqual(childPids(of: master), workers, "the worker was replaced")
        for c in held { c.close() }
        var status: Int?
        XCTAssertTrue(waitFor(3) {
            status = httpGet(self.port, "/")?.status
            return status == 200
        }, "no 200 after the held connections closed (last status \(status.map(String.init) ?? "none"))")
        XCTAssertLessThan(try timedGet(), 1)
        XCTAssertEqual(childPids(of: master), workers, "the worker was replaced")
        XCTAssertFalse((vigil?.errorLog() ?? "").contains("[emerg]"), vigil?.errorLog() ?? "")
    }
}

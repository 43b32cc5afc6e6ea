import Foundation
import TestHarness
import XCTest

/// Active checks on the real binary, against real peers on 127.0.0.1 (Vigil's own `return` servers), read back
/// through the status page and shmdump. Peers that misbehave and checker failover are in FaultTests.
final class HealthCheckTests: XCTestCase {
    var vigil: Vigil!
    var port: UInt16 = 0
    var live1: UInt16 = 0
    var live2: UInt16 = 0
    var dead: UInt16 = 0
    /// A second Vigil that plays the backends, so that killing it takes them away.
    var backends: Vigil!

    override func setUpWithError() throws {
        port = freePort(); live1 = freePort(); live2 = freePort(); dead = freePort()
        backends = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(live1); location / { return 200 "one\\n"; } location /health { return 503; } }
            server { listen 127.0.0.1:\(live2); location / { return 200 "two\\n"; } }
            """))
        vigil = try Vigil(config: config(type: "http"))
    }

    override func tearDown() {
        vigil.cleanup()
        backends.cleanup()
    }

    func config(type: String, workers: Int = 2, extra: String = "", interval: Int = 300) -> String {
        Vigil.config(workers: workers, http: """
            upstream app {
                server 127.0.0.1:\(live1);
                server 127.0.0.1:\(live2);
                server 127.0.0.1:\(dead);
                check interval=\(interval) rise=2 fall=2 timeout=500 type=\(type);
                \(extra)
            }
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; }
                location /status { check_status csv; }
            }
            """)
    }

    func statusRows() -> [String] {
        guard let r = httpGet(port, "/status"), r.status == 200 else { return [] }
        return r.body.split(separator: "\n").map(String.init)
    }

    func states() -> [String] { statusRows().map { $0.split(separator: ",").map(String.init)[3] } }

    func testHTTPChecksBringLivePeersUpAndKeepDeadOnesDown() throws {
        _ = try backends.start()
        let master = try vigil.start()
        // Before any check: every peer starts down (default_down=true) and requests get 502.
        XCTAssertTrue(waitFor(5) { self.states() == ["up", "up", "down"] }, "\(statusRows())")
        var seen = Set<String>()
        for _ in 0..<20 {
            let r = try XCTUnwrap(httpGet(port, "/"))
            XCTAssertEqual(r.status, 200)
            seen.insert(r.body)
        }
        XCTAssertEqual(seen, ["one\n", "two\n"], "the dead peer is never chosen")
        XCTAssertFalse(vigil.errorLog().contains("connect() failed (111: Connection refused) while connecting to upstream"),
                       "requests must not be sent to a peer known to be down")
        XCTAssertTrue(vigil.errorLog().contains("enable check peer: 127.0.0.1:\(live1) in upstream \"app\""))
        // shmdump agrees, once the dead peer (down from the start) has had its first probe, which may come
        // anywhere in its first interval, after the live peers' second.
        var peers: [[String: Any]] = []
        XCTAssertTrue(waitFor(5) {
            let dump = self.vigil.shmdump(["--json"])
            let obj = try? JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any]
            peers = obj?["peers"] as? [[String: Any]] ?? []
            return peers.count == 3 && (peers[2]["checks"] as? Int ?? 0) >= 1
        }, "\(peers)")
        XCTAssertEqual(peers.map { $0["state"] as? String }, ["up", "up", "down"])
        XCTAssertEqual(peers[2]["last_reason"] as? String, "connect() failed (111: Connection refused)")
        XCTAssertGreaterThan(peers[0]["checks"] as? Int ?? 0, 1)
        _ = master
    }

    func testHTTPStatusClassesAndSendString() throws {
        _ = try backends.start()
        try vigil.write(config: config(type: "http", extra: "check_http_send \"GET /health HTTP/1.0\\r\\n\\r\\n\";"))
        _ = try vigil.start()
        // live1 answers /health with 503: down under the default http_2xx http_3xx; live2 answers 200.
        XCTAssertTrue(waitFor(5) { self.states() == ["down", "up", "down"] }, "\(statusRows())")
        vigil.cleanup()
        vigil = try Vigil(config: config(type: "http", extra: "check_http_send \"GET /health HTTP/1.0\\r\\n\\r\\n\"; check_http_expect_alive http_5xx;"))
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.states() == ["up", "down", "down"] }, "\(statusRows())")
    }

    func testTCPChecksDetectAKilledPeerAndItsRecovery() throws {
        let backendMaster = try backends.start()
        try vigil.write(config: config(type: "tcp"))
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.states() == ["up", "up", "down"] }, "\(statusRows())")
        // Stop the backends: with fall=2 at 300 ms both go down within about a second.
        let stopped = Date()
        XCTAssertEqual(backends.vigil(["-s", "stop"]).status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(backendMaster) })
        XCTAssertTrue(waitFor(5) { self.states() == ["down", "down", "down"] }, "\(statusRows())")
        XCTAssertLessThan(Date().timeIntervalSince(stopped), 3.0)
        let r = try XCTUnwrap(httpGet(port, "/"))
        XCTAssertEqual(r.status, 502)
        XCTAssertTrue(vigil.errorLog().contains("no live upstreams while connecting to upstream"))
        XCTAssertTrue(vigil.errorLog().contains("disable check peer: 127.0.0.1:\(live1) in upstream \"app\""))
        // Bring them back: up again after rise=2.
        _ = try backends.start()
        XCTAssertTrue(waitFor(5) { self.states() == ["up", "up", "down"] }, "\(statusRows())")
    }

    func testOneCheckerForAllWorkers() throws {
        _ = try backends.start()
        try vigil.write(config: config(type: "tcp", workers: 4, interval: 1000))
        let master = try vigil.start()
        let workers = vigil.waitForWorkers(master, count: 4)
        XCTAssertTrue(waitFor(5) { self.states() == ["up", "up", "down"] })
        func checks() -> Int { ((vigil.shmdumpJSON()["peers"] as? [[String: Any]])?.first?["checks"] as? Int) ?? 0 }
        // About one probe per second per peer in total, not one per worker.
        let c0 = checks()
        usleep(3_000_000)
        let perSecond = Double(checks() - c0) / 3.0
        XCTAssertGreaterThan(perSecond, 0.6)
        XCTAssertLessThan(perSecond, 1.5, "each peer must be probed by one checker, not by all \(workers.count) workers")
        XCTAssertTrue(workers.contains(try XCTUnwrap(vigil.checkerPid())))
    }

    func testReloadKeepsPeerState() throws {
        _ = try backends.start()
        // interval=5000: the first probes land within a second, the next ones 5 s later.
        let conf = config(type: "tcp", interval: 5000).replacingOccurrences(of: "rise=2", with: "rise=1")
        try vigil.write(config: conf)
        let master = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.states() == ["up", "up", "down"] }, "\(statusRows())")
        // Reload twice: the states are carried over at once, long before the next probe is due.
        for generation in 2...3 {
            XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
            XCTAssertTrue(waitFor(5) { shmSegments(ofMaster: master) == ["vigil.\(master).\(generation)"] })
            XCTAssertTrue(waitFor(2) { (httpGet(self.port, "/status?format=json")?.body ?? "").contains("\"generation\": \(generation)") })
            XCTAssertEqual(states(), ["up", "up", "down"], "state must survive reload to generation \(generation)")
        }
    }
}

/// check_keepalive_requests: the reference module stops checking once it parks a connection (its bug #90);
/// Vigil reuses the connection for up to N checks and keeps checking.
final class KeepaliveCheckTests: XCTestCase {
    func testKeepaliveChecksReuseConnectionsAndKeepRunning() throws {
        let port = freePort(), backendPort = freePort(), statusPort = freePort()
        let backend = try Vigil(config: Vigil.config(workers: 1, http: """
            server { listen 127.0.0.1:\(backendPort); location / { return 200 "ok"; } }
            server { listen 127.0.0.1:\(statusPort); location / { stub_status; } }
            """))
        defer { backend.cleanup() }
        _ = try backend.start()
        func accepted() -> Int {
            guard let r = httpGet(statusPort, "/") else { return -1 }
            let lines = r.body.split(separator: "\n")
            return Int(lines[2].split(separator: " ")[0]) ?? -1
        }
        let before = accepted()
        let vigil = try Vigil(config: Vigil.config(workers: 2, http: """
            upstream app {
                server 127.0.0.1:\(backendPort);
                check interval=200 rise=1 fall=1 timeout=1000 type=http;
                check_http_send "GET / HTTP/1.1\\r\\nHost: health\\r\\n\\r\\n";
                check_keepalive_requests 100;
            }
            server { listen 127.0.0.1:\(port); location /status { check_status csv; } }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        func rise() -> Int {
            guard let r = httpGet(port, "/status"), let row = r.body.split(separator: "\n").first else { return -1 }
            return Int(row.split(separator: ",")[4]) ?? -1
        }
        XCTAssertTrue(waitFor(5) { rise() >= 3 })
        let r1 = rise()
        XCTAssertTrue(waitFor(5) { rise() >= r1 + 8 }, "keepalive checks stopped (rise stuck at \(rise()))")
        // ~10+ checks over one or two connections, not one connection per check. The status requests
        // themselves are separate connections to another port, counted there too: subtract them.
        let checks = rise()
        let connections = accepted() - before - 1
        XCTAssertGreaterThanOrEqual(checks, 11)
        XCTAssertLessThanOrEqual(connections, 3, "\(connections) connections for \(checks) checks")
    }
}

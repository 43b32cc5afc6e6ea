import Foundation
import TestHarness
import XCTest

/// What Vigil's checks do beyond the reference module: response matching, re-checks triggered by
/// failed traffic. Real peers: Vigil's own `return` servers and static files, on 127.0.0.1.
final class CheckExtensionTests: XCTestCase {
    var vigil: Vigil!
    var backends: Vigil!
    override func tearDown() {
        vigil?.cleanup()
        backends?.cleanup()
    }

    func csvRows(_ port: UInt16) -> [[String]] {
        guard let r = httpGet(port, "/status"), r.status == 200 else { return [] }
        return r.body.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
    }

    func shmdumpPeers() -> [[String: Any]] { vigil.shmdumpJSON()["peers"] as? [[String: Any]] ?? [] }

    func testBodyAndHeaderMatching() throws {
        let ok = freePort(), maint = freePort(), big = freePort(), port = freePort()
        backends = try Vigil(config: "")
        try FileManager.default.createDirectory(atPath: backends.prefix + "/html", withIntermediateDirectories: true)
        try String(repeating: "x", count: 70_000).write(toFile: backends.prefix + "/html/big.txt", atomically: true, encoding: .utf8)
        try backends.write(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(ok); location / { add_header X-Ready yes; return 200 "service OK\\n"; } }
            server { listen 127.0.0.1:\(maint); location / { add_header X-Ready no; return 200 "maintenance\\n"; } }
            server { listen 127.0.0.1:\(big); root html; }
            """))
        _ = try backends.start()
        let check = "check interval=300 rise=1 fall=1 timeout=1000 type=http;"
        vigil = try Vigil(config: Vigil.config(http: """
            upstream body_text { server 127.0.0.1:\(ok); server 127.0.0.1:\(maint); \(check) check_http_expect_body "OK"; }
            upstream body_regex { server 127.0.0.1:\(ok); server 127.0.0.1:\(maint); \(check) check_http_expect_body ~ "^service [A-Z]+$"; }
            upstream header { server 127.0.0.1:\(ok); server 127.0.0.1:\(maint); \(check) check_http_expect_header X-Ready "yes"; }
            upstream header_regex { server 127.0.0.1:\(ok); server 127.0.0.1:\(maint); \(check) check_http_expect_header x-ready ~ "^n"; }
            upstream large { server 127.0.0.1:\(big); \(check) check_http_send "GET /big.txt HTTP/1.0\\r\\n\\r\\n"; check_http_expect_body "x"; }
            server { listen 127.0.0.1:\(port); location /status { check_status csv; } }
            """))
        _ = try vigil.start()
        let expected = ["up", "down", "up", "down", "up", "down", "down", "up", "down"]
        XCTAssertTrue(waitFor(5) { self.csvRows(port).map { $0[3] } == expected }, "\(csvRows(port))")
        let reasons = ["-", "body mismatch", "-", "body mismatch", "-", "header mismatch", "header mismatch", "-", "body too large"]
        XCTAssertTrue(waitFor(5) { self.shmdumpPeers().map { $0["last_reason"] as? String ?? "?" } == reasons },
                      "\(shmdumpPeers().map { $0["last_reason"] as? String ?? "?" })")

        // `-t` refuses a regex that does not compile, with its file:line.
        try vigil.write(config: Vigil.config(http: "upstream u { server 127.0.0.1:1; check type=http; check_http_expect_body ~ \"(\"; }"))
        let r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("pcre2_compile() failed: missing closing parenthesis") && r.stderr.contains("\(vigil.confPath):10"), r.stderr)
    }

    /// `detail=1` in JSON and HTML, and the Prometheus page read back by the prometheus-client parser (strict:
    /// it refuses a malformed line, a bad escape, a sample without its family).
    func testDetailViewsAndPrometheus() throws {
        let ok = freePort(), failing = freePort(), dead = freePort(), port = freePort()
        backends = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(ok); return 200 "fine\\n"; }
            server { listen 127.0.0.1:\(failing); return 503; }
            """))
        _ = try backends.start()
        vigil = try Vigil(config: Vigil.config(http: """
            upstream app { server 127.0.0.1:\(ok); server 127.0.0.1:\(failing); server 127.0.0.1:\(dead);
                           check interval=300 rise=1 fall=1 timeout=1000 default_down=false type=http; }
            upstream "we\\"ird\\\\name" { server 127.0.0.1:\(dead); check interval=300 rise=1 fall=1 timeout=1000 type=tcp; }
            server { listen 127.0.0.1:\(port); location /status { check_status json; } }
            """))
        _ = try vigil.start()
        func servers(_ query: String) -> [[String: Any]] {
            guard let r = httpGet(port, "/status" + query), let obj = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                  let s = obj["servers"] as? [String: Any] else { return [] }
            return s["server"] as? [[String: Any]] ?? []
        }
        XCTAssertTrue(waitFor(5) {
            servers("").map { $0["status"] as? String } == ["up", "down", "down", "down"] && servers("?detail=1").allSatisfy { ($0["checks"] as? Int ?? 0) > 0 }
        })
        XCTAssertEqual(servers("").last?["upstream"] as? String, "we\"ird\\name")
        XCTAssertNil(servers("").first?["last_error"], "the default JSON stays the reference's")
        let detail = servers("?detail=1")
        XCTAssertEqual(detail.map { $0["last_error"] as? String }, [nil, "status 503", "connect() failed (111: Connection refused)", "connect() failed (111: Connection refused)"])
        XCTAssertTrue(detail[0]["last_error"] is NSNull)
        XCTAssertGreaterThan(detail[0]["checks"] as? Int ?? 0, 0)
        XCTAssertNotNil(detail[0]["last_rtt_ms"] as? Double)
        XCTAssertTrue(detail[0]["down_since"] is NSNull)
        let since = try XCTUnwrap(detail[1]["down_since"] as? Int, "\(detail[1])")
        XCTAssertLessThan(abs(Int(Date().timeIntervalSince1970) - since), 10)
        XCTAssertEqual(detail[2]["admin"] as? String, "ready")
        let html = try XCTUnwrap(httpGet(port, "/status?format=html&detail=1")).body
        XCTAssertTrue(html.contains("<th>Last error</th>") && html.contains("<td>status 503</td>"), html)

        let prom = try XCTUnwrap(httpGet(port, "/status?format=prometheus")).body
        let python = "/usr/bin/python3"
        try XCTSkipUnless(runCommand(python, ["-c", "import prometheus_client"]).status == 0,
                          "python3-prometheus-client is not installed (scripts/install-deps installs it)")
        let parsed = runCommand(python, ["-c", """
            import sys
            from prometheus_client.parser import text_string_to_metric_families
            for f in text_string_to_metric_families(sys.stdin.read()):
                for s in f.samples: print(s.name, s.labels.get("name", ""), s.value, repr(s.labels.get("upstream", "")))
            """], stdin: prom)
        XCTAssertEqual(parsed.status, 0, parsed.stderr)
        let samples = parsed.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        func value(_ metric: String, _ peer: UInt16) -> Double? {
            samples.first { $0.count >= 3 && $0[0] == metric && $0[1] == "127.0.0.1:\(peer)" && $0.last == "'app'" }.flatMap { Double($0[2]) }
        }
        // The escaped label comes back as the name it was: a quote and a backslash.
        XCTAssertTrue(parsed.stdout.contains(#"'we"ird\\name'"#), parsed.stdout)
        XCTAssertGreaterThan(value("nginx_upstream_server_checks_total", ok) ?? 0, 0, parsed.stdout)
        XCTAssertGreaterThan(value("nginx_upstream_server_failures_total", dead) ?? 0, 0)
        XCTAssertEqual(value("nginx_upstream_server_state_changes_total", failing), 1)
        XCTAssertEqual(value("nginx_upstream_server_active", ok), 1)
        XCTAssertNotNil(samples.first { $0.first == "nginx_upstream_checker_heartbeat_age_seconds" })
    }

    /// drain, maint and ready through `POST` to a check_status with `check_status_admin on`: what round robin and
    /// ip_hash then choose, each change in the error log with the client and both states, the refusals (405 from
    /// a read-only page with nothing changed, 403 from deny, 405, 404, 400), shmdump, and the state kept across a
    /// reload.
    func testDrainMaintReadyThroughTheAPI() throws {
        let live1 = freePort(), live2 = freePort(), port = freePort()
        backends = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(live1); return 200 "one"; }
            server { listen 127.0.0.1:\(live2); return 200 "two"; }
            """))
        _ = try backends.start()
        let check = "check interval=300 rise=1 fall=1 timeout=1000 type=tcp;"
        vigil = try Vigil(config: Vigil.config(workers: 2, http: """
            upstream app { server 127.0.0.1:\(live1); server 127.0.0.1:\(live2); \(check) }
            upstream sticky { ip_hash; server 127.0.0.1:\(live1); server 127.0.0.1:\(live2); \(check) }
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; }
                location /sticky { proxy_pass http://sticky; }
                location /status { check_status json; check_status_admin on; allow 127.0.0.1; deny all; }
                location /closed-status { check_status json; check_status_admin on; deny all; }
                location /read-only-status { check_status json; }
            }
            """))
        _ = try vigil.start()
        XCTAssertFalse(vigil.errorLog().contains("any client can change peer states"), vigil.errorLog())
        func bodies(_ path: String, _ n: Int = 12) -> Set<String> { Set((0..<n).compactMap { _ in httpGet(port, path)?.body }) }
        func post(_ query: String, path: String = "/status") -> HTTPResponse? {
            try? httpExchange(port, getRequest(path + "?" + query, headers: ["Connection: close"], method: "POST"), method: "POST")
        }
        XCTAssertTrue(waitFor(5) { self.shmdumpPeers().map { $0["state"] as? String } == ["up", "up", "up", "up"] })
        XCTAssertEqual(bodies("/"), ["one", "two"])

        let readOnly = post("upstream=app&server=127.0.0.1%3A\(live2)&state=maint", path: "/read-only-status")
        XCTAssertEqual(readOnly?.status, 405)
        XCTAssertEqual(readOnly?.header("Allow"), nil)
        XCTAssertEqual(shmdumpPeers().map { $0["admin"] as? String }, ["ready", "ready", "ready", "ready"])
        XCTAssertEqual(bodies("/"), ["one", "two"])

        let drained = post("upstream=app&server=127.0.0.1%3A\(live2)&state=drain")
        XCTAssertEqual(drained?.status, 200)
        XCTAssertEqual(drained.map { String(decoding: $0.body, as: UTF8.self) }, "{\"upstream\": \"app\", \"server\": \"127.0.0.1:\(live2)\", \"state\": \"drain\"}\n")
        XCTAssertEqual(bodies("/"), ["one"], "a draining peer took new requests")
        XCTAssertTrue(vigil.shmdump().stdout.contains("up (drain)"), vigil.shmdump().stdout)
        XCTAssertTrue(vigil.errorLog().contains("[notice]") && vigil.errorLog().contains(
            "server 127.0.0.1:\(live2) in upstream \"app\" changed from ready to drain by client 127.0.0.1"), vigil.errorLog())

        // ip_hash keeps sending this client where its key leads, draining or not; maint takes it away.
        let home = try XCTUnwrap(bodies("/sticky").first)
        XCTAssertEqual(bodies("/sticky"), [home])
        let homePort = home == "one" ? live1 : live2
        XCTAssertEqual(post("upstream=sticky&server=127.0.0.1:\(homePort)&state=drain")?.status, 200)
        XCTAssertEqual(bodies("/sticky"), [home], "a sticky client moved off a draining peer")
        XCTAssertEqual(post("upstream=sticky&server=127.0.0.1:\(homePort)&state=maint")?.status, 200)
        XCTAssertEqual(bodies("/sticky"), [home == "one" ? "two" : "one"])

        // The refusals.
        XCTAssertEqual(post("upstream=app&server=127.0.0.1:\(live2)&state=ready", path: "/closed-status")?.status, 403)
        XCTAssertEqual(try httpExchange(port, getRequest("/status?upstream=app", headers: ["Connection: close"], method: "PUT"), method: "PUT").status, 405)
        XCTAssertEqual(post("upstream=app&server=127.0.0.1:1&state=drain")?.status, 404)
        XCTAssertEqual(post("upstream=app&server=127.0.0.1:\(live2)&state=sleepy")?.status, 400)

        // The admin state outlives a reload (and the checks go on meanwhile).
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(5) { (self.vigil.shmdumpJSON()["generation"] as? Int ?? 0) >= 2 })
        let peers = vigil.shmdumpJSON()["peers"] as? [[String: Any]] ?? []
        XCTAssertEqual(peers.map { $0["admin"] as? String }, ["ready", "drain", home == "one" ? "maint" : "ready", home == "one" ? "ready" : "maint"])
        XCTAssertTrue(waitFor(3) { bodies("/") == ["one"] })
        XCTAssertEqual(post("upstream=app&server=127.0.0.1:\(live2)&state=ready")?.status, 200)
        XCTAssertTrue(waitFor(3) { bodies("/") == ["one", "two"] })
    }

    /// check_fail_open 50%: a check that marks every peer down (a wrong check_http_send) does not take the
    /// service offline; the switch is logged. Without it, the same upstream answers 502.
    func testFailOpenBalancesOverAllPeersPastTheThreshold() throws {
        let live1 = freePort(), live2 = freePort(), port = freePort()
        backends = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(live1); location / { return 200 "one"; } location /typo { return 404; } }
            server { listen 127.0.0.1:\(live2); location / { return 200 "two"; } location /typo { return 404; } }
            """))
        _ = try backends.start()
        let check = "check interval=300 rise=1 fall=1 timeout=1000 type=http; check_http_send \"GET /typo HTTP/1.0\\r\\n\\r\\n\";"
        vigil = try Vigil(config: Vigil.config(http: """
            upstream open { server 127.0.0.1:\(live1); server 127.0.0.1:\(live2); \(check) check_fail_open 50%; }
            upstream closed { server 127.0.0.1:\(live1); server 127.0.0.1:\(live2); \(check) }
            server {
                listen 127.0.0.1:\(port);
                location /open { proxy_pass http://open; }
                location /closed { proxy_pass http://closed; }
                location /status { check_status csv; }
            }
            """))
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.csvRows(port).allSatisfy { $0.count > 3 && $0[3] == "down" } && self.csvRows(port).count == 4 })
        XCTAssertEqual(httpGet(port, "/closed")?.status, 502)
        XCTAssertEqual(Set((0..<6).compactMap { _ in httpGet(port, "/open")?.body }), ["one", "two"])
        XCTAssertTrue(vigil.errorLog().contains("upstream \"open\": 2 of 2 checked peers are down, more than check_fail_open 50%: balancing over all of them"),
                      vigil.errorLog())
        try vigil.write(config: Vigil.config(http: "upstream u { server 127.0.0.1:1; check type=tcp; check_fail_open 150%; }"))
        let r = vigil.vigil(["-t"])
        XCTAssertTrue(r.stderr.contains("invalid value \"150%\", it must be a percentage from 0% to 100% in \(vigil.confPath):10"), r.stderr)
    }

    /// slow_start=4s: a peer that comes up gets a growing share of the requests, from about 1/17 to half.
    func testSlowStartRampsARecoveredPeer() throws {
        let live1 = freePort(), live2 = freePort(), port = freePort()
        backends = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(live1); return 200 \"one\"; }"))
        _ = try backends.start()
        let late = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(live2); return 200 \"two\"; }"))
        defer { late.cleanup() }
        vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            upstream app { server 127.0.0.1:\(live1); server 127.0.0.1:\(live2) slow_start=4s; check interval=100 rise=1 fall=1 timeout=500 type=tcp; }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://app; } location /status { check_status csv; } }
            """))
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.csvRows(port).map { $0[3] } == ["up", "down"] })
        _ = try late.start()
        XCTAssertTrue(waitFor(3) { self.csvRows(port).map { $0[3] } == ["up", "up"] })
        let upAt = Date()
        var samples: [(Double, Bool)] = []
        while Date().timeIntervalSince(upAt) < 4.5, samples.count < 20_000 {
            guard let b = httpGet(port, "/")?.body else { continue }
            samples.append((Date().timeIntervalSince(upAt), b == "two"))
        }
        func share(_ range: Range<Double>) -> Double {
            let s = samples.filter { range.contains($0.0) }
            return s.isEmpty ? -1 : Double(s.filter(\.1).count) / Double(s.count)
        }
        let early = share(0..<1), late2 = share(3.2..<4.5)
        XCTAssertLessThan(early, 0.25, "share in the first second: \(early)")
        XCTAssertGreaterThan(late2, 0.38, "share near the end of the window: \(late2)")
        XCTAssertGreaterThan(late2, early + 0.15)

        try vigil.write(config: Vigil.config(http: "upstream h { ip_hash; server 127.0.0.1:1 slow_start=10s; check type=tcp; } server { listen 127.0.0.1:\(freePort()); }"))
        let r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("[warn] \"slow_start\" is ignored by this balancing method in upstream \"h\" in \(vigil.confPath):10"), r.stderr)
    }

    /// check_state_file: a peer that was down starts down after a restart (not default_down=false's up), one that
    /// was up starts up (not default_down's down), the admin state comes back too; a garbage or truncated file
    /// is a warning, never fatal.
    func testStateFileAcrossARestart() throws {
        let live = freePort(), dead = freePort(), port = freePort()
        backends = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(live); return 200 \"live\"; }"))
        _ = try backends.start()
        let conf = Vigil.config(workers: 1, http: """
            check_state_file logs/check.state interval=1s;
            upstream a { server 127.0.0.1:\(dead); check interval=3000 rise=1 fall=1 timeout=500 default_down=false type=tcp; }
            upstream b { server 127.0.0.1:\(live); check interval=400 rise=3 fall=1 timeout=500 type=tcp; }
            server { listen 127.0.0.1:\(port); location /status { check_status json; check_status_admin on; allow 127.0.0.1; deny all; } }
            """)
        vigil = try Vigil(config: conf)
        _ = try vigil.start()
        func servers() -> [[String: Any]] {
            guard let r = httpGet(port, "/status?detail=1"), let obj = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                  let s = obj["servers"] as? [String: Any] else { return [] }
            return s["server"] as? [[String: Any]] ?? []
        }
        XCTAssertTrue(waitFor(8) { servers().map { $0["status"] as? String } == ["down", "up"] }, "\(servers())")
        let drain = try httpExchange(port, getRequest("/status?upstream=b&server=127.0.0.1:\(live)&state=drain", headers: ["Connection: close"], method: "POST"), method: "POST")
        XCTAssertEqual(drain.status, 200)
        XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
        let statePath = vigil.prefix + "/logs/check.state"
        XCTAssertTrue(waitFor(5) { self.vigil.masterPid() == nil })
        let saved = try String(contentsOfFile: statePath, encoding: .utf8)
        XCTAssertTrue(saved.hasPrefix("# vigil check state 1\n") && saved.hasSuffix("# end\n"), saved)

        _ = try vigil.start()
        let first = servers()
        XCTAssertEqual(first.map { $0["status"] as? String }, ["down", "up"], "the saved verdicts were not resumed")
        XCTAssertEqual(first.map { $0["admin"] as? String }, ["ready", "drain"])
        XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
        XCTAssertTrue(waitFor(5) { self.vigil.masterPid() == nil })

        for (content, reason) in [("garbage\n", "it is not a vigil check state file"),
                                  (String(saved.dropLast("# end\n".count)), "it is truncated"),
                                  ("# vigil check state 1\nnot a line\n# end\n", "line 2 is not a peer's state")] {
            try content.write(toFile: statePath, atomically: true, encoding: .utf8)
            _ = try vigil.start()
            // Not the saved drain: the peers start as new ones (probed at once, so their verdicts move within ms).
            XCTAssertEqual(servers().map { $0["admin"] as? String }, ["ready", "ready"], "defaults apply without a usable file")
            XCTAssertTrue(vigil.errorLog().contains("[warn]") && vigil.errorLog().contains("is not used: \(reason), peers start from default_down"), vigil.errorLog())
            XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
            XCTAssertTrue(waitFor(5) { self.vigil.masterPid() == nil })
        }
    }

    /// interval=10000 fall=1: a peer killed under traffic is down on the status page within about a second,
    /// because the worker whose request failed asks the checker to probe it at once.
    func testFailedTrafficTriggersARecheck() throws {
        let live1 = freePort(), live2 = freePort(), port = freePort()
        backends = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(live1); return 200 "one\\n"; }
            server { listen 127.0.0.1:\(live2); return 200 "two\\n"; }
            """))
        let backendMaster = try backends.start()
        vigil = try Vigil(config: Vigil.config(workers: 2, http: """
            upstream app { server 127.0.0.1:\(live1); server 127.0.0.1:\(live2); check interval=10000 rise=1 fall=1 timeout=1000 type=tcp; }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://app; } location /status { check_status csv; } }
            """))
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.csvRows(port).map { $0[3] } == ["up", "up"] }, "\(csvRows(port))")
        let checksBefore = shmdumpPeers().map { $0["checks"] as? Int ?? 0 }

        XCTAssertEqual(backends.vigil(["-s", "stop"]).status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(backendMaster) })
        let killed = Date()
        // A bounded request loop: the failures are what tells the checker.
        var sawBothDown = false
        for _ in 0..<200 {
            _ = httpGet(port, "/", timeout: 2)
            if csvRows(port).map({ $0[3] }) == ["down", "down"] { sawBothDown = true; break }
            usleep(10_000)
        }
        let detection = Date().timeIntervalSince(killed)
        XCTAssertTrue(sawBothDown, "\(csvRows(port))")
        XCTAssertLessThan(detection, 2.0, "detection took \(detection) s at interval=10000")
        // The flood cost at most one extra probe per peer per timeout.
        let extra = zip(shmdumpPeers().map { $0["checks"] as? Int ?? 0 }, checksBefore).map { $0 - $1 }
        XCTAssertTrue(extra.allSatisfy { $0 >= 1 && $0 <= 3 }, "extra probes per peer: \(extra)")
        XCTAssertEqual(httpGet(port, "/")?.status, 502)
    }
}

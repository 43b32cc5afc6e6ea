import Foundation
import TestHarness
import XCTest

/// NGINX Plus's upstream API on an upstream with a `state` file: servers added, changed and removed over HTTP
/// while a bounded request loop sees no failure, the file kept for a reload and a restart, writes refused where
/// the location does not allow them, and bad requests answered with 400 and the reason.
final class UpstreamAPITests: XCTestCase {
    var vigil: Vigil!
    var backends: Vigil!
    var port: UInt16 = 0, backend: UInt16 = 0

    override func setUpWithError() throws {
        port = freePort(); backend = freePort()
        backends = try loopbackBackends(port: backend)
    }

    override func tearDown() {
        vigil?.cleanup()
        backends?.cleanup()
    }

    func bodies(_ n: Int) -> [String: Int] { answersByBody(port, n) }

    func api(_ method: String, _ path: String, _ body: String? = nil) throws -> (status: Int, json: Any?) {
        var raw = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if let body { raw += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { raw += "\r\n" }
        let r = try httpExchange(port, raw, method: method)
        XCTAssertEqual(r.header("Content-Type"), "application/json")
        return (r.status, try? JSONSerialization.jsonObject(with: Data(r.text.utf8)))
    }

    func servers() throws -> [[String: Any]] {
        try XCTUnwrap(api("GET", "/api/9/http/upstreams/app/servers").json as? [[String: Any]])
    }

    func config(_ state: String, extra: String = "") -> String {
        Vigil.config(workers: 2, http: """
            upstream app {
                zone app 64k;
                state \(state);
                check interval=1000 rise=1 fall=1 timeout=1000 type=http;
            }
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; }
                location /api/ { api write=on; }
                location /ro/ { api; }
                \(extra)
            }
            """)
    }

    func testServersChangeOverTheAPIAndStayInTheStateFile() throws {
        vigil = try Vigil(config: "")
        // The workers write the file: its directory is theirs.
        let dir = vigil.prefix + "/state"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        let state = dir + "/app.state"
        try "server 127.0.0.1:\(backend); # id=0\n".write(toFile: state, atomically: true, encoding: .utf8)
        try vigil.write(config: config(state))
        var master = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.bodies(4) == ["1": 4] }, "\(bodies(4))\n\(vigil.errorLog())")

        // Added with a weight: in rotation once its first probe passes.
        let added = try api("POST", "/api/9/http/upstreams/app/servers", #"{"server":"127.0.0.2:\#(backend)","weight":3,"max_fails":2,"fail_timeout":"5s"}"#)
        XCTAssertEqual(added.status, 201)
        let doc = try XCTUnwrap(added.json as? [String: Any])
        XCTAssertEqual(doc["id"] as? Int, 1)
        XCTAssertEqual(doc["server"] as? String, "127.0.0.2:\(backend)")
        XCTAssertEqual(doc["weight"] as? Int, 3)
        XCTAssertEqual(doc["fail_timeout"] as? String, "5s")
        XCTAssertTrue(waitFor(5) { self.bodies(8).keys.sorted() == ["1", "2"] }, "\(bodies(8))\n\(vigil.errorLog())")
        XCTAssertEqual(try servers().map { $0["server"] as? String }, ["127.0.0.1:\(backend)", "127.0.0.2:\(backend)"])

        // Changes under a bounded request loop: a third added, the first drained, then removed. No request fails.
        var seen: [String: Int] = [:]
        func loop(_ n: Int) { for (k, v) in bodies(n) { seen[k, default: 0] += v } }
        XCTAssertEqual(try api("POST", "/api/9/http/upstreams/app/servers", #"{"server":"127.0.0.3:\#(backend)","max_conns":0}"#).status, 201)
        XCTAssertTrue(waitFor(5) { loop(4); return self.bodies(12).keys.contains("3") })
        XCTAssertEqual(try api("PATCH", "/api/9/http/upstreams/app/servers/0", #"{"down":true}"#).status, 200)
        XCTAssertTrue(waitFor(5) { loop(4); return !self.bodies(12).keys.contains("1") })
        let removed = try api("DELETE", "/api/9/http/upstreams/app/servers/0")
        XCTAssertEqual(removed.status, 200)
        XCTAssertEqual((removed.json as? [[String: Any]])?.map { $0["id"] as? Int }, [1, 2])
        loop(20)
        XCTAssertEqual(Set(seen.keys).subtracting(["1", "2", "3"]), [], "every request of the changes was answered: \(seen)")
        XCTAssertEqual(Set(bodies(20).keys), ["2", "3"])
        let one = try httpExchange(port, getRequest("/api/9/http/upstreams/app/servers/2", headers: ["Connection: close"]))
        XCTAssertEqual(one.text, #"{"id":2,"server":"127.0.0.3:\#(backend)","weight":1,"max_conns":0,"max_fails":1,"fail_timeout":"10s","#
                       + #""slow_start":"0s","route":"","backup":false,"down":false}"# + "\n")

        // Bad requests: the reason, and nothing changes.
        func refused(_ method: String, _ path: String, _ body: String?, _ status: Int, _ code: String, _ line: UInt = #line) throws {
            let r = try api(method, path, body)
            XCTAssertEqual(r.status, status, line: line)
            XCTAssertEqual(((r.json as? [String: Any])?["error"] as? [String: Any])?["code"] as? String, code, line: line)
        }
        try refused("POST", "/api/9/http/upstreams/app/servers", #"{"server":"backend.example:80"}"#, 400, "UpstreamConfFormatError")
        try refused("POST", "/api/9/http/upstreams/app/servers", #"{"weight":2}"#, 400, "UpstreamConfFormatError")
        try refused("POST", "/api/9/http/upstreams/app/servers", "weight=2", 400, "UpstreamConfFormatError")
        try refused("POST", "/api/9/http/upstreams/app/servers", #"{"server":"127.0.0.9:1","colour":"red"}"#, 400, "UpstreamConfFormatError")
        try refused("POST", "/api/9/http/upstreams/app/servers", #"{"server":"127.0.0.2:\#(backend)"}"#, 409, "UpstreamServerExists")
        try refused("PATCH", "/api/9/http/upstreams/app/servers/7", #"{"weight":2}"#, 404, "UpstreamServerNotFound")
        try refused("PATCH", "/api/9/http/upstreams/app/servers/1", #"{"backup":"yes"}"#, 400, "UpstreamConfFormatError")
        try refused("GET", "/api/9/http/upstreams/nope/servers", nil, 404, "UpstreamNotFound")
        try refused("DELETE", "/ro/9/http/upstreams/app/servers/1", nil, 405, "MethodDisabled")
        XCTAssertEqual(try api("GET", "/ro/9/http/upstreams/app/servers").status, 200)
        XCTAssertEqual(try servers().count, 2)
        // A backup serves only when the primaries cannot.
        XCTAssertEqual(try api("PATCH", "/api/9/http/upstreams/app/servers/1", #"{"backup":true}"#).status, 200)
        XCTAssertTrue(waitFor(5) { self.bodies(10) == ["3": 10] }, "\(bodies(10))")
        XCTAssertEqual(try api("PATCH", "/api/9/http/upstreams/app/servers/1", #"{"backup":false}"#).status, 200)
        XCTAssertTrue(waitFor(5) { Set(self.bodies(12).keys) == ["2", "3"] }, "\(bodies(12))")

        // The file is what a reload and a restart start from.
        try vigil.write(config: config(state, extra: "location /other { return 204; }"))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        var during: [String: Int] = [:]
        XCTAssertTrue(waitFor(5, interval: 1_000) {
            for (k, v) in self.bodies(2) { during[k, default: 0] += v }
            return shmSegments(ofMaster: master) == ["vigil.\(master).2"]
        })
        for (k, v) in bodies(10) { during[k, default: 0] += v }
        XCTAssertEqual(Set(during.keys), ["2", "3"], "through the reload: \(during)")
        XCTAssertEqual(Set(bodies(20).keys), ["2", "3"])
        XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
        XCTAssertTrue(waitFor(10) { !processAlive(master) })
        master = try vigil.start()
        XCTAssertTrue(waitFor(5) { Set(self.bodies(12).keys) == ["2", "3"] }, "\(bodies(12))\n\(vigil.errorLog())")
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }

    func testStateDirectiveRules() throws {
        vigil = try Vigil(config: "")
        let bad = vigil.prefix + "/bad.state"
        try "server backend.example:80;\n".write(toFile: bad, atomically: true, encoding: .utf8)
        for (body, message) in [
            ("zone u 64k; state \(vigil.prefix)/x.state; server 127.0.0.1:1;", "\"state\" is incompatible with \"server\" in upstream \"u\""),
            ("state \(vigil.prefix)/x.state;", "\"state\" requires \"zone\" in upstream \"u\""),
            ("zone u 64k; state \(bad);", "state file \"\(bad)\": invalid server line at line 1"),
        ] {
            try vigil.write(config: Vigil.config(http: "upstream u { \(body) }\nserver { listen 127.0.0.1:\(port); location / { proxy_pass http://u; } }"))
            let r = vigil.vigil(["-t"])
            XCTAssertEqual(r.status, 1)
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
        }
    }
}

import Foundation
import TestHarness
import XCTest

/// limit_req and limit_conn on the real binary with two workers: the zones are shared, so whichever worker
/// takes a request counts it against the same bucket or connection count. Each request on a fresh connection
/// lets both workers take some; `$pid` says which one answered.
final class LimitTests: XCTestCase {
    var vigil: Vigil!
    var port: UInt16 = 0
    var master: Int32 = 0
    var silent: RawServer!

    func config(keptZone: String = "limit_req_zone $binary_remote_addr zone=kept:1m rate=1r/m;") -> String {
        Vigil.config(workers: 2, workerConnections: 1024, http: """
            limit_req_zone $binary_remote_addr zone=rate:1m rate=1r/m;
            limit_req_zone $binary_remote_addr zone=fast:1m rate=10r/s;
            limit_req_zone $binary_remote_addr zone=fast2:1m rate=10r/s;
            limit_req_zone $binary_remote_addr zone=paced:1m rate=2r/s;
            \(keptZone)
            limit_conn_zone $binary_remote_addr zone=conn:1m;
            limit_conn_zone $arg_k zone=small:32k;
            server {
                listen 127.0.0.1:\(port);
                root html;
                add_header X-Pid $pid always;
                add_header X-Req $limit_req_status always;
                add_header X-Conn $limit_conn_status always;
                location /rate { limit_req zone=rate burst=4 nodelay; }
                location /burst { limit_req zone=fast burst=5; }
                location /nodelay { limit_req zone=fast2 burst=1 nodelay; }
                location /delay { limit_req zone=paced burst=3 delay=1; }
                location /kept { limit_req zone=kept; }
                location /conn/ { limit_conn conn 1; proxy_pass http://127.0.0.1:\(silent.port)/; }
                location /held { limit_conn small 1; limit_rate 1k; }
                location /probe { limit_conn small 1; }
            }
            """)
    }

    override func setUpWithError() throws {
        silent = try RawServer(.silent)
        port = freePort()
        vigil = try Vigil(config: config())
        try vigil.htmlRoot(["rate", "burst", "nodelay", "delay", "kept", "probe"].map { ($0, Array("ok\n".utf8)) }
                           + [("held", [UInt8](repeating: 0x61, count: 200_000))])
        master = try vigil.start()
        XCTAssertEqual(vigil.waitForWorkers(master, count: 2).count, 2)
    }

    override func tearDown() {
        vigil.cleanup()
        silent.stop()
    }

    func get(_ path: String, on c: HTTPConnection? = nil) throws -> HTTPResponse {
        let conn = try c ?? HTTPConnection(port: port)
        try conn.send(getRequest(path, headers: c == nil ? ["Connection: close"] : []))
        return try conn.readResponse()
    }

    /// Requests `path` on fresh connections until both workers answered at least `each` times (at most 300).
    func fromBothWorkers(_ path: String, each: Int = 3) throws -> [HTTPResponse] {
        var answers: [HTTPResponse] = []
        while answers.count < 300 {
            answers.append(try get(path))
            let byPid = Dictionary(grouping: answers) { $0.header("X-Pid") ?? "" }
            if byPid.count == 2 && byPid.values.allSatisfy({ $0.count >= each }) { break }
        }
        XCTAssertEqual(Set(answers.map { $0.header("X-Pid") ?? "" }).count, 2, "both workers answered")
        return answers
    }

    func testTheRateHoldsAcrossWorkers() throws {
        // 1r/m with burst=4 nodelay: a key's first request and four more pass, whichever workers take them.
        let answers = try fromBothWorkers("/rate")
        XCTAssertEqual(answers.filter { $0.status == 200 }.count, 5, "\(answers.map(\.status))")
        XCTAssertEqual(answers.prefix(5).map(\.status), [200, 200, 200, 200, 200])
        XCTAssertTrue(answers.dropFirst(5).allSatisfy { $0.status == 503 && $0.header("X-Req") == "REJECTED" })
        XCTAssertTrue(vigil.errorLog().contains("[error]"), vigil.errorLog())
        XCTAssertTrue(vigil.errorLog().contains("limiting requests, excess: 5.000 by zone \"rate\", client: 127.0.0.1"), vigil.errorLog())
    }

    func testBurstDelaysOnTheLoopNodelayAndDelayPassAtOnce() throws {
        let c = try HTTPConnection(port: port)
        // 10r/s: a second request at once waits 100 ms for the bucket to drain.
        XCTAssertEqual(try get("/burst", on: c).header("X-Req"), "PASSED")
        var start = Date()
        let delayed = try get("/burst", on: c)
        XCTAssertEqual(delayed.status, 200)
        XCTAssertEqual(delayed.header("X-Req"), "DELAYED")
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 0.07)
        // nodelay: within the burst at once, past it refused.
        XCTAssertEqual(try get("/nodelay", on: c).header("X-Req"), "PASSED")
        start = Date()
        XCTAssertEqual(try get("/nodelay", on: c).header("X-Req"), "PASSED")
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.07)
        XCTAssertEqual(try get("/nodelay", on: c).status, 503)
        // 2r/s, delay=1: the second request passes at once, the third waits about 500 ms.
        XCTAssertEqual(try get("/delay", on: c).header("X-Req"), "PASSED")
        XCTAssertEqual(try get("/delay", on: c).header("X-Req"), "PASSED")
        start = Date()
        XCTAssertEqual(try get("/delay", on: c).header("X-Req"), "DELAYED")
        let waited = Date().timeIntervalSince(start)
        XCTAssertTrue((0.35...2).contains(waited), "\(waited)")
        XCTAssertTrue(vigil.errorLog().contains("[warn]"), vigil.errorLog())
        XCTAssertTrue(vigil.errorLog().contains("delaying request, excess: "), vigil.errorLog())
        // A delayed request does not block its worker: while one waits, the others answer at once.
        let waiting = try HTTPConnection(port: port)
        try waiting.send(getRequest("/delay"))
        start = Date()
        for i in 0..<10 { XCTAssertEqual(try get("/probe?k=x\(i)").status, 200) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.4)
        XCTAssertEqual(try waiting.readResponse().header("X-Req"), "DELAYED")
    }

    func testLimitConnCountsSlowRequestsOfEveryWorker() throws {
        let held = try HTTPConnection(port: port)
        try held.send(getRequest("/conn/"))
        XCTAssertTrue(waitFor(5) { self.silent.accepted == 1 })
        for r in try fromBothWorkers("/conn/") {
            XCTAssertEqual(r.status, 503)
            XCTAssertEqual(r.header("X-Conn"), "REJECTED")
        }
        XCTAssertTrue(vigil.errorLog().contains("limiting connections by zone \"conn\""), vigil.errorLog())
        // The client goes away: its request ends and no longer counts, in either worker.
        held.close()
        XCTAssertTrue(waitFor(5) { self.silent.openConnections == 0 })
        let next = try HTTPConnection(port: port)
        try next.send(getRequest("/conn/"))
        XCTAssertTrue(waitFor(5) { self.silent.accepted == 2 }, "the next request was not let through")
    }

    func testReloadKeepsAZoneOfTheSameNameAndSize() throws {
        XCTAssertEqual(try get("/kept").status, 200)
        XCTAssertEqual(try get("/kept").status, 503)
        try reload()
        XCTAssertEqual(try get("/kept").status, 503, "the new workers share the old ones' bucket")
        // Another key in the same zone: nginx refuses the reload, and the running configuration goes on.
        try vigil.write(config: config(keptZone: "limit_req_zone $remote_addr zone=kept:1m rate=1r/m;"))
        let before = Set(childPids(of: master))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(5) {
            self.vigil.errorLog().contains("limit_req \"kept\" uses the \"$remote_addr\" key while previously it used the \"$binary_remote_addr\" key")
        }, vigil.errorLog())
        XCTAssertEqual(Set(childPids(of: master)), before)
        XCTAssertEqual(try get("/kept").status, 503)
        // Another size is another zone: it starts empty.
        try vigil.write(config: config(keptZone: "limit_req_zone $binary_remote_addr zone=kept:2m rate=1r/m;"))
        try reload()
        XCTAssertEqual(try get("/kept").status, 200)
    }

    func testAFullZoneRefusesNewKeysAndSaysSo() throws {
        // 32k holds 479 limit_conn nodes ((32768 - 192) / 68): as many requests, each with its own key, held by limit_rate.
        var held: [HTTPConnection] = []
        for i in 0..<479 {
            let c = try HTTPConnection(port: port)
            try c.send(getRequest("/held?k=\(i)"))
            held.append(c)
        }
        // Each has its status line once it is counted (before its paced body).
        for c in held {
            var line = [UInt8](repeating: 0, count: 12)
            XCTAssertEqual(recv(c.fd, &line, 12, Int32(MSG_WAITALL)), 12)
            XCTAssertEqual(String(decoding: line, as: UTF8.self), "HTTP/1.1 200")
        }
        let full = try get("/probe?k=new")
        XCTAssertEqual(full.status, 503)
        XCTAssertEqual(full.header("X-Conn"), "REJECTED")
        XCTAssertTrue(vigil.errorLog().contains("[crit]"), vigil.errorLog())
        XCTAssertTrue(vigil.errorLog().contains("ngx_slab_alloc() failed: no memory in limit_conn_zone \"small\""))
        for c in held { c.close() }
        XCTAssertTrue(waitFor(10) { (try? self.get("/probe?k=new").status) == 200 })
    }

    func testTheZonesAreCheckedAsNginxChecksThem() throws {
        let t = try Vigil(config: Vigil.config(http: "limit_req_zone $binary_remote_addr zone=one:16k rate=1r/s;"))
        defer { t.cleanup() }
        let small = t.vigil(["-t"]).stderr
        XCTAssertTrue(small.contains("[emerg] zone \"zone=one:16k\" is too small in \(t.confPath):"), small)
        try t.write(config: Vigil.config(http: "limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s sync;"))
        let sync = t.vigil(["-t"]).stderr
        // nginx 1.22's limit_req_zone takes three arguments: NGINX Plus's `sync` is one too many.
        XCTAssertTrue(sync.contains("[emerg] invalid number of arguments in \"limit_req_zone\" directive in \(t.confPath):"), sync)
        try t.write(config: Vigil.config(http: "server { listen 127.0.0.1:1; location / { limit_req zone=nowhere; } }"))
        let zero = t.vigil(["-t"])
        XCTAssertTrue(zero.stderr.contains("syntax is ok"), zero.stderr)
        XCTAssertTrue(zero.stderr.contains("[emerg] zero size shared memory zone \"nowhere\"\n"), zero.stderr)
    }

    private func reload() throws {
        let before = Set(childPids(of: master))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(10) { let now = Set(childPids(of: self.master)); return now.count == 2 && now.isDisjoint(with: before) })
    }
}

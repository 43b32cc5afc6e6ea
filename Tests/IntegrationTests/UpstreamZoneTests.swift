import Foundation
import TestHarness
import XCTest

/// `zone` and `random` on the real binary with two workers: Vigil's own `return` servers as backends, a
/// closed port as a failing peer, silent raw peers as busy ones. Each request comes on a fresh connection,
/// so both workers take some; `$pid` says which one answered.
final class UpstreamZoneTests: XCTestCase {
    var vigil: Vigil!
    var proxy: UInt16 = 0
    let good = freePort(), dead = freePort(), heavy = freePort(), light = freePort()
    var silent: RawServer!, busy: RawServer!

    var master: Int32 = 0

    override func setUpWithError() throws {
        silent = try RawServer(.silent)
        busy = try RawServer(.silent)
        proxy = freePort()
        vigil = try Vigil(config: Vigil.config(workers: 2, http: """
            upstream failing { zone failing 64k; server 127.0.0.1:\(dead) fail_timeout=60s; server 127.0.0.1:\(good); }
            upstream failing_alone { server 127.0.0.1:\(dead) fail_timeout=60s; server 127.0.0.1:\(good); }
            upstream limited { zone limited 64k; server 127.0.0.1:\(silent.port) max_conns=1; server 127.0.0.1:\(good); }
            upstream weighted { zone weighted 64k; random; server 127.0.0.1:\(heavy) weight=3; server 127.0.0.1:\(light); }
            upstream two { zone weighted; random two least_conn; server 127.0.0.1:\(busy.port); server 127.0.0.1:\(good); }
            server { listen 127.0.0.1:\(good); return 200 "good"; }
            server { listen 127.0.0.1:\(heavy); return 200 "heavy"; }
            server { listen 127.0.0.1:\(light); return 200 "light"; }
            server {
                listen 127.0.0.1:\(proxy);
                add_header X-Pid $pid always;
                add_header X-Upstream $upstream_addr always;
                location /failing/ { proxy_pass http://failing/; }
                location /failing_alone/ { proxy_pass http://failing_alone/; }
                location /limited/ { proxy_pass http://limited/; }
                location /weighted/ { proxy_pass http://weighted/; }
                location /two/ { proxy_pass http://two/; }
            }
            """))
        master = try vigil.start()
        XCTAssertEqual(vigil.waitForWorkers(master, count: 2).count, 2)
    }

    override func tearDown() {
        vigil.cleanup()
        silent.stop()
        busy.stop()
    }

    /// One request on its own connection: (worker pid, $upstream_addr, body).
    func get(_ path: String, timeout: Int = 5) throws -> (pid: String, upstream: String, body: String) {
        let c = try HTTPConnection(port: proxy, timeout: timeout)
        try c.send(getRequest(path, headers: ["Connection: close"]))
        let r = try c.readResponse()
        return (r.header("X-Pid") ?? "", r.header("X-Upstream") ?? "", r.text)
    }

    /// Requests `path` until both workers have answered at least `each` times (at most 300 requests).
    func fromBothWorkers(_ path: String, each: Int = 3) throws -> [(pid: String, upstream: String, body: String)] {
        var answers: [(pid: String, upstream: String, body: String)] = []
        while answers.count < 300 {
            answers.append(try get(path))
            let byPid = Dictionary(grouping: answers, by: \.pid)
            if byPid.count == 2 && byPid.values.allSatisfy({ $0.count >= each }) { break }
        }
        XCTAssertEqual(Set(answers.map(\.pid)).count, 2, "both workers answered")
        return answers
    }

    func testAFailureThroughOneWorkerIsSkippedByTheOther() throws {
        // Round robin's first choice in a worker is the first server: the dead one (max_fails=1).
        let first = try get("/failing/")
        XCTAssertEqual(first.upstream, "127.0.0.1:\(dead), 127.0.0.1:\(good)")
        XCTAssertEqual(first.body, "good")
        for a in try fromBothWorkers("/failing/") {
            XCTAssertEqual(a.upstream, "127.0.0.1:\(good)", "worker \(a.pid) tried the peer worker \(first.pid) saw fail")
        }
        // Without zone the other worker learns it for itself: its first request tries the dead peer too.
        let alone = try fromBothWorkers("/failing_alone/", each: 1)
        let triedDead = Set(alone.filter { $0.upstream.hasPrefix("127.0.0.1:\(dead)") }.map(\.pid))
        XCTAssertEqual(triedDead.count, 2, "each worker failed on its own: \(alone.map(\.upstream))")
    }

    func testMaxConnsCountsEveryWorkersConnections() throws {
        // A request that the silent peer holds: max_conns=1 is reached, whichever worker took it.
        let held = try HTTPConnection(port: proxy)
        try held.send(getRequest("/limited/"))
        XCTAssertTrue(waitFor(5) { self.silent.accepted == 1 })
        for a in try fromBothWorkers("/limited/") {
            XCTAssertEqual(a.upstream, "127.0.0.1:\(good)", "worker \(a.pid) went past max_conns")
        }
        XCTAssertEqual(silent.accepted, 1)
        // The client goes away: its upstream connection closes and no longer counts, in either worker.
        held.close()
        XCTAssertTrue(waitFor(5) { self.silent.openConnections == 0 })
        var waiting: [HTTPConnection] = []
        while silent.accepted < 2 && waiting.count < 8 {
            let c = try HTTPConnection(port: proxy)
            try c.send(getRequest("/limited/"))
            waiting.append(c)
            _ = waitFor(0.5) { self.silent.accepted == 2 }
        }
        XCTAssertEqual(silent.accepted, 2, "the peer was not chosen again once its connection closed")
    }

    func testRandomFollowsTheWeights() throws {
        var heavyCount = 0
        for _ in 0..<400 {
            let a = try get("/weighted/")
            XCTAssertTrue(["heavy", "light"].contains(a.body), a.body)
            if a.body == "heavy" { heavyCount += 1 }
        }
        // weight=3 against 1: 300 of 400 expected; ±60 is seven standard deviations.
        XCTAssertTrue((240...360).contains(heavyCount), "heavy answered \(heavyCount) of 400")
    }

    func testRandomTwoLeastConnPrefersTheIdlePeer() throws {
        // The busy peer holds each request it gets; once it holds one, every choice compares it with the idle
        // peer and takes the idle one, in both workers.
        var answered = 0, held: [HTTPConnection] = []
        for _ in 0..<20 {
            // A worker counts the idle peer's connection off just after the client has the response: let it,
            // or the other worker may see one connection on each peer, a tie.
            usleep(50_000)
            let c = try HTTPConnection(port: proxy, timeout: 2)
            try c.send(getRequest("/two/", headers: ["Connection: close"]))
            if let r = try? c.readResponse() {
                XCTAssertEqual(r.text, "good")
                answered += 1
            } else {
                held.append(c)
            }
        }
        XCTAssertEqual(busy.accepted, 1, "only one request went to the busy peer")
        XCTAssertEqual(answered, 19)
    }

    /// As nginx maps its upstream zones anew on every reload, the new generation's workers start with no
    /// failures: the peer that failed is tried again once.
    func testReloadStartsTheZoneAfresh() throws {
        XCTAssertEqual(try get("/failing/").upstream, "127.0.0.1:\(dead), 127.0.0.1:\(good)")
        XCTAssertEqual(try get("/failing/").upstream, "127.0.0.1:\(good)")
        let before = Set(childPids(of: master))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(10) { let now = Set(childPids(of: self.master)); return now.count == 2 && now.isDisjoint(with: before) })
        XCTAssertEqual(try get("/failing/").upstream, "127.0.0.1:\(dead), 127.0.0.1:\(good)")
    }

    /// `-t` checks the zones after the syntax, as nginx checks them when it maps them.
    func testZonesWithoutSizeOrRoomFailTheTest() throws {
        let t = try Vigil(config: Vigil.config(http: "upstream a { zone z; server 127.0.0.1:1; }"))
        defer { t.cleanup() }
        let zero = t.vigil(["-t"])
        XCTAssertEqual(zero.status, 1)
        XCTAssertTrue(zero.stderr.contains("syntax is ok"), zero.stderr)
        XCTAssertTrue(zero.stderr.contains("[emerg] zero size shared memory zone \"z\"\n"), zero.stderr)
        XCTAssertTrue(zero.stderr.contains("test failed"), zero.stderr)
        // 32k holds 512 peers' records.
        let servers = (1...513).map { "server 127.0.0.1:\($0);" }.joined(separator: " ")
        try t.write(config: Vigil.config(http: "upstream a {\nzone z 32k; \(servers) }"))
        let full = t.vigil(["-t"])
        XCTAssertEqual(full.status, 1)
        XCTAssertTrue(full.stderr.contains("[emerg] no memory in upstream zone \"z\": its 513 peers need 32832 bytes in \(t.confPath):"),
                      full.stderr)
    }
}

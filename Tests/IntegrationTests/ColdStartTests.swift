import Foundation
import TestHarness
import XCTest

/// Peers new to the check table (issue 28, item 3): probed at once, and a request that finds no live peer while
/// their first round is under way waits for it (at most the check's timeout) instead of getting a 502. With the
/// reference module's defaults, a cold start used to answer 502 for about 15 s.
final class ColdStartTests: XCTestCase {
    var vigil: Vigil!
    var backends: Vigil!
    var port: UInt16 = 0, live1: UInt16 = 0, live2: UInt16 = 0, dead: UInt16 = 0

    /// The check module's defaults, spelled out (a bare `check;` is refused, as by the reference).
    static let defaults = "check interval=30000 rise=2 fall=5 timeout=1000 type=http;"

    override func setUpWithError() throws {
        port = freePort(); live1 = freePort(); live2 = freePort(); dead = freePort()
        backends = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(live1); location / { return 200 "one\\n"; } }
            server { listen 127.0.0.1:\(live2); location / { return 200 "two\\n"; } }
            """))
        _ = try backends.start()
        XCTAssertTrue(waitFor(5) { canConnect(self.live1) && canConnect(self.live2) })
    }

    override func tearDown() {
        vigil?.cleanup()
        backends.cleanup()
    }

    func config(_ upstreams: String, locations: String = "") -> String {
        Vigil.config(workers: 2, http: """
            \(upstreams)
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; }
                \(locations)
                location /status { check_status csv; }
            }
            """)
    }

    func states() -> [String] {
        guard let r = httpGet(port, "/status"), r.status == 200 else { return [] }
        return r.body.split(separator: "\n").map { String($0.split(separator: ",")[3]) }
    }

    /// Sends requests to `path` one after another for `seconds`; the statuses seen, by count.
    func statuses(_ path: String, for seconds: TimeInterval) -> [Int: Int] {
        var seen: [Int: Int] = [:]
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { seen[httpGet(port, path)?.status ?? 0, default: 0] += 1 }
        return seen
    }

    /// The target: the module's defaults, one dead peer of three. The first request after the listener
    /// opens is a 200 within 1 s, and none fails in the first seconds; the live peers passed rise=2 probes.
    func testColdStartWithTheModuleDefaultsAnswersAtOnce() throws {
        vigil = try Vigil(config: config("""
            upstream app { server 127.0.0.1:\(live1); server 127.0.0.1:\(dead); server 127.0.0.1:\(live2); \(Self.defaults) }
            """))
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5, interval: 1_000) { canConnect(self.port) })
        let opened = Date()
        let first = httpGet(port, "/")
        let firstAnswer = Date().timeIntervalSince(opened)
        XCTAssertEqual(first?.status, 200, "\(vigil.errorLog())")
        XCTAssertLessThan(firstAnswer, 1.0)
        let seen = statuses("/", for: 3)
        XCTAssertEqual(seen.keys.sorted(), [200], "every request of the first seconds: \(seen)")
        XCTAssertGreaterThan(seen[200] ?? 0, 20)
        XCTAssertEqual(states(), ["up", "down", "up"])
        let rows = httpGet(port, "/status")?.body.split(separator: "\n").map { $0.split(separator: ",").map(String.init) } ?? []
        XCTAssertEqual(rows.first?[4], "2", "up after rise=2 passes: \(rows)")
        XCTAssertFalse(vigil.errorLog().contains("no live upstreams"))
        print("cold start, module defaults, 1 dead peer of 3: first 200 after \(Int(firstAnswer * 1000)) ms, then \(seen) in 3 s")
    }

    /// A request waits only while a first round is undecided, and never longer than the check's timeout: peers
    /// that refuse decide at once (a quick 502), a peer that never answers its probe decides at the timeout.
    func testWaitingForFirstVerdictsIsBoundedByTheTimeout() throws {
        let silent = try XCTUnwrap(loopbackSocket(listening: 16), "a listener that never accepts")
        defer { close(silent.fd) }
        vigil = try Vigil(config: config("""
            upstream app { server 127.0.0.1:\(dead); check interval=30000 rise=2 fall=5 timeout=600 type=http; }
            upstream hung { server 127.0.0.1:\(silent.port); check interval=30000 rise=2 fall=5 timeout=600 type=http; }
            """, locations: "location /hung { proxy_pass http://hung; }"))
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5, interval: 1_000) { canConnect(self.port) })
        var started = Date()
        XCTAssertEqual(httpGet(port, "/hung")?.status, 502)
        let hung = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(hung, 0.3, "held while the silent peer's first probe runs")
        XCTAssertLessThan(hung, 1.5, "for at most the check's timeout")
        started = Date()
        XCTAssertEqual(httpGet(port, "/")?.status, 502)
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.5, "a refused first probe decides at once")
        XCTAssertTrue(vigil.errorLog().contains("no live upstreams while connecting to upstream"))
    }

    /// A reload fast-tracks only the peers it adds: a carried peer keeps its verdict and counters, a new peer of
    /// the same upstream and a new upstream's peer are up well within a second, and no request gets a 502.
    func testReloadFastTracksOnlyNewPeers() throws {
        vigil = try Vigil(config: config("""
            upstream app { server 127.0.0.1:\(live1); server 127.0.0.1:\(dead); \(Self.defaults) }
            """))
        let master = try vigil.start()
        XCTAssertTrue(waitFor(3) { self.states() == ["up", "down"] })
        try vigil.write(config: config("""
            upstream app { server 127.0.0.1:\(live1); server 127.0.0.1:\(dead); server 127.0.0.1:\(live2); \(Self.defaults) }
            upstream fresh { server 127.0.0.1:\(live2); \(Self.defaults) }
            """, locations: "location /fresh { proxy_pass http://fresh; }"))
        let reloaded = Date()
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        var fresh: [Int: Int] = [:]
        XCTAssertTrue(waitFor(3, interval: 1_000) {
            fresh[httpGet(self.port, "/fresh")?.status ?? 0, default: 0] += 1
            return fresh[200] != nil
        }, "\(fresh)")
        XCTAssertLessThan(Date().timeIntervalSince(reloaded), 1.5)
        XCTAssertNil(fresh[502], "\(fresh)")
        XCTAssertTrue(waitFor(1) { self.states() == ["up", "down", "up", "up"] }, "\(self.states())")
        XCTAssertTrue(waitFor(5) { shmSegments(ofMaster: master) == ["vigil.\(master).2"] })
        let seen = statuses("/", for: 1)
        XCTAssertEqual(seen.keys.sorted(), [200], "\(seen)")
        // The carried peers kept their counters: the live one its rise=2 (a new peer's would have restarted at 0).
        let rows = httpGet(port, "/status")?.body.split(separator: "\n").map { $0.split(separator: ",").map(String.init) } ?? []
        XCTAssertGreaterThanOrEqual(Int(rows.first?[4] ?? "") ?? 0, 2, "\(rows)")
    }
}

import Foundation
import TestHarness
import XCTest

/// `server NAME resolve` in an upstream with `zone` (nginx 1.27.3's syntax), against dnsmasq answering from a
/// hosts file the test rewrites: one process resolves, every worker balances over what it found, a new
/// address is probed at once and gets traffic only once it passes, "not found" empties the server, and a DNS
/// server that stops answering changes nothing.
final class ResolvePeersTests: XCTestCase {
    var vigil: Vigil!
    var backends: Vigil!
    var dns: ResolverTests.DNSServer?
    var port: UInt16 = 0, backend: UInt16 = 0, dnsPort: UInt16 = 0
    var hosts = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(Tools.available(ResolverTests.dnsmasq), "dnsmasq is not installed (scripts/install-deps installs it)")
        port = freePort(); backend = freePort(); dnsPort = freePort()
        backends = try loopbackBackends(port: backend)
    }

    override func tearDown() {
        dns?.stop()
        vigil?.cleanup()
        backends?.cleanup()
    }

    /// Points app.test at these loopback hosts (none: the name is not found) and tells dnsmasq.
    func point(_ last: [Int]) throws {
        try last.map { "127.0.0.\($0) app.test\n" }.joined().write(toFile: hosts, atomically: true, encoding: .utf8)
        dns?.reload()
    }

    func bodies(_ n: Int) -> [String: Int] { answersByBody(port, n) }

    func statusRows() -> [String] {
        (httpGet(port, "/status")?.body ?? "").split(separator: "\n").map(String.init)
    }

    /// Upstream `app` resolving `server` through dnsmasq, its checks and status page; `extra` in the server.
    func config(workers: Int = 2, server: String? = nil, valid: String = "1s", timeout: String = "1s",
                check: String = "rise=2 fall=5 timeout=1000 type=http",
                status: String = "check_status csv; check_status_admin on; allow 127.0.0.1; deny all;", _ extra: String = "") -> String {
        Vigil.config(workers: workers, http: """
            upstream app {
                zone app 64k;
                resolver 127.0.0.1:\(dnsPort) valid=\(valid);
                resolver_timeout \(timeout);
                server \(server ?? "app.test:\(backend) resolve");
                check interval=30000 \(check);
            }
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; }
                location /status { \(status) }
                \(extra)
            }
            """)
    }

    /// A reload keeps the peers the name had, with their verdicts and the operator's drain: no request waits
    /// for the new checker's first answer or its probes.
    func testReloadCarriesResolvedPeersAndTheirState() throws {
        vigil = try Vigil(config: config())
        hosts = vigil.prefix + "/dns-hosts"
        try point([1, 2, 3])
        let master = try vigil.start()
        dns = try ResolverTests.DNSServer(hosts: hosts, port: dnsPort)
        XCTAssertTrue(waitFor(5) { self.bodies(6).keys.sorted() == ["1", "2", "3"] }, "\(bodies(6))")
        // A resolved peer is drained like a configured one, through the status location.
        let drained = try? httpExchange(port, getRequest("/status?upstream=app&server=127.0.0.3:\(backend)&state=drain",
                                                         headers: ["Connection: close"], method: "POST"), method: "POST")
        XCTAssertEqual(drained?.status, 200)
        XCTAssertEqual(bodies(6).keys.sorted(), ["1", "2"])
        try vigil.write(config: config("location /other { return 204; }"))
        // A signal, not `vigil -s reload`: with dnsmasq spawned, Foundation's Process may never see a child exit.
        kill(master, SIGHUP)
        var seen: [String: Int] = [:]
        XCTAssertTrue(waitFor(5, interval: 1_000) {
            for (k, v) in self.bodies(1) { seen[k, default: 0] += v }
            return shmSegments(ofMaster: master) == ["vigil.\(master).2"]
        })
        for (k, v) in bodies(10) { seen[k, default: 0] += v }
        XCTAssertEqual(Set(seen.keys), ["1", "2"], "every request of the reload, the drained peer still out: \(seen)")
        let rows = statusRows().map { $0.split(separator: ",").map(String.init) }
        XCTAssertEqual(rows.map { $0[3] }, ["up", "up", "up"], "\(rows)")
        XCTAssertEqual(rows.map { $0[4] }, ["2", "2", "2"], "carried with their rise counts, not probed anew: \(rows)")
    }

    /// `service=http`: the SRV records of _http._tcp.app.test give each target's port and weight; the lowest
    /// priority is primary and the rest backup; a target whose address changes is followed.
    func testServiceRecordsGivePortsWeightsAndBackups() throws {
        vigil = try Vigil(config: config(workers: 1, server: "app.test service=http resolve", check: "rise=1 fall=1 timeout=1000 type=http",
                                         status: "check_status csv;"))
        hosts = vigil.prefix + "/dns-hosts"
        try "127.0.0.1 b1.test\n127.0.0.2 b2.test\n127.0.0.3 b3.test\n".write(toFile: hosts, atomically: true, encoding: .utf8)
        _ = try vigil.start()
        dns = try ResolverTests.DNSServer(hosts: hosts, port: dnsPort, extra: [
            "--srv-host=_http._tcp.app.test,b1.test,\(backend),10,1", "--srv-host=_http._tcp.app.test,b2.test,\(backend),10,3",
            "--srv-host=_http._tcp.app.test,b3.test,\(backend),20,1",
        ])
        XCTAssertTrue(waitFor(5) { self.statusRows().count == 3 && !self.statusRows().contains { $0.contains(",down,") } },
                      "\(statusRows())\n\(vigil.errorLog())")
        let seen = bodies(40)
        XCTAssertEqual(seen.keys.sorted(), ["1", "2"], "b3 has a higher priority number: a backup")
        XCTAssertEqual(seen["2"], 30, "weights 1 and 3 from the records: \(seen)")
        // b1 and b2 move to addresses where nothing listens: their new peers fail their first probe, and the
        // backup takes the traffic; no request fails on the way.
        try "127.0.0.4 b1.test\n127.0.0.5 b2.test\n127.0.0.3 b3.test\n".write(toFile: hosts, atomically: true, encoding: .utf8)
        dns?.reload()
        var during: [String: Int] = [:]
        XCTAssertTrue(waitFor(5, interval: 1_000) {
            for (k, v) in self.bodies(1) { during[k, default: 0] += v }
            return during["3"] != nil
        }, "\(during)")
        XCTAssertEqual(Set(during.keys).subtracting(["1", "2", "3"]), [], "\(during)")
        XCTAssertEqual(bodies(6).keys.sorted(), ["3"])
        XCTAssertTrue(vigil.errorLog().contains("server 127.0.0.4:\(backend) added to upstream \"app\": _http._tcp.app.test resolves to it"))
    }

    /// 200 SRV targets: the answer is truncated over UDP and asked again over TCP; every target becomes a peer
    /// with a slot (the status page lists 200), the one that answers takes every request, and no request fails.
    /// (No shmdump here: with dnsmasq spawned, Foundation's Process may never see a child exit.)
    func testTwoHundredServiceTargets() throws {
        let live = try Vigil(config: Vigil.config(http: "server { listen 127.0.1.1:\(backend); location / { return 200 \"live\\n\"; } }"))
        defer { live.cleanup() }
        _ = try live.start()
        vigil = try Vigil(config: config(server: "app.test service=http resolve", valid: "30s", timeout: "2s",
                                         check: "rise=1 fall=1 timeout=1000 type=tcp", status: "check_status csv;"))
        hosts = vigil.prefix + "/dns-hosts"
        try (1...200).map { "127.0.1.\($0) t\($0).test\n" }.joined().write(toFile: hosts, atomically: true, encoding: .utf8)
        _ = try vigil.start()
        dns = try ResolverTests.DNSServer(hosts: hosts, port: dnsPort,
                                          extra: (1...200).map { "--srv-host=_http._tcp.app.test,t\($0).test,\(backend),10,1" })
        XCTAssertTrue(waitFor(10) { self.statusRows().count == 200 }, "\(statusRows().count) rows\n\(vigil.errorLog().suffix(2000))")
        XCTAssertTrue(waitFor(5) { self.statusRows().filter { $0.contains(",up,") }.count == 1 }, "\(statusRows().filter { $0.contains(",up,") })")
        XCTAssertEqual(bodies(20), ["live": 20])
    }

    /// What the fake DNS server below answers for app.test's A question: an address, or garbage.
    final class Answers: @unchecked Sendable {
        private let lock = NSLock()
        private var queue: [UInt8?] = []
        private var last: UInt8? = 1
        /// Each A question takes the next answer (nil: garbage), the last one repeating.
        func set(_ answers: [UInt8?]) { lock.lock(); queue = answers; lock.unlock() }
        func next() -> UInt8? {
            lock.lock(); defer { lock.unlock() }
            if !queue.isEmpty { last = queue.removeFirst() }
            return last
        }
    }

    /// A reply to `query` from its own header and question: for A, 127.0.0.X with TTL 1 (X the next answer), or
    /// (nil) a reply whose answer count promises records it does not have; no AAAA.
    static func reply(to query: [UInt8], answers: Answers) -> [UInt8] {
        var r = query
        r[2] = 0x81; r[3] = 0x80
        let isA = query.count >= 4 && query[query.count - 3] == 1
        guard isA else { return r }
        guard let host = answers.next() else { r[7] = 5; return r + [0xC0, 0x0C, 0, 1] }
        r[7] = 1
        return r + [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, host]
    }

    /// Bad input from DNS: garbage keeps the last good set (logged as nginx logs a format error), and a name
    /// flapping between two addresses on every answer costs no request.
    func testGarbageKeepsTheSetAndAFlappingNameFailsNoRequest() throws {
        let answers = Answers()
        let fake = ResolverTests.FakeDNS(reply: { ResolvePeersTests.reply(to: $0, answers: answers) })
        defer { fake.stop() }
        dnsPort = fake.port
        vigil = try Vigil(config: config())
        _ = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.bodies(2).keys.sorted() == ["1"] }, "\(bodies(2))\n\(vigil.errorLog())")
        answers.set([nil])
        usleep(2_500_000)
        XCTAssertEqual(bodies(6), ["1": 6])
        XCTAssertTrue(vigil.errorLog().contains("app.test could not be resolved (1: Format error)"), vigil.errorLog())
        // Every answer now moves the name to the other address (an answer a second, valid=1s).
        answers.set(Array(repeating: [2, 1], count: 10).flatMap { $0 })
        var seen: [String: Int] = [:]
        let end = Date().addingTimeInterval(5)
        while Date() < end { for (k, v) in bodies(1) { seen[k, default: 0] += v } }
        XCTAssertEqual(Set(seen.keys), ["1", "2"], "both served, nothing else: \(seen)")
        XCTAssertGreaterThanOrEqual(vigil.errorLog().components(separatedBy: "server 127.0.0.2:\(backend) added").count - 1, 2)
    }

    func testResolvedPeersFollowTheNameAndNewOnesAreCheckedAtOnce() throws {
        vigil = try Vigil(config: config(status: "check_status csv;"))
        hosts = vigil.prefix + "/dns-hosts"
        try point([1, 2])
        _ = try vigil.start()
        // dnsmasq after Vigil (see ResolverTests); the first lookup fails and is retried after a second.
        dns = try ResolverTests.DNSServer(hosts: hosts, port: dnsPort)
        XCTAssertTrue(waitFor(5) { self.bodies(4).keys.sorted() == ["1", "2"] }, "\(bodies(4))\n\(vigil.errorLog())")
        XCTAssertEqual(statusRows().count, 2, "\(statusRows())")

        // 3 joins, 1 leaves, and 4 (nothing listens there) joins: with interval=30000, 3 serves within about
        // valid=1s plus its two first-round probes, and 4 never gets a request.
        let changed = Date()
        try point([2, 3, 4])
        var seen: [String: Int] = [:]
        var firstThree: TimeInterval?
        while Date().timeIntervalSince(changed) < 3.5 {
            for (k, v) in bodies(1) { seen[k, default: 0] += v }
            if firstThree == nil && seen["3"] != nil { firstThree = Date().timeIntervalSince(changed) }
        }
        let served = try XCTUnwrap(firstThree, "\(seen)")
        XCTAssertEqual(Set(seen.keys).subtracting(["1", "2", "3"]), [], "no request failed while the set changed: \(seen)")
        XCTAssertLessThan(served, 2.5, "valid=1s, then two probes 100 ms apart")
        XCTAssertTrue(waitFor(3) { self.bodies(6).keys.sorted() == ["2", "3"] }, "\(bodies(6))")
        XCTAssertTrue(waitFor(2) { self.statusRows().count == 3 }, "\(statusRows())")
        XCTAssertTrue(statusRows().contains { $0.contains("127.0.0.4:\(backend),down") }, "\(statusRows())")
        XCTAssertTrue(vigil.errorLog().contains("server 127.0.0.3:\(backend) added to upstream \"app\""))
        XCTAssertTrue(vigil.errorLog().contains("server 127.0.0.1:\(backend) removed from upstream \"app\""))

        // The DNS server goes away: the last good set stays.
        dns?.stop()
        dns = nil
        usleep(2_500_000)
        XCTAssertEqual(bodies(6).keys.sorted(), ["2", "3"])
        XCTAssertTrue(vigil.errorLog().contains("app.test could not be resolved (110: Operation timed out)"), vigil.errorLog())

        // "Not found" is an answer: the server has no peers left.
        try point([])
        dns = try ResolverTests.DNSServer(hosts: hosts, port: dnsPort)
        XCTAssertTrue(waitFor(5) { self.bodies(1).keys.sorted() == ["status 502"] }, "\(bodies(2))")
        XCTAssertTrue(vigil.errorLog().contains("app.test could not be resolved (3: Host not found)"))
        print("resolve: a new address served \(Int(served * 1000)) ms after the hosts file changed (valid=1s, check interval=30000)")
    }
}

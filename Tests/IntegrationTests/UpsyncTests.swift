import Foundation
import TestHarness
import XCTest

/// nginx-upsync-module's etcd source against Debian's real etcd: the servers under the upstream's prefix
/// replace its bootstrap server, follow every change without a reload (added, marked down, removed) while a
/// bounded request loop sees no failure, are dumped as `server` lines, stay while etcd is away, and survive a
/// reload.
final class UpsyncTests: XCTestCase {
    var etcd: EtcdPeer!
    var vigil: Vigil!
    var backends: Vigil!
    var port: UInt16 = 0, backend: UInt16 = 0, dead: UInt16 = 0

    override func setUpWithError() throws {
        etcd = try EtcdPeer()
        port = freePort(); backend = freePort(); dead = freePort()
        backends = try loopbackBackends(port: backend)
    }

    override func tearDown() {
        vigil?.cleanup()
        backends?.cleanup()
        etcd?.cleanup()
    }

    func key(_ host: Int) -> String { "/upstreams/app/127.0.0.\(host):\(backend)" }

    func bodies(_ n: Int) -> [String: Int] { answersByBody(port, n) }

    func config(dump: String, extra: String = "") -> String {
        Vigil.config(workers: 2, http: """
            upstream app {
                # upsync's bootstrap server: nothing listens there.
                server 127.0.0.1:\(dead);
                upsync \(etcd.authority)/v2/keys/upstreams/app upsync_timeout=10s upsync_interval=200ms upsync_type=etcd strong_dependency=off;
                upsync_dump_path \(dump);
                check interval=1000 rise=1 fall=1 timeout=1000 type=http;
            }
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; proxy_next_upstream error timeout http_502; }
                location /status { check_status csv; }
                \(extra)
            }
            """)
    }

    func testServersFollowEtcdWithoutAReload() throws {
        etcd.put(key(1), "")
        vigil = try Vigil(config: "")
        // The checker writes it, as the workers' user.
        let dumps = vigil.prefix + "/servers"
        try FileManager.default.createDirectory(atPath: dumps, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        let dump = dumps + "/servers_app.conf"
        try vigil.write(config: config(dump: dump))
        let master = try vigil.start()
        XCTAssertTrue(waitFor(5) { self.bodies(4) == ["1": 4] }, "etcd's server replaces the bootstrap one: \(bodies(4))\n\(vigil.errorLog())")

        // Added: in rotation once its first probe passes, with the weight etcd gives it.
        etcd.put(key(2), #"{"weight":3,"max_fails":2,"fail_timeout":10}"#)
        XCTAssertTrue(waitFor(5) { self.bodies(8).keys.sorted() == ["1", "2"] }, "\(bodies(8))\n\(vigil.errorLog())")
        // Each of the two workers balances 1:3 on its own.
        XCTAssertTrue((27...33).contains(bodies(40)["2"] ?? 0), "weights 1 and 3")
        XCTAssertTrue(vigil.errorLog().contains("server 127.0.0.1:\(backend) added to upstream \"app\" from etcd at \(etcd.authority)"))

        // Changes under a bounded request loop: a third server, the first marked down, then removed. No request fails.
        var seen: [String: Int] = [:]
        func loop(_ n: Int) { for (k, v) in bodies(n) { seen[k, default: 0] += v } }
        etcd.put(key(3), "")
        loop(20)
        XCTAssertTrue(waitFor(5) { loop(5); return self.bodies(12).keys.contains("3") })
        etcd.put(key(1), #"{"down":1}"#)
        XCTAssertTrue(waitFor(5) { loop(5); return !self.bodies(12).keys.contains("1") })
        etcd.delete(key(1))
        loop(30)
        XCTAssertEqual(Set(seen.keys).subtracting(["1", "2", "3"]), [], "every request of the changes was answered: \(seen)")
        XCTAssertEqual(Set(bodies(20).keys), ["2", "3"])

        // A value that is not upsync's JSON is logged and changes nothing.
        etcd.put(key(3), "weight=5")
        XCTAssertTrue(waitFor(5) { self.vigil.errorLog().contains("value of \"\(self.key(3))\" is not a JSON object, ignored") })
        XCTAssertEqual(Set(bodies(20).keys), ["2", "3"])

        // The dump: the set as server lines an `include` reads back.
        let expected = "server 127.0.0.2:\(backend) weight=3 max_fails=2 fail_timeout=10s;\nserver 127.0.0.3:\(backend) weight=1 max_fails=2 fail_timeout=10s;\n"
        XCTAssertTrue(waitFor(3) { (try? String(contentsOfFile: dump, encoding: .utf8)) == expected },
                      (try? String(contentsOfFile: dump, encoding: .utf8)) ?? "no dump")

        // etcd goes away: the servers stay. A reload keeps them too.
        etcd.stop()
        XCTAssertEqual(Set(bodies(20).keys), ["2", "3"])
        try vigil.write(config: config(dump: dump, extra: "location /other { return 204; }"))
        // A signal, not `vigil -s reload`: with etcd spawned, Foundation's Process may never see a child exit.
        kill(master, SIGHUP)
        var during: [String: Int] = [:]
        XCTAssertTrue(waitFor(5, interval: 1_000) {
            for (k, v) in self.bodies(2) { during[k, default: 0] += v }
            return shmSegments(ofMaster: master) == ["vigil.\(master).2"]
        })
        for (k, v) in bodies(20) { during[k, default: 0] += v }
        XCTAssertEqual(Set(during.keys), ["2", "3"], "through the reload, with etcd away: \(during)")
        XCTAssertTrue(vigil.errorLog().contains("upsync: "), vigil.errorLog())
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }

    /// strong_dependency=on: Vigil does not start while etcd cannot be read (upsync's meaning); off, it starts
    /// on its configured servers.
    func testStrongDependency() throws {
        etcd.stop()
        vigil = try Vigil(config: "")
        try vigil.write(config: config(dump: vigil.prefix + "/dump.conf").replacingOccurrences(of: "strong_dependency=off", with: "strong_dependency=on"))
        let refused = vigil.vigil([])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("upsync: etcd at \(etcd.authority) cannot be read"), refused.stderr)
        try vigil.write(config: config(dump: vigil.prefix + "/dump.conf"))
        _ = try vigil.start()
        XCTAssertEqual(httpGet(port, "/status")?.status, 200)
    }
}

import Foundation
import TestHarness
import XCTest

/// The upstream cache on the real binary: a front server caching what a backend server of the same Vigil
/// answers, the backend's access log counting what reached it. Seen as a client sees it: bodies,
/// `$upstream_cache_status`, the files under the cache path, and what the backend was asked.
final class ProxyCacheTests: XCTestCase {
    private var vigil: Vigil!
    private var port: UInt16 = 0, backend: UInt16 = 0

    override func tearDown() { vigil?.cleanup() }

    /// Starts Vigil with a cache `one` under logs/cache, `front` in the caching server and `back` in the
    /// backend's server (root: the html root), each request to the backend logged to logs/backend.log.
    private func start(front: String, back: String = "", path: String = "levels=1:2 keys_zone=one:1m", workers: Int = 1) throws {
        port = freePort()
        backend = freePort()
        vigil = try Vigil(config: "")
        let root = try vigil.htmlRoot([("page.txt", Array("first\n".utf8)), ("slow.txt", ProxyCacheTests.slowBody("a"))])
        chmod(root, 0o777)
        try vigil.write(config: Vigil.config(workers: workers, http: """
            log_format plain '$request $status';
            proxy_cache_path logs/cache \(path);
            server {
                listen 127.0.0.1:\(port);
                add_header X-Cache $upstream_cache_status;
                location / {
                    proxy_pass http://127.0.0.1:\(backend);
                    proxy_cache one;
                    \(front)
                }
            }
            server {
                listen 127.0.0.1:\(backend);
                root \(root);
                access_log logs/backend.log plain;
                \(back)
            }
            """))
        _ = try vigil.start()
    }

    /// 4,000 bytes: at `limit_rate 2k` after the first 1k, the backend takes about 1.5 s over them.
    private static let slowLocation = "location = /slow.txt { limit_rate 2k; limit_rate_after 1k; }"
    private static func slowBody(_ c: Character) -> [UInt8] { Array(String(repeating: c, count: 4000).utf8) }

    private func get(_ path: String, headers: [String] = [], method: String = "GET") throws -> HTTPResponse {
        try httpExchange(port, getRequest(path, headers: headers, method: method), method: method)
    }

    private func cacheStatus(_ path: String, headers: [String] = []) throws -> String? {
        try get(path, headers: headers).header("X-Cache")
    }

    /// Requests that reached the backend.
    private var backendRequests: [String] {
        ((try? String(contentsOfFile: vigil.prefix + "/logs/backend.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    private func writePage(_ text: String) throws {
        try text.write(toFile: vigil.prefix + "/html/page.txt", atomically: true, encoding: .utf8)
    }

    private func cacheFiles() -> [String] {
        (FileManager.default.enumerator(atPath: vigil.prefix + "/logs/cache")?.allObjects as? [String] ?? [])
            .filter { $0.split(separator: "/").last?.count == 32 }
    }

    func testStoredServedExpiredAndRefreshed() throws {
        try start(front: "proxy_cache_valid 200 1s;")
        let first = try get("/page.txt")
        XCTAssertEqual(first.text, "first\n")
        XCTAssertEqual(first.header("X-Cache"), "MISS")
        try writePage("second\n")
        let hit = try get("/page.txt")
        XCTAssertEqual(hit.text, "first\n", "served from the cache")
        XCTAssertEqual(hit.header("X-Cache"), "HIT")
        XCTAssertEqual(backendRequests.count, 1)
        // nginx's layout: levels=1:2 takes the MD5's last character, then the two before it.
        let files = cacheFiles()
        XCTAssertEqual(files.count, 1)
        if let name = files.first?.split(separator: "/").last.map(String.init) {
            XCTAssertEqual(files.first, "\(name.suffix(1))/\(name.dropLast().suffix(2))/\(name)")
        }
        let ranged = try get("/page.txt", headers: ["Range: bytes=1-3"])
        XCTAssertEqual(ranged.status, 206)
        XCTAssertEqual(ranged.text, "irs")
        usleep(1_300_000)
        let expired = try get("/page.txt")
        XCTAssertEqual(expired.header("X-Cache"), "EXPIRED")
        XCTAssertEqual(expired.text, "second\n")
        XCTAssertEqual(try get("/page.txt").text, "second\n")
        XCTAssertEqual(backendRequests.count, 2)
    }

    func testWhatTheResponseSaysDecides() throws {
        try start(front: """
            proxy_cache_valid any 1m;
            proxy_cache_bypass $http_x_bypass;
            proxy_no_cache $arg_nocache;
            """, back: """
            location /cookie { add_header Set-Cookie a=b; return 200 "cookie"; }
            location /private { add_header Cache-Control private; return 200 "private"; }
            location /accel { add_header X-Accel-Expires 0; add_header Cache-Control max-age=60; return 200 "accel"; }
            location /vary { add_header Vary X-Lang; return 200 "vary $http_x_lang"; }
            """)
        for path in ["/cookie", "/private", "/accel"] {
            XCTAssertEqual(try cacheStatus(path), "MISS", path)
            XCTAssertEqual(try cacheStatus(path), "MISS", "\(path): never stored")
        }
        XCTAssertEqual(try cacheStatus("/page.txt", headers: ["X-Bypass: 1"]), "BYPASS")
        XCTAssertEqual(try cacheStatus("/page.txt"), "HIT", "a bypassed response is stored")
        XCTAssertEqual(try cacheStatus("/page.txt?nocache=1"), "MISS")
        XCTAssertEqual(try cacheStatus("/page.txt?nocache=1"), "MISS", "proxy_no_cache: not stored")
        // Each variant of a Vary is kept apart.
        XCTAssertEqual(try get("/vary", headers: ["X-Lang: en"]).text, "vary en")
        XCTAssertEqual(try get("/vary", headers: ["X-Lang: fr"]).text, "vary fr")
        let en = try get("/vary", headers: ["X-Lang: en"]), fr = try get("/vary", headers: ["X-Lang: fr"])
        XCTAssertEqual([en.text, en.header("X-Cache"), fr.text, fr.header("X-Cache")], ["vary en", "HIT", "vary fr", "HIT"])
        // The client's validators do not reach the upstream through a cache: the whole response is stored, and
        // a cached 200 answers a conditional request itself.
        let modified = try XCTUnwrap(try get("/page.txt").header("Last-Modified"))
        _ = try get("/page.txt?ims", headers: ["If-Modified-Since: \(modified)"])
        XCTAssertEqual(backendRequests.last, "GET /page.txt?ims HTTP/1.0 200")
        XCTAssertEqual(try get("/page.txt?ims", headers: ["If-Modified-Since: \(modified)"]).status, 304)
    }

    func testStaleServedWhenTheUpstreamFails() throws {
        try start(front: """
            proxy_cache_valid 200 1s;
            proxy_cache_use_stale error timeout http_500;
            """, back: "location = /page.txt { if (-f $document_root/fail) { return 500; } }")
        XCTAssertEqual(try get("/page.txt").text, "first\n")
        try "".write(toFile: vigil.prefix + "/html/fail", atomically: true, encoding: .utf8)
        usleep(1_300_000)
        let stale = try get("/page.txt")
        XCTAssertEqual(stale.status, 200)
        XCTAssertEqual(stale.text, "first\n")
        XCTAssertEqual(stale.header("X-Cache"), "STALE")
        unlink(vigil.prefix + "/html/fail")
        try writePage("fresh\n")
        XCTAssertEqual(try get("/page.txt").text, "fresh\n", "refreshed once the upstream answers again")
    }

    /// One request fills a key while the others wait for it (proxy_cache_lock), across two workers; the zone
    /// and the files outlive a reload and a restart.
    func testOneFillAcrossWorkersReloadAndRestart() throws {
        try start(front: "proxy_cache_valid 200 1m; proxy_cache_lock on;", back: ProxyCacheTests.slowLocation, workers: 2)
        let group = DispatchGroup()
        let bodies = Handoff([String?](repeating: nil, count: 8))
        let lock = NSLock()
        for i in 0..<8 {
            DispatchQueue.global().async(group: group) {
                let b = httpGet(self.port, "/slow.txt")?.body
                lock.lock(); bodies.value[i] = b; lock.unlock()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(bodies.value, [String?](repeating: String(repeating: "a", count: 4000), count: 8))
        XCTAssertEqual(backendRequests.count, 1, "one request filled the key: \(backendRequests)")
        let master = try XCTUnwrap(vigil.masterPid())
        kill(master, SIGHUP)
        XCTAssertTrue(waitFor(5) { self.vigil.errorLog().contains("reconfiguring") })
        usleep(500_000)
        XCTAssertEqual(try cacheStatus("/slow.txt"), "HIT", "the zone is kept across a reload")
        XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(master) })
        _ = try vigil.start()
        XCTAssertEqual(try cacheStatus("/slow.txt"), "HIT", "the files outlive the master")
        XCTAssertEqual(backendRequests.count, 1)
    }

    func testManagerRemovesInactiveFiles() throws {
        try start(front: "proxy_cache_valid 200 1m;", path: "levels=1 keys_zone=one:1m inactive=1s")
        _ = try get("/page.txt")
        _ = try get("/other.txt")
        XCTAssertEqual(cacheFiles().count, 1, "the 404 is not stored without a validity for it")
        // nginx's pacing: a pass that found the zone empty (at the start) comes back 10 s later.
        XCTAssertTrue(waitFor(12) { self.cacheFiles().isEmpty }, "unused for `inactive`, the file goes")
        XCTAssertEqual(try cacheStatus("/page.txt"), "MISS")
    }

    func testBackgroundUpdateAnswersStaleAtOnce() throws {
        try start(front: """
            proxy_cache_valid 200 1s;
            proxy_cache_use_stale updating;
            proxy_cache_background_update on;
            """, back: ProxyCacheTests.slowLocation)
        let a = String(repeating: "a", count: 4000), b = String(repeating: "b", count: 4000)
        XCTAssertEqual(try get("/slow.txt").text, a)
        try b.write(toFile: vigil.prefix + "/html/slow.txt", atomically: true, encoding: .utf8)
        usleep(1_200_000)
        let t0 = Date()
        let stale = try get("/slow.txt")
        XCTAssertEqual(stale.header("X-Cache"), "STALE")
        XCTAssertEqual(stale.text, a)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1.0, "not waiting for the refresh")
        XCTAssertTrue(waitFor(8) { (try? self.get("/slow.txt").text) == b }, "the refresh stored the new response")
        XCTAssertEqual(backendRequests.count, 2)
    }
}

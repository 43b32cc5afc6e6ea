import Foundation
import TestHarness
import XCTest

/// Idle keep-alive connections hold no request buffers: after one request, after many, after a
/// 16 KiB header, every connection's input and output buffers are gone back to the worker's pool. Read from
/// the worker itself through `$vigil_buffers_held` (buffer objects alive) and `$vigil_buffers_pooled`.
final class MemoryTests: XCTestCase {
    func testIdleKeepAliveConnectionsHoldNoBuffers() throws {
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            large_client_header_buffers 4 32k;
            server {
                listen 127.0.0.1:\(port);
                location / { return 200 "ok"; }
                location = /debug { return 200 "$vigil_buffers_held $vigil_buffers_pooled"; }
            }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        func counters() throws -> (held: Int, pooled: Int) {
            let body = try XCTUnwrap(httpGet(port, "/debug")?.body)
            let parts = body.split(separator: " ").compactMap { Int($0) }
            guard parts.count == 2 else { throw HTTPClientError("debug page: \(body)") }
            return (parts[0], parts[1])
        }
        let baseline = try counters()
        let scenarios: [(String, Int, String)] = [
            ("after one request", 1, ""),
            ("after 100 requests", 100, ""),
            ("after a 16 KiB header", 1, "Cookie: " + String(repeating: "c", count: 16384)),
        ]
        for (name, requests, header) in scenarios {
            var conns: [HTTPConnection] = []
            defer { for c in conns { c.close() } }
            for _ in 0..<40 {
                let c = try HTTPConnection(port: port)
                for _ in 0..<requests {
                    try c.send(getRequest("/", headers: header.isEmpty ? [] : [header]))
                    XCTAssertEqual(try c.readResponse().status, 200)
                }
                conns.append(c)
            }
            let idle = try counters()
            XCTAssertEqual(idle.held, baseline.held, "\(name): 40 idle connections still hold buffers")
            XCTAssertLessThanOrEqual(idle.pooled, 2 * 256, "\(name): the pool is bounded")
            // A connection in the middle of a request head holds its input buffer, and only that.
            try conns[0].send("GET / HTTP/1.1\r\nHost: x\r\n")
            usleep(100_000)
            XCTAssertEqual(try counters().held, baseline.held + 1, name)
            try conns[0].send("\r\n")
            XCTAssertEqual(try conns[0].readResponse().status, 200)
            XCTAssertTrue(conns[0].stillOpen())
        }
    }

    /// Requests of every kind let go of everything they held: a request and its connection (or HTTP/2
    /// stream) refer to each other while it runs, a proxied request's session and an auth_request
    /// subrequest refer back to it, and a client that leaves mid-response ends it from the other side.
    /// A cycle left standing would keep a few kilobytes a request; the worker's RSS must stay flat over
    /// thousands of each after a warm-up.
    func testRequestsOfEveryKindLeaveNoMemoryBehind() throws {
        let port = freePort(), up = freePort()
        let body = String(repeating: "0123456789abcdef", count: 4096)   // 64 KiB
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            upstream back { server 127.0.0.1:\(up); keepalive 8; }
            server {
                listen 127.0.0.1:\(up);
                location / { return 200 "upstream\\n"; }
                location = /big { return 200 "\(body)"; }
            }
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                keepalive_requests 1000000;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                location /p { proxy_pass http://back; }
                location /a { auth_request /auth; return 200 "allowed\\n"; }
                location = /auth { internal; proxy_pass http://back/; }
                location /slow { limit_rate 1k; proxy_pass http://back/big; }
            }
            """))
        defer { vigil.cleanup() }
        let master = try vigil.start()
        let worker = try XCTUnwrap(vigil.waitForWorkers(master, count: 1).first)
        func rssKiB() throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(worker)/status", encoding: .utf8)
            let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
            return try XCTUnwrap(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        }
        func load(_ args: [String], _ n: Int, _ path: String) {
            let r = runCommand("/usr/bin/h2load", args + ["-n", "\(n)", "-c", "8", "-m", "4", "http://127.0.0.1:\(port)\(path)"], timeout: 60)
            XCTAssertTrue(r.stdout.contains("\(n) succeeded") && r.stdout.contains("status codes: \(n) 2xx"), "\(args) \(path): \(r.stdout)")
        }
        func abandon(_ n: Int) throws {
            for _ in 0..<n {
                let c = try HTTPConnection(port: port)
                try c.send(getRequest("/slow"))
                c.close()
            }
        }
        let kinds: [(String, () throws -> Void)] = [
            ("HTTP/1.1 proxied", { load(["--h1"], 20000, "/p") }),
            ("HTTP/1.1 behind auth_request", { load(["--h1"], 20000, "/a") }),
            ("HTTP/2 proxied", { load([], 20000, "/p") }),
            ("clients gone mid-response", { try abandon(2000) }),
        ]
        // Warm-up: the buffer pools, kept connections and the allocator's arenas reach their working size.
        for _ in 0..<2 {
            load(["--h1"], 3000, "/p"); load(["--h1"], 3000, "/a"); load([], 3000, "/p"); try abandon(300)
        }
        var before = try rssKiB()
        for (name, run) in kinds {
            try run()
            let after = try rssKiB()
            XCTAssertLessThan(after - before, 2048, "\(name): the worker grew from \(before) KiB to \(after) KiB")
            before = after
        }
        // The worker still answers after all of it.
        XCTAssertEqual(httpGet(port, "/p/")?.status, 200)
    }
}

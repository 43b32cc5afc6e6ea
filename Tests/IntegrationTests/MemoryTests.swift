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
}

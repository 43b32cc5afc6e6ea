import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import HTTPProxy
@testable import HTTPServer

/// `keepalive N` in an upstream block: idle connections kept per worker and reused, counted at the backend.
final class UpstreamKeepaliveTests: XCTestCase {
    private func load(_ h: ProxyHarness, _ b: Backend, keepalive: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        try h.load("""
            upstream u {
            server \(b.address);
            \(keepalive ? "keepalive 2;" : "")
            }
            server {
            listen 127.0.0.1:8080;
            location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            }
            }
            """, file: file, line: line)
    }

    /// Answers each request with its target, keeping the connection open.
    private func echoBackend(_ h: ProxyHarness) throws -> Backend {
        try h.backend { r, c in c.send(Backend.response(headers: [("Content-Type", "text/plain")], body: "echo \(r.target)")) }
    }

    func testSequentialRequestsReuseOneUpstreamConnection() throws {
        let h = try ProxyHarness(self)
        let b = try echoBackend(h)
        try load(h, b, keepalive: true)
        let first = try h.exchange("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        let second = try h.exchange("GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        let c = try h.client()
        c.send("GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
        let third = try c.response(in: h)
        c.send("GET /four HTTP/1.1\r\nHost: x\r\n\r\n")
        let fourth = try c.response(in: h)
        XCTAssertEqual([first, second, third, fourth].map(\.text), ["echo /one", "echo /two", "echo /three", "echo /four"])
        XCTAssertEqual(b.accepted, 1, "one upstream connection carried all four requests")
        XCTAssertEqual(b.requests.count, 4)
        for r in b.requests {
            XCTAssertEqual(r.version, "HTTP/1.1")
            XCTAssertNil(r.header("Connection"), "proxy_set_header Connection \"\" sends none")
        }
        XCTAssertFalse(b.connections[0].peerClosed, "the proxy keeps the idle connection open")
    }

    func testWithoutKeepaliveEachRequestConnects() throws {
        let h = try ProxyHarness(self)
        let b = try echoBackend(h)
        try load(h, b, keepalive: false)
        _ = try h.exchange("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try h.exchange("GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(b.accepted, 2)
        h.run(until: { b.connections.allSatisfy(\.peerClosed) }, "the proxy to close each upstream connection after its response")
    }

    func testAnUpstreamSayingConnectionCloseIsNotKept() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { r, c in c.send(Backend.response(headers: [("Connection", "close")], body: "bye \(r.target)")) }
        try load(h, b, keepalive: true)
        XCTAssertEqual(try h.exchange("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").text, "bye /1")
        XCTAssertEqual(try h.exchange("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n").text, "bye /2")
        XCTAssertEqual(b.accepted, 2)
    }

    func testAnIdleConnectionTheUpstreamClosedIsNotUsed() throws {
        let h = try ProxyHarness(self)
        let b = try echoBackend(h)
        try load(h, b, keepalive: true)
        XCTAssertEqual(try h.exchange("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").text, "echo /1")
        XCTAssertEqual(b.accepted, 1)
        // The response is out and the connection parked; then the backend closes it.
        b.connections[0].close()
        h.run(forMs: 50)
        let second = try h.exchange("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(second.status, 200)
        XCTAssertEqual(second.text, "echo /2")
        XCTAssertEqual(b.accepted, 2, "a fresh connection for the second request")
        XCTAssertEqual(b.requests.count, 2, "the dead connection was not tried")
        XCTAssertFalse(h.errorLog.contains("[error]"), "no error for a kept connection that went away: \(h.errorLog)")
    }

    func testTheProxyClosesAParkedConnectionTheUpstreamHalfClosed() throws {
        // The backend half-closes after the proxy parked the connection: the proxy must close its end too (the
        // backend reads EOF), not hold a dead connection until keepalive_timeout.
        let h = try ProxyHarness(self)
        let b = try echoBackend(h)
        try load(h, b, keepalive: true)
        XCTAssertEqual(try h.exchange("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").text, "echo /1")
        h.run(forMs: 20)
        let conn = b.connections[0]
        XCTAssertFalse(conn.peerClosed, "parked, open")
        XCTAssertEqual(shutdown(conn.fd, Int32(SHUT_WR)), 0)
        h.run(until: { conn.peerClosed }, timeout: 2, "the proxy to close the connection the backend half-closed")
    }

    func testAKeptConnectionClosedJustBeforeTheNextRequestStillServesIt() throws {
        // The backend closes its end and the next request arrives in the same turn of the loop: whether the
        // proxy hears the hang-up first (and drops the idle connection) or sends on the dead connection first
        // (and goes again on a fresh one, without counting a failure), the client gets its answer.
        let h = try ProxyHarness(self)
        var keep: [BackendConnection] = []
        let b = try h.backend { r, c in
            c.send(Backend.response(body: "answer \(r.target)"))
            keep.append(c)
        }
        try load(h, b, keepalive: true)
        XCTAssertEqual(try h.exchange("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").text, "answer /1")
        keep[0].close()
        let c = try h.client()
        c.send("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try c.response(in: h)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "answer /2")
        XCTAssertEqual(b.accepted, 2)
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertFalse(h.errorLog.contains("[error]"), h.errorLog)
    }
}

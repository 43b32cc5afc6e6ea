import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import HTTPProxy
@testable import HTTPServer

/// A client that goes away mid-request, a connection that closes with a request in flight, a body of unknown
/// length and an upstream that closes with its response: what a client or backend sees, as with nginx.
final class ClientAbortAndFramingTests: XCTestCase {
    // MARK: the client going away while its request waits on the upstream

    private func loadSilent(_ h: ProxyHarness, _ b: Backend) throws {
        try h.load("""
            upstream u { server \(b.address); }
            server {
            listen 127.0.0.1:8080;
            location / { proxy_pass http://u; proxy_read_timeout 5s; }
            }
            """)
    }

    /// nginx (proxy_ignore_client_abort off) notices the client's close while it waits for the upstream
    /// (epoll reports the hang-up) and closes the upstream
    /// connection; meanwhile its loop sleeps.
    private func assertClientAbortEndsTheUpstreamConnection(tcp: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let h = try ProxyHarness(self)
        let silent = try h.backend()
        try loadSilent(h, silent)
        let c = try h.client(tcp: tcp)
        c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        h.run(until: { silent.requests.count == 1 }, "the request at the backend", file: file, line: line)
        c.hangUp()
        let turns = h.countTurns(forMs: 300)
        XCTAssertLessThan(turns, 100, "the loop must wait for events, not spin on the closed client (\(turns) turns in 300 ms)",
                          file: file, line: line)
        h.run(until: { silent.connections.allSatisfy(\.peerClosed) }, timeout: 2,
              "the proxy to close the upstream connection of a request whose client went away", file: file, line: line)
    }

    func testAClientThatClosesWhileTheUpstreamIsSilentEndsTheUpstreamConnection() throws {
        try assertClientAbortEndsTheUpstreamConnection(tcp: false)
    }

    func testATCPClientThatClosesWhileTheUpstreamIsSilentEndsTheUpstreamConnection() throws {
        try assertClientAbortEndsTheUpstreamConnection(tcp: true)
    }

    func testAConnectionClosedWithARequestInFlightIsFreed() throws {
        // $vigil_buffers_held counts the buffers client connections hold: a connection that closed while its
        // request was in flight must give them back (and be freed), or every aborted request leaks them.
        let h = try ProxyHarness(self)
        var held: [BackendConnection] = []
        let b = try h.backend { r, c in
            if r.target == "/slow" { held.append(c) } else { c.send(Backend.response(body: "fast"), thenClose: true) }
        }
        try h.load("""
            upstream u { server \(b.address); }
            server {
            listen 127.0.0.1:8080;
            add_header X-Held $vigil_buffers_held always;
            location / { proxy_pass http://u; }
            }
            """)
        let before = try h.exchange("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(before.text, "fast")
        let baseline = try XCTUnwrap(before.header("X-Held"))

        let c = try h.client()
        weak let aborted = c.connection
        c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        h.run(until: { held.count == 1 }, "the slow request at the backend")
        c.hangUp()
        held[0].send(Backend.response(body: "too late"), thenClose: true)
        h.run(until: { aborted.map { h.closedConnections.contains(ObjectIdentifier($0)) } ?? true },
              "the proxy to close the connection of the client that went away")

        let after = try h.exchange("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(after.header("X-Held"), baseline, "the aborted connection's buffers are still counted as held")
        XCTAssertNil(aborted, "the closed connection (and its request) must be freed")
    }

    // MARK: response framing

    /// One upstream at `b`, `location / { proxy_pass http://u; }`.
    private func load(_ h: ProxyHarness, _ b: Backend, upstream: String = "", location: String = "") throws {
        try h.load("""
            upstream u { server \(b.address); \(upstream) }
            server {
            listen 127.0.0.1:8080;
            location / { proxy_pass http://u; \(location) }
            }
            """)
    }

    func testABodyOfUnknownLengthIsChunkedForAnHTTP11Client() throws {
        // nginx chunks a body of unknown length for an HTTP/1.1 client and keeps its connection (BodyFraming:
        // `.close` is for HTTP/1.0 clients).
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close", thenClose: true) }
        try load(h, b)
        let c = try h.client()
        c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try c.response(in: h)
        XCTAssertEqual(r.text, "until the close")
        XCTAssertEqual(r.header("Transfer-Encoding"), "chunked", "head: \(r.headers)")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
    }

    // MARK: upstream keepalive

    func testAConnectionTheUpstreamHalfClosedWithItsResponseIsNotKept() throws {
        // nginx does not keep a connection whose read side is ready (here:
        // the upstream's FIN came with the end of the response): it closes it at once. The backend sees the
        // proxy's close.
        let h = try ProxyHarness(self)
        let b = try h.backend { r, c in
            c.send(Backend.response(body: "last \(r.target)"))
            shutdown(c.fd, Int32(SHUT_WR))   // FIN right behind the response, in the same readiness event
        }
        try load(h, b, upstream: "keepalive 2;", location: "proxy_http_version 1.1; proxy_set_header Connection \"\";")
        XCTAssertEqual(try h.exchange("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").text, "last /1")
        let conn = b.connections[0]
        h.run(until: { conn.peerClosed }, timeout: 2, "the proxy to close the connection that ended with its response")
    }
}

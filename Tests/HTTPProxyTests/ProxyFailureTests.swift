import Foundation
import XCTest
@testable import HTTPProxy
@testable import HTTPServer

/// Upstream failures as a client and the backends see them: retries on the next peer, what stops them
/// (proxy_next_upstream off, _tries, _timeout), and the 502 and 504 answers.
final class ProxyFailureTests: XCTestCase {
    /// `upstream u` with `servers` (addresses), a server whose location proxies to it and reports
    /// $upstream_addr and $upstream_status on every response.
    private func load(_ h: ProxyHarness, servers: [String], location: String = "",
                      file: StaticString = #filePath, line: UInt = #line) throws {
        try h.load("""
            upstream u {
            \(servers.map { "server \($0);" }.joined(separator: "\n"))
            }
            server {
            listen 127.0.0.1:8080;
            add_header X-Upstream $upstream_addr always;
            add_header X-Upstream-Status $upstream_status always;
            location / {
            proxy_pass http://u;
            \(location)
            }
            }
            """, file: file, line: line)
    }

    private static let ok = Backend.response(headers: [("Content-Type", "text/plain")], body: "from the live peer")

    private func assertNginxErrorPage(_ r: HTTPResponse, _ status: Int, _ reason: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.statusLine, "HTTP/1.1 \(status) \(reason)", file: file, line: line)
        XCTAssertEqual(r.header("Content-Type"), "text/html", file: file, line: line)
        XCTAssertTrue(r.text.contains("<center><h1>\(status) \(reason)</h1></center>"), r.text, file: file, line: line)
        XCTAssertEqual(r.header("Content-Length"), String(r.body.count), file: file, line: line)
    }

    func testARefusedPeerIsRetriedOnTheNext() throws {
        let h = try ProxyHarness(self)
        let refused = h.refusingPort()
        let live = try h.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h, servers: ["127.0.0.1:\(refused)", live.address])
        let r = try h.exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "from the live peer")
        XCTAssertEqual(r.header("X-Upstream"), "127.0.0.1:\(refused), \(live.address)", "both attempts, in order")
        XCTAssertEqual(r.header("X-Upstream-Status"), "502, 200")
        XCTAssertEqual(live.requests.count, 1)
        XCTAssertTrue(h.errorLog.contains("connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1"),
                      h.errorLog)
        XCTAssertTrue(h.errorLog.contains("request: \"GET /a HTTP/1.1\", upstream: \"http://127.0.0.1:\(refused)/a\""), h.errorLog)
    }

    func testNextUpstreamOffAnswers502AfterOneAttempt() throws {
        let h = try ProxyHarness(self)
        let refused = h.refusingPort()
        let live = try h.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h, servers: ["127.0.0.1:\(refused)", live.address], location: "proxy_next_upstream off;")
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assertNginxErrorPage(r, 502, "Bad Gateway")
        XCTAssertEqual(r.header("X-Upstream"), "127.0.0.1:\(refused)", "no second attempt")
        XCTAssertEqual(r.header("X-Upstream-Status"), "502")
        XCTAssertEqual(live.accepted, 0)
    }

    func testAnUpstreamThatAnswersGarbageIs502() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send("SSH-2.0-OpenSSH_9.2\r\n\r\n", thenClose: true) }
        try load(h, servers: [b.address])
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assertNginxErrorPage(r, 502, "Bad Gateway")
        XCTAssertEqual(r.header("X-Upstream-Status"), "502")
        XCTAssertFalse(r.text.contains("SSH"), "nothing of the garbage reaches the client")
        XCTAssertTrue(h.errorLog.contains("upstream sent no valid HTTP/1.0 header while reading response header from upstream"), h.errorLog)
    }

    /// The upstream's whole head must fit in proxy_buffer_size (4k by default), as in nginx: past it the client
    /// gets 502 and the error log says why; a larger proxy_buffer_size takes the same head.
    func testAHeadLargerThanProxyBufferSizeIs502() throws {
        let cookie = String(repeating: "c", count: 5000)
        let big = Backend.response(headers: [("Content-Type", "text/plain"), ("X-Big", cookie)], body: "big head")
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send(big, thenClose: true) }
        try load(h, servers: [b.address])
        assertNginxErrorPage(try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 502, "Bad Gateway")
        XCTAssertTrue(h.errorLog.contains("upstream sent too big header while reading response header from upstream"), h.errorLog)

        let roomy = try ProxyHarness(self)
        let b2 = try roomy.backend { _, c in c.send(big, thenClose: true) }
        try load(roomy, servers: [b2.address], location: "proxy_buffer_size 8k;")
        let r = try roomy.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("X-Big"), cookie)
    }

    func testAnInvalidHeaderIsNotRetriedByDefault() throws {
        let h = try ProxyHarness(self)
        let bad = try h.backend { _, c in c.send("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", thenClose: true) }
        let good = try h.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h, servers: [bad.address, good.address])
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 502, "invalid_header is not in the default proxy_next_upstream (error timeout)")
        XCTAssertEqual(good.accepted, 0)
        XCTAssertTrue(h.errorLog.contains("upstream sent invalid header while reading response header from upstream"), h.errorLog)
    }

    func testAnUpstreamClosingWithoutAnAnswerIsRetried() throws {
        let h = try ProxyHarness(self)
        let closing = try h.backend { _, c in c.close() }
        let live = try h.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h, servers: [closing.address, live.address])
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("X-Upstream"), "\(closing.address), \(live.address)")
        XCTAssertEqual(closing.requests.count, 1, "the first peer got the request and closed")
        XCTAssertTrue(h.errorLog.contains("upstream prematurely closed connection while reading response header from upstream"), h.errorLog)
    }

    func testAnErrorStatusIsRetriedWhenNamed() throws {
        let h = try ProxyHarness(self)
        let failing = try h.backend { _, c in c.send(Backend.response(503, reason: "Service Unavailable", body: "busy"), thenClose: true) }
        let live = try h.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h, servers: [failing.address, live.address], location: "proxy_next_upstream error timeout http_503;")
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "from the live peer")
        XCTAssertEqual(r.header("X-Upstream-Status"), "503, 200")

        // Without http_503 the upstream's 503 is the answer.
        let h2 = try ProxyHarness(self)
        let failing2 = try h2.backend { _, c in c.send(Backend.response(503, reason: "Service Unavailable", body: "busy"), thenClose: true) }
        let live2 = try h2.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h2, servers: [failing2.address, live2.address])
        let r2 = try h2.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        // As Debian's nginx 1.22 does: the upstream's status line is passed on, its phrase included.
        XCTAssertEqual(r2.statusLine, "HTTP/1.1 503 Service Unavailable")
        XCTAssertEqual(r2.text, "busy")
        XCTAssertEqual(live2.accepted, 0)
    }

    func testReadTimeoutWithASilentUpstreamIs504() throws {
        let h = try ProxyHarness(self)
        let silent = try h.backend()   // reads the request, never answers
        try load(h, servers: [silent.address], location: "proxy_read_timeout 300ms;")
        let started = Date()
        let r = try h.exchange("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        let elapsed = Date().timeIntervalSince(started)
        assertNginxErrorPage(r, 504, "Gateway Time-out")
        XCTAssertEqual(r.header("X-Upstream-Status"), "504")
        XCTAssertEqual(silent.requests.count, 1)
        XCTAssertGreaterThanOrEqual(elapsed, 0.29, "not before proxy_read_timeout")
        XCTAssertLessThan(elapsed, 2.0, "soon after it")
        XCTAssertTrue(h.errorLog.contains("upstream timed out (110: Connection timed out) while reading response header from upstream"),
                      h.errorLog)
        h.run(until: { silent.connections.allSatisfy(\.peerClosed) }, "the proxy to close its upstream connection")
    }

    func testNextUpstreamTimeoutStopsRetryingAfterItsTime() throws {
        // Each silent peer takes proxy_read_timeout (300 ms) to fail: the second attempt starts at ~300 ms, inside
        // proxy_next_upstream_timeout (450 ms); once it fails at ~600 ms no third one starts.
        let h = try ProxyHarness(self)
        let peers = try (0..<4).map { _ in try h.backend() }
        try load(h, servers: peers.map(\.address), location: "proxy_read_timeout 300ms;\nproxy_next_upstream_timeout 450ms;")
        let started = Date()
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(r.status, 504)
        XCTAssertEqual(r.header("X-Upstream")?.components(separatedBy: ", ").count, 2, r.header("X-Upstream") ?? "")
        XCTAssertEqual(r.header("X-Upstream-Status"), "504, 504")
        XCTAssertEqual(peers.map(\.requests.count).reduce(0, +), 2, "two peers were asked, the others never")
        XCTAssertGreaterThanOrEqual(elapsed, 0.59)
        XCTAssertLessThan(elapsed, 3.0)
    }

    func testWithoutNextUpstreamTimeoutEveryPeerIsTried() throws {
        // The control for the test above: the same peers, no proxy_next_upstream_timeout.
        let h = try ProxyHarness(self)
        let peers = try (0..<3).map { _ in try h.backend() }
        try load(h, servers: peers.map(\.address), location: "proxy_read_timeout 200ms;")
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 504)
        XCTAssertEqual(r.header("X-Upstream"), peers.map(\.address).joined(separator: ", "), "each peer once, in order")
        XCTAssertEqual(peers.map(\.requests.count), [1, 1, 1])
    }

    func testNextUpstreamTriesBoundsTheAttempts() throws {
        let h = try ProxyHarness(self)
        let refused = (0..<3).map { _ in h.refusingPort() }
        let live = try h.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h, servers: refused.map { "127.0.0.1:\($0)" } + [live.address], location: "proxy_next_upstream_tries 2;")
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assertNginxErrorPage(r, 502, "Bad Gateway")
        XCTAssertEqual(r.header("X-Upstream"), "127.0.0.1:\(refused[0]), 127.0.0.1:\(refused[1])")
        XCTAssertEqual(live.accepted, 0)
    }

    func testAFailedPeerIsSkippedByTheNextRequest() throws {
        // max_fails=1 (the default): a refused peer is out for fail_timeout; the next request goes straight to
        // the live one.
        let h = try ProxyHarness(self)
        let refused = h.refusingPort()
        let live = try h.backend { _, c in c.send(ProxyFailureTests.ok, thenClose: true) }
        try load(h, servers: ["127.0.0.1:\(refused)", live.address])
        XCTAssertEqual(try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").header("X-Upstream"), "127.0.0.1:\(refused), \(live.address)")
        for _ in 0..<3 {
            XCTAssertEqual(try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").header("X-Upstream"), live.address)
        }
        XCTAssertEqual(live.requests.count, 4)
    }

    func testAllPeersDownIsNoLiveUpstreams() throws {
        let h = try ProxyHarness(self)
        let refused = [h.refusingPort(), h.refusingPort()]
        try load(h, servers: refused.map { "127.0.0.1:\($0)" })
        XCTAssertEqual(try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 502)
        let again = try h.exchange("GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        assertNginxErrorPage(again, 502, "Bad Gateway")
        // As nginx: no peer was tried, and the attempt is logged under the upstream's name.
        XCTAssertEqual(again.header("X-Upstream"), "u")
        XCTAssertTrue(h.errorLog.contains("no live upstreams while connecting to upstream"), h.errorLog)
    }
}

extension ProxyHarness {
    /// Turns the loop for `ms` milliseconds, waiting up to 20 ms a turn; how many turns that took (an idle loop
    /// makes about ms / 20).
    func countTurns(forMs ms: Int) -> Int {
        let deadline = Date().addingTimeInterval(Double(ms) / 1000)
        var turns = 0
        while Date() < deadline {
            loop.runOnce(waitingAtMost: 20)
            turns += 1
        }
        return turns
    }
}

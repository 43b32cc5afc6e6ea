import XCTest
@testable import HTTPProxy
@testable import HTTPServer

/// What the proxy sends upstream and how it relays the answer, seen from the backend's socket and the
/// client's.
final class ProxyRequestTests: XCTestCase {
    /// One upstream `u` at `backend`, one server with `location / { proxy_pass http://u; <location> }`.
    private func load(_ h: ProxyHarness, _ backends: [Backend], location: String = "", upstream: String = "",
                      server: String = "", file: StaticString = #filePath, line: UInt = #line) throws {
        let servers = backends.map { "server \($0.address);" }.joined(separator: "\n")
        try h.load("""
            upstream u {
            \(servers)
            \(upstream)
            }
            server {
            listen 127.0.0.1:8080;
            \(server)
            location / {
            proxy_pass http://u;
            \(location)
            }
            }
            """, file: file, line: line)
    }

    private static let hello = Backend.response(headers: [("Content-Type", "text/plain"), ("X-Backend", "b1")], body: "hello")

    func testTheRequestSentUpstream() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send(ProxyRequestTests.hello, thenClose: true) }
        try load(h, [b], location: "proxy_set_header X-Real-IP $remote_addr;\nproxy_set_header X-Via \"vigil $request_method\";")
        let r = try h.exchange("GET /path/to?q=1&r=2 HTTP/1.1\r\nHost: client.example\r\nUser-Agent: t/1\r\nX-Custom: yes\r\n"
                               + "Connection: keep-alive, Upgrade\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\n"
                               + "Proxy-Connection: keep-alive\r\nAccept: */*\r\nX-Custom: twice\r\n\r\n")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(b.requests.count, 1)
        let req = try XCTUnwrap(b.requests.first)
        XCTAssertEqual(req.method, "GET")
        XCTAssertEqual(req.target, "/path/to?q=1&r=2", "the request's own target")
        XCTAssertEqual(req.version, "HTTP/1.0", "nginx's default proxy_http_version")
        XCTAssertEqual(req.headers("Host"), ["u"], "Host is $proxy_host, not the client's")
        XCTAssertEqual(req.headers("Connection"), ["close"])
        XCTAssertEqual(req.header("X-Real-IP"), "127.0.0.1")
        XCTAssertEqual(req.header("X-Via"), "vigil GET")
        XCTAssertEqual(req.header("User-Agent"), "t/1")
        XCTAssertEqual(req.header("Accept"), "*/*")
        XCTAssertEqual(req.headers("X-Custom"), ["yes", "twice"], "end-to-end headers pass, repeated ones in order")
        for hop in ["keep-alive", "te", "upgrade", "proxy-connection", "transfer-encoding", "content-length"] {
            XCTAssertFalse(req.headerNames.contains(hop), "\(hop) is hop-by-hop: \(req.head)")
        }
        XCTAssertEqual(Array(req.headerNames.prefix(2)), ["host", "connection"], "the proxy's own headers come first")
        XCTAssertEqual(req.body, [])
    }

    func testProxySetHeaderOverridesAndRemoves() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send(ProxyRequestTests.hello, thenClose: true) }
        try load(h, [b], location: "proxy_set_header Host $host:$server_port;\nproxy_set_header User-Agent \"\";\n"
                 + "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
        _ = try h.exchange("GET / HTTP/1.1\r\nHost: Client.Example:8080\r\nUser-Agent: t/1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
        let req = try XCTUnwrap(b.requests.first)
        XCTAssertEqual(req.headers("Host"), ["client.example:8080"])
        XCTAssertNil(req.header("User-Agent"), "an empty value removes the header")
        XCTAssertEqual(req.headers("X-Forwarded-For"), ["203.0.113.9, 127.0.0.1"], "replaced, not repeated")
    }

    func testABodyGoesUpstreamWithItsLength() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { r, c in c.send(Backend.response(body: "got \(r.body.count)"), thenClose: true) }
        try load(h, [b])
        let r = try h.exchange("POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world")
        XCTAssertEqual(r.text, "got 11")
        let req = try XCTUnwrap(b.requests.first)
        XCTAssertEqual(req.method, "POST")
        XCTAssertEqual(req.headers("Content-Length"), ["11"])
        XCTAssertEqual(String(decoding: req.body, as: UTF8.self), "hello world")
    }

    func testProxyPassWithAURIReplacesTheLocationPrefix() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send(ProxyRequestTests.hello, thenClose: true) }
        try h.load("""
            server {
            listen 127.0.0.1:8080;
            location /app/ { proxy_pass http://\(b.address)/backend/; }
            }
            """)
        let r = try h.exchange("GET /app/x/y?z=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 200)
        let req = try XCTUnwrap(b.requests.first)
        XCTAssertEqual(req.target, "/backend/x/y?z=1")
        XCTAssertEqual(req.header("Host"), b.address, "$proxy_host of an address with a port")
    }

    /// As nginx: the target as the client sent it while nothing changed the URI; else the decoded URI, escaped
    /// again, with its arguments.
    func testTheTargetGoesAsSentAndAChangedURIEscapedAgain() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send(ProxyRequestTests.hello, thenClose: true) }
        try h.load("""
            server {
            listen 127.0.0.1:8080;
            location / { proxy_pass http://\(b.address); }
            location /app/ { proxy_pass http://\(b.address)/backend/; }
            location /moved { rewrite ^ "/a b" break; proxy_pass http://\(b.address); }
            }
            """)
        for (target, sent) in [("/x/../y%41?q=%20#f", "/x/../y%41?q=%20#f"), ("/app/a%20b/../c%3f?z", "/backend/c%3F?z"),
                               ("/app/caf\u{e9}", "/backend/caf\u{e9}"), ("/app/x?", "/backend/x"), ("/moved?k", "/a%20b?k")] {
            _ = try h.exchange("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(b.requests.last?.target, sent, target)
        }
    }

    func testAnEmptyBodyKeepsItsContentLength() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send(ProxyRequestTests.hello, thenClose: true) }
        try load(h, [b])
        _ = try h.exchange("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        _ = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(b.requests.map { $0.headers("Content-Length") }, [["0"], []])
    }

    func testTheResponseIsRelayedWithItsLength() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send(ProxyRequestTests.hello, thenClose: true) }
        try load(h, [b])
        let c = try h.client()
        c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try c.response(in: h)
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(r.headers("Content-Length"), ["5"])
        XCTAssertEqual(r.header("Content-Type"), "text/plain")
        XCTAssertEqual(r.header("X-Backend"), "b1")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertNil(r.header("Transfer-Encoding"))
        XCTAssertEqual(r.text, "hello")
        XCTAssertFalse(r.closeDelimited)

        // The client's connection is kept alive: a second request on it is proxied too.
        c.send("GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let r2 = try c.response(in: h)
        XCTAssertEqual(r2.text, "hello")
        XCTAssertEqual(r2.header("Connection"), "close")
        XCTAssertEqual(b.requests.map(\.target), ["/", "/second"])
        h.run(until: { c.sawEOF }, "the client's connection to close after Connection: close")
        XCTAssertEqual(c.pending, [], "nothing after the second response")
    }

    func testAHeadRequestGetsTheHeadOnly() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", thenClose: true) }
        try load(h, [b])
        let c = try h.client()
        c.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try c.response(in: h, head: true)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Content-Length"), "5")
        XCTAssertEqual(b.requests.first?.method, "HEAD")
        h.run(forMs: 50)
        XCTAssertEqual(c.pending, [], "no body bytes after a HEAD response")
    }

    func testAChunkedResponseIsPassedThroughToAnHTTP11Client() throws {
        let h = try ProxyHarness(self)
        var upstream: BackendConnection?
        let b = try h.backend { _, c in
            upstream = c
            c.send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        }
        try load(h, [b], location: "proxy_http_version 1.1;")
        let c = try h.client()
        c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        // The first chunk reaches the client while the upstream's response is still going on.
        h.run(until: { HTTPResponse.find(c.received, "5\r\nhello\r\n") != nil }, "the first chunk at the client")
        XCTAssertNotNil(upstream)
        upstream?.send("6;ext=1\r\n world\r\n0\r\n\r\n", thenClose: true)
        let r = try c.response(in: h)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers("Transfer-Encoding"), ["chunked"])
        XCTAssertNil(r.header("Content-Length"))
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertEqual(String(decoding: r.wireBody, as: UTF8.self), "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
                       "the upstream's chunks as they came")
        XCTAssertEqual(r.text, "hello world")
    }

    func testAChunkedResponseIsDecodedForAnHTTP10Client() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in
            c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", thenClose: true)
        }
        try load(h, [b], location: "proxy_http_version 1.1;")
        let c = try h.client()
        c.send("GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        let r = try c.response(in: h)
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertNil(r.header("Transfer-Encoding"), "an HTTP/1.0 client cannot take chunks")
        XCTAssertNil(r.header("Content-Length"))
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertTrue(r.closeDelimited)
        XCTAssertEqual(r.text, "hello world", "decoded; the close ends it")
    }

    func testACloseDelimitedBodyReachesAnHTTP10Client() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in c.send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close", thenClose: true) }
        try load(h, [b])
        let c = try h.client()
        c.send("GET / HTTP/1.0\r\n\r\n")
        let r = try c.response(in: h)
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(r.closeDelimited)
        XCTAssertEqual(r.text, "until the close")
        XCTAssertEqual(r.header("Connection"), "close")
    }

    func testUpstreamServerAndDateAreReplacedAndXAccelHeadersDropped() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in
            c.send(Backend.response(headers: [("Server", "apache/2"), ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
                                              ("X-Accel-Redirect", "/internal"), ("X-Accel-Buffering", "no"),
                                              ("X-Accel-Expires", "10"), ("X-Accel-Limit-Rate", "100"), ("X-Accel-Charset", "utf-8"),
                                              ("X-Pad", "avoid browser bug"), ("X-Accel-Info", "kept"), ("Keep-Alive", "timeout=5"),
                                              ("X-Secret", "s3cret"), ("X-Powered-By", "php"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
                                    body: "ok"), thenClose: true)
        }
        // Ignored, the X-Accel fields nginx acts on are still hidden; acted on, X-Accel-Redirect would loop here.
        try load(h, [b], location: "proxy_hide_header X-Secret;\nproxy_hide_header x-powered-by;\nproxy_ignore_headers X-Accel-Redirect;")
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.headers("Server"), ["vigil/0.1.0"], "the proxy's own Server")
        XCTAssertEqual(r.headers("Date").count, 1)
        XCTAssertNotEqual(r.header("Date"), "Mon, 01 Jan 2001 00:00:00 GMT")
        for dropped in ["X-Accel-Redirect", "X-Accel-Buffering", "X-Accel-Expires", "X-Accel-Limit-Rate", "X-Accel-Charset", "X-Pad",
                        "Keep-Alive", "X-Secret", "X-Powered-By"] {
            XCTAssertNil(r.header(dropped), "\(dropped) must not reach the client")
        }
        XCTAssertEqual(r.header("X-Accel-Info"), "kept", "only the X-Accel headers nginx acts on are dropped")
        XCTAssertEqual(r.headers("Set-Cookie"), ["a=1", "b=2"])
        XCTAssertEqual(r.text, "ok")
    }

    func testProxyPassHeaderLetsTheUpstreamsThrough() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in
            c.send(Backend.response(headers: [("Server", "apache/2"), ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
                                              ("X-Accel-Redirect", "/internal")], body: "ok"), thenClose: true)
        }
        try load(h, [b], location: """
            proxy_pass_header Server;\nproxy_pass_header Date;\nproxy_pass_header X-Accel-Redirect;
            proxy_ignore_headers X-Accel-Redirect;
            """)
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.headers("Server"), ["apache/2"], "the upstream's, and not the proxy's as well")
        XCTAssertEqual(r.headers("Date"), ["Mon, 01 Jan 2001 00:00:00 GMT"])
        XCTAssertEqual(r.header("X-Accel-Redirect"), "/internal")
    }

    func testProxyRedirectDefaultRewritesLocationAndRefresh() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { r, c in
            let location: String
            switch r.target {
            case "/elsewhere": location = "http://other.example/login"
            default: location = "http://u/login?next=%2F"
            }
            c.send(Backend.response(302, reason: "Found", headers: [("Location", location), ("Refresh", "5; url=http://u/later")]),
                   thenClose: true)
        }
        try load(h, [b])
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: Client.Example\r\n\r\n")
        XCTAssertEqual(r.status, 302)
        XCTAssertEqual(r.headers("Location"), ["http://client.example:8080/login?next=%2F"],
                       "http://u/ became /, made absolute with the request's host and port")
        XCTAssertEqual(r.header("Refresh"), "5; url=/later")
        let other = try h.exchange("GET /elsewhere HTTP/1.1\r\nHost: client.example\r\n\r\n")
        XCTAssertEqual(other.header("Location"), "http://other.example/login", "another host is left alone")
    }

    func testProxyRedirectDefaultWithAURIMapsToTheLocation() throws {
        let h = try ProxyHarness(self)
        var address = ""   // the backend's own, known once it listens
        let b = try h.backend { _, c in
            c.send(Backend.response(301, reason: "Moved Permanently", headers: [("Location", "http://\(address)/backend/next")]),
                   thenClose: true)
        }
        address = b.address
        try h.load("""
            server {
            listen 127.0.0.1:8080;
            location /app/ { proxy_pass http://\(b.address)/backend/; }
            location /off/ { proxy_pass http://\(b.address)/backend/; proxy_redirect off; }
            location /rule/ { proxy_pass http://\(b.address)/backend/; proxy_redirect http://\(b.address)/backend/ /moved/$host/; }
            }
            """)
        XCTAssertEqual(try h.exchange("GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n").header("Location"), "http://h:8080/app/next")
        XCTAssertEqual(try h.exchange("GET /off/x HTTP/1.1\r\nHost: h\r\n\r\n").header("Location"), "http://\(b.address)/backend/next")
        XCTAssertEqual(try h.exchange("GET /rule/x HTTP/1.1\r\nHost: h\r\n\r\n").header("Location"), "http://h:8080/moved/h/next")
    }

    /// An upstream 401 that an error page answers keeps every WWW-Authenticate it carried (nginx since 1.23;
    /// 1.22 kept the first), whatever the page answers with.
    func testAnInterceptedUnauthorizedKeepsItsChallenges() throws {
        let h = try ProxyHarness(self)
        let b = try h.backend { _, c in
            c.send(Backend.response(401, reason: "Unauthorized", headers: [("WWW-Authenticate", "Basic realm=a"), ("WWW-Authenticate", "Bearer")]),
                   thenClose: true)
        }
        try load(h, [b], location: "proxy_intercept_errors on;\nerror_page 401 /denied;",
                 server: "location = /denied { return 200 \"denied\\n\"; }")
        let r = try h.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(r.status, 401)
        XCTAssertEqual(r.headers("WWW-Authenticate"), ["Basic realm=a", "Bearer"])
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "denied\n")
    }
}

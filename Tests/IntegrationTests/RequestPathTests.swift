import Foundation
import TestHarness
import XCTest

/// The request path on the real binary, seen from a client: `return`, routing, keep-alive, error codes,
/// proxying and balancing, the status pages and the access log. Backends are Vigil's own `return`
/// servers on other loopback ports (and, where the bytes a backend received matter, a capture server
/// inside the test). One worker, so that per-worker balancer state gives exact counts.
final class RequestPathTests: XCTestCase {
    var vigil: Vigil?
    var port: UInt16 = 0
    var capture: CaptureServer?

    override func setUp() {
        port = freePort()
    }

    override func tearDown() {
        capture?.stop()
        vigil?.cleanup()
    }

    /// Starts Vigil with `http` as the body of the http block.
    func start(_ http: String, workers: Int = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        let v = try Vigil(config: Vigil.config(workers: workers, http: http))
        vigil = v
        _ = try v.start(file: file, line: line)
    }

    /// A backend server block answering `text` on every URI.
    func backend(_ p: UInt16, _ text: String) -> String {
        "server { listen 127.0.0.1:\(p); location / { return 200 \"\(text)\"; } }\n"
    }

    func get(_ path: String, host: String = "localhost", headers: [String] = [], on p: UInt16? = nil) throws -> HTTPResponse {
        try httpExchange(p ?? port, getRequest(path, host: host, headers: headers))
    }

    /// nginx's built-in page (ngx_http_special_response.c) with Vigil's name in the footer.
    func errorPage(_ title: String) -> String {
        "<html>\r\n<head><title>\(title)</title></head>\r\n<body>\r\n<center><h1>\(title)</h1></center>\r\n<hr><center>vigil/0.1.0</center>\r\n</body>\r\n</html>\r\n"
    }

    func errorLogEventually(contains s: String, timeout: TimeInterval = 3) -> Bool {
        waitFor(timeout) { self.vigil?.errorLog().contains(s) ?? false }
    }

    // MARK: return

    func testReturnTextHeadersAndBody() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                default_type application/x-vigil-test;
                location / { return 200 "hello from vigil\\n"; }
            }
            """)
        let before = Date()
        let r = try get("/anything")
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(r.text, "hello from vigil\n")
        // nginx's header order for a response it generates itself.
        XCTAssertEqual(r.headers.map { $0.name }, ["Server", "Date", "Content-Type", "Content-Length", "Connection"], r.rawHead)
        XCTAssertEqual(r.header("Server"), "vigil/0.1.0")
        XCTAssertEqual(r.header("Content-Type"), "application/x-vigil-test")
        XCTAssertEqual(r.header("Content-Length"), "17")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        let date = try XCTUnwrap(r.header("Date"))
        XCTAssertTrue(fullMatch(date, #"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT"#), date)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let parsed = try XCTUnwrap(f.date(from: date), date)
        XCTAssertLessThan(abs(parsed.timeIntervalSince(before)), 5, "Date \(date) is not now")

        // HTTP/1.0 gets the same response, with Connection: close.
        let old = try httpExchange(port, "GET /x HTTP/1.0\r\n\r\n")
        XCTAssertEqual(old.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(old.header("Connection"), "close")
        XCTAssertEqual(old.text, "hello from vigil\n")
    }

    func testReturnRedirectAndBareStatus() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /r { return 302 http://x/; }
                location /perm { return 301 http://example.test/moved; }
                location /missing { return 404; }
            }
            """)
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/r"))
        let r = try c.readResponse()
        XCTAssertEqual(r.statusLine, "HTTP/1.1 302 Moved Temporarily")
        XCTAssertEqual(r.header("Location"), "http://x/")
        XCTAssertEqual(r.header("Content-Type"), "text/html")
        XCTAssertEqual(r.header("Server"), "vigil/0.1.0")
        // nginx's status line says "Moved Temporarily", but its page says "302 Found".
        XCTAssertEqual(r.text, errorPage("302 Found"))
        XCTAssertEqual(r.header("Content-Length"), String(r.body.count))
        XCTAssertEqual(r.header("Connection"), "keep-alive")

        // Same connection: redirects and 404 keep it alive, as in nginx.
        try c.send(getRequest("/perm"))
        let p = try c.readResponse()
        XCTAssertEqual(p.statusLine, "HTTP/1.1 301 Moved Permanently")
        XCTAssertEqual(p.header("Location"), "http://example.test/moved")
        XCTAssertEqual(p.text, errorPage("301 Moved Permanently"))

        try c.send(getRequest("/missing"))
        let m = try c.readResponse()
        XCTAssertEqual(m.statusLine, "HTTP/1.1 404 Not Found")
        XCTAssertEqual(m.header("Content-Type"), "text/html")
        XCTAssertEqual(m.text, errorPage("404 Not Found"))
        XCTAssertEqual(m.header("Content-Length"), String(m.body.count))
        XCTAssertEqual(m.header("Connection"), "keep-alive")
        XCTAssertNil(m.header("Location"))
    }

    /// nginx runs `return` in the rewrite phases, before access checks: a location's `return` beats its
    /// `deny`, and a server-level `return` answers every request, whatever location matches.
    func testReturnRunsBeforeAccessAndServerLevelReturnWins() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /denied { deny all; }
                location /returned { deny all; return 200 "returned"; }
            }
            server {
                listen 127.0.0.1:\(port);
                server_name gone.test;
                return 410;
                location /loc { return 200 "location"; }
            }
            """)
        XCTAssertEqual(try get("/denied").status, 403)
        let r = try get("/returned")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "returned")
        let g = try get("/loc", host: "gone.test")
        XCTAssertEqual(g.statusLine, "HTTP/1.1 410 Gone")
        XCTAssertEqual(g.text, errorPage("410 Gone"))
        XCTAssertEqual(try get("/elsewhere", host: "gone.test").status, 410)
    }

    // MARK: routing

    func testLocationMatchingOrder() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location = /exact { return 200 "exact"; }
                location /exact { return 200 "prefix-exact"; }
                location / { return 200 "root"; }
                location /static/ { return 200 "static"; }
                location /static/deep/ { return 200 "static-deep"; }
                location ^~ /assets/ { return 200 "assets"; }
                location ~ \\.php$ { return 200 "php"; }
                location ~* \\.(png|jpg)$ { return 200 "image"; }
                location ~ ^/order/ { return 200 "regex-first"; }
                location ~ ^/order/x { return 200 "regex-second"; }
            }
            """)
        let cases: [(String, String)] = [
            ("/exact", "exact"),
            ("/exact?q=1", "exact"),
            ("/exact/more", "prefix-exact"),
            ("/exactly", "prefix-exact"),
            ("/", "root"),
            ("/nothing/here", "root"),
            ("/static/a", "static"),
            ("/static/deep/a", "static-deep"),
            ("/static/deep", "static"),
            ("/static/a.php", "php"),          // a regex beats the longest plain prefix
            ("/exact.php", "php"),
            ("/assets/a.php", "assets"),       // ^~ stops the regex search
            ("/assets/a.PNG", "assets"),
            ("/img/a.PNG", "image"),           // ~* is case-insensitive
            ("/img/a.jpg", "image"),
            ("/img/a.PHP", "root"),            // ~ is case-sensitive
            ("/order/x", "regex-first"),       // regexes in order of appearance
        ]
        let c = try HTTPConnection(port: port)
        for (path, expected) in cases {
            try c.send(getRequest(path))
            let r = try c.readResponse()
            XCTAssertEqual(r.status, 200, path)
            XCTAssertEqual(r.text, expected, "GET \(path)")
        }
    }

    func testNestedLocations() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /outer/ {
                    location /outer/inner/ { return 200 "inner"; }
                    location ~ \\.txt$ { return 200 "outer-txt"; }
                    return 200 "outer";
                }
                location /pref/ {
                    location ^~ /pref/stop/ { return 200 "pref-stop"; }
                    return 200 "pref";
                }
                location ^~ /noregex/ {
                    location /noregex/inner/ { return 200 "noregex-inner"; }
                    return 200 "noregex";
                }
                location ~ \\.zip$ {
                    location ~ ^/dl/ { return 200 "dl-zip"; }
                    return 200 "zip";
                }
                location ~ \\.txt$ { return 200 "top-txt"; }
                location / { return 200 "root"; }
            }
            """)
        let cases: [(String, String)] = [
            ("/outer/x", "outer"),
            ("/outer/inner/x", "inner"),
            ("/outer/a.txt", "outer-txt"),          // nested regexes are tried before the outer level's
            ("/outer/inner/a.txt", "outer-txt"),
            ("/other/a.txt", "top-txt"),
            ("/pref/x", "pref"),
            ("/pref/stop/x", "pref-stop"),
            // nginx: a nested ^~ only skips the regexes of its own level; the outer level's still apply.
            ("/pref/stop/a.txt", "top-txt"),
            ("/noregex/a.txt", "noregex"),
            ("/noregex/inner/a.txt", "noregex-inner"),
            ("/a.zip", "zip"),
            ("/dl/a.zip", "dl-zip"),                // a regex location's nested locations are searched too
        ]
        let c = try HTTPConnection(port: port)
        for (path, expected) in cases {
            try c.send(getRequest(path))
            let r = try c.readResponse()
            XCTAssertEqual(r.status, 200, path)
            XCTAssertEqual(r.text, expected, "GET \(path)")
        }
    }

    func testServerSelectionByHost() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                server_name a.test;
                location / { return 200 "a"; }
            }
            server {
                listen 127.0.0.1:\(port) default_server;
                server_name b.test;
                location / { return 200 "b"; }
            }
            server {
                listen 127.0.0.1:\(port);
                server_name *.wild.test;
                location / { return 200 "wild"; }
            }
            """)
        let cases: [(String, String)] = [
            ("a.test", "a"),
            ("A.Test:\(port)", "a"),
            ("b.test", "b"),
            ("x.wild.test", "wild"),
            ("deep.x.wild.test", "wild"),
            ("unknown.test", "b"),   // the default_server, not the first server
            ("127.0.0.1", "b"),
        ]
        for (host, expected) in cases {
            let r = try get("/", host: host)
            XCTAssertEqual(r.status, 200, host)
            XCTAssertEqual(r.text, expected, "Host: \(host)")
        }
        // HTTP/1.0 without Host goes to the default server.
        let noHost = try httpExchange(port, "GET / HTTP/1.0\r\n\r\n")
        XCTAssertEqual(noHost.text, "b")
    }

    // MARK: keep-alive

    /// The proxied backend of the keep-alive tests.
    lazy var backendPort: UInt16 = freePort()

    func keepAliveServer(_ extra: String = "") -> String {
        """
        server {
            listen 127.0.0.1:\(port);
            \(extra)
            location /a { return 200 "A"; }
            location /b { return 200 "BB"; }
            location /c { return 200 "CCC"; }
            location /p { proxy_pass http://127.0.0.1:\(backendPort); }
        }
        \(backend(backendPort, "proxied"))
        """
    }

    func testKeepAliveTwoRequestsOnOneConnection() throws {
        try start(keepAliveServer())
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/a"))
        let first = try c.readResponse()
        XCTAssertEqual(first.text, "A")
        XCTAssertEqual(first.header("Connection"), "keep-alive")
        XCTAssertTrue(c.stillOpen(after: 200), "connection closed after a keep-alive response")
        try c.send(getRequest("/p"))
        let second = try c.readResponse()
        XCTAssertEqual(second.status, 200)
        XCTAssertEqual(second.text, "proxied")
        XCTAssertEqual(second.header("Connection"), "keep-alive")
        try c.send(getRequest("/b"))
        XCTAssertEqual(try c.readResponse().text, "BB")
    }

    func testConnectionCloseAndHTTP10() throws {
        try start(keepAliveServer())
        // HTTP/1.1 with Connection: close.
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/a", headers: ["Connection: close"]))
        let r = try c.readResponse()
        XCTAssertEqual(r.text, "A")
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertTrue(c.peerClosed(), "connection not closed after Connection: close")

        // HTTP/1.0 closes by default...
        let d = try HTTPConnection(port: port)
        try d.send("GET /b HTTP/1.0\r\nHost: localhost\r\n\r\n")
        let old = try d.readResponse()
        XCTAssertEqual(old.text, "BB")
        XCTAssertEqual(old.header("Connection"), "close")
        XCTAssertTrue(d.peerClosed(), "HTTP/1.0 connection not closed")

        // ...unless it asks for keep-alive.
        let e = try HTTPConnection(port: port)
        try e.send("GET /b HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
        let ka = try e.readResponse()
        XCTAssertEqual(ka.header("Connection"), "keep-alive")
        XCTAssertTrue(e.stillOpen(after: 200))
        try e.send("GET /c HTTP/1.0\r\nHost: localhost\r\n\r\n")
        let last = try e.readResponse()
        XCTAssertEqual(last.text, "CCC")
        XCTAssertEqual(last.header("Connection"), "close")
        XCTAssertTrue(e.peerClosed())
    }

    func testPipelinedRequestsAnsweredInOrder() throws {
        try start(keepAliveServer())
        let c = try HTTPConnection(port: port)
        // One write: a slow (proxied) request first must not let the fast ones overtake it.
        try c.send(getRequest("/p") + getRequest("/a") + getRequest("/c") + getRequest("/p") + getRequest("/b"))
        var bodies: [String] = []
        for _ in 0..<5 {
            let r = try c.readResponse()
            XCTAssertEqual(r.status, 200)
            bodies.append(r.text)
        }
        XCTAssertEqual(bodies, ["proxied", "A", "CCC", "proxied", "BB"])
        XCTAssertTrue(c.stillOpen(after: 200))

        // Requests with bodies in the pipeline: each body ends exactly where its length says.
        try c.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /c" + getRequest("/b")
                   + "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + getRequest("/c"))
        XCTAssertEqual(try c.readResponse().text, "A")
        XCTAssertEqual(try c.readResponse().text, "BB")
        XCTAssertEqual(try c.readResponse().text, "proxied")
        XCTAssertEqual(try c.readResponse().text, "CCC")
        // A body split across writes (the worker must wait for the rest, not spin).
        try c.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        usleep(100_000)
        try c.send("56789" + getRequest("/a"))
        XCTAssertEqual(try c.readResponse().text, "proxied")
        XCTAssertEqual(try c.readResponse().text, "A")

        // Pipelined, the last one asking to close: all answered, then the close.
        let d = try HTTPConnection(port: port)
        try d.send(getRequest("/c") + getRequest("/a", headers: ["Connection: close"]) + getRequest("/b"))
        XCTAssertEqual(try d.readResponse().text, "CCC")
        let closing = try d.readResponse()
        XCTAssertEqual(closing.text, "A")
        XCTAssertEqual(closing.header("Connection"), "close")
        XCTAssertTrue(d.peerClosed(), "the request after Connection: close was answered")
    }

    func testKeepaliveRequestsLimit() throws {
        try start(keepAliveServer("keepalive_requests 2;"))
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/a"))
        let one = try c.readResponse()
        XCTAssertEqual(one.header("Connection"), "keep-alive")
        try c.send(getRequest("/b"))
        let two = try c.readResponse()
        XCTAssertEqual(two.text, "BB")
        XCTAssertEqual(two.header("Connection"), "close")
        XCTAssertTrue(c.peerClosed(), "still open after keepalive_requests 2")

        // Pipelined: the third is never answered.
        let d = try HTTPConnection(port: port)
        try d.send(getRequest("/a") + getRequest("/b") + getRequest("/c"))
        XCTAssertEqual(try d.readResponse().text, "A")
        XCTAssertEqual(try d.readResponse().header("Connection"), "close")
        XCTAssertEqual(d.readToEOF(), [])
    }

    // MARK: errors

    func errorServer() -> String {
        """
        server {
            listen 127.0.0.1:\(port);
            client_max_body_size 10;
            large_client_header_buffers 2 1k;
            location / { return 200 "ok"; }
        }
        """
    }

    /// Sends `raw`, expects `status` with nginx's page, `Connection: close` and the connection closed.
    func expectErrorAndClose(_ raw: String, _ status: Int, _ title: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try HTTPConnection(port: port)
        try c.send(raw)
        let r = try c.readResponse()
        XCTAssertEqual(r.status, status, raw.debugDescription, file: file, line: line)
        XCTAssertEqual(r.text, errorPage(title), file: file, line: line)
        XCTAssertEqual(r.header("Content-Type"), "text/html", file: file, line: line)
        XCTAssertEqual(r.header("Connection"), "close", file: file, line: line)
        XCTAssertTrue(c.peerClosed(), "not closed after \(status)", file: file, line: line)
    }

    func testMalformedRequests400() throws {
        try start(errorServer())
        try expectErrorAndClose("GARBAGE\r\n\r\n", 400, "400 Bad Request")
        try expectErrorAndClose("GET / HTTP/1.1 junk\r\nHost: x\r\n\r\n", 400, "400 Bad Request")
        // HTTP/1.1 without Host.
        try expectErrorAndClose("GET / HTTP/1.1\r\n\r\n", 400, "400 Bad Request")
        // Content-Length and Transfer-Encoding together (request smuggling).
        try expectErrorAndClose("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "400 Bad Request")
        // The server still answers afterwards.
        XCTAssertEqual(try get("/").text, "ok")
        XCTAssertTrue(errorLogEventually(contains: "client sent HTTP/1.1 request without \"Host\" header"), vigil!.errorLog())
    }

    func testBodyTooLarge413() throws {
        try start(errorServer())
        try expectErrorAndClose("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", 413, "413 Request Entity Too Large")
        // Chunked, 20 bytes in two chunks.
        try expectErrorAndClose("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
                                413, "413 Request Entity Too Large")
        // A large body the server never reads: the client still gets the 413.
        try expectErrorAndClose("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n" + String(repeating: "x", count: 65536),
                                413, "413 Request Entity Too Large")
        // Within the limit is fine.
        let ok = try httpExchange(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
        XCTAssertEqual(ok.status, 200)
        XCTAssertTrue(errorLogEventually(contains: "client intended to send too large body: 11 bytes"), vigil!.errorLog())
    }

    func testRequestLineTooLong414() throws {
        try start(errorServer())
        let long = "/" + String(repeating: "a", count: 1500)
        try expectErrorAndClose("GET \(long) HTTP/1.1\r\nHost: x\r\n\r\n", 414, "414 Request-URI Too Large")
        // A line that fits in the 1k buffer is served.
        let fits = "/" + String(repeating: "a", count: 900)
        XCTAssertEqual(try get(fits).status, 200)
    }

    /// nginx answers a header line longer than large_client_header_buffers with 400 and its 494 page.
    func testHeaderLineTooLong400WithNginxsPage() throws {
        try start(errorServer())
        let c = try HTTPConnection(port: port)
        try c.send("GET / HTTP/1.1\r\nHost: x\r\nCookie: " + String(repeating: "c", count: 1500) + "\r\n\r\n")
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 400)
        XCTAssertEqual(r.text, "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n"
                       + "<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n"
                       + "<hr><center>vigil/0.1.0</center>\r\n</body>\r\n</html>\r\n")
        XCTAssertTrue(c.peerClosed())
    }

    func testUnknownTransferEncoding501() throws {
        try start(errorServer())
        try expectErrorAndClose("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "501 Not Implemented")
    }

    // MARK: proxy

    func testWeightedRoundRobin() throws {
        let b = (freePort(), freePort(), freePort())
        try start("""
            upstream weighted {
                server 127.0.0.1:\(b.0) weight=1;
                server 127.0.0.1:\(b.1) weight=1;
                server 127.0.0.1:\(b.2) weight=2;
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://weighted; } }
            \(backend(b.0, "one"))\(backend(b.1, "two"))\(backend(b.2, "three"))
            """)
        let c = try HTTPConnection(port: port)
        var sequence: [String] = []
        for _ in 0..<400 {
            try c.send(getRequest("/"))
            let r = try c.readResponse()
            XCTAssertEqual(r.status, 200)
            sequence.append(r.text)
        }
        let counts = Dictionary(sequence.map { ($0, 1) }, uniquingKeysWith: +)
        XCTAssertEqual(counts, ["one": 100, "two": 100, "three": 200])
        // nginx's smooth weighted round robin interleaves: c a b c, repeated.
        XCTAssertEqual(Array(sequence.prefix(8)), ["three", "one", "two", "three", "three", "one", "two", "three"])
    }

    func testBackupOnlyWhenPrimariesUnreachable() throws {
        let live = freePort(), spare = freePort(), dead1 = freePort(), dead2 = freePort()
        try start("""
            upstream healthy {
                server 127.0.0.1:\(live);
                server 127.0.0.1:\(spare) backup;
            }
            upstream broken {
                server 127.0.0.1:\(dead1);
                server 127.0.0.1:\(dead2);
                server 127.0.0.1:\(spare) backup;
            }
            server {
                listen 127.0.0.1:\(port);
                location /healthy { proxy_pass http://healthy; }
                location /broken { proxy_pass http://broken; }
            }
            \(backend(live, "primary"))\(backend(spare, "backup"))
            """)
        let c = try HTTPConnection(port: port)
        for _ in 0..<20 {
            try c.send(getRequest("/healthy"))
            XCTAssertEqual(try c.readResponse().text, "primary")
        }
        for i in 0..<10 {
            try c.send(getRequest("/broken"))
            let r = try c.readResponse()
            XCTAssertEqual(r.status, 200, "request \(i)")
            XCTAssertEqual(r.text, "backup", "request \(i)")
        }
        XCTAssertTrue(errorLogEventually(contains: "connect() failed (111: Connection refused) while connecting to upstream"), vigil!.errorLog())
    }

    func testAllPeersDead502() throws {
        let dead1 = freePort(), dead2 = freePort()
        try start("""
            upstream dead {
                server 127.0.0.1:\(dead1);
                server 127.0.0.1:\(dead2);
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://dead; } }
            """)
        let c = try HTTPConnection(port: port)
        for _ in 0..<2 {
            try c.send(getRequest("/x"))
            let r = try c.readResponse()
            XCTAssertEqual(r.statusLine, "HTTP/1.1 502 Bad Gateway")
            XCTAssertEqual(r.text, errorPage("502 Bad Gateway"))
            XCTAssertEqual(r.header("Content-Type"), "text/html")
        }
        XCTAssertTrue(errorLogEventually(contains: "connect() failed (111: Connection refused) while connecting to upstream"), vigil!.errorLog())
        // Both peers failed once (max_fails=1): the second request finds none left.
        XCTAssertTrue(errorLogEventually(contains: "no live upstreams while connecting to upstream"), vigil!.errorLog())
    }

    func testAllPeersDownByCheck502() throws {
        let dead1 = freePort(), dead2 = freePort()
        try start("""
            upstream checked {
                server 127.0.0.1:\(dead1);
                server 127.0.0.1:\(dead2);
                check interval=3000 type=tcp;
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://checked; } }
            """)
        let r = try get("/y")
        XCTAssertEqual(r.status, 502)
        XCTAssertEqual(r.text, errorPage("502 Bad Gateway"))
        XCTAssertTrue(errorLogEventually(contains: "no live upstreams while connecting to upstream"), vigil!.errorLog())
        XCTAssertTrue(vigil!.errorLog().contains("request: \"GET /y HTTP/1.1\", upstream: \"http://checked/y\""), vigil!.errorLog())
    }

    /// `keepalive 2` under bursts of 6 concurrent requests: the connections above 2 are reused by a burst that
    /// follows within a second instead of being closed and opened again, and closed once idle that long.
    func testUpstreamKeepaliveReusesExcessWithinGraceThenTrims() throws {
        let upstream = try RawServer(.keepAlive(Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8), afterMs: 300))
        defer { upstream.stop() }
        port = freePort()   // chosen while the upstream listens, so that the two cannot be given the same port
        try start("""
            upstream pool { server 127.0.0.1:\(upstream.port); keepalive 2; }
            server { listen 127.0.0.1:\(port);
                     location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; } }
            """)
        func burst() throws {
            let clients = try (0..<6).map { _ in try HTTPConnection(port: port) }
            for c in clients { try c.send(getRequest("/")) }
            for c in clients { XCTAssertEqual(try c.readResponse().text, "ok") }
        }
        try burst()
        XCTAssertEqual(upstream.accepted, 6, "six requests at once need six upstream connections")
        try burst()
        XCTAssertEqual(upstream.accepted, 6, "a burst right after the first reuses its connections")
        XCTAssertTrue(waitFor(5) { upstream.openConnections == 2 }, "\(upstream.openConnections) upstream connections left")
        usleep(1_500_000)
        XCTAssertEqual(upstream.openConnections, 2, "keepalive 2 keeps two")
        XCTAssertEqual(try get("/").text, "ok")
        XCTAssertEqual(upstream.accepted, 6)
    }

    /// Like HAProxy's `tcp-smart-connect`: the handshake's last ACK rides on the request, so the backend
    /// receives one segment fewer than from a plain connect-then-send client (what tcpdump shows as
    /// `S`, `S.`, `.P` in place of `S`, `S.`, `.`, `.P`).
    func testUpstreamRequestCarriesTheHandshakeAck() throws {
        guard let (listener, upstreamPort) = loopbackSocket(listening: 8) else { return XCTFail("listen") }
        defer { close(listener) }
        /// Accepts one connection, reads its request head and returns it with the segments it has received.
        func acceptRequest() -> (fd: Int32, segmentsIn: UInt32)? {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            let fd = poll(&pfd, 1, 5000) == 1 ? accept(listener, nil, nil) : -1
            guard fd >= 0 else { return nil }
            var head: [UInt8] = [], buf = [UInt8](repeating: 0, count: 4096)
            while CaptureServer.find([13, 10, 13, 10], in: head) == nil {
                var rfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let n = poll(&rfd, 1, 5000) == 1 ? recv(fd, &buf, buf.count, 0) : 0
                guard n > 0 else { close(fd); return nil }
                head += buf[0..<n]
            }
            // tcpi_segs_in sits at byte 140 of Linux's struct tcp_info (4.2 and later); Glibc's copy predates it.
            var info = [UInt8](repeating: 0, count: 256)
            var length = socklen_t(info.count)
            guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0, length >= 144 else { close(fd); return nil }
            return (fd, info.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 140, as: UInt32.self) })
        }
        let plain = try HTTPConnection(port: upstreamPort)
        try plain.send(getRequest("/"))
        guard let reference = acceptRequest() else { return XCTFail("no request from the plain client") }
        close(reference.fd)

        try start("server { listen 127.0.0.1:\(port); location / { proxy_pass http://127.0.0.1:\(upstreamPort); } }")
        let client = try HTTPConnection(port: port)
        try client.send(getRequest("/"))
        guard let proxied = acceptRequest() else { return XCTFail("no request from Vigil") }
        _ = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".utf8).withUnsafeBytes {
            send(proxied.fd, $0.baseAddress, $0.count, 0)
        }
        close(proxied.fd)
        XCTAssertEqual(try client.readResponse().text, "ok")
        XCTAssertEqual(proxied.segmentsIn, reference.segmentsIn - 1,
                       "segments the backend received up to the request: Vigil's, a plain client's")
    }

    func testIPHashIsSticky() throws {
        let b = (freePort(), freePort(), freePort())
        try start("""
            upstream sticky {
                ip_hash;
                server 127.0.0.1:\(b.0);
                server 127.0.0.1:\(b.1);
                server 127.0.0.1:\(b.2);
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://sticky; } }
            \(backend(b.0, "one"))\(backend(b.1, "two"))\(backend(b.2, "three"))
            """)
        var seen: [String: Int] = [:]
        for _ in 0..<50 {
            let r = try get("/")   // a new connection (and client port) every time
            XCTAssertEqual(r.status, 200)
            seen[r.text, default: 0] += 1
        }
        // nginx's ip_hash of 127.0.0.0/24 over three equal peers picks the third.
        XCTAssertEqual(seen, ["three": 50])
    }

    func testLargePostProxied() throws {
        let b = freePort()
        let cap = try CaptureServer()
        capture = cap
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /upload { proxy_pass http://127.0.0.1:\(b); }
                location /capture/ { proxy_pass http://127.0.0.1:\(cap.port); }
            }
            \(backend(b, "stored"))
            """)
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let head = "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: \(body.count)\r\n\r\n"
        let c = try HTTPConnection(port: port)
        try c.send(Array(head.utf8) + body)
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "stored")
        XCTAssertEqual(r.header("Connection"), "keep-alive")

        // The bytes the backend received: nginx's upstream request with the whole body.
        let capHead = "POST /capture/x?y=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: \(body.count)\r\n\r\n"
        try c.send(Array(capHead.utf8) + body)
        let cr = try c.readResponse()
        XCTAssertEqual(cr.status, 200)
        XCTAssertEqual(cr.text, "ok")
        let got = try XCTUnwrap(cap.requests.first)
        let split = try XCTUnwrap(CaptureServer.find([13, 10, 13, 10], in: got))
        let upstreamHead = String(decoding: got[0..<split], as: UTF8.self)
        let lines = upstreamHead.components(separatedBy: "\r\n")
        XCTAssertEqual(lines.first, "POST /capture/x?y=1 HTTP/1.0")
        XCTAssertTrue(lines.contains("Host: 127.0.0.1:\(cap.port)"), upstreamHead)
        XCTAssertTrue(lines.contains("Connection: close"), upstreamHead)
        XCTAssertTrue(lines.contains("Content-Length: 300000"), upstreamHead)
        XCTAssertTrue(lines.contains("Content-Type: application/octet-stream"), upstreamHead)
        XCTAssertEqual(Array(got[(split + 4)...]), body, "the proxied body differs")
    }

    func testChunkedPostProxied() throws {
        let b = freePort()
        let cap = try CaptureServer()
        capture = cap
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /upload { proxy_pass http://127.0.0.1:\(b); }
                location /capture { proxy_pass http://127.0.0.1:\(cap.port); }
            }
            \(backend(b, "stored"))
            """)
        let chunks = ["hello, ", String(repeating: "z", count: 5000), " bye"]
        var chunked = ""
        for ch in chunks { chunked += String(ch.utf8.count, radix: 16) + "\r\n" + ch + "\r\n" }
        chunked += "0\r\n\r\n"
        let c = try HTTPConnection(port: port)
        try c.send("POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "stored")

        try c.send("POST /capture HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        XCTAssertEqual(try c.readResponse().status, 200)
        let got = try XCTUnwrap(cap.requests.first)
        let split = try XCTUnwrap(CaptureServer.find([13, 10, 13, 10], in: got))
        let lines = String(decoding: got[0..<split], as: UTF8.self).components(separatedBy: "\r\n")
        let joined = chunks.joined()
        XCTAssertTrue(lines.contains("Content-Length: \(joined.utf8.count)"), "\(lines)")
        XCTAssertFalse(lines.contains { $0.lowercased().hasPrefix("transfer-encoding") }, "\(lines)")
        XCTAssertEqual(String(decoding: got[(split + 4)...], as: UTF8.self), joined)
    }

    func testProxyPassURIReplacementAndSetHeader() throws {
        let b = freePort(), h = freePort()
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /outer/ { proxy_pass http://127.0.0.1:\(b)/inner/; }
                location /plain/ { proxy_pass http://127.0.0.1:\(b); }
                location /hdr/ {
                    proxy_set_header X-Test $host;
                    proxy_pass http://127.0.0.1:\(h);
                }
            }
            server { listen 127.0.0.1:\(b); location / { return 200 "$request_uri"; } }
            server { listen 127.0.0.1:\(h); location / { return 200 "$http_x_test"; } }
            """)
        XCTAssertEqual(try get("/outer/a/b?x=1").text, "/inner/a/b?x=1")
        XCTAssertEqual(try get("/outer/").text, "/inner/")
        XCTAssertEqual(try get("/plain/a?x=1").text, "/plain/a?x=1")
        let r = try get("/hdr/", host: "Example.ORG:1234")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "example.org")
        // The client's own X-Test is replaced, not passed alongside.
        XCTAssertEqual(try get("/hdr/", host: "site.test", headers: ["X-Test: from-client"]).text, "site.test")
    }

    // MARK: status pages

    func testCheckStatusPage() throws {
        let b = (freePort(), freePort(), freePort())
        try start("""
            upstream app {
                server 127.0.0.1:\(b.0);
                server 127.0.0.1:\(b.1);
                server 127.0.0.1:\(b.2);
                check interval=1000 default_down=false type=tcp;
            }
            server {
                listen 127.0.0.1:\(port);
                location /status { check_status; }
                location / { proxy_pass http://app; }
            }
            \(backend(b.0, "one"))\(backend(b.1, "two"))\(backend(b.2, "three"))
            """)
        let names = ["127.0.0.1:\(b.0)", "127.0.0.1:\(b.1)", "127.0.0.1:\(b.2)"]
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/status"))
        let html = try c.readResponse()
        XCTAssertEqual(html.status, 200)
        XCTAssertEqual(html.header("Content-Type"), "text/html")
        XCTAssertEqual(html.header("Content-Length"), String(html.body.count))
        // The checker probes each peer within its first second, so a live peer's rise
        // count may already be 1 or more when the page is read: take it from the page, every other byte is fixed.
        let rises = names.map { name -> String in
            let pattern = "<td>" + NSRegularExpression.escapedPattern(for: name) + "</td>\n    <td>up</td>\n    <td>(\\d+)</td>"
            guard let re = try? NSRegularExpression(pattern: pattern),
                  let m = re.firstMatch(in: html.text, range: NSRange(html.text.startIndex..., in: html.text)),
                  let r = Range(m.range(at: 1), in: html.text) else { return "0" }
            return String(html.text[r])
        }
        // The reference module's page, reproduced exactly but for the DOCTYPE's missing quote (a reference bug Vigil fixes).
        var expected = """
            <!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"
            "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
            <html xmlns="http://www.w3.org/1999/xhtml">
            <head>
              <title>Nginx http upstream check status</title>
            </head>
            <body>
            <h1>Nginx http upstream check status</h1>
            <h2>Check upstream server number: 3, generation: 1</h2>
            <table style="background-color:white" cellspacing="0"        cellpadding="3" border="1">
              <tr bgcolor="#C0C0C0">
                <th>Index</th>
                <th>Upstream</th>
                <th>Name</th>
                <th>Status</th>
                <th>Rise counts</th>
                <th>Fall counts</th>
                <th>Check type</th>
                <th>Check port</th>
              </tr>

            """
        for (i, n) in names.enumerated() {
            expected += "  <tr>\n"
            for v in [String(i), "app", n, "up", rises[i], "0", "tcp", "0"] { expected += "    <td>\(v)</td>\n" }
            expected += "  </tr>\n"
        }
        expected += "</table>\n</body>\n</html>\n"
        XCTAssertEqual(html.text, expected)

        try c.send(getRequest("/status?format=csv"))
        let csv = try c.readResponse()
        XCTAssertEqual(csv.header("Content-Type"), "text/plain")
        let csvLines = csv.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(csvLines.count, 4, csv.text)
        XCTAssertEqual(csvLines.last, "")
        for (i, n) in names.enumerated() where i < csvLines.count {
            XCTAssertTrue(fullMatch(csvLines[i], "\(i),app," + NSRegularExpression.escapedPattern(for: n) + ",up,\\d+,0,tcp,0"), csvLines[i])
        }

        try c.send(getRequest("/status?format=json"))
        let json = try c.readResponse()
        XCTAssertEqual(json.header("Content-Type"), "application/json")
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.body)) as? [String: Any])
        let servers = try XCTUnwrap(obj["servers"] as? [String: Any])
        XCTAssertEqual(servers["total"] as? Int, 3)
        XCTAssertEqual(servers["generation"] as? Int, 1)
        let rows = try XCTUnwrap(servers["server"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["name"] as? String }, names)
        XCTAssertEqual(rows.map { $0["status"] as? String }, ["up", "up", "up"])
        XCTAssertEqual(rows.map { $0["index"] as? Int }, [0, 1, 2])

        try c.send(getRequest("/status?format=json&status=down"))
        let none = try c.readResponse()
        XCTAssertEqual(none.status, 200)
        let noneObj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(none.body)) as? [String: Any], none.text)
        let noneServers = try XCTUnwrap(noneObj["servers"] as? [String: Any])
        XCTAssertEqual(noneServers["total"] as? Int, 0)
        XCTAssertEqual((noneServers["server"] as? [Any])?.count, 0)

        try c.send(getRequest("/status", method: "HEAD"))
        let head = try c.readResponse(method: "HEAD")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.header("Content-Type"), "text/html")
        XCTAssertNil(head.header("Content-Length"))
        // No body bytes follow: the next response on the connection starts cleanly.
        try c.send(getRequest("/status?format=csv&status=up"))
        XCTAssertEqual(try c.readResponse().text.split(separator: "\n").count, 3)

        try c.send("POST /status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\na=b")
        let post = try c.readResponse()
        XCTAssertEqual(post.statusLine, "HTTP/1.1 405 Not Allowed")
        XCTAssertEqual(post.text, errorPage("405 Not Allowed"))
    }

    func testStubStatusShape() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /nginx_status { stub_status; }
            }
            """)
        func page(_ active: Int, _ accepts: Int, _ requests: Int, _ reading: Int, _ writing: Int, _ waiting: Int) -> String {
            "Active connections: \(active) \nserver accepts handled requests\n \(accepts) \(accepts) \(requests) \nReading: \(reading) Writing: \(writing) Waiting: \(waiting) \n"
        }
        let a = try HTTPConnection(port: port)
        try a.send(getRequest("/nginx_status"))
        let first = try a.readResponse()
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.header("Content-Type"), "text/plain")
        XCTAssertEqual(first.text, page(1, 1, 1, 0, 1, 0))
        try a.send(getRequest("/nginx_status"))
        XCTAssertEqual(try a.readResponse().text, page(1, 1, 2, 0, 1, 0))

        // An idle keep-alive connection is "Waiting", as in nginx; so is one that has sent nothing yet.
        let b = try HTTPConnection(port: port)
        try b.send(getRequest("/nginx_status"))
        XCTAssertEqual(try b.readResponse().text, page(2, 2, 3, 0, 1, 1))
        let idle = try HTTPConnection(port: port)
        usleep(200_000)
        try a.send(getRequest("/nginx_status"))
        XCTAssertEqual(try a.readResponse().text, page(3, 3, 4, 0, 1, 2))
        // A connection in the middle of its request head is "Reading" (and its request is counted).
        try idle.send("GET /nginx_status HTTP/1.1\r\n")
        usleep(200_000)
        try a.send(getRequest("/nginx_status"))
        XCTAssertEqual(try a.readResponse().text, page(3, 3, 6, 1, 1, 1))
        b.close()
        idle.close()
    }

    /// A killed worker's connections stop counting as active once the master reaps it (nginx counts them until
    /// restart); its accepted and handled totals stay in the sums.
    func testStubStatusForgetsAKilledWorkersConnections() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /nginx_status { stub_status; }
            }
            """)
        let v = try XCTUnwrap(vigil)
        let master = try XCTUnwrap(v.masterPid())
        let worker = try XCTUnwrap(v.waitForWorkers(master, count: 1).first)
        let idle = try (0..<3).map { _ in try HTTPConnection(port: port) }
        defer { for c in idle { c.close() } }
        usleep(200_000)
        XCTAssertTrue(httpGet(port, "/nginx_status")?.body.hasPrefix("Active connections: 4 ") ?? false)
        kill(worker, SIGKILL)
        XCTAssertTrue(waitFor(5) { let w = childPids(of: master); return w.count == 1 && w[0] != worker })
        let page = try XCTUnwrap(httpGet(port, "/nginx_status")?.body)
        XCTAssertTrue(page.hasPrefix("Active connections: 1 \nserver accepts handled requests\n 5 5 2 \n"), page)
        XCTAssertTrue(page.hasSuffix("Reading: 0 Writing: 1 Waiting: 0 \n"), page)
    }

    // MARK: access log

    func testAccessLogCombinedCustomAndOff() throws {
        try start("""
            log_format timing '$status $request_time';
            server {
                listen 127.0.0.1:\(port);
                access_log logs/access.log;
                location / { return 200 "hi"; }
                location /quiet { access_log off; return 200 "q"; }
                location /timed { access_log logs/timing.log timing; return 200 "t"; }
            }
            """)
        let v = vigil!
        let access = v.prefix + "/logs/access.log", timing = v.prefix + "/logs/timing.log"
        func lines(_ path: String) -> [String] {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/hello?x=1", headers: ["User-Agent: test-agent/1.0", "Referer: http://ref.test/"]))
        XCTAssertEqual(try c.readResponse().text, "hi")
        try c.send(getRequest("/quiet"))
        XCTAssertEqual(try c.readResponse().text, "q")
        try c.send(getRequest("/timed"))
        XCTAssertEqual(try c.readResponse().text, "t")
        try c.send("GET /plain HTTP/1.0\r\n\r\n")
        XCTAssertEqual(try c.readResponse().text, "hi")

        XCTAssertTrue(waitFor(3) { lines(access).count >= 3 }, "\(lines(access))")
        let log = lines(access)
        // Two lines and the empty string after the final newline: /quiet and /timed are not in it.
        XCTAssertEqual(log.count, 3, "\(log)")
        let stamp = #"\[\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"#
        XCTAssertTrue(fullMatch(log[0], #"127\.0\.0\.1 - - "# + stamp + #" "GET /hello\?x=1 HTTP/1\.1" 200 2 "http://ref\.test/" "test-agent/1\.0""#), log[0])
        XCTAssertTrue(fullMatch(log[1], #"127\.0\.0\.1 - - "# + stamp + #" "GET /plain HTTP/1\.0" 200 2 "-" "-""#), log[1])
        XCTAssertEqual(log[2], "")

        XCTAssertTrue(waitFor(3) { !lines(timing).isEmpty && lines(timing)[0] != "" }, "\(lines(timing))")
        let t = lines(timing)
        XCTAssertEqual(t.count, 2, "\(t)")
        XCTAssertTrue(fullMatch(t[0], #"200 \d+\.\d{3}"#), t[0])
    }
}

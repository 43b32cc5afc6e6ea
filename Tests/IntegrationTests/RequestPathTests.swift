import Foundation
import TestHarness
import XCTest

/// `return`, routing, keep-alive and error codes on the real binary.
final class RequestPathTests: RequestPathTestCase {
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
        try c.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nGET /c" + getRequest("/b")
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
}

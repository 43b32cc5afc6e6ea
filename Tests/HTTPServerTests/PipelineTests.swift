#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import Core
@testable import HTTPServer

/// The request pipeline's phases in nginx's order (server rewrite, location, location rewrite with
/// re-selection, access, content), its internal redirects (error_page) and `return`, seen on the wire.
final class PipelineTests: XCTestCase {

    // MARK: rewrite phases

    func testServerRewriteRunsBeforeTheLocationIsChosen() throws {
        let s = try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                rewrite ^/old/(.*)$ /new/$1;
                location /old/ { return 200 "old location"; }
                location /new/ { return 200 "new location $uri"; }
            }
            server {
                listen 127.0.0.1:8081;
                return 410;
                location /loc { return 200 "location"; }
            }
            """, test: self)
        let c = try s.connect()
        c.send(get("/old/page"))
        XCTAssertEqual(c.readResponse()?.text, "new location /new/page")
        c.send(get("/new/direct"))
        XCTAssertEqual(c.readResponse()?.text, "new location /new/direct")

        // A server-level return answers before any location's.
        let d = try s.connect(port: 8081)
        d.send(get("/loc"))
        let gone = try XCTUnwrap(d.readResponse())
        XCTAssertEqual(gone.statusLine, "HTTP/1.1 410 Gone")
        XCTAssertEqual(gone.text, nginxPage("410 Gone"))
    }

    func rewriteServer(_ root: String) throws -> EmbeddedServer {
        var chain = ""
        for i in 0...10 { chain += "location = /r\(i) { rewrite ^ /r\(i + 1) last; }\n" }
        return try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                location /last { rewrite ^/last(.*)$ /dest$1 last; return 200 "not re-selected"; }
                location /dest { return 200 "dest $uri $args"; }
                location /args { rewrite ^ /dest?b=2 last; }
                location /brk { root \(root); rewrite ^ /file.txt break; return 200 "after break"; }
                location /file.txt { return 200 "re-selected"; }
                location /plain { rewrite ^/plain(.*)$ /dest$1; return 200 "continued in plain $uri"; }
                \(chain)
                location = /r11 { return 200 "r11 after $uri"; }
                location /loop { rewrite ^ /loop last; }
            }
            """, test: self)
    }

    func testRewriteLastChoosesTheLocationAgain() throws {
        let root = try makeTempDir(self)
        let s = try rewriteServer(root)
        let c = try s.connect()
        c.send(get("/last/x?a=1"))
        XCTAssertEqual(c.readResponse()?.text, "dest /dest/x a=1")
        c.send(get("/args"))
        XCTAssertEqual(c.readResponse()?.text, "dest /dest b=2", "a rewrite's own arguments")
        // Without a flag the location's script goes on (nginx re-selects after it ends unless it answered).
        c.send(get("/plain/y"))
        XCTAssertEqual(c.readResponse()?.text, "continued in plain /dest/y")
    }

    func testRewriteBreakStaysInTheLocation() throws {
        let root = try makeTempDir(self)
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/file.txt", contents: Data("the file\n".utf8)))
        let s = try rewriteServer(root)
        let c = try s.connect()
        c.send(get("/brk"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "the file\n", "break: /brk's root serves the rewritten URI; neither its return nor /file.txt's location")
        XCTAssertEqual(r.header("Content-Type"), "text/plain")
    }

    func testTenRewritesAreAllowedAndTheEleventhIs500() throws {
        let root = try makeTempDir(self)
        let s = try rewriteServer(root)
        let c = try s.connect()
        c.send(get("/r1"))   // /r1 → … → /r11: ten changes
        XCTAssertEqual(c.readResponse()?.text, "r11 after /r11")

        c.send(get("/r0"))   // eleven
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 500 Internal Server Error")
        XCTAssertEqual(r.text, nginxPage("500 Internal Server Error"))
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertEqual(c.readToEOF(), [])
        XCTAssertTrue(s.errorLog.contains("rewrite or internal redirection cycle while processing \"/r11\""), s.errorLog)

        let d = try s.connect()
        d.send(get("/loop"))
        XCTAssertEqual(d.readResponse()?.status, 500)
    }

    // MARK: access

    func testAccessRulesApplyToTheLocationRewrittenInto() throws {
        let root = try makeTempDir(self)
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/open.txt", contents: Data("open\n".utf8)))
        let s = try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                root \(root);
                location /denied { deny all; }
                location /returned { deny all; return 200 "return runs before access"; }
                location /into-denied { rewrite ^ /denied last; }
                location /escape { deny all; rewrite ^ /open.txt last; }
                location /open.txt { }
                location /local { allow 127.0.0.1; deny all; rewrite ^ /open.txt break; }
            }
            """, test: self)
        let c = try s.connect(peer: "127.0.0.1")
        c.send(get("/denied"))
        let denied = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(denied.statusLine, "HTTP/1.1 403 Forbidden")
        XCTAssertEqual(denied.text, nginxPage("403 Forbidden"))
        XCTAssertEqual(denied.header("Connection"), "keep-alive")
        XCTAssertTrue(s.errorLog.contains("access forbidden by rule, client: 127.0.0.1"), s.errorLog)

        c.send(get("/returned"))
        XCTAssertEqual(c.readResponse()?.text, "return runs before access")
        c.send(get("/into-denied"))
        XCTAssertEqual(c.readResponse()?.status, 403, "access is checked after the rewrite, in the location it chose")
        c.send(get("/escape"))
        XCTAssertEqual(c.readResponse()?.text, "open\n", "the deny of the location rewritten away from does not apply")
        c.send(get("/local"))
        XCTAssertEqual(c.readResponse()?.text, "open\n", "allow 127.0.0.1")

        let other = try s.connect(peer: "10.1.2.3")
        other.send(get("/local"))
        XCTAssertEqual(other.readResponse()?.status, 403, "10.1.2.3 falls through to deny all")
        XCTAssertTrue(s.errorLog.contains("access forbidden by rule, client: 10.1.2.3"), s.errorLog)
    }

    // MARK: error_page

    func errorPageServer() throws -> EmbeddedServer {
        try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                location /m1 { error_page 404 /custom; return 404; }
                location /m2 { error_page 404 = /other; return 404; }
                location /m3 { error_page 404 @named; return 404; }
                location /m4 { error_page 404 http://example.test/notfound; return 404; }
                location /m5 { error_page 404 =301 http://example.test/moved; return 404; }
                location /m6 { error_page 404 =200 /custom?from=m6; return 404; }
                location /m7 { error_page 404 /also-missing; return 404; }
                location /m8 { error_page 404 @nowhere; return 404; }
                location /m9 { error_page 404 /custom; return 200 "no error"; }
                location = /custom { return 200 "custom page $request_method $uri $args"; }
                location = /other { return 201 "other page"; }
                location = /also-missing { return 404; }
                location @named { return 200 "named page $uri"; }
            }
            """, test: self)
    }

    func testErrorPageToAURIKeepsTheStatus() throws {
        let s = try errorPageServer()
        let c = try s.connect()
        c.send(get("/m1"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 404 Not Found")
        XCTAssertEqual(r.text, "custom page GET /custom ")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        // A POST becomes a GET in the internal redirect.
        c.send("POST /m1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        let post = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(post.status, 404)
        XCTAssertEqual(post.text, "custom page GET /custom ")
        // =code and arguments.
        c.send(get("/m6"))
        let six = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(six.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(six.text, "custom page GET /custom from=m6")
        // No error, no error page.
        c.send(get("/m9"))
        XCTAssertEqual(c.readResponse()?.text, "no error")
    }

    func testErrorPageWithBareEqualsTakesThePagesStatus() throws {
        let s = try errorPageServer()
        let c = try s.connect()
        c.send(get("/m2"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 201 Created")
        XCTAssertEqual(r.text, "other page")
    }

    func testErrorPageToANamedLocation() throws {
        let s = try errorPageServer()
        let c = try s.connect()
        c.send(get("/m3"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 404 Not Found")
        XCTAssertEqual(r.text, "named page /m3", "a named location keeps the URI")
        // A named location that does not exist: 500.
        c.send(get("/m8"))
        let missing = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(missing.status, 500)
        XCTAssertEqual(missing.text, nginxPage("500 Internal Server Error"))
        XCTAssertTrue(s.errorLog.contains("could not find named location \"@nowhere\""), s.errorLog)
    }

    func testErrorPageToAURLRedirects() throws {
        let s = try errorPageServer()
        let c = try s.connect()
        c.send(get("/m4"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 302 Moved Temporarily")
        XCTAssertEqual(r.header("Location"), "http://example.test/notfound")
        XCTAssertEqual(r.text, nginxPage("302 Found"))
        c.send(get("/m5"))
        let moved = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(moved.statusLine, "HTTP/1.1 301 Moved Permanently")
        XCTAssertEqual(moved.header("Location"), "http://example.test/moved")
    }

    func testAnErrorWhileServingAnErrorPageGetsTheBuiltInPage() throws {
        let s = try errorPageServer()
        let c = try s.connect()
        c.send(get("/m7"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 404 Not Found")
        XCTAssertEqual(r.text, nginxPage("404 Not Found"))
    }

    /// nginx serves error_page for the statuses that end the connection too (checked against Debian's nginx
    /// 1.22: `error_page 400 413 /big` answers a malformed request and a too large body with /big's text,
    /// the status kept, `Connection: close`; a location's `error_page 413 @n` likewise).
    func testErrorPageAnswers400And413AsNginxDoes() throws {
        let s = try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                client_max_body_size 10;
                error_page 400 413 /big;
                location = /big { return 200 "custom page"; }
                location /x { error_page 413 @n; return 200 "ok"; }
                location @n { return 200 "named"; }
                location / { return 200 "root"; }
            }
            """, test: self)
        let c = try s.connect()
        c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        let large = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(large.statusLine, "HTTP/1.1 413 Request Entity Too Large")
        XCTAssertEqual(large.header("Connection"), "close")
        XCTAssertEqual(large.text, "custom page", "error_page 413 was not used")
        XCTAssertEqual(c.readToEOF(), [])

        let d = try s.connect()
        d.send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        let named = try XCTUnwrap(d.readResponse())
        XCTAssertEqual(named.status, 413)
        XCTAssertEqual(named.text, "named", "a location's error_page 413 @n was not used")

        let e = try s.connect()
        e.send("GARBAGE\r\n\r\n")
        let bad = try XCTUnwrap(e.readResponse())
        XCTAssertEqual(bad.statusLine, "HTTP/1.1 400 Bad Request")
        XCTAssertEqual(bad.header("Connection"), "close")
        XCTAssertEqual(bad.text, "custom page", "error_page 400 was not used")
        XCTAssertEqual(e.readToEOF(), [])
    }

    // MARK: return

    func redirectServer() throws -> EmbeddedServer {
        try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                server_name main.test;
                location /redir { return 301 /target; }
                location /noport { port_in_redirect off; return 301 /target; }
                location /byname { server_name_in_redirect on; return 302 /target; }
                location /relative { absolute_redirect off; return 301 /target; }
                location /full { return 307 http://other.test/x; }
                location /drop { return 444; }
                location = /status { stub_status; }
            }
            server {
                listen 127.0.0.1:80;
                location /redir { return 301 /target; }
            }
            """, test: self)
    }

    func testReturnRedirectGetsAnAbsoluteLocation() throws {
        let s = try redirectServer()
        let c = try s.connect()
        c.send(get("/redir", host: "Example.COM"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 301 Moved Permanently")
        XCTAssertEqual(r.header("Location"), "http://example.com:8080/target", "the host, lowercased, and the port the request came in on")
        XCTAssertEqual(r.text, nginxPage("301 Moved Permanently"))
        XCTAssertEqual(r.header("Content-Type"), "text/html")
        XCTAssertEqual(r.header("Connection"), "keep-alive")

        c.send(get("/redir", host: "example.com:9999"))
        XCTAssertEqual(c.readResponse()?.header("Location"), "http://example.com:8080/target", "the Host's port is not the server's")
        c.send(get("/noport", host: "example.com"))
        XCTAssertEqual(c.readResponse()?.header("Location"), "http://example.com/target")
        c.send(get("/byname", host: "example.com"))
        let byName = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(byName.statusLine, "HTTP/1.1 302 Moved Temporarily")
        XCTAssertEqual(byName.header("Location"), "http://main.test:8080/target")
        c.send(get("/relative", host: "example.com"))
        XCTAssertEqual(c.readResponse()?.header("Location"), "/target")
        c.send(get("/full", host: "example.com"))
        let full = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(full.statusLine, "HTTP/1.1 307 Temporary Redirect")
        XCTAssertEqual(full.header("Location"), "http://other.test/x")
        // Port 80 is http's own: not shown.
        let d = try s.connect(port: 80)
        d.send(get("/redir", host: "example.com"))
        XCTAssertEqual(d.readResponse()?.header("Location"), "http://example.com/target")
    }

    /// Without a Host header (HTTP/1.0) nginx makes the Location's host the address the connection came in
    /// on, not the server_name (server_name_in_redirect, else the Host, else the local address); checked
    /// against Debian's nginx 1.22: `http://127.0.0.1:PORT/target`.
    func testRedirectWithoutHostUsesTheLocalAddress() throws {
        let s = try redirectServer()
        let c = try s.connect()
        c.send("GET /redir HTTP/1.0\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 301)
        XCTAssertEqual(r.header("Location"), "http://127.0.0.1:8080/target")
        // server_name_in_redirect on still names the server.
        let d = try s.connect()
        d.send("GET /byname HTTP/1.0\r\n\r\n")
        XCTAssertEqual(d.readResponse()?.header("Location"), "http://main.test:8080/target")
    }

    func testReturn444ClosesWithoutAResponse() throws {
        let s = try redirectServer()
        let c = try s.connect()
        c.send(get("/drop"))
        XCTAssertEqual(c.readToEOF(), [], "444 sent bytes")
        XCTAssertTrue(c.waitServerClosed())
        // Pipelined after an answered request: the first answer still goes out whole.
        let d = try s.connect()
        d.send(get("/full") + get("/drop") + get("/full"))
        XCTAssertEqual(d.readResponse()?.status, 307)
        XCTAssertEqual(d.readToEOF(), [])
        XCTAssertTrue(d.waitServerClosed())
    }

    func testStubStatusCountsConnectionsAndRequests() throws {
        let s = try redirectServer()
        let idle = try s.connect()          // waiting
        let reading = try s.connect()       // a head in progress
        reading.send("GET /full HTTP/1.1\r\n")
        XCTAssertTrue(reading.staysOpenAndQuiet(for: 30))
        let c = try s.connect()
        c.send(get("/status"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(r.header("Content-Type"), "text/plain")
        XCTAssertEqual(r.text, "Active connections: 3 \nserver accepts handled requests\n 3 3 2 \nReading: 1 Writing: 1 Waiting: 1 \n")
        XCTAssertTrue(idle.staysOpenAndQuiet(for: 1))

        // The reading connection finishes its request; the idle one goes away.
        reading.send("Host: x\r\n\r\n")
        XCTAssertEqual(reading.readResponse()?.status, 307)
        idle.closeClientEnd()
        XCTAssertTrue(idle.waitServerClosed())
        c.send(get("/status"))
        XCTAssertEqual(c.readResponse()?.text,
                       "Active connections: 2 \nserver accepts handled requests\n 3 3 3 \nReading: 0 Writing: 1 Waiting: 1 \n")

        // stub_status answers GET and HEAD only.
        c.send("POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 405)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import Core
@testable import HTTPServer

/// HTTP/1 framing and keep-alive, as a client sees them on the wire: an `H1Connection` on one end of a
/// socket pair, driven by turning its loop.
final class H1ConnectionTests: XCTestCase {

    func server(_ extra: String = "", locations: String = "") throws -> EmbeddedServer {
        try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                server_name localhost;
                \(extra)
                location /a { return 200 "A"; }
                location /b { return 200 "BB"; }
                location /c { return 200 "CCC"; }
                location /x { return 200 "x"; }
                location /echo { return 200 "[$request_body]"; }
                \(locations)
            }
            """, test: self)
    }

    // MARK: a simple response

    func testReturnAnsweredWithExactHead() throws {
        let s = try server()
        let c = try s.connect()
        let before = time(nil)
        c.send(get("/x"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(r.headerNames, ["Server", "Date", "Content-Type", "Content-Length", "Connection"], r.rawHead)
        XCTAssertEqual(r.header("Server"), Version.serverToken)
        XCTAssertEqual(r.header("Content-Type"), "text/plain", "default_type of an http block without one")
        XCTAssertEqual(r.header("Content-Length"), "1")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertEqual(r.text, "x")
        // The Date is now, in IMF-fixdate.
        let date = try XCTUnwrap(r.header("Date"))
        XCTAssertNotNil(date.range(of: #"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$"#,
                                   options: .regularExpression), date)
        let allowed = (before - 1...time(nil) + 1).map { Clock.httpDate(at: Int($0)) }
        XCTAssertTrue(allowed.contains(date), "Date \(date) is not now (\(allowed))")
        // Exactly that and nothing more on the wire; the connection stays open.
        XCTAssertEqual(r.rawHead, "HTTP/1.1 200 OK\r\nServer: \(Version.serverToken)\r\nDate: \(date)\r\nContent-Type: text/plain\r\n"
                       + "Content-Length: 1\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 50))
        XCTAssertEqual(c.connection?.isIdle, true)
    }

    func testKeepAliveHeaderFromKeepaliveTimeoutsSecondValue() throws {
        let s = try server("keepalive_timeout 30s 25s;")
        let c = try s.connect()
        c.send(get("/x"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertEqual(r.header("Keep-Alive"), "timeout=25")
        XCTAssertEqual(r.headerNames.last, "Keep-Alive")
    }

    // MARK: keep-alive rules

    func testHTTP10WithoutKeepAliveClosesAfterTheResponse() throws {
        let s = try server()
        let c = try s.connect()
        c.send("GET /x HTTP/1.0\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertEqual(r.text, "x")
        XCTAssertEqual(c.readToEOF(), [], "nothing after the response, then EOF")
        XCTAssertTrue(c.waitServerClosed(), "the server did not close the connection")
    }

    func testHTTP10WithKeepAliveStaysOpen() throws {
        let s = try server()
        let c = try s.connect()
        c.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 50))
        c.send("GET /b HTTP/1.0\r\n\r\n")
        let second = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(second.text, "BB")
        XCTAssertEqual(second.header("Connection"), "close")
        XCTAssertTrue(c.waitServerClosed())
    }

    func testKeepaliveTimeoutZeroDisablesKeepAlive() throws {
        let s = try server("keepalive_timeout 0;")
        let c = try s.connect()
        c.send(get("/a"))
        XCTAssertEqual(c.readResponse()?.header("Connection"), "close")
        XCTAssertEqual(c.readToEOF(), [])
        XCTAssertTrue(c.waitServerClosed())
    }

    func testConnectionCloseIsHonoured() throws {
        let s = try server()
        let c = try s.connect()
        c.send(get("/a", ["Connection: close"]))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.text, "A")
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertEqual(c.readToEOF(), [])
        XCTAssertTrue(c.waitServerClosed())
    }

    func testKeepaliveRequestsClosesAfterTheLimit() throws {
        let s = try server("keepalive_requests 2;")
        let c = try s.connect()
        c.send(get("/a"))
        XCTAssertEqual(c.readResponse()?.header("Connection"), "keep-alive")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 30))
        c.send(get("/b"))
        let two = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(two.text, "BB")
        XCTAssertEqual(two.header("Connection"), "close")
        XCTAssertEqual(c.readToEOF(), [])
        XCTAssertTrue(c.waitServerClosed())

        // Pipelined: the third request is never answered.
        let d = try s.connect()
        d.send(get("/a") + get("/b") + get("/c"))
        XCTAssertEqual(d.readResponse()?.text, "A")
        XCTAssertEqual(d.readResponse()?.header("Connection"), "close")
        XCTAssertEqual(d.readToEOF(), [], "the request past keepalive_requests was answered")
        d.closeClientEnd()
        XCTAssertTrue(d.waitServerClosed())
    }

    func testPipelinedRequestsAnsweredInOrder() throws {
        let s = try server()
        let c = try s.connect()
        c.send(get("/c") + get("/a") + "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz" + get("/b")
               + get("/x", ["Connection: close"]) + get("/a"))
        var bodies: [String] = []
        for _ in 0..<5 { bodies.append(c.readResponse()?.text ?? "<none>") }
        XCTAssertEqual(bodies, ["CCC", "A", "[xyz]", "BB", "x"])
        XCTAssertEqual(c.readToEOF(), [], "a request after Connection: close was answered")
    }

    /// A request whose handler answers later (as a proxied one does) holds back the pipelined requests
    /// behind it: answers go out in request order.
    func testPipelinedRequestsBehindASlowHandlerWaitTheirTurn() throws {
        let s = try server(locations: "location /slow { proxy_pass http://127.0.0.1:9; }")
        let handler = ScriptedHandler { r in
            r.service.loop.schedule(after: 50) { ScriptedHandler.stream(r, ["slow ", r.uri]) }
        }
        s.service.proxyHandler = handler
        let c = try s.connect()
        c.send(get("/slow/1") + get("/a") + get("/slow/2") + get("/b"))
        var bodies: [String] = []
        for _ in 0..<4 { bodies.append(c.readResponse()?.text ?? "<none>") }
        XCTAssertEqual(bodies, ["slow /slow/1", "A", "slow /slow/2", "BB"])
        XCTAssertEqual(handler.handled, ["/slow/1", "/slow/2"])
        XCTAssertTrue(c.staysOpenAndQuiet(for: 20))
    }

    // MARK: request bodies

    func testContentLengthBodyIsRead() throws {
        let s = try server()
        let c = try s.connect()
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 50), "answered before the body was whole")
        c.send(" world")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "[hello world]")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        // The connection reads the next request where the body ended.
        c.send(get("/a"))
        XCTAssertEqual(c.readResponse()?.text, "A")
    }

    func testChunkedBodyIsRead() throws {
        let s = try server()
        let c = try s.connect()
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 50), "answered before the last chunk")
        c.send("6;ext=1\r\n world\r\n0\r\n\r\n" + get("/b"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.text, "[hello world]")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertEqual(c.readResponse()?.text, "BB", "the request after the chunked body")
    }

    func testBodyOverClientMaxBodySizeIs413AndClose() throws {
        let s = try server("client_max_body_size 10;")
        let c = try s.connect()
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 413 Request Entity Too Large")
        XCTAssertEqual(r.text, nginxPage("413 Request Entity Too Large"))
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertEqual(c.readToEOF(), [], "not half-closed after 413")
        // Lingering close: the server reads what the client still sends until it closes.
        c.closeClientEnd()
        XCTAssertTrue(c.waitServerClosed())
        XCTAssertTrue(s.errorLog.contains("client intended to send too large body: 11 bytes"), s.errorLog)

        // A client that asks before sending gets the 413 instead of a 100 Continue.
        let asking = try s.connect()
        asking.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        let refused = try XCTUnwrap(asking.readResponse())
        XCTAssertEqual(refused.statusLine, "HTTP/1.1 413 Request Entity Too Large")
        XCTAssertEqual(asking.readToEOF(), [])

        // Chunked: the limit applies to what arrives.
        let d = try s.connect()
        d.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n")
        let chunked = try XCTUnwrap(d.readResponse())
        XCTAssertEqual(chunked.status, 413)
        XCTAssertEqual(chunked.header("Connection"), "close")
        XCTAssertEqual(d.readToEOF(), [])
        // A chunk size that takes the body past the limit is refused before its data comes, as nginx does.
        let announced = try s.connect()
        announced.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nfffff\r\nab")
        XCTAssertEqual(announced.readResponse()?.status, 413)
        XCTAssertTrue(s.errorLog.contains("client intended to send too large chunked body: 1048580 bytes"), s.errorLog)

        // Within the limit is fine.
        let e = try s.connect()
        e.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
        XCTAssertEqual(e.readResponse()?.text, "[0123456789]")
    }

    func testMalformedRequestLineIs400WithNginxsPageAndClose() throws {
        let s = try server()
        let c = try s.connect()
        c.send("GARBAGE\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 400 Bad Request")
        XCTAssertEqual(r.text, nginxPage("400 Bad Request"))
        XCTAssertEqual(r.header("Content-Type"), "text/html")
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertEqual(r.headerNames, ["Server", "Date", "Content-Type", "Content-Length", "Connection"])
        XCTAssertEqual(c.readToEOF(), [])
        c.closeClientEnd()
        XCTAssertTrue(c.waitServerClosed())

        // HTTP/1.1 without Host is malformed too.
        let d = try s.connect()
        d.send("GET /a HTTP/1.1\r\n\r\n")
        XCTAssertEqual(d.readResponse()?.status, 400)
        XCTAssertEqual(d.readToEOF(), [])
    }

    func testExpect100ContinueGetsContinueFirst() throws {
        let s = try server()
        let c = try s.connect()
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(String(decoding: c.read(count: 25), as: UTF8.self), "HTTP/1.1 100 Continue\r\n\r\n")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 30), "more than 100 Continue before the body came")
        c.send("body")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(r.text, "[body]")

        // An HTTP/1.0 client gets no interim response.
        let d = try s.connect()
        d.send("POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi")
        let old = try XCTUnwrap(d.readResponse())
        XCTAssertEqual(old.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(old.text, "[hi]")

        // As nginx: a request without a body that expects 100 Continue gets it too, then its answer.
        let e = try s.connect()
        e.send("GET /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(String(decoding: e.read(count: 25), as: UTF8.self), "HTTP/1.1 100 Continue\r\n\r\n")
        XCTAssertEqual(e.readResponse()?.text, "[]")
    }

    // MARK: timeouts and idle connections

    func testIdleKeepAliveConnectionTimesOutSilently() throws {
        let s = try server("keepalive_timeout 300ms;")
        let c = try s.connect()
        c.send(get("/a"))
        XCTAssertEqual(c.readResponse()?.text, "A")
        let idleSince = Date()
        XCTAssertTrue(c.staysOpenAndQuiet(for: 100), "closed before keepalive_timeout")
        XCTAssertTrue(c.waitServerClosed(timeout: 2), "not closed after keepalive_timeout")
        let waited = Date().timeIntervalSince(idleSince)
        XCTAssertGreaterThanOrEqual(waited, 0.2, "closed well before keepalive_timeout")
        XCTAssertLessThan(waited, 1.5)
        XCTAssertEqual(c.readToEOF(), [], "a keep-alive timeout sends nothing")
        XCTAssertFalse(s.errorLog.contains("timed out"), "the keep-alive timeout is silent: \(s.errorLog)")
    }

    func testClientHeaderTimeoutClosesWithoutAResponse() throws {
        let s = try server("client_header_timeout 300ms;")
        // Nothing sent at all.
        let c = try s.connect()
        XCTAssertTrue(c.waitServerClosed(timeout: 2), "not closed after client_header_timeout")
        XCTAssertEqual(c.readToEOF(), [])
        // Half a head: no 408 on the wire either (nginx terminates the request), but it is logged.
        let d = try s.connect()
        d.send("GET /a HTTP/1.1\r\nHost:")
        XCTAssertTrue(d.staysOpenAndQuiet(for: 100))
        XCTAssertTrue(d.waitServerClosed(timeout: 2))
        XCTAssertEqual(d.readToEOF(), [])
        XCTAssertTrue(s.errorLog.contains("client timed out (110: Connection timed out) while reading client request headers, client: unix:"),
                      s.errorLog)
    }

    func testIdleConnectionHoldsNoBuffers() throws {
        let s = try server()
        XCTAssertEqual(s.service.buffers.held, 0)
        let c = try s.connect()
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        s.run(timeout: 0.3) { false }
        XCTAssertGreaterThan(s.service.buffers.held, 0, "a connection reading a body holds its input buffer")
        c.send("cd")
        XCTAssertEqual(c.readResponse()?.text, "[abcd]")
        XCTAssertTrue(s.run { s.service.buffers.held == 0 }, "held \(s.service.buffers.held) after a keep-alive response")
        XCTAssertEqual(c.connection?.isIdle, true)
        XCTAssertGreaterThan(s.service.buffers.pooled, 0, "the buffers went back to the pool")
        // And they come back for the next request.
        c.send(get("/a"))
        XCTAssertEqual(c.readResponse()?.text, "A")
        XCTAssertTrue(s.run { s.service.buffers.held == 0 })
    }

    /// A client that goes away mid-head: the connection closes and, dropped by its owner as the worker's
    /// connection set drops it, is freed with its buffers.
    func testClientClosingMidHeadClosesAndFreesTheConnection() throws {
        let s = try server()
        let c = try s.connect()
        c.send("GET /a HTTP/1.1\r\nHo")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 30))
        XCTAssertEqual(s.service.buffers.held, 1)
        c.closeClientEnd()
        XCTAssertTrue(c.waitServerClosed())
        XCTAssertNil(c.connection, "the closed connection is still alive")
        XCTAssertEqual(s.service.buffers.held, 0)
    }

    /// The same for a connection that closes while its request is in flight: a client gone mid-body, a
    /// `return 444`, a client_body_timeout. Once the worker's connection set has dropped it (here: once
    /// nothing but the test's weak reference is left), nothing should hold it, nor its buffers.
    func testConnectionClosedMidRequestIsFreed() throws {
        let s = try server("client_body_timeout 100ms;", locations: "location /drop { return 444; }")
        var leaked: [String] = []
        func check(_ what: String, _ c: TestClient) {
            XCTAssertTrue(c.waitServerClosed(), "\(what): not closed")
            if c.connection != nil { leaked.append(what) }
        }
        let gone = try s.connect()
        gone.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        XCTAssertTrue(gone.staysOpenAndQuiet(for: 30))
        XCTAssertNotNil(gone.connection?.request)
        gone.closeClientEnd()
        check("client gone mid-body", gone)

        let dropped = try s.connect()
        dropped.send(get("/drop"))
        XCTAssertEqual(dropped.readToEOF(), [])
        check("return 444", dropped)

        let slow = try s.connect()
        slow.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        check("client_body_timeout", slow)
        XCTAssertTrue(s.errorLog.contains("client timed out (110: Connection timed out) while reading client request body"), s.errorLog)

        XCTAssertEqual(leaked, [], "closed connections still alive: each H1Connection.request holds a RequestContext whose transport holds the connection")
        XCTAssertEqual(s.service.buffers.held, 0, "buffers of closed connections are still held")
    }

    /// The harness itself: a server and its clients, once let go of, leave no descriptor open (sockets, epoll,
    /// eventfd, log file), whatever state its connections were in.
    func testNothingIsLeftOpen() throws {
        func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
        let before = openDescriptors()
        do {
            let s = try server()
            let done = try s.connect()
            done.send(get("/a"))
            XCTAssertEqual(done.readResponse()?.text, "A")
            let midHead = try s.connect()
            midHead.send("GET /a HTTP/1.1\r\n")
            XCTAssertTrue(midHead.staysOpenAndQuiet(for: 10))
            XCTAssertGreaterThan(openDescriptors(), before + 4)
        }
        XCTAssertEqual(openDescriptors(), before)
    }

    /// stub_status's gauges: every path that ends a connection gives back what it counted.
    func testCountersReturnToZeroWhenConnectionsClose() throws {
        let s = try server("client_max_body_size 4; client_header_timeout 100ms;", locations: "location /drop { return 444; }")
        let keepAlive = try s.connect()
        keepAlive.send(get("/a"))
        XCTAssertEqual(keepAlive.readResponse()?.status, 200)
        let bad = try s.connect()
        bad.send("GARBAGE\r\n\r\n")
        XCTAssertEqual(bad.readResponse()?.status, 400)
        let large = try s.connect()
        large.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345")
        XCTAssertEqual(large.readResponse()?.status, 413)
        let dropped = try s.connect()
        dropped.send(get("/drop"))
        XCTAssertEqual(dropped.readToEOF(), [])
        let halfHead = try s.connect()
        halfHead.send("GET /a HTTP/1.1\r\n")
        XCTAssertTrue(halfHead.waitServerClosed(), "client_header_timeout")
        let midBody = try s.connect()
        midBody.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n1")
        XCTAssertTrue(midBody.staysOpenAndQuiet(for: 20))
        XCTAssertEqual(s.counters.value(.writing), 1, "the request reading its body")
        for c in [keepAlive, bad, large, midBody] { c.closeClientEnd() }
        XCTAssertTrue(s.run { [keepAlive, bad, large, dropped, halfHead, midBody].allSatisfy(\.serverClosed) })
        XCTAssertEqual(s.counters.value(.active), 0)
        XCTAssertEqual(s.counters.value(.reading), 0)
        XCTAssertEqual(s.counters.value(.writing), 0)
        XCTAssertEqual(s.counters.value(.requests), 6)
        XCTAssertEqual(s.counters.value(.accepted), 6)
    }
}

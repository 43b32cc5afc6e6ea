#if canImport(Glibc)
import Glibc
#endif
import CZlib
import Foundation
import XCTest
import Core
import HTTP
@testable import HTTPServer

/// The response filters as a client sees their work: the header filter (Server, Date), the headers filter
/// (add_header, expires), gzip, and the chunked framing of a body of unknown length.
final class FilterTests: XCTestCase {

    // MARK: HeaderFilter

    func testServerHeaderFollowsServerTokens() throws {
        let s = try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                location /on { return 200 "on"; }
                location /off { server_tokens off; return 200 "off"; }
                location /off-missing { server_tokens off; return 404; }
            }
            """, test: self)
        let c = try s.connect()
        c.send(get("/on"))
        let on = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(on.header("Server"), Version.serverToken)
        XCTAssertTrue(Version.serverToken.hasPrefix("vigil/"))
        XCTAssertEqual(on.headers(named: "Server").count, 1)
        XCTAssertNotNil(on.header("Date"))

        c.send(get("/off"))
        let off = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(off.header("Server"), "vigil")
        XCTAssertNotNil(off.header("Date"))

        // The error page's footer follows it too.
        c.send(get("/off-missing"))
        let missing = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(missing.header("Server"), "vigil")
        XCTAssertEqual(missing.text, nginxPage("404 Not Found", tokens: "vigil"))
    }

    // MARK: HeadersFilter

    func addHeaderServer() throws -> EmbeddedServer {
        try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                add_header X-Server-Level server;
                location /inherit { return 200 "inherited"; }
                location /own {
                    add_header X-Added "uri=$uri";
                    add_header X-Always yes always;
                    add_header X-Empty "$arg_none";
                    return 200 "own";
                }
                location /own-missing { add_header X-Added yes; add_header X-Always yes always; return 404; }
                location /own-error { add_header X-Added yes; add_header X-Always yes always; return 500; }
                location /own-redirect { add_header X-Added yes; return 301 /elsewhere; }
                location /own-created { add_header X-Added yes; return 201 "made"; }
            }
            """, test: self)
    }

    func testAddHeaderOnSuccessAndRedirectStatusesOnly() throws {
        let s = try addHeaderServer()
        let c = try s.connect()
        c.send(get("/own"))
        let ok = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(ok.header("X-Added"), "uri=/own", "add_header on 200, its value rendered")
        XCTAssertEqual(ok.header("X-Always"), "yes")
        XCTAssertNil(ok.header("X-Empty"), "an add_header whose value is empty is not sent")
        XCTAssertNil(ok.header("X-Server-Level"), "a location's add_header replaces the server's")

        c.send(get("/inherit"))
        XCTAssertEqual(c.readResponse()?.header("X-Server-Level"), "server", "a location without add_header inherits the server's")

        c.send(get("/own-missing"))
        let missing = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(missing.status, 404)
        XCTAssertNil(missing.header("X-Added"), "add_header without always on 404")
        XCTAssertEqual(missing.header("X-Always"), "yes", "add_header … always on 404")

        c.send(get("/own-redirect"))
        let redirect = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(redirect.status, 301)
        XCTAssertEqual(redirect.header("X-Added"), "yes", "add_header on 301")

        c.send(get("/own-created"))
        XCTAssertEqual(c.readResponse()?.header("X-Added"), "yes", "add_header on 201")

        c.send(get("/own-error"))
        let error = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(error.status, 500)
        XCTAssertNil(error.header("X-Added"))
        XCTAssertEqual(error.header("X-Always"), "yes")
    }

    func testExpiresEpochMaxAndSeconds() throws {
        let s = try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                location /epoch { expires epoch; return 200 "e"; }
                location /max { expires max; return 200 "m"; }
                location /hour { expires 1h; return 200 "h"; }
                location /past { expires -1; return 200 "p"; }
                location /off { expires off; return 200 "o"; }
                location /missing { expires max; return 404; }
            }
            """, test: self)
        let c = try s.connect()
        c.send(get("/epoch"))
        let epoch = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(epoch.header("Expires"), "Thu, 01 Jan 1970 00:00:01 GMT")
        XCTAssertEqual(epoch.header("Cache-Control"), "no-cache")

        c.send(get("/max"))
        let max = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(max.header("Expires"), "Thu, 31 Dec 2037 23:55:55 GMT")
        XCTAssertEqual(max.header("Cache-Control"), "max-age=315360000")

        let before = Int(time(nil))
        c.send(get("/hour"))
        let hour = try XCTUnwrap(c.readResponse())
        let after = Int(time(nil))
        XCTAssertEqual(hour.header("Cache-Control"), "max-age=3600")
        let allowed = (before...after).map { Clock.httpDate(at: $0 + 3600) }
        XCTAssertTrue(allowed.contains(hour.header("Expires") ?? "-"), "Expires \(hour.header("Expires") ?? "-") is not an hour from now")

        c.send(get("/past"))
        let past = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(past.header("Cache-Control"), "no-cache")
        let expires = past.header("Expires") ?? "-"
        XCTAssertTrue((before - 1...after).map { Clock.httpDate(at: $0 - 1) }.contains(expires), "Expires \(expires) is not a second ago")

        c.send(get("/off"))
        let off = try XCTUnwrap(c.readResponse())
        XCTAssertNil(off.header("Expires"))
        XCTAssertNil(off.header("Cache-Control"))

        c.send(get("/missing"))
        let missing = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(missing.status, 404)
        XCTAssertNil(missing.header("Expires"), "expires on a 404")
        XCTAssertNil(missing.header("Cache-Control"))
    }

    // MARK: GzipFilter

    static let long = String(repeating: "hello gzip world, ", count: 20)

    func gzipServer() throws -> EmbeddedServer {
        let long = FilterTests.long
        return try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                gzip on;
                gzip_min_length 20;
                default_type text/html;
                location /html { return 200 "\(long)"; }
                location /short { return 200 "tiny"; }
                location /plain { default_type text/plain; return 200 "\(long)"; }
                location /json { default_type application/json; gzip_types application/json; return 200 "\(long)"; }
                location /vary { gzip_vary on; return 200 "\(long)"; }
                location /vary-short { gzip_vary on; return 200 "tiny"; }
                location /proxied { gzip_proxied any; return 200 "\(long)"; }
                location /moved { return 301 /html; }
                location /missing { return 404; }
                location /off { gzip off; return 200 "\(long)"; }
            }
            """, test: self)
    }

    /// Sends `request` and expects the long body compressed (and decompressing to it) or not.
    func expectGzip(_ c: TestClient, _ request: String, compressed: Bool, original: String = FilterTests.long,
                    forHead: Bool = false, file: StaticString = #filePath, line: UInt = #line) throws -> WireResponse {
        c.send(request)
        let r = try XCTUnwrap(c.readResponse(forHead: forHead), file: file, line: line)
        if compressed {
            XCTAssertEqual(r.header("Content-Encoding"), "gzip", request, file: file, line: line)
            XCTAssertEqual(r.header("Content-Length"), String(r.body.count), file: file, line: line)
            XCTAssertEqual(Array(r.body.prefix(2)), [0x1f, 0x8b], file: file, line: line)
            XCTAssertLessThan(r.body.count, original.utf8.count, file: file, line: line)
            XCTAssertEqual(gunzip(r.body).map { String(decoding: $0, as: UTF8.self) }, original, file: file, line: line)
        } else {
            XCTAssertNil(r.header("Content-Encoding"), request, file: file, line: line)
            if !forHead { XCTAssertEqual(r.text, original, request, file: file, line: line) }
        }
        return r
    }

    func testGzipCompressesTextHtmlForAClientThatAcceptsIt() throws {
        let s = try gzipServer()
        let c = try s.connect()
        let r = try expectGzip(c, get("/html", ["Accept-Encoding: gzip"]), compressed: true)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Content-Type"), "text/html")
        XCTAssertNil(r.header("Vary"), "Vary without gzip_vary")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        _ = try expectGzip(c, get("/html", ["Accept-Encoding: deflate, gzip;q=0.5"]), compressed: true)
        _ = try expectGzip(c, get("/html", ["Accept-Encoding: x-gzip"]), compressed: true)
        _ = try expectGzip(c, get("/json", ["Accept-Encoding: gzip"]), compressed: true)
        // A HEAD gets its GET's head, as from nginx: the encoding, and no length (nothing is compressed).
        c.send("HEAD /html HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        let head = try XCTUnwrap(c.readResponse(forHead: true))
        XCTAssertEqual(head.header("Content-Encoding"), "gzip")
        XCTAssertNil(head.header("Content-Length"))
        // nginx compresses its own 404 page.
        _ = try expectGzip(c, get("/missing", ["Accept-Encoding: gzip"]), compressed: true, original: nginxPage("404 Not Found"))
        XCTAssertEqual(s.service.buffers.held, 0)
    }

    func testGzipLeavesOtherResponsesAlone() throws {
        let s = try gzipServer()
        let c = try s.connect()
        _ = try expectGzip(c, get("/html"), compressed: false)
        _ = try expectGzip(c, get("/html", ["Accept-Encoding: gzip;q=0"]), compressed: false)
        _ = try expectGzip(c, get("/html", ["Accept-Encoding: deflate, br"]), compressed: false)
        _ = try expectGzip(c, get("/short", ["Accept-Encoding: gzip"]), compressed: false, original: "tiny")
        _ = try expectGzip(c, get("/plain", ["Accept-Encoding: gzip"]), compressed: false)
        _ = try expectGzip(c, get("/off", ["Accept-Encoding: gzip"]), compressed: false)
        _ = try expectGzip(c, get("/moved", ["Accept-Encoding: gzip"]), compressed: false, original: nginxPage("301 Moved Permanently"))
        let plainHead = try expectGzip(c, "HEAD /html HTTP/1.1\r\nHost: x\r\n\r\n", compressed: false, forHead: true)
        XCTAssertEqual(plainHead.header("Content-Length"), String(FilterTests.long.utf8.count))
        // As nginx: a HEAD gets the head its GET would, gzip without a length (nothing is compressed).
        c.send("HEAD /html HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        let head = try XCTUnwrap(c.readResponse(forHead: true))
        XCTAssertEqual(head.header("Content-Encoding"), "gzip")
        XCTAssertNil(head.header("Content-Length"))
        XCTAssertNil(head.header("Transfer-Encoding"))
        // An HTTP/1.0 client (gzip_http_version 1.1).
        let old = try s.connect()
        _ = try expectGzip(old, "GET /html HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n", compressed: false)
    }

    func testGzipThroughAProxyNeedsGzipProxiedAny() throws {
        let s = try gzipServer()
        let c = try s.connect()
        _ = try expectGzip(c, get("/html", ["Accept-Encoding: gzip", "Via: 1.1 cache"]), compressed: false)
        _ = try expectGzip(c, get("/proxied", ["Accept-Encoding: gzip", "Via: 1.1 cache"]), compressed: true)
    }

    func testGzipVary() throws {
        let s = try gzipServer()
        let c = try s.connect()
        let gz = try expectGzip(c, get("/vary", ["Accept-Encoding: gzip"]), compressed: true)
        XCTAssertEqual(gz.headers(named: "Vary"), ["Accept-Encoding"])
        // Whether or not this client takes gzip: a cache must know the answer depends on it.
        let plain = try expectGzip(c, get("/vary"), compressed: false)
        XCTAssertEqual(plain.headers(named: "Vary"), ["Accept-Encoding"])
        // Not for a response gzip would never compress.
        let short = try expectGzip(c, get("/vary-short", ["Accept-Encoding: gzip"]), compressed: false, original: "tiny")
        XCTAssertNil(short.header("Vary"))
    }

    func testGzipOfAStreamedBody() throws {
        let pieces = (0..<50).map { "piece \($0) of a streamed html body\n" }
        let handler = ScriptedHandler { ScriptedHandler.stream($0, pieces, contentType: "text/html", gzip: true) }
        let t = try EmbeddedServer(http: """
            server { listen 127.0.0.1:8080; gzip on; location / { proxy_pass http://127.0.0.1:9; } }
            """, test: self)
        t.service.proxyHandler = handler
        let c = try t.connect()
        c.send(get("/stream", ["Accept-Encoding: gzip"]))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(handler.handled, ["/stream"])
        XCTAssertEqual(r.header("Transfer-Encoding"), "chunked")
        XCTAssertEqual(r.header("Content-Encoding"), "gzip")
        XCTAssertNil(r.header("Content-Length"))
        XCTAssertEqual(gunzip(r.body).map { String(decoding: $0, as: UTF8.self) }, pieces.joined())
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        // The deflate stream went back to the pool, and the connection serves on.
        XCTAssertTrue(t.run { t.service.buffers.held == 0 })
        c.send(get("/again"))
        let plain = try XCTUnwrap(c.readResponse())
        XCTAssertNil(plain.header("Content-Encoding"))
        XCTAssertEqual(plain.text, pieces.joined())
    }

    // MARK: ChunkedFilter

    func testChunkedFilterFramesEachPiece() {
        let out = OutputQueue()
        for piece in ["hello ", "", String(repeating: "z", count: 300)] {
            Array(piece.utf8).withUnsafeBytes { ChunkedFilter.piece($0, into: out) }
        }
        ChunkedFilter.end(nil, into: out)
        XCTAssertEqual(String(decoding: out.bytes, as: UTF8.self),
                       "6\r\nhello \r\n" + "12c\r\n" + String(repeating: "z", count: 300) + "\r\n" + "0\r\n\r\n",
                       "an empty piece must not end the body early")
    }

    func chunkedServer(_ extra: String = "") throws -> (EmbeddedServer, ScriptedHandler) {
        let s = try EmbeddedServer(http: """
            server {
                listen 127.0.0.1:8080;
                \(extra)
                location /stream { proxy_pass http://127.0.0.1:9; }
                location /a { return 200 "A"; }
            }
            """, test: self)
        let handler = ScriptedHandler { ScriptedHandler.stream($0, ["hello ", "", "chunked world"]) }
        s.service.proxyHandler = handler
        return (s, handler)
    }

    func testStreamedBodyIsChunkedOnTheWire() throws {
        let (s, handler) = try chunkedServer()
        let c = try s.connect()
        c.send(get("/stream"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(handler.handled, ["/stream"])
        XCTAssertEqual(r.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(r.headerNames, ["Server", "Date", "Content-Type", "Transfer-Encoding", "Connection"], r.rawHead)
        XCTAssertEqual(r.header("Transfer-Encoding"), "chunked")
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        XCTAssertEqual(String(decoding: r.rawBody, as: UTF8.self), "6\r\nhello \r\nd\r\nchunked world\r\n0\r\n\r\n")
        XCTAssertEqual(r.text, "hello chunked world")
        // The body's end was where the last chunk said: the next response follows at once.
        c.send(get("/a"))
        XCTAssertEqual(c.readResponse()?.text, "A")
        XCTAssertTrue(c.staysOpenAndQuiet(for: 20))
    }

    func testStreamedBodyToHTTP10IsDelimitedByTheClose() throws {
        let (s, _) = try chunkedServer()
        let c = try s.connect()
        c.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertNil(r.header("Transfer-Encoding"))
        XCTAssertNil(r.header("Content-Length"))
        XCTAssertEqual(r.header("Connection"), "close", "a body delimited by the close cannot keep the connection")
        XCTAssertEqual(String(decoding: r.rawBody, as: UTF8.self), "hello chunked world")
        XCTAssertTrue(c.waitServerClosed())
    }

    func testChunkedTransferEncodingOff() throws {
        let (s, _) = try chunkedServer("chunked_transfer_encoding off;")
        let c = try s.connect()
        c.send(get("/stream"))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertNil(r.header("Transfer-Encoding"))
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertEqual(r.text, "hello chunked world")
        XCTAssertTrue(c.waitServerClosed())
    }
}

/// What gunzip makes of `data`: nil unless it is one whole gzip member.
func gunzip(_ data: [UInt8]) -> [UInt8]? {
    var z = z_stream()
    guard inflateInit2_(&z, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
    defer { inflateEnd(&z) }
    var input = data
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 16384)
    return input.withUnsafeMutableBufferPointer { inp -> [UInt8]? in
        z.next_in = inp.baseAddress
        z.avail_in = uInt(inp.count)
        while true {
            let rc = buf.withUnsafeMutableBufferPointer { b -> Int32 in
                z.next_out = b.baseAddress
                z.avail_out = uInt(b.count)
                let rc = inflate(&z, Z_NO_FLUSH)
                out += b[0..<(b.count - Int(z.avail_out))]
                return rc
            }
            if rc == Z_STREAM_END { return z.avail_in == 0 ? out : nil }
            if rc != Z_OK { return nil }
        }
    }
}

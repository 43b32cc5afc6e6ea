import XCTest
@testable import HTTP

/// The request rules Vigil takes from nginx 1.22 (and, where it is stricter, the ones it adds): methods, the
/// request line's spaces and versions, absolute forms, header names, headers allowed once, framing order.
final class RequestStrictnessTests: XCTestCase {
    func testMethodsAreUpperCaseLettersUnderscoresAndDashes() {
        for method in ["get", "Get", "G3T", "X.Y", "GET!", "M~X"] {
            assertFailure("\(method) / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400)
        }
        for method in ["MY_METHOD", "M-SEARCH", "PROPPATCH"] {
            XCTAssertEqual(assertComplete("\(method) / HTTP/1.1\r\nHost: h\r\n\r\n")?.head.method, method)
        }
    }

    func testConnectAndTraceAre405() {
        assertFailure("TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", status: 405)
        assertFailure("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", status: 405)
        // The head's own checks come first.
        assertFailure("TRACE / HTTP/1.1\r\n\r\n", status: 400)
    }

    func testSpacesBetweenTheRequestLinesParts() throws {
        let head = try XCTUnwrap(assertComplete("GET   /x?y   HTTP/1.1  \r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.target, "/x?y")
        XCTAssertEqual(head.versionMinor, 1)
        XCTAssertEqual(assertComplete("GET / HTTP/1.999\r\nHost: h\r\n\r\n")?.head.versionMinor, 999)
        assertFailure("GET / HTTP/1.1000\r\nHost: h\r\n\r\n", status: 400)
    }

    /// A byte nginx refuses is refused when it arrives: a client cannot hold a bad request open.
    func testInvalidBytesAreRefusedBeforeTheLineEnds() {
        assertFailure("get", status: 400)
        assertFailure("GET /a\u{1}", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\n\rX", status: 400)
        assertFailure("GET / HTTP/1.1\r\nX Y", status: 400)
        assertFailure("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", status: 400)
    }

    func testAbsoluteForms() throws {
        var head = try XCTUnwrap(assertComplete("GET ftp://h.example:21/x HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.host, "h.example:21", "any scheme, as nginx")
        XCTAssertEqual(head.target, "/x")
        head = try XCTUnwrap(assertComplete("GET http://[::1]:80/x HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.host, "[::1]:80")
        head = try XCTUnwrap(assertComplete("GET http://h?a#f HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.target, "/?a")
        XCTAssertEqual(head.query, "a")
        for target in ["http://user@h/", "http://h:80a/", "http://a_b/", "http://a..b/", "http://h:123456/", "http://[::1/",
                       "http://h.:1.2/", "http://h/../x", "1http://h/", "http:\\\\h/"] {
            assertFailure("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n", status: 400)
        }
        // The Host header is checked as well, though the target's host wins.
        assertFailure("GET http://h/ HTTP/1.1\r\nHost: a/b\r\n\r\n", status: 400)
    }

    func testPathsAreDecodedAndResolvedForRouting() throws {
        let cases: [(target: String, path: String, query: String?)] = [
            ("/a/../b", "/b", nil), ("/a/./b/.", "/a/b/", nil), ("/a/b/..", "/a/", nil), ("//a//b", "/a/b", nil),
            ("/x/%2e%2e%2fy", "/y", nil), ("/a%2fb", "/a/b", nil), ("/a/.%2e/b", "/b", nil), ("/a/...", "/a/...", nil),
            ("/100%25", "/100%", nil), ("/a%3fb?c", "/a?b", "c"), ("/a%23b", "/a#b", nil), ("/a/..?x/../..", "/", "x/../.."),
            ("/a/..#x", "/", nil), ("/%02", "/\u{2}", nil), ("/caf%C3%A9", "/caf\u{e9}", nil), ("/a?%zz", "/a", "%zz"),
        ]
        for c in cases {
            let head = try XCTUnwrap(assertComplete("GET \(c.target) HTTP/1.1\r\nHost: h\r\n\r\n")).head
            XCTAssertEqual(head.path, c.path, c.target)
            XCTAssertEqual(head.query, c.query, c.target)
            XCTAssertEqual(head.target, c.target, "the target stays as sent")
        }
        XCTAssertEqual(assertComplete("GET /a%41 HTTP/1.1\r\nHost: h\r\n\r\n")?.head.pathWasEscaped, true)
        XCTAssertEqual(assertComplete("GET /a?%41 HTTP/1.1\r\nHost: h\r\n\r\n")?.head.pathWasEscaped, false)
    }

    func testPathsNginxRefuses() {
        for target in ["/..", "/../x", "/a/../../x", "/%2e%2e/x", "/..?x", "/a%00b", "/a%zzb", "/a%4", "/a%", "/%"] {
            assertFailure("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n", status: 400)
        }
    }

    /// Vigil's own rule: a target, and a path once decoded, must be UTF-8 (an overlong "%C0%AE" is no ".").
    func testPathsThatAreNotUTF8Are400() {
        assertFailure(bytes("GET /caf") + [0xE9] + bytes(" HTTP/1.1\r\nHost: h\r\n\r\n"), status: 400)
        for target in ["/caf%E9", "/%C0%AE%C0%AE/x", "/%ED%A0%80"] {
            assertFailure("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n", status: 400)
        }
        XCTAssertEqual(assertComplete("GET /a?caf%E9 HTTP/1.1\r\nHost: h\r\n\r\n")?.head.query, "caf%E9", "a query is not decoded")
    }

    func testMergeSlashesOff() throws {
        let rules = RequestRules(mergeSlashes: false)
        XCTAssertEqual(assertComplete("GET //a//b/./c HTTP/1.1\r\nHost: h\r\n\r\n", rules: rules)?.head.path, "//a//b/c")
        XCTAssertEqual(assertComplete("GET //a/../b HTTP/1.1\r\nHost: h\r\n\r\n", rules: rules)?.head.path, "//b")
    }

    func testInvalidHeaderNamesAreDroppedByDefault() throws {
        let text = "GET / HTTP/1.1\r\nHost: h\r\nX_A: 1\r\nX.B: 2\r\nX@C: 3\r\nX\u{e9}: 4\r\nContent_Length: 5\r\nX-Ok: 6\r\n\r\n"
        let head = try XCTUnwrap(assertComplete(text)).head
        XCTAssertEqual(head.headers.map(\.name), ["Host", "X-Ok"])
        XCTAssertNil(head.contentLength, "a dropped header frames nothing")
    }

    func testUnderscoresInHeaders() throws {
        let rules = RequestRules(underscoresInHeaders: true)
        let head = try XCTUnwrap(assertComplete("GET / HTTP/1.1\r\nHost: h\r\nX_A: 1\r\nTransfer_Encoding: chunked\r\n\r\n", rules: rules)).head
        XCTAssertEqual(head.headers.map(\.name), ["Host", "X_A", "Transfer_Encoding"])
        XCTAssertFalse(head.chunked, "an underscore is no dash")
    }

    func testIgnoreInvalidHeadersOff() throws {
        let rules = RequestRules(ignoreInvalidHeaders: false)
        let head = try XCTUnwrap(assertComplete("GET / HTTP/1.1\r\nHost: h\r\nX_A: 1\r\nX.B: 2\r\n\r\n", rules: rules)).head
        XCTAssertEqual(head.headers.map(\.name), ["Host", "X_A", "X.B"])
        // nginx passes a name that is no token at all on; Vigil refuses it.
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX@C: 3\r\n\r\n", status: 400, rules: rules)
        assertFailure(bytes("GET / HTTP/1.1\r\nHost: h\r\nX") + [0xE9] + bytes(": 4\r\n\r\n"), status: 400, rules: rules)
    }

    func testHeadersNginxAllowsOnce() {
        for name in ["Authorization", "If-Modified-Since", "If-Unmodified-Since", "If-Match", "If-None-Match", "If-Range",
                     "Content-Range", "Expect", "if-match"] {
            assertFailure("GET / HTTP/1.1\r\nHost: h\r\n\(name): a\r\n\(name): b\r\n\r\n", status: 400)
        }
        for name in ["User-Agent", "Cookie", "X-Forwarded-For", "Connection", "Accept"] {
            XCTAssertEqual(assertComplete("GET / HTTP/1.1\r\nHost: h\r\n\(name): a\r\n\(name): b\r\n\r\n")?.head.headers.count, 3)
        }
    }

    /// nginx's order: Host, then Content-Length's value, then Transfer-Encoding (400 on HTTP/1.0, 501 unless it
    /// is "chunked", 400 with a Content-Length).
    func testFramingChecksInNginxsOrder() {
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n", status: 501)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\nTransfer-Encoding: xchunked\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.0\r\nTransfer-Encoding: xchunked\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n", status: 501)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n", status: 501)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\t5\r\n\r\n", status: 400)
        XCTAssertEqual(assertComplete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n")?.head.contentLength, Int.max)
        XCTAssertEqual(assertComplete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:   0005  \r\n\r\n")?.head.contentLength, 5)
    }

    func testExpectContinueOnlyInHTTP11() {
        XCTAssertEqual(assertComplete("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")?.head.expectContinue, false)
        XCTAssertEqual(assertComplete("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")?.head.expectContinue, true)
    }
}

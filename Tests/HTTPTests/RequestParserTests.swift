import XCTest
@testable import HTTP

final class RequestParserTests: XCTestCase {

    // MARK: Request line and headers

    func testHTTP11RequestLineAndHeaders() throws {
        let text = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
        let (head, consumed) = try XCTUnwrap(assertComplete(text))
        XCTAssertEqual(consumed, text.utf8.count)
        XCTAssertEqual(head.method, "GET")
        XCTAssertEqual(head.target, "/index.html")
        XCTAssertEqual(head.path, "/index.html")
        XCTAssertNil(head.query)
        XCTAssertEqual(head.versionMajor, 1)
        XCTAssertEqual(head.versionMinor, 1)
        XCTAssertTrue(head.isHTTP11)
        XCTAssertEqual(head.host, "example.com")
        XCTAssertNil(head.contentLength)
        XCTAssertFalse(head.chunked)
        XCTAssertFalse(head.hasBody)
        XCTAssertFalse(head.expectContinue)
        XCTAssertEqual(head.requestLine, "GET /index.html HTTP/1.1")
        XCTAssertEqual(head.headers.map(\.name), ["Host", "User-Agent", "Accept"])
        XCTAssertEqual(head.headers.map(\.value), ["example.com", "curl/8.5.0", "*/*"])
    }

    func testHTTP10RequestNeedsNoHost() throws {
        let (head, consumed) = try XCTUnwrap(assertComplete("GET /a HTTP/1.0\r\n\r\n"))
        XCTAssertEqual(consumed, 19)
        XCTAssertEqual(head.versionMinor, 0)
        XCTAssertFalse(head.isHTTP11)
        XCTAssertNil(head.host)
        XCTAssertEqual(head.requestLine, "GET /a HTTP/1.0")
    }

    /// As nginx: spaces around a value go, tabs stay (so "Transfer-Encoding:<tab>chunked" is not "chunked").
    func testHeaderNamesKeepCaseValuesLoseSpacesNotTabs() throws {
        let text = "GET / HTTP/1.1\r\nhOsT:   a.example  \r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-Inner: a  b\r\n\r\n"
        let (head, _) = try XCTUnwrap(assertComplete(text))
        XCTAssertEqual(head.headers.map(\.name), ["hOsT", "X-Empty", "X-Tab", "X-Inner"])
        XCTAssertEqual(head.headers.map(\.value), ["a.example", "", "\tv\t", "a  b"])
        XCTAssertEqual(head.host, "a.example")
    }

    func testHeaderLookupIsCaseInsensitive() throws {
        let (head, _) = try XCTUnwrap(assertComplete("GET / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nX-A: 1\r\nx-a: 2\r\n\r\n"))
        XCTAssertEqual(head.header("content-type"), "text/plain")
        XCTAssertEqual(head.header("Content-Type"), "text/plain")
        XCTAssertEqual(head.header("CONTENT-TYPE"), "text/plain")
        XCTAssertEqual(head.header("x-a"), "1", "the first of repeated headers")
        XCTAssertNil(head.header("content-typ"))
        XCTAssertNil(head.header("x-missing"))
    }

    func testMethodsAreTokens() throws {
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "PROPFIND", "M-SEARCH", "X_CUSTOM"] {
            let head = try XCTUnwrap(assertComplete("\(method) / HTTP/1.1\r\nHost: h\r\n\r\n")).head
            XCTAssertEqual(head.method, method)
        }
    }

    func testBareLFLineEndingsAreAccepted() throws {
        let text = "GET / HTTP/1.1\nHost: h\nX: y\n\n"
        let (head, consumed) = try XCTUnwrap(assertComplete(text))
        XCTAssertEqual(consumed, text.utf8.count)
        XCTAssertEqual(head.headers.count, 2)
        XCTAssertEqual(head.header("x"), "y")
    }

    func testContentLengthAndChunked() throws {
        let post = try XCTUnwrap(assertComplete("POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n")).head
        XCTAssertEqual(post.contentLength, 42)
        XCTAssertFalse(post.chunked)
        XCTAssertTrue(post.hasBody)

        let empty = try XCTUnwrap(assertComplete("POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")).head
        XCTAssertEqual(empty.contentLength, 0)
        XCTAssertFalse(empty.hasBody)

        let chunked = try XCTUnwrap(assertComplete("POST /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n")).head
        XCTAssertTrue(chunked.chunked)
        XCTAssertNil(chunked.contentLength)
        XCTAssertTrue(chunked.hasBody)

        let big = try XCTUnwrap(assertComplete("PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999999\r\n\r\n")).head
        XCTAssertEqual(big.contentLength, 999_999_999_999_999_999)
    }

    func testHeadStopsAtBlankLineAndLeavesTheBody() throws {
        let text = "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        let (head, consumed) = try XCTUnwrap(assertComplete(text))
        XCTAssertEqual(consumed, text.utf8.count - 5)
        XCTAssertEqual(head.contentLength, 5)
    }

    // MARK: Keep-alive

    func testKeepAliveRules() throws {
        func keepAlive(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> Bool? {
            assertComplete(text, file: file, line: line)?.head.keepAlive
        }
        XCTAssertEqual(keepAlive("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), true, "HTTP/1.1 defaults to keep-alive")
        XCTAssertEqual(keepAlive("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), false)
        XCTAssertEqual(keepAlive("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"), false)
        XCTAssertEqual(keepAlive("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, close\r\n\r\n"), false)
        XCTAssertEqual(keepAlive("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"), true)
        XCTAssertEqual(keepAlive("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n"), true)
        XCTAssertEqual(keepAlive("GET / HTTP/1.0\r\n\r\n"), false, "HTTP/1.0 defaults to close")
        XCTAssertEqual(keepAlive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), true)
        XCTAssertEqual(keepAlive("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), true)
        XCTAssertEqual(keepAlive("GET / HTTP/1.0\r\nConnection: close\r\n\r\n"), false)
        XCTAssertEqual(keepAlive("GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n"), false, "close wins, as in nginx")
        XCTAssertEqual(keepAlive("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"), false)
    }

    // MARK: Pipelining and incremental arrival

    func testPipelinedRequestsInOneBuffer() throws {
        let first = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
        let second = "POST /two?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n"
        let body = "abcd"
        let third = "GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        let buf = bytes(first + second + body + third)

        var offset = 0
        var seen: [String] = []
        while offset < buf.count {
            let r = parseRequest(Array(buf[offset...]))
            guard case .complete(let head, let consumed) = r else {
                return XCTFail("at offset \(offset): \(describe(r))")
            }
            XCTAssert(consumed > 0 && consumed <= buf.count - offset)
            seen.append(head.target)
            offset += consumed + (head.contentLength ?? 0)
        }
        XCTAssertEqual(seen, ["/one", "/two?x=1", "/three"])
        XCTAssertEqual(offset, buf.count)
    }

    func testPipelinedSecondRequestArrivingPartially() throws {
        let buf = bytes("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHo")
        let (head, consumed) = try XCTUnwrap(assertComplete(buf))
        XCTAssertEqual(head.target, "/a")
        assertIncomplete(Array(buf[consumed...]))
    }

    func testBytesArrivingOneAtATime() throws {
        let requests = [
            "GET /x?y=z HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
            "\r\n\r\nPOST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
            "GET / HTTP/1.0\n\n",
            "GET http://h/abs HTTP/1.1\r\nHost: h\r\n\r\n",
        ]
        for text in requests {
            let all = bytes(text)
            for k in 0..<all.count {
                assertIncomplete(Array(all[0..<k]))
            }
            let (_, consumed) = try XCTUnwrap(assertComplete(all))
            XCTAssertEqual(consumed, all.count)
        }
    }

    func testLeadingEmptyLinesAreTolerated() throws {
        let text = "\r\n\r\n\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n"
        let (head, consumed) = try XCTUnwrap(assertComplete(text))
        XCTAssertEqual(head.target, "/after")
        XCTAssertEqual(consumed, text.utf8.count)
        assertIncomplete(bytes("\r\n\r\n"))
        assertIncomplete([])
    }

    // MARK: Targets

    func testPathAndQuerySplit() throws {
        let cases: [(String, String, String?)] = [
            ("/", "/", nil),
            ("/a/b", "/a/b", nil),
            ("/a?b=1&c=2", "/a", "b=1&c=2"),
            ("/a?", "/a", ""),
            ("/a?x?y", "/a", "x?y"),
            ("/%41%20b?q=%20", "/A b", "q=%20"),
            ("/a#f?x", "/a", nil),
            ("/a?x#f", "/a", "x"),
        ]
        for (target, path, query) in cases {
            let head = try XCTUnwrap(assertComplete("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n")).head
            XCTAssertEqual(head.target, target)
            XCTAssertEqual(head.path, path, target)
            XCTAssertEqual(head.query, query, target)
        }
    }

    func testAbsoluteFormTargets() throws {
        var head = try XCTUnwrap(assertComplete("GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")).head
        XCTAssertEqual(head.host, "example.com:8080", "the authority overrides the Host header")
        XCTAssertEqual(head.target, "/a/b?x=1")
        XCTAssertEqual(head.path, "/a/b")
        XCTAssertEqual(head.query, "x=1")

        head = try XCTUnwrap(assertComplete("GET HTTPS://Example.com HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.host, "Example.com")
        XCTAssertEqual(head.target, "/")
        XCTAssertNil(head.query)

        head = try XCTUnwrap(assertComplete("GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.target, "/?q=1")
        XCTAssertEqual(head.path, "/")
        XCTAssertEqual(head.query, "q=1")

        head = try XCTUnwrap(assertComplete("GET http://h.example/p HTTP/1.0\r\n\r\n")).head
        XCTAssertEqual(head.host, "h.example", "HTTP/1.0 takes the host from the target alone")
        XCTAssertEqual(head.target, "/p")
    }

    func testTargetsAreSplitOnBytesNotCharacters() throws {
        // "?" + U+0301 is one Character but still the "?" byte that nginx and every upstream split on.
        var head = try XCTUnwrap(assertComplete("GET /a?\u{301}x=1 HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.path, "/a")
        XCTAssertEqual(head.query, "\u{301}x=1")
        XCTAssertFalse(head.path.utf8.contains(UInt8(ascii: "?")))

        head = try XCTUnwrap(assertComplete("GET http://evil.example/\u{301}@good.example/x HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.host, "evil.example")
        XCTAssertEqual(head.target, "/\u{301}@good.example/x")

        head = try XCTUnwrap(assertComplete("GET /\u{301}x HTTP/1.1\r\nHost: h\r\n\r\n")).head
        XCTAssertEqual(head.path, "/\u{301}x")
    }

    func testAbsoluteFormStillNeedsHostHeaderInHTTP11() {
        // nginx: "client sent HTTP/1.1 request without "Host" header" even for absolute-form (RFC 9112 §3.2).
        assertFailure("GET http://example.com/ HTTP/1.1\r\n\r\n", status: 400)
    }

    func testAbsoluteFormWithEmptyAuthorityIsRefused() {
        // nginx: "client sent invalid host in request line".
        assertFailure("GET http:///path HTTP/1.1\r\nHost: h\r\n\r\n", status: 400)
    }

    /// nginx takes a target only in origin or absolute form.
    func testAsteriskFormIsRefused() {
        assertFailure("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", status: 400)
        assertFailure("GET * HTTP/1.1\r\nHost: h\r\n\r\n", status: 400)
    }

    // MARK: Expect

    func testExpectContinue() throws {
        XCTAssertEqual(assertComplete("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")?.head.expectContinue, true)
        XCTAssertEqual(assertComplete("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nexpect: 100-Continue\r\n\r\n")?.head.expectContinue, true)
        XCTAssertEqual(assertComplete("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 200-ok\r\n\r\n")?.head.expectContinue, false)
        XCTAssertEqual(assertComplete("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n")?.head.expectContinue, false)
    }

    // MARK: Request line failures

    func testBadMethodIs400() {
        for line in ["G@T / HTTP/1.1", " GET / HTTP/1.1", "GET\t/ HTTP/1.1", "(GET) / HTTP/1.1", "/ HTTP/1.1",
                     "GET", "GET/ HTTP/1.1", "G\u{0}T / HTTP/1.1", "GÉT / HTTP/1.1"] {
            assertFailure("\(line)\r\nHost: h\r\n\r\n", status: 400)
        }
    }

    func testBadTargetIs400() {
        for line in ["GET foo HTTP/1.1", "GET /a\u{7F}b HTTP/1.1", "GET /a\tb HTTP/1.1", "GET /a b HTTP/1.1",
                     "GET http:/h/ HTTP/1.1", "GET /a\rb HTTP/1.1", "GET /a\u{0}b HTTP/1.1", "GET  HTTP/1.1"] {
            assertFailure("\(line)\r\nHost: h\r\n\r\n", status: 400)
        }
    }

    func testBadVersionIs400() {
        for line in ["GET / HTTP/1.x", "GET / HTTP/1", "GET / HTTP/1.", "GET / http/1.1", "GET / HTTP/01.1",
                     "GET / HTTPS/1.1", "GET / HTTP/1.1x", "GET / HTTP/.1", "GET / HTTP 1.1", "GET / HTTP/1.1\r",
                     "GET / HTTP/1.1234", "GET / HTTP/0.9", "GET / HTTP/-1.1", "GET / FOO"] {
            assertFailure("\(line)\r\nHost: h\r\n\r\n", status: 400)
        }
    }

    func testHTTP09IsRefused() {
        assertFailure("GET /\r\n", status: 400)
        assertFailure("GET /\r\n\r\n", status: 400)
        assertFailure("GET /index.html\n", status: 400)
    }

    func testHTTP2AndLaterAre505() {
        assertFailure("GET / HTTP/2.0\r\nHost: h\r\n\r\n", status: 505)
        assertFailure("GET / HTTP/3.0\r\nHost: h\r\n\r\n", status: 505)
        assertFailure("GET / HTTP/11\r\nHost: h\r\n\r\n", status: 505)
        // As in nginx, the major version is judged as soon as it shows, before the line ends.
        assertFailure("GET / HTTP/2", status: 505)
        // HTTP/2's preface fails on its "*" first.
        assertFailure("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: 400)
    }

    func testRequestLineLongerThanLimitIs414() {
        let rules = RequestRules(maxLineLength: 64, maxHeadLength: 1024)
        let longPath = "/" + String(repeating: "a", count: 100)
        assertFailure("GET \(longPath) HTTP/1.1\r\nHost: h\r\n\r\n", status: 414, rules: rules)
        // Refused before the line even ends.
        assertFailure("GET \(longPath)", status: 414, rules: rules)
        // Shorter than the limit: still waiting, then fine.
        let okPath = "/" + String(repeating: "a", count: 40)
        assertIncomplete(bytes("GET \(okPath)"), rules: rules)
        assertComplete("GET \(okPath) HTTP/1.1\r\nHost: h\r\n\r\n", rules: rules)
        // The default limit is 8 KiB.
        assertFailure("GET /" + String(repeating: "b", count: 9000) + " HTTP/1.1\r\nHost: h\r\n\r\n", status: 414)
    }

    // MARK: Header failures

    func testMissingHostInHTTP11Is400() {
        assertFailure("GET / HTTP/1.1\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", status: 400)
    }

    func testDuplicateHostIs400() {
        assertFailure("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n", status: 400)
    }

    func testInvalidHostIs400() {
        // Checked on bytes: a "/" or "." followed by a combining mark is still that byte.
        for host in ["a/b", "a..b", "a\\b", "", ":80", ".", "a/\u{301}b", "a..\u{301}b", "a\u{7F}b", "a b", "\ta",
                     "caf\u{e9}", "a:65536", "a:1.2", "a:80:80", "[::1", "x[::1]", "[::1].", "[::1]x", "a@b"] {
            assertFailure("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n", status: 400)
        }
        for host in ["a.example", "a.example:8080", "[::1]:80", "127.0.0.1", "a.example.", ".a", "a_b", "a:", "a:65535",
                     "[v1.x]"] {
            XCTAssertEqual(assertComplete("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n")?.head.host, host)
        }
    }

    func testContentLengthWithTransferEncodingIs400() {
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", status: 400)
    }

    /// nginx refuses a repeated Content-Length even when the values agree.
    func testIdenticalDuplicateContentLengthIs400() {
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length:  5 \r\n\r\n", status: 400)
    }

    func testDifferingDuplicateContentLengthIs400() {
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 10\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX: y\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n", status: 400)
    }

    func testBadContentLengthIs400() {
        for value in ["abc", "-1", "+5", "5 5", "5,5", "0x10", "", "1.0", "99999999999999999999", "9223372036854775808",
                      "18446744073709551616"] {
            assertFailure("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \(value)\r\n\r\n", status: 400)
        }
    }

    func testTransferEncodingOtherThanChunkedIs501() {
        for value in ["gzip", "identity", "chunked, gzip", "gzip, chunked", "chunkedx", "chunked;q=1"] {
            assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \(value)\r\n\r\n", status: 501)
        }
    }

    func testCodingsAndTokensCompareASCIICaseOnly() throws {
        // U+212A KELVIN SIGN lowercases to "k": nginx sees 9 bytes that are not "chunked", and so must Vigil.
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chun\u{212A}ed\r\n\r\n", status: 501)
        XCTAssertEqual(assertComplete("GET / HTTP/1.0\r\nConnection: \u{212A}eep-alive\r\n\r\n")?.head.keepAlive, false)
        XCTAssertEqual(assertComplete("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n")?.head.chunked, true)
        XCTAssertEqual(assertComplete("GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n")?.head.keepAlive, false)
    }

    func testTransferEncodingInHTTP10OrTwiceIs400() {
        assertFailure("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400)
    }

    func testObsFoldIs400() {
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n  c\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\tc\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\n Host: h\r\n\r\n", status: 400)
        // A folded Content-Length / Transfer-Encoding is the classic smuggling shape.
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n", status: 400)
    }

    func testWhitespaceBeforeColonIs400() {
        assertFailure("GET / HTTP/1.1\r\nHost : h\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", status: 400)
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", status: 400)
    }

    func testMalformedHeaderNamesAre400() {
        for line in [": empty-name", "No-Colon", "X A: b", "X\u{0}: b", "\r: b", "X\u{7F}: b"] {
            assertFailure("GET / HTTP/1.1\r\nHost: h\r\n\(line)\r\n\r\n", status: 400)
        }
    }

    func testNULOrBareCRInHeaderValueIs400() {
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\u{0}b\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\r\n\r\n", status: 400)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n\r\n", status: 400)
        // Bare CR used as a line separator must not smuggle a second header.
        assertFailure("POST / HTTP/1.1\r\nHost: h\r\nX: a\rTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", status: 400)
    }

    /// A long value is scanned eight bytes at a time: a NUL or a bare CR is refused wherever it lies in it, the
    /// line ends at its CRLF whatever the alignment, and the spaces after the value still go.
    func testLongValuesWhereverTheirBytesFallInAWord() throws {
        let value = "abcdefghijklmnopqrstuvwxyz0123456789"
        for k in 0..<value.count {
            let before = String(value.prefix(k)), after = String(value.dropFirst(k))
            assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-A: \(before)\u{0}\(after)\r\n\r\n", status: 400)
            assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-A: \(before)\r\(after)\r\n\r\n", status: 400)
            let (head, _) = try XCTUnwrap(assertComplete("GET / HTTP/1.1\r\nHost: h\r\nX-A: \(before)" + String(repeating: " ", count: k % 11) + "\r\nX-B: \(after)\r\n\r\n"))
            XCTAssertEqual(head.headers.map(\.value), ["h", before, after], "split at \(k)")
        }
    }

    func testTooLongHeaderLineIs494() {
        let rules = RequestRules(maxLineLength: 64, maxHeadLength: 4096)
        let long = String(repeating: "v", count: 100)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-Long: \(long)\r\n\r\n", status: 494, rules: rules)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nX-Long: \(long)", status: 494, rules: rules)
        assertIncomplete(bytes("GET / HTTP/1.1\r\nHost: h\r\nX-Long: vvvv"), rules: rules)
        assertFailure("GET / HTTP/1.1\r\nHost: h\r\nCookie: " + String(repeating: "c", count: 9000) + "\r\n\r\n", status: 494)
    }

    func testTooLargeHeadIs494() {
        let rules = RequestRules(maxLineLength: 64, maxHeadLength: 256)
        var text = "GET / HTTP/1.1\r\nHost: h\r\n"
        for k in 0..<20 { text += "X-Header-\(k): some value\r\n" }
        assertFailure(text + "\r\n", status: 494, rules: rules)
        // Even without the blank line, once the head outgrows the limit.
        assertFailure(text, status: 494, rules: rules)
        // A head just under the limit is fine.
        var small = "GET / HTTP/1.1\r\nHost: h\r\n"
        for k in 0..<5 { small += "X-Header-\(k): some value\r\n" }
        XCTAssertLessThan(small.utf8.count + 2, 256)
        assertComplete(small + "\r\n", rules: rules)
    }

    func testConsumedNeverExceedsTheHead() throws {
        let head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        for tail in ["", "x", "GET", "\r\n", "GET / HTTP/1.1\r\n"] {
            let (_, consumed) = try XCTUnwrap(assertComplete(head + tail))
            XCTAssertEqual(consumed, head.utf8.count)
        }
    }
}

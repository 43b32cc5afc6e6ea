import XCTest
@testable import HTTP

final class ResponseParserTests: XCTestCase {

    @discardableResult
    func assertComplete(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> (head: ResponseHead, consumed: Int)? {
        let r = parseResponse(text)
        guard case .complete(let head, let consumed) = r else {
            XCTFail("expected a complete head for \"\(escaped(bytes(text)))\", got \(describe(r))", file: file, line: line)
            return nil
        }
        return (head, consumed)
    }

    func assertInvalid(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let r = parseResponse(text)
        guard case .invalid = r else {
            return XCTFail("expected invalid for \"\(escaped(bytes(text)))\", got \(describe(r))", file: file, line: line)
        }
    }

    func assertIncomplete(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let r = parseResponse(text)
        guard case .incomplete = r else {
            return XCTFail("expected incomplete for \"\(escaped(bytes(text)))\", got \(describe(r))", file: file, line: line)
        }
    }

    // MARK: Valid heads

    func testOKWithContentLength() throws {
        let text = "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello world!"
        let (head, consumed) = try XCTUnwrap(assertComplete(text))
        XCTAssertEqual(consumed, text.utf8.count - 12)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.versionMinor, 1)
        XCTAssertEqual(head.reason, "OK")
        XCTAssertEqual(head.contentLength, 12)
        XCTAssertFalse(head.chunked)
        XCTAssertFalse(head.connectionClose)
        XCTAssertTrue(head.hasBody)
        XCTAssertFalse(head.closeDelimited)
        let headers = bytes(text).withUnsafeBytes { head.headers(in: $0) }
        XCTAssertEqual(headers.map(\.name), ["Server", "Content-Length", "Content-Type"])
        XCTAssertEqual(headers.map(\.value), ["up", "12", "text/plain"])
    }

    func testChunked() throws {
        let head = try XCTUnwrap(assertComplete("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")).head
        XCTAssertTrue(head.chunked)
        XCTAssertNil(head.contentLength)
        XCTAssertFalse(head.closeDelimited)
        XCTAssertTrue(head.hasBody)
    }

    func testCloseDelimited() throws {
        let head = try XCTUnwrap(assertComplete("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")).head
        XCTAssertTrue(head.closeDelimited)
        XCTAssertTrue(head.connectionClose)
    }

    func testNoBodyStatuses() throws {
        for status in [100, 101, 204, 304] {
            let head = try XCTUnwrap(assertComplete("HTTP/1.1 \(status) X\r\nContent-Length: 10\r\n\r\n")).head
            XCTAssertFalse(head.hasBody, "\(status)")
            XCTAssertFalse(head.closeDelimited, "\(status)")
        }
        let noCL = try XCTUnwrap(assertComplete("HTTP/1.1 204 No Content\r\n\r\n")).head
        XCTAssertFalse(noCL.closeDelimited)
        let notModified = try XCTUnwrap(assertComplete("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")).head
        XCTAssertFalse(notModified.closeDelimited)
        for status in [200, 201, 206, 302, 404, 500, 599] {
            XCTAssertEqual(assertComplete("HTTP/1.1 \(status) X\r\n\r\n")?.head.hasBody, true, "\(status)")
        }
    }

    func testHTTP10ImpliesClose() throws {
        let head = try XCTUnwrap(assertComplete("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc")).head
        XCTAssertEqual(head.versionMinor, 0)
        XCTAssertTrue(head.connectionClose)
        let kept = try XCTUnwrap(assertComplete("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\n")).head
        XCTAssertFalse(kept.connectionClose)
    }

    func testConnectionClose() throws {
        XCTAssertEqual(assertComplete("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?.head.connectionClose, true)
        XCTAssertEqual(assertComplete("HTTP/1.1 200 OK\r\nconnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n")?.head.connectionClose, true)
        XCTAssertEqual(assertComplete("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")?.head.connectionClose, false)
    }

    func testReasonPhrases() throws {
        XCTAssertEqual(assertComplete("HTTP/1.1 404 Not Found\r\n\r\n")?.head.reason, "Not Found")
        XCTAssertEqual(assertComplete("HTTP/1.1 200\r\n\r\n")?.head.reason, "")
        XCTAssertEqual(assertComplete("HTTP/1.1 200 \r\n\r\n")?.head.reason, "")
        XCTAssertEqual(assertComplete("HTTP/1.1 502 Bad  Gateway here\r\n\r\n")?.head.reason, "Bad  Gateway here")
    }

    func testBareLFAndDuplicateHeaders() throws {
        let text = "HTTP/1.1 200 OK\nContent-Length: 4\nExpires: foo\nExpires: bar\n\n"
        let (head, consumed) = try XCTUnwrap(assertComplete(text))
        XCTAssertEqual(consumed, text.utf8.count)
        XCTAssertEqual(head.contentLength, 4)
        // nginx 1.23+: the first Expires is kept, the others dropped; an identical second Content-Length is as
        // invalid as a different one (a response two parsers could frame differently).
        XCTAssertEqual(head.fields.count, 2)
        assertInvalid("HTTP/1.1 200 OK\nContent-Length: 4\nContent-Length: 4\n\n")
    }

    // MARK: Invalid heads

    func testGarbageIsInvalid() {
        assertInvalid("garbage\r\n\r\n")
        assertInvalid("<html><body>hello</body></html>\r\n")
        assertInvalid("\r\n")
        assertInvalid("SSH-2.0-OpenSSH_9.6\r\n")
    }

    func testOnlyHTTP1xIsValid() {
        assertInvalid("HTTP/2 200\r\n\r\n")
        assertInvalid("HTTP/2.0 200 OK\r\n\r\n")
        assertInvalid("http/1.1 200 OK\r\n\r\n")
        assertInvalid("HTTP/1.x 200 OK\r\n\r\n")
        assertInvalid("HTTP/1.1200 OK\r\n\r\n")
        assertInvalid("HTTP/1.1  200 OK\r\n\r\n")
        assertInvalid(" HTTP/1.1 200 OK\r\n\r\n")
    }

    func testBadStatusDigitsAreInvalid() {
        assertInvalid("HTTP/1.1 2x0 OK\r\n\r\n")
        assertInvalid("HTTP/1.1 20 OK\r\n\r\n")
        assertInvalid("HTTP/1.1 2000 OK\r\n\r\n")
        assertInvalid("HTTP/1.1 099 Low\r\n\r\n")
        assertInvalid("HTTP/1.1 -20 OK\r\n\r\n")
        assertInvalid("HTTP/1.1 OK\r\n\r\n")
        assertInvalid("HTTP/1.1 200OK\r\n\r\n")
    }

    func testAmbiguousFramingIsInvalid() {
        assertInvalid("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
        // As nginx 1.23+: equal duplicates too, and a second Transfer-Encoding.
        assertInvalid("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nTransfer-Encoding: chun\u{212A}ed\r\n\r\n")
    }

    func testMalformedHeaderLinesAreInvalid() {
        assertInvalid("HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\n: v\r\n\r\n")
        // As nginx: a NUL or bare CR in a value is refused rather than relayed to the client.
        assertInvalid("HTTP/1.1 200 OK\r\nX-A: a\u{0}b\r\n\r\n")
        assertInvalid("HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil\r\n\r\n")
    }

    func testTooBigHeadIsInvalid() {
        let r = parseResponse("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 200), maxHead: 128)
        guard case .invalid = r else { return XCTFail(describe(r)) }
        let longStatus = parseResponse("HTTP/1.1 200 " + String(repeating: "r", count: 9000))
        guard case .invalid = longStatus else { return XCTFail(describe(longStatus)) }
    }

    // MARK: Partial input

    func testPartialValidPrefixIsIncomplete() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
        let all = bytes(text)
        for k in 0..<all.count {
            let r = parseResponse(Array(all[0..<k]))
            guard case .incomplete = r else { return XCTFail("prefix \(k) \"\(escaped(Array(all[0..<k])))\": \(describe(r))") }
        }
        assertComplete(text)
    }

    func testPartialGarbageIsInvalidEarly() {
        for prefix in ["X", "HX", "HTTX", "http", "<htm", "<html><bo", "HTTP-1.1 200", "GET / HTTP/1.1"] {
            assertInvalid(prefix)
        }
        for prefix in ["H", "HT", "HTTP", "HTTP/", "HTTP/1.1 2"] {
            assertIncomplete(prefix)
        }
    }
}

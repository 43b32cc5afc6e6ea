import XCTest
@testable import HTTP

final class ChunkedDecoderTests: XCTestCase {

    /// Valid bodies and what they decode to.
    static let validBodies: [(body: String, data: String)] = [
        ("0\r\n\r\n", ""),
        ("5\r\nhello\r\n0\r\n\r\n", "hello"),
        ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
        ("a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij"),
        ("1\r\nx\r\n1\r\ny\r\n1\r\nz\r\n0\r\n\r\n", "xyz"),
        ("000005\r\nhello\r\n000\r\n\r\n", "hello"),
        ("5;name=value\r\nhello\r\n0;last=\"yes\"\r\n\r\n", "hello"),
        ("5 ;ext\r\nhello\r\n0\t\r\n\r\n", "hello"),
        ("3\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r"),
        ("5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: two\r\n\r\n", "hello"),
        ("4\r\n0\r\n\r\r\n0\r\nExpires: never\r\n\r\n", "0\r\n\r"),
        ("1a\r\n" + String(repeating: "z", count: 26) + "\r\n0\r\n\r\n", String(repeating: "z", count: 26)),
    ]

    func testValidBodiesFedWhole() {
        for (body, data) in Self.validBodies {
            let outcome = decodeChunked(bytes(body))
            XCTAssertEqual(outcome, ChunkedOutcome(data: bytes(data), end: .end(consumed: body.utf8.count)), escaped(bytes(body)))
        }
    }

    func testValidBodiesFedByteByByte() {
        for (body, data) in Self.validBodies {
            let b = bytes(body)
            let outcome = decodeChunked(b, cuts: Array(1..<b.count))
            XCTAssertEqual(outcome, ChunkedOutcome(data: bytes(data), end: .end(consumed: b.count)), escaped(b))
        }
    }

    func testValidBodiesSplitAtEveryPoint() {
        for (body, data) in Self.validBodies {
            let b = bytes(body)
            let whole = decodeChunked(b)
            XCTAssertEqual(whole.data, bytes(data))
            for cut in 0...b.count {
                let cuts = (cut == 0 || cut == b.count) ? [] : [cut]
                XCTAssertEqual(decodeChunked(b, cuts: cuts), whole, "\(escaped(b)) cut at \(cut)")
            }
            // And at every pair of points.
            if b.count > 2 {
                for a in 1..<(b.count - 1) {
                    for c in (a + 1)..<b.count {
                        XCTAssertEqual(decodeChunked(b, cuts: [a, c]), whole, "\(escaped(b)) cut at \(a), \(c)")
                    }
                }
            }
        }
    }

    func testLargeChunkSpanningManyReads() {
        let payload = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let body = bytes(String(payload.count, radix: 16) + "\r\n") + payload + bytes("\r\n0\r\n\r\n")
        let cuts = Array(stride(from: 1000, to: body.count, by: 4096))
        XCTAssertEqual(decodeChunked(body, cuts: cuts), ChunkedOutcome(data: payload, end: .end(consumed: body.count)))
    }

    func testIncompleteBodiesNeedMore() {
        for body in ["", "5", "5\r", "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n", "5\r\nhello\r\n0",
                     "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0\r\n\r", "0\r\nX: y\r\n", "5;ext"] {
            let outcome = decodeChunked(bytes(body))
            XCTAssertEqual(outcome.end, .needMore, escaped(bytes(body)))
        }
    }

    func testEndOffsetLetsTheNextPipelinedRequestBeParsed() throws {
        let text = "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"
            + "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
        let buf = bytes(text)
        let (head, headEnd) = try XCTUnwrap(assertComplete(buf))
        XCTAssertTrue(head.chunked)

        var decoder = ChunkedDecoder()
        var data: [UInt8] = []
        let event = buf.withUnsafeBytes { raw in
            decoder.feed(raw, from: headEnd) { range in
                XCTAssert(range.lowerBound >= headEnd && range.upperBound <= raw.count)
                data += raw[range]
            }
        }
        XCTAssertEqual(data, bytes("hello"))
        guard case .end(let bodyEnd) = event else { return XCTFail("expected the end of the body, got \(event)") }
        XCTAssertTrue(decoder.isDone)

        let (next, consumed) = try XCTUnwrap(assertComplete(Array(buf[bodyEnd...])))
        XCTAssertEqual(next.target, "/next")
        XCTAssertEqual(bodyEnd + consumed, buf.count)

        // Feeding a finished decoder again reports the end straight away and consumes nothing.
        let again = buf.withUnsafeBytes { raw in decoder.feed(raw, from: bodyEnd) { _ in XCTFail("no data after the end") } }
        XCTAssertEqual(again, .end(consumed: bodyEnd))
    }

    func testFeedFromAnOffsetReportsAbsoluteRanges() {
        let buf = bytes("XXXX3\r\nabc\r\n0\r\n\r\nYY")
        var decoder = ChunkedDecoder()
        var ranges: [Range<Int>] = []
        let event = buf.withUnsafeBytes { raw in decoder.feed(raw, from: 4) { ranges.append($0) } }
        XCTAssertEqual(ranges, [7..<10])
        XCTAssertEqual(event, .end(consumed: buf.count - 2))
    }

    // MARK: Errors

    func assertError(_ body: String, maxTrailerBytes: Int = 8192, file: StaticString = #filePath, line: UInt = #line) {
        let b = bytes(body)
        XCTAssertEqual(decodeChunked(b, maxTrailerBytes: maxTrailerBytes).end, .error, "whole: \(escaped(b))", file: file, line: line)
        // The same error however the bytes arrive.
        XCTAssertEqual(decodeChunked(b, cuts: Array(1..<max(1, b.count)), maxTrailerBytes: maxTrailerBytes).end, .error,
                       "byte by byte: \(escaped(b))", file: file, line: line)
    }

    func testNonHexSizeIsAnError() {
        assertError("g\r\nhello\r\n0\r\n\r\n")
        assertError("5g\r\nhello\r\n0\r\n\r\n")
        assertError("\r\nhello\r\n0\r\n\r\n")
        assertError(" 5\r\nhello\r\n0\r\n\r\n")
        assertError(";5\r\nhello\r\n0\r\n\r\n")
        assertError("+5\r\nhello\r\n0\r\n\r\n")
    }

    func testNegativeSizeIsAnError() {
        assertError("-1\r\nhello\r\n0\r\n\r\n")
    }

    func testHexPrefixIsAnError() {
        assertError("0x5\r\nhello\r\n0\r\n\r\n")
        assertError("0X5\r\nhello\r\n0\r\n\r\n")
    }

    /// As nginx: a size is refused once its value no longer fits, not by its number of digits.
    func testSizeOverflowIsAnError() {
        assertError("ffffffffffffffff\r\n")           // 16 digits past 2^59 before the last one
        assertError("ffffffffffffffffffff\r\n")       // 20 digits
        XCTAssertEqual(decodeChunked(bytes("0000000000000000000001\r\nx\r\n0\r\n\r\n")), ChunkedOutcome(data: bytes("x"), end: .end(consumed: 32)))
        // A size that fits makes the decoder wait for that much data; a body limit refuses it first.
        XCTAssertEqual(decodeChunked(bytes("fffffffffffffff\r\nabc")), ChunkedOutcome(data: bytes("abc"), end: .needMore))
    }

    func testAnnouncedSizesAddUpBeforeTheDataComes() {
        var decoder = ChunkedDecoder()
        _ = bytes("5\r\nhello\r\n100\r\n").withUnsafeBytes { decoder.feed($0) { _ in } }
        XCTAssertEqual(decoder.announced, 5 + 0x100)
    }

    func testMissingCRLFAfterDataIsAnError() {
        assertError("5\r\nhelloX\r\n0\r\n\r\n")
        assertError("5\r\nhello\n0\r\n\r\n")
        assertError("5\r\nhello\rX0\r\n\r\n")
        assertError("5\r\nhello world\r\n0\r\n\r\n")
        assertError("5\r\nhello0\r\n\r\n")
    }

    func testBareLFOrCRInSizeLineIsAnError() {
        assertError("5\nhello\r\n0\r\n\r\n")
        assertError("5\rhello\r\n0\r\n\r\n")
        assertError("5;ext\nhello\r\n0\r\n\r\n")
        assertError("5;ext\u{1}\r\nhello\r\n0\r\n\r\n")
    }

    func testTooLargeTrailerIsAnError() {
        assertError("0\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n")
        assertError("0\r\nX: 0123456789\r\nY: 0123456789\r\n\r\n", maxTrailerBytes: 16)
        // Within the limit it is fine.
        let body = "0\r\nX: 012345\r\n\r\n"
        XCTAssertEqual(decodeChunked(bytes(body), maxTrailerBytes: 16).end, .end(consumed: body.utf8.count))
    }

    func testBareLFInTrailerIsAnError() {
        // nginx ends the body at "0\r\n\n"; swallowing what follows as trailer lines would hide the next
        // pipelined request inside this body, so the decoder refuses it instead.
        assertError("0\r\n\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n")
        assertError("5\r\nhello\r\n0\r\nX: y\n\r\n")
        assertError("0\r\nX: a\rb\r\n\r\n")
        assertError("0\r\n\r\r\n")
    }
}

import Foundation
import FuzzSupport
import XCTest
@testable import HTTP

// Shared helpers for the HTTP tests: parse Strings or byte arrays, and turn results into comparable text.

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func parseRequest(_ b: [UInt8], rules: RequestRules = RequestRules()) -> ParseResult {
    b.withUnsafeBytes { RequestParser.parse($0, rules: rules) }
}

func parseRequest(_ s: String, rules: RequestRules = RequestRules()) -> ParseResult {
    parseRequest(bytes(s), rules: rules)
}

func parseResponse(_ b: [UInt8], maxHead: Int = 65536) -> ResponseParseResult {
    b.withUnsafeBytes { ResponseParser.parse($0, maxHead: maxHead) }
}

func parseResponse(_ s: String, maxHead: Int = 65536) -> ResponseParseResult {
    parseResponse(bytes(s), maxHead: maxHead)
}

/// Printable form of bytes for failure messages: CR, LF, tabs and non-ASCII escaped.
func escaped(_ b: [UInt8]) -> String {
    var out = ""
    for c in b {
        switch c {
        case 0x0D: out += "\\r"
        case 0x0A: out += "\\n"
        case 0x09: out += "\\t"
        case 0x5C: out += "\\\\"
        case 0x20...0x7E: out.append(Character(Unicode.Scalar(c)))
        default: out += String(format: "\\x%02X", c)
        }
    }
    return out
}

/// Everything a parse result says, as one string, so two results can be compared exactly.
func describe(_ r: ParseResult, withReason: Bool = true) -> String {
    switch r {
    case .incomplete:
        return "incomplete"
    case .failure(let status, let reason):
        return withReason ? "failure(\(status), \(reason))" : "failure(\(status))"
    case .complete(let h, let consumed):
        let headers = h.headers.map { "\($0.name)=\($0.value)" }.joined(separator: "|")
        return "complete(consumed: \(consumed)) \(h.method) \(h.target) path=\(h.path) query=\(h.query ?? "nil") "
            + "HTTP/\(h.versionMajor).\(h.versionMinor) host=\(h.host ?? "nil") cl=\(h.contentLength.map(String.init) ?? "nil") "
            + "chunked=\(h.chunked) expect=\(h.expectContinue) keepAlive=\(h.keepAlive) headers=[\(headers)]"
    }
}

func describe(_ r: ResponseParseResult) -> String {
    switch r {
    case .incomplete: return "incomplete"
    case .invalid(let reason): return "invalid(\(reason))"
    case .complete(let h, let consumed):
        // Header positions, not text: re-parsing the same bytes must find the same ranges.
        let headers = h.fields.map { "\($0.name)=\($0.value)" }.joined(separator: "|")
        return "complete(consumed: \(consumed)) \(h.status) 1.\(h.versionMinor) reason=\(h.reason) cl=\(h.contentLength.map(String.init) ?? "nil") "
            + "chunked=\(h.chunked) close=\(h.connectionClose) headers=[\(headers)]"
    }
}

/// The head and `consumed` of a complete parse, or a test failure naming what came back instead.
@discardableResult
func assertComplete(_ s: String, rules: RequestRules = RequestRules(),
                    file: StaticString = #filePath, line: UInt = #line) -> (head: RequestHead, consumed: Int)? {
    assertComplete(bytes(s), rules: rules, file: file, line: line)
}

@discardableResult
func assertComplete(_ b: [UInt8], rules: RequestRules = RequestRules(),
                    file: StaticString = #filePath, line: UInt = #line) -> (head: RequestHead, consumed: Int)? {
    let r = parseRequest(b, rules: rules)
    guard case .complete(let head, let consumed) = r else {
        XCTFail("expected a complete head for \"\(escaped(b))\", got \(describe(r))", file: file, line: line)
        return nil
    }
    return (head, consumed)
}

func assertFailure(_ s: String, status: Int, rules: RequestRules = RequestRules(),
                   file: StaticString = #filePath, line: UInt = #line) {
    assertFailure(bytes(s), status: status, rules: rules, file: file, line: line)
}

func assertFailure(_ b: [UInt8], status: Int, rules: RequestRules = RequestRules(),
                   file: StaticString = #filePath, line: UInt = #line) {
    let r = parseRequest(b, rules: rules)
    guard case .failure(let got, _) = r else {
        XCTFail("expected failure \(status) for \"\(escaped(b))\", got \(describe(r))", file: file, line: line)
        return
    }
    XCTAssertEqual(got, status, "status for \"\(escaped(b))\": \(describe(r))", file: file, line: line)
}

func assertIncomplete(_ b: [UInt8], rules: RequestRules = RequestRules(),
                      file: StaticString = #filePath, line: UInt = #line) {
    let r = parseRequest(b, rules: rules)
    guard case .incomplete = r else {
        XCTFail("expected incomplete for \"\(escaped(b))\", got \(describe(r))", file: file, line: line)
        return
    }
}

/// What feeding a chunked body produced: the decoded bytes and how it stopped.
struct ChunkedOutcome: Equatable, CustomStringConvertible {
    enum End: Equatable { case needMore, end(consumed: Int), error }
    var data: [UInt8]
    var end: End
    var description: String { "\(end) data=\"\(escaped(data))\"" }
}

/// Feeds `body` to a fresh decoder in pieces cut at `cuts` (offsets into `body`, ascending); each piece is
/// its own buffer, as reads would be. `.end(consumed:)` is reported as an offset into the whole of `body`.
/// Also checks that every reported range lies inside the buffer it was reported for.
func decodeChunked(_ body: [UInt8], cuts: [Int] = [], maxTrailerBytes: Int = 8192,
                   file: StaticString = #filePath, line: UInt = #line) -> ChunkedOutcome {
    var decoder = ChunkedDecoder(maxTrailerBytes: maxTrailerBytes)
    var out: [UInt8] = []
    let bounds = [0] + cuts + [body.count]
    for p in 0..<(bounds.count - 1) {
        let piece = Array(body[bounds[p]..<bounds[p + 1]])
        let event = piece.withUnsafeBytes { buf -> ChunkedDecoder.Event in
            decoder.feed(buf, from: 0) { range in
                guard range.lowerBound >= 0, range.upperBound <= buf.count, !range.isEmpty else {
                    XCTFail("data range \(range) outside buffer of \(buf.count) bytes", file: file, line: line)
                    return
                }
                out += buf[range]
            }
        }
        switch event {
        case .data(let r):
            XCTAssertEqual(r, piece.count..<piece.count, "decoder stopped early without end or error", file: file, line: line)
        case .end(let consumed):
            XCTAssert(consumed > 0 && consumed <= piece.count, "consumed \(consumed) outside 1...\(piece.count)", file: file, line: line)
            XCTAssertTrue(decoder.isDone, file: file, line: line)
            return ChunkedOutcome(data: out, end: .end(consumed: bounds[p] + consumed))
        case .error:
            return ChunkedOutcome(data: out, end: .error)
        }
    }
    return ChunkedOutcome(data: out, end: .needMore)
}


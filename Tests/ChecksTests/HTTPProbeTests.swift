import XCTest
@testable import Checks
@testable import Config
import ShmTable

/// `type=http` replies and the reference module's conformance vectors H1-H16. H17 is in ProbeTests.swift;
/// H14 (timeout) and H18-H20 (states through the proxy) need sockets and live in IntegrationTests.
final class HTTPProbeTests: XCTestCase {
    let parseError = "http parse status line error with peer: \(testPeer) "
    /// The reference logs exactly `check protocol http error with peer: <addr> `; Vigil appends the status,
    /// e.g. `(status 404)`, so the reference text is the prefix of Vigil's.
    let statusError = "check protocol http error with peer: \(testPeer) "

    private func assertUp(_ reply: String, expect: ExpectAlive? = nil, _ note: String = "",
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(judge(.http, reply, expect: expect), .up, "\(reply.debugDescription) \(note)", file: file, line: line)
        // A verdict reached before EOF is the same when EOF came with the bytes.
        XCTAssertEqual(judge(.http, reply, eof: true, expect: expect), .up, "\(reply.debugDescription) + EOF",
                       file: file, line: line)
    }

    private func assertParseError(_ reply: String, file: StaticString = #filePath, line: UInt = #line) {
        for eof in [false, true] {
            assertDown(judge(.http, reply, eof: eof), .protocolError, message: parseError,
                       "\(reply.debugDescription) eof=\(eof)", file: file, line: line)
        }
    }

    private func assertBadStatus(_ reply: String, expect: ExpectAlive? = nil, code: Int,
                                 file: StaticString = #filePath, line: UInt = #line) {
        for eof in [false, true] {
            let v = judge(.http, reply, eof: eof, expect: expect)
            assertDown(v, .badStatus, messagePrefix: statusError, "\(reply.debugDescription) eof=\(eof)", file: file, line: line)
            XCTAssertTrue(v.message?.contains("\(code)") ?? false, "\(v)", file: file, line: line)
        }
    }

    /// Without EOF the status line is incomplete; with EOF it is the reference's silent failure (no protocol-error line).
    private func assertIncomplete(_ reply: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(judge(.http, reply), .needMore, reply.debugDescription, file: file, line: line)
        assertDown(judge(.http, reply, eof: true), .closed, reply.debugDescription, file: file, line: line)
    }

    func testH1OK() { assertUp("HTTP/1.1 200 OK\r\n\r\n") }

    func testH2NoReasonPhrase() { assertUp("HTTP/1.1 204\r\n\r\n") }

    func testH3Redirect() { assertUp("HTTP/1.0 302 Found\r\nLocation: http://x/\r\n\r\n") }

    func testH4NotFound() {
        assertBadStatus("HTTP/1.1 404 Not Found\r\n\r\n", code: 404)
        // As written in the table, with no line end: incomplete, so down only once the peer closes.
        assertIncomplete("HTTP/1.1 404 Not Found")
    }

    func testH5SwitchingProtocolsIsNeverAlive() {
        assertBadStatus("HTTP/1.1 101 Switching Protocols\r\n\r\n", code: 101)
        // Not even with every class the reference knows (it has no http_1xx).
        assertBadStatus("HTTP/1.1 101 Switching Protocols\r\n\r\n", expect: [.http2xx, .http3xx, .http4xx, .http5xx], code: 101)
    }

    func testH6LowercaseHTTP() {
        assertParseError("http/1.1 200 OK\r\n\r\n")
        // The grammar is checked byte by byte: the first byte is enough.
        assertDown(judge(.http, "h"), .protocolError, message: parseError)
    }

    func testH7SpacesInsideTheStatusAreSkipped() {
        // Quirk reproduced on purpose (observed in the reference): "2 0 0" parses as 200.
        assertUp("HTTP/1.1 2 0 0 OK\r\n\r\n")
        assertUp("HTTP/1.1 2  0 0\r\n")
        assertBadStatus("HTTP/1.1 4 0 4 Not Found\r\n", code: 404)
    }

    func testH8NoLineEndThenClose() {
        assertIncomplete("HTTP/1.1 200")
        assertIncomplete("HTTP/1.1 200 OK")
        assertIncomplete("HTTP/1.1 200 OK\r")
    }

    func testH9Malformed() {
        assertParseError("HTTP/2 200 OK\r\n\r\n")
        assertParseError("HTTP/2 200\r\n")
        assertParseError("HTTP/0.9 200 OK\r\n\r\n")
        assertParseError("\r\nHTTP/1.1 200 OK\r\n\r\n")
        assertParseError("\nHTTP/1.1 200 OK\r\n\r\n")
        assertParseError("HTTP/1.1 2000 OK\r\n\r\n")
        assertParseError("HTTP/1.1 2000\r\n")
        assertParseError("HTTP/1.1 200 OK\rX")
        assertParseError("HTTP/1.1 200\rX\n")
    }

    func testH9MoreGrammarErrors() {
        assertParseError("HTTP/1.1\t200 OK\r\n")       // only SP separates version and status
        assertParseError("HTTP/1. 200 OK\r\n")         // the minor version needs a digit
        assertParseError("HTTP/.1 200 OK\r\n")
        assertParseError("HTTP/1.1 2x0 OK\r\n")
        assertParseError("HTTP/1.1 20\r\n")            // fewer than three digits
        assertParseError("HTTP/1.1 200x\r\n")          // only SP, '.', CR or LF after the code
        assertParseError("HTTP/1.1 -200 OK\r\n")
        assertParseError("HTTP/1.1a 200 OK\r\n")
        assertParseError(" HTTP/1.1 200 OK\r\n")
        assertParseError("HTTPS/1.1 200 OK\r\n")
    }

    func testH10IISSubstatus() {
        assertUp("HTTP/1.1 403.1 Forbidden\r\n\r\n", expect: [.http4xx])
        assertBadStatus("HTTP/1.1 403.1 Forbidden\r\n\r\n", code: 403)    // 4xx is not alive by default
    }

    func testH11Status600() {
        assertBadStatus("HTTP/1.1 600 Weird\r\n\r\n", code: 600)
        assertBadStatus("HTTP/1.1 600 Weird\r\n\r\n", expect: [.http2xx, .http3xx, .http4xx, .http5xx], code: 600)
    }

    func testH12LenientForms() {
        assertUp("HTTP/10.1 200 OK\r\n\r\n")
        assertUp("HTTP/1.1  200 OK\r\n\r\n")
        assertUp("HTTP/1.1 200\n\n")
        assertUp("HTTP/1.1 200 OK\n")
        assertUp("HTTP/1.10 200 OK\r\n")
        assertUp("HTTP/1.1 200.\r\n")
        assertUp("HTTP/1.1 200 \r\n")
    }

    func testH13ExpectAliveClasses() {
        assertBadStatus("HTTP/1.1 200 OK\r\n\r\n", expect: [.http4xx], code: 200)
        assertUp("HTTP/1.1 503 Service Unavailable\r\n\r\n", expect: [.http5xx])
        assertBadStatus("HTTP/1.1 503 Service Unavailable\r\n\r\n", code: 503)
    }

    /// The status classification at every class boundary, for each expect set.
    func testClassBoundaries() {
        let classes: [(ClosedRange<Int>, ExpectAlive)] = [(200...299, .http2xx), (300...399, .http3xx),
                                                          (400...499, .http4xx), (500...599, .http5xx)]
        let sets: [ExpectAlive] = [[], [.http2xx], [.http3xx], [.http4xx], [.http5xx], [.http2xx, .http3xx],
                                   [.http2xx, .http3xx, .http4xx, .http5xx]]
        for code in [100, 101, 199, 200, 204, 299, 300, 304, 399, 400, 404, 499, 500, 503, 599, 600, 700, 999] {
            let reply = "HTTP/1.1 \(code) X\r\n\r\n"
            for set in sets {
                let alive = classes.contains { $0.0.contains(code) && set.contains($0.1) }
                let v = judge(.http, reply, expect: set)
                if alive { XCTAssertEqual(v, .up, "\(code) \(set)") } else { XCTAssertEqual(v.reason, .badStatus, "\(code) \(set)") }
            }
            let byDefault = (200...399).contains(code)
            XCTAssertEqual(judge(.http, reply) == .up, byDefault, "\(code) with the default 2xx 3xx")
        }
    }

    /// Status codes that start with 0 parse (three digits) but are never alive.
    func testZeroCodes() {
        assertBadStatus("HTTP/1.1 000 X\r\n", expect: [.http2xx, .http3xx, .http4xx, .http5xx], code: 0)
        assertBadStatus("HTTP/1.1 099 X\r\n", expect: [.http2xx, .http3xx, .http4xx, .http5xx], code: 99)
    }

    /// H15: the status line split across two reads. The engine re-evaluates the whole buffer each time.
    func testH15SplitStatusLine() {
        XCTAssertEqual(judge(.http, "HTTP/1.1 20"), .needMore)
        XCTAssertEqual(judge(.http, "HTTP/1.1 200 OK\r\n\r\n"), .up)
        // Every proper prefix of a good status line is "need more", wherever the segment boundary falls.
        for reply in ["HTTP/1.1 200 OK\r\n", "HTTP/10.1  2 0 4 x\r\n", "HTTP/1.1 403.1 F\n"] {
            let b = bytes(reply)
            for k in 0..<b.count {
                XCTAssertEqual(judge(.http, Array(b[0..<k]), expect: [.http2xx, .http4xx]), .needMore, "prefix \(k) of \(reply.debugDescription)")
            }
            XCTAssertEqual(judge(.http, b, expect: [.http2xx, .http4xx]), .up, reply.debugDescription)
        }
    }

    /// H16: the peer closes right after the request: silent F, not a protocol error.
    func testH16ClosedWithoutReply() {
        XCTAssertEqual(judge(.http, []), .needMore)
        assertDown(judge(.http, [], eof: true), .closed)
    }

    /// only the status line is parsed; headers and body are never examined.
    func testHeadersAndBodyIgnored() {
        assertUp("HTTP/1.1 200 OK\r\n\u{0}\u{1}garbage no colon\r\n\r\n\u{FF}")
        assertUp("HTTP/1.1 200 OK\n" + String(repeating: "x", count: 10000))
        XCTAssertEqual(judge(.http, bytes("HTTP/1.1 200 OK\r\n") + [0xff, 0x00, 0x80]), .up)
    }

    /// The status text may hold any byte up to the line end.
    func testStatusTextAnyBytes() {
        XCTAssertEqual(judge(.http, bytes("HTTP/1.1 200 ") + [0x00, 0xff, 0x7f, 0x09] + bytes("\r\n")), .up)
    }
}

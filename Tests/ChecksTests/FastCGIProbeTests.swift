import FuzzSupport
import XCTest
@testable import Checks
@testable import Config
import ShmTable

/// FastCGI record: version, type, request id, content length, padding length, reserved, content, padding.
func fcgiRecord(_ type: UInt8, _ content: [UInt8], padding: Int = 0, version: UInt8 = 1, requestID: UInt16 = 1) -> [UInt8] {
    [version, type, UInt8(requestID >> 8), UInt8(requestID & 0xff), UInt8(content.count >> 8), UInt8(content.count & 0xff),
     UInt8(padding), 0] + content + [UInt8](repeating: 0, count: padding)
}

let fcgiStdout: UInt8 = 6, fcgiStderr: UInt8 = 7, fcgiEndRequest: UInt8 = 3
let fcgiEnd = fcgiRecord(fcgiEndRequest, [0, 0, 0, 0, 0, 0, 0, 0])

/// A STDOUT record padded to a multiple of 8 as PHP-FPM does, then END_REQUEST.
func fcgiReply(_ stdout: String) -> [UInt8] {
    let c = bytes(stdout)
    return fcgiRecord(fcgiStdout, c, padding: (8 - c.count % 8) % 8) + fcgiEnd
}

/// The records of a FastCGI byte stream, each checked for a valid header (version 1, request id 1, zero padding).
func fcgiRecords(_ b: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [(type: UInt8, content: [UInt8], padding: Int)] {
    var r = ByteReader(b)
    var out: [(type: UInt8, content: [UInt8], padding: Int)] = []
    while r.remaining > 0 {
        guard r.remaining >= 8 else { XCTFail("\(r.remaining) stray bytes at \(r.pos)", file: file, line: line); break }
        XCTAssertEqual(r.u8(), 1, "version at \(r.pos - 1)", file: file, line: line)
        let type = UInt8(r.u8())
        XCTAssertEqual(r.u16(), 1, "request id", file: file, line: line)
        let len = r.u16(), pad = r.u8()
        XCTAssertEqual(r.u8(), 0, "reserved", file: file, line: line)
        guard r.remaining >= len + pad else { XCTFail("record runs past the end", file: file, line: line); break }
        let content = r.take(len)
        XCTAssertEqual(r.take(pad), [UInt8](repeating: 0, count: pad), "padding bytes", file: file, line: line)
        out.append((type, content, pad))
    }
    return out
}

/// FastCGI name-value pairs: 1 length byte when ≤ 127, else 4 bytes with the top bit set.
func fcgiPairs(_ b: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [(String, String)] {
    var r = ByteReader(b)
    func length() -> Int {
        let first = r.u8()
        if first < 0x80 { return first }
        return (first & 0x7f) << 24 | r.u24()
    }
    var out: [(String, String)] = []
    while r.remaining > 0 {
        let n = length(), v = length()
        guard r.remaining >= n + v else { XCTFail("pair runs past the end", file: file, line: line); break }
        out.append((String(decoding: r.take(n), as: UTF8.self), String(decoding: r.take(v), as: UTF8.self)))
    }
    return out
}

/// `type=fastcgi`: the request and the reference module's reply vectors F3-F14. F15 needs the engine.
final class FastCGIProbeTests: XCTestCase {
    let beginRequest = hex("01 01 00 01 00 08 00 00 00 01 00 00 00 00 00 00")
    let emptyParams = hex("01 04 00 01 00 00 00 00")
    /// Vigil MUST send a valid empty STDIN record where the reference leaves 8 bytes uninitialised.
    let emptyStdin = hex("01 05 00 01 00 00 00 00")

    // MARK: request

    func testF1DefaultRequestBytes() {
        let req = Probes.payload(for: settings(.fastcgi))
        XCTAssertEqual(req.count, 104)
        let pairs = hex("0e 03") + bytes("REQUEST_METHODGET") + hex("0b 01") + bytes("REQUEST_URI/")
            + hex("0f 09") + bytes("SCRIPT_FILENAMEindex.php")
        XCTAssertEqual(pairs.count, 0x3b)
        let expected = beginRequest + hex("01 04 00 01 00 3b 05 00") + pairs + [0, 0, 0, 0, 0] + emptyParams + emptyStdin
        XCTAssertEqual(hexString(req), hexString(expected))
        // Piece by piece, for readable failures.
        XCTAssertEqual(Array(req[0..<16]), beginRequest, "BEGIN_REQUEST: id 1, RESPONDER, flags 0")
        XCTAssertEqual(Array(req[16..<24]), hex("01 04 00 01 00 3b 05 00"), "PARAMS header")
        XCTAssertEqual(Array(req[24..<83]), pairs)
        XCTAssertEqual(Array(req[83..<88]), [0, 0, 0, 0, 0], "5 padding bytes")
        XCTAssertEqual(Array(req[88..<96]), emptyParams)
        XCTAssertEqual(Array(req[96..<104]), emptyStdin, "Vigil: a valid empty STDIN, not 8 uninitialised bytes")
    }

    func testF1DefaultRequestRecords() {
        let recs = fcgiRecords(Probes.payload(for: settings(.fastcgi)))
        XCTAssertEqual(recs.map(\.type), [1, 4, 4, 5])
        guard recs.count == 4 else { return }
        XCTAssertEqual(recs[0].content, [0, 1, 0, 0, 0, 0, 0, 0], "role RESPONDER, flags 0 (no keep-conn)")
        XCTAssertEqual(recs[1].padding, 5)
        XCTAssertEqual(fcgiPairs(recs[1].content).map { "\($0.0)=\($0.1)" },
                       ["REQUEST_METHOD=GET", "REQUEST_URI=/", "SCRIPT_FILENAME=index.php"])
        XCTAssertEqual(recs[2].content, [])
        XCTAssertEqual(recs[3].content, [])
    }

    func testF2LongValueUsesFourLengthBytes() {
        let value = String(repeating: "y", count: 140)
        let req = Probes.fastCGIRequest([("REQUEST_METHOD", "HEAD"), ("X", value)])
        XCTAssertEqual(Array(req[16..<24]), hex("01 04 00 01 00 a6 02 00"), "PARAMS: 166 bytes of pairs, 2 of padding")
        let pairs = hex("0e 04") + bytes("REQUEST_METHODHEAD") + hex("01 80 00 00 8c") + bytes("X" + value)
        XCTAssertEqual(pairs.count, 0xa6)
        XCTAssertEqual(hexString(req), hexString(beginRequest + hex("01 04 00 01 00 a6 02 00") + pairs + [0, 0]
                                                 + emptyParams + emptyStdin))
        XCTAssertEqual(req.count, 208)
    }

    /// A name longer than 127 bytes gets 4 length bytes and the PARAMS length counts all 4. The reference counts
    /// 1 byte for any name; Vigil MUST encode lengths correctly.
    func testF2LongNameUsesFourLengthBytesAndIsCounted() {
        let name = String(repeating: "N", count: 200)
        let req = Probes.fastCGIRequest([(name, "v")])
        // 4 (80 00 00 c8) + 1 + 200 + 1 = 206 = 0xce, padding 2.
        XCTAssertEqual(Array(req[16..<24]), hex("01 04 00 01 00 ce 02 00"))
        XCTAssertEqual(Array(req[24..<29]), hex("80 00 00 c8 01"))
        XCTAssertEqual(req.count, 16 + 8 + 206 + 2 + 16)
        let recs = fcgiRecords(req)
        XCTAssertEqual(recs.map(\.type), [1, 4, 4, 5])
        if recs.count == 4 { XCTAssertEqual(fcgiPairs(recs[1].content).map(\.0), [name]) }
    }

    /// Lengths of exactly 127 and 128 sit on the 1-byte/4-byte boundary.
    func testLengthBoundary() {
        let n127 = String(repeating: "a", count: 127), n128 = String(repeating: "b", count: 128)
        let req = Probes.fastCGIRequest([(n127, n128)])
        XCTAssertEqual(Array(req[24..<29]), hex("7f 80 00 00 80"))
        let len = 1 + 4 + 127 + 128
        XCTAssertEqual(Array(req[20..<23]), [UInt8(len >> 8), UInt8(len & 0xff), UInt8((8 - len % 8) % 8)])
    }

    /// No params at all: an empty PARAMS record, then the terminating empty PARAMS and STDIN.
    func testNoParams() {
        XCTAssertEqual(Probes.fastCGIRequest([]), beginRequest + emptyParams + emptyParams + emptyStdin)
    }

    /// Seeded random parameter sets round-trip through a FastCGI decoder: every record is well formed and
    /// padded to 8, and the pairs come back in configuration order.
    func testRandomParamsRoundTrip() {
        var rng = SplitMix64(seed: 0xFC61)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcxyz0123456789/.=")
        func word(_ max: Int) -> String { String((0..<Int.random(in: 0...max, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }) }
        for round in 0..<150 {
            let params = (0..<Int.random(in: 0...6, using: &rng)).map { _ in (word(Bool.random(using: &rng) ? 20 : 300), word(300)) }
            let req = Probes.fastCGIRequest(params)
            XCTAssertEqual(req.count % 8, 0, "round \(round)")
            let recs = fcgiRecords(req)
            XCTAssertEqual(recs.map(\.type), [1, 4, 4, 5], "round \(round)")
            guard recs.count == 4 else { continue }
            XCTAssertEqual((recs[1].content.count + recs[1].padding) % 8, 0)
            XCTAssertLessThan(recs[1].padding, 8)
            XCTAssertEqual(fcgiPairs(recs[1].content).map { "\($0.0)=\($0.1)" }, params.map { "\($0.0)=\($0.1)" }, "round \(round)")
        }
    }

    // MARK: reply

    private func fcgi(_ reply: [UInt8], eof: Bool = false, expect: ExpectAlive? = nil) -> Verdict { judge(.fastcgi, reply, eof: eof, expect: expect) }

    func testF3Status200() {
        let reply = fcgiReply("Status: 200 OK\r\nContent-type: text/html\r\n\r\nhello")
        XCTAssertEqual(fcgi(reply), .up)
        XCTAssertEqual(fcgi(reply, expect: [.http2xx]), .up)
        XCTAssertEqual(fcgi(reply, eof: true, expect: [.http2xx]), .up)
        // Unpadded STDOUT directly followed by END_REQUEST.
        XCTAssertEqual(fcgi(fcgiRecord(fcgiStdout, bytes("Status: 200 OK\r\n\r\nx")) + fcgiEnd, expect: [.http2xx]), .up)
    }

    func testF4StatusOnlyCountsWithExpectDirective() {
        let reply = fcgiReply("Status: 500 Internal Server Error\r\n\r\n")
        XCTAssertEqual(fcgi(reply), .up, "no check_http_expect_alive: the status is not evaluated")
        let v = fcgi(reply, expect: [.http2xx])
        assertDown(v, .badStatus, messagePrefix: "check protocol fastcgi error with peer: \(testPeer) ")
        XCTAssertEqual(fcgi(reply, expect: [.http5xx]), .up)
    }

    func testF5StderrFirst() {
        let reply = fcgiRecord(fcgiStderr, bytes("PHP Warning")) + fcgiReply("Status: 200\r\n\r\n")
        let v = fcgi(reply)
        assertDown(v, .badFastCGIReply)
        XCTAssertTrue(v.message?.contains("fastcgi check error") ?? false, "\(v)")
    }

    func testF6EndRequestFirst() {
        let v = fcgi(fcgiEnd + fcgiReply("Status: 200\r\n\r\n"))
        assertDown(v, .badFastCGIReply)
        XCTAssertTrue(v.message?.contains("check fastcgi sent unexpected FastCGI record: 3") ?? false, "\(v)")
    }

    /// F7. The reference needs more bytes than the record's content (padding or a next record) in the buffer,
    /// and judges a lone record as F at once. Vigil waits for more bytes until EOF (or the timeout) instead,
    /// so the verdict here is "need more" before EOF and down after it; the vector's outcome (down) is the same.
    func testF7LoneStdoutRecord() {
        let lone = fcgiRecord(fcgiStdout, bytes("Status: 200 OK\r\n\r\nhello"))
        XCTAssertEqual(fcgi(lone), .needMore)
        assertDown(fcgi(lone, eof: true), .badFastCGIReply)
        assertDown(fcgi(lone, eof: true, expect: [.http2xx]), .badFastCGIReply)
        // A record whose content is still incomplete.
        let partial = Array(lone.dropLast(3))
        XCTAssertEqual(fcgi(partial), .needMore)
        assertDown(fcgi(partial, eof: true), .badFastCGIReply)
        // One padding byte is enough to judge it.
        XCTAssertEqual(fcgi(lone + [0]), .up)
    }

    func testF8EmptyStdout() {
        let v = fcgi(fcgiRecord(fcgiStdout, []) + fcgiEnd)
        assertDown(v, .badFastCGIReply)
        XCTAssertTrue(v.message?.contains("check fastcgi prematurely closed FastCGI stdout") ?? false, "\(v)")
        // The header alone is enough to know.
        assertDown(fcgi(fcgiRecord(fcgiStdout, [])), .badFastCGIReply)
    }

    func testF9BadVersionOrRequestID() {
        let good = fcgiReply("Status: 200\r\n\r\n")
        var v2 = good
        v2[0] = 2
        var v = fcgi(v2)
        assertDown(v, .badFastCGIReply)
        XCTAssertTrue(v.message?.contains("upstream sent unsupported FastCGI protocol version: 2") ?? false, "\(v)")

        var id2 = good
        id2[3] = 2
        v = fcgi(id2)
        assertDown(v, .badFastCGIReply)
        XCTAssertTrue(v.message?.contains("upstream sent unexpected FastCGI request id low byte: 2") ?? false, "\(v)")

        var idHigh = good
        idHigh[2] = 1
        v = fcgi(idHigh)
        assertDown(v, .badFastCGIReply)
        XCTAssertTrue(v.message?.contains("upstream sent unexpected FastCGI request id high byte: 1") ?? false, "\(v)")

        var badType = good
        badType[1] = 5
        v = fcgi(badType)
        assertDown(v, .badFastCGIReply)
        XCTAssertTrue(v.message?.contains("upstream sent invalid FastCGI record type: 5") ?? false, "\(v)")
    }

    /// Vigil judges a record only once its 8-byte header is complete. The reference rejects a bad version byte
    /// as soon as it arrives; a peer that sends fewer than 8 bytes is down either way (EOF or timeout).
    func testNothingJudgedBeforeEightBytes() {
        let good = fcgiReply("Status: 200\r\n\r\n")
        for k in 0..<8 {
            XCTAssertEqual(fcgi(Array(good[0..<k])), .needMore, "prefix \(k)")
            assertDown(fcgi(Array(good[0..<k]), eof: true), .closed, "prefix \(k) + EOF")
        }
        XCTAssertEqual(fcgi([2]), .needMore)
        assertDown(fcgi([2], eof: true), .closed)
    }

    func testF10NoStatusHeaderIsUp() {
        XCTAssertEqual(fcgi(fcgiReply("Content-type: text/html\r\n\r\nhello"), expect: [.http4xx]), .up)
        XCTAssertEqual(fcgi(fcgiReply("X-Powered-By: PHP\r\n\r\n"), expect: [.http2xx]), .up)
    }

    /// F11: a header counts as the status when its name is a case-insensitive prefix of "status" (quirk reproduced).
    func testF11NamePrefixQuirk() {
        assertDown(fcgi(fcgiReply("Stat: 404\r\n\r\n"), expect: [.http2xx]), .badStatus)
        assertDown(fcgi(fcgiReply("S: 404\r\n\r\n"), expect: [.http2xx]), .badStatus)
        assertDown(fcgi(fcgiReply("STATUS: 404 Not Found\r\n\r\n"), expect: [.http2xx]), .badStatus)
        XCTAssertEqual(fcgi(fcgiReply("Stat: 404\r\n\r\n"), expect: [.http4xx]), .up)
        // Longer than "status", or not a prefix: an ordinary header.
        XCTAssertEqual(fcgi(fcgiReply("Statusx: 404\r\n\r\n"), expect: [.http2xx]), .up)
        XCTAssertEqual(fcgi(fcgiReply("Tatus: 404\r\n\r\n"), expect: [.http2xx]), .up)
    }

    func testF12ShortStatus() {
        for stdout in ["Status: 20\r\n\r\n", "Status: 2x0\r\n\r\n", "Status: 020\r\n\r\n", "Status: OK\r\n\r\n", "Status: 20\n\n"] {
            let v = fcgi(fcgiReply(stdout))
            assertDown(v, .badFastCGIReply, stdout.debugDescription)
            XCTAssertTrue(v.message?.contains("invalid status header") ?? false, "\(v)")
            assertDown(fcgi(fcgiReply(stdout), expect: [.http2xx]), .badFastCGIReply, stdout.debugDescription)
        }
    }

    func testF13PaddingThenEnd() {
        let content = bytes("Status: 200 OK\r\n\r\n")
        XCTAssertEqual(content.count % 8, 2)
        let reply = fcgiRecord(fcgiStdout, content, padding: 6) + fcgiEnd
        XCTAssertEqual(fcgi(reply, expect: [.http2xx]), .up)
        XCTAssertEqual(fcgi(reply, eof: true, expect: [.http2xx]), .up)
        XCTAssertEqual(fcgi(reply), .up)
    }

    /// F14: the scan runs on past the blank line into the body, where `Status: 404` still counts (quirk reproduced).
    func testF14StatusInBody() {
        let reply = fcgiReply("X-A: 1\r\n\r\nStatus: 404")
        assertDown(fcgi(reply, expect: [.http2xx]), .badStatus)
        XCTAssertEqual(fcgi(reply), .up, "no expect directive")
    }

    /// Only the first status header counts, and only the first record's content is scanned.
    func testOnlyFirstStatusAndFirstRecord() {
        XCTAssertEqual(fcgi(fcgiReply("Status: 200\r\nStatus: 500\r\n\r\n"), expect: [.http2xx]), .up)
        let twoRecords = fcgiRecord(fcgiStdout, bytes("X-A: 1\r\n\r\n")) + fcgiRecord(fcgiStdout, bytes("Status: 500\r\n\r\n")) + fcgiEnd
        XCTAssertEqual(fcgi(twoRecords, expect: [.http2xx]), .up)
    }
}

import FuzzSupport
import XCTest
@testable import Checks
@testable import Config
import ShmTable

// Unit tests for the reference module's probe protocols and its conformance vectors.
// This file: shared helpers and the payload vectors (what each check type sends).
// HTTPProbeTests.swift: H1-H16. OtherProbeTests.swift: P2-P11. FastCGIProbeTests.swift: F1-F14.
// ProbeRobustnessTests.swift: seeded random inputs.
// Vectors that need the engine, sockets or timing (H14, H18-H20 as states, P12-P16, F15) live in IntegrationTests.

let testPeer = "127.0.0.1:1970"

/// The http default when `check_http_expect_alive` is absent: 2xx and 3xx.
let defaultExpect = CheckSettings().effectiveExpectAlive

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// "16 03 01" or "160301" (whitespace ignored) to bytes.
func hex(_ s: String) -> [UInt8] {
    let digits = Array(s.filter { !$0.isWhitespace })
    precondition(digits.count % 2 == 0, "odd hex string \(s)")
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0..<$0 + 2]), radix: 16)! }
}

func hexString(_ b: [UInt8]) -> String {
    let d = Array("0123456789abcdef")
    return String(b.flatMap { [d[Int($0 >> 4)], d[Int($0 & 15)]] })
}

func settings(_ type: CheckType, send: String? = nil, params: [(String, String)]? = nil) -> CheckSettings {
    var c = CheckSettings()
    c.type = type
    if let send { c.httpSend = bytes(send) }
    c.fastcgiParams = params
    return c
}

/// `Probes.evaluate` with the arguments the engine passes for an upstream without `check_http_expect_alive`
/// unless told otherwise.
func judge(_ type: CheckType, _ reply: [UInt8], eof: Bool = false, expect: ExpectAlive? = nil) -> Verdict {
    Probes.evaluate(type, reply, eof: eof, expect: expect ?? defaultExpect, expectSet: expect != nil, peer: testPeer)
}

func judge(_ type: CheckType, _ reply: String, eof: Bool = false, expect: ExpectAlive? = nil) -> Verdict {
    judge(type, bytes(reply), eof: eof, expect: expect)
}

extension Verdict {
    var reason: FailureReason? { if case .down(let r, _) = self { return r }; return nil }
    var message: String? { if case .down(_, let m) = self { return m }; return nil }
    var isDown: Bool { reason != nil }
}

/// A down verdict with this reason; `message` must match exactly, `messagePrefix` must start the log text.
func assertDown(_ v: Verdict, _ reason: FailureReason, message: String? = nil, messagePrefix: String? = nil,
                _ note: String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard case .down(let r, let m) = v else {
        return XCTFail("expected down(\(reason)), got \(v) \(note)", file: file, line: line)
    }
    XCTAssertEqual(r, reason, note, file: file, line: line)
    if let message { XCTAssertEqual(m, message, note, file: file, line: line) }
    if let messagePrefix {
        XCTAssertTrue(m.hasPrefix(messagePrefix), "log text \"\(m)\" does not start with \"\(messagePrefix)\" \(note)",
                      file: file, line: line)
    }
}

/// Reads a byte array front to back, for walking the ClientHello and FastCGI records field by field.
struct ByteReader {
    let b: [UInt8]
    var pos = 0
    init(_ b: [UInt8]) { self.b = b }
    var remaining: Int { b.count - pos }
    mutating func take(_ n: Int) -> [UInt8] {
        precondition(n <= remaining, "read past the end at \(pos)+\(n) of \(b.count)")
        defer { pos += n }
        return Array(b[pos..<pos + n])
    }
    mutating func u8() -> Int { Int(take(1)[0]) }
    mutating func u16() -> Int { let x = take(2); return Int(x[0]) << 8 | Int(x[1]) }
    mutating func u24() -> Int { let x = take(3); return Int(x[0]) << 16 | Int(x[1]) << 8 | Int(x[2]) }
}


// MARK: - Payloads

final class ProbePayloadTests: XCTestCase {
    /// H17: the default http request on the wire.
    func testH17DefaultHTTPRequestBytes() {
        let p = Probes.payload(for: settings(.http))
        XCTAssertEqual(hexString(p), "474554202f20485454502f312e300d0a0d0a")
        XCTAssertEqual(p, bytes("GET / HTTP/1.0\r\n\r\n"))
        XCTAssertEqual(p.count, 18)
    }

    /// C19: `check_http_send "";` counts as unset, so each type's default is sent.
    func testC19EmptySendMeansDefault() {
        var c = settings(.http)
        c.httpSend = []
        XCTAssertEqual(hexString(Probes.payload(for: c)), "474554202f20485454502f312e300d0a0d0a")
        c.type = .ssl_hello
        XCTAssertEqual(Probes.payload(for: c), Probes.sslHello)
        c.type = .ajp
        XCTAssertEqual(Probes.payload(for: c), hex("12 34 00 01 0a"))
        c.type = .mysql
        XCTAssertEqual(Probes.payload(for: c), [])
        c.type = .fastcgi
        XCTAssertEqual(Probes.payload(for: c), Probes.fastCGIRequest(Probes.defaultFastCGIParams))
    }

    /// tcp sends nothing, and `check_http_send` does not change that.
    func testTCPSendsNothing() {
        XCTAssertEqual(Probes.payload(for: settings(.tcp)), [])
        XCTAssertEqual(Probes.payload(for: settings(.tcp, send: "GET / HTTP/1.0\r\n\r\n")), [])
    }

    /// `check_http_send` replaces the payload of http, ssl_hello, ajp, mysql and fastcgi byte for byte,
    /// adding nothing (no Host, no CRLF). H20's request is one such value.
    func testHTTPSendReplacesEveryPayloadButTCP() {
        let sends = ["GET /foo HTTP/1.0\r\n\r\n", "HEAD /health HTTP/1.1\r\nHost: x", "x"]
        for send in sends {
            for type in [CheckType.http, .ssl_hello, .ajp, .mysql, .fastcgi] {
                XCTAssertEqual(Probes.payload(for: settings(type, send: send)), bytes(send), "\(type) \(send.debugDescription)")
            }
            // fastcgi params are ignored when check_http_send is set
            XCTAssertEqual(Probes.payload(for: settings(.fastcgi, send: send, params: [("A", "B")])), bytes(send))
        }
        XCTAssertEqual(Probes.payload(for: settings(.http, send: "GET /foo HTTP/1.0\r\n\r\n")),
                       hex("474554202f666f6f20485454502f312e300d0a0d0a"))
    }

    /// P7: mysql is server-speaks-first; nothing is sent.
    func testP7MySQLSendsNothing() {
        XCTAssertEqual(Probes.payload(for: settings(.mysql)), [])
    }

    /// P10: ajp sends the CPING `12 34 00 01 0a`.
    func testP10AJPCPing() {
        XCTAssertEqual(Probes.payload(for: settings(.ajp)), hex("12 34 00 01 0a"))
        XCTAssertEqual(Probes.ajpCPing, hex("12 34 00 01 0a"))
    }

    /// fastcgi uses `check_fastcgi_param` when set (replacing the built-in set), else the three defaults.
    func testFastCGIPayloadUsesConfiguredParams() {
        XCTAssertEqual(Probes.payload(for: settings(.fastcgi)), Probes.fastCGIRequest(Probes.defaultFastCGIParams))
        let params = [("REQUEST_URI", "/redir")]
        XCTAssertEqual(Probes.payload(for: settings(.fastcgi, params: params)), Probes.fastCGIRequest(params))
        XCTAssertNotEqual(Probes.fastCGIRequest(params), Probes.fastCGIRequest(Probes.defaultFastCGIParams))
    }

    /// P1: the 116-byte TLS 1.2 ClientHello, checked against the reference module's offset table.
    func testP1SSLHelloOffsetTable() {
        let h = Probes.sslHello
        XCTAssertEqual(h.count, 116)
        XCTAssertEqual(Probes.payload(for: settings(.ssl_hello)), h)
        func at(_ off: Int, _ expected: [UInt8], _ field: String, line: UInt = #line) {
            guard off + expected.count <= h.count else { return XCTFail("\(field) beyond the end", line: line) }
            XCTAssertEqual(hexString(Array(h[off..<off + expected.count])), hexString(expected), field, line: line)
        }
        at(0, hex("16 03 01 00 6f"), "record: handshake, version 3.1, length 111")
        at(5, hex("01 00 00 6b"), "ClientHello, length 107")
        at(9, hex("03 03"), "client version TLS 1.2")
        at(11, hex("00 00 00 00"), "gmt_unix_time is always zero")
        at(15, bytes("NGX_HTTP_CHECK_SSL_HELLO") + hex("0a 0a 0a 0a"), "28-byte random")
        at(43, hex("00"), "empty session id")
        at(44, hex("00 1a c0 2b c0 2f cc a9 cc a8 c0 0a c0 09 c0 13 c0 14 00 33 00 39 00 2f 00 35 00 0a"), "13 cipher suites")
        at(72, hex("01 00"), "one compression method: null")
        at(74, hex("00 28"), "40 bytes of extensions")
        at(76, hex("00 0a 00 08 00 06 00 17 00 18 00 19"), "supported groups P-256, P-384, P-521")
        at(88, hex("00 0d 00 18 00 16 04 01 05 01 06 01 02 01 04 03 05 03 06 03 02 03 05 02 04 02 02 02"),
           "11 signature algorithms")
    }

    /// P1 again, parsed as TLS: every length field agrees with what follows it and nothing is left over.
    func testP1SSLHelloParsesAsTLS() {
        var r = ByteReader(Probes.sslHello)
        XCTAssertEqual(r.u8(), 0x16, "content type handshake")
        XCTAssertEqual(r.take(2), [3, 1], "record version TLS 1.0")
        XCTAssertEqual(r.u16(), r.remaining, "record length")
        XCTAssertEqual(r.u8(), 0x01, "handshake type client_hello")
        XCTAssertEqual(r.u24(), r.remaining, "handshake length")
        XCTAssertEqual(r.take(2), [3, 3], "client_version TLS 1.2")
        XCTAssertEqual(r.take(4), [0, 0, 0, 0], "gmt_unix_time zero")
        XCTAssertEqual(String(decoding: r.take(24), as: UTF8.self), "NGX_HTTP_CHECK_SSL_HELLO")
        XCTAssertEqual(r.take(4), [0x0a, 0x0a, 0x0a, 0x0a])
        XCTAssertEqual(r.u8(), 0, "session id length")
        let cipherBytes = r.u16()
        XCTAssertEqual(cipherBytes, 26)
        let ciphers = (0..<cipherBytes / 2).map { _ in r.u16() }
        XCTAssertEqual(ciphers, [0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc00a, 0xc009, 0xc013, 0xc014,
                                 0x0033, 0x0039, 0x002f, 0x0035, 0x000a])
        XCTAssertEqual(r.u8(), 1, "compression methods length")
        XCTAssertEqual(r.u8(), 0, "null compression")
        XCTAssertEqual(r.u16(), r.remaining, "extensions length")
        XCTAssertEqual(r.u16(), 0x000a, "supported_groups")
        XCTAssertEqual(r.u16(), 8)
        XCTAssertEqual(r.u16(), 6)
        XCTAssertEqual([r.u16(), r.u16(), r.u16()], [0x17, 0x18, 0x19])
        XCTAssertEqual(r.u16(), 0x000d, "signature_algorithms")
        XCTAssertEqual(r.u16(), 0x18)
        let sigBytes = r.u16()
        XCTAssertEqual(sigBytes, 22)
        let sigs = (0..<sigBytes / 2).map { _ in r.u16() }
        XCTAssertEqual(sigs, [0x0401, 0x0501, 0x0601, 0x0201, 0x0403, 0x0503, 0x0603, 0x0203, 0x0502, 0x0402, 0x0202])
        XCTAssertEqual(r.remaining, 0)
    }
}

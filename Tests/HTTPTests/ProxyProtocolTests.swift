import FuzzSupport
import XCTest
@testable import HTTP

/// nginx's PROXY protocol reader (ngx_proxy_protocol.c): v1 and v2 headers, what they leave for the
/// request, nginx's verdicts on bad ones, and the wait for the rest of a header that is still arriving.
final class ProxyProtocolTests: XCTestCase {
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    func parse(_ bytes: [UInt8], limit: Int = 1024) -> ProxyProtocol.Result {
        bytes.withUnsafeBytes { ProxyProtocol.parse($0, limit: limit) }
    }

    func header(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> (Int, ProxyProtocolHeader?)? {
        guard case .complete(let length, let h) = parse(bytes) else {
            XCTFail("not complete: \(parse(bytes))", file: file, line: line)
            return nil
        }
        return (length, h)
    }

    func message(_ bytes: [UInt8]) -> String?? {
        guard case .invalid(let m) = parse(bytes) else { return nil }
        return .some(m)
    }

    func v2(_ command: UInt8, _ family: UInt8, _ body: [UInt8]) -> [UInt8] {
        Self.v2Signature + [command, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    func testV1() throws {
        let line = "PROXY TCP4 192.0.2.1 192.0.2.2 123 5678\r\n"
        let (length, h) = try XCTUnwrap(header(Array((line + "GET / HTTP/1.0\r\n\r\n").utf8)))
        XCTAssertEqual(length, line.utf8.count, "the request after it is left")
        XCTAssertEqual(h?.sourceAddress, "192.0.2.1")
        XCTAssertEqual(h?.sourcePort, 123)
        XCTAssertEqual(h?.destinationAddress, "192.0.2.2")
        XCTAssertEqual(h?.destinationPort, 5678)
        // IPv6 addresses are kept as written, as nginx's $proxy_protocol_addr shows them.
        let (_, h6) = try XCTUnwrap(header(Array("PROXY TCP6 2001:Db8::1 2001:Db8::2 1 65535\r\n".utf8)))
        XCTAssertEqual(h6?.sourceAddress, "2001:Db8::1")
        XCTAssertEqual(h6?.destinationPort, 65535)
        // UNKNOWN: no addresses, whatever follows up to the line's end.
        for unknown in ["PROXY UNKNOWN\r\n", "PROXY UNKNOWN 1 2 3 4 5 6\r\n"] {
            let (n, none) = try XCTUnwrap(header(Array((unknown + "GET").utf8)))
            XCTAssertEqual(n, unknown.utf8.count)
            XCTAssertNil(none)
        }
    }

    func testV1BrokenHeadersAreNginxs() {
        for bad in ["GET / HTTP/1.0\r\n\r\n", "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "PROXY TCP4 1.2.3.x 1.2.3.4 1 2\r\n",
                    "PROXY TCP4 1.2.3.4 1.2.3.4 70000 2\r\n", "PROXY TCP4 1.2.3.4 1.2.3.4  2\r\n",
                    "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"] {
            XCTAssertEqual(message(Array(bad.utf8)), .some("broken header: \"\(bad)\""), bad.debugDescription)
        }
        // No line's end within the longest header there is.
        let long = "PROXY UNKNOWN " + String(repeating: "a", count: 100)
        XCTAssertEqual(message(Array(long.utf8)), .some("broken header: \"\(long)\""))
    }

    func testEveryPrefixOfAHeaderWaitsForTheRest() {
        let whole: [[UInt8]] = [
            Array("PROXY TCP4 192.0.2.1 192.0.2.2 123 5678\r\n".utf8),
            Array("PROXY UNKNOWN\r\n".utf8),
            v2(0x21, 0x11, [192, 0, 2, 1, 192, 0, 2, 2, 0, 123, 0x16, 0x2E]),
        ]
        for h in whole {
            for n in 0..<h.count {
                guard case .incomplete = parse(Array(h[..<n])) else { return XCTFail("prefix \(n) of \(h): \(parse(Array(h[..<n])))") }
            }
            guard case .complete(let length, _) = parse(h) else { return XCTFail("\(h)") }
            XCTAssertEqual(length, h.count)
        }
    }

    func testV2() throws {
        let tlv: [UInt8] = [0x01, 0x00, 0x02, 0x68, 0x32]
        let bytes = v2(0x21, 0x11, [192, 0, 2, 1, 192, 0, 2, 2, 0, 123, 0x16, 0x2E] + tlv) + Array("GET".utf8)
        let (length, h) = try XCTUnwrap(header(bytes))
        XCTAssertEqual(length, bytes.count - 3)
        XCTAssertEqual(h?.sourceAddress, "192.0.2.1")
        XCTAssertEqual(h?.sourcePort, 123)
        XCTAssertEqual(h?.destinationAddress, "192.0.2.2")
        XCTAssertEqual(h?.destinationPort, 5678)
        XCTAssertEqual(h?.tlvs, tlv)
        let six = v2(0x21, 0x21, [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1]
                     + [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [2] + [0, 123, 0x16, 0x2E])
        XCTAssertEqual(try XCTUnwrap(header(six)).1?.sourceAddress, "2001:db8::1")
        // LOCAL, a datagram transport, an AF_UNIX or unspecified family: skipped, no addresses.
        for skipped in [v2(0x20, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), v2(0x21, 0x12, [UInt8](repeating: 0, count: 12)),
                        v2(0x21, 0x31, [UInt8](repeating: 0, count: 216)), v2(0x21, 0x01, [])] {
            let (n, none) = try XCTUnwrap(header(skipped))
            XCTAssertEqual(n, skipped.count)
            XCTAssertNil(none)
        }
    }

    /// nginx 1.23.2's `$proxy_protocol_tlv_*` lookups.
    func testTLVs() {
        func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] { [type, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value }
        let ssl = [0x01, 0, 0, 0, 0xFF] + tlv(0x21, Array("TLSv1.2".utf8)) + tlv(0x22, Array("example.com".utf8))
        let tlvs = tlv(0x01, Array("h2".utf8)) + tlv(0x20, ssl) + tlv(0xAE, Array("12345".utf8))
        func value(_ name: String) -> String? { ProxyProtocol.tlv(name[...], in: tlvs).map { String(decoding: $0, as: UTF8.self) } }
        XCTAssertEqual(value("alpn"), "h2")
        XCTAssertEqual(value("0x01"), "h2")
        XCTAssertEqual(value("0x000ae"), "12345")
        XCTAssertEqual(value("ssl_version"), "TLSv1.2")
        XCTAssertEqual(value("ssl_0x22"), "example.com")
        XCTAssertEqual(value("ssl_verify"), "255")
        XCTAssertEqual(ProxyProtocol.tlv("ssl", in: tlvs), ssl)
        XCTAssertNil(value("authority"))
        XCTAssertNil(value("0xzz"))
        XCTAssertNil(value("nonsense"))
        XCTAssertNil(ProxyProtocol.tlv("alpn", in: [0x01, 0x00, 0x09, 0x41]), "a TLV longer than what is left is broken")
    }

    func testV2FailuresAreNginxs() {
        XCTAssertEqual(message(v2(0x31, 0x11, [UInt8](repeating: 0, count: 12))), .some("unknown PROXY protocol version: 3"))
        XCTAssertEqual(message(v2(0x21, 0x11, [UInt8](repeating: 0, count: 2000))), .some("header is too large"))
        // An address block shorter than its family's: closed without a word, as nginx.
        XCTAssertEqual(message(v2(0x21, 0x11, [1, 2, 3])), .some(nil))
        XCTAssertEqual(message(v2(0x21, 0x21, [UInt8](repeating: 0, count: 12))), .some(nil))
    }

    /// Mutated headers never trap, a complete one never claims more bytes than there are, and none waits for
    /// more than the connection's buffer holds.
    func testMutatedHeadersNeverCrash() {
        let corpus: [[UInt8]] = [
            Array("PROXY TCP4 192.0.2.1 192.0.2.2 123 5678\r\nGET / HTTP/1.0\r\n\r\n".utf8),
            Array("PROXY TCP6 2001:db8::1 2001:db8::2 123 5678\r\n".utf8),
            Array("PROXY UNKNOWN\r\n".utf8),
            v2(0x21, 0x11, [192, 0, 2, 1, 192, 0, 2, 2, 0, 123, 0x16, 0x2E, 0x01, 0x00, 0x02, 0x68, 0x32]),
            v2(0x21, 0x21, [UInt8](repeating: 7, count: 36)),
        ]
        let seed = FuzzEnvironment.seed(default: 0x9E0C)
        _ = FuzzProgress.runTest("PROXY protocol fuzz", iterations: FuzzEnvironment.iterations(default: 20_000), seed: seed,
                                 show: { "\($0)" }, summary: { "\($0)" }) { k, progress in
            var rng = SplitMix64(seed: seed &+ UInt64(k))
            let input = BinaryMutation.mutate(corpus[rng.below(corpus.count)], corpus: corpus, rng: &rng)
            progress.start(input)
            let limit = ProxyProtocol.v1MaxLength + rng.below(1024)
            switch input.withUnsafeBytes({ ProxyProtocol.parse($0, limit: limit) }) {
            case .complete(let length, _):
                if length > input.count { progress.fail("claims \(length) of \(input.count) bytes: \(input)") }
                progress.count("complete")
            case .incomplete:
                // A connection's buffer holds `limit` bytes: waiting with it full would wait forever.
                if input.count >= limit { progress.fail("incomplete with \(input.count) bytes, limit \(limit): \(input)") }
                progress.count("incomplete")
            case .invalid: progress.count("invalid")
            }
            progress.finish()
        }
    }
}

import XCTest
import Config
import Core
@testable import HTTPServer

/// The realip module's address search (nginx's ngx_http_get_forwarded_addr), on realip.t's cases.
final class RealIPTests: XCTestCase {
    let trusted = [CIDR(bytes: [127, 0, 0, 1], prefix: 32), CIDR(bytes: [10, 0, 1, 0], prefix: 24)]
    let peer: [UInt8] = [127, 0, 0, 1]

    func found(_ values: [String], recursive: Bool, from: [UInt8]? = nil) -> String? {
        let bytes = values.map { Array($0.utf8) }
        func go(_ i: Int, _ ptrs: [UnsafeRawBufferPointer]) -> (bytes: [UInt8], port: UInt16)? {
            if i == bytes.count { return ForwardedAddress.find(from ?? peer, ptrs, trusted, recursive: recursive) }
            return bytes[i].withUnsafeBytes { go(i + 1, ptrs + [$0]) }
        }
        return go(0, []).map { RealAddress(bytes: $0.bytes, port: $0.port) }.map { $0.port == 0 ? $0.text : "\($0.text):\($0.port)" }
    }

    func testForwardedFor() {
        XCTAssertEqual(found(["10.0.0.1, 192.0.2.1"], recursive: false), "192.0.2.1")
        XCTAssertEqual(found(["192.0.2.1, 10.0.1.1, 127.0.0.1"], recursive: false), "127.0.0.1")
        XCTAssertEqual(found(["10.0.1.1, 192.0.2.1, 127.0.0.1"], recursive: true), "192.0.2.1")
        // Several header lines: the last one alone without recursion, walked back through all with it.
        XCTAssertEqual(found(["192.0.2.1", "127.0.0.1, 10.0.1.1"], recursive: false), "10.0.1.1")
        XCTAssertEqual(found(["10.0.1.1", "192.0.2.1", "127.0.0.1"], recursive: true), "192.0.2.1")
        // Every address trusted: the first one.
        XCTAssertEqual(found(["10.0.1.2, 10.0.1.1"], recursive: true), "10.0.1.2")
        // Trailing separators and a port.
        XCTAssertEqual(found(["192.0.2.1:123 ,, "], recursive: false), "192.0.2.1:123")
        XCTAssertEqual(found(["[2001:db8::1]:80"], recursive: false), "2001:db8::1:80")
    }

    func testUntrustedPeerOrGarbageChangesNothing() {
        XCTAssertNil(found(["192.0.2.1"], recursive: true, from: [192, 0, 2, 9]))
        XCTAssertNil(found(["not an address"], recursive: true))
        XCTAssertNil(found([""], recursive: true))
        XCTAssertNil(found([",, "], recursive: true))
        XCTAssertNil(found(["1.2.3.4:0"], recursive: false))
        XCTAssertNil(found(["[::1]"], recursive: false))
        // An untrusted address in the middle stops the walk there.
        XCTAssertEqual(found(["192.0.2.7, 192.0.2.8, 10.0.1.1"], recursive: true), "192.0.2.8")
    }

    func testIPv4MappedPeerIsMatchedAsIPv4() {
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1]
        XCTAssertEqual(found(["192.0.2.1"], recursive: false, from: mapped), "192.0.2.1")
        XCTAssertTrue(ForwardedAddress.isTrusted([], [CIDR(bytes: [], prefix: 0)]), "unix: trusts unix-domain clients")
        XCTAssertFalse(ForwardedAddress.isTrusted([127, 0, 0, 1], [CIDR(bytes: [], prefix: 0)]))
    }
}

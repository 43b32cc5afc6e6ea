import XCTest
@testable import Core

/// Base64 as `Authorization: Basic` and the `{SHA}`/`{SSHA}` password schemes use it (RFC 4648's vectors).
final class Base64Tests: XCTestCase {
    private let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==",
                           "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]

    func testEncodesRFC4648Vectors() {
        for (plain, encoded) in vectors {
            var out = Array("x".utf8)
            Base64.encode(Array(plain.utf8), into: &out)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), "x" + encoded, plain)
        }
        var all: [UInt8] = []
        Base64.encode([0xFB, 0xEF, 0xFF], into: &all)
        XCTAssertEqual(String(decoding: all, as: UTF8.self), "++//")
    }

    func testDecodesWithAndWithoutPaddingFromTextOrBytes() {
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.decode(encoded), Array(plain.utf8), encoded)
            XCTAssertEqual(Base64.decode(Array(encoded.utf8).filter { $0 != UInt8(ascii: "=") }), Array(plain.utf8))
            Array(encoded.utf8).withUnsafeBytes { XCTAssertEqual(Base64.decode($0.dropFirst(0)), Array(plain.utf8)) }
        }
        XCTAssertEqual(Base64.decode("++//"), [0xFB, 0xEF, 0xFF])
    }

    func testRefusesWhatIsNotBase64() {
        for bad in ["Zm9v!", "Zg==Zg", "Z===", "Zm 9v", "Zm9v\n"] { XCTAssertNil(Base64.decode(bad), bad) }
    }
}

import XCTest
@testable import HTTP

final class URIPathTests: XCTestCase {
    func normalised(_ path: String, mergeSlashes: Bool = true) -> String? {
        Array(path.utf8).withUnsafeBytes { URIPath.normalised($0, mergeSlashes: mergeSlashes) }
    }

    func testDotSegmentsAndSlashes() {
        XCTAssertEqual(normalised("/"), "/")
        XCTAssertEqual(normalised("/a/b/../../c"), "/c")
        XCTAssertEqual(normalised("/a/./b"), "/a/b")
        XCTAssertEqual(normalised("/a/."), "/a/")
        XCTAssertEqual(normalised("/a/.."), "/")
        XCTAssertEqual(normalised("/a/..b/.c"), "/a/..b/.c")
        XCTAssertEqual(normalised("///a"), "/a")
        XCTAssertEqual(normalised("///a", mergeSlashes: false), "///a")
        XCTAssertNil(normalised("/.."))
        XCTAssertNil(normalised("/a/../.."))
    }

    func testEscapes() {
        XCTAssertEqual(normalised("/%41%62"), "/Ab")
        XCTAssertEqual(normalised("/a%2F%2E%2E"), "/", "a decoded \"/\" and \".\" count as themselves")
        XCTAssertEqual(normalised("/%25%23%3F"), "/%#?", "a decoded \"%\", \"#\" or \"?\" is data")
        XCTAssertEqual(normalised("/%2e%25"), "/.%")
        XCTAssertNil(normalised("/%00"))
        XCTAssertNil(normalised("/%g0"))
        XCTAssertNil(normalised("/%0"))
        XCTAssertNil(normalised("/%FF"), "not UTF-8")
    }

    func testServerNames() {
        XCTAssertEqual(HostName.serverName("Example.COM.:80"), "example.com")
        XCTAssertEqual(HostName.serverName("[::1]:80"), "[::1]")
        XCTAssertEqual(HostName.serverName("a"), "a")
        XCTAssertEqual(HostName.serverName("127.0.0.1:8080"), "127.0.0.1")
        XCTAssertEqual(HostName.serverName("a.B."), "a.b")
        XCTAssertEqual(HostName.serverName("[FE80::1]"), "[fe80::1]")
        XCTAssertEqual(HostName.serverName(""), "")
        XCTAssertEqual(HostName.serverName("Bücher.example:8"), "bücher.example")
    }
}

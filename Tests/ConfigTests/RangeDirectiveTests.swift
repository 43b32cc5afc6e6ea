import XCTest
@testable import Config

/// max_ranges, proxy_force_ranges and gzip_static: values, inheritance down to locations, nginx's messages.
/// `inHTTP(body)`: line N of body is line N + 2 of the file.
final class RangeDirectiveTests: XCTestCase {
    func testValuesAndInheritance() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            max_ranges 2; gzip_static on;
            server {
                location /a { proxy_force_ranges on; gzip_static ALWAYS; }
                location /b { max_ranges 0; }
            }
            """)))
        let server = try XCTUnwrap(conf.http?.servers.first)
        let a = server.locations[0].settings, b = server.locations[1].settings
        XCTAssertEqual(a.core.maxRanges, 2)
        XCTAssertEqual(b.core.maxRanges, 0)
        XCTAssertTrue(a.proxy.forceRanges)
        XCTAssertFalse(b.proxy.forceRanges)
        XCTAssertEqual(a.gzip.staticFiles, .always, "nginx's enum values are compared without case")
        XCTAssertEqual(b.gzip.staticFiles, .on)
        XCTAssertEqual(HTTPSettings().core.maxRanges, Int(Int32.max))
        XCTAssertEqual(HTTPSettings().gzip.staticFiles, .off)
    }

    func testErrors() {
        assertError(inHTTP("max_ranges -1;"), "\"max_ranges\" directive invalid number", line: 3)
        assertError(inHTTP("gzip_static maybe;"), "invalid value \"maybe\"", line: 3)
        assertError(inHTTP("gzip_static on;\ngzip_static off;"), "\"gzip_static\" directive is duplicate", line: 4)
        assertError(inHTTP("proxy_force_ranges yes;"),
                    "invalid value \"yes\" in \"proxy_force_ranges\" directive, it must be \"on\" or \"off\"", line: 3)
    }
}

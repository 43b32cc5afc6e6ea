import XCTest
@testable import Config
import Script

/// A regex location that does not compile fails `-t`, at its line, instead of the worker failing at start.
final class RegexLocationTests: XCTestCase {
    func testInvalidRegexIsAConfigError() {
        assertError("events {}\nhttp {\n server {\n  listen 127.0.0.1:9999;\n  location ~ (abc { return 200; }\n }\n}\n",
                    #"pcre2_compile() failed: missing closing parenthesis in "(abc" at """#, line: 5)
    }

    func testValidRegexesLoad() {
        XCTAssertNotNil(assertLoads("events {}\nhttp {\n server {\n  listen 127.0.0.1:9999;\n  location ~* \\.(gif|jpg)$ { return 200; }\n  location / { location ~ ^/a/(b|c)$ { return 204; } }\n }\n}\n"))
    }
}

/// What a match hands to `$n` and named-group variables, as PCRE2 reports it.
final class RegexCaptureTests: XCTestCase {
    func testGroupsUnsetAndPastNine() throws {
        let re = try Regex("^/(a)(x)?(b)(c)(d)(e)(f)(g)(h)(i)(?<eleventh>j)(k)?$")
        XCTAssertEqual(re.captureCount, 12)
        XCTAssertEqual(re.names.first?.group, 11)
        let m = try XCTUnwrap(re.match("/abcdefghij"))
        XCTAssertEqual(m.group(0), "/abcdefghij")
        XCTAssertEqual(m.group(1), "a")
        XCTAssertNil(m.group(2), "an optional group that took no part")
        XCTAssertEqual(m.group(9), "h")
        XCTAssertEqual(m.group(10), "i")
        XCTAssertEqual(m.group(11), "j")
        XCTAssertNil(m.group(12), "past the last group that matched")
        XCTAssertNil(m.group(13), "past the expression's groups")
        XCTAssertNil(re.match("/nope"))
    }

    func testGroupsOfANonASCIISubject() throws {
        let m = try XCTUnwrap(Regex("^/([^/]+)/(.*)$").match("/éé/ü"))
        XCTAssertEqual(m.group(1), "éé")
        XCTAssertEqual(m.group(2), "ü")
    }
}

import XCTest
@testable import Config

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

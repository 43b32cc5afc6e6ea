import XCTest
@testable import Script

/// PCRE2 as nginx uses it: unanchored matches, numbered and named groups, caseless matching, nginx's
/// wording for a pattern that does not compile.
final class RegexTests: XCTestCase {
    func testGroupsOfAMatch() throws {
        let re = try Regex("^/user/(\\d+)/(\\w+)$")
        XCTAssertEqual(re.captureCount, 2)
        XCTAssertEqual(re.pattern, "^/user/(\\d+)/(\\w+)$")
        let m = try XCTUnwrap(re.match("/user/42/profile"))
        XCTAssertEqual(m.group(0), "/user/42/profile")
        XCTAssertEqual(m.group(1), "42")
        XCTAssertEqual(m.group(2), "profile")
        XCTAssertNil(m.group(3), "no such group")
        XCTAssertNil(m.group(-1))
        XCTAssertNil(re.match("/user/x/profile"))
        XCTAssertTrue(re.matches("/user/1/a"))
        XCTAssertFalse(re.matches("/user/1/a/"))
    }

    func testUnanchoredByDefault() throws {
        let re = try Regex("\\.php")
        XCTAssertTrue(re.matches("/index.php?x"))
        XCTAssertEqual(re.match("/a/b.php/c")?.group(0), ".php")
        XCTAssertFalse(re.matches("/index.html"))
    }

    func testAGroupThatTookNoPartIsNil() throws {
        let re = try Regex("^/a(/b)?(/c)$")
        let m = try XCTUnwrap(re.match("/a/c"))
        XCTAssertNil(m.group(1))
        XCTAssertEqual(m.group(2), "/c")
        let trailing = try XCTUnwrap(try Regex("^(x)(y)?").match("xz"))
        XCTAssertEqual(trailing.group(1), "x")
        XCTAssertNil(trailing.group(2), "an unset group after the last one that matched")
    }

    func testCaseless() throws {
        XCTAssertTrue(try Regex("^/API/", caseless: true).matches("/api/v1"))
        XCTAssertFalse(try Regex("^/API/").matches("/api/v1"))
    }

    func testNamedGroups() throws {
        let re = try Regex("^/(?<section>[a-z]+)/(?<id>\\d+)(?:/(?<rest>.*))?$")
        // PCRE2's name table is sorted by name.
        XCTAssertEqual(re.names.map { "\($0.name)=\($0.group)" }, ["id=2", "rest=3", "section=1"])
        let m = try XCTUnwrap(re.match("/news/2024"))
        XCTAssertEqual(m.group(1), "news")
        XCTAssertEqual(m.group(2), "2024")
        XCTAssertNil(m.group(3))
        XCTAssertTrue(try Regex("^/plain$").names.isEmpty)
    }

    func testBindingsSetTheVariablesTheyName() throws {
        let table = VariableTable()
        let re = try Regex("^/(?<section>[a-z]+)/(?<id>\\d+)")
        re.bindings = re.names.map { ($0.group, table.declare($0.name)) }
        let ctx = TestContext(uri: "/shop/77/x", table: table)
        let m = try XCTUnwrap(re.match(ctx.uri))
        Program.take(m, of: re, ctx)
        XCTAssertEqual(ctx.user("section"), "shop")
        XCTAssertEqual(ctx.user("id"), "77")
        XCTAssertEqual(ctx.captures?.group(2), "77", "the match's groups are also $1…$9")
    }

    func testManyGroups() throws {
        let pattern = String(repeating: "(.)", count: 12)
        let re = try Regex(pattern)
        XCTAssertEqual(re.captureCount, 12)
        let m = try XCTUnwrap(re.match("abcdefghijkl"))
        XCTAssertEqual(m.group(9), "i")
        XCTAssertEqual(m.group(10), "j")
        XCTAssertEqual(m.group(12), "l", "groups past nine are kept too")
        XCTAssertNil(m.group(13))
    }

    func testGroupsAreUTF8Substrings() throws {
        // Offsets are bytes; groups come back as the UTF-8 text between them.
        let m = try XCTUnwrap(try Regex("((?:é)+)(x)").match("aééx"))
        XCTAssertEqual(m.group(1), "éé")
        XCTAssertEqual(m.group(2), "x")
        XCTAssertEqual(m.group(0), "ééx")
        // As in nginx (no PCRE2_UTF), a pattern is bytes: `é+` repeats the last byte of é only.
        XCTAssertEqual(try Regex("(é+)x").match("aééx")?.group(1), "é")
    }

    func testCompileErrorIsWordedLikeNginx() {
        XCTAssertThrowsError(try Regex("(a")) { e in
            XCTAssertEqual("\(e)", "pcre2_compile() failed: missing closing parenthesis in \"(a\" at \"\"")
        }
        XCTAssertThrowsError(try Regex("a)b")) { e in
            XCTAssertEqual("\(e)", "pcre2_compile() failed: unmatched closing parenthesis in \"a)b\" at \")b\"",
                           "the rest of the pattern from where PCRE2 stopped")
        }
    }

    func testOneRegexMatchesAgainAndAgain() throws {
        // The match data is the expression's own: a second match must not leak the first one's groups.
        let re = try Regex("^(a)?(b)$")
        XCTAssertEqual(re.match("ab")?.group(1), "a")
        let second = try XCTUnwrap(re.match("b"))
        XCTAssertNil(second.group(1))
        XCTAssertEqual(second.group(2), "b")
    }
}

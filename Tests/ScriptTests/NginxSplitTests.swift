import XCTest
@testable import Config
@testable import Script

/// Where a template's text ends and a variable's begins, and where a rewrite's arguments begin, as nginx
/// decides them.
final class NginxSplitTests: XCTestCase {
    func testNamesAreASCIILettersDigitsAndUnderscores() {
        // As nginx's: a name is [A-Za-z0-9_]; any other byte ends it, a non-ASCII letter too.
        XCTAssertEqual(Template("$uriété").names, ["uri"])
        XCTAssertEqual(Template("$host·x").names, ["host"])
        let ctx = TestContext(uri: "/a")
        XCTAssertEqual(template("$uriété").render(ctx), "/aété")
    }


    func testAQuestionMarkInAVariablesValueStaysInTheURI() throws {
        // nginx splits the replacement at a `?` written in it, never at
        // one that a variable's value brings: the value stays in the URI, and the request's arguments are not
        // changed by the client's text. `GET /profile?name=bob?admin=1` makes $arg_name `bob?admin=1`.
        let s = try load(location: "rewrite ^/profile$ /users/$arg_name last;")
        let (o, ctx) = s.run(uri: "/profile", args: "name=bob?admin=1") { $0.set(.arg("name"), "bob?admin=1") }
        XCTAssertEqual(o, .last)
        XCTAssertEqual(ctx.uri, "/users/bob?admin=1")
        XCTAssertEqual(ctx.args, "name=bob?admin=1", "a client's value must not become arguments of their own")
    }
}

import XCTest
import Core
@testable import Script

/// Templates: how `$name`, `${name}`, `$1` and literals split, how they render, and access log lines
/// with each escaping.
final class TemplateTests: XCTestCase {
    func testNamesAreSplitOutOfTheText() {
        XCTAssertEqual(Template("/a/$uri?x=${args}z$1$10").names, ["uri", "args", "1", "1"],
                       "$10 is $1 followed by a literal 0")
        XCTAssertEqual(Template("${host}name $hostname").names, ["host", "hostname"], "braces end a name early")
        XCTAssertEqual(Template("$http_user_agent-$arg_q.$cookie_id").names, ["http_user_agent", "arg_q", "cookie_id"])
        XCTAssertEqual(Template("no variables").names, [])
        XCTAssertEqual(Template("a$").names, [], "a trailing $ is a literal")
        XCTAssertEqual(Template("5$ -$- ${}").names, [], "a $ without a name is a literal")
        XCTAssertEqual(Template("$uri").text, "$uri")
    }

    func testRenderWithVariablesCapturesAndLiterals() throws {
        let ctx = TestContext(uri: "/img/cat.png", args: "w=10")
        ctx.set(.host, "example.com")
        ctx.set(.hostname, "box1")
        let re = try Regex("^/img/(\\w+)\\.(png|jpg)$")
        ctx.captures = re.match(ctx.uri)
        XCTAssertEqual(template("/a/$uri?x=${args}z$1$10").render(ctx), "/a//img/cat.png?x=w=10zcatcat0")
        XCTAssertEqual(template("${host}name|$hostname").render(ctx), "example.comname|box1")
        XCTAssertEqual(template("$2:$3").render(ctx), "png:", "a group the regex does not have is empty")
        XCTAssertEqual(template("plain").render(ctx), "plain")
        XCTAssertEqual(template("$uri").render(ctx), "/img/cat.png", "a lone variable")
        XCTAssertEqual(template("[$remote_addr]").render(ctx), "[]", "a variable without a value is empty")
        XCTAssertEqual(template("5$ -$- ${}").render(ctx), "5$ -$- ${}")
        XCTAssertEqual(template("").render(ctx), "")
    }

    func testAConstantFoldsIntoTheLiteralsAroundIt() {
        // Debian's fastcgi_params: `SERVER_SOFTWARE nginx/$nginx_version` is a literal once resolved.
        XCTAssertEqual(template("nginx/$nginx_version").literal, "nginx/" + Version.number)
        XCTAssertEqual(template("$nginx_version").literal, Version.number)
        let t = template("v$nginx_version at $uri")
        XCTAssertNil(t.literal, "a template with a variable left is not one")
        XCTAssertEqual(t.render(TestContext(uri: "/x", args: nil)), "v\(Version.number) at /x")
    }

    func testUnresolvedNamesStillRenderAsBuiltins() {
        // Before `resolve` (a template made outside a configuration) the names are looked up as they render.
        let ctx = TestContext(uri: "/x", args: nil)
        ctx.set(.httpHeader("user-agent"), "curl")
        let t = Template("$uri by $http_user_agent$is_args$args")
        XCTAssertEqual(t.render(ctx), "/x by curl")
        ctx.args = "a=1"
        XCTAssertEqual(t.render(ctx), "/x by curl?a=1")
    }

    func testConfigurationVariablesResolveThroughTheTable() {
        let table = VariableTable()
        let i = table.declare("backend")
        XCTAssertEqual(table.declare("backend"), i, "declared once")
        let t = template("http://$backend$uri", table)
        let ctx = TestContext(uri: "/p", table: table)
        XCTAssertEqual(t.render(ctx), "http:///p")
        ctx.setUser(i, "10.0.0.1:8080")
        XCTAssertEqual(t.render(ctx), "http://10.0.0.1:8080/p")
        XCTAssertEqual(Variable(name: "backend", table: table), .user(i))
        XCTAssertEqual(Variable(name: "backend"), .none, "unknown without the table")
        XCTAssertEqual(Variable(name: "7"), .capture(7))
        XCTAssertEqual(Variable(name: "http_X_Forwarded_For"), .httpHeader("x-forwarded-for"))
    }

    /// A context with a hostile user agent, an empty referer and no arguments.
    private func logContext() -> TestContext {
        let ctx = TestContext(uri: "/index.html", args: nil)
        ctx.set(.remoteAddr, "192.0.2.7")
        ctx.set(.httpHeader("user-agent"), "Mo\"z\\illa\u{7f}é\n\u{1}")
        ctx.set(.httpHeader("referer"), "")
        return ctx
    }

    /// A line as the access log makes it: appended to a buffer that already holds syslog's header.
    private func logLine(_ t: Template, escape: LogEscape) -> String {
        var line = "<190>"
        t.appendLogLine(logContext(), escape: escape, to: &line)
        XCTAssertTrue(line.hasPrefix("<190>"))
        return String(line.dropFirst(5))
    }

    func testLogLineDefaultEscaping() {
        let t = template("$remote_addr \"$http_user_agent\" \"$http_referer\" $args \"$uri\"")
        XCTAssertEqual(logLine(t, escape: .default),
                       "192.0.2.7 \"Mo\\x22z\\x5Cilla\\x7F\\xC3\\xA9\\x0A\\x01\" \"\" - \"/index.html\"",
                       "quote, backslash, DEL, control and non-ASCII bytes as \\xHH; a missing value as -; literals as they are")
    }

    func testLogLineJSONEscaping() {
        let t = template("{\"ua\":\"$http_user_agent\",\"args\":\"$args\"}")
        XCTAssertEqual(logLine(t, escape: .json),
                       "{\"ua\":\"Mo\\\"z\\\\illa\u{7f}é\\n\\u0001\",\"args\":\"\"}", "JSON escapes; a missing value is empty")
    }

    func testLogLineWithoutEscaping() {
        let t = template("$http_user_agent|$args|$http_referer")
        // As nginx's escape=none: a variable without a value writes nothing (the default escaping writes "-").
        XCTAssertEqual(logLine(t, escape: .none), "Mo\"z\\illa\u{7f}é\n\u{1}||")
    }

    func testLogEscapeOfCleanTextIsTheText() {
        XCTAssertEqual(LogEscape.escaped("GET /a?b=c HTTP/1.1"), "GET /a?b=c HTTP/1.1")
        XCTAssertEqual(LogEscape.escaped("\u{1f}~"), "\\x1F~")
        XCTAssertEqual(LogEscape(rawValue: "json"), .json)
        XCTAssertEqual(LogEscape(rawValue: "default"), .default)
        XCTAssertEqual(LogEscape(rawValue: "none"), LogEscape.none)
    }
}

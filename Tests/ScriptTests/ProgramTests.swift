import Foundation
import XCTest
@testable import Config
@testable import Script
#if canImport(Glibc)
import Glibc
#endif

/// nginx's rewrite module as compiled programs: `set`, `if` and its conditions, `rewrite` and its flags
/// and argument handling, `return`, `break`, and the `if` block selection.
final class ProgramTests: XCTestCase {

    // MARK: programs built directly

    func testAnEmptyProgramRunsThrough() {
        let p = Program()
        XCTAssertTrue(p.isEmpty)
        XCTAssertEqual(p.run(TestContext()), .next)
    }

    func testInstructionsBuiltByHand() throws {
        let table = VariableTable()
        let v = table.declare("v")
        let p = Program()
        p.append(.set(v, template("got-$uri", table)))
        let at = p.count
        p.append(.unless(.equals(template("$v", table), template("got-/a"), negate: false), -1))
        p.append(.select(0))
        p.append(.return(200, template("matched $v", table)))
        p.patchJump(at: at)
        p.append(.return(404, nil))
        XCTAssertEqual(p.count, 5)

        let a = TestContext(uri: "/a", table: table)
        XCTAssertEqual(p.run(a), .respond(200, "matched got-/a"))
        XCTAssertEqual(a.selected, [0])
        let b = TestContext(uri: "/b", table: table)
        XCTAssertEqual(p.run(b), .respond(404, nil), "the jump skips the block")
        XCTAssertEqual(b.selected, [])
        XCTAssertEqual(b.user("v"), "got-/b")
    }

    // MARK: set, return, break

    func testSetAndReturn() throws {
        let s = try load(location: "set $greeting \"hello $arg_name\";\nset $copy $greeting;\nreturn 200 \"$copy from $uri\";")
        let (outcome, ctx) = s.run(uri: "/hi") { $0.set(.arg("name"), "bob") }
        XCTAssertEqual(outcome, .respond(200, "hello bob from /hi"))
        XCTAssertEqual(ctx.user("greeting"), "hello bob")
    }

    func testReturnForms() throws {
        XCTAssertEqual(try load(location: "return 403;").run(uri: "/").0, .respond(403, nil))
        XCTAssertEqual(try load(location: "return 301 /moved$uri;").run(uri: "/x").0, .respond(301, "/moved/x"))
        XCTAssertEqual(try load(location: "return http://example.com$uri;").run(uri: "/y").0, .respond(302, "http://example.com/y"),
                       "a URL alone is a 302")
        XCTAssertEqual(try load(location: "return 444;").run(uri: "/").0, .respond(444, nil))
    }

    func testNothingRunsAfterReturnOrBreak() throws {
        let r = try load(location: "set $a 1;\nreturn 204;\nset $a 2;")
        let (o1, c1) = r.run(uri: "/")
        XCTAssertEqual(o1, .respond(204, nil))
        XCTAssertEqual(c1.user("a"), "1")

        let b = try load(location: "set $a 1;\nbreak;\nset $a 2;\nreturn 500;")
        let (o2, c2) = b.run(uri: "/")
        XCTAssertEqual(o2, .stop)
        XCTAssertEqual(c2.user("a"), "1")
    }

    // MARK: if

    func testIfVariableIsFalseForEmptyAndZero() throws {
        let s = try load(location: "if ($arg_debug) { return 418; }\nreturn 200;")
        XCTAssertEqual(s.run(uri: "/").0, .respond(200, nil), "missing")
        XCTAssertEqual(s.run(uri: "/") { $0.set(.arg("debug"), "") }.0, .respond(200, nil), "empty")
        XCTAssertEqual(s.run(uri: "/") { $0.set(.arg("debug"), "0") }.0, .respond(200, nil), "\"0\"")
        XCTAssertEqual(s.run(uri: "/") { $0.set(.arg("debug"), "00") }.0, .respond(418, nil), "only \"0\" itself is false")
        XCTAssertEqual(s.run(uri: "/") { $0.set(.arg("debug"), "1") }.0, .respond(418, nil))
    }

    func testIfEqualsAndNotEquals() throws {
        let s = try load(location: "if ($request_method = POST) { return 405; }\nif ($host != example.com) { return 421; }\nreturn 200;")
        func run(_ method: String, _ host: String) -> Program.Outcome {
            s.run(uri: "/") { $0.set(.requestMethod, method); $0.set(.host, host) }.0
        }
        XCTAssertEqual(run("POST", "example.com"), .respond(405, nil))
        XCTAssertEqual(run("GET", "other.org"), .respond(421, nil))
        XCTAssertEqual(run("GET", "example.com"), .respond(200, nil))
        XCTAssertEqual(run("post", "example.com"), .respond(200, nil), "= compares exactly")
    }

    func testIfRegexTakesItsGroups() throws {
        let s = try load(location: "if ($uri ~ ^/img/(\\w+)\\.png$) { return 200 \"image $1\"; }\nreturn 404;")
        XCTAssertEqual(s.run(uri: "/img/cat.png").0, .respond(200, "image cat"))
        XCTAssertEqual(s.run(uri: "/img/CAT.PNG").0, .respond(404, nil), "~ is case-sensitive")
        XCTAssertEqual(s.run(uri: "/img/cat.gif").0, .respond(404, nil))
    }

    func testIfCaselessRegex() throws {
        let s = try load(location: "if ($http_user_agent ~* (msie|trident)) { return 403 $1; }\nreturn 200;")
        XCTAssertEqual(s.run(uri: "/") { $0.set(.httpHeader("user-agent"), "Mozilla (MSIE 6)") }.0, .respond(403, "MSIE"))
        XCTAssertEqual(s.run(uri: "/") { $0.set(.httpHeader("user-agent"), "curl") }.0, .respond(200, nil))
    }

    func testIfNegatedRegexHoldsWhenItDoesNotMatchAndTakesNoGroups() throws {
        let s = try load(location: "if ($uri !~ ^/(public)/) { return 403 \"[$1]\"; }\nif ($uri !~* ^/PUBLIC/) { return 500; }\nreturn 200;")
        let (denied, ctx) = s.run(uri: "/private/x")
        XCTAssertEqual(denied, .respond(403, "[]"), "a negated match sets no $1")
        XCTAssertNil(ctx.captures)
        XCTAssertEqual(s.run(uri: "/public/x").0, .respond(200, nil))
    }

    func testNamedGroupInAConditionSetsItsVariable() throws {
        let s = try load(location: "if ($uri ~ ^/u/(?<user>[a-z]+)) { return 200 \"user=$user\"; }\nreturn 404;")
        let (o, ctx) = s.run(uri: "/u/alice/photos")
        XCTAssertEqual(o, .respond(200, "user=alice"))
        XCTAssertEqual(ctx.user("user"), "alice")
    }

    func testFileTestsOnRealFiles() throws {
        let dir = try temporaryDirectory(self)
        let plain = dir + "/plain.txt", exe = dir + "/run.sh", sub = dir + "/sub", shut = dir + "/shut", missing = dir + "/missing"
        XCTAssertTrue(FileManager.default.createFile(atPath: plain, contents: Data("x".utf8)))
        XCTAssertTrue(FileManager.default.createFile(atPath: exe, contents: Data("#!/bin/sh\n".utf8)))
        XCTAssertEqual(chmod(exe, 0o755), 0)
        XCTAssertEqual(chmod(plain, 0o644), 0)
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: shut, withIntermediateDirectories: false)
        XCTAssertEqual(chmod(sub, 0o755), 0)
        XCTAssertEqual(chmod(shut, 0o644), 0)

        let s = try load(location: """
            set $r "";
            if (-f $arg_p) { set $r "${r}f"; }
            if (-d $arg_p) { set $r "${r}d"; }
            if (-e $arg_p) { set $r "${r}e"; }
            if (-x $arg_p) { set $r "${r}x"; }
            if (!-f $arg_p) { set $r "${r}F"; }
            if (!-d $arg_p) { set $r "${r}D"; }
            if (!-e $arg_p) { set $r "${r}E"; }
            if (!-x $arg_p) { set $r "${r}X"; }
            return 200 $r;
            """)
        func tests(_ path: String) -> Program.Outcome { s.run(uri: "/") { $0.set(.arg("p"), path) }.0 }
        XCTAssertEqual(tests(plain), .respond(200, "feDX"), "a regular file, not executable")
        XCTAssertEqual(tests(exe), .respond(200, "fexD"), "an executable file")
        XCTAssertEqual(tests(sub), .respond(200, "dexF"), "-x is the owner's execute bit, a directory's too (nginx's ngx_is_exec)")
        XCTAssertEqual(tests(shut), .respond(200, "deFX"), "a directory without it")
        XCTAssertEqual(tests(missing), .respond(200, "FDEX"), "nothing there")
    }

    func testIfBlocksSelectTheirConfiguration() throws {
        let s = try load(location: "if ($arg_a) { set $x a; }\nif ($arg_b) { set $x b; }\nreturn 200 $x;")
        XCTAssertEqual(s.location.ifBlocks.count, 2)
        let (o1, c1) = s.run(uri: "/") { $0.set(.arg("b"), "1") }
        XCTAssertEqual(o1, .respond(200, "b"))
        XCTAssertEqual(c1.selected, [1], "only the block whose condition held")
        let (_, c2) = s.run(uri: "/") { $0.set(.arg("a"), "1"); $0.set(.arg("b"), "1") }
        XCTAssertEqual(c2.selected, [0, 1], "each block that held, in order")
        let (o3, c3) = s.run(uri: "/")
        XCTAssertEqual(o3, .respond(200, ""))
        XCTAssertEqual(c3.selected, [])
    }

    func testServerLevelIfSelectsNothing() throws {
        let conf = try Configuration.parse(text: "events {}\nhttp {\naccess_log off;\nserver {\nlisten 127.0.0.1:8080;\n"
                                           + "if ($arg_x) { return 410; }\nlocation / {}\n}\n}\n")
        let server = conf.http!.servers[0]
        let ctx = TestContext(uri: "/", table: conf.http!.variables)
        ctx.set(.arg("x"), "1")
        XCTAssertEqual(server.script.run(ctx), .respond(410, nil))
        XCTAssertEqual(ctx.selected, [], "a server's if block is not a location")
    }

    // MARK: rewrite

    func testRewriteLast() throws {
        let s = try load(location: "rewrite ^/old/(.*)$ /new/$1 last;\nreturn 500;")
        let (o, ctx) = s.run(uri: "/old/page", args: "a=1")
        XCTAssertEqual(o, .last)
        XCTAssertEqual(ctx.uri, "/new/page")
        XCTAssertEqual(ctx.args, "a=1", "the arguments are kept")
        XCTAssertEqual(s.run(uri: "/other").0, .respond(500, nil), "no match: the next directive runs")
    }

    func testRewriteBreak() throws {
        let s = try load(location: "rewrite ^/a$ /b break;\nreturn 500;")
        let (o, ctx) = s.run(uri: "/a")
        XCTAssertEqual(o, .stop)
        XCTAssertEqual(ctx.uri, "/b")
    }

    func testRewriteWithoutFlagGoesOn() throws {
        let s = try load(location: "rewrite ^/a/(.*)$ /b/$1;\nrewrite ^/b/(.*)$ /c/$1;\nset $seen $uri;")
        let (o, ctx) = s.run(uri: "/a/x")
        XCTAssertEqual(o, .next, "the location is looked for again by the caller")
        XCTAssertEqual(ctx.uri, "/c/x", "each rewrite sees the previous one's URI")
        XCTAssertEqual(ctx.user("seen"), "/c/x")
    }

    func testRewriteRedirectAndPermanent() throws {
        let r = try load(location: "rewrite ^/a/(.*)$ /b/$1 redirect;")
        let (o, ctx) = r.run(uri: "/a/x", args: "q=1")
        XCTAssertEqual(o, .respond(302, "/b/x?q=1"), "the arguments go with the redirect")
        XCTAssertEqual(ctx.uri, "/a/x", "a redirect leaves the URI alone")
        let p = try load(location: "rewrite ^/a/(.*)$ /b/$1 permanent;")
        XCTAssertEqual(p.run(uri: "/a/x").0, .respond(301, "/b/x"))
    }

    func testAReplacementThatIsAURLRedirects() throws {
        let s = try load(location: "rewrite ^/go/(.*)$ http://example.com/$1;\nreturn 500;")
        XCTAssertEqual(s.run(uri: "/go/there", args: "x=1").0, .respond(302, "http://example.com/there?x=1"))
        let tls = try load(location: "rewrite ^ https://secure.example.com$uri permanent;")
        XCTAssertEqual(tls.run(uri: "/p").0, .respond(301, "https://secure.example.com/p"))
        let scheme = try load(location: "rewrite ^ $scheme://example.com$uri last;")
        XCTAssertEqual(scheme.run(uri: "/p") { $0.set(.scheme, "http") }.0, .respond(302, "http://example.com/p"),
                       "a replacement starting with $scheme is a URL, whatever the flag")
    }

    func testArgumentsInTheReplacement() throws {
        let added = try load(location: "rewrite ^/s/(.*)$ /search?q=$1 last;")
        let (o1, c1) = added.run(uri: "/s/cats", args: "page=2")
        XCTAssertEqual(o1, .last)
        XCTAssertEqual(c1.uri, "/search")
        XCTAssertEqual(c1.args, "q=cats&page=2", "the old arguments are appended")
        let (_, c1b) = added.run(uri: "/s/cats")
        XCTAssertEqual(c1b.args, "q=cats")

        let replaced = try load(location: "rewrite ^/s/(.*)$ /search?q=$1? last;")
        let (_, c2) = replaced.run(uri: "/s/cats", args: "page=2")
        XCTAssertEqual(c2.uri, "/search")
        XCTAssertEqual(c2.args, "q=cats", "a trailing ? drops the old arguments")

        let dropped = try load(location: "rewrite ^/s/(.*)$ /search/$1? last;")
        let (_, c3) = dropped.run(uri: "/s/cats", args: "page=2")
        XCTAssertEqual(c3.uri, "/search/cats")
        XCTAssertNil(c3.args, "a lone trailing ? leaves no arguments")

        let redirect = try load(location: "rewrite ^/s/(.*)$ /search?q=$1 redirect;")
        XCTAssertEqual(redirect.run(uri: "/s/cats", args: "page=2").0, .respond(302, "/search?q=cats&page=2"))
        let redirectDropped = try load(location: "rewrite ^/s/(.*)$ /search/$1? permanent;")
        XCTAssertEqual(redirectDropped.run(uri: "/s/cats", args: "page=2").0, .respond(301, "/search/cats"))
    }

    func testNamedGroupInARewrite() throws {
        let s = try load(location: "rewrite ^/p/(?<slug>[a-z-]+)$ /post.php?slug=$slug last;")
        let (o, ctx) = s.run(uri: "/p/hello-world")
        XCTAssertEqual(o, .last)
        XCTAssertEqual(ctx.uri, "/post.php")
        XCTAssertEqual(ctx.args, "slug=hello-world")
        XCTAssertEqual(ctx.user("slug"), "hello-world")
    }

    func testRewriteInsideAnIfBlock() throws {
        let s = try load(location: "if ($arg_legacy) {\nrewrite ^/(.*)$ /legacy/$1 break;\n}\nreturn 200 $uri;")
        let (o1, c1) = s.run(uri: "/x") { $0.set(.arg("legacy"), "1") }
        XCTAssertEqual(o1, .stop)
        XCTAssertEqual(c1.uri, "/legacy/x")
        XCTAssertEqual(c1.selected, [0])
        XCTAssertEqual(s.run(uri: "/x").0, .respond(200, "/x"))
    }
}

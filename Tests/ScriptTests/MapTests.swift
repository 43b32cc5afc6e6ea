import XCTest
@testable import Config
@testable import Script

/// `map`: exact keys (case-insensitive), `hostnames` wildcards, regexes in order with their groups,
/// `default`, volatile maps, conflicting keys.
final class MapTests: XCTestCase {
    /// A configuration with `maps` at http level whose location returns `$result`.
    private func load(maps: String, result: String) throws -> LoadedScript {
        try ScriptTests.load(location: "return 200 \"\(result)\";", http: maps)
    }

    func testExactKeysAreCaseInsensitiveAndDefaultTakesTheRest() throws {
        let s = try load(maps: """
            map $http_host $site {
                default        fallback;
                example.com    main;
                Shop.Example.COM shop;
                \\default      literal-default;
            }
            """, result: "$site")
        func site(_ host: String) -> Program.Outcome { s.run(uri: "/") { $0.set(.httpHeader("host"), host) }.0 }
        XCTAssertEqual(site("example.com"), .respond(200, "main"))
        XCTAssertEqual(site("EXAMPLE.com"), .respond(200, "main"), "the value is compared case-insensitively")
        XCTAssertEqual(site("shop.example.com"), .respond(200, "shop"), "and so are the keys")
        XCTAssertEqual(site("default"), .respond(200, "literal-default"), "\\default is a plain key")
        XCTAssertEqual(site("other.org"), .respond(200, "fallback"))
        XCTAssertEqual(site(""), .respond(200, "fallback"))
    }

    func testWithoutDefaultTheValueIsEmpty() throws {
        let s = try load(maps: "map $uri $m { /a A; }", result: "[$m]")
        XCTAssertEqual(s.run(uri: "/a").0, .respond(200, "[A]"))
        XCTAssertEqual(s.run(uri: "/b").0, .respond(200, "[]"))
    }

    func testRegexKeysInOrderWithTheirGroups() throws {
        let s = try load(maps: """
            map $uri $kind {
                default                       other;
                /exact.png                    exact-first;
                ~^/api/(?<ver>v[0-9]+)/        api-$ver;
                ~*\\.(PNG|jpe?g)$              image-$1;
                ~^/api/                       never;
            }
            """, result: "$kind")
        XCTAssertEqual(s.run(uri: "/api/v2/users").0, .respond(200, "api-v2"), "a named group is usable in the value")
        XCTAssertEqual(s.run(uri: "/pics/a.png").0, .respond(200, "image-png"), "~* is caseless; $1 is its group")
        XCTAssertEqual(s.run(uri: "/pics/a.JPEG").0, .respond(200, "image-JPEG"))
        XCTAssertEqual(s.run(uri: "/exact.png").0, .respond(200, "exact-first"), "exact keys before regexes")
        XCTAssertEqual(s.run(uri: "/api/x").0, .respond(200, "never"), "the first regex that matches wins")
        XCTAssertEqual(s.run(uri: "/index.html").0, .respond(200, "other"))
    }

    func testValueIsKeptForTheRequestUnlessVolatile() throws {
        let s = try load(maps: "map $arg_v $kept { default $arg_v; }\nmap $arg_v $fresh { volatile; default $arg_v; }",
                         result: "$kept/$fresh")
        let ctx = s.context(uri: "/")
        ctx.set(.arg("v"), "one")
        XCTAssertEqual(ctx.user("kept"), "one")
        XCTAssertEqual(ctx.user("fresh"), "one")
        ctx.builtins.removeAll()
        ctx.set(.arg("v"), "two")
        XCTAssertEqual(ctx.user("kept"), "one", "evaluated once per request")
        XCTAssertEqual(ctx.user("fresh"), "two", "volatile: evaluated at every read")
        let i = s.table.index(of: "fresh")!
        XCTAssertTrue(s.table.maps[i]!.volatile)
    }

    func testHostnamesWildcards() throws {
        let s = try load(maps: """
            map $http_host $zone {
                hostnames;
                default            none;
                example.com        exact;
                *.example.com      star;
                .example.org       dot;
                www.example.*      tail;
            }
            """, result: "$zone")
        func zone(_ host: String) -> Program.Outcome { s.run(uri: "/") { $0.set(.httpHeader("host"), host) }.0 }
        XCTAssertEqual(zone("example.com"), .respond(200, "exact"))
        XCTAssertEqual(zone("a.example.com"), .respond(200, "star"))
        XCTAssertEqual(zone("a.b.example.com"), .respond(200, "star"))
        XCTAssertEqual(zone("A.Example.COM"), .respond(200, "star"), "wildcards compare lowercased")
        XCTAssertEqual(zone("example.org"), .respond(200, "dot"), ".example.org matches the name itself")
        XCTAssertEqual(zone("x.example.org"), .respond(200, "dot"))
        XCTAssertEqual(zone("www.example.net"), .respond(200, "tail"))
        XCTAssertEqual(zone("example.com."), .respond(200, "exact"), "a trailing dot is dropped")
        XCTAssertEqual(zone("notexample.com"), .respond(200, "none"))
    }

    func testWithoutHostnamesWildcardsAreExactKeys() throws {
        let s = try load(maps: "map $http_host $m { default no; *.example.com yes; }", result: "$m")
        XCTAssertEqual(s.run(uri: "/") { $0.set(.httpHeader("host"), "a.example.com") }.0, .respond(200, "no"))
        XCTAssertEqual(s.run(uri: "/") { $0.set(.httpHeader("host"), "*.example.com") }.0, .respond(200, "yes"))
    }

    func testWildcardMatching() {
        var w = WildcardNames<String>()
        for name in ["*.example.com", ".dot.example.com", "www.example.*", "www.*", ".example.org"] { w.add(name, name) }
        XCTAssertEqual(w.find("a.example.com"), "*.example.com")
        XCTAssertNil(w.find("example.com"), "*.example.com is not example.com")
        XCTAssertEqual(w.find("x.y.example.org"), ".example.org")
        XCTAssertNil(w.find("example.org"), "the exact half of .example.org is the caller's")
        XCTAssertNil(w.find("badexample.org"))
        XCTAssertEqual(w.find("www.dot.example.com"), ".dot.example.com", "the longest leading wildcard, not the first")
        XCTAssertEqual(w.find("www.example.de"), "www.example.*", "the longest trailing wildcard")
        XCTAssertEqual(w.find("www.a.example.com"), "*.example.com", "leading before trailing")
        XCTAssertNil(w.find("ww.example.de"))
        XCTAssertFalse(WildcardNames<String>.isWildcard("example.com"))
    }

    /// map.t's special wildcard: `.dot.example.com` is dot.example.com itself and beats the shorter `*.example.com`.
    func testSpecialWildcardBeatsAShorterOne() throws {
        let s = try load(maps: """
            map $http_host $zone {
                hostnames;
                default            none;
                *.example.com      star;
                .dot.example.com   dot;
            }
            """, result: "$zone")
        func zone(_ host: String) -> Program.Outcome { s.run(uri: "/") { $0.set(.httpHeader("host"), host) }.0 }
        XCTAssertEqual(zone("dot.example.com"), .respond(200, "dot"))
        XCTAssertEqual(zone("www.dot.example.com"), .respond(200, "dot"))
        XCTAssertEqual(zone("www.example.com"), .respond(200, "star"))
    }

    func testMapBuiltDirectly() throws {
        let map = Map(source: template("$uri"))
        try map.add(key: "/A", value: template("upper"))
        try map.add(key: "/a", value: template("upper"))   // the same pair again is ignored
        XCTAssertThrowsError(try map.add(key: "/A", value: template("other"))) { e in
            XCTAssertEqual(e as? Map.AddError, .conflicting)
        }
        XCTAssertEqual(map.exact.count, 1)
        map.add(regex: try Regex("^/r/(.+)$"), value: template("r:$1"))
        map.defaultValue = template("def")
        XCTAssertEqual(map.evaluate(TestContext(uri: "/a")), "upper")
        let ctx = TestContext(uri: "/r/zz")
        XCTAssertEqual(map.evaluate(ctx), "r:zz")
        XCTAssertEqual(ctx.captures?.group(1), "zz", "the match's groups become the request's")
        XCTAssertEqual(map.evaluate(TestContext(uri: "/none")), "def")
    }

    func testConflictingKeysAreAConfigurationError() {
        XCTAssertThrowsError(try Configuration.parse(text: "events {}\nhttp {\nmap $uri $m { /a 1; /A 2; }\n}\n")) { e in
            XCTAssertTrue("\(e)".contains("conflicting parameter \"/A\""), "\(e)")
        }
        XCTAssertThrowsError(try Configuration.parse(text: "events {}\nhttp {\nmap $uri $m { default 1; default 2; }\n}\n")) { e in
            XCTAssertTrue("\(e)".contains("duplicate default map parameter"), "\(e)")
        }
    }
}

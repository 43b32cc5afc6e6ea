import XCTest
@testable import Config

/// `server NAME resolve`, and `resolver`/`resolver_timeout` inside `upstream` (nginx 1.27.3): the name is not
/// looked up at load, and nginx's errors when the upstream has no `zone` or no resolver anywhere.
final class ResolveDirectiveTests: XCTestCase {
    func upstream(_ body: String, http: String = "") -> String {
        inHTTP("upstream u {\n" + body + "\n}\n" + http)
    }

    func testResolveNeedsAZoneAndAResolver() {
        XCTAssertEqual(expectError(upstream("server backend.invalid resolve;"))?.message,
                       #"resolving names at run time requires upstream "u" in /conf/vigil.conf:3 to be in shared memory"#)
        XCTAssertEqual(expectError(upstream("zone u 64k; server backend.invalid resolve;"))?.message,
                       #"no resolver defined to resolve names at run time in upstream "u" in /conf/vigil.conf:3"#)
    }

    func testNamesAreResolvedWhileRunningWithTheUpstreamsOrTheHTTPResolver() throws {
        let own = try XCTUnwrap(assertLoads(upstream("""
            zone u 64k;
            resolver 127.0.0.1:5353 valid=5s;
            resolver_timeout 2s;
            server backend.invalid:8080 resolve weight=3 backup;
            server 127.0.0.1:9000 resolve;
            """)))
        let u = try XCTUnwrap(own.http?.upstream(named: "u"))
        XCTAssertEqual(u.servers[0].addresses, [], "not looked up at load")
        XCTAssertEqual(u.servers[0].resolve?.host, "backend.invalid")
        XCTAssertEqual(u.servers[0].resolve?.port, 8080)
        XCTAssertEqual(u.servers[0].weight, 3)
        XCTAssertTrue(u.servers[0].backup)
        XCTAssertNil(u.servers[1].resolve, "a numeric address needs no resolving")
        XCTAssertEqual(u.servers[1].addresses.map { $0.description }, ["127.0.0.1:9000"])
        XCTAssertEqual(u.resolver?.validMs, 5000)
        XCTAssertEqual(u.resolverTimeout, 2000)
        XCTAssertEqual(own.resolvingUpstreams.map { $0.name }, ["u"])

        let inherited = try XCTUnwrap(assertLoads(upstream("zone u 64k; server backend.invalid resolve;",
                                                            http: "resolver 127.0.0.2; resolver_timeout 7s;")))
        XCTAssertEqual(inherited.http?.upstream(named: "u")?.resolver?.servers.map { $0.description }, ["127.0.0.2:53"])
        XCTAssertEqual(inherited.http?.upstream(named: "u")?.resolverTimeout, 7000)
        XCTAssertEqual(inherited.http?.upstream(named: "u")?.servers[0].resolve?.port, 80)
    }

    func testUpstreamResolverDirectives() {
        assertError(upstream("resolver 127.0.0.1; resolver 127.0.0.2; server 127.0.0.1:1;"), #""resolver" directive is duplicate"#, line: 4)
        assertError(upstream("resolver_timeout 1s; resolver_timeout 2s; server 127.0.0.1:1;"), #""resolver_timeout" directive is duplicate"#, line: 4)
        assertError(upstream("resolver_timeout 1x; server 127.0.0.1:1;"), #""resolver_timeout" directive invalid value"#, line: 4)
        // SRV (`service=`) is not there yet: refused as nginx built without it refuses it.
        assertError(upstream("zone u 64k; resolver 127.0.0.1; server backend.invalid service=http resolve;"),
                    #"invalid parameter "service=http""#, line: 4)
    }
}

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
    }

    /// `service=` as nginx 1.27.3 reads it: a plain name is RFC 2782's `_NAME._tcp.`, one with a dot is used as
    /// given; the server needs `resolve`, a domain name and no port.
    func testServiceNames() throws {
        let conf = try XCTUnwrap(assertLoads(upstream("zone u 64k; resolver 127.0.0.1;\n"
            + "server backend.invalid service=http resolve;\n"
            + "server example.invalid service=server1.backend resolve backup;")))
        let servers = try XCTUnwrap(conf.http?.upstream(named: "u")?.servers)
        XCTAssertEqual(servers.map { $0.service }, ["_http._tcp.backend.invalid", "server1.backend.example.invalid"])
        XCTAssertEqual(servers.map { $0.resolve?.host }, ["backend.invalid", "example.invalid"])
        let head = "zone u 64k; resolver 127.0.0.1;\n"
        assertError(upstream(head + "server backend.invalid service=http;"), #"service upstream "backend.invalid" requires "resolve" parameter"#, line: 5)
        assertError(upstream(head + "server backend.invalid:80 service=http resolve;"), #"service upstream "backend.invalid:80" may not have port"#, line: 5)
        assertError(upstream(head + "server 127.0.0.1 service=http resolve;"), #"service upstream "127.0.0.1" requires domain name"#, line: 5)
        assertError(upstream(head + "server backend.invalid service= resolve;"), "service is empty", line: 5)
    }
}

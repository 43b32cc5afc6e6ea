import XCTest
@testable import Config

/// `zone` and `random` in upstream blocks: nginx 1.22's errors (ngx_http_upstream_zone_module.c,
/// ngx_shared_memory_add, ngx_http_upstream_random_module.c) and how the zone area numbers the peers.
final class ZoneAndRandomTests: XCTestCase {
    func testZoneArguments() {
        assertError(inUpstream("zone u 1x;"), #"invalid zone size "1x""#, line: 5)
        assertError(inUpstream("zone u 32767;"), #"zone "u" is too small"#, line: 5)
        assertError(inUpstream(#"zone "" 64k;"#), #"invalid zone name """#, line: 5)
        assertError(inUpstream("zone u 64k 1;"), #"invalid number of arguments in "zone" directive"#, line: 5)
        assertError(inHTTP("zone u 64k;"), #""zone" directive is not allowed here"#, line: 3)
        XCTAssertNotNil(assertLoads(inUpstream("zone u 32k;")), "eight pages is the least")
    }

    func testSharedZoneNamesAndSizes() throws {
        assertError(inHTTP("""
            upstream a { zone z 64k; server 127.0.0.1:1; }
            upstream b { zone z 1m; server 127.0.0.1:2; }
            """), #"the size 1048576 of shared memory zone "z" conflicts with already declared size 65536"#, line: 4)
        assertError(inHTTP("""
            ssl_session_cache shared:z:1m;
            upstream a { zone z 1m; server 127.0.0.1:1; }
            """), #"the shared memory zone "z" is already declared for a different use"#, line: 4)
        assertError(inHTTP("""
            upstream a { zone z 1m; server 127.0.0.1:1; }
            server { listen 127.0.0.1:8443; ssl_session_cache shared:z:1m; }
            """), #"the shared memory zone "z" is already declared for a different use"#, line: 4)
        // A zone without a size takes the size another upstream gives it, before or after.
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            upstream a { zone z; server 127.0.0.1:1; server 127.0.0.1:2 backup; }
            upstream plain { server 127.0.0.1:3; }
            upstream b { zone z 64k; server 127.0.0.1:4 down; }
            upstream c { zone y; server 127.0.0.1:5; }
            """)))
        XCTAssertEqual(conf.upstreamZones.map(\.name), ["z", "y"])
        XCTAssertEqual(conf.upstreamZones.map(\.size), [65536, 0], "y has no size: the segment plan refuses it")
        XCTAssertEqual(conf.upstreamZones.map(\.peers), [3, 1])
        XCTAssertEqual(conf.upstreamZones[0].location, SourceLocation(file: confPath, line: 5), "where the size was given")
        // Records follow the upstreams in order, a record per address of every server, backup and down ones too.
        let records = ["a", "plain", "b", "c"].map { conf.http?.upstream(named: $0)?.zoneRecord }
        XCTAssertEqual(records, [0, nil, 2, 3])
        XCTAssertEqual(conf.zonedPeerCount, 4)
    }

    func testRandomArguments() throws {
        for (line, method) in [("random;", Balancer.random(two: false)), ("random two;", .random(two: true)),
                               ("random two least_conn;", .random(two: true))] {
            let conf = try XCTUnwrap(assertLoads(inUpstream(line)))
            XCTAssertEqual(conf.http?.upstream(named: "u")?.balancer, method, line)
        }
        assertError(inUpstream("random one;"), #"invalid parameter "one""#, line: 5)
        assertError(inUpstream("random two least_time;"), #"invalid parameter "least_time""#, line: 5)
        assertError(inUpstream("random two least_conn x;"), #"invalid number of arguments in "random" directive"#, line: 5)
        assertError(inUpstream("random;\nserver 127.0.0.1:2 backup;"), #"balancing method does not support parameter "backup""#, line: 6)
        let redefined = try XCTUnwrap(assertLoads(inUpstream("least_conn;\nrandom;")))
        XCTAssertEqual(redefined.warnings.map(\.message), ["load balancing method redefined"])
    }
}

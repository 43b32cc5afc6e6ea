import XCTest
@testable import Config

/// nginx-upsync-module's directives as its README writes them, for the etcd source.
final class UpsyncDirectiveTests: XCTestCase {
    func testReadsUpsyncsEtcdForm() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            upstream test {
                server 127.0.0.1:11111;
                upsync 127.0.0.1:2379/v2/keys/upstreams/test upsync_timeout=6m upsync_interval=500ms upsync_type=etcd strong_dependency=off;
                upsync_dump_path /usr/local/nginx/conf/servers/servers_test.conf;
                upsync_lb least_conn;
            }
            upstream other {
                upsync_dump_path servers/other.conf;
                upsync localhost:23790/services/other/ upsync_type=etcd strong_dependency=on;
                server 127.0.0.1:11112;
            }
            upstream plain { server 127.0.0.1:3; }
            """)))
        let test = try XCTUnwrap(conf.http?.upstream(named: "test")?.upsync)
        XCTAssertEqual(test.address.description, "127.0.0.1:2379")
        XCTAssertEqual(test.authority, "127.0.0.1:2379")
        XCTAssertEqual(test.prefix, "/upstreams/test/", "upsync's v2 path names the same keys")
        XCTAssertEqual([test.intervalMs, test.timeoutMs], [500, 360_000])
        XCTAssertFalse(test.strongDependency)
        XCTAssertEqual(test.dumpPath, "/usr/local/nginx/conf/servers/servers_test.conf")
        let other = try XCTUnwrap(conf.http?.upstream(named: "other")?.upsync)
        XCTAssertEqual(other.prefix, "/services/other/")
        XCTAssertEqual([other.intervalMs, other.timeoutMs], [5000, 360_000], "upsync's defaults")
        XCTAssertTrue(other.strongDependency)
        XCTAssertTrue(other.dumpPath.hasSuffix("/servers/other.conf") && other.dumpPath.hasPrefix("/"), other.dumpPath)
        XCTAssertNil(conf.http?.upstream(named: "plain")?.upsync)
        let defaulted = try XCTUnwrap(assertLoads(inUpstream("upsync 127.0.0.1:2379/u/x upsync_type=etcd;")))
        XCTAssertEqual(defaulted.http?.upstreams.first?.upsync?.dumpPath, "/tmp/servers_u.conf")
    }

    func testNginxStyleErrors() {
        assertError(inUpstream("upsync 127.0.0.1:8500/v1/kv/upstreams/u;"),
                    "upsync_type=consul is not supported by vigil, which reads etcd only (upsync_type=etcd)", line: 5)
        assertError(inUpstream("upsync 127.0.0.1:8500/v1/health/service/u upsync_type=consul_health;"),
                    "upsync_type=consul_health is not supported by vigil, which reads etcd only (upsync_type=etcd)", line: 5)
        assertError(inUpstream("upsync 127.0.0.1/u upsync_type=etcd;"), #"invalid upsync address "127.0.0.1/u": no port"#, line: 5)
        assertError(inUpstream("upsync 127.0.0.1:2379 upsync_type=etcd;"), #"invalid upsync address "127.0.0.1:2379": no key prefix"#, line: 5)
        assertError(inUpstream("upsync 127.0.0.1:2379/u upsync_type=etcd upsync_interval=soon;"), #"invalid upsync_interval "soon""#, line: 5)
        assertError(inUpstream("upsync 127.0.0.1:2379/u upsync_type=etcd strong_dependency=yes;"), #"invalid strong_dependency "yes""#, line: 5)
        assertError(inUpstream("upsync 127.0.0.1:2379/u upsync_type=etcd weight=2;"), #"invalid parameter "weight=2""#, line: 5)
        assertError(inUpstream("upsync 127.0.0.1:2379/u upsync_type=etcd; upsync 127.0.0.1:2379/v upsync_type=etcd;"),
                    #""upsync" directive is duplicate"#, line: 5)
        assertError(inUpstream("upsync_lb fastest;"), #"invalid parameter "fastest""#, line: 5)
        assertError(inHTTP("upsync 127.0.0.1:2379/u upsync_type=etcd;"), #""upsync" directive is not allowed here"#, line: 3)
    }
}

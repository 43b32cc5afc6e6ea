import Core
import XCTest
@testable import Config

/// limit_req and limit_conn: nginx 1.22's checks in its words, and how the levels merge.
final class LimitDirectiveTests: XCTestCase {
    func testZonesAndRules() throws {
        let conf = try parseConf(inHTTP("""
            limit_req zone=one burst=5;
            limit_req_zone $binary_remote_addr zone=one:10m rate=30r/m;
            limit_req_zone $arg_a$uri zone=two:1m rate=7r/s;
            limit_conn_zone $server_name zone=c:32k;
            limit_req_log_level warn;
            server {
            limit_conn c 10;
            location / { }
            location /own { limit_req zone=two nodelay; limit_req zone=one delay=2 burst=3; limit_req_dry_run on; limit_req_status 429; }
            }
            """))
        let zones = conf.limitZones
        XCTAssertEqual(zones.map(\.name), ["one", "two", "c"])
        XCTAssertEqual(zones.map(\.size), [10 << 20, 1 << 20, 32 << 10])
        XCTAssertEqual(zones.map(\.rate), [500, 7000, 1000])
        XCTAssertEqual(zones.map(\.keyText), ["$binary_remote_addr", "$arg_a$uri", "$server_name"])
        guard case .binaryRemoteAddr = zones[0].key, case .template = zones[1].key else { return XCTFail() }
        let server = try XCTUnwrap(conf.http?.servers.first)
        let inherited = server.locations[0].settings.limits
        XCTAssertEqual(inherited.requests, [LimitReqRule(zone: 0, burst: 5000, delay: 0)])
        XCTAssertEqual(inherited.connections, [LimitConnRule(zone: 2, limit: 10)])
        XCTAssertEqual(inherited.requestStatus, 503)
        XCTAssertEqual(inherited.requestLogLevel, .warn)
        XCTAssertEqual(inherited.delayLogLevel, .notice)
        let own = server.locations[1].settings.limits
        XCTAssertEqual(own.requests, [LimitReqRule(zone: 1, burst: 0, delay: Int.max / 1000 * 1000),
                                      LimitReqRule(zone: 0, burst: 3000, delay: 2000)], "a level's own limits replace its parent's")
        XCTAssertTrue(own.requestDryRun)
        XCTAssertEqual(own.requestStatus, 429)
    }

    func testNginxErrors() {
        assertError(inHTTP("limit_req_zone $binary_remote_addr zone=one rate=1r/s;"), #"invalid zone size "zone=one""#, line: 3)
        assertError(inHTTP("limit_req_zone $binary_remote_addr zone=one:1x rate=1r/s;"), #"invalid zone size "zone=one:1x""#, line: 3)
        assertError(inHTTP("limit_conn_zone $binary_remote_addr zone=one:31k;"), #"zone "zone=one:31k" is too small"#, line: 3)
        assertError(inHTTP("limit_req_zone $binary_remote_addr zone=one:1m rate=0r/s;"), #"invalid rate "rate=0r/s""#, line: 3)
        assertError(inHTTP("limit_req_zone $binary_remote_addr zone=one:1m sync;"), #"invalid parameter "sync""#, line: 3)
        assertError(inHTTP("limit_req_zone $binary_remote_addr rate=1r/s burst=1;"), #"invalid parameter "burst=1""#, line: 3)
        assertError(inHTTP("limit_req_zone $binary_remote_addr rate=1r/s x=1;"), #"invalid parameter "x=1""#, line: 3)
        assertError(inHTTP("limit_conn_zone $binary_remote_addr x;"), #"invalid parameter "x""#, line: 3)
        assertError(inHTTP("limit_req_zone $nope zone=one:1m rate=1r/s;"), #"unknown "nope" variable"#, line: 3)
        assertError(inHTTP("limit_req_zone $uri zone=one:1m rate=1r/s;\nlimit_req_zone $args zone=one:1m rate=2r/s;"),
                    #"limit_req_zone "one" is already bound to key "$uri""#, line: 4)
        assertError(inHTTP("limit_req_zone $uri zone=one:1m rate=1r/s;\nlimit_conn_zone $uri zone=one:1m;"),
                    #"the shared memory zone "one" is already declared for a different use"#, line: 4)
        assertError(inHTTP("limit_req_zone $uri zone=one:1m rate=1r/s;\nlimit_conn one 1;"),
                    #"the shared memory zone "one" is already declared for a different use"#, line: 4)
        assertError(inHTTP("limit_req burst=1;"), #""limit_req" must have "zone" parameter"#, line: 3)
        assertError(inHTTP("limit_req zone=one burst=0;"), #"invalid burst value "burst=0""#, line: 3)
        assertError(inHTTP("limit_req zone=one delay=x;"), #"invalid delay value "delay=x""#, line: 3)
        assertError(inHTTP("limit_req zone=one;\nlimit_req zone=one burst=2;"), #""limit_req" directive is duplicate"#, line: 4)
        assertError(inHTTP("limit_conn one 0;"), #"invalid number of connections "0""#, line: 3)
        assertError(inHTTP("limit_conn one 65536;"), "connection limit must be less 65536", line: 3)
        assertError(inHTTP("limit_req_status 200;"), "value must be between 400 and 599", line: 3)
        assertError(inHTTP("limit_conn_status x;"), #""limit_conn_status" directive invalid number"#, line: 3)
        assertError(inHTTP("limit_req_log_level debug;"), #"invalid value "debug""#, line: 3)
        assertError(inHTTP("limit_conn_dry_run yes;"), #"invalid value "yes" in "limit_conn_dry_run" directive, it must be "on" or "off""#, line: 3)
    }
}

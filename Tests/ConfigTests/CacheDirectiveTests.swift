import Core
import XCTest
@testable import Config

/// The upstream cache's directives: `*_cache_path` as nginx parses it, each module's `*_cache*` under its own
/// prefix, how the levels merge, and nginx's errors in its words.
final class CacheDirectiveTests: XCTestCase {
    func testPathsAndSettings() throws {
        let conf = try parseConf(inHTTP("""
            proxy_cache_path /var/cache/one levels=1:2 keys_zone=one:10m inactive=2h max_size=1g min_free=64k use_temp_path=off;
            fastcgi_cache_path cache/two keys_zone=two:64k manager_files=10 loader_sleep=1s;
            proxy_cache one;
            proxy_cache_valid 200 302 10m;
            proxy_cache_valid 404 1m;
            proxy_ignore_headers Set-Cookie;
            proxy_ignore_headers Expires;
            server {
            location / { proxy_cache_use_stale error updating http_500; proxy_cache_lock on; proxy_cache_methods POST; }
            location /off { proxy_cache off; proxy_cache_valid any 5s; }
            location /php { fastcgi_cache two; fastcgi_cache_key $request_uri; fastcgi_cache_bypass $cookie_nocache $arg_nocache; }
            location /var { proxy_cache $arg_zone; }
            }
            """))
        let zones = conf.cacheZones
        XCTAssertEqual(zones.map(\.name), ["one", "two"])
        XCTAssertEqual(zones.map(\.path), ["/var/cache/one", conf.fullPath("cache/two")])
        XCTAssertEqual(zones.map(\.levels), [[1, 2], []])
        XCTAssertEqual(zones.map(\.size), [10 << 20, 64 << 10])
        XCTAssertEqual(zones.map(\.inactive), [7200, 600])
        XCTAssertEqual(zones[0].maxSize, 1 << 30)
        XCTAssertEqual(zones[0].minFree, 64 << 10)
        XCTAssertEqual([zones[1].managerFiles, zones[1].loaderSleepMs], [10, 1000])
        let locations = try XCTUnwrap(conf.http?.servers.first).locations
        let root = locations[0].settings.proxy
        guard case .named("one") = root.cache.zone else { return XCTFail("inherited zone") }
        XCTAssertEqual(root.cache.valid.map(\.codes), [[200, 302], [404]])
        XCTAssertEqual(root.cache.valid.map(\.seconds), [600, 60])
        XCTAssertEqual(root.cache.validSeconds(for: 302), 600)
        XCTAssertEqual(root.cache.validSeconds(for: 500), 0)
        XCTAssertEqual(root.cache.useStale, [.error, .updating, .http500])
        XCTAssertTrue(root.cache.lock)
        XCTAssertEqual(root.cache.methods, ["GET", "HEAD", "POST"])
        XCTAssertEqual(root.ignoreHeaders, [.setCookie, .expires], "a level's proxy_ignore_headers add up")
        XCTAssertNil(locations[1].settings.proxy.cache.zone)
        XCTAssertEqual(locations[1].settings.proxy.cache.validSeconds(for: 503), 5, "any")
        let php = locations[2].settings.fastcgi.upstream.cache
        guard case .named("two") = php.zone else { return XCTFail("fastcgi_cache") }
        XCTAssertEqual(php.bypass.count, 2)
        XCTAssertFalse(php.convertHead, "only proxy_cache turns a HEAD into a GET")
        guard case .variable = locations[3].settings.proxy.cache.zone else { return XCTFail("variables") }
    }

    func testNginxErrors() {
        assertError(inHTTP("proxy_cache_path /c levels=1:3 keys_zone=a:1m;"), #"invalid "levels" "levels=1:3""#, line: 3)
        assertError(inHTTP("proxy_cache_path /c keys_zone=a;"), #"invalid keys zone size "keys_zone=a""#, line: 3)
        assertError(inHTTP("proxy_cache_path /c keys_zone=a:4k;"), #"keys zone "keys_zone=a:4k" is too small"#, line: 3)
        assertError(inHTTP("proxy_cache_path /c levels=1;"), #""proxy_cache_path" must have "keys_zone" parameter"#, line: 3)
        assertError(inHTTP("proxy_cache_path /c keys_zone=a:1m use_temp_path=yes;"),
                    #"invalid use_temp_path value "use_temp_path=yes", it must be "on" or "off""#, line: 3)
        assertError(inHTTP("proxy_cache_path /c keys_zone=a:1m inactive=x;"), #"invalid inactive value "inactive=x""#, line: 3)
        assertError(inHTTP("proxy_cache_path /c keys_zone=a:1m purger=on;"), #"invalid parameter "purger=on""#, line: 3)
        assertError(inHTTP("proxy_cache_path /c keys_zone=a:1m;\nproxy_cache_path /d keys_zone=a:1m;"), #"duplicate zone "a""#, line: 4)
        assertError(inHTTP("server { location / { proxy_cache nope; } }"), #""proxy_cache" zone "nope" is unknown"#, line: 3)
        assertError(inHTTP("fastcgi_cache_path /c keys_zone=a:1m;\nfastcgi_cache a;"), #"no "fastcgi_cache_key" for "fastcgi_cache""#, line: 4)
        assertError(inHTTP("proxy_cache_valid 200 x;"), #"invalid time value "x""#, line: 3)
        assertError(inHTTP("proxy_cache_valid 99 1m;"), #"invalid status "99""#, line: 3)
        assertError(inHTTP("proxy_cache_use_stale off error;"), #"invalid value "off""#, line: 3)
        assertError(inHTTP("proxy_cache_methods GET BREW;"), #"invalid value "BREW""#, line: 3)
        assertError(inHTTP("server { proxy_cache_path /c keys_zone=a:1m; }"), #""proxy_cache_path" directive is not allowed here"#, line: 3)
    }
}

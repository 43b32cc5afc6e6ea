import XCTest
@testable import Config

/// fastcgi_*, scgi_*, uwsgi_*: the pass forms, the params' inheritance as nginx's (a level with any takes only
/// its own), the upstream family shared with proxy_*, uwsgi's modifiers and TLS.
final class GatewayDirectiveTests: XCTestCase {
    func testPassForms() throws {
        let conf = try parseConf(inHTTP("""
            upstream php { server 127.0.0.1:9000; }
            server {
            location /a { fastcgi_pass 127.0.0.1:9001; }
            location /b { fastcgi_pass unix:/run/php.sock; }
            location /c { fastcgi_pass php; }
            location /d { fastcgi_pass $arg_to; }
            }
            """))
        let locations = try XCTUnwrap(conf.http?.servers.first).locations
        var targets: [String] = []
        for loc in locations {
            guard case .proxy(let pass) = loc.content else { return XCTFail("\(loc.pattern) has no fastcgi_pass") }
            XCTAssertEqual(pass.upstreamProtocol, .fastcgi)
            XCTAssertEqual(pass.scheme, "fastcgi")
            switch pass.target {
            case .address(let addrs, _): targets.append(addrs.map(\.description).joined())
            case .upstream(let name): targets.append("upstream " + name)
            case .variable(let t): targets.append("variable " + t.text)
            case .variableURL: targets.append("url")
            }
        }
        XCTAssertEqual(targets, ["127.0.0.1:9001", "unix:/run/php.sock", "upstream php", "variable $arg_to"])
    }

    func testParamsFromTheInnermostLevelThatHasAny() throws {
        let conf = try parseConf(inHTTP("""
            fastcgi_param A http;
            fastcgi_param HTTPS $https if_not_empty;
            server {
            location /inherits { fastcgi_pass 127.0.0.1:9000; fastcgi_index index.php; }
            location /own { fastcgi_pass 127.0.0.1:9000; fastcgi_param B own; }
            }
            """))
        let locations = try XCTUnwrap(conf.http?.servers.first).locations
        let inherited = locations[0].settings.fastcgi, own = locations[1].settings.fastcgi
        XCTAssertEqual(inherited.params.map(\.name), ["A", "HTTPS"])
        XCTAssertEqual(inherited.params.map(\.ifNotEmpty), [false, true])
        XCTAssertEqual(inherited.index, "index.php")
        XCTAssertEqual(own.params.map(\.name), ["B"])
        XCTAssertNil(own.index)
    }

    func testFamilyIsItsOwn() throws {
        let conf = try parseConf(inHTTP("""
            proxy_read_timeout 5s;
            fastcgi_read_timeout 7s;
            fastcgi_next_upstream error timeout http_503;
            fastcgi_keep_conn on;
            fastcgi_buffer_size 16k;
            fastcgi_hide_header X-Powered-By;
            server { location / { fastcgi_pass 127.0.0.1:9000; fastcgi_catch_stderr "PHP Fatal"; } }
            """))
        let s = try XCTUnwrap(conf.http?.servers.first).locations[0].settings
        XCTAssertEqual(s.proxy.readTimeout, 5000)
        XCTAssertEqual(s.fastcgi.upstream.readTimeout, 7000)
        XCTAssertEqual(s.fastcgi.upstream.nextUpstream, [.error, .timeout, .http503])
        XCTAssertEqual(s.fastcgi.upstream.bufferSize, 16384)
        XCTAssertEqual(s.fastcgi.upstream.hideHeaders, ["x-powered-by"])
        XCTAssertTrue(s.fastcgi.keepConn)
        XCTAssertEqual(s.fastcgi.catchStderr, ["PHP Fatal"])
        XCTAssertTrue(s.fastcgi.upstream.redirects.isEmpty, "FastCGI rewrites no Location")
    }

    func testNginxErrors() {
        assertError(inHTTP("server { location / { fastcgi_pass 127.0.0.1:9000; fastcgi_pass 127.0.0.1:9001; } }"),
                    #""fastcgi_pass" directive is duplicate"#, line: 3)
        assertError(inHTTP("server { location / { fastcgi_pass nosuchupstream; } }"), #"no port in upstream "nosuchupstream""#, line: 3)
        assertError(inHTTP("fastcgi_param A;"), #"invalid number of arguments in "fastcgi_param" directive"#, line: 3)
        assertError(inHTTP("fastcgi_param A b maybe;"), #"invalid parameter "maybe""#, line: 3)
        assertError(inHTTP("fastcgi_keep_conn yes;"), #"invalid value "yes" in "fastcgi_keep_conn" directive, it must be "on" or "off""#, line: 3)
        assertError(inHTTP("fastcgi_split_path_info \"^(.+\\.php(/.*)$\";"), #"pcre2_compile() failed: missing closing parenthesis in "^(.+\.php(/.*)$" at """#, line: 3)
        assertError(inHTTP("fastcgi_split_path_info ^(.+)$;"), #"pattern "^(.+)$" must have 2 captures"#, line: 3)
        assertError(inHTTP("fastcgi_ignore_client_abort on;"), #""fastcgi_ignore_client_abort" directive is not supported by vigil"#, line: 3)
    }

    func testSCGIAndUWSGI() throws {
        let conf = try parseConf(inHTTP("""
            scgi_param A a;
            uwsgi_param B b;
            uwsgi_modifier1 5;
            server {
            location /s { scgi_pass 127.0.0.1:4000; scgi_read_timeout 3s; }
            location /u { uwsgi_pass uwsgi://127.0.0.1:4001; }
            location /t { uwsgi_pass suwsgi://127.0.0.1:4002; uwsgi_ssl_verify on; uwsgi_ssl_name app.example; }
            }
            """))
        let locations = try XCTUnwrap(conf.http?.servers.first).locations
        let passes = locations.compactMap { loc -> ProxyPass? in
            guard case .proxy(let p) = loc.content else { return nil }
            return p
        }
        XCTAssertEqual(passes.map(\.upstreamProtocol), [.scgi, .uwsgi, .uwsgi])
        XCTAssertEqual(passes.map(\.scheme), ["scgi", "uwsgi", "suwsgi"])
        XCTAssertEqual(passes.map(\.hostHeader), ["127.0.0.1:4000", "127.0.0.1:4001", "127.0.0.1:4002"])
        let s = locations[0].settings, t = locations[2].settings
        XCTAssertEqual(s.scgi.params.map(\.name), ["A"])
        XCTAssertEqual(s.uwsgi.params.map(\.name), ["B"])
        XCTAssertEqual(s.scgi.upstream.readTimeout, 3000)
        XCTAssertEqual(s.fastcgi.upstream.readTimeout, 60000)
        XCTAssertEqual(s.uwsgi.modifier1, 5)
        XCTAssertTrue(t.uwsgiSSL.verify)
        XCTAssertFalse(t.proxySSL.verify)
        XCTAssertEqual(t.uwsgiSSL.name?.text, "app.example")
        assertError(inHTTP("uwsgi_modifier1 256;"), "value must be between 0 and 255", line: 3)
        assertError(inHTTP("uwsgi_modifier2 x;"), #""uwsgi_modifier2" directive invalid number"#, line: 3)
        assertError(inHTTP("uwsgi_ssl_conf_command a b;"), #""uwsgi_ssl_conf_command" is not supported by vigil"#, line: 3)
    }
}

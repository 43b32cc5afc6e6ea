import Core
import XCTest
@testable import Config

/// nginx's generic directive errors and the core/http/upstream handlers' errors,
/// each with its exact wording and the line nginx reports.
final class DirectiveErrorTests: XCTestCase {
    // MARK: unknown / not allowed here

    func testUnknownDirective() {
        assertError("events {}\nfoo bar;\n", #"unknown directive "foo""#, line: 2)
        assertError(inHTTP("server {\n    frobnicate;\n}"), #"unknown directive "frobnicate""#, line: 4)
        assertError(inUpstream("bogus_check on;"), #"unknown directive "bogus_check""#, line: 5)
        // Directive names are case-sensitive.
        assertError("EVENTS {}\n", #"unknown directive "EVENTS""#, line: 1)
        // nginx's own directives that Vigil lacks say so.
        assertError("events {}\nstream {\n}\n", #""stream" directive is not supported by vigil"#, line: 2)
        assertError(inHTTP("proxy_limit_rate 1k;"), #""proxy_limit_rate" directive is not supported by vigil"#, line: 3)
    }

    /// certbot's options file beside a site's own lines: what nginx lets a level repeat adds up (or, for
    /// ssl_session_cache, replaces), where other directives are duplicates.
    func testRepeatsNginxAllows() throws {
        let conf = try parseConf(inHTTP("""
            server {
            listen 127.0.0.1:8443 ssl;
            ssl_protocols TLSv1.2; ssl_protocols TLSv1.3 TLSv1.2;
            types { text/html html; } types { text/plain txt; }
            gzip_types text/css; gzip_types application/json;
            ssl_session_cache builtin; ssl_session_cache shared:s:1m;
            }
            """))
        let s = try XCTUnwrap(conf.http?.servers.first).settings
        XCTAssertEqual(s.ssl.protocols, ["TLSv1.2", "TLSv1.3"])
        XCTAssertEqual(s.core.types, ["html": "text/html", "txt": "text/plain"])
        XCTAssertEqual(s.gzip.types, ["text/css", "application/json"])
        XCTAssertTrue(conf.warnings.contains { $0.message == "duplicate value \"TLSv1.2\"" }, "\(conf.warnings)")
        XCTAssertEqual(s.ssl.sessionCache, .shared(name: "s", size: 1 << 20), "the last ssl_session_cache wins")
        assertError(inHTTP("ssl_ciphers HIGH;\nssl_ciphers HIGH;"), #""ssl_ciphers" directive is duplicate"#, line: 4)
    }

    func testUnsupportedListHoldsOnlyWhatVigilLacks() {
        let implemented = UnsupportedDirectives.names.filter { Directives.table[$0] != nil }
        XCTAssertEqual(implemented, [], "implemented now: take them out of UnsupportedDirectives")
    }

    func testUnknownDirectiveSpanningLinesIsReportedAtItsEnd() {
        assertError("events {}\nfoo\n  bar\n  baz;\n", #"unknown directive "foo""#, line: 4)
    }

    func testNotAllowedHere() {
        assertError("events {}\nlisten 80;\n", #""listen" directive is not allowed here"#, line: 2)
        assertError("worker_connections 10;\nevents {}\n", #""worker_connections" directive is not allowed here"#, line: 1)
        assertError("events {\n  worker_processes 2;\n}\n", #""worker_processes" directive is not allowed here"#, line: 2)
        assertError(inHTTP("proxy_pass http://127.0.0.1:1;"), #""proxy_pass" directive is not allowed here"#, line: 3)
        assertError(inHTTP("server {\n  listen 127.0.0.1:8080;\n  proxy_pass http://127.0.0.1:1;\n}"),
                    #""proxy_pass" directive is not allowed here"#, line: 5)
        assertError(inHTTP("server {\n  log_format x y;\n}"), #""log_format" directive is not allowed here"#, line: 4)
        assertError(inHTTP("server {\n  location / {\n    server {\n    }\n  }\n}"), #""server" directive is not allowed here"#, line: 5)
        assertError(inHTTP("upstream u {\n  server 127.0.0.1:1;\n  listen 80;\n}"), #""listen" directive is not allowed here"#, line: 5)
        assertError(inHTTP("http {\n}"), #""http" directive is not allowed here"#, line: 3)
        assertError(inHTTP("server {\n  upstream u {\n  }\n}"), #""upstream" directive is not allowed here"#, line: 4)
    }

    // MARK: arity and terminators

    func testInvalidNumberOfArguments() {
        assertError("worker_processes;\nevents {}\n", #"invalid number of arguments in "worker_processes" directive"#, line: 1)
        assertError("worker_processes 1 2;\nevents {}\n", #"invalid number of arguments in "worker_processes" directive"#, line: 1)
        assertError("events x {\n}\n", #"invalid number of arguments in "events" directive"#, line: 1)
        assertError(inHTTP("server {\n  listen;\n}"), #"invalid number of arguments in "listen" directive"#, line: 4)
        assertError(inHTTP("server {\n  location {\n  }\n}"), #"invalid number of arguments in "location" directive"#, line: 4)
        assertError(inHTTP("upstream {\n}"), #"invalid number of arguments in "upstream" directive"#, line: 3)
        assertError(inHTTP("log_format main;"), #"invalid number of arguments in "log_format" directive"#, line: 3)
        assertError("include;\nevents {}\n", #"invalid number of arguments in "include" directive"#, line: 1)
        assertError("include a b;\nevents {}\n", #"invalid number of arguments in "include" directive"#, line: 1)
    }

    func testNoOpeningBrace() {
        assertError("events;\n", #"directive "events" has no opening "{""#, line: 1)
        assertError("events {}\nhttp;\n", #"directive "http" has no opening "{""#, line: 2)
        assertError(inHTTP("server;"), #"directive "server" has no opening "{""#, line: 3)
        assertError(inHTTP("server {\n  location /;\n}"), #"directive "location" has no opening "{""#, line: 4)
        assertError(inHTTP("upstream u;"), #"directive "upstream" has no opening "{""#, line: 3)
    }

    func testNotTerminatedBySemicolon() {
        assertError("daemon off {\n}\nevents {}\n", #"directive "daemon" is not terminated by ";""#, line: 1)
        assertError("events {}\ninclude x {\n}\n", #"directive "include" is not terminated by ";""#, line: 2)
        assertError(inHTTP("server {\n  listen 80 {\n  }\n}"), #"directive "listen" is not terminated by ";""#, line: 4)
    }

    // MARK: duplicates

    func testDuplicateBlocks() {
        assertError("events {}\nevents {}\n", #""events" directive is duplicate"#, line: 2)
        assertError("events {}\nhttp {}\nhttp {\n}\n", #""http" directive is duplicate"#, line: 3)
    }

    func testDuplicateMainDirectives() {
        assertError("daemon on;\ndaemon off;\nevents {}\n", #""daemon" directive is duplicate"#, line: 2)
        assertError("master_process on;\nmaster_process on;\nevents {}\n", #""master_process" directive is duplicate"#, line: 2)
        assertError("pid a.pid;\nevents {}\npid b.pid;\n", #""pid" directive is duplicate"#, line: 3)
        assertError("worker_processes 1;\nworker_processes 2;\nevents {}\n", #""worker_processes" directive is duplicate"#, line: 2)
        assertError("worker_rlimit_nofile 1024;\nworker_rlimit_nofile 2048;\nevents {}\n",
                    #""worker_rlimit_nofile" directive is duplicate"#, line: 2)
        assertError("worker_shutdown_timeout 10s;\nworker_shutdown_timeout 10s;\nevents {}\n",
                    #""worker_shutdown_timeout" directive is duplicate"#, line: 2)
    }

    func testDuplicateEventsDirectives() {
        assertError("events {\n  worker_connections 10;\n  worker_connections 20;\n}\n",
                    #""worker_connections" directive is duplicate"#, line: 3)
        assertError("events {\n  use epoll;\n  use epoll;\n}\n", #""use" directive is duplicate"#, line: 3)
        assertError("events {\n  multi_accept on;\n  multi_accept off;\n}\n", #""multi_accept" directive is duplicate"#, line: 3)
        assertError("events {\n  accept_mutex on;\n  accept_mutex on;\n}\n", #""accept_mutex" directive is duplicate"#, line: 3)
    }

    func testRepeatableMainDirectivesAreNotDuplicates() throws {
        let conf = try XCTUnwrap(assertLoads("error_log a.log;\nerror_log b.log warn;\nenv A;\nenv B;\nevents {}\n"))
        XCTAssertEqual(conf.errorLogs, [ErrorLogTarget(path: "/prefix/a.log", level: .error),
                                        ErrorLogTarget(path: "/prefix/b.log", level: .warn)])
        XCTAssertEqual(conf.env, ["A", "B"])
    }

    func testDuplicateHTTPSettings() {
        assertError(inHTTP("sendfile on;\nsendfile off;"), #""sendfile" directive is duplicate"#, line: 4)
        assertError(inHTTP("default_type a/b;\ndefault_type c/d;"), #""default_type" directive is duplicate"#, line: 4)
        assertError(inHTTP("keepalive_timeout 65;\nkeepalive_timeout 65;"), #""keepalive_timeout" directive is duplicate"#, line: 4)
        assertError(inHTTP("server {\n  location / {\n    proxy_pass http://127.0.0.1:1;\n    proxy_pass http://127.0.0.1:2;\n  }\n}"),
                    #""proxy_pass" directive is duplicate"#, line: 6)
        // The same setting at different levels is not a duplicate.
        XCTAssertNotNil(assertLoads(inHTTP("sendfile on;\nserver {\n  sendfile off;\n  location / { sendfile on; }\n}")))
    }

    func testInvalidFlagValue() {
        assertError(inHTTP("sendfile yes;"), #"invalid value "yes" in "sendfile" directive, it must be "on" or "off""#, line: 3)
        XCTAssertEqual(assertLoads(inHTTP("sendfile ON;"))?.http?.settings.core.sendfile, true)
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS is 32 bits: a larger number says as many as it can.
    func testMaxConcurrentStreamsIsHeldTo32Bits() {
        XCTAssertEqual(assertLoads(inHTTP("http2_max_concurrent_streams 99999999999;"))?.http?.settings.http2.maxConcurrentStreams, Int(UInt32.max))
        XCTAssertEqual(assertLoads(inHTTP("http2_max_concurrent_streams 64;"))?.http?.settings.http2.maxConcurrentStreams, 64)
        assertError(inHTTP("http2_max_concurrent_streams many;"), #""http2_max_concurrent_streams" directive invalid number"#, line: 3)
    }

    /// client_body_in_file_only is an enum of nginx's; client_body_in_single_buffer a flag.
    func testRequestBodyFileDirectives() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("client_body_in_file_only clean;\nclient_body_in_single_buffer on;\nserver {\n  location / { client_body_in_file_only on; }\n}")))
        XCTAssertEqual(conf.http?.settings.core.clientBodyInFileOnly, .clean)
        XCTAssertEqual(conf.http?.servers.first?.settings.core.clientBodyInFileOnly, .clean)
        XCTAssertEqual(conf.http?.servers.first?.locations.first?.settings.core.clientBodyInFileOnly, .on)
        XCTAssertEqual(try parseConf(inHTTP("")).http?.settings.core.clientBodyInFileOnly, .off)
        assertError(inHTTP("client_body_in_file_only yes;"), #"invalid value "yes""#, line: 3)
        assertError(inHTTP("client_body_in_single_buffer 1;"), #"invalid value "1" in "client_body_in_single_buffer" directive, it must be "on" or "off""#, line: 3)
    }

    /// open_log_file_cache: nginx's defaults and words; a level that sets it has its own cache, which the
    /// levels below share unless they set theirs (or `off`).
    func testOpenLogFileCache() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("open_log_file_cache max=3 min_uses=2 valid=1m;\nserver {\n  location /a { }\n  location /b { open_log_file_cache off; }\n  location /c { open_log_file_cache max=1 inactive=1m; }\n}")))
        let http = try XCTUnwrap(conf.http?.settings.log.openLogFileCache)
        XCTAssertEqual([http.id, http.max, http.inactive, http.minUses, http.valid], [0, 3, 10, 2, 60])
        let locations = try XCTUnwrap(conf.http?.servers.first?.locations.map(\.settings.log.openLogFileCache))
        XCTAssertEqual(locations[0], http)
        XCTAssertNil(locations[1])
        XCTAssertEqual(locations[2].map { [$0.id, $0.max, $0.inactive, $0.minUses, $0.valid] }, [1, 1, 60, 1, 60])
        assertError(inHTTP("open_log_file_cache inactive=10s;"), #""open_log_file_cache" must have "max" parameter"#, line: 3)
        assertError(inHTTP("open_log_file_cache max=x;"), #"invalid "open_log_file_cache" parameter "max=x""#, line: 3)
        assertError(inHTTP("open_log_file_cache max=1 size=2;"), #"invalid "open_log_file_cache" parameter "size=2""#, line: 3)
        assertError(inHTTP("open_log_file_cache off;\nopen_log_file_cache max=1;"), #""open_log_file_cache" directive is duplicate"#, line: 4)
    }

    /// `$server_name` is the first name as written (a regex with its "~", `.name` without its dot); names
    /// nginx refuses are refused with its words.
    func testServerNames() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("server { server_name .Dot.Example a.b; }\nserver { server_name ~^A$ b.c; }\nserver { }")))
        XCTAssertEqual(conf.http?.servers.map(\.name), ["dot.example", "~^A$", ""])
        XCTAssertEqual(conf.http?.servers.first?.serverNames, [".dot.example", "a.b"])
        assertError(inHTTP("server { server_name *example.com; }"), #"server name "*example.com" is invalid"#, line: 3)
        assertError(inHTTP("server { server_name .; }"), #"server name "." is invalid"#, line: 3)
        assertError(inHTTP("server { server_name ~; }"), #"empty regex in server name "~""#, line: 3)
    }

    /// How a server reads request heads: nginx's defaults unless set at http or server level.
    func testRequestHeadRules() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("underscores_in_headers on;\nserver {\n  ignore_invalid_headers off;\n  merge_slashes off;\n}\nserver {\n}")))
        let core = try XCTUnwrap(conf.http?.servers.map(\.settings.core))
        XCTAssertEqual(core.map(\.underscoresInHeaders), [true, true])
        XCTAssertEqual(core.map(\.ignoreInvalidHeaders), [false, true])
        XCTAssertEqual(core.map(\.mergeSlashes), [false, true])
        assertError(inHTTP("server {\n  location / { merge_slashes off; }\n}"), #""merge_slashes" directive is not allowed here"#, line: 4)
    }

    // MARK: authentication

    /// auth_basic, auth_request and satisfy with nginx's errors; a user file without variables is made whole
    /// against the configuration's directory, and auth_request_set declares its variable as `set` does.
    func testAuthDirectives() throws {
        assertError(inHTTP("satisfy some;"), #"invalid value "some""#, line: 3)
        assertError(inHTTP("auth_request /a;\nauth_request off;"), #""auth_request" directive is duplicate"#, line: 4)
        assertError(inHTTP("auth_basic_user_file a;\nauth_basic_user_file b;"), #""auth_basic_user_file" directive is duplicate"#, line: 4)
        assertError(inHTTP("auth_request_set user $remote_user;"), #"invalid variable name "user""#, line: 3)
        assertError(inHTTP("auth_request_set $uri x;"), #"the duplicate "uri" variable"#, line: 3)
        assertError(inHTTP("auth_basic $nosuch;"), #"unknown "nosuch" variable"#, line: 3)
        let conf = try parseConf(inHTTP("""
            auth_basic_user_file htpasswd;
            auth_request_set $who $upstream_http_x_user;
            server { auth_request off; satisfy any; auth_delay 2s; location / { add_header X $who; } }
            """))
        let http = try XCTUnwrap(conf.http)
        XCTAssertEqual(http.settings.auth.basicUserFile?.text, "/conf/htpasswd")
        let s = try XCTUnwrap(http.servers.first).settings.auth
        XCTAssertNil(s.request)
        XCTAssertTrue(s.satisfyAny)
        XCTAssertEqual(s.delay, 2000)
        XCTAssertEqual(s.requestSets.count, 1)
    }

    // MARK: events section

    func testNoEventsSection() {
        for text in ["", "# nothing\n", "http {\n}\n", "worker_processes 1;\n"] {
            let e = expectError(text)
            XCTAssertEqual(e?.description, #"no "events" section in configuration"#, "for \(text.debugDescription)")
            XCTAssertNil(e?.file)
            XCTAssertEqual(e?.level, .emerg)
        }
    }

    func testMinimalConfiguration() throws {
        let conf = try XCTUnwrap(assertLoads("events {}"))
        XCTAssertNil(conf.http)
        XCTAssertEqual(conf.workerConnections, 512)
        XCTAssertTrue(conf.checkedPeers.isEmpty)
        XCTAssertTrue(conf.warnings.isEmpty)
    }

    // MARK: proxy_pass

    func testInvalidURLPrefixHint() {
        assertError(inHTTP("server {\n  location / {\n    proxy_pass test;\n  }\n}"), "invalid URL prefix", line: 5,
                    hint: #"did you mean "http://test"?"#)
        XCTAssertEqual(expectError(inHTTP("server {\nlocation / {\nproxy_pass test;\n}\n}"))?.description,
                       #"invalid URL prefix in /conf/vigil.conf:5, did you mean "http://test"?"#)
        // A different scheme gets no guess.
        assertError(inHTTP("server {\n  location / {\n    proxy_pass ftp://test;\n  }\n}"), "invalid URL prefix", line: 5)
    }

    func testUpstreamMayNotHavePort() {
        // C18, with the block before and after the proxy_pass; the error is located at the proxy_pass.
        assertError(inHTTP("upstream test {\n  server 127.0.0.1:9000;\n}\nserver {\n  location / {\n    proxy_pass http://test:80;\n  }\n}"),
                    #"upstream "test" may not have port 80"#, line: 8)
        assertError(inHTTP("server {\n  location / {\n    proxy_pass http://test:8080/x;\n  }\n}\nupstream test {\n  server 127.0.0.1:9000;\n}"),
                    #"upstream "test" may not have port 8080"#, line: 5)
    }

    func testHostNotFound() {
        assertError(inHTTP("server {\n  location / {\n    proxy_pass http://no-such-host.invalid;\n  }\n}"),
                    #"host not found in upstream "no-such-host.invalid""#, line: 5)
        assertError(inHTTP("upstream u {\n  server no-such-host.invalid:8080;\n}"),
                    #"host not found in upstream "no-such-host.invalid:8080""#, line: 4)
    }

    func testLiteralProxyPassResolves() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("server {\n  location / {\n    proxy_pass http://127.0.0.1:1970/base;\n  }\n}")))
        guard case .proxy(let pass)? = conf.http?.servers.first?.locations.first?.content,
              case .address(let addrs, let text) = pass.target else { return XCTFail("not a literal proxy_pass") }
        XCTAssertEqual(addrs, [peer("127.0.0.1", 1970)])
        XCTAssertEqual(text, "127.0.0.1:1970")
        XCTAssertEqual(pass.uri, "/base")
        XCTAssertEqual(pass.hostHeader, "127.0.0.1:1970")
        XCTAssertTrue(conf.http?.upstreams.isEmpty ?? false)
        // An IPv6 address keeps its brackets in $proxy_host (the Host sent) and the default proxy_ssl_name.
        let v6 = try XCTUnwrap(assertLoads(inHTTP("server {\n  location / {\n    proxy_pass https://[::1]:1970/;\n  }\n}")))
        guard case .proxy(let pass6)? = v6.http?.servers.first?.locations.first?.content else { return XCTFail("no proxy_pass") }
        XCTAssertEqual(pass6.hostHeader, "[::1]:1970")
        XCTAssertEqual(pass6.urlHost, "[::1]")
    }

    // MARK: upstream blocks

    func testNoServersInsideUpstream() {
        // nginx checks when the block closes, so the error is located at its `}`.
        assertError(inHTTP("upstream u {\n  check interval=1000;\n}"), "no servers are inside upstream", line: 5)
        assertError(inHTTP("upstream u {}"), "no servers are inside upstream", line: 3)
    }

    func testNoServersIsReportedBeforeLaterErrors() {
        assertError(inHTTP("upstream u {\n}\nbogus;"), "no servers are inside upstream", line: 4)
    }

    func testDuplicateUpstream() {
        assertError(inHTTP("upstream u {\n  server 127.0.0.1:1;\n}\nupstream u {\n  server 127.0.0.1:2;\n}"),
                    #"duplicate upstream "u""#, line: 6)
        // A proxy_pass mention before the block is not a declaration.
        XCTAssertNotNil(assertLoads(inHTTP("server {\n  location / { proxy_pass http://u; }\n}\nupstream u {\n  server 127.0.0.1:2;\n}")))
    }

    func testUpstreamNamesAreCaseInsensitive() throws {
        // nginx matches upstream names case-insensitively.
        let conf = try XCTUnwrap(assertLoads(inHTTP("upstream Backend {\n  server 127.0.0.1:9000;\n  check interval=1000;\n}\n"
                                                    + "server {\n  location / { proxy_pass http://backend; }\n}")))
        XCTAssertEqual(conf.http?.upstreams.count, 1)
        XCTAssertEqual(conf.checkedPeers.map(\.address), [peer("127.0.0.1", 9000)])
        assertError(inHTTP("upstream a {\n  server 127.0.0.1:1;\n}\nupstream A {\n  server 127.0.0.1:2;\n}"),
                    #"duplicate upstream "A""#, line: 6)
    }

    func testUpstreamServerParameters() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            upstream u {
              server 127.0.0.1:1 weight=3 max_fails=2 fail_timeout=30s max_conns=7;
              server 127.0.0.1:2 backup;
              server 127.0.0.1:3 down;
              server 127.0.0.1;
            }
            """)))
        let servers = try XCTUnwrap(conf.http?.upstream(named: "u")?.servers)
        XCTAssertEqual(servers.count, 4)
        XCTAssertEqual(servers[0].weight, 3)
        XCTAssertEqual(servers[0].maxFails, 2)
        XCTAssertEqual(servers[0].failTimeout, 30_000)
        XCTAssertEqual(servers[0].maxConns, 7)
        XCTAssertTrue(servers[1].backup)
        XCTAssertTrue(servers[2].down)
        XCTAssertEqual(servers[3].addresses, [peer("127.0.0.1", 80)])
        XCTAssertEqual(servers[3].location, SourceLocation(file: confPath, line: 7))
        assertError(inUpstream("server 127.0.0.1:1 weight=0;"), #"invalid parameter "weight=0""#, line: 5)
        assertError(inUpstream("server 127.0.0.1:1 heavy;"), #"invalid parameter "heavy""#, line: 5)
        assertError(inUpstream("server 127.0.0.1:70000;"), #"invalid port in upstream "127.0.0.1:70000""#, line: 5)
        assertError(inUpstream("ip_hash;\nserver 127.0.0.1:2 backup;"), #"balancing method does not support parameter "backup""#, line: 6)
    }

    // MARK: log formats

    func testUnknownLogFormat() {
        assertError(inHTTP("server {\n  access_log logs/a.log main;\n}"), #"unknown log format "main""#, line: 4)
        // log_format must come before its use, as in nginx.
        assertError(inHTTP("access_log logs/a.log main;\nlog_format main '$remote_addr';"), #"unknown log format "main""#, line: 3)
    }

    func testLogFormats() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("log_format main '$remote_addr ' '$status';\naccess_log logs/a.log main;\n"
                                                    + "access_log logs/b.log;")))
        let http = try XCTUnwrap(conf.http)
        XCTAssertEqual(http.logFormats["main"]?.template.text, "$remote_addr $status")
        XCTAssertEqual(http.settings.log.accessLogs, [AccessLogTarget(path: "/prefix/logs/a.log", format: "main"),
                                                  AccessLogTarget(path: "/prefix/logs/b.log", format: "combined")])
        assertError(inHTTP("log_format main a;\nlog_format main b;"), #"duplicate "log_format" name "main""#, line: 4)
        assertError(inHTTP("log_format combined a;"), #"duplicate "log_format" name "combined""#, line: 3)
    }
}

/// The realip module's directives as nginx reads them.
final class RealIPDirectiveTests: XCTestCase {
    func testSettingsAndInheritance() throws {
        let conf = try parseConf(inHTTP("""
            set_real_ip_from 127.0.0.1;
            set_real_ip_from 10.0.0.0/8;
            real_ip_header X-Forwarded-For;
            server {
                listen 127.0.0.1:8080 proxy_protocol;
                location /a { set_real_ip_from unix:; set_real_ip_from ::1/128; real_ip_recursive on; }
                location /b { real_ip_header proxy_protocol; }
                location /c { real_ip_header X-Real-IP; }
            }
            """))
        let server = try XCTUnwrap(conf.http?.servers.first)
        XCTAssertTrue(try XCTUnwrap(server.listens.first).proxyProtocol)
        XCTAssertEqual(server.settings.realIP.from, [CIDR(bytes: [127, 0, 0, 1], prefix: 32), CIDR(bytes: [10, 0, 0, 0], prefix: 8)])
        XCTAssertEqual(server.settings.realIP.header, .forwardedFor)
        let (a, b, c) = (server.locations[0].settings.realIP, server.locations[1].settings.realIP, server.locations[2].settings.realIP)
        XCTAssertEqual(a.from, [CIDR(bytes: [], prefix: 0), CIDR(bytes: [UInt8](repeating: 0, count: 15) + [1], prefix: 128)],
                       "a level's own list replaces its parent's")
        XCTAssertTrue(a.recursive)
        XCTAssertEqual(b.from.count, 2)
        XCTAssertEqual(b.header, .proxyProtocol)
        XCTAssertEqual(c.header, .field("x-real-ip"))
        XCTAssertTrue(try XCTUnwrap(conf.http).usesRealIP)
    }

    func testErrors() throws {
        assertError(inHTTP("real_ip_header X-Real-IP;\nreal_ip_header X-Forwarded-For;"), #""real_ip_header" directive is duplicate"#, line: 4)
        assertError(inHTTP("set_real_ip_from no-such-host.invalid;"), #"host not found in set_real_ip_from "no-such-host.invalid""#, line: 3)
        assertError(inHTTP("real_ip_recursive maybe;"),
                    #"invalid value "maybe" in "real_ip_recursive" directive, it must be "on" or "off""#, line: 3)
        let conf = try parseConf(inHTTP("set_real_ip_from 10.0.0.1/8;"))
        XCTAssertTrue(conf.warnings.contains { $0.message == "low address bits of 10.0.0.1/8 are meaningless" }, "\(conf.warnings)")
    }
}

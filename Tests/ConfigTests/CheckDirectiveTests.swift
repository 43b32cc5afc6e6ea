import XCTest
@testable import Config

/// The check module's directives and the reference module's parsing vectors C1-C19.
/// `inUpstream(body)`: line N of body is line N + 4 of the file.
final class CheckDirectiveTests: XCTestCase {
    private func check(_ body: String, file: StaticString = #filePath, line: UInt = #line) -> CheckSettings? {
        guard let conf = assertLoads(inUpstream(body), file: file, line: line) else { return nil }
        guard let c = conf.http?.upstream(named: "u")?.check else {
            XCTFail("upstream u has no check", file: file, line: line)
            return nil
        }
        return c
    }

    // MARK: defaults and values

    func testDefaults() throws {
        let c = try XCTUnwrap(check("check type=tcp;"))
        XCTAssertEqual(c.interval, 30000)
        XCTAssertEqual(c.fall, 5)
        XCTAssertEqual(c.rise, 2)
        XCTAssertEqual(c.timeout, 1000)
        XCTAssertTrue(c.defaultDown)
        XCTAssertEqual(c.type, .tcp)
        XCTAssertEqual(c.port, 0)
        XCTAssertEqual(c.httpSend, [])
        XCTAssertNil(c.expectAlive)
        XCTAssertEqual(c.effectiveExpectAlive, [.http2xx, .http3xx])
        XCTAssertEqual(c.keepaliveRequests, 1)
        XCTAssertNil(c.fastcgiParams)
        XCTAssertEqual(c, CheckSettings())
        XCTAssertEqual(try XCTUnwrap(check("check interval=30000;")), CheckSettings())
    }

    func testAllParameters() throws {
        let c = try XCTUnwrap(check("check interval=3000 rise=3 fall=4 timeout=500 default_down=false type=http port=8080;"))
        XCTAssertEqual(c.interval, 3000)
        XCTAssertEqual(c.rise, 3)
        XCTAssertEqual(c.fall, 4)
        XCTAssertEqual(c.timeout, 500)
        XCTAssertFalse(c.defaultDown)
        XCTAssertEqual(c.type, .http)
        XCTAssertEqual(c.port, 8080)
    }

    func testEveryType() throws {
        for t in ["tcp", "http", "ssl_hello", "mysql", "ajp", "fastcgi"] {
            XCTAssertEqual(check("check type=\(t);")?.type.rawValue, t)
        }
    }

    func testParametersMayComeInAnyOrderAndCheckMayPrecedeServers() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("upstream u {\n  check type=http fall=1 interval=100;\n  server 127.0.0.1:1;\n}")))
        let c = try XCTUnwrap(conf.http?.upstream(named: "u")?.check)
        XCTAssertEqual([c.interval, c.fall], [100, 1])
        XCTAssertEqual(c.type, .http)
        XCTAssertEqual(conf.checkedPeers.count, 1)
    }

    // MARK: the reference module's parsing vectors

    func testC1NonNumericInterval() {
        assertError(inUpstream("check interval=abc;"), #"invalid parameter "interval=abc""#, line: 5)
    }

    func testC2InvalidParameters() {
        for token in ["interval=0", "interval=-1", "interval=3s", "rise=0", "fall=x", "timeout=0", "port=0",
                      "foo=1", "type=HTTP", "type=udp", "Interval=1000", "interval=", "interval=+5", "type=",
                      "interval=99999999999999999999999"] {
            assertError(inUpstream("check \(token);"), "invalid parameter \"\(token)\"", line: 5)
        }
        // The first bad argument is reported, even after good ones; on the line of the `;`.
        assertError(inUpstream("check interval=1000\n  fall=0 rise=0;"), #"invalid parameter "fall=0""#, line: 6)
    }

    func testC3DefaultDownValue() {
        assertError(inUpstream("check default_down=yes;"), #"invalid value "default_down=yes", it must be "true" or "false""#, line: 5)
        assertError(inUpstream("check default_down=;"), #"invalid value "default_down=", it must be "true" or "false""#, line: 5)
    }

    func testC4Accepted() throws {
        XCTAssertEqual(check("check default_down=TRUE;")?.defaultDown, true)
        XCTAssertEqual(check("check default_down=False;")?.defaultDown, false)
        XCTAssertEqual(check("check interval=1000 interval=2000;")?.interval, 2000)
        XCTAssertEqual(check("check port=65535;")?.port, 65535)
        XCTAssertEqual(check("check port=1;")?.port, 1)
    }

    func testC4PortAbove65535IsRejectedByVigil() {
        // The reference accepts port=70000 and truncates it to 4464; Vigil refuses.
        assertError(inUpstream("check port=70000;"), #"invalid parameter "port=70000""#, line: 5)
        assertError(inUpstream("check port=65536;"), #"invalid parameter "port=65536""#, line: 5)
    }

    func testC5BareCheck() {
        assertError(inUpstream("check;"), #"invalid number of arguments in "check" directive"#, line: 5)
    }

    func testC6KeepaliveRequests() throws {
        assertError(inUpstream("check_keepalive_requests 0;"), #""check_keepalive_requests" directive invalid value"#, line: 5)
        assertError(inUpstream("check_keepalive_requests abc;"), #""check_keepalive_requests" directive invalid value"#, line: 5)
        XCTAssertEqual(check("check type=http;\ncheck_keepalive_requests 100;")?.keepaliveRequests, 100)
        XCTAssertEqual(check("check_keepalive_requests 7;\ncheck type=http;")?.keepaliveRequests, 7)
    }

    func testC7UnknownExpectAliveFailsAtWarnLevel() {
        assertError(inUpstream("check type=http;\ncheck_http_expect_alive http_1xx;"), #"invalid value "http_1xx""#, line: 6, level: .warn)
        assertError(inUpstream("check_http_expect_alive http_2xx\n  bogus;"), #"invalid value "bogus""#, line: 6, level: .warn)
    }

    func testC8DuplicateExpectAliveWarnsAndIsAccepted() throws {
        let conf = try XCTUnwrap(assertLoads(inUpstream("check type=http;\ncheck_http_expect_alive HTTP_2XX http_2xx;")))
        XCTAssertEqual(conf.warnings, [ConfigError(#"duplicate value "http_2xx""#, level: .warn, file: confPath, line: 6)])
        XCTAssertEqual(conf.warnings.first?.description, #"duplicate value "http_2xx" in /conf/vigil.conf:6"#)
        XCTAssertEqual(conf.http?.upstream(named: "u")?.check?.expectAlive, [.http2xx])
    }

    func testDuplicateExpectAliveQuotesTheValueAsWritten() throws {
        // The reference prints the argument itself (value[i].data), not a lowercased copy.
        let conf = try XCTUnwrap(assertLoads(inUpstream("check type=http;\ncheck_http_expect_alive http_3xx HTTP_3xx;")))
        XCTAssertEqual(conf.warnings.map(\.description), [#"duplicate value "HTTP_3xx" in /conf/vigil.conf:6"#])
    }

    func testC9Arity() {
        assertError(inUpstream("check_http_send;"), #"invalid number of arguments in "check_http_send" directive"#, line: 5)
        assertError(inUpstream("check_http_send a b;"), #"invalid number of arguments in "check_http_send" directive"#, line: 5)
        assertError(inUpstream("check_fastcgi_param a;"), #"invalid number of arguments in "check_fastcgi_param" directive"#, line: 5)
        assertError(inUpstream("check_fastcgi_param a b c;"), #"invalid number of arguments in "check_fastcgi_param" directive"#, line: 5)
        assertError(inUpstream("check_http_expect_alive;"), #"invalid number of arguments in "check_http_expect_alive" directive"#, line: 5)
        assertError(inUpstream("check_keepalive_requests;"), #"invalid number of arguments in "check_keepalive_requests" directive"#, line: 5)
        assertError(inHTTP("check_shm_size;"), #"invalid number of arguments in "check_shm_size" directive"#, line: 3)
    }

    func testC10DuplicateShmSize() {
        assertError(inHTTP("check_shm_size 10M;\ncheck_shm_size 20M;"), #""check_shm_size" directive is duplicate"#, line: 4)
    }

    func testC11BadShmSize() {
        for v in ["abc", "1g", "1G", "10MB", "-1", "1.5m", ""] {
            assertError(inHTTP("check_shm_size \"\(v)\";"), #""check_shm_size" directive invalid value"#, line: 3)
        }
    }

    func testC12SmallShmSizeIsRaisedTo1M() throws {
        for v in ["0", "512k", "1048575", "1"] {
            let conf = try XCTUnwrap(assertLoads(inHTTP("check_shm_size \(v);")))
            XCTAssertEqual(conf.shmSize, 1_048_576, v)
        }
        XCTAssertEqual(assertLoads(inHTTP("check_shm_size 512k;"))?.http?.checkShmSize, 524_288)
        XCTAssertEqual(assertLoads(inHTTP("check_shm_size 10M;"))?.shmSize, 10_485_760)
        XCTAssertEqual(assertLoads(inHTTP("check_shm_size 2m;"))?.shmSize, 2_097_152)
        XCTAssertEqual(assertLoads(inHTTP("check_shm_size 4096K;"))?.shmSize, 4_194_304)
        XCTAssertEqual(assertLoads(inHTTP(""))?.shmSize, 1_048_576)
        XCTAssertEqual(assertLoads("events {}")?.shmSize, 1_048_576)
    }

    func testC13UnknownStatusFormat() {
        assertError(inHTTP("server {\n  location /s {\n    check_status xml;\n  }\n}"), #"invalid check format "xml""#, line: 5)
        // The format match is case-sensitive.
        assertError(inHTTP("server {\n  location /s {\n    check_status JSON;\n  }\n}"), #"invalid check format "JSON""#, line: 5)
    }

    func testC14StatusArity() {
        assertError(inHTTP("server {\n  location /s {\n    check_status json csv;\n  }\n}"),
                    #"invalid number of arguments in "check_status" directive"#, line: 5)
    }

    func testC15StatusAtServerLevel() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("server {\n  check_status json;\n  location /s { check_status; }\n  location /c { check_status csv; }\n}")))
        let server = try XCTUnwrap(conf.http?.servers.first)
        guard case .checkStatus = server.content else { return XCTFail("server content is not check_status") }
        XCTAssertEqual(server.settings.status.format, .json)
        // A location without a format inherits the server's.
        XCTAssertEqual(server.locations.map(\.settings.status.format), [.json, .csv])
        for loc in server.locations {
            guard case .checkStatus = loc.content else { return XCTFail("location \(loc.pattern) is not check_status") }
        }
        // html is the default when nothing names a format.
        let plain = try XCTUnwrap(assertLoads(inHTTP("server {\n  location /s { check_status; }\n}")))
        XCTAssertEqual(plain.http?.servers.first?.locations.first?.settings.status.$format.isSet, false)
    }

    func testC16WrongContexts() {
        assertError(inHTTP("check interval=1000;"), #""check" directive is not allowed here"#, line: 3)
        assertError(inHTTP("server {\n  check interval=1000;\n}"), #""check" directive is not allowed here"#, line: 4)
        assertError(inHTTP("server {\n  location / {\n    check interval=1000;\n  }\n}"), #""check" directive is not allowed here"#, line: 5)
        assertError("check interval=1000;\nevents {}\n", #""check" directive is not allowed here"#, line: 1)
        assertError(inUpstream("check_status;"), #""check_status" directive is not allowed here"#, line: 5)
        assertError(inUpstream("check_shm_size 1M;"), #""check_shm_size" directive is not allowed here"#, line: 5)
        assertError(inHTTP("server {\n  check_shm_size 1M;\n}"), #""check_shm_size" directive is not allowed here"#, line: 4)
        assertError(inHTTP("check_status;"), #""check_status" directive is not allowed here"#, line: 3)
        assertError(inHTTP("check_http_send x;"), #""check_http_send" directive is not allowed here"#, line: 3)
        assertError(inHTTP("server {\n  check_http_expect_alive http_2xx;\n}"),
                    #""check_http_expect_alive" directive is not allowed here"#, line: 4)
    }

    func testC17ManyPeersParse() throws {
        // The slab-capacity half of C17 is checked outside Config (Sources/master/SegmentPlan.swift);
        // parsing must accept 4,476 peers and number them in order.
        var servers = ""
        for i in 0..<4476 { servers += "server 127.0.\(i / 250).\(i % 250 + 1):\(10000 + i);\n" }
        let conf = try XCTUnwrap(assertLoads(inHTTP("upstream many {\n" + servers + "check interval=1000;\n}")))
        XCTAssertEqual(conf.checkedPeers.count, 4476)
        XCTAssertEqual(conf.checkedPeers.first?.address, peer("127.0.0.1", 10000))
        XCTAssertEqual(conf.checkedPeers.last?.address, peer("127.0.17.226", 14475))
        XCTAssertEqual(conf.shmSize, 1_048_576)
    }

    func testC18UpstreamMayNotHavePort() {
        assertError(inUpstream("check interval=1000;\n}\nserver {\n  location / {\n    proxy_pass http://u:80;\n  }"),
                    #"upstream "u" may not have port 80"#, line: 9)
    }

    func testC19EmptyHTTPSendIsUnset() throws {
        let c = try XCTUnwrap(check("check type=http;\ncheck_http_send \"\";"))
        XCTAssertEqual(c.httpSend, [])
    }

    // MARK: repeats and ordering

    func testSecondCheckResetsNumbersButKeepsType() throws {
        let c = try XCTUnwrap(check("check interval=1000 fall=1 rise=9 timeout=50 default_down=false port=81 type=http;\ncheck rise=7;"))
        XCTAssertEqual(c.type, .http)
        XCTAssertEqual(c.interval, 30000)
        XCTAssertEqual(c.fall, 5)
        XCTAssertEqual(c.rise, 7)
        XCTAssertEqual(c.timeout, 1000)
        XCTAssertTrue(c.defaultDown)
        XCTAssertEqual(c.port, 0)
        XCTAssertEqual(check("check type=http;\ncheck type=mysql interval=5;")?.type, .mysql)
    }

    func testHTTPSendBeforeOrAfterCheck() throws {
        let payload = Array("HEAD / HTTP/1.0\r\nHost: a\r\n\r\n".utf8)
        let after = try XCTUnwrap(check(#"check type=http;"# + "\n" + #"check_http_send "HEAD / HTTP/1.0\r\nHost: a\r\n\r\n";"#))
        XCTAssertEqual(after.httpSend, payload)
        let before = try XCTUnwrap(check(#"check_http_send "HEAD / HTTP/1.0\r\nHost: a\r\n\r\n";"# + "\n" + #"check type=http;"#))
        XCTAssertEqual(before.httpSend, payload)
        // A later check_http_send replaces an earlier one.
        XCTAssertEqual(check("check type=http;\ncheck_http_send a;\ncheck_http_send b;")?.httpSend, Array("b".utf8))
        // Kept across a second `check`.
        XCTAssertEqual(check("check_http_send x;\ncheck type=http;\ncheck interval=5;")?.httpSend, Array("x".utf8))
    }

    func testHTTPSendKeepsUnknownEscapes() throws {
        let c = try XCTUnwrap(check(#"check type=http; check_http_send "GET /a\x20b HTTP/1.0\r\n\r\n";"#))
        XCTAssertEqual(c.httpSend, Array(#"GET /a\x20b HTTP/1.0"#.utf8) + [13, 10, 13, 10])
    }

    func testExpectAliveUnionAcrossDirectives() throws {
        let c = try XCTUnwrap(check("check_http_expect_alive http_2xx;\ncheck type=http;\ncheck_http_expect_alive http_4xx HTTP_5XX;"))
        XCTAssertEqual(c.expectAlive, [.http2xx, .http4xx, .http5xx])
        XCTAssertEqual(c.effectiveExpectAlive, [.http2xx, .http4xx, .http5xx])
        // A value repeated across directives is a duplicate too.
        let conf = try XCTUnwrap(assertLoads(inUpstream("check type=http;\ncheck_http_expect_alive http_3xx;\ncheck_http_expect_alive http_3xx;")))
        XCTAssertEqual(conf.warnings.map(\.description), [#"duplicate value "http_3xx" in /conf/vigil.conf:7"#])
        XCTAssertEqual(conf.warnings.map(\.level), [.warn])
    }

    func testFastCGIParamsReplaceTheDefaults() throws {
        XCTAssertNil(check("check type=fastcgi;")?.fastcgiParams)
        let c = try XCTUnwrap(check("check_fastcgi_param REQUEST_METHOD HEAD;\ncheck type=fastcgi;\ncheck_fastcgi_param SCRIPT_FILENAME /ping.php;"))
        let params = try XCTUnwrap(c.fastcgiParams)
        XCTAssertEqual(params.map { $0.0 }, ["REQUEST_METHOD", "SCRIPT_FILENAME"])
        XCTAssertEqual(params.map { $0.1 }, ["HEAD", "/ping.php"])
    }

    func testCompanionsWithoutCheckDoNotRegisterTheUpstream() throws {
        let conf = try XCTUnwrap(assertLoads(inUpstream("check_http_send x;\ncheck_http_expect_alive http_2xx;\ncheck_keepalive_requests 3;")))
        XCTAssertNil(conf.http?.upstream(named: "u")?.check)
        XCTAssertTrue(conf.checkedPeers.isEmpty)
    }

    func testCheckAddressUsesPort() throws {
        let conf = try XCTUnwrap(assertLoads(inUpstream("check port=8081;")))
        let p = try XCTUnwrap(conf.checkedPeers.first)
        XCTAssertEqual(p.address, peer("127.0.0.1", 9000))
        XCTAssertEqual(p.checkAddress, peer("127.0.0.1", 8081))
        let noPort = try XCTUnwrap(assertLoads(inUpstream("check type=tcp;")))
        XCTAssertEqual(noPort.checkedPeers.first?.checkAddress, peer("127.0.0.1", 9000))
    }
}

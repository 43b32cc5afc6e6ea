import XCTest
@testable import Config

/// The ssl_*, proxy_ssl_* and check_ssl_* directives: values, inheritance, nginx's messages with file:line.
/// `inHTTP(body)`: line N of body is line N + 2 of the file.
final class SSLDirectiveTests: XCTestCase {
    private func server(_ http: String, file: StaticString = #filePath, line: UInt = #line) -> Server? {
        assertLoads(inHTTP(http), file: file, line: line)?.http?.servers.first
    }

    func testListenSSLAndCertificatesRelativeToTheConfigDirectory() throws {
        let s = try XCTUnwrap(server("""
            ssl_session_cache shared:SSL:10m;
            server { listen 127.0.0.1:8443 ssl default_server; ssl_certificate a.crt; ssl_certificate_key a.key;
                     ssl_certificate /etc/b.crt; ssl_certificate_key /etc/b.key; }
            """))
        XCTAssertTrue(s.listens[0].ssl)
        XCTAssertTrue(s.listens[0].defaultServer)
        XCTAssertEqual(s.settings.ssl.certificates.map(\.path), ["/conf/a.crt", "/etc/b.crt"])
        XCTAssertEqual(s.settings.ssl.certificateKeys.map(\.path), ["/conf/a.key", "/etc/b.key"])
        XCTAssertEqual(s.settings.ssl.certificates.first?.location.line, 4)
        XCTAssertEqual(s.settings.ssl.sessionCache, .shared(name: "SSL", size: 10 << 20))
    }

    func testSSLOnAnyListenOfAnAddressMakesItTLS() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            server { listen 127.0.0.1:8443; }
            server { listen 127.0.0.1:8443 ssl; }
            """)))
        XCTAssertEqual(conf.listenAddresses.map(\.ssl), [true])
    }

    func testSessionCacheForms() throws {
        func cache(_ v: String) -> SessionCacheSetting? { server("ssl_session_cache \(v);\nserver {}")?.settings.ssl.sessionCache }
        XCTAssertEqual(cache("off"), .off)
        XCTAssertEqual(cache("none"), SessionCacheSetting.none)
        XCTAssertEqual(cache("builtin"), .builtin(size: 20480))
        XCTAssertEqual(cache("builtin:1000"), .builtin(size: 1000))
        XCTAssertEqual(cache("builtin:1000 shared:SSL:1m"), .shared(name: "SSL", size: 1 << 20))
        assertError(inHTTP("ssl_session_cache shared:SSL;"), "invalid session cache \"shared:SSL\"", line: 3)
        assertError(inHTTP("ssl_session_cache off builtin;"), "invalid session cache \"off\"", line: 3)
        assertError(inHTTP("ssl_session_cache whatever;"), "invalid session cache \"whatever\"", line: 3)
        assertError(inHTTP("ssl_session_cache shared:SSL:4k;"), "session cache \"shared:SSL:4k\" is too small", line: 3)
    }

    func testValuesAndDuplicates() throws {
        let s = try XCTUnwrap(server("""
            ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers HIGH:!aNULL; ssl_prefer_server_ciphers on;
            ssl_session_timeout 10m; ssl_session_tickets off; ssl_password_file pass.txt;
            server {}
            """))
        XCTAssertEqual(s.settings.ssl.protocols, ["TLSv1.2", "TLSv1.3"])
        XCTAssertEqual(s.settings.ssl.ciphers, "HIGH:!aNULL")
        XCTAssertEqual(s.settings.ssl.preferServerCiphers, true)
        XCTAssertEqual(s.settings.ssl.sessionTimeout, 600_000)
        XCTAssertEqual(s.settings.ssl.sessionTickets, false)
        XCTAssertEqual(s.settings.ssl.passwordFile?.path, "/conf/pass.txt")
        assertError(inHTTP("ssl_protocols TLSv1.2 TLSv1.4;"), "invalid value \"TLSv1.4\"", line: 3)
        assertError(inHTTP("ssl_session_tickets maybe;"),
                    "invalid value \"maybe\" in \"ssl_session_tickets\" directive, it must be \"on\" or \"off\"", line: 3)
        assertError(inHTTP("ssl_ciphers A;\nssl_ciphers B;"), "\"ssl_ciphers\" directive is duplicate", line: 4)
        assertError(inHTTP("server { location / { ssl_certificate a.crt; } }"), "\"ssl_certificate\" directive is not allowed here", line: 3)
    }

    func testCertificatesInheritAsAPair() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            ssl_certificate a.crt; ssl_certificate_key a.key;
            server { listen 443 ssl; }
            server { listen 444 ssl; ssl_certificate b.crt; ssl_certificate_key b.key; }
            """)))
        XCTAssertEqual(conf.http?.servers[0].settings.ssl.certificates.map(\.path), ["/conf/a.crt"])
        XCTAssertEqual(conf.http?.servers[1].settings.ssl.certificates.map(\.path), ["/conf/b.crt"])
        XCTAssertEqual(conf.http?.servers[1].settings.ssl.certificateKeys.map(\.path), ["/conf/b.key"])
    }

    func testHTTPSUpstreamsAndProxySSL() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            upstream app { server 127.0.0.1:8443; }
            proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.crt;
            server { location / { proxy_pass https://app; proxy_ssl_server_name on; proxy_ssl_name api.test;
                                  proxy_ssl_session_reuse off; proxy_ssl_protocols TLSv1.3; proxy_ssl_verify_depth 2; }
                     location /x { proxy_pass https://127.0.0.1; } }
            """)))
        let locations = try XCTUnwrap(conf.http?.servers.first?.locations)
        guard case .proxy(let pass) = locations[0].content else { return XCTFail("no proxy_pass") }
        XCTAssertEqual(pass.scheme, "https")
        let s = locations[0].settings.proxySSL
        XCTAssertEqual(s.verify, true)
        XCTAssertEqual(s.trustedCertificate?.path, "/conf/ca.crt")
        XCTAssertEqual(s.serverName, true)
        XCTAssertEqual(s.name?.text, "api.test")
        XCTAssertEqual(s.sessionReuse, false)
        XCTAssertEqual(s.protocols, ["TLSv1.3"])
        XCTAssertEqual(s.verifyDepth, 2)
        // A literal https:// address without a port goes to 443.
        guard case .proxy(let literal) = locations[1].content, case .address(let addrs, _) = literal.target else { return XCTFail() }
        XCTAssertEqual(addrs.map(\.port), [443])
    }

    func testHTTPSCheckAndItsCompanions() throws {
        let conf = try XCTUnwrap(assertLoads(inUpstream("""
            check_ssl_server_name api.test;
            check interval=1000 type=https;
            check_ssl_verify on; check_ssl_trusted_certificate /etc/ca.crt;
            """)))
        let c = try XCTUnwrap(conf.http?.upstream(named: "u")?.check)
        XCTAssertEqual(c.type, .https)
        XCTAssertEqual(c.sslServerName, "api.test")
        XCTAssertTrue(c.sslVerify)
        XCTAssertEqual(c.sslTrustedCertificate?.path, "/etc/ca.crt")
        XCTAssertEqual(CheckType.https.code, 6, "codes in the segment stay stable: new types go last")
        assertError(inUpstream("check_ssl_verify yes;"),
                    "invalid value \"yes\" in \"check_ssl_verify\" directive, it must be \"on\" or \"off\"", line: 5)
    }

    func testDeprecatedSSLOnMakesEveryListenTLSWithNginxsWarning() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("server { listen 127.0.0.1:443; listen 127.0.0.1:444;\nssl on; }")))
        XCTAssertEqual(conf.listenAddresses.map(\.ssl), [true, true])
        XCTAssertEqual(conf.warnings.map(\.description),
                       ["the \"ssl\" directive is deprecated, use the \"listen ... ssl\" directive instead in \(confPath):4"])
    }

    func testCurvesDHParamsStaplingAndRefusedDirectives() throws {
        let s = try XCTUnwrap(server("ssl_ecdh_curve X25519:prime256v1; ssl_dhparam dh.pem;\nserver {}"))
        XCTAssertEqual(s.settings.ssl.ecdhCurve, "X25519:prime256v1")
        XCTAssertEqual(s.settings.ssl.dhParam?.path, "/conf/dh.pem")
        let stapling = try XCTUnwrap(assertLoads(inHTTP("ssl_stapling on; ssl_stapling_verify on;")))
        XCTAssertEqual(stapling.warnings.map(\.message), ["\"ssl_stapling\" ignored, not supported by vigil"])
        assertError(inHTTP("server { ssl_verify_client maybe; }"), "invalid value \"maybe\"", line: 3)
        assertError(inHTTP("ssl_conf_command Options -SessionTicket;"), "\"ssl_conf_command\" is not supported by vigil", line: 3)
        assertError(inHTTP("ssl_early_data on;"), "\"ssl_early_data on\" is not supported by vigil", line: 3)
    }

    func testRejectHandshakeAndTicketKeysInheritFromHTTP() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            ssl_reject_handshake on;
            ssl_session_ticket_key old.key; ssl_session_ticket_key /keys/new.key;
            server { listen 443 ssl; }
            server { listen 443; ssl_reject_handshake off; ssl_session_ticket_key only.key; }
            """)))
        let servers = try XCTUnwrap(conf.http?.servers)
        XCTAssertTrue(servers[0].settings.ssl.rejectHandshake)
        XCTAssertEqual(servers[0].settings.ssl.sessionTicketKeys.map(\.path), ["/conf/old.key", "/keys/new.key"])
        XCTAssertEqual(servers[0].settings.ssl.sessionTicketKeys.first?.location.line, 4)
        XCTAssertFalse(servers[1].settings.ssl.rejectHandshake)
        XCTAssertEqual(servers[1].settings.ssl.sessionTicketKeys.map(\.path), ["/conf/only.key"], "a level with its own keys takes none above")
        assertError(inHTTP("ssl_reject_handshake yes;"),
                    "invalid value \"yes\" in \"ssl_reject_handshake\" directive, it must be \"on\" or \"off\"", line: 3)
        assertError(inHTTP("server { location / { ssl_session_ticket_key a.key; } }"),
                    "\"ssl_session_ticket_key\" directive is not allowed here", line: 3)
    }

    func testCertificatesWithVariablesOrDataAndProxyCRL() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            server { listen 443 ssl; ssl_certificate $ssl_server_name.crt; ssl_certificate_key 'data:-----BEGIN KEY-----';
                     location / { proxy_pass https://127.0.0.1; proxy_ssl_certificate $arg_cert.crt; proxy_ssl_certificate_key k.key;
                                  proxy_ssl_crl revoked.crl; } }
            """)))
        let server = try XCTUnwrap(conf.http?.servers.first)
        let cert = try XCTUnwrap(server.settings.ssl.certificates.first)
        XCTAssertEqual(cert.path, "$ssl_server_name.crt", "a name with variables is made absolute per connection")
        XCTAssertEqual(cert.template?.text, "$ssl_server_name.crt")
        XCTAssertEqual(server.settings.ssl.certificateKeys.first?.path, "data:-----BEGIN KEY-----")
        XCTAssertNil(server.settings.ssl.certificateKeys.first?.template)
        let proxy = try XCTUnwrap(server.locations.first).settings.proxySSL
        XCTAssertEqual(proxy.certificate?.template?.text, "$arg_cert.crt")
        XCTAssertEqual(proxy.certificateKey?.path, "/conf/k.key")
        XCTAssertNil(proxy.certificateKey?.template)
        XCTAssertEqual(proxy.crl?.path, "/conf/revoked.crl")
        assertError(inHTTP("server { proxy_ssl_certificate $nope.crt; }"), "unknown \"nope\" variable", line: 3)
        assertError(inHTTP("proxy_ssl_crl a.crl; proxy_ssl_crl b.crl;"), "\"proxy_ssl_crl\" directive is duplicate", line: 3)
    }
}

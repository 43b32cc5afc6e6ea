import Foundation
import TestHarness
import XCTest

/// TLS towards upstreams and checked peers on the real binary, with Debian's nginx and `openssl s_server`.
final class TLSUpstreamTests: TLSTestCase {
    // MARK: upstream TLS (Debian's nginx as the backend)

    /// The backend's log format: connection, reused, SNI, protocol, cipher, client DN, request, Host.
    static let backendLogFormat = """
        log_format up '$connection $ssl_session_reused "$ssl_server_name" $ssl_protocol $ssl_cipher "$ssl_client_s_dn" "$request" "$http_host"';
        access_log logs/access.log up;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:BE:1m;
        """

    /// Backend log lines, split into [connection, reused, "sni", protocol, cipher, "dn", "request", "host"] on spaces
    /// outside quotes.
    func backendLog(_ n: NginxPeer) -> [[String]] {
        n.logLines("access.log").map { line in
            var fields: [String] = [], cur = "", quoted = false
            for ch in line {
                if ch == "\"" { quoted.toggle(); continue }
                if ch == " " && !quoted { fields.append(cur); cur = ""; continue }
                cur.append(ch)
            }
            fields.append(cur)
            return fields
        }
    }

    func testHTTPSUpstreamRoundTripKeepaliveSNIAndSessionReuse() throws {
        try requireNginx()
        let b13 = freePort(), b12 = freePort(), bOff = freePort(), port = freePort()
        let backend = try NginxPeer(http: """
            \(Self.backendLogFormat)
            server {
                listen 127.0.0.1:\(b13) ssl;
                listen 127.0.0.1:\(b12) ssl;
                listen 127.0.0.1:\(bOff) ssl;
                server_name backend.test;
                ssl_certificate \(pki.cert("backend")); ssl_certificate_key \(pki.key("backend"));
                keepalive_requests 1000;
                location / { return 200 "backend $ssl_server_name $http_host\\n"; }
            }
            """, waitFor: [b13, b12, bOff])
        nginxPeers.append(backend)
        let (v, _) = try startVigil("""
            upstream tlsapp { server 127.0.0.1:\(b13); keepalive 4; }
            upstream sniapp { server 127.0.0.1:\(b13); }
            server {
                listen 127.0.0.1:\(port);
                location / {
                    proxy_pass https://tlsapp;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_ssl_server_name on;
                    proxy_ssl_name backend.test;
                }
                location /sni { proxy_pass https://sniapp; proxy_ssl_server_name on; }
                location /direct13 { proxy_pass https://127.0.0.1:\(b13); proxy_ssl_protocols TLSv1.2 TLSv1.3; }
                location /direct12 { proxy_pass https://127.0.0.1:\(b12); proxy_ssl_protocols TLSv1.2; }
                location /noreuse { proxy_pass https://127.0.0.1:\(bOff); proxy_ssl_session_reuse off; }
            }
            """)
        // Keep-alive to the upstream: four client connections, one TLS connection to the backend.
        for _ in 0..<4 {
            let r = try XCTUnwrap(httpGet(port, "/"))
            XCTAssertEqual(r.status, 200, "\(r) \(v.errorLog())")
            XCTAssertEqual(r.body, "backend backend.test tlsapp\n")
        }
        XCTAssertTrue(waitFor(3) { backend.logLines("access.log").count >= 4 })
        let kept = backendLog(backend)
        XCTAssertEqual(kept.count, 4, "\(kept)")
        XCTAssertEqual(Set(kept.map { $0[0] }).count, 1, "keepalive 4 over TLS must reuse one backend connection: \(kept)")
        XCTAssertEqual(kept.map { $0[2] }, Array(repeating: "backend.test", count: 4), "proxy_ssl_name as SNI")
        XCTAssertEqual(kept.first?[6], "GET / HTTP/1.1")

        // proxy_ssl_server_name on without proxy_ssl_name: the upstream's name, as for Host.
        let sni = try XCTUnwrap(httpGet(port, "/sni"))
        XCTAssertEqual(sni.status, 200, v.errorLog())
        XCTAssertEqual(sni.body, "backend sniapp sniapp\n")
        XCTAssertTrue(waitFor(3) { backend.logLines("access.log").count >= 5 })

        // No keepalive: a connection per request, and the TLS session is resumed (proxy_ssl_session_reuse is on
        // by default), with TLS 1.3 (its session arrives after the handshake) and with TLS 1.2.
        for (path, proto) in [("/direct13", "TLSv1.3"), ("/direct12", "TLSv1.2")] {
            let start = backend.logLines("access.log").count
            for _ in 0..<3 {
                let r = try XCTUnwrap(httpGet(port, path))
                XCTAssertEqual(r.status, 200, "\(path): \(r) \(v.errorLog())")
                XCTAssertTrue(r.body.hasPrefix("backend  127.0.0.1:"), "no SNI by default: \(r.body)")
            }
            XCTAssertTrue(waitFor(3) { backend.logLines("access.log").count >= start + 3 })
            let lines = Array(backendLog(backend).dropFirst(start))
            XCTAssertEqual(lines.count, 3, "\(lines)")
            XCTAssertEqual(Set(lines.map { $0[0] }).count, 3, "\(path): a connection per request: \(lines)")
            XCTAssertEqual(lines.map { $0[1] }, [".", "r", "r"], "\(path): sessions must be reused: \(lines)")
            XCTAssertEqual(lines.map { $0[3] }, Array(repeating: proto, count: 3), "\(lines)")
            XCTAssertEqual(lines.map { $0[2] }, ["-", "-", "-"], "proxy_ssl_server_name is off by default: \(lines)")
        }
        // proxy_ssl_session_reuse off: every handshake is a full one.
        let start = backend.logLines("access.log").count
        for _ in 0..<3 { XCTAssertEqual(try XCTUnwrap(httpGet(port, "/noreuse")).status, 200) }
        XCTAssertTrue(waitFor(3) { backend.logLines("access.log").count >= start + 3 })
        XCTAssertEqual(backendLog(backend).dropFirst(start).map { $0[1] }, [".", ".", "."], "\(backendLog(backend).dropFirst(start))")
    }

    func testHTTPSUpstreamVerification() throws {
        try requireNginx()
        let ok = freePort(), wrongCA = freePort(), wrongName = freePort(), deep0 = freePort(), deep1 = freePort(), port = freePort()
        let backend = try NginxPeer(http: """
            \(Self.backendLogFormat)
            server {
                listen 127.0.0.1:\(ok) ssl; listen 127.0.0.1:\(wrongCA) ssl; listen 127.0.0.1:\(wrongName) ssl;
                ssl_certificate \(pki.cert("backend")); ssl_certificate_key \(pki.key("backend"));
                location / { return 200 "backend\\n"; }
            }
            server {
                listen 127.0.0.1:\(deep0) ssl; listen 127.0.0.1:\(deep1) ssl;
                ssl_certificate \(pki.cert("deep-chain")); ssl_certificate_key \(pki.key("deep"));
                location / { return 200 "deep\\n"; }
            }
            """, waitFor: [ok, wrongCA, wrongName, deep0, deep1])
        nginxPeers.append(backend)
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                proxy_ssl_verify on;
                proxy_ssl_trusted_certificate \(pki.caCert);
                location /ok { proxy_pass https://127.0.0.1:\(ok); proxy_ssl_name backend.test; }
                location /wrongca {
                    proxy_pass https://127.0.0.1:\(wrongCA);
                    proxy_ssl_name backend.test;
                    proxy_ssl_trusted_certificate \(pki.otherCACert);
                }
                location /wrongname { proxy_pass https://127.0.0.1:\(wrongName); proxy_ssl_name wrong.test; }
                # deep.test is signed by an intermediate: depth 0 allows none, depth 1 one.
                location /deep0 { proxy_pass https://127.0.0.1:\(deep0); proxy_ssl_name deep.test; proxy_ssl_verify_depth 0; }
                location /deep1 { proxy_pass https://127.0.0.1:\(deep1); proxy_ssl_name deep.test; proxy_ssl_verify_depth 1; }
            }
            """)
        let good = try XCTUnwrap(httpGet(port, "/ok"))
        XCTAssertEqual(good.status, 200, v.errorLog())
        XCTAssertEqual(good.body, "backend\n")
        let bad = try XCTUnwrap(httpGet(port, "/wrongca"))
        XCTAssertEqual(bad.status, 502)
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("upstream SSL certificate verify error: (") }, v.errorLog())
        // OpenSSL says 21 for a lone leaf it cannot chain, 20 when a chain stops short; nginx logs whichever it gets.
        let verifyLine = v.errorLog().split(separator: "\n").first { $0.contains("upstream SSL certificate verify error") }.map(String.init) ?? ""
        XCTAssertTrue(verifyLine.contains("[error]"), verifyLine)
        XCTAssertTrue(verifyLine.range(of: #"upstream SSL certificate verify error: \((20:unable to get local issuer certificate|21:unable to verify the first certificate)\) while SSL handshaking to upstream"#,
                                       options: .regularExpression) != nil, verifyLine)
        let name = try XCTUnwrap(httpGet(port, "/wrongname"))
        XCTAssertEqual(name.status, 502)
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("upstream SSL certificate does not match \"wrong.test\" while SSL handshaking to upstream") },
                      v.errorLog())
        let shallow = try XCTUnwrap(httpGet(port, "/deep0"))
        XCTAssertEqual(shallow.status, 502, "an intermediate is one level too deep for proxy_ssl_verify_depth 0")
        let deep = try XCTUnwrap(httpGet(port, "/deep1"))
        XCTAssertEqual(deep.status, 200, v.errorLog())
        XCTAssertEqual(deep.body, "deep\n")
        // Nothing was sent to a backend that failed verification.
        XCTAssertTrue(waitFor(3) { backend.logLines("access.log").count >= 2 })
        usleep(200_000)
        XCTAssertEqual(backendLog(backend).map { $0[6] }, ["GET /ok HTTP/1.0", "GET /deep1 HTTP/1.0"])
    }

    func testHTTPSUpstreamClientCertificateProtocolsAndCiphers() throws {
        try requireNginx()
        let mtls = freePort(), nocert = freePort(), p12 = freePort(), p13 = freePort(), nomatch = freePort(), port = freePort()
        let backend = try NginxPeer(http: """
            \(Self.backendLogFormat)
            server {
                listen 127.0.0.1:\(mtls) ssl; listen 127.0.0.1:\(nocert) ssl;
                ssl_certificate \(pki.cert("backend")); ssl_certificate_key \(pki.key("backend"));
                ssl_verify_client on;
                ssl_client_certificate \(pki.caCert);
                location / { return 200 "client $ssl_client_s_dn\\n"; }
            }
            server {
                listen 127.0.0.1:\(p12) ssl; listen 127.0.0.1:\(p13) ssl; listen 127.0.0.1:\(nomatch) ssl;
                ssl_certificate \(pki.cert("backend")); ssl_certificate_key \(pki.key("backend"));
                location / { return 200 "plain\\n"; }
            }
            """, waitFor: [mtls, nocert, p12, p13, nomatch])
        nginxPeers.append(backend)
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                location /mtls {
                    proxy_pass https://127.0.0.1:\(mtls);
                    proxy_ssl_certificate \(pki.cert("client"));
                    proxy_ssl_certificate_key \(pki.key("client"));
                }
                location /nocert { proxy_pass https://127.0.0.1:\(nocert); }
                location /p12 { proxy_pass https://127.0.0.1:\(p12); proxy_ssl_protocols TLSv1.2; proxy_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256; }
                location /p13 { proxy_pass https://127.0.0.1:\(p13); proxy_ssl_protocols TLSv1.3; }
                # The backend's key is ECDSA: an RSA-only cipher list cannot complete a handshake.
                location /nomatch { proxy_pass https://127.0.0.1:\(nomatch); proxy_ssl_protocols TLSv1.2; proxy_ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256; }
            }
            """)
        let m = try XCTUnwrap(httpGet(port, "/mtls"))
        XCTAssertEqual(m.status, 200, v.errorLog())
        XCTAssertEqual(m.body, "client CN=client.test\n")
        let n = try XCTUnwrap(httpGet(port, "/nocert"))
        XCTAssertEqual(n.status, 400, "nginx's 400 passes through")
        XCTAssertTrue(n.body.contains("No required SSL certificate was sent"), n.body)
        for path in ["/p12", "/p13"] {
            let r = try XCTUnwrap(httpGet(port, path))
            XCTAssertEqual(r.status, 200, "\(path) \(v.errorLog())")
        }
        let failed = try XCTUnwrap(httpGet(port, "/nomatch"))
        XCTAssertEqual(failed.status, 502)
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("SSL_do_handshake() failed") && v.errorLog().contains("while SSL handshaking to upstream") },
                      v.errorLog())
        XCTAssertTrue(waitFor(3) { backend.logLines("access.log").count >= 4 })
        let log = Dictionary(backendLog(backend).map { ($0[6], $0) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(log["GET /mtls HTTP/1.0"]?[5], "CN=client.test")
        XCTAssertEqual(log["GET /p12 HTTP/1.0"].map { [$0[3], $0[4]] }, ["TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"], "\(log)")
        XCTAssertEqual(log["GET /p13 HTTP/1.0"]?[3], "TLSv1.3", "\(log)")
        XCTAssertNil(log["GET /nomatch HTTP/1.0"])
    }

    // MARK: checks over TLS

    func testHTTPSChecksAgainstOpenSSLServerAndNginx() throws {
        try requireNginx()
        let sserver = freePort(), busy = freePort(), port = freePort()
        let server = try spawnProcess(Tools.openssl, ["s_server", "-www", "-accept", "127.0.0.1:\(sserver)",
                                                      "-cert", pki.cert("backend"), "-key", pki.key("backend")])
        children.append(server)
        XCTAssertTrue(waitFor(10) { canConnect(sserver) }, "openssl s_server did not start")
        let nginx = try NginxPeer(http: """
            server {
                listen 127.0.0.1:\(busy) ssl;
                ssl_certificate \(pki.cert("backend")); ssl_certificate_key \(pki.key("backend"));
                location / { return 503; }
            }
            """, waitFor: [busy])
        nginxPeers.append(nginx)
        // A plain HTTP speaker: its answer is no TLS record.
        let plain = try RawServer(.reply(Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8)))
        defer { plain.stop() }
        let (v, _) = try startVigil("""
            upstream app {
                server 127.0.0.1:\(sserver);
                server 127.0.0.1:\(busy);
                server 127.0.0.1:\(plain.port);
                check interval=500 rise=1 fall=1 timeout=1000 type=https;
                check_http_send "GET / HTTP/1.0\\r\\n\\r\\n";
                check_http_expect_alive http_2xx http_3xx;
            }
            server {
                listen 127.0.0.1:\(port);
                location /status { check_status csv; }
            }
            """)
        XCTAssertTrue(waitFor(8) { self.states(port) == ["up", "down", "down"] }, "\(statusRows(port)) \(v.errorLog())")
        XCTAssertEqual(statusRows(port).map { $0.count > 6 ? $0[6] : "?" }, ["https", "https", "https"])
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("SSL_do_handshake() failed") }, "the plain peer fails the handshake: \(v.errorLog())")
        let peers = (v.shmdumpJSON()["peers"] as? [[String: Any]]) ?? []
        XCTAssertEqual(peers.map { $0["state"] as? String }, ["up", "down", "down"], "\(peers)")
        // Stop s_server: down.
        stopProcess(server)
        XCTAssertTrue(waitFor(8) { self.states(port) == ["down", "down", "down"] }, "\(statusRows(port))")
        // Failed handshakes are ordinary check failures: no worker may die over one.
        XCTAssertFalse(v.errorLog().contains("[alert]"), v.errorLog())
        XCTAssertFalse(v.errorLog().contains("exited on signal"), v.errorLog())
    }

    func testHTTPSCheckVerificationAndServerName() throws {
        try requireNginx()
        let named = freePort(), unnamed = freePort(), wrongCA = freePort(), port = freePort()
        // 200 only to a client that sent SNI backend.test (a Host-less request goes to the default server,
        // whatever the SNI, so the check must be told apart by $ssl_server_name).
        let nginx = try NginxPeer(http: """
            server {
                listen 127.0.0.1:\(named) ssl; listen 127.0.0.1:\(unnamed) ssl; listen 127.0.0.1:\(wrongCA) ssl;
                ssl_certificate \(pki.cert("backend")); ssl_certificate_key \(pki.key("backend"));
                location / {
                    if ($ssl_server_name != "backend.test") { return 503; }
                    return 200 "ok\\n";
                }
            }
            """, waitFor: [named, unnamed, wrongCA])
        nginxPeers.append(nginx)
        func upstream(_ name: String, _ p: UInt16, _ extra: String) -> String {
            """
            upstream \(name) {
                server 127.0.0.1:\(p);
                check interval=500 rise=1 fall=1 timeout=1000 type=https;
                check_http_send "GET / HTTP/1.0\\r\\n\\r\\n";
                check_http_expect_alive http_2xx http_3xx;
                \(extra)
            }
            """
        }
        let (v, _) = try startVigil("""
            \(upstream("named", named, "check_ssl_server_name backend.test; check_ssl_verify on; check_ssl_trusted_certificate \(pki.caCert);"))
            \(upstream("unnamed", unnamed, ""))
            \(upstream("wrongca", wrongCA, "check_ssl_server_name backend.test; check_ssl_verify on; check_ssl_trusted_certificate \(pki.otherCACert);"))
            server {
                listen 127.0.0.1:\(port);
                location /status { check_status csv; }
            }
            """)
        func byUpstream() -> [String: String] {
            Dictionary(statusRows(port).filter { $0.count > 3 }.map { ($0[1], $0[3]) }, uniquingKeysWith: { a, _ in a })
        }
        XCTAssertTrue(waitFor(8) { byUpstream() == ["named": "up", "unnamed": "down", "wrongca": "down"] }, "\(statusRows(port)) \(v.errorLog())")
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("certificate verify failed") }, v.errorLog())
        let peers = (v.shmdumpJSON()["peers"] as? [[String: Any]]) ?? []
        let wrong = peers.first { ($0["upstream"] as? String) == "wrongca" }
        XCTAssertFalse((wrong?["last_reason"] as? String ?? "").isEmpty, "the verify failure is the peer's last reason: \(peers)")
        XCTAssertFalse(v.errorLog().contains("[alert]"), v.errorLog())
        XCTAssertFalse(v.errorLog().contains("exited on signal"), v.errorLog())
    }
}

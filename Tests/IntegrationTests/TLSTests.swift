import Foundation
import TestHarness
import XCTest

/// TLS towards clients on the real binary: termination, SNI, certificates, protocols, sessions, the request
/// path over TLS and bad input.
final class TLSTests: TLSTestCase {
    // MARK: client side: termination, SNI, certificate choice, protocols

    func testRoundTripWithCurlNextToAPlainListener() throws {
        try requireCurl()
        let tls = freePort(), plain = freePort()
        try startVigil("""
            server {
                listen 127.0.0.1:\(plain);
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                ssl_protocols TLSv1.2 TLSv1.3;
                \(certs("a-rsa"))
                location / { return 200 "ok\\n"; }
            }
            """)
        for flags in [[], ["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]] {
            let r = curl("https://a.test:\(tls)/", flags)
            XCTAssertEqual(r.code, 200, "\(flags): \(r)")
            XCTAssertEqual(r.body, "ok\n", "\(flags): \(r)")
        }
        // localhost is among the certificate's names too.
        let local = curl("https://localhost:\(tls)/any/path")
        XCTAssertEqual(local.code, 200, "\(local)")
        // The same server still answers plain HTTP on its plain listener.
        let p = try XCTUnwrap(httpGet(plain, "/"))
        XCTAssertEqual(p.status, 200)
        XCTAssertEqual(p.body, "ok\n")
        // curl trusting only an unrelated CA refuses the certificate (exit 60): the chain is the test CA's.
        let untrusted = curl("https://a.test:\(tls)/", cacert: pki.otherCACert)
        XCTAssertEqual(untrusted.run.status, 60, "\(untrusted)")
    }

    func testSNIChoosesTheServerBlockAndItsCertificate() throws {
        try requireCurl()
        let tls = freePort()
        try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                \(certs("a-rsa"))
                location / { return 200 "a\\n"; }
            }
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name b.test;
                \(certs("b"))
                location / { return 200 "b\\n"; }
            }
            """)
        for name in ["a.test", "b.test"] {
            let r = sClient(port: tls, ["-servername", name, "-CAfile", pki.caCert, "-verify_hostname", name],
                            request: "GET / HTTP/1.0\r\nHost: \(name)\r\n\r\n")
            XCTAssertEqual(r.subjectCN, name, "\(r)")
            XCTAssertEqual(r.verifyCode, 0, "the chain must verify for \(name): \(r)")
            XCTAssertEqual(r.httpStatusLines, ["HTTP/1.1 200 OK"], "\(r)")
            let c = curl("https://\(name):\(tls)/")
            XCTAssertEqual(c.code, 200, "\(c)")
            XCTAssertEqual(c.body, name == "a.test" ? "a\n" : "b\n", "\(c)")
        }
        // No SNI, or a name no server has: the default server (the first) and its certificate.
        XCTAssertEqual(sClient(port: tls, ["-noservername"]).subjectCN, "a.test")
        XCTAssertEqual(sClient(port: tls, ["-servername", "unknown.test"]).subjectCN, "a.test")
    }

    func testRSAOrECDSACertificateByWhatTheClientOffers() throws {
        let tls = freePort()
        try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                ssl_protocols TLSv1.2 TLSv1.3;
                \(certs("a-rsa", "a-ec"))
                location / { return 200 "ok\\n"; }
            }
            """)
        let cases: [([String], Int)] = [
            (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], 2048),
            (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], 256),
            (["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"], 2048),
            (["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"], 256),
        ]
        for (flags, bits) in cases {
            let r = sClient(port: tls, flags + ["-servername", "a.test", "-CAfile", pki.caCert])
            XCTAssertEqual(r.serverKeyBits, bits, "\(flags): \(r)")
            XCTAssertEqual(r.subjectCN, "a.test", "\(flags)")
            XCTAssertEqual(r.verifyCode, 0, "\(flags): \(r)")
            XCTAssertEqual(r.httpStatusLines, ["HTTP/1.1 200 OK"], "\(flags): \(r)")
            if flags[0] == "-tls1_2" { XCTAssertEqual(r.cipher, flags[2], "\(r)") }
        }
    }

    func testProtocolsCiphersAndServerPreference() throws {
        try requireCurl()
        let preferServer = freePort(), preferClient = freePort()
        let common = """
            ssl_protocols TLSv1.2;
            ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;
            \(certs("a-rsa"))
            location / { return 200 "ok\\n"; }
            """
        try startVigil("""
            server { listen 127.0.0.1:\(preferServer) ssl; ssl_prefer_server_ciphers on; \(common) }
            server { listen 127.0.0.1:\(preferClient) ssl; ssl_prefer_server_ciphers off; \(common) }
            """)
        // OpenSSL's client lists AES256-GCM before AES128-GCM: the server's order wins only when preferred.
        let s = sClient(port: preferServer, [])
        XCTAssertEqual(s.protocolName, "TLSv1.2", "\(s)")
        XCTAssertEqual(s.cipher, "ECDHE-RSA-AES128-GCM-SHA256", "\(s)")
        let c = sClient(port: preferClient, [])
        XCTAssertEqual(c.protocolName, "TLSv1.2", "\(c)")
        XCTAssertEqual(c.cipher, "ECDHE-RSA-AES256-GCM-SHA384", "\(c)")
        // TLS 1.3 only, or only ciphers the server does not allow: no handshake, no response.
        let v13 = sClient(port: preferServer, ["-tls1_3"])
        XCTAssertNotEqual(v13.protocolName, "TLSv1.3", "\(v13)")
        XCTAssertEqual(v13.httpStatusLines, [], "\(v13)")
        let chacha = sClient(port: preferServer, ["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"])
        XCTAssertEqual(chacha.httpStatusLines, [], "\(chacha)")
        let curl13 = curl("https://a.test:\(preferServer)/", ["--tlsv1.3"])
        XCTAssertEqual(curl13.run.status, 35, "curl: TLS handshake failure expected: \(curl13)")
    }

    func testEncryptedKeyWithPasswordFile() throws {
        try requireCurl()
        let tls = freePort()
        // password.txt's first line is wrong: like nginx, each line is tried in turn.
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                ssl_certificate \(pki.cert("a-rsa"));
                ssl_certificate_key \(pki.encryptedKey);
                ssl_password_file \(pki.passwordFile);
                location / { return 200 "ok\\n"; }
            }
            """)
        let r = curl("https://a.test:\(tls)/")
        XCTAssertEqual(r.code, 200, "\(r) \(v.errorLog())")
        XCTAssertEqual(r.body, "ok\n")
        // Only wrong passphrases: -t fails on the key.
        try v.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(freePort()) ssl;
                ssl_certificate \(pki.cert("a-rsa"));
                ssl_certificate_key \(pki.encryptedKey);
                ssl_password_file \(pki.badPasswordFile);
            }
            """))
        let t = v.vigil(["-t"])
        XCTAssertEqual(t.status, 1, t.stderr)
        XCTAssertTrue(t.stderr.contains("[emerg] cannot load certificate key \"\(pki.encryptedKey)\""), t.stderr)
    }

    // MARK: sessions

    /// `sessions` configures resumption; every reconnect must be resumed, and resumed connections must land on
    /// both workers, so a session made on one is resumed on the other.
    ///
    /// Which worker accepts is not random: `reuseport` does not give each worker a socket of its own in Vigil (the
    /// master opens one socket per address and every worker inherits it), and Linux hands each EPOLLEXCLUSIVE
    /// wake-up to the idle worker that registered the listener first, which re-registers every 16 accepts. One
    /// connection at a time therefore lands in runs of 16 on each worker. A fixed 16 reconnects only worked when
    /// the first connection started the run (it and 15 reconnects on one worker, the 16th on the other); when the
    /// first worker was not yet idle in epoll_wait for the first connection, the other one took it and all 16
    /// reconnects made a run on the first. So: reconnect until both workers have resumed a session (at least 6
    /// times, at most `maxReconnects`; a run is 16 long, so that bound is only reached when something is wrong).
    func checkResumptionAcrossWorkers(_ sessions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let tls = freePort()
        let (v, master) = try startVigil(workers: 2, """
            log_format reuse '$pid $ssl_session_reused $ssl_protocol';
            server {
                listen 127.0.0.1:\(tls) ssl reuseport;
                server_name a.test;
                ssl_protocols TLSv1.2 TLSv1.3;
                \(certs("a-rsa"))
                \(sessions)
                access_log logs/tls.log reuse;
                location / { return 200 "ok\\n"; }
            }
            """, file: file, line: line)
        let workers = Set(v.waitForWorkers(master, count: 2).map(String.init))
        XCTAssertEqual(workers.count, 2, file: file, line: line)
        for proto in ["-tls1_3", "-tls1_2"] {
            let expectedProtocol = proto == "-tls1_3" ? "TLSv1.3" : "TLSv1.2"
            let session = scratch + "/session" + proto
            let logStart = logLines(v, "tls.log").count
            let first = sClient(port: tls, [proto, "-servername", "a.test", "-sess_out", session])
            XCTAssertEqual(first.reused, false, "\(proto) first connection: \(first)", file: file, line: line)
            XCTAssertEqual(first.protocolName, expectedProtocol, "\(first)", file: file, line: line)
            XCTAssertEqual(first.httpStatusLines, ["HTTP/1.1 200 OK"], "\(first)", file: file, line: line)
            var resumedOn = Set<String>()
            var attempts = 0
            let maxReconnects = 100
            while attempts < maxReconnects && !(attempts >= 6 && resumedOn.isSuperset(of: workers)) {
                let r = sClient(port: tls, [proto, "-servername", "a.test", "-sess_in", session])
                attempts += 1
                guard r.reused == true, r.httpStatusLines == ["HTTP/1.1 200 OK"] else {
                    XCTFail("\(proto) reconnect \(attempts) was not resumed: \(r)\nlog: \(logLines(v, "tls.log"))", file: file, line: line)
                    break
                }
                XCTAssertTrue(waitFor(3) { self.logLines(v, "tls.log").count >= logStart + 1 + attempts }, file: file, line: line)
                let fields = (logLines(v, "tls.log").last ?? "").split(separator: " ").map(String.init)
                if fields.count == 3 && fields[1] == "r" { resumedOn.insert(fields[0]) }
            }
            let lines = Array(logLines(v, "tls.log").dropFirst(logStart))
            XCTAssertEqual(lines.count, 1 + attempts, "\(lines)", file: file, line: line)
            XCTAssertEqual(lines.first.map { Array($0.split(separator: " ").dropFirst()) }, [".", Substring(expectedProtocol)],
                           "the first handshake is a full one: \(lines)", file: file, line: line)
            for l in lines.dropFirst() {
                XCTAssertEqual(Array(l.split(separator: " ").dropFirst()), ["r", Substring(expectedProtocol)], "\(lines)", file: file, line: line)
            }
            XCTAssertEqual(resumedOn, workers, "\(proto): sessions must resume on every worker (\(attempts) reconnects): \(lines)",
                           file: file, line: line)
        }
    }

    func testSessionResumptionThroughTheSharedCacheAcrossWorkers() throws {
        try checkResumptionAcrossWorkers("ssl_session_tickets off; ssl_session_cache shared:SSL:1m; ssl_session_timeout 10m;")
    }

    func testSessionTicketsResumeAcrossWorkers() throws {
        // Tickets on (the default) and no cache: the ticket key must be the same in every worker.
        try checkResumptionAcrossWorkers("ssl_session_tickets on;")
    }

    func testSessionTicketKeyFileResumesAcrossWorkers() throws {
        let key = scratch + "/ticket.key"
        try Data((0..<48).map { UInt8($0) }).write(to: URL(fileURLWithPath: key))
        try checkResumptionAcrossWorkers("ssl_session_ticket_key \(key);")
    }

    func testSessionTimeoutEndsResumption() throws {
        let tls = freePort()
        try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                ssl_protocols TLSv1.2 TLSv1.3;
                \(certs("a-rsa"))
                ssl_session_tickets off;
                ssl_session_cache shared:SSL:1m;
                ssl_session_timeout 2s;
                location / { return 200 "ok\\n"; }
            }
            """)
        let protos = ["-tls1_2", "-tls1_3"]
        for proto in protos {
            let session = scratch + "/session" + proto
            XCTAssertEqual(sClient(port: tls, [proto, "-sess_out", session]).reused, false)
            let again = sClient(port: tls, [proto, "-sess_in", session])
            XCTAssertEqual(again.reused, true, "\(proto) at once: \(again)")
        }
        // OpenSSL keeps session times in whole seconds: a 2 s session lives 2 to 3 s, so it is still there for the
        // reconnects at once (on a slow machine too), and gone 3.5 s after the last one was made.
        usleep(3_500_000)
        for proto in protos {
            let late = sClient(port: tls, [proto, "-sess_in", scratch + "/session" + proto])
            XCTAssertEqual(late.reused, false, "\(proto) after ssl_session_timeout: \(late)")
            XCTAssertEqual(late.httpStatusLines, ["HTTP/1.1 200 OK"], "a full handshake instead: \(late)")
        }
    }

    // MARK: request path over TLS

    func testAccessLogTLSVariables() throws {
        try requireCurl()
        let tls = freePort(), plain = freePort()
        let (v, _) = try startVigil("""
            log_format tls '$scheme $ssl_protocol $ssl_cipher $ssl_server_name $ssl_session_reused $request';
            server {
                listen 127.0.0.1:\(plain);
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                ssl_protocols TLSv1.2 TLSv1.3;
                \(certs("a-rsa"))
                access_log logs/tls.log tls;
                location / { return 200 "ok\\n"; }
            }
            """)
        XCTAssertEqual(curl("https://a.test:\(tls)/one", ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]).code, 200)
        XCTAssertEqual(curl("https://a.test:\(tls)/two", ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"]).code, 200)
        let three = sClient(port: tls, ["-noservername", "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"], request: "GET /three HTTP/1.0\r\n\r\n")
        XCTAssertEqual(three.httpStatusLines, ["HTTP/1.1 200 OK"], "\(three)")
        let session = scratch + "/session"
        let fourA = sClient(port: tls, ["-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384", "-sess_out", session],
                            request: "GET /4a HTTP/1.0\r\n\r\n")
        XCTAssertEqual(fourA.reused, false, "\(fourA)")
        let fourB = sClient(port: tls, ["-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384", "-sess_in", session],
                            request: "GET /4b HTTP/1.0\r\n\r\n")
        XCTAssertEqual(fourB.reused, true, "\(fourB)")
        XCTAssertEqual(try XCTUnwrap(httpGet(plain, "/five")).status, 200)
        XCTAssertTrue(waitFor(3) { self.logLines(v, "tls.log").count >= 6 }, "\(logLines(v, "tls.log"))")
        XCTAssertEqual(logLines(v, "tls.log"), [
            "https TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 a.test . GET /one HTTP/1.1",
            "https TLSv1.3 TLS_AES_128_GCM_SHA256 a.test . GET /two HTTP/1.1",
            "https TLSv1.3 TLS_CHACHA20_POLY1305_SHA256 - . GET /three HTTP/1.0",
            "https TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384 a.test . GET /4a HTTP/1.0",
            "https TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384 a.test r GET /4b HTTP/1.0",
            "http - - - - GET /five HTTP/1.0",
        ])
    }

    /// `$ssl_curve`, the group the key exchange used, and `$ssl_curves`, those the client offered, by
    /// OpenSSL's names as nginx's ssl_curve.t reads them.
    func testCurveVariables() throws {
        try requireCurl()
        let tls = freePort()
        try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                ssl_ecdh_curve prime256v1;
                \(certs("a-rsa"))
                location / { return 200 "$ssl_curve $ssl_curves\\n"; }
            }
            """)
        for flags in [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]] {
            let r = curl("https://a.test:\(tls)/", flags + ["--curves", "X25519:prime256v1"])
            XCTAssertEqual(r.body, "prime256v1 X25519:prime256v1\n", "\(flags): \(r)")
        }
    }

    func testKeepAliveAndPipeliningOverTLS() throws {
        try requireCurl()
        let tls = freePort()
        let (v, _) = try startVigil("""
            log_format conn '$connection $connection_requests $request';
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                \(certs("a-ec"))
                access_log logs/conn.log conn;
                location /1 { return 200 "one\\n"; }
                location /2 { return 200 "two\\n"; }
                location /3 { return 200 "three\\n"; }
            }
            """)
        // Three URLs in one curl: one connection (num_connects 1, then 0, 0).
        let base = "https://a.test:\(tls)"
        let r = runCommand(Tools.curl, ["-sS", "--max-time", "8", "--cacert", pki.caCert, "--resolve", "a.test:\(tls):127.0.0.1",
                                        "-w", "|%{http_code}:%{num_connects}\n", base + "/1", base + "/2", base + "/3"], timeout: 12)
        XCTAssertEqual(r.stdout, "one\n|200:1\ntwo\n|200:0\nthree\n|200:0\n", r.stderr)
        XCTAssertTrue(waitFor(3) { self.logLines(v, "conn.log").count >= 3 })
        let keepAlive = logLines(v, "conn.log").map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(keepAlive.count, 3, "\(keepAlive)")
        XCTAssertEqual(Set(keepAlive.map { $0[0] }).count, 1, "one connection: \(keepAlive)")
        XCTAssertEqual(keepAlive.map { $0[1] }, ["1", "2", "3"])

        // Pipelining: three requests in one write (one TLS record), answered in order on one connection.
        let pipelined = "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n"
            + "GET /3 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        let p = sClient(port: tls, ["-servername", "a.test", "-quiet"], request: pipelined)
        XCTAssertEqual(p.httpStatusLines, ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"], "\(p)")
        let bodies = p.output.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { ["one", "two", "three"].contains($0) }
        XCTAssertEqual(bodies, ["one", "two", "three"], "\(p)")
        XCTAssertTrue(waitFor(3) { self.logLines(v, "conn.log").count >= 6 })
        let piped = logLines(v, "conn.log").dropFirst(3).map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(piped.count, 3, "\(piped)")
        XCTAssertEqual(Set(piped.map { $0[0] }).count, 1, "one connection: \(piped)")
        XCTAssertNotEqual(piped.first?[0], keepAlive.first?[0])
        XCTAssertEqual(piped.map { $0[1] }, ["1", "2", "3"])
        XCTAssertEqual(piped.map { $0[3] }, ["/1", "/2", "/3"])
    }

    // MARK: bad input

    func testPlainHTTPOnTheSSLPortGetsNginxs400Page() throws {
        try requireCurl()
        let tls = freePort()
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                \(certs("a-rsa"))
                location / { return 200 "ok\\n"; }
            }
            """)
        let c = try HTTPConnection(port: tls)
        try c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try c.readResponse()
        XCTAssertEqual(r.statusLine, "HTTP/1.1 400 Bad Request", r.rawHead)
        XCTAssertTrue(r.text.contains("The plain HTTP request was sent to HTTPS port"), r.text)
        // nginx's page, with Vigil's name in the footer.
        XCTAssertEqual(r.text, "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n"
                       + "<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
                       + "<hr><center>vigil/0.1.0</center>\r\n</body>\r\n</html>\r\n")
        XCTAssertEqual(r.header("Content-Type"), "text/html")
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertTrue(c.peerClosed(within: 3), "the connection is closed after the 400")
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("client sent plain HTTP request to HTTPS port while reading client request headers") },
                      v.errorLog())
        let line = v.errorLog().split(separator: "\n").first { $0.contains("plain HTTP request") }.map(String.init) ?? ""
        XCTAssertTrue(line.contains("[info]"), line)
        // The port still speaks TLS.
        let ok = curl("https://a.test:\(tls)/")
        XCTAssertEqual(ok.code, 200, "\(ok)")
    }

    func testStalledHandshakesAreClosedAfterClientHeaderTimeout() throws {
        try requireCurl()
        let tls = freePort()
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                client_header_timeout 1s;
                \(certs("a-rsa"))
                location / { return 200 "ok\\n"; }
            }
            """)
        let logBefore = v.errorLog().count
        // One client sends nothing; the other the first 43 bytes of a ClientHello whose record says 512.
        let silent = try HTTPConnection(port: tls, timeout: 8)
        let half = try HTTPConnection(port: tls, timeout: 8)
        var hello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]
        hello += (0..<32).map { _ in UInt8.random(in: 0...255) }
        try half.send(hello)
        let start = Date()
        let silentClosed = secondsUntilClosed(silent.fd, since: start, timeout: 6)
        let halfClosed = secondsUntilClosed(half.fd, since: start, timeout: 6)
        XCTAssertNotNil(silentClosed, "a client that sends nothing must be closed")
        XCTAssertNotNil(halfClosed, "a client that stalls in the handshake must be closed")
        for t in [silentClosed, halfClosed].compactMap({ $0 }) {
            XCTAssertGreaterThan(t, 0.7, "closed before client_header_timeout")
            XCTAssertLessThan(t, 4.0, "client_header_timeout 1s")
        }
        // nginx: "[info] ... client timed out (110: Connection timed out) while SSL handshaking", once per connection.
        func added() -> [String] { String(v.errorLog().dropFirst(logBefore)).split(separator: "\n").map(String.init) }
        XCTAssertTrue(waitFor(3) { added().filter { $0.contains("[info]") && $0.contains("timed out") }.count >= 2 }, "\(added())")
        XCTAssertTrue(added().contains { $0.contains("[info]") && $0.contains("client timed out (110: Connection timed out) while SSL handshaking") },
                      "nginx's wording: \(added())")
        for level in ["[alert]", "[crit]", "[emerg]"] {
            XCTAssertFalse(v.errorLog().contains(level), v.errorLog())
        }
        let ok = curl("https://a.test:\(tls)/")
        XCTAssertEqual(ok.code, 200, "\(ok)")
    }

    func testConfigTestReportsCertificateErrorsLikeNginx() throws {
        let v = try Vigil(config: "")
        vigils.append(v)
        let missing = scratch + "/missing.crt", missingKey = scratch + "/missing.key"
        func check(_ server: String, _ message: String, lineOf needle: String, file: StaticString = #filePath, line: UInt = #line) throws {
            try v.write(config: Vigil.config(http: server))
            let r = v.vigil(["-t"])
            XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
            let lines = r.stderr.split(separator: "\n").map(String.init)
            XCTAssertTrue(lines.first?.hasPrefix("vigil: [emerg] " + message) ?? false, r.stderr, file: file, line: line)
            let n = try XCTUnwrap(configLine(v, containing: needle), file: file, line: line)
            XCTAssertTrue(lines.first?.hasSuffix(" in \(v.confPath):\(n)") ?? false, "expected \" in \(v.confPath):\(n)\": \(r.stderr)", file: file, line: line)
            XCTAssertEqual(lines.last, "vigil: configuration file \(v.confPath) test failed", file: file, line: line)
        }
        let port = freePort()
        try check("""
            server {
                listen 127.0.0.1:\(port) ssl;
                ssl_certificate \(missing);
                ssl_certificate_key \(pki.key("a-rsa"));
            }
            """, "cannot load certificate \"\(missing)\"", lineOf: "ssl_certificate \(missing)")
        try check("""
            server {
                listen 127.0.0.1:\(port) ssl;
                ssl_certificate \(pki.cert("a-rsa"));
                ssl_certificate_key \(missingKey);
            }
            """, "cannot load certificate key \"\(missingKey)\"", lineOf: "ssl_certificate_key \(missingKey)")
        // nginx names the line of the server block for this one.
        try check("""
            server {
                listen 127.0.0.1:\(port) ssl;
                location / { return 200; }
            }
            """, "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive", lineOf: "server {")
        // ssl_trusted_certificate is loaded as nginx loads it (for OCSP and client certificates there).
        try check("""
            server {
                listen 127.0.0.1:\(port) ssl;
                \(certs("a-rsa"))
                ssl_trusted_certificate \(missing);
            }
            """, "SSL_CTX_load_verify_locations(\"\(missing)\") failed", lineOf: "ssl_trusted_certificate")
        // Certificates and keys pair up in order; a certificate without its key is an error.
        let noKey = try Vigil(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port) ssl;
                ssl_certificate \(pki.cert("a-rsa"));
                ssl_certificate \(pki.cert("a-ec"));
                ssl_certificate_key \(pki.key("a-rsa"));
            }
            """))
        vigils.append(noKey)
        let nk = noKey.vigil(["-t"])
        XCTAssertEqual(nk.status, 1, nk.stderr)
        XCTAssertTrue(nk.stderr.contains("[emerg] no \"ssl_certificate_key\" is defined for certificate \"\(pki.cert("a-ec"))\""), nk.stderr)
        // And a good one passes.
        try v.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port) ssl;
                \(certs("a-rsa", "a-ec"))
                ssl_session_cache shared:SSL:1m;
                ssl_trusted_certificate \(pki.caCert);
            }
            """))
        let ok = v.vigil(["-t"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stderr.contains("test is successful"), ok.stderr)
    }

    func testReloadWithABadCertificateKeepsServing() throws {
        try requireCurl()
        let tls = freePort()
        func config(_ certLines: String) -> String {
            Vigil.config(http: """
                server {
                    listen 127.0.0.1:\(tls) ssl;
                    server_name a.test;
                    \(certLines)
                    location / { return 200 "ok\\n"; }
                }
                """)
        }
        let (v, master) = try startVigil("""
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                \(certs("a-rsa"))
                location / { return 200 "ok\\n"; }
            }
            """)
        let before = v.waitForWorkers(master, count: 1)
        XCTAssertEqual(curl("https://a.test:\(tls)/").code, 200)
        let missing = scratch + "/gone.crt"
        try v.write(config: config("ssl_certificate \(missing); ssl_certificate_key \(pki.key("a-rsa"));"))
        // `-s reload` may refuse it outright (it parses first); a HUP from elsewhere reaches the master, which
        // must log the error and keep the running configuration.
        let refused = v.vigil(["-s", "reload"])
        if refused.status != 0 {
            XCTAssertTrue(refused.stderr.contains("cannot load certificate \"\(missing)\""), refused.stderr)
        }
        XCTAssertEqual(kill(master, SIGHUP), 0)
        XCTAssertTrue(waitFor(5) { v.errorLog().contains("cannot load certificate \"\(missing)\"") }, v.errorLog())
        usleep(500_000)
        XCTAssertTrue(processAlive(master))
        XCTAssertEqual(childPids(of: master), before, "a failed reload must not replace the workers")
        for _ in 0..<3 {
            let r = curl("https://a.test:\(tls)/")
            XCTAssertEqual(r.code, 200, "\(r)")
            XCTAssertEqual(r.body, "ok\n")
        }
        XCTAssertEqual(sClient(port: tls, ["-servername", "a.test"]).subjectCN, "a.test")
        // A good reload afterwards takes effect: the new certificate is served.
        try v.write(config: config(certs("b")))
        let good = v.vigil(["-s", "reload"])
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertTrue(waitFor(10) { sClient(port: tls, ["-servername", "a.test"], timeout: 5).subjectCN == "b.test" },
                      "the reloaded certificate is not served: \(v.errorLog())")
    }
}

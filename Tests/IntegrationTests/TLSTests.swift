import Foundation
import TestHarness
import XCTest

/// TLS on the real binary, against real TLS peers on 127.0.0.1: `curl` and `openssl s_client` as clients,
/// `openssl s_server -www` and Debian's nginx as upstreams and checked peers. Certificates come from a private
/// PKI the test makes with the openssl CLI (TestPKI). Where the expected behaviour is nginx's, it was checked
/// against Debian's nginx 1.22 with the same configuration.
final class TLSTests: XCTestCase {
    static var sharedPKI: TestPKI?
    static var pkiFailure = ""

    var pki: TestPKI!
    var vigils: [Vigil] = []
    var nginxPeers: [NginxPeer] = []
    var children: [Process] = []
    var scratch = ""

    override class func setUp() {
        super.setUp()
        guard Tools.available(Tools.openssl) else { return }
        do { sharedPKI = try TestPKI() } catch { pkiFailure = "\(error)" }
    }

    override class func tearDown() {
        sharedPKI?.remove()
        sharedPKI = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(Tools.available(Tools.openssl), "openssl is not installed (scripts/install-deps installs it)")
        pki = try XCTUnwrap(Self.sharedPKI, "the test PKI could not be made: \(Self.pkiFailure)")
        scratch = NSTemporaryDirectory() + "vigil-tls-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        for v in vigils { v.cleanup() }
        for n in nginxPeers { n.cleanup() }
        for c in children { stopProcess(c) }
        vigils = []
        nginxPeers = []
        children = []
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func requireCurl() throws {
        try XCTSkipUnless(Tools.available(Tools.curl), "curl is not installed (scripts/install-deps installs it)")
    }

    func requireNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
    }

    // MARK: helpers

    /// Starts Vigil with `http` as the body of the http block.
    @discardableResult
    func startVigil(workers: Int = 1, _ http: String, file: StaticString = #filePath, line: UInt = #line) throws -> (Vigil, Int32) {
        let v = try Vigil(config: Vigil.config(workers: workers, http: http))
        vigils.append(v)
        let master = try v.start(file: file, line: line)
        return (v, master)
    }

    /// `ssl_certificate` / `ssl_certificate_key` lines for the PKI's pairs, in order.
    func certs(_ names: String...) -> String {
        names.map { "ssl_certificate \(pki.cert($0)); ssl_certificate_key \(pki.key($0));" }.joined(separator: "\n")
    }

    struct CurlResult: CustomStringConvertible {
        let code: Int
        let body: String
        let run: RunResult
        var description: String { "curl exit \(run.status), http \(code), body \(body.debugDescription), stderr \(run.stderr)" }
    }

    /// One curl request: `*.test` names resolve to 127.0.0.1, the test CA is trusted (unless `cacert` says otherwise).
    func curl(_ url: String, _ flags: [String] = [], cacert: String? = nil) -> CurlResult {
        let bodyFile = scratch + "/curl-" + UUID().uuidString.prefix(8)
        defer { unlink(bodyFile) }
        var args = ["-sS", "--max-time", "8", "-o", bodyFile, "-w", "%{http_code}", "--cacert", cacert ?? pki.caCert]
        if let u = URL(string: url), let host = u.host, host.hasSuffix(".test"), let port = u.port {
            args += ["--resolve", "\(host):\(port):127.0.0.1"]
        }
        let r = runCommand(Tools.curl, args + flags + [url], timeout: 12)
        let body = (try? String(contentsOfFile: bodyFile, encoding: .utf8)) ?? ""
        return CurlResult(code: Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, body: body, run: r)
    }

    /// The lines of a log file under the instance's logs/ (no empty string after the last newline).
    func logLines(_ v: Vigil, _ name: String) -> [String] {
        ((try? String(contentsOfFile: v.prefix + "/logs/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// 1-based number of the first line of the instance's config that contains `needle`.
    func configLine(_ v: Vigil, containing needle: String) -> Int? {
        let text = (try? String(contentsOfFile: v.confPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains(needle) }.map { $0 + 1 }
    }

    /// Waits until the peer closes `fd` (EOF or reset), discarding anything it sends first; the seconds it took,
    /// or nil if it is still open after `timeout`.
    func secondsUntilClosed(_ fd: Int32, since start: Date, timeout: TimeInterval) -> TimeInterval? {
        var buf = [UInt8](repeating: 0, count: 4096)
        while Date().timeIntervalSince(start) < timeout {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { return Date().timeIntervalSince(start) }
        }
        return nil
    }

    /// The rows of a `check_status csv` page: [index, upstream, name, state, rise, fall, type, port].
    func statusRows(_ port: UInt16) -> [[String]] {
        guard let r = httpGet(port, "/status"), r.status == 200 else { return [] }
        return r.body.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    func states(_ port: UInt16) -> [String] { statusRows(port).map { $0.count > 3 ? $0[3] : "?" } }

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

    /// `sessions` configures resumption; ~6+ resumed connections must all be resumed and land on both workers
    /// (reuseport spreads connections over the workers' own sockets by the client's port).
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
            while attempts < 16 && !(attempts >= 6 && resumedOn.count == 2) {
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
            XCTAssertEqual(resumedOn, workers, "\(proto): sessions must resume on every worker: \(lines)", file: file, line: line)
        }
    }

    func testSessionResumptionThroughTheSharedCacheAcrossWorkers() throws {
        try checkResumptionAcrossWorkers("ssl_session_tickets off; ssl_session_cache shared:SSL:1m; ssl_session_timeout 10m;")
    }

    func testSessionTicketsResumeAcrossWorkers() throws {
        // Tickets on (the default) and no cache: the ticket key must be the same in every worker.
        try checkResumptionAcrossWorkers("ssl_session_tickets on;")
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

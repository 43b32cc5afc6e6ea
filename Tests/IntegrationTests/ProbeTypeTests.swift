import Foundation
import TestHarness
import XCTest

/// Each check type against a real peer of that kind on 127.0.0.1, started by the test:
/// `openssl s_server` (ssl_hello), MariaDB (mysql), php-fpm (fastcgi), and a CPING/CPONG speaker (ajp).
/// Each peer must be up while it serves, down once it stops, and a garbage speaker must be down.
final class ProbeTypeTests: XCTestCase {
    var vigil: Vigil!
    var port: UInt16 = 0
    var children: [Process] = []
    var scratch = ""

    override func setUpWithError() throws {
        port = freePort()
        scratch = NSTemporaryDirectory() + "vigil-peers-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        vigil?.cleanup()
        for p in children where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func requireTool(_ path: String) throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: path), "\(path) is not installed (scripts/install-deps installs it)")
    }

    @discardableResult
    func spawn(_ path: String, _ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        children.append(p)
        return p
    }

    /// Starts Vigil checking `peers` (live first, then a garbage speaker) with the given check line.
    func startVigil(peers: [UInt16], check: String, extra: String = "") throws {
        let servers = peers.map { "server 127.0.0.1:\($0);" }.joined(separator: "\n")
        vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            upstream app {
                \(servers)
                check \(check);
                \(extra)
            }
            server {
                listen 127.0.0.1:\(port);
                location /status { check_status csv; }
                location / { proxy_pass http://app; }
            }
            """))
        _ = try vigil.start()
    }

    func states() -> [String] {
        guard let r = httpGet(port, "/status"), r.status == 200 else { return [] }
        return r.body.split(separator: "\n").map { String($0.split(separator: ",")[3]) }
    }

    func testSSLHelloAgainstOpenSSLServer() throws {
        try requireTool("/usr/bin/openssl")
        let cert = scratch + "/cert.pem", key = scratch + "/key.pem"
        let gen = runCommand("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                                                  "-days", "1", "-keyout", key, "-out", cert])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let tls = freePort()
        let server = try spawn("/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:\(tls)", "-cert", cert, "-key", key, "-quiet", "-naccept", "1000000"])
        XCTAssertTrue(waitFor(10) { canConnect(tls) }, "openssl s_server did not start")
        let garbage = try RawServer(.reply(Array("HTTP/1.1 200 OK\r\n\r\n".utf8) + [UInt8](repeating: 0x41, count: 64)))
        defer { garbage.stop() }
        try startVigil(peers: [tls, garbage.port], check: "interval=300 rise=1 fall=1 timeout=1000 type=ssl_hello")
        XCTAssertTrue(waitFor(8) { self.states() == ["up", "down"] }, "\(states()) \(vigil.errorLog())")
        kill(server.processIdentifier, SIGTERM)
        XCTAssertTrue(waitFor(8) { self.states() == ["down", "down"] }, "\(states())")
    }

    func testAJPAgainstACPongSpeaker() throws {
        // Like a servlet container: the answer comes after the 5-byte CPING. A peer that spoke first and closed
        // raced the probe's send (a reset before the CPING went out is a failed check).
        let cpong = try RawServer(.answerBinary(length: 5, [0x41, 0x42, 0x00, 0x01, 0x09]))
        let wrong = try RawServer(.answerBinary(length: 5, [0x41, 0x42, 0x00, 0x02, 0x09]))
        defer { cpong.stop(); wrong.stop() }
        try startVigil(peers: [cpong.port, wrong.port], check: "interval=300 rise=1 fall=1 timeout=500 type=ajp")
        XCTAssertTrue(waitFor(5) { self.states() == ["up", "down"] }, "\(states())")
        cpong.stop()
        XCTAssertTrue(waitFor(5) { self.states() == ["down", "down"] }, "\(states())")
    }

    func testMySQLAgainstMariaDB() throws {
        try requireTool("/usr/sbin/mariadbd")
        try requireTool("/usr/bin/mariadb-install-db")
        let data = scratch + "/mysql"
        let install = runCommand("/usr/bin/mariadb-install-db", ["--no-defaults", "--datadir=" + data, "--user=root",
                                                                 "--auth-root-authentication-method=normal", "--skip-test-db"], timeout: 120)
        XCTAssertEqual(install.status, 0, install.stdout + install.stderr)
        let db = freePort()
        let server = try spawn("/usr/sbin/mariadbd", ["--no-defaults", "--datadir=" + data, "--user=root", "--bind-address=127.0.0.1",
                                                      "--port=\(db)", "--socket=" + scratch + "/mysql.sock", "--skip-grant-tables",
                                                      "--innodb-buffer-pool-size=16M", "--skip-log-bin", "--pid-file=" + scratch + "/mysql.pid"])
        XCTAssertTrue(waitFor(60) { canConnect(db) }, "mariadbd did not start")
        let notMySQL = try RawServer(.reply([0x05, 0x00, 0x00, 0x01, 0x0a, 0x35]))   // sequence id 1
        defer { notMySQL.stop() }
        try startVigil(peers: [db, notMySQL.port], check: "interval=300 rise=1 fall=1 timeout=1000 type=mysql")
        XCTAssertTrue(waitFor(8) { self.states() == ["up", "down"] }, "\(states()) \(vigil.errorLog())")
        kill(server.processIdentifier, SIGTERM)
        XCTAssertTrue(waitFor(30) { self.states() == ["down", "down"] }, "\(states())")
    }

    func testFastCGIAgainstPHPFPM() throws {
        try requireTool("/usr/sbin/php-fpm8.2")
        let fcgi = freePort()
        let script = scratch + "/index.php"
        try "<?php http_response_code(intval($_GET['code'] ?? 200)); echo 'ok';".write(toFile: script, atomically: true, encoding: .utf8)
        let conf = scratch + "/fpm.conf"
        try """
            [global]
            error_log = \(scratch)/fpm.log
            daemonize = no
            [www]
            listen = 127.0.0.1:\(fcgi)
            pm = static
            pm.max_children = 2
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        let server = try spawn("/usr/sbin/php-fpm8.2", ["-n", "-R", "-F", "-y", conf])
        XCTAssertTrue(waitFor(15) { canConnect(fcgi) }, "php-fpm did not start")
        let garbage = try RawServer(.reply(Array("not fastcgi at all".utf8)))
        defer { garbage.stop() }
        // The script answers 200 without a Status header: up. The garbage speaker: down.
        try startVigil(peers: [fcgi, garbage.port],
                       check: "interval=300 rise=1 fall=1 timeout=1000 type=fastcgi",
                       extra: "check_fastcgi_param REQUEST_METHOD GET; check_fastcgi_param SCRIPT_FILENAME \(script); check_fastcgi_param QUERY_STRING code=200; check_http_expect_alive http_2xx;")
        XCTAssertTrue(waitFor(8) { self.states() == ["up", "down"] }, "\(states()) \(vigil.errorLog())")
        // The same script answering 503 (Status: 503 header) is down under http_2xx.
        vigil.cleanup()
        try startVigil(peers: [fcgi],
                       check: "interval=300 rise=1 fall=1 timeout=1000 type=fastcgi",
                       extra: "check_fastcgi_param REQUEST_METHOD GET; check_fastcgi_param SCRIPT_FILENAME \(script); check_fastcgi_param QUERY_STRING code=503; check_http_expect_alive http_2xx;")
        XCTAssertTrue(waitFor(8) { self.states() == ["down"] }, "\(states())")
        kill(server.processIdentifier, SIGTERM)
    }
}

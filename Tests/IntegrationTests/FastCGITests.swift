import Foundation
import TestHarness
import XCTest

/// fastcgi_pass end to end: Debian's php-fpm behind a checked upstream, configured with Debian's own
/// fastcgi_params and snippets/fastcgi-php.conf; and a raw socket that misbehaves as a FastCGI application.
final class FastCGITests: XCTestCase {
    static let phpFPM = "/usr/sbin/php-fpm8.2"
    var vigil: Vigil!
    var port: UInt16 = 0
    var pools: [Process] = []
    var scratch = ""

    override func setUpWithError() throws {
        port = freePort()
        scratch = NSTemporaryDirectory() + "vigil-fcgi-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: scratch + "/www", withIntermediateDirectories: true)
    }

    override func tearDown() {
        vigil?.cleanup()
        // The masters' workers first: a master killed outright leaves them serving its socket.
        for p in pools where p.isRunning {
            for child in childPids(of: p.processIdentifier) { kill(child, SIGKILL) }
            kill(p.processIdentifier, SIGKILL)
            XCTAssertTrue(waitFor(5) { !p.isRunning }, "php-fpm \(p.processIdentifier) did not exit")
        }
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// A php-fpm pool of its own (`pm = static`) on a free port; fails, not skips, when php-fpm is missing.
    func startPool(_ name: String) throws -> (Process, UInt16) {
        guard FileManager.default.isExecutableFile(atPath: FastCGITests.phpFPM) else {
            XCTFail("\(FastCGITests.phpFPM) is missing: scripts/install-deps installs php-fpm")
            throw XCTSkip("no php-fpm")
        }
        let listen = freePort()
        let conf = "\(scratch)/\(name).conf"
        try """
            [global]
            error_log = \(scratch)/\(name).log
            daemonize = no
            [\(name)]
            listen = 127.0.0.1:\(listen)
            pm = static
            pm.max_children = 2
            catch_workers_output = yes
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FastCGITests.phpFPM)
        p.arguments = ["-n", "-R", "-F", "-y", conf]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        pools.append(p)
        XCTAssertTrue(waitFor(15) { canConnect(listen) }, "php-fpm did not start")
        return (p, listen)
    }

    func states() -> [String] {
        guard let r = httpGet(port, "/status"), r.status == 200 else { return [] }
        return r.body.split(separator: "\n").map { String($0.split(separator: ",")[3]) }
    }

    func testPHPThroughCheckedPoolWithDebianSnippets() throws {
        let (first, a) = try startPool("one")
        let (_, b) = try startPool("two")
        try """
            <?php
            if (isset($_GET['warn'])) { error_log("careful now"); }
            if (isset($_GET['code'])) { http_response_code((int)$_GET['code']); }
            echo $_SERVER['REQUEST_METHOD'], "|", $_SERVER['SCRIPT_NAME'], "|", $_SERVER['PATH_INFO'], "|",
                $_SERVER['QUERY_STRING'], "|", $_SERVER['HTTP_HOST'], "|", $_SERVER['SERVER_SOFTWARE'], "|",
                $_SERVER['HTTP_X_CLIENT'] ?? "", "|", file_get_contents("php://input");
            """.write(toFile: scratch + "/www/index.php", atomically: true, encoding: .utf8)
        vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            upstream php {
                server 127.0.0.1:\(a);
                server 127.0.0.1:\(b);
                keepalive 4;
                check interval=300 rise=1 fall=1 timeout=1000 type=fastcgi;
                check_fastcgi_param REQUEST_METHOD GET;
                check_fastcgi_param SCRIPT_FILENAME \(scratch)/www/index.php;
                check_http_expect_alive http_2xx;
            }
            server {
                listen 127.0.0.1:\(port);
                root \(scratch)/www;
                index index.php;
                location /status { check_status csv; }
                location ~ [^/]\\.php(/|$) {
                    include /etc/nginx/snippets/fastcgi-php.conf;
                    include /etc/nginx/fastcgi_params;
                    fastcgi_pass php;
                    fastcgi_keep_conn on;
                }
            }
            """))
        // Debian's snippet includes fastcgi.conf from the configuration's directory, as nginx resolves it.
        try FileManager.default.copyItem(atPath: "/etc/nginx/fastcgi.conf", toPath: vigil.prefix + "/conf/fastcgi.conf")
        _ = try vigil.start()
        XCTAssertTrue(waitFor(8) { self.states() == ["up", "up"] }, "\(states()) \(vigil.errorLog())")

        let get = try httpExchange(port, getRequest("/index.php/more/path?x=1&warn=1", headers: ["X-Client: me"]))
        XCTAssertEqual(get.status, 200)
        XCTAssertTrue(fullMatch(String(decoding: get.body, as: UTF8.self), #"GET\|/index.php\|/more/path\|x=1&warn=1\|localhost\|nginx/[0-9.]+\|me\|"#),
                      String(decoding: get.body, as: UTF8.self))
        XCTAssertTrue(waitFor(3) { self.vigil.errorLog().contains("FastCGI sent in stderr: \"PHP message: careful now\" while reading response header from upstream") },
                      vigil.errorLog())

        // A value past 127 bytes takes FastCGI's four-byte length.
        let long = String(repeating: "q", count: 300)
        let longGet = try httpExchange(port, getRequest("/index.php?\(long)"))
        XCTAssertTrue(String(decoding: longGet.body, as: UTF8.self).contains("|\(long)|localhost|"), String(decoding: longGet.body, as: UTF8.self))

        let post = try httpExchange(port, "POST /index.php?code=404 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        XCTAssertEqual(post.status, 404)
        XCTAssertNil(post.header("Status"))
        XCTAssertTrue(String(decoding: post.body, as: UTF8.self).hasSuffix("|hello"))
        // The directory's index goes through the PHP location.
        XCTAssertEqual(try httpExchange(port, getRequest("/")).status, 200)

        // One pool dies under load: every request still answers (the next peer takes it), the checker marks it down.
        var failures = 0
        for i in 0..<40 {
            // SIGTERM: php-fpm's master ends its workers at once and closes the socket.
            if i == 10 { kill(first.processIdentifier, SIGTERM) }
            if (try? httpExchange(port, getRequest("/index.php")))?.status != 200 { failures += 1 }
        }
        XCTAssertEqual(failures, 0, vigil.errorLog())
        XCTAssertTrue(waitFor(8) { self.states() == ["down", "up"] }, "\(states())")
    }

    static func record(_ type: UInt8, _ content: [UInt8], id: UInt8 = 1) -> [UInt8] {
        [1, type, 0, id, UInt8(content.count >> 8), UInt8(content.count & 0xff), 0, 0] + content
    }
    static let end = record(3, [0, 0, 0, 0, 0, 0, 0, 0])
    static func stdout(_ s: String) -> [UInt8] { record(6, Array(s.utf8)) }

    /// Bad FastCGI input gets nginx's status and log line, and the worker keeps serving.
    func testMisbehavingApplication() throws {
        let stderrFlood = (0..<2000).flatMap { _ in FastCGITests.record(7, [UInt8](repeating: 0x61, count: 1000)) }
        let apps: [(path: String, bytes: [UInt8])] = [
            // A record whose length claims more than comes before the close, the head unfinished.
            ("/lying", [1, 6, 0, 1, 0, 200, 0, 0] + Array("Status: 200\r\nX-A: b".utf8)),
            // A head that never ends: header lines past fastcgi_buffer_size.
            ("/endless", (0..<100).flatMap { i in FastCGITests.stdout("X-Header-\(i): " + String(repeating: "v", count: 100) + "\r\n") }),
            ("/flood", stderrFlood + FastCGITests.stdout("Content-Type: text/plain\r\n\r\nsurvived") + FastCGITests.record(6, []) + FastCGITests.end),
            ("/version", [2, 6, 0, 1, 0, 0, 0, 0]),
            ("/ended", FastCGITests.end),
            ("/caught", FastCGITests.record(7, Array("FATAL: no database".utf8)) + FastCGITests.stdout("Status: 200\r\n\r\nok") + FastCGITests.end),
            ("/cut", FastCGITests.stdout("Content-Length: 100\r\n\r\n0123456789")),
        ]
        let servers = try apps.map { try RawServer(.fastCGI($0.bytes)) }
        defer { servers.forEach { $0.stop() } }
        let locations = zip(apps, servers).map { app, server in
            "location = \(app.path) { fastcgi_pass 127.0.0.1:\(server.port); fastcgi_catch_stderr FATAL; }"
        }.joined(separator: "\n")
        vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            server {
                listen 127.0.0.1:\(port);
                \(locations)
                location = /alive { return 200 "alive"; }
            }
            """))
        _ = try vigil.start()
        let expected: [(String, Int, String)] = [
            ("/lying", 502, "upstream prematurely closed connection while reading response header from upstream"),
            ("/endless", 502, "upstream sent too big header while reading response header from upstream"),
            ("/flood", 200, "FastCGI sent in stderr: \"aaaa"),
            ("/version", 502, "upstream sent unsupported FastCGI protocol version: 2 while reading response header from upstream"),
            ("/ended", 502, "upstream sent unexpected FastCGI record: 3 while reading response header from upstream"),
            ("/caught", 502, "FastCGI sent in stderr: \"FATAL: no database\""),
        ]
        for (path, status, line) in expected {
            let r = try httpExchange(port, getRequest(path))
            XCTAssertEqual(r.status, status, path)
            if path == "/flood" { XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "survived") }
            XCTAssertTrue(waitFor(3) { self.vigil.errorLog().contains(line) }, "\(path): \(line)")
        }
        // Closed mid-body: the client gets the head and what came, then the connection closes short of the length.
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/cut"))
        let raw = String(decoding: c.readToEOF(), as: UTF8.self)
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 200"), raw)
        XCTAssertTrue(raw.hasSuffix("\r\n\r\n0123456789"), raw)
        XCTAssertTrue(waitFor(3) { self.vigil.errorLog().contains("upstream prematurely closed connection while reading upstream") }, vigil.errorLog())
        XCTAssertEqual(try httpExchange(port, getRequest("/alive")).status, 200)
    }

    /// The request pipeline around a FastCGI response, as around a proxied one: fastcgi_intercept_errors with
    /// error_page, gzip, the access log's upstream variables, hidden and passed headers, X-Accel-Redirect.
    func testPipelineAroundFastCGI() throws {
        let text = String(repeating: "fastcgi body text, ", count: 40)
        let notFound = try RawServer(.fastCGI(FastCGITests.stdout("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nmissing")
                                              + FastCGITests.end))
        let page = try RawServer(.fastCGI(FastCGITests.stdout("Content-Type: text/plain\r\nX-Powered-By: PHP\r\nServer: app\r\n\r\n" + text)
                                          + FastCGITests.end))
        let accel = try RawServer(.fastCGI(FastCGITests.stdout("X-Accel-Redirect: /landed\r\n\r\n") + FastCGITests.end))
        defer { [notFound, page, accel].forEach { $0.stop() } }
        vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            log_format up "$uri $status $upstream_addr $upstream_status $upstream_response_length";
            server {
                listen 127.0.0.1:\(port);
                access_log logs/up.log up;
                gzip on;
                gzip_types text/plain;
                location = /missing { fastcgi_pass 127.0.0.1:\(notFound.port); fastcgi_intercept_errors on; error_page 404 = /caught; }
                location = /page { fastcgi_pass 127.0.0.1:\(page.port); fastcgi_hide_header X-Powered-By; }
                location = /accel { fastcgi_pass 127.0.0.1:\(accel.port); }
                location = /caught { return 200 "caught\n"; }
                location = /landed { return 200 "landed\n"; }
            }
            """))
        _ = try vigil.start()
        let missing = try httpExchange(port, getRequest("/missing"))
        XCTAssertEqual(missing.status, 200)
        XCTAssertEqual(String(decoding: missing.body, as: UTF8.self), "caught\n")
        let gz = try httpExchange(port, getRequest("/page", headers: ["Accept-Encoding: gzip"]))
        XCTAssertEqual(gz.status, 200)
        XCTAssertEqual(gz.header("Content-Encoding"), "gzip")
        XCTAssertNil(gz.header("X-Powered-By"))
        XCTAssertEqual(gz.header("Server"), "app", "a gateway application's Server goes to the client, as nginx's")
        let plain = try httpExchange(port, getRequest("/page"))
        XCTAssertEqual(String(decoding: plain.body, as: UTF8.self), text)
        XCTAssertEqual(String(decoding: try httpExchange(port, getRequest("/accel")).body, as: UTF8.self), "landed\n")
        XCTAssertTrue(waitFor(3) {
            let log = (try? String(contentsOfFile: self.vigil.prefix + "/logs/up.log", encoding: .utf8)) ?? ""
            // The response length is the body's, without the records' framing.
            return log.contains("/caught 200 127.0.0.1:\(notFound.port) 404") && log.contains("/page 200 127.0.0.1:\(page.port) 200 \(text.utf8.count)")
        }, (try? String(contentsOfFile: vigil.prefix + "/logs/up.log", encoding: .utf8)) ?? "")
    }
}

import Foundation
import TestHarness
import XCTest

/// scgi_pass against a raw SCGI application that echoes what it was sent, and uwsgi_pass against Debian's
/// uWSGI running a Python application.
final class SCGIAndUWSGITests: XCTestCase {
    static let uwsgi = "/usr/bin/uwsgi-core"
    var vigil: Vigil!
    var port: UInt16 = 0
    var children: [Process] = []
    var scratch = ""

    override func setUpWithError() throws {
        port = freePort()
        scratch = NSTemporaryDirectory() + "vigil-gw-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        vigil?.cleanup()
        for p in children where p.isRunning {
            for child in childPids(of: p.processIdentifier) { kill(child, SIGKILL) }
            kill(p.processIdentifier, SIGKILL)
            XCTAssertTrue(waitFor(5) { !p.isRunning }, "\(p.processIdentifier) did not exit")
        }
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func testSCGINetstringAndCGIHead() throws {
        // The application answers a CGI head (Status) and, as its body, the request it read.
        let app = try RawServer(.scgi(body: 5) { request in Array("Status: 201 Created\r\nX-App: scgi\r\n\r\n".utf8) + request })
        defer { app.stop() }
        vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            server {
                listen 127.0.0.1:\(port);
                location / {
                    scgi_pass 127.0.0.1:\(app.port);
                    scgi_param REQUEST_METHOD $request_method;
                    scgi_param EMPTY "" if_not_empty;
                    scgi_param QS $query_string if_not_empty;
                    scgi_param HTTP_X_GIVEN given;
                }
            }
            """))
        _ = try vigil.start()
        let r = try httpExchange(port, "POST /x HTTP/1.1\r\nHost: localhost\r\nX-Given: client\r\nX-Two: a\r\nX-Two: b\r\nContent-Length: 5\r\n\r\nhello")
        XCTAssertEqual(r.status, 201)
        XCTAssertEqual(r.header("X-App"), "scgi")
        XCTAssertNil(r.header("Status"))
        let params = "CONTENT_LENGTH\u{0}5\u{0}REQUEST_METHOD\u{0}POST\u{0}HTTP_X_GIVEN\u{0}given\u{0}HTTP_HOST\u{0}localhost\u{0}"
            + "HTTP_X_TWO\u{0}a, b\u{0}HTTP_CONTENT_LENGTH\u{0}5\u{0}"
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "\(params.utf8.count):\(params),hello")
        // A variable's value is written in place: present when it has one, however long.
        let long = String(repeating: "v", count: 300)
        let withQuery = try httpExchange(port, "POST /x?\(long) HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        XCTAssertTrue(String(decoding: withQuery.body, as: UTF8.self).contains("REQUEST_METHOD\u{0}POST\u{0}QS\u{0}\(long)\u{0}HTTP_X_GIVEN"),
                      String(decoding: withQuery.body, as: UTF8.self))
    }

    func testUWSGIPythonApplication() throws {
        guard FileManager.default.isExecutableFile(atPath: SCGIAndUWSGITests.uwsgi) else {
            return XCTFail("\(SCGIAndUWSGITests.uwsgi) is missing: scripts/install-deps installs uwsgi-core and uwsgi-plugin-python3")
        }
        try """
            def application(environ, start_response):
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                start_response("404 Not Here", [("Content-Type", "text/plain"), ("X-Modifier", environ.get("UWSGI_X", ""))])
                return [("%s %s %s %s|" % (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"], environ["HTTP_X_CLIENT"])).encode() + body]
            """.write(toFile: scratch + "/app.py", atomically: true, encoding: .utf8)
        let app = freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: SCGIAndUWSGITests.uwsgi)
        p.arguments = ["--plugin", "python3", "--socket", "127.0.0.1:\(app)", "--wsgi-file", scratch + "/app.py", "--processes", "1",
                       "--die-on-term", "--logto", scratch + "/uwsgi.log"]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        children.append(p)
        XCTAssertTrue(waitFor(15) { canConnect(app) }, "uwsgi did not start: \((try? String(contentsOfFile: scratch + "/uwsgi.log", encoding: .utf8)) ?? "")")
        vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            upstream py { server 127.0.0.1:\(app); }
            server {
                listen 127.0.0.1:\(port);
                location / {
                    include /etc/nginx/uwsgi_params;
                    uwsgi_pass py;
                }
            }
            """))
        _ = try vigil.start()
        let r = try httpExchange(port, "POST /path/here?q=1 HTTP/1.1\r\nHost: localhost\r\nX-Client: me\r\nContent-Length: 4\r\n\r\nbody")
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.header("Content-Type"), "text/plain")
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "POST /path/here q=1 me|body")
        let long = String(repeating: "q", count: 300)
        let longQuery = try httpExchange(port, getRequest("/path/here?\(long)", headers: ["X-Client: me"]))
        XCTAssertEqual(String(decoding: longQuery.body, as: UTF8.self), "GET /path/here \(long) me|")
        // Several in a row on one client connection: each goes on its own upstream connection, closed by the application.
        for _ in 0..<5 { XCTAssertEqual(try httpExchange(port, getRequest("/again", headers: ["X-Client: x"])).status, 404) }
    }
}

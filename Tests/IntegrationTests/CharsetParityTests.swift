import Foundation
import TestHarness
import XCTest

/// `charset`: which responses name it in their Content-Type, side by side with Debian's nginx — static files,
/// `return`, error pages, redirects and proxied responses with and without a charset of their own.
final class CharsetParityTests: XCTestCase {
    func servers(_ port: UInt16, backend: UInt16, root: String) -> String {
        """
        server {
            listen 127.0.0.1:\(backend);
            location /plain { default_type text/html; return 200 "x"; }
            location /koi { default_type "text/html; charset=koi8-r"; return 200 "x"; }
            location /param { default_type "text/plain; format=flowed"; return 200 "x"; }
            location /json { default_type application/json; return 200 "x"; }
            location /UPPER { default_type TEXT/HTML; return 200 "x"; }
        }
        server {
            listen 127.0.0.1:\(port);
            root \(root);
            types { text/html html; text/plain txt; application/json json; application/javascript js; }
            charset utf-8;
            location /up/ { proxy_pass http://127.0.0.1:\(backend)/; }
            location /off/ { alias \(root)/; charset off; }
            location /koi/ { alias \(root)/; charset koi8-r; }
            location = /moved { return 301 /x; }
            location = /found { return 302 /x; }
            location = /see-other { return 303 /x; }
            location = /text { return 200 "t"; }
        }
        """
    }

    func testCharsetLabelsMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let root = NSTemporaryDirectory() + "vigil-charset-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: root + "/dir", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        for name in ["a.html", "a.txt", "a.json", "a.js", "a.bin"] { try "x".write(toFile: root + "/" + name, atomically: true, encoding: .utf8) }
        let vport = freePort(), vbackend = freePort(), nport = freePort(), nbackend = freePort()
        let vigil = try Vigil(config: Vigil.config(http: servers(vport, backend: vbackend, root: root)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: servers(nport, backend: nbackend, root: root), waitFor: [nport, nbackend])
        defer { nginx.cleanup() }

        var differences: [String] = []
        for path in ["/a.html", "/a.txt", "/a.json", "/a.js", "/a.bin", "/missing", "/dir", "/moved", "/found", "/see-other", "/text",
                     "/up/plain", "/up/koi", "/up/param", "/up/json", "/up/UPPER", "/off/a.html", "/koi/a.txt"] {
            let v = try httpExchange(vport, getRequest(path)), n = try httpExchange(nport, getRequest(path))
            if v.status != n.status || v.header("Content-Type") != n.header("Content-Type") {
                differences.append("\(path): vigil \(v.status) \(v.header("Content-Type") ?? "-"), nginx \(n.status) \(n.header("Content-Type") ?? "-")")
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        XCTAssertEqual(try httpExchange(vport, getRequest("/up/plain")).header("Content-Type"), "text/html; charset=utf-8")
    }
}

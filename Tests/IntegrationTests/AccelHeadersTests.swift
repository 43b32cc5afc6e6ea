import Foundation
import TestHarness
import XCTest

/// The X-Accel-* headers an upstream answers with, as nginx acts on them: X-Accel-Redirect (an internal
/// redirect, the headers nginx keeps, unsafe URIs refused) side by side with Debian's nginx, and
/// X-Accel-Limit-Rate and proxy_ignore_headers by their effect on a response's time.
final class AccelHeadersTests: XCTestCase {
    func proxy(port: UInt16, backend: UInt16) -> String {
        """
        server {
            listen 127.0.0.1:\(port);
            location /p/ { proxy_pass http://127.0.0.1:\(backend)/; }
            location /ignoring/ { proxy_pass http://127.0.0.1:\(backend)/; proxy_ignore_headers X-Accel-Redirect; }
            location /files/ { internal; return 200 "file $uri args=$args method=$request_method\\n"; }
            location @named { return 200 "named at $uri\\n"; }
        }
        """
    }

    func testAccelRedirectMatchesNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort(), bport = freePort()
        let backend = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(bport);
                location / {
                    add_header X-Accel-Redirect $arg_to;
                    add_header Content-Type text/x-kept;
                    add_header Set-Cookie "s=1";
                    add_header X-Dropped yes;
                    return 200 "the upstream's body\\n";
                } }
            """))
        defer { backend.cleanup() }
        _ = try backend.start()
        let vigil = try Vigil(config: Vigil.config(http: proxy(port: vport, backend: bport)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: proxy(port: nport, backend: bport), waitFor: [nport])
        defer { nginx.cleanup() }

        let cases: [(String, String)] = [
            ("/p/x?to=/files/a", "GET"), ("/p/x?to=/files/a%3Fb?c=d", "GET"), ("/p/x?to=/files/sp%2520ace", "GET"),
            ("/p/x?to=/files/a", "POST"), ("/p/x?to=/files/a", "HEAD"), ("/p/x?to=@named", "GET"),
            ("/p/x?to=/files/../etc", "GET"), ("/p/x?to=..", "GET"), ("/p/x?to=/files/%2e%2e", "GET"),
            ("/p/x", "GET"), ("/ignoring/x?to=/files/a", "GET"),
        ]
        var differences: [String] = []
        for (path, method) in cases {
            let raw = getRequest(path, headers: ["Connection: close", "Content-Length: 0"], method: method)
            let v = try httpExchange(vport, raw, method: method), n = try httpExchange(nport, raw, method: method)
            if v.status != n.status { differences.append("\(method) \(path): status vigil \(v.status), nginx \(n.status)") }
            for name in ["Content-Type", "Set-Cookie", "X-Dropped"] where v.header(name) != n.header(name) {
                differences.append("\(method) \(path): \(name) vigil \(v.header(name) ?? "-"), nginx \(n.header(name) ?? "-")")
            }
            if n.status == 200 && v.text != n.text { differences.append("\(method) \(path): body vigil \(v.text.debugDescription), nginx \(n.text.debugDescription)") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    /// X-Accel-Limit-Rate: 20000 holds a 60 kB body to about 2 s (the first second's budget goes at once);
    /// proxy_ignore_headers X-Accel-Limit-Rate lets it go at once.
    func testAccelLimitRateAndIgnoreHeaders() throws {
        let port = freePort(), bport = freePort()
        let backend = try Vigil(config: "")
        defer { backend.cleanup() }
        try FileManager.default.createDirectory(atPath: backend.prefix + "/html", withIntermediateDirectories: true)
        try String(repeating: "x", count: 60_000).write(toFile: backend.prefix + "/html/big", atomically: true, encoding: .utf8)
        try backend.write(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(bport); root html; add_header X-Accel-Limit-Rate 20000; }
            """))
        _ = try backend.start()
        let vigil = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(port);
                location /limited/ { proxy_pass http://127.0.0.1:\(bport)/; }
                location /ignored/ { proxy_pass http://127.0.0.1:\(bport)/; proxy_ignore_headers X-Accel-Limit-Rate; } }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        func timed(_ path: String) -> (Int?, TimeInterval) {
            let start = Date()
            let r = httpGet(port, path, timeout: 10)
            return (r?.body.count, Date().timeIntervalSince(start))
        }
        let (limitedSize, limited) = timed("/limited/big")
        XCTAssertEqual(limitedSize, 60_000)
        XCTAssertGreaterThan(limited, 1.5, "X-Accel-Limit-Rate did not hold the response back")
        XCTAssertLessThan(limited, 6)
        let (ignoredSize, ignored) = timed("/ignored/big")
        XCTAssertEqual(ignoredSize, 60_000)
        XCTAssertLessThan(ignored, 1, "proxy_ignore_headers did not ignore X-Accel-Limit-Rate")
        let t = vigil.vigil(["-t"])
        XCTAssertEqual(t.status, 0, t.stderr)
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(port); proxy_ignore_headers X-Bogus; }"))
        XCTAssertTrue(vigil.vigil(["-t"]).stderr.contains("invalid value \"X-Bogus\""))
    }
}

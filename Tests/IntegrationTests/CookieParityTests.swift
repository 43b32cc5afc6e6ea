import Foundation
import TestHarness
import XCTest

/// proxy_cookie_domain, proxy_cookie_path and proxy_cookie_flags on upstream Set-Cookie fields, side by side
/// with Debian's nginx: the same upstream (a `return` server in the same config) sends each cookie, and both
/// proxies must hand the client the same bytes.
final class CookieParityTests: XCTestCase {
    func config(port: UInt16, upstream: UInt16) -> String {
        """
        server {
            listen 127.0.0.1:\(upstream);
            location / { add_header Set-Cookie $arg_c; return 204; }
        }
        server {
            listen 127.0.0.1:\(port);
            location / {
                proxy_pass http://127.0.0.1:\(upstream);
                proxy_cookie_domain .Backend.example $host;
                proxy_cookie_domain ~^(?<sub>\\w+)\\.internal$ $sub.example.com;
                proxy_cookie_path /app/ /;
                proxy_cookie_path ~*^/USERS/(\\d+) /u/$1;
                proxy_cookie_flags session secure httponly samesite=strict;
                proxy_cookie_flags ~^pref nosecure nohttponly nosamesite;
                proxy_cookie_flags other samesite=lax;
            }
            location /off/ {
                proxy_pass http://127.0.0.1:\(upstream)/;
                proxy_cookie_domain off;
                proxy_cookie_path off;
                proxy_cookie_flags off;
            }
        }
        """
    }

    func testSetCookieEditsMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), vup = freePort(), nport = freePort(), nup = freePort()
        let vigil = try Vigil(config: Vigil.config(http: config(port: vport, upstream: vup)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(port: nport, upstream: nup), waitFor: [nport, nup])
        defer { nginx.cleanup() }

        let cookies = ["a=1; Domain=backend.example; Path=/app/x", "a=1; domain=.BACKEND.example", "a=1; Domain=api.internal",
                       "a=1; Path=/users/42/profile", "a=1; Path=/elsewhere; Domain=other.example",
                       "session=abc", "session=abc; Secure; SameSite=None", "session=abc; HttpOnly; samesite=lax; Path=/app/",
                       "prefs=dark; Secure; HttpOnly; SameSite=Lax", "other=1; SameSite=Strict", "other=1",
                       "a=1;Path=/app/;;Domain=backend.example", "broken", "=x; Secure"]
        var differences: [String] = []
        var edited = 0
        for cookie in cookies {
            let query = cookie.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            for path in ["/?c=\(query)", "/off/?c=\(query)"] {
                let request = "GET \(path) HTTP/1.0\r\nHost: www.example.org\r\n\r\n"
                let v = try httpExchange(vport, request), n = try httpExchange(nport, request)
                let vc = v.headers.filter { $0.name.lowercased() == "set-cookie" }.map(\.value)
                let nc = n.headers.filter { $0.name.lowercased() == "set-cookie" }.map(\.value)
                if v.status != n.status || vc != nc {
                    differences.append("\(path) \(cookie): vigil \(v.status) \(vc), nginx \(n.status) \(nc)")
                }
                if nc != [cookie] { edited += 1 }
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        XCTAssertGreaterThan(edited, 8, "the rules must have changed most cookies")
    }

    func testBadCookieDirectivesAreRefusedAsNginxDoes() throws {
        for (line, message) in [("proxy_cookie_path off;\n proxy_cookie_path /a /b;", "\"proxy_cookie_path\" directive is duplicate"),
                                ("proxy_cookie_flags a secure;\n proxy_cookie_flags off;", "\"proxy_cookie_flags\" directive is duplicate"),
                                ("proxy_cookie_domain on;", "invalid parameter \"on\"")] {
            let vigil = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); location / { \(line) } }"))
            defer { vigil.cleanup() }
            let t = vigil.vigil(["-t"])
            XCTAssertEqual(t.status, 1, line)
            XCTAssertTrue(t.stderr.contains(message), "\(line): \(t.stderr)")
        }
    }
}

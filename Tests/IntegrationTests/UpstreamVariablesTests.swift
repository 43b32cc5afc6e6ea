import Foundation
import TestHarness
import XCTest

/// The `$upstream_*` and `$proxy_*` variables, logged by Vigil and by Debian's nginx in front of the same
/// backend: the byte counts, headers and cookies must be equal, the times present where nginx has them and
/// "-" where it has none.
final class UpstreamVariablesTests: XCTestCase {
    func config(port: UInt16, backend: UInt16, log: String) -> String {
        """
        log_format vars '$uri|$upstream_status|$upstream_response_length|$upstream_bytes_received|$upstream_bytes_sent|'
                        '$upstream_http_x_backend|$upstream_cookie_session|$proxy_host|$proxy_port|'
                        '$upstream_connect_time|$upstream_header_time|$upstream_response_time|$upstream_addr';
        upstream pair { server 127.0.0.1:\(backend); server 127.0.0.1:1 down; }
        upstream dead { server 127.0.0.1:1; server 127.0.0.1:2; }
        server {
            listen 127.0.0.1:\(port);
            access_log \(log) vars;
            location / { proxy_pass http://127.0.0.1:\(backend); }
            location /pair/ { proxy_pass http://pair/; }
            location /dead/ { proxy_pass http://dead; }
        }
        """
    }

    func testUpstreamVariablesMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort(), bport = freePort()
        let backend = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(bport);
                location / { add_header X-Backend "b-$uri"; add_header Set-Cookie "Session = s1; Path=/"; return 200 "body of $uri\\n"; } }
            """))
        defer { backend.cleanup() }
        _ = try backend.start()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let vlog = vigil.prefix + "/logs/vars.log"
        try vigil.write(config: Vigil.config(http: config(port: vport, backend: bport, log: vlog)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(port: nport, backend: bport, log: "logs/vars.log"), waitFor: [nport])
        defer { nginx.cleanup() }

        for path in ["/a", "/pair/b?x=1", "/dead/c", "/dead/again"] {
            for port in [vport, nport] {
                _ = try httpExchange(port, getRequest(path, headers: ["Connection: close"]))
            }
        }
        func lines(_ path: String) -> [[String]] {
            XCTAssertTrue(waitFor(5) { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count == 4 }, path)
            return ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        }
        let v = lines(vlog), n = lines(nginx.dir + "/logs/vars.log")
        XCTAssertEqual(v.count, 4)
        XCTAssertEqual(n.count, 4)
        for (vl, nl) in zip(v, n) {
            // Everything but the times (and the proxy's own port in $upstream_bytes_sent's Host line: equal length).
            XCTAssertEqual(Array(vl.prefix(9)), Array(nl.prefix(9)), "vigil \(vl)\nnginx \(nl)")
            // A time is "-" exactly where nginx's is.
            for i in 9..<12 {
                let vt = vl[i].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                let nt = nl[i].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                XCTAssertEqual(vt.map { $0 == "-" }, nt.map { $0 == "-" }, "field \(i): vigil \(vl[i]), nginx \(nl[i])")
                XCTAssertTrue(vt.allSatisfy { $0 == "-" || $0.range(of: #"^\d+\.\d{3}$"#, options: .regularExpression) != nil }, vl[i])
            }
            XCTAssertEqual(vl[12].replacingOccurrences(of: "\(vport)", with: "P"), nl[12].replacingOccurrences(of: "\(nport)", with: "P"))
        }
        XCTAssertEqual(v[0][5], "b-/a")
        XCTAssertEqual(v[0][6], "s1")
        XCTAssertEqual(v[3][12], "dead", "no live upstreams: the attempt carries the upstream's name")
    }
}

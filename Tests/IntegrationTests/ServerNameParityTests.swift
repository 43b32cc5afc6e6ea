import Foundation
import TestHarness
import XCTest

/// Which server a Host reaches and what `$server_name` says there, side by side with Debian's nginx: exact
/// names before the most specific leading wildcard, then the most specific trailing wildcard, then regexes
/// (without case when they have a capital letter), and the server named "" for a request without a Host.
final class ServerNameParityTests: XCTestCase {
    func servers(port: UInt16) -> String {
        let names = ["localhost", "\"\"", "www.example.com", "~^EXAMPLE\\.COM$", "~^(?P<name>[a-z]+)\\.example\\.com$",
                     "*.wc.example.com", "*.pref.wc.example.com", "wc2.example.*", "wc2.example.com.*", ".dot.example.com",
                     "Mixed.Case.example", "first.example second.example"]
        return names.map { name in
            """
            server {
                listen 127.0.0.1:\(port);
                server_name \(name);
                location / { return 200 "[$server_name] [$name] [$host]\\n"; }
            }
            """
        }.joined(separator: "\n")
    }

    func testServerChoiceAndServerNameMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: Vigil.config(http: servers(port: vport)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: servers(port: nport), waitFor: [nport])
        defer { nginx.cleanup() }

        let hosts: [String?] = [nil, "", "xxx", "www.example.com", "WWW.EXAMPLE.COM", "example.com", "EXAMPLE.COM", "blah.example.com",
                                "BLAH.EXAMPLE.COM", "www.wc.example.com", "a.b.wc.example.com", "wc.example.com",
                                "www.pref.wc.example.com", "wc2.example.net", "wc2.example.com.pref", "wc2.example",
                                "www.dot.example.com", "dot.example.com", "mixed.case.example", "second.example", "example.com.:80"]
        var differences: [String] = []
        for host in hosts {
            let request = host.map { "GET / HTTP/1.0\r\nHost: \($0)\r\n\r\n" } ?? "GET / HTTP/1.0\r\n\r\n"
            let v = try httpExchange(vport, request), n = try httpExchange(nport, request)
            if v.status != n.status || v.status == 200 && v.text != n.text {
                differences.append("\(host ?? "no Host"): vigil \(v.status) \(v.text.debugDescription), nginx \(n.status) \(n.text.debugDescription)")
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }
}

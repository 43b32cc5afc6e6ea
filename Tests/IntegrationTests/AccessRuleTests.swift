import Foundation
import TestHarness
import XCTest

/// `allow unix:` / `deny unix:`: a rule for the clients of unix-domain listeners, beside the address rules.
final class AccessRuleTests: XCTestCase {
    func testUnixRules() throws {
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let socket = vigil.prefix + "/v.sock", root = try vigil.htmlRoot([("i.txt", Array("hi\n".utf8))])
        try vigil.write(config: Vigil.config(http: """
            server {
                listen unix:\(socket);
                listen 127.0.0.1:\(port);
                root \(root);
                location / { allow unix:; deny all; }
                location /d/ { alias \(root)/; deny unix:; }
            }
            """))
        _ = try vigil.start()
        func unixStatus(_ path: String) -> String {
            runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "http://x\(path)"]).stdout
        }
        XCTAssertEqual(unixStatus("/i.txt"), "200")
        XCTAssertEqual(httpGet(port, "/i.txt")?.status, 403)
        XCTAssertEqual(unixStatus("/d/i.txt"), "403")
        XCTAssertEqual(httpGet(port, "/d/i.txt")?.status, 200)
    }
}

/// `proxy_pass http://[::1]:port/`: the Host sent is the URL's, brackets and all (an upstream refuses a bare
/// `::1:port` as an invalid host).
final class IPv6UpstreamTests: XCTestCase {
    func testHostOfAnIPv6UpstreamKeepsItsBrackets() throws {
        let probe = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_addr = in6addr_loopback
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        close(probe)
        try XCTSkipUnless(bound == 0, "no IPv6 loopback here")
        let port = freePort(), upstream = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://[::1]:\(upstream)/; } }
            server { listen [::1]:\(upstream); location / { return 200 "$host $http_host"; } }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let r = try XCTUnwrap(httpGet(port, "/"))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "[::1] [::1]:\(upstream)")
    }
}

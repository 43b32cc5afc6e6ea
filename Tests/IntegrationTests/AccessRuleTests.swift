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

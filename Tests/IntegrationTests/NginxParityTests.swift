import Foundation
import TestHarness
import XCTest

/// Vigil and Debian's nginx given the same balancing configuration must send the same keys to the same
/// backends (users switch without reshuffling caches).
final class NginxParityTests: XCTestCase {
    func testConsistentHashPlacesKeysLikeNginx() throws {
        let nginx = "/usr/sbin/nginx"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let backendPorts = (0..<4).map { _ in freePort() }
        let backends = try Vigil(config: Vigil.config(workers: 1, http: backendPorts.enumerated().map { i, p in
            "server { listen 127.0.0.1:\(p); location / { return 200 \"s\(i)\"; } }"
        }.joined(separator: "\n")))
        defer { backends.cleanup() }
        _ = try backends.start()

        func upstream(_ extra: String) -> String {
            """
            upstream app {
                hash $arg_k consistent;
                server 127.0.0.1:\(backendPorts[0]);
                server 127.0.0.1:\(backendPorts[1]) weight=2;
                server 127.0.0.1:\(backendPorts[2]);
                server 127.0.0.1:\(backendPorts[3]);
            }
            \(extra)
            """
        }
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: upstream("server { listen 127.0.0.1:\(vport); location / { proxy_pass http://app; } }")))
        defer { vigil.cleanup() }
        _ = try vigil.start()

        // Debian's nginx with the same upstream, in its own prefix.
        let dir = vigil.prefix + "/nginx"
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        try """
            worker_processes 1; pid logs/nginx.pid; error_log logs/error.log error; events {}
            http { access_log off; client_body_temp_path logs/cb; proxy_temp_path logs/pt; fastcgi_temp_path logs/ft;
                   uwsgi_temp_path logs/ut; scgi_temp_path logs/st;
            \(upstream("server { listen 127.0.0.1:\(nport); location / { proxy_pass http://app; } }"))
            }
            """.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        // In the foreground: a daemonized nginx keeps the descriptors Foundation's Process watches.
        let server = Process()
        server.executableURL = URL(fileURLWithPath: nginx)
        server.arguments = ["-p", dir, "-c", dir + "/nginx.conf", "-e", dir + "/logs/error.log", "-g", "daemon off;"]
        server.standardInput = FileHandle.nullDevice
        try server.run()
        defer {
            kill(server.processIdentifier, SIGTERM)
            server.waitUntilExit()
        }
        XCTAssertTrue(waitFor(5) { canConnect(nport) })

        var differences: [String] = []
        var spread: [String: Int] = [:]
        for k in 0..<300 {
            let key = "user-\(k * 7919)"
            let v = httpGet(vport, "/?k=\(key)")?.body ?? "none"
            let n = httpGet(nport, "/?k=\(key)")?.body ?? "none"
            spread[v, default: 0] += 1
            if v != n { differences.append("\(key): vigil \(v), nginx \(n)") }
        }
        XCTAssertEqual(differences, [], "keys placed differently from nginx")
        XCTAssertEqual(spread.count, 4, "every backend gets keys: \(spread)")
    }
}

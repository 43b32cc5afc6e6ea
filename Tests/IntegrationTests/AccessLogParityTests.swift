import Foundation
import TestHarness
import XCTest

/// Access log lines side by side with Debian's nginx: `$binary_remote_addr` as its bytes, JSON escaping, and
/// open_log_file_cache for paths with variables (a descriptor kept open writes on into a file whose directory
/// moved; a path used fewer than min_uses times, or pushed out of the cache, is opened by its name again),
/// `$pipe` of a request that came behind another, and the empty `$uri` of one that could not be parsed.
final class AccessLogParityTests: XCTestCase {
    func server(port: UInt16, dir: String) -> String {
        """
        log_format binary $binary_remote_addr;
        log_format json escape=json $uri$arg_b;
        log_format plain $uri;
        log_format pipe "$uri $pipe";
        log_format uri ":$uri:";
        server {
            listen 127.0.0.1:\(port);
            root \(dir);
            access_log \(dir)/uri.log uri;
            location /pipe { access_log \(dir)/pipe.log pipe; return 200; }
            location /binary { access_log \(dir)/binary.log binary; return 200; }
            location /escape { access_log \(dir)/json.log json; return 200; }
            location /cache {
                open_log_file_cache max=3 inactive=20s valid=1m min_uses=2;
                access_log \(dir)/logs/cache_${arg_name} plain;
                return 200;
            }
        }
        """
    }

    func testLogLinesMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let vdir = vigil.prefix + "/out", ndir = vigil.prefix + "/nginx-out"
        for d in [vdir, ndir] {
            try FileManager.default.createDirectory(atPath: d + "/logs", withIntermediateDirectories: true)
            chmod(d, 0o777)
            chmod(d + "/logs", 0o777)
        }
        try vigil.write(config: Vigil.config(http: server(port: vport, dir: vdir)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(port: nport, dir: ndir), waitFor: [nport])
        defer { nginx.cleanup() }

        for (port, dir) in [(vport, vdir), (nport, ndir)] {
            // Read to the close: both servers log a request before they close its connection.
            func get(_ path: String) throws {
                let c = try HTTPConnection(port: port)
                defer { c.close() }
                try c.send(getRequest(path, headers: ["Connection: close"]))
                _ = c.readToEOF()
            }
            try get("/binary")
            try get("/escape/%221%20%1B%1C%08%20%22?b=2")
            for name in ["lru", "lru", "once", "first", "first", "second", "second"] { try get("/cache?name=\(name)") }
            try FileManager.default.moveItem(atPath: dir + "/logs", toPath: dir + "/moved")
            for name in ["lru", "once", "first", "second"] { try get("/cache?name=\(name)") }
            try FileManager.default.moveItem(atPath: dir + "/moved", toPath: dir + "/logs")
            // Two requests in one write: the second was read before the first was answered.
            let c = try HTTPConnection(port: port)
            try c.send(getRequest("/pipe") + getRequest("/pipe", headers: ["Connection: close"]))
            _ = c.readToEOF()
            c.close()
            try get("/../bad")
            try get("/none")
        }
        for file in ["pipe.log", "uri.log", "binary.log", "json.log", "logs/cache_lru", "logs/cache_once", "logs/cache_first", "logs/cache_second"] {
            let v = try? String(contentsOfFile: vdir + "/" + file, encoding: .utf8)
            let n = try? String(contentsOfFile: ndir + "/" + file, encoding: .utf8)
            XCTAssertEqual(v, n, file)
        }
        XCTAssertEqual(try String(contentsOfFile: vdir + "/binary.log", encoding: .utf8), "\\x7F\\x00\\x00\\x01\n")
        XCTAssertEqual(try String(contentsOfFile: vdir + "/pipe.log", encoding: .utf8), "/pipe .\n/pipe p\n")
        XCTAssertEqual(try String(contentsOfFile: vdir + "/uri.log", encoding: .utf8), "::\n:/none:\n")
        XCTAssertEqual(try String(contentsOfFile: vdir + "/logs/cache_first", encoding: .utf8), "/cache\n/cache\n/cache\n")
    }
}

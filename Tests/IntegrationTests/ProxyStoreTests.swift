import Foundation
import TestHarness
import XCTest

/// proxy_store: a proxied 200's body kept as a file (at `$request_filename` or the directive's path), with
/// proxy_store_access's mode and the upstream's Last-Modified; not for HEAD or another status, and an aborted
/// response leaves no temporary file.
final class ProxyStoreTests: XCTestCase {
    func testBodiesAreStoredWhole() throws {
        let port = freePort(), upstream = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let files = try vigil.htmlRoot([("page.txt", Array("stored body\n".utf8)), ("big", [UInt8](repeating: 120, count: 400_000))])
        var times = [timespec(tv_sec: 1_700_000_000, tv_nsec: 0), timespec(tv_sec: 1_700_000_000, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, files + "/page.txt", &times, 0), 0)
        // The workers run as the `user` when the tests run as root: the store must be theirs to write.
        let store = vigil.prefix + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        chmod(store, 0o777)
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                root \(store);
                location /on/ { proxy_pass http://127.0.0.1:\(upstream)/; proxy_store on; proxy_store_access user:rw group:rw all:r; }
                location /path/ { proxy_pass http://127.0.0.1:\(upstream)/; proxy_store \(store)/by-path$uri; }
            }
            server { listen 127.0.0.1:\(upstream); root \(files); location = /slow { alias \(files)/big; limit_rate 100k; } }
            """))
        _ = try vigil.start()
        XCTAssertEqual(httpGet(port, "/on/page.txt")?.body, "stored body\n")
        XCTAssertEqual(httpGet(port, "/path/page.txt")?.body, "stored body\n")
        for path in ["/on/page.txt", "/by-path/path/page.txt"] {
            XCTAssertEqual(try? String(contentsOfFile: store + path, encoding: .utf8), "stored body\n", path)
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: store + "/on/page.txt")
        XCTAssertEqual((attributes[.posixPermissions] as? Int).map { $0 & 0o777 }, 0o664, "proxy_store_access")
        XCTAssertEqual((attributes[.modificationDate] as? Date)?.timeIntervalSince1970, 1_700_000_000, "the upstream's Last-Modified")

        XCTAssertEqual(httpGet(port, "/on/missing.txt")?.status, 404)
        let head = try httpExchange(port, "HEAD /on/big HTTP/1.0\r\n\r\n", method: "HEAD")
        XCTAssertEqual(head.status, 200)
        // A client that leaves halfway through a slow body.
        let c = try HTTPConnection(port: port)
        try c.send("GET /on/slow HTTP/1.0\r\n\r\n")
        usleep(300_000)
        c.close()
        usleep(300_000)
        let left = try FileManager.default.subpathsOfDirectory(atPath: store).filter { !$0.hasSuffix("page.txt") }
        XCTAssertFalse(left.contains { $0.hasSuffix("missing.txt") || $0.hasSuffix("big") || $0.hasSuffix("slow") || $0.hasSuffix(".tmp") },
                       "nothing stored for a 404, a HEAD or an aborted body: \(left)")
    }
}

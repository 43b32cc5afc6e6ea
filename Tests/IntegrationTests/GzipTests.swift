import Foundation
import TestHarness
import XCTest

/// gzip responses, checked with curl (which decompresses them) against the bytes they must decompress to:
/// whole bodies from `return`, static files, and a proxied body compressed as it streams.
final class GzipTests: XCTestCase {
    var vigil: Vigil!
    var backend: NginxPeer?
    override func tearDown() {
        vigil?.cleanup()
        backend?.cleanup()
    }

    func curl(_ args: [String]) -> RunResult { runCommand(Tools.curl, ["-sS", "--max-time", "8"] + args, timeout: 12) }

    func testCompressedBodiesDecompressToTheOriginal() throws {
        try XCTSkipUnless(Tools.available(Tools.curl) && Tools.available(Tools.nginx), "curl and nginx are installed by scripts/install-deps")
        let port = freePort(), backendPort = freePort(), nginxGzipPort = freePort()
        let text = String(repeating: "health checks all the way down. ", count: 40)
        vigil = try Vigil(config: "")
        let big = (0..<20000).map { "line \($0) of a large proxied text body\n" }.joined()
        try FileManager.default.createDirectory(atPath: vigil.prefix + "/html", withIntermediateDirectories: true)
        try big.write(toFile: vigil.prefix + "/html/big.txt", atomically: true, encoding: .utf8)
        backend = try NginxPeer(http: """
            types { text/plain txt; }
            server { listen 127.0.0.1:\(backendPort); root \(vigil.prefix)/html; }
            server { listen 127.0.0.1:\(nginxGzipPort); gzip on; gzip_types text/plain; gzip_comp_level 5; default_type text/plain;
                     location /text { return 200 "\(text)"; } location /big.txt { root \(vigil.prefix)/html; } }
            """, waitFor: [backendPort, nginxGzipPort])
        try vigil.write(config: Vigil.config(http: """
            gzip on;
            gzip_types text/plain application/json;
            gzip_vary on;
            gzip_comp_level 5;
            default_type text/plain;
            server {
                listen 127.0.0.1:\(port);
                location /text { return 200 "\(text)"; }
                location /big.txt { root \(vigil.prefix)/html; }
                location /short { return 200 "tiny"; }
                location /image { default_type image/png; return 200 "\(text)"; }
                location /proxy/ { proxy_pass http://127.0.0.1:\(backendPort)/; }
            }
            """))
        _ = try vigil.start()
        let base = "http://127.0.0.1:\(port)"

        // Whole bodies: compressed, Vary added, and curl gets the text back.
        let head = curl(["-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip", base + "/text"]).stdout
        XCTAssertTrue(head.contains("Content-Encoding: gzip"), head)
        XCTAssertTrue(head.contains("Vary: Accept-Encoding"), head)
        XCTAssertEqual(curl(["--compressed", base + "/text"]).stdout, text)
        let plainHead = curl(["-D", "-", "-o", "/dev/null", base + "/text"]).stdout
        XCTAssertFalse(plainHead.contains("Content-Encoding"), "no Accept-Encoding, no gzip: \(plainHead)")
        XCTAssertTrue(plainHead.contains("Vary: Accept-Encoding"), "gzip_vary marks every compressible response")
        XCTAssertFalse(curl(["-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip;q=0", base + "/text"]).stdout.contains("Content-Encoding"))
        XCTAssertFalse(curl(["-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip", "--http1.0", base + "/text"]).stdout.contains("Content-Encoding"),
                       "gzip_http_version 1.1 by default")
        XCTAssertFalse(curl(["-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip", base + "/short"]).stdout.contains("Content-Encoding"),
                       "below gzip_min_length")
        XCTAssertFalse(curl(["-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip", base + "/image"]).stdout.contains("Content-Encoding"),
                       "a type outside gzip_types")

        // The same bytes as nginx's: its gzip header and trailer, and zlib's deflate sized and flushed alike, for a
        // body compressed whole and for a file compressed as it is read.
        for path in ["/text", "/big.txt"] {
            let ours = vigil.prefix + "/vigil.gz", theirs = vigil.prefix + "/nginx.gz"
            _ = curl(["-H", "Accept-Encoding: gzip", "-o", ours, base + path])
            _ = curl(["-H", "Accept-Encoding: gzip", "-o", theirs, "http://127.0.0.1:\(nginxGzipPort)" + path])
            let v = try Data(contentsOf: URL(fileURLWithPath: ours)), n = try Data(contentsOf: URL(fileURLWithPath: theirs))
            XCTAssertEqual(Array(v.prefix(2)), [0x1f, 0x8b], path)
            XCTAssertEqual(v, n, "\(path): the gzip bytes differ from nginx's")
        }

        // A proxied body, compressed as it streams and sent chunked; twice on one keep-alive connection.
        let proxiedHead = curl(["-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip", base + "/proxy/big.txt"]).stdout
        XCTAssertTrue(proxiedHead.contains("Content-Encoding: gzip"), proxiedHead)
        XCTAssertTrue(proxiedHead.contains("Transfer-Encoding: chunked"), proxiedHead)
        XCTAssertFalse(proxiedHead.contains("Content-Length"), proxiedHead)
        let twice = curl(["--compressed", "-w", "|%{num_connects}", base + "/proxy/big.txt", base + "/proxy/big.txt"]).stdout
        XCTAssertEqual(twice, big + "|1" + big + "|0", "both bodies complete, one connection")
        let sizes = curl(["-o", "/dev/null", "-w", "%{size_download}", "-H", "Accept-Encoding: gzip", base + "/proxy/big.txt"]).stdout
        XCTAssertLessThan(Int(sizes) ?? .max, big.utf8.count / 4, "the proxied body was compressed")
        XCTAssertFalse(vigil.errorLog().contains("[alert]"))
    }

    /// An upstream that closes in the middle of a body being compressed: nginx's error line, the connection
    /// closed without a final chunk (the client can tell the body is incomplete); the worker carries on.
    func testAGzipStreamCutShort() throws {
        let text = String(repeating: "part of a body that never ends ", count: 200)
        let raw = try RawServer(.answer(Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n\(text)".utf8)))
        defer { raw.stop() }
        let port = freePort()
        vigil = try Vigil(config: Vigil.config(http: """
            gzip on; gzip_types text/plain;
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://127.0.0.1:\(raw.port); } location /ok { return 200 "ok"; } }
            """))
        _ = try vigil.start()
        let c = try HTTPConnection(port: port)
        defer { c.close() }
        try c.send(getRequest("/", headers: ["Accept-Encoding: gzip"]))
        let bytes = c.readToEOF()
        let textReply = String(decoding: bytes, as: UTF8.self)
        // What was compressed so far may not have reached the client at all; whatever did must not look complete.
        XCTAssertTrue(textReply.isEmpty || textReply.hasPrefix("HTTP/1.1 200 OK\r\n"), textReply)
        XCTAssertFalse(textReply.hasSuffix("0\r\n\r\n"), "a cut body must not look complete")
        XCTAssertTrue(waitFor(3) { self.vigil.errorLog().contains("upstream prematurely closed connection while reading upstream") }, vigil.errorLog())
        XCTAssertEqual(httpGet(port, "/ok")?.body, "ok")
    }
}

import Foundation
import TestHarness
import XCTest

/// Directory listings side by side with Debian's nginx, both serving one directory with one configuration:
/// the bytes of the html, json, jsonp and xml listings (sizes exact and rounded, GMT and local times, names cut,
/// escaped and not UTF-8, hidden files skipped, directories first), and the statuses and heads around them.
final class AutoIndexParityTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vigil-autoindex-" + UUID().uuidString.prefix(8)
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/sub/deeper", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/indexed", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/d" + String(repeating: "x", count: 49), withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/dir <&>", withIntermediateDirectories: true)
        try "index page\n".write(toFile: dir + "/indexed/index.html", atomically: true, encoding: .utf8)
        // Sizes on each side of nginx's rounding: bytes up to 9999, then K, M and G rounded half up.
        let sizes: [(String, Int)] = [("empty", 0), ("small.txt", 42), ("edge-9999", 9999), ("edge-10000", 10000),
                                      ("k-half-up", 10 * 1024 + 512), ("k-half-down", 10 * 1024 + 511), ("m-file", 1_572_864),
                                      ("m-edge", 1024 * 1024 - 1), ("g-sparse", 3 << 29)]
        for (name, size) in sizes { try sparseFile(dir + "/" + name, size: size) }
        let names = ["a&b<c>.txt", "quote\"d.txt", "it's.txt", "tab\there", "colon:name", "q?mark%pct#hash", "sp ace.txt",
                     ".hidden", "sub/.dotfile", "sub/inner.txt",
                     String(repeating: "long", count: 13) + ".txt",
                     String(repeating: "&", count: 51),
                     "utf8-" + String(repeating: "ф", count: 3),
                     "utf8-" + String(repeating: "ф", count: 50),
                     "utf8-<&>-" + String(repeating: "ф", count: 46)]
        for name in names { try "x".write(toFile: dir + "/" + name, atomically: false, encoding: .utf8) }
        // A name that is not UTF-8, and links to a file, a directory and nowhere.
        _ = (Array((dir + "/latin1-").utf8) + [0xE9, 0xFF, 0]).withUnsafeBufferPointer {
            $0.baseAddress!.withMemoryRebound(to: CChar.self, capacity: $0.count) { close(creat($0, 0o644)) }
        }
        try fm.createSymbolicLink(atPath: dir + "/link-file", withDestinationPath: dir + "/small.txt")
        try fm.createSymbolicLink(atPath: dir + "/link-dir", withDestinationPath: dir + "/sub")
        try fm.createSymbolicLink(atPath: dir + "/link-nowhere", withDestinationPath: dir + "/missing")
        // Fixed times, some seconds into a minute, so the two servers and the time zones have something to show.
        var when = 1_600_000_000
        for name in try fm.contentsOfDirectory(atPath: dir) + ["sub/inner.txt", "sub/deeper"] {
            var times = [timeval(tv_sec: when, tv_usec: 0), timeval(tv_sec: when, tv_usec: 0)]
            lutimes(dir + "/" + name, &times)
            when += 86_400 * 37 + 3_671
        }
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func sparseFile(_ path: String, size: Int) throws {
        let fd = creat(path, 0o644)
        guard fd >= 0 else { throw HTTPClientError("creat \(path) failed") }
        ftruncate(fd, off_t(size))
        close(fd)
    }

    func servers(_ port: UInt16) -> String {
        """
        server {
            listen 127.0.0.1:\(port);
            root \(dir);
            types { text/html html; }
            autoindex on;
            location /json/ { alias \(dir)/; autoindex_format json; }
            location /jsonp/ { alias \(dir)/; autoindex_format jsonp; }
            location /xml/ { alias \(dir)/; autoindex_format xml; }
            location /approx/ { alias \(dir)/; autoindex_exact_size off; }
            location /local/ { alias \(dir)/; autoindex_localtime on; autoindex_exact_size off; }
            location /utf8/ { alias \(dir)/; charset utf-8; }
            location /jsonp-utf8/ { alias \(dir)/; autoindex_format jsonp; charset utf-8; }
            location /gz/ { alias \(dir)/; gzip on; gzip_vary on; }
            location /off/ { alias \(dir)/; autoindex off; }
            location /indexed-listing/ { alias \(dir)/indexed/; index none; }
        }
        """
    }

    func testListingsMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        // Both inherit the zone: autoindex_localtime shows +05:30.
        setenv("TZ", "Asia/Kolkata", 1)
        defer { unsetenv("TZ") }
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: Vigil.config(http: servers(vport)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: servers(nport), waitFor: [nport])
        defer { nginx.cleanup() }

        let requests = [
            getRequest("/"), getRequest("/sub/"), getRequest("/sub/deeper/"), getRequest("/dir%20%3C&%3E/"), getRequest("/json/"),
            getRequest("/json/sub/"), getRequest("/jsonp/?callback=cb.x_1"), getRequest("/jsonp/?a=b&CALLBACK=up"),
            getRequest("/jsonp/?callback="), getRequest("/jsonp/"), getRequest("/jsonp/?callback=bad-name"),
            getRequest("/jsonp/?callback=" + String(repeating: "a", count: 129)), getRequest("/jsonp-utf8/?callback=f"),
            getRequest("/xml/"), getRequest("/approx/"), getRequest("/local/"), getRequest("/utf8/"), getRequest("/sub"),
            getRequest("/", method: "HEAD"), getRequest("/", version: "1.0"), getRequest("/off/"), getRequest("/indexed/"),
            getRequest("/indexed-listing/"), getRequest("/nope/"), getRequest("/small.txt"),
        ]
        var differences: [String] = []
        for request in requests {
            let line = request.split(separator: "\r\n")[0]
            let method = request.hasPrefix("HEAD") ? "HEAD" : "GET"
            let v = try httpExchange(vport, request, method: method), n = try httpExchange(nport, request, method: method)
            // Error pages carry each server's name: their statuses are compared, a listing's head and bytes.
            if v.status != n.status {
                differences.append("\(line): vigil \(v.status), nginx \(n.status)")
                continue
            }
            guard v.status == 200 else { continue }
            for name in ["Content-Type", "Content-Length", "Transfer-Encoding"] where v.header(name) != n.header(name) {
                differences.append("\(line): \(name) vigil \(v.header(name) ?? "-"), nginx \(n.header(name) ?? "-")")
            }
            if v.body != n.body { differences.append("\(line): vigil\n\(v.text)\nnginx\n\(n.text)") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    /// A listing compressed as it goes out, as nginx compresses it: chunked, with Vary, and the same page inside.
    func testGzippedListingMatchesNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx) && Tools.available(Tools.curl), "curl and nginx are installed by scripts/install-deps")
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: Vigil.config(http: servers(vport)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: servers(nport), waitFor: [nport])
        defer { nginx.cleanup() }

        let request = getRequest("/gz/", headers: ["Accept-Encoding: gzip"])
        let v = try httpExchange(vport, request), n = try httpExchange(nport, request)
        for name in ["Content-Type", "Content-Encoding", "Transfer-Encoding", "Vary", "Content-Length"] {
            XCTAssertEqual(v.header(name), n.header(name), name)
        }
        // Through files: a name that is not UTF-8 would empty curl's output as a String.
        let curl = { (port: UInt16) -> [UInt8] in
            let file = self.dir + "-\(port).html"
            defer { unlink(file) }
            _ = runCommand(Tools.curl, ["-sS", "--max-time", "8", "--compressed", "-o", file, "http://127.0.0.1:\(port)/gz/"], timeout: 12)
            return (FileManager.default.contents(atPath: file)).map { [UInt8]($0) } ?? []
        }
        let page = curl(vport)
        XCTAssertTrue(String(decoding: page, as: UTF8.self).contains("<h1>Index of /gz/</h1>"))
        XCTAssertEqual(page, curl(nport))
    }

    /// A directory the workers may search but not read: no index file there, and opendir() fails (root's workers
    /// are nobody; another user lacks the read bit on a directory of its own).
    func testUnreadableDirectoryIsForbidden() throws {
        let port = freePort()
        try FileManager.default.createDirectory(atPath: dir + "/private", withIntermediateDirectories: true)
        chmod(dir + "/private", 0o311)
        defer { chmod(dir + "/private", 0o755) }
        let vigil = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(port); root \(dir); autoindex on; }"))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        XCTAssertEqual(try httpExchange(port, getRequest("/private/")).status, 403)
        XCTAssertTrue(vigil.errorLog().contains("opendir() \"\(dir)/private\" failed (13: Permission denied)"), vigil.errorLog())
    }
}

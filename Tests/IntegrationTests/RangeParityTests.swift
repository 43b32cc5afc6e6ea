import Foundation
import TestHarness
import XCTest

/// nginx's range filter and gzip_static side by side with Debian's nginx on the same files and configuration:
/// single, suffix and open ranges, multipart/byteranges, 416, max_ranges, If-Range by ETag and by date (also a
/// date add_header set), HEAD, ranges left alone under gzip, proxied responses with and without
/// proxy_force_ranges, and gzip_static `on` (with and without Accept-Encoding, gzip_vary, HTTP/1.0, 304) and
/// `always`.
final class RangeParityTests: XCTestCase {
    func config(port: UInt16, upstream: UInt16, root: String) -> String {
        """
        types { text/html html; text/plain txt; }
        server {
            listen 127.0.0.1:\(upstream);
            root \(root);
        }
        server {
            listen 127.0.0.1:\(port);
            root \(root);
            location /limited/ { alias \(root)/; max_ranges 1; }
            location /none/ { alias \(root)/; max_ranges 0; }
            location /lm/ { alias \(root)/; add_header Last-Modified "Mon, 28 Sep 1970 06:00:00 GMT"; }
            location /tag/ { alias \(root)/; add_header ETag '"mine"'; }
            location /added/ { alias \(root)/; expires 1h; add_header X-A a; add_trailer X-T t; }
            location /gzip/ { alias \(root)/; gzip on; gzip_types text/plain; gzip_min_length 1; }
            location /gz/ { alias \(root)/; gzip_static on; gzip_vary on; }
            location /gznovary/ { alias \(root)/; gzip_static on; }
            location /gzalways/ { alias \(root)/; gzip_static always; }
            location /proxy/ { proxy_pass http://127.0.0.1:\(upstream)/; }
            location /forced/ { proxy_pass http://127.0.0.1:\(upstream)/; proxy_force_ranges on; }
        }
        """
    }

    func testRangesAndGzipStaticMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), vup = freePort(), nport = freePort(), nup = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let page = (0..<100).map { String(format: "X%03dXXXXXX", $0) }.joined()
        for (file, text, mtime) in [("/t1.html", page, 1_700_000_000), ("/t1.html.gz", "gzipped bytes of t1", 1_700_000_123),
                                    ("/t1.txt", page, 1_700_000_000), ("/only.txt.gz", "only the gzipped one", 1_700_000_456),
                                    ("/empty.html", "", 1_700_000_000)] {
            try text.write(toFile: root + file, atomically: true, encoding: .utf8)
            var times = [timespec(tv_sec: mtime, tv_nsec: 0), timespec(tv_sec: mtime, tv_nsec: 0)]
            XCTAssertEqual(utimensat(AT_FDCWD, root + file, &times, 0), 0)
        }
        try vigil.write(config: Vigil.config(http: config(port: vport, upstream: vup, root: root)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(port: nport, upstream: nup, root: root), waitFor: [nport, nup])
        defer { nginx.cleanup() }

        let first = try httpExchange(nport, getRequest("/t1.html", headers: ["Connection: close"]))
        let etag = first.header("ETag") ?? "", lastModified = first.header("Last-Modified") ?? ""
        XCTAssertFalse(etag.isEmpty)
        let gzip = "Accept-Encoding: gzip"
        let cases: [(method: String, path: String, headers: [String])] = [
            ("GET", "/t1.html", []),
            ("GET", "/t1.html", ["Range: bytes=0-8"]),
            ("GET", "/t1.html", ["Range: bytes=-10"]),
            ("GET", "/t1.html", ["Range: bytes=990-"]),
            ("GET", "/t1.html", ["Range: bytes=990-1990"]),
            ("GET", "/t1.html", ["Range: bytes=0-10001"]),
            ("GET", "/t1.html", ["Range: BYTES = 3 - 4"]),
            ("GET", "/t1.html", ["Range: bytes=0-9, -10, 10-19"]),
            ("GET", "/t1.html", ["Range: bytes=0-9, -10, 100000-, 10-19"]),
            ("GET", "/t1.html", ["Range: bytes=100000-"]),
            ("GET", "/t1.html", ["Range: bytes=alpha"]),
            ("GET", "/t1.html", ["Range: bytes=10-11 12-"]),
            ("GET", "/t1.html", ["Range: bytes=5-2"]),
            ("GET", "/t1.html", ["Range: bytes=0-10001, 0-0"]),
            ("GET", "/t1.html", ["Range: bytes=99999999999999999999-"]),
            ("GET", "/t1.html", ["Range: items=0-5"]),
            ("GET", "/empty.html", ["Range: bytes=0-"]),
            ("GET", "/empty.html", ["Range: bytes=-5"]),
            ("HEAD", "/t1.html", ["Range: bytes=0-8"]),
            ("HEAD", "/t1.html", ["Range: bytes=0-1,5-6"]),
            ("HEAD", "/t1.html", ["Range: bytes=2000-"]),
            ("POST", "/t1.html", ["Range: bytes=0-8", "Content-Length: 0"]),
            ("GET", "/t1.html", ["Range: bytes=0-8", "If-Range: \(etag)"]),
            ("GET", "/t1.html", ["Range: bytes=0-8", "If-Range: W/\(etag)"]),
            ("GET", "/t1.html", ["Range: bytes=0-8", "If-Range: \"other\""]),
            ("GET", "/t1.html", ["Range: bytes=0-8", "If-Range: \(lastModified)"]),
            ("GET", "/t1.html", ["Range: bytes=0-8", "If-Range: Mon, 28 Sep 1970 06:00:00 GMT"]),
            ("GET", "/t1.html", ["Range: bytes=0-8", "If-Range: wrong"]),
            ("GET", "/t1.html", ["Range: bytes=0-8", "If-None-Match: \(etag)"]),
            ("GET", "/lm/t1.html", ["Range: bytes=0-8", "If-Range: Mon, 28 Sep 1970 06:00:00 GMT"]),
            ("GET", "/lm/t1.html", ["Range: bytes=0-8", "If-Range: \(lastModified)"]),
            ("GET", "/tag/t1.html", ["Range: bytes=0-8", "If-Range: \"mine\""]),
            ("GET", "/tag/t1.html", ["Range: bytes=0-8", "If-Range: \(etag)"]),
            ("GET", "/limited/t1.html", ["Range: bytes=0-1"]),
            ("GET", "/limited/t1.html", ["Range: bytes=0-1,3-4"]),
            ("GET", "/none/t1.html", ["Range: bytes=0-1"]),
            ("GET", "/added/t1.html", ["Range: bytes=0-1"]),
            ("GET", "/added/t1.html", ["Range: bytes=0-1,3-4"]),
            ("GET", "/added/t1.html", ["Range: bytes=5000-"]),
            ("GET", "/gzip/t1.txt", ["Range: bytes=0-8"]),
            ("GET", "/gzip/t1.txt", ["Range: bytes=0-8", gzip]),
            ("HEAD", "/gzip/t1.txt", ["Range: bytes=0-8", gzip]),
            ("GET", "/gz/t1.html", []),
            ("GET", "/gz/t1.html", [gzip]),
            ("GET", "/gz/t1.html", ["Accept-Encoding: gzip;q=0"]),
            ("GET", "/gz/t1.html", [gzip, "Via: 1.1 cache"]),
            ("GET", "/gz/t1.html", [gzip, "Range: bytes=0-8"]),
            ("GET", "/gz/t1.html", ["Range: bytes=0-8"]),
            ("HEAD", "/gz/t1.html", [gzip]),
            ("GET", "/gz/t1.html", [gzip, "If-None-Match: \"6553f17b-13\""]),
            ("GET", "/gz/only.txt", [gzip]),
            ("GET", "/gz/only.txt", []),
            ("GET", "/gznovary/t1.html", []),
            ("GET", "/gznovary/t1.html", [gzip]),
            ("GET", "/gzalways/t1.html", []),
            ("GET", "/gzalways/t1.txt", []),
            ("GET", "/proxy/t1.html", ["Range: bytes=0-8"]),
            ("GET", "/forced/t1.html", []),
            ("GET", "/forced/t1.html", ["Range: bytes=0-8"]),
            ("GET", "/forced/t1.html", ["Range: bytes=-3"]),
            ("GET", "/forced/t1.html", ["Range: bytes=0-9, 20-29"]),
            ("GET", "/forced/t1.html", ["Range: bytes=100000-"]),
            ("GET", "/forced/t1.html", ["Range: bytes=0-8", "If-Range: \(etag)"]),
            ("GET", "/forced/t1.html", ["Range: bytes=0-8", "If-Range: \"other\""]),
            ("HEAD", "/forced/t1.html", ["Range: bytes=10-19"]),
        ]
        var differences: [String] = []
        for c in cases {
            let request = getRequest(c.path, headers: c.headers + ["Connection: close"], method: c.method)
            let v = try httpExchange(vport, request, method: c.method), n = try httpExchange(nport, request, method: c.method)
            let (vc, nc) = (comparable(v), comparable(n))
            if vc != nc {
                differences.append("\(c.method) \(c.path) \(c.headers):\n  vigil \(vc)\n  nginx \(nc)")
            }
        }
        // HTTP/1.0 is below gzip_http_version: the file itself.
        let http10 = "GET /gz/t1.html HTTP/1.0\r\n\(gzip)\r\n\r\n"
        let (v10, n10) = (comparable(try httpExchange(vport, http10)), comparable(try httpExchange(nport, http10)))
        if v10 != n10 { differences.append("HTTP/1.0 gzip_static:\n  vigil \(v10)\n  nginx \(n10)") }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))

        // What the comparison does not show on its own.
        let multipart = try httpExchange(vport, getRequest("/t1.html", headers: ["Range: bytes=0-1,5-6", "Connection: close"]))
        let boundary = multipart.header("Content-Type")?.components(separatedBy: "boundary=").last ?? ""
        XCTAssertEqual(boundary.count, 20)
        XCTAssertEqual(multipart.text, "\r\n--\(boundary)\r\nContent-Type: text/html\r\nContent-Range: bytes 0-1/1000\r\n\r\nX0"
                                       + "\r\n--\(boundary)\r\nContent-Type: text/html\r\nContent-Range: bytes 5-6/1000\r\n\r\nXX"
                                       + "\r\n--\(boundary)--\r\n")
        let gz = try httpExchange(vport, getRequest("/gz/t1.html", headers: [gzip, "Connection: close"]))
        XCTAssertEqual(gz.text, "gzipped bytes of t1")
        XCTAssertEqual(gz.header("Content-Encoding"), "gzip")
        XCTAssertEqual(gz.header("Last-Modified"), "Tue, 14 Nov 2023 22:15:23 GMT", "the .gz's own")
    }

    /// Status and fields in any order, Date and Server aside, with multipart boundaries and the server's name in
    /// error pages made alike; Expires is relative to now.
    private func comparable(_ r: HTTPResponse) -> [String] {
        let boundary = r.header("Content-Type")?.components(separatedBy: "boundary=").dropFirst().first
        func plain(_ s: String) -> String { boundary.map { s.replacingOccurrences(of: $0, with: "BOUNDARY") } ?? s }
        let fields = r.headers.compactMap { field -> String? in
            switch field.name.lowercased() {
            case "date", "server", "connection": return nil
            case "expires": return "Expires: *"
            // Built-in pages name their server; a gzipped body is chunked by nginx, whole by Vigil.
            case "content-length" where r.status >= 400: return nil
            case "content-length" where r.header("Content-Encoding") != nil && r.status == 200: return nil
            case "transfer-encoding" where r.header("Content-Encoding") != nil && r.status == 200: return nil
            default: return "\(field.name): \(plain(field.value))"
            }
        }.sorted()
        let body = plain(r.text).replacingOccurrences(of: "nginx/1.22.1", with: "SERVER").replacingOccurrences(of: "vigil/0.1.0", with: "SERVER")
        return ["\(r.status)"] + fields + [body.debugDescription]
    }
}

import Foundation
import TestHarness
import XCTest

/// nginx's headers filter side by side with Debian's nginx on the same files: every form of `expires`
/// (variables, `modified`, `@time`, negative), add_header's ETag and Last-Modified replacing the handler's,
/// `$sent_http_*` in a map that add_header reads (as h5bp's configs do), and add_trailer's trailers.
final class HeadersFilterParityTests: XCTestCase {
    func config(port: UInt16, upstream: UInt16, root: String) -> String {
        """
        types { text/html html; text/plain txt; }
        map $sent_http_content_type $frame_options {
            ~*text/html DENY;
        }
        server {
            listen 127.0.0.1:\(upstream);
            root \(root);
            add_header Last-Modified "Mon, 28 Sep 1970 06:00:00 GMT";
        }
        server {
            listen 127.0.0.1:\(port);
            root \(root);
            add_header X-Frame-Options $frame_options;
            location /epoch/ { alias \(root)/; expires epoch; }
            location /max/ { alias \(root)/; expires max; }
            location /negative/ { alias \(root)/; expires -1h; }
            location /modified/ { alias \(root)/; expires modified 1y2M; }
            location /daily/ { alias \(root)/; expires @15h30m33s; }
            location /var/ { alias \(root)/; expires $arg_e; }
            location /varmodified/ { alias \(root)/; expires modified $arg_e; }
            location /etag/ { alias \(root)/; add_header ETag '"mine"'; add_header Last-Modified ''; }
            location /proxy/ { proxy_pass http://127.0.0.1:\(upstream)/; expires modified 2048; }
            location /trailers/ {
                alias \(root)/;
                add_trailer X-Host $host;
                add_trailer X-Type $sent_http_content_type;
                add_trailer X-Again $sent_trailer_x_host;
                add_trailer X-Empty '';
                add_trailer X-Always yes always;
            }
        }
        """
    }

    func testHeadersFilterMatchesNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), vup = freePort(), nport = freePort(), nup = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = try vigil.htmlRoot([("page.html", Array("<p>page</p>\n".utf8)), ("file.txt", Array("file\n".utf8))])
        for file in ["/page.html", "/file.txt"] {
            // A fixed time, so that both servers count `expires modified` from the same Last-Modified.
            var times = [timespec(tv_sec: 1_700_000_000, tv_nsec: 0), timespec(tv_sec: 1_700_000_000, tv_nsec: 0)]
            XCTAssertEqual(utimensat(AT_FDCWD, root + file, &times, 0), 0)
        }
        try vigil.write(config: Vigil.config(http: config(port: vport, upstream: vup, root: root)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(port: nport, upstream: nup, root: root), waitFor: [nport, nup])
        defer { nginx.cleanup() }

        // Date-relative values differ by the second the request was made: those are compared to their Date.
        let paths = ["/page.html", "/file.txt", "/epoch/file.txt", "/max/file.txt", "/negative/file.txt", "/modified/file.txt",
                     "/daily/file.txt", "/var/file.txt?e=epoch", "/var/file.txt?e=-30", "/var/file.txt?e=bad", "/var/file.txt",
                     "/var/file.txt?e=@1h", "/varmodified/file.txt?e=1d", "/varmodified/file.txt?e=max", "/etag/file.txt",
                     "/proxy/file.txt", "/epoch/missing", "/trailers/page.html", "/trailers/missing"]
        var differences: [String] = []
        for path in paths {
            let request = "GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            let v = try httpExchange(vport, request), n = try httpExchange(nport, request)
            // A time of day's max-age counts down with the clock.
            let daily = path.contains("daily") || path.contains("@")
            let (vh, nh) = (comparable(v, daily: daily), comparable(n, daily: daily))
            if v.status != n.status || vh != nh || v.status == 200 && v.text != n.text {
                differences.append("\(path):\n  vigil \(v.status) \(vh) \(v.text.debugDescription)\n  nginx \(n.status) \(nh) \(n.text.debugDescription)")
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))

        // The trailers themselves, on the wire after the last chunk.
        let raw = try rawExchange(vport, "GET /trailers/page.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        XCTAssertTrue(raw.hasSuffix("\r\n0\r\nX-Host: localhost\r\nX-Type: text/html\r\nX-Again: localhost\r\nX-Always: yes\r\n\r\n"), raw)
        XCTAssertFalse(raw.contains("Content-Length"), "a body that ends in trailers goes in chunks")
        let http10 = try rawExchange(vport, "GET /trailers/page.html HTTP/1.0\r\n\r\n")
        XCTAssertTrue(http10.contains("Content-Length: 12") && !http10.contains("X-Host"), "HTTP/1.0 has no trailers")
    }

    /// Fields as a client compares them, in any order: Date and Server aside, an Expires relative to now as its distance from
    /// Date.
    private func comparable(_ r: HTTPResponse, daily: Bool) -> [String] {
        let date = r.header("Date").flatMap(parseDate)
        return r.headers.compactMap { field -> String? in
            switch field.name.lowercased() {
            case "date", "server", "connection": return nil
            case "cache-control" where daily: return nil
            case "content-length" where r.status != 200: return nil   // error pages name their server
            case "expires":
                guard let at = parseDate(field.value), let date, abs(at - date) < 400 * 86_400,
                      !field.value.hasSuffix(":33 GMT") else { return "Expires: \(field.value)" }
                return "Expires: Date\(at - date >= 0 ? "+" : "")\(at - date)"
            default: return "\(field.name): \(field.value)"
            }
        }.sorted()
    }

    private let httpDate: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f
    }()

    private func parseDate(_ s: String) -> Int? { httpDate.date(from: s).map { Int($0.timeIntervalSince1970) } }

    private func rawExchange(_ port: UInt16, _ request: String) throws -> String {
        let c = try HTTPConnection(port: port)
        defer { c.close() }
        try c.send(request)
        return String(decoding: c.readToEOF(), as: UTF8.self)
    }
}

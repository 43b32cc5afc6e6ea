import Foundation
import TestHarness
import XCTest

/// The index module (an internal redirect to the first index file there is, `$uri` included) and nginx's
/// conditional requests on static files (If-Modified-Since with `if_modified_since`, If-None-Match, If-Match,
/// If-Unmodified-Since), side by side with Debian's nginx on the same files.
final class IndexAndConditionalTests: XCTestCase {
    func server(port: UInt16, root: String) -> String {
        """
        server {
            listen 127.0.0.1:\(port);
            root \(root);
            add_header X-URI $uri;
            location / { }
            location /redirect/ { index /target.html; }
            location /many/ { alias \(root)/; index missing.html second.html; }
            location /named/ { alias \(root)/; index $server_port-missing.html index.html; }
            location /loop/ { index /loop/; }
            location /quiet/ { log_not_found off; }
            location /before/ { alias \(root)/; if_modified_since before; }
            location /off/ { alias \(root)/; if_modified_since off; }
        }
        """
    }

    func testIndexAndConditionalsMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        for (file, text) in [("/index.html", "top index\n"), ("/target.html", "target\n"), ("/second.html", "second\n"),
                             ("/sub/index.html", "sub index\n"), ("/file.txt", "file\n")] {
            try text.write(toFile: root + file, atomically: true, encoding: .utf8)
        }
        // A fixed time, so that both servers give the same Last-Modified and ETag.
        let mtime = 1_700_000_000
        for file in ["/file.txt", "/index.html"] {
            var times = [timespec(tv_sec: mtime, tv_nsec: 0), timespec(tv_sec: mtime, tv_nsec: 0)]
            XCTAssertEqual(utimensat(AT_FDCWD, root + file, &times, 0), 0)
        }
        try vigil.write(config: Vigil.config(http: server(port: vport, root: root)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(port: nport, root: root), waitFor: [nport])
        defer { nginx.cleanup() }

        let lastModified = "Tue, 14 Nov 2023 22:13:20 GMT", etag = "\"6553f100-5\""
        let cases: [(String, [String])] = [
            ("/", []), ("/sub/", []), ("/redirect/", []), ("/many/", []), ("/named/", []), ("/loop/", []), ("/nothere/", []),
            ("/file.txt/", []), ("/quiet/", []),
            ("/file.txt", ["If-Modified-Since: \(lastModified)"]), ("/file.txt", ["If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT"]),
            ("/before/file.txt", ["If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT"]), ("/off/file.txt", ["If-Modified-Since: \(lastModified)"]),
            ("/file.txt", ["If-Modified-Since: Tuesday, 14-Nov-23 22:13:20 GMT"]), ("/file.txt", ["If-Modified-Since: Tue Nov 14 22:13:20 2023"]),
            ("/file.txt", ["If-None-Match: \(etag)"]), ("/file.txt", ["If-None-Match: \"x\", W/\(etag)"]), ("/file.txt", ["If-None-Match: *"]),
            ("/file.txt", ["If-Match: \"x\""]), ("/file.txt", ["If-Match: \"x\", \t\(etag)"]), ("/file.txt", ["If-Match: W/\(etag)"]),
            ("/file.txt", ["If-Unmodified-Since: Mon, 13 Nov 2023 00:00:00 GMT"]), ("/file.txt", ["If-Unmodified-Since: \(lastModified)"]),
            ("/nothere.txt", ["If-Match: \"x\""]),
        ]
        var differences: [String] = []
        for (path, headers) in cases {
            let raw = getRequest(path, headers: headers + ["Connection: close"])
            let v = try httpExchange(vport, raw), n = try httpExchange(nport, raw)
            let what = "\(path) \(headers)"
            if v.status != n.status { differences.append("\(what): status vigil \(v.status), nginx \(n.status)") }
            for name in ["X-URI", "ETag", "Last-Modified", "Location"] where v.header(name)?.replacingOccurrences(of: "\(vport)", with: "P")
                != n.header(name)?.replacingOccurrences(of: "\(nport)", with: "P") {
                differences.append("\(what): \(name) vigil \(v.header(name) ?? "-"), nginx \(n.header(name) ?? "-")")
            }
            if n.status == 200 && v.text != n.text { differences.append("\(what): body vigil \(v.text.debugDescription), nginx \(n.text.debugDescription)") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        XCTAssertTrue(vigil.errorLog().contains("/nothere/\" is not found (2: No such file or directory)"), vigil.errorLog())
        XCTAssertFalse(vigil.errorLog().contains("/quiet/"), "log_not_found off still logged")
    }
}

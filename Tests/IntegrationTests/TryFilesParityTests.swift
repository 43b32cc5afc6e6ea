import Foundation
import TestHarness
import XCTest

/// try_files, `internal`, alias (prefix, regex, inherited by nested locations), `$request_filename` and a
/// regex location's groups (`$1`, named ones), side by side with Debian's nginx on the same server block and files: status, Location and body must match.
final class TryFilesParityTests: XCTestCase {
    func server(port: UInt16, backend: UInt16, root: String) -> String {
        """
        server {
            listen 127.0.0.1:\(port);
            server_name t.test;
            root \(root);
            location / { try_files $uri $uri/index.html /fallback?from=$uri; }
            location /fallback { return 200 "fallback uri=$uri args=$args\\n"; }
            location /code/ { try_files $uri =418; }
            location /dir/ { try_files $uri/ =404; }
            location /named/ { try_files /nothing @up; }
            location @up { proxy_pass http://127.0.0.1:\(backend); }
            location /proxied/ { try_files $uri @up; }
            location /hidden/ { internal; return 200 "hidden $uri\\n"; }
            location /via-hidden/ { try_files /nothing /hidden/x; }
            location /via-rewrite/ { rewrite ^ /hidden/r last; }
            location /cycle/ { try_files /nothing /cycle/again; }
            location /al/ { alias \(root)/aliased/; try_files $uri $uri.txt =404; }
            location /nest/ { alias \(root)/aliased/; location ~ \\.txt$ { try_files $uri =404; } }
            location ~ ^/re-alias/ { alias \(root)/aliased/one.txt; }
            location ~ ^/re-try/ { alias \(root)/aliased; try_files $uri =404; }
            location ~ ^/cap/(?<word>[a-z]+)/(\\d+)$ { return 200 "word=$word one=$1 two=$2\\n"; }
            location ~ ^/capp/(.*)$ { proxy_pass http://127.0.0.1:\(backend)/x/$1$is_args$args; }
            location /fn/ { return 200 "fn=$request_filename\\n"; }
            location /fn-alias/ { alias /srv/x/; return 200 "fn=$request_filename root=$document_root\\n"; }
            error_page 404 /not-found;
            location = /not-found { internal; return 200 "custom 404 for $request_uri\\n"; }
        }
        """
    }

    func testTryFilesInternalAndAliasMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort(), bport = freePort()
        let backend = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(bport); return 200 \"backend $request_uri\\n\"; }"))
        defer { backend.cleanup() }
        _ = try backend.start()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        for dir in ["/sub", "/aliased", "/dir/real", "/code"] { try FileManager.default.createDirectory(atPath: root + dir, withIntermediateDirectories: true) }
        for (file, text) in [("/a.txt", "file a\n"), ("/sub/index.html", "sub index\n"), ("/aliased/one.txt", "aliased one\n"),
                             ("/aliased/two", "aliased two\n"), ("/code/here", "code here\n"), ("/dir/real/index.html", "real dir\n")] {
            try text.write(toFile: root + file, atomically: true, encoding: .utf8)
        }
        try vigil.write(config: Vigil.config(http: server(port: vport, backend: bport, root: root)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(port: nport, backend: bport, root: root), waitFor: [nport])
        defer { nginx.cleanup() }

        let paths = ["/a.txt", "/sub", "/sub/", "/missing?x=1", "/code/here", "/code/none", "/dir/real", "/dir/a.txt",
                     "/named/x?q=1", "/proxied/a.txt", "/proxied/none", "/hidden/x", "/via-hidden/y", "/via-rewrite/z", "/cycle/x",
                     "/al/one.txt", "/al/one", "/al/two", "/al/none", "/nest/one.txt", "/re-alias/anything", "/re-try/one.txt",
                     "/re-try/none", "/fn/some/file", "/fn-alias/a/b", "/cap/abc/42", "/capp/deep/path?q=1"]
        var differences: [String] = []
        for path in paths {
            let raw = getRequest(path, host: "t.test", headers: ["Connection: close"])
            let v = try httpExchange(vport, raw), n = try httpExchange(nport, raw)
            let vLocation = v.header("Location")?.replacingOccurrences(of: ":\(vport)", with: ":PORT")
            let nLocation = n.header("Location")?.replacingOccurrences(of: ":\(nport)", with: ":PORT")
            if v.status != n.status { differences.append("\(path): status vigil \(v.status), nginx \(n.status)") }
            if vLocation != nLocation { differences.append("\(path): Location vigil \(vLocation ?? "-"), nginx \(nLocation ?? "-")") }
            // Built-in error pages differ in their footer; everything else must be byte for byte.
            if !(n.header("Content-Type") ?? "").hasPrefix("text/html") || n.status < 300, v.body != n.body {
                differences.append("\(path): body vigil \(v.text.debugDescription), nginx \(n.text.debugDescription)")
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        XCTAssertTrue(vigil.errorLog().contains("rewrite or internal redirection cycle while internally redirecting to \"/cycle/again\""),
                      vigil.errorLog())
    }

    /// limit_except: other methods take the block's access rules and proxy_pass (GET brings HEAD).
    func testLimitExceptMatchesNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort(), bport = freePort()
        let backend = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(bport); return 200 \"backend $request_method $request_uri\\n\"; }"))
        defer { backend.cleanup() }
        _ = try backend.start()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try "file\n".write(toFile: root + "/a.txt", atomically: true, encoding: .utf8)
        func config(_ port: UInt16) -> String {
            """
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                location /lmt/ { alias \(root)/; limit_except GET { deny all; } }
                location /lmt-allow/ { alias \(root)/; limit_except POST { allow 10.0.0.0/8; deny all; } }
                location /lmtp/ { proxy_pass http://127.0.0.1:\(bport)/replaced/; limit_except GET { proxy_pass http://127.0.0.1:\(bport); } }
            }
            """
        }
        try vigil.write(config: Vigil.config(http: config(vport)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(nport), waitFor: [nport])
        defer { nginx.cleanup() }
        var differences: [String] = []
        for path in ["/lmt/a.txt", "/lmt-allow/a.txt", "/lmtp/x?y=1"] {
            for method in ["GET", "HEAD", "POST", "DELETE"] {
                let raw = getRequest(path, headers: ["Connection: close", "Content-Length: 0"], method: method)
                let v = try httpExchange(vport, raw, method: method), n = try httpExchange(nport, raw, method: method)
                if v.status != n.status { differences.append("\(method) \(path): status vigil \(v.status), nginx \(n.status)") }
                if n.status == 200 && v.text != n.text { differences.append("\(method) \(path): vigil \(v.text.debugDescription), nginx \(n.text.debugDescription)") }
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    /// Debian's nginx.conf loads its modules with `load_module` (through modules-enabled/*.conf): Vigil loads the
    /// file with a warning, and the modules' directives stay refused.
    func testLoadModuleIsAWarning() throws {
        let vigil = try Vigil(config: Vigil.config(http: "", main: "load_module modules/ngx_stream_module.so;"))
        defer { vigil.cleanup() }
        let r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("[warn] vigil does not load nginx modules: \"modules/ngx_stream_module.so\" is not loaded, and its directives are not supported in \(vigil.confPath):4"), r.stderr)
        try vigil.write(config: Vigil.config(http: "", main: "load_module modules/ngx_stream_module.so; stream { }"))
        XCTAssertTrue(vigil.vigil(["-t"]).stderr.contains("\"stream\" directive is not supported by vigil"))
    }
}

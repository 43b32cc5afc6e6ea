import Foundation
import TestHarness
import XCTest

/// The charset module side by side with Debian's nginx: the charset named in Content-Type (by type, `*`, a
/// variable, not on redirects), recoding through charset_map byte for byte, to UTF-8 and back from it (a
/// character the table lacks becomes an entity), a proxied response's own charset kept or overridden; and
/// `server_tokens` in its forms.
final class CharsetParityTests: XCTestCase {
    func config(port: UInt16, upstream: UInt16, root: String) -> String {
        """
        types { text/html html; text/plain txt; application/x-foo foo; }
        charset_map latin-x utf-8 {
            E9 C3A9;
            FC C3BC;
        }
        charset_map B A { 58 59; }
        server {
            listen 127.0.0.1:\(upstream);
            root \(root);
            location /named/ { alias \(root)/; charset A; }
        }
        server {
            listen 127.0.0.1:\(port);
            root \(root);
            charset utf-8;
            source_charset latin-x;
            location /any/ { alias \(root)/; charset_types *; }
            location /var/ { alias \(root)/; charset $arg_c; }
            location /bytes/ { alias \(root)/; charset A; source_charset B; }
            location /back/ { alias \(root)/; charset latin-x; source_charset utf-8; }
            location /redirect { return 302 /elsewhere; }
            location /proxy/ { proxy_pass http://127.0.0.1:\(upstream)/; }
            location /override/ { proxy_pass http://127.0.0.1:\(upstream)/; charset B; source_charset A; override_charset on; }
            location /off/ { alias \(root)/; charset off; }
            location /tokens-off/ { server_tokens off; return 404; }
            location /tokens-build/ { server_tokens build; return 200 "b"; }
        }
        """
    }

    func testCharsetMatchesNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), vup = freePort(), nport = freePort(), nup = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let files: [(name: String, bytes: [UInt8])] = [("latin.html", Array("caf".utf8) + [0xE9, 0x20, 0xFC, 0xA4, 0x0A]),
                                          ("utf8.txt", Array("caf\u{E9} \u{FC} \u{20AC} \u{1F600}\n".utf8)),
                                          ("xs.html", Array("XXXX".utf8)), ("ys.html", Array("YYYY".utf8)), ("data.foo", Array("foo\n".utf8))]
        let root = try vigil.htmlRoot(files)
        try vigil.write(config: Vigil.config(http: config(port: vport, upstream: vup, root: root)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(port: nport, upstream: nup, root: root), waitFor: [nport, nup])
        defer { nginx.cleanup() }

        let paths = ["/latin.html", "/data.foo", "/any/data.foo", "/var/xs.html?c=koi8-r", "/var/xs.html?c=Latin-X", "/bytes/xs.html",
                     "/back/utf8.txt", "/redirect", "/proxy/named/latin.html", "/override/named/ys.html", "/off/latin.html",
                     "/missing.html", "/tokens-off/"]
        var differences: [String] = []
        var recoded = 0
        for path in paths {
            let request = "GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n"
            let v = try httpExchange(vport, request), n = try httpExchange(nport, request)
            let vType = v.header("Content-Type"), nType = n.header("Content-Type")
            let sameBody = v.status != 200 || v.body == n.body
            if v.status != n.status || vType != nType || !sameBody {
                differences.append("\(path): vigil \(v.status) \(vType ?? "-") \(v.body), nginx \(n.status) \(nType ?? "-") \(n.body)")
            }
            if let file = files.first(where: { path.hasSuffix("/" + $0.name) }), n.status == 200, n.body != file.bytes { recoded += 1 }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(recoded, 4, "the maps must have recoded bodies")
        // server_tokens off names the server without its version; build is on (Vigil has no build name).
        XCTAssertEqual(try httpExchange(vport, "GET /tokens-off/ HTTP/1.0\r\n\r\n").header("Server"), "vigil")
        XCTAssertEqual(try httpExchange(vport, "GET /tokens-build/ HTTP/1.0\r\n\r\n").header("Server"), "vigil/0.1.0")
    }
}

import Foundation
import TestHarness
import XCTest

/// The rewrite module (`set`, `if`, `rewrite`, `return`, `break`) run side by side with Debian's nginx on the
/// same server block: every request must get the same status, the same Location and, for texts that
/// `return` sends, the same body.
final class RewriteParityTests: XCTestCase {
    func server(port: UInt16, root: String) -> String {
        """
        map $http_user_agent $ua_class {
            default other;
            ~*curl curl-ish;
            "~^Mozilla/(?<mozver>[0-9]+)" moz-$1;
            Exact-Agent exact;
        }
        map $host $site {
            hostnames;
            default unknown;
            *.example.test wildcard;
            r.test main;
        }
        map $arg_h $hn {
            hostnames;
            default none;
            *.example.test star;
            .dot.example.test dot;
            www.example.* tail;
            www.* www;
        }
        map "$arg_k:$arg_j" $kv { default d; 1:2 one-two; \\default literal-default; }
        server {
            listen 127.0.0.1:\(port);
            server_name r.test;
            root \(root);
            set $who "world";
            if ($http_x_block) { return 403; }
            if ($http_x_block_text = "yes") { return 418 "teapot $who\\n"; }
            rewrite ^/old/(.*)$ /new/$1 permanent;
            rewrite ^/temp/(.*)$ /new/$1?t=1 redirect;
            location /new/ { return 200 "new: $uri args=$args is_args=$is_args who=$who\\n"; }
            location /a/ { rewrite ^/a/(?<rest>.*)$ /b/$rest last; }
            location /b/ { return 200 "b: $uri args=$args rest=$rest one=$1\\n"; }
            location /q/ { rewrite ^/q/(.*)$ /b/$1?x=1 last; }
            location /qq/ { rewrite ^/qq/(.*)$ /b/$1?x=1? last; }
            location /nq/ { rewrite ^/nq/(.*)$ /b/$1? last; }
            location /loop/ { rewrite ^ /loop/again last; }
            location /brk/ { rewrite ^/brk/(.*)$ /static/$1 break; return 200 "not reached\\n"; }
            location /chain/ { rewrite ^/chain/(.*)$ /b/$1; rewrite ^/b/(.*)$ /new/$1; }
            location /go { return https://example.test$request_uri; }
            location /seeother { return 303 /new/see; }
            location /file/ {
                if (-f $document_root/static/$arg_name) { return 200 "exists $arg_name\\n"; }
                if (!-e $document_root/$arg_name) { set $who "missing"; }
                if (-d $document_root/$arg_name) { return 200 "dir $arg_name\\n"; }
                if ($arg_name ~* ^(X+)(?<tail>y*)$) { return 200 "upper $1 tail=$tail\\n"; }
                if ($arg_name !~ ^[a-z0-9.]*$) { return 400 "bad name\\n"; }
                if ($arg_name = "zero") { set $who "z"; }
                if ($request_method != GET) { return 405; }
                return 200 "none $who\\n";
            }
            location /cookie { return 200 "c=$cookie_session a=$arg_a host=$host\\n"; }
            location = /code { return 204; }
            location /map { return 200 "ua=$ua_class site=$site kv=$kv mozver=$mozver hn=$hn\n"; }
            location /exec/ {
                if (-x $document_root/$arg_name) { return 200 "x $arg_name\n"; }
                return 200 "not x $arg_name\n";
            }
            location = /close { return 444; }
            location /rp { return 200 "rp=$realpath_root dr=$document_root\n"; }
        }
        """
    }

    func testRewriteModuleMatchesNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: root + "/static", withIntermediateDirectories: true)
        try "static file\n".write(toFile: root + "/static/a.txt", atomically: true, encoding: .utf8)
        // -x is the owner's execute bit, on a directory too.
        try FileManager.default.createDirectory(atPath: root + "/shut", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o644])
        try "#!/bin/sh\n".write(toFile: root + "/run.sh", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root + "/run.sh")
        try vigil.write(config: Vigil.config(workers: 1, http: server(port: vport, root: root)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(port: nport, root: root), waitFor: [nport])
        defer { nginx.cleanup() }

        let requests: [(String, [String])] = [
            ("/old/x?y=1", []), ("/temp/x?y=1", []), ("/new/z", []), ("/new/z?k=v", []), ("/a/deep/path", []),
            ("/q/z?o=2", []), ("/qq/z?o=2", []), ("/nq/z?o=2", []), ("/loop/x", []), ("/brk/a.txt", []), ("/brk/none", []),
            ("/chain/c?d=1", []), ("/go?k=v", []), ("/seeother", []), ("/file/?name=a.txt", []), ("/file/?name=static", []),
            ("/file/?name=XXy", []), ("/file/?name=xx", []), ("/file/?name=zero", []), ("/file/?name=no", []),
            ("/file/?name=Bad!", []), ("/rp", []), ("/new/", ["X-Block: 1"]), ("/new/", ["X-Block-Text: yes"]),
            ("/cookie?a=1", ["Cookie: x=1; session=abc"]), ("/code", []),
            ("/map", []), ("/map", ["User-Agent: CURL/8"]), ("/map", ["User-Agent: Mozilla/5.0 (X11)"]), ("/map", ["User-Agent: exact-agent"]),
            ("/map?k=1&j=2", []), ("/map?k=default", []), ("/map?h=dot.example.test", []), ("/map?h=www.dot.example.test", []),
            ("/map?h=a.example.test", []), ("/map?h=www.example.org", []), ("/map?h=www.other.org", []),
            ("/exec/?name=static", []), ("/exec/?name=shut", []), ("/exec/?name=run.sh", []), ("/exec/?name=static/a.txt", []),
        ]
        var differences: [String] = []
        for (path, headers) in requests {
            let raw = getRequest(path, host: path == "/map" && headers.isEmpty ? "a.example.test" : "r.test", headers: headers + ["Connection: close"])
            let v = try httpExchange(vport, raw), n = try httpExchange(nport, raw)
            let vLocation = v.header("Location")?.replacingOccurrences(of: ":\(vport)", with: ":PORT")
            let nLocation = n.header("Location")?.replacingOccurrences(of: ":\(nport)", with: ":PORT")
            if v.status != n.status { differences.append("\(path): status vigil \(v.status), nginx \(n.status)") }
            if vLocation != nLocation { differences.append("\(path): Location vigil \(vLocation ?? "-"), nginx \(nLocation ?? "-")") }
            // Error pages differ in their footer (the server's name); texts from `return` must not.
            if n.status < 300 || !(n.header("Content-Type") ?? "").hasPrefix("text/html"),
               v.body != n.body { differences.append("\(path): body vigil \(String(decoding: v.body, as: UTF8.self).debugDescription), nginx \(String(decoding: n.body, as: UTF8.self).debugDescription)") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        XCTAssertTrue(vigil.errorLog().contains("rewrite or internal redirection cycle while processing \"/loop/again\""), vigil.errorLog())
        XCTAssertTrue(nginx.errorLog().contains("rewrite or internal redirection cycle while processing \"/loop/again\""))
        // 444: both close without a response.
        let closed = HTTPClientProbe.closesWithoutResponse
        XCTAssertTrue(closed(vport, "/close"), "vigil answered 444 instead of closing")
        XCTAssertTrue(closed(nport, "/close"), "nginx answered 444 instead of closing")
    }

    /// add_header (levels, `always`, variables, empty values), proxy_hide_header, proxy_pass_header,
    /// proxy_method (also from variables) and proxy_redirect on Location and Refresh (a prefix with variables, a
    /// regex, a relative Location left alone), through a backend that echoes the method and sends headers of
    /// its own.
    func testHeadersMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let backendPort = freePort(), vport = freePort(), nport = freePort()
        let backend = try NginxPeer(http: """
            server { listen 127.0.0.1:\(backendPort);
                location / { add_header X-Secret s3cr3t; add_header X-Kept kept; add_header X-Accel-Info accel;
                             return 200 "method=$request_method\\n"; }
                location /to-host { return 302 http://$host/login; }
                location /to-path { return 302 /relative; }
                location /to-other { return 301 http://elsewhere.test/x; }
                location /to-refresh { absolute_redirect off; add_header Refresh "7; URL=http://$host/var_here/y"; return 302 /relative; } }
            """, waitFor: [backendPort])
        defer { backend.cleanup() }
        func server(_ port: UInt16) -> String {
            """
            server {
                listen 127.0.0.1:\(port);
                add_header X-Server-Level on;
                add_header X-Empty "$arg_none";
                location /inherit { return 200 "inherit\\n"; }
                location /own { add_header X-Own "v=$arg_v"; add_header X-Always yes always; return 200 "own\\n"; }
                location /missing { add_header X-Always yes always; add_header X-Normal no; return 404; }
                location /r1/ { proxy_pass http://127.0.0.1:\(backendPort)/; }
                location /r2/ { proxy_pass http://127.0.0.1:\(backendPort); proxy_redirect off; }
                location /r3/ { proxy_pass http://127.0.0.1:\(backendPort)/; proxy_redirect http://elsewhere.test/ /moved/; }
                location /r4/ { proxy_pass http://127.0.0.1:\(backendPort)/; proxy_redirect ~^http://elsewhere\\.test/(.*)$ /re/$1; }
                location /r5/ { proxy_pass http://127.0.0.1:\(backendPort)/;
                                proxy_redirect ~^http://nomatch/ /no/;
                                proxy_redirect "~*^HTTP://(?<h>[^/]+)/(.*)$" http://$h.outer/$2?from=$host; }
                location /r6/ { set $v var_here; proxy_pass http://127.0.0.1:\(backendPort)/;
                                proxy_redirect http://127.0.0.1:\(backendPort)/$v/ /replaced/$arg_a/; }
                location /m/ { proxy_method $arg_m; proxy_pass http://127.0.0.1:\(backendPort)/; }
                location /proxy/ {
                    add_header X-Proxied 1;
                    proxy_hide_header X-Secret;
                    proxy_pass_header X-Accel-Info;
                    proxy_method POST;
                    proxy_pass http://127.0.0.1:\(backendPort)/;
                }
            }
            """
        }
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: server(vport)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(nport), waitFor: [nport])
        defer { nginx.cleanup() }
        let ignored: Set<String> = ["server", "date", "connection", "content-length", "content-type", "etag", "last-modified",
                                    "accept-ranges", "transfer-encoding"]
        func normal(_ r: HTTPResponse, _ port: UInt16) -> [String] {
            r.headers.filter { !ignored.contains($0.name.lowercased()) }
                .map { "\($0.name.lowercased()): \($0.value.replacingOccurrences(of: ":\(port)", with: ":PORT").replacingOccurrences(of: ":\(backendPort)", with: ":BACKEND"))" }.sorted()
        }
        var differences: [String] = []
        for path in ["/inherit", "/own?v=7", "/missing", "/proxy/x", "/r1/to-host", "/r1/to-path", "/r1/to-other",
                     "/r2/to-host", "/r3/to-other", "/r4/to-other", "/r4/to-host", "/r5/to-other", "/r5/to-host",
                     "/r1/to-refresh", "/r5/to-refresh", "/r6/to-refresh?a=1", "/m/x?m=PUT"] {
            let raw = getRequest(path, headers: ["Connection: close"])
            let v = try httpExchange(vport, raw), n = try httpExchange(nport, raw)
            if v.status != n.status { differences.append("\(path): status vigil \(v.status), nginx \(n.status)") }
            if normal(v, vport) != normal(n, nport) { differences.append("\(path): headers vigil \(normal(v, vport)), nginx \(normal(n, nport))") }
            if n.status == 200 && v.body != n.body { differences.append("\(path): body differs") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    /// error_page: internal redirects to a URI (through rewrite again), `=code`, bare `=` with a named
    /// location, URLs, errors of a static file, of a failed upstream and, with proxy_intercept_errors, an
    /// upstream's own error status; redirects answered by error pages (whose answer replaces their Location), an
    /// error or redirect inside an error page (its own status), and the 301 nginx adds a slash with for a
    /// proxy_pass location's name; an intercepted 401 keeps its WWW-Authenticate.
    func testErrorPagesMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let backendPort = freePort(), deadPort = freePort(), vport = freePort(), nport = freePort()
        let backend = try NginxPeer(http: """
            server { listen 127.0.0.1:\(backendPort); location / { return 503 "backend 503\\n"; }
                     location /auth { add_header WWW-Authenticate "Basic realm=x" always; return 401; } }
            """, waitFor: [backendPort])
        defer { backend.cleanup() }
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        func server(_ port: UInt16) -> String {
            """
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                error_page 404 /404.html;
                error_page 500 502 503 504 /50x.html;
                error_page 403 =200 /forbidden-ok;
                error_page 410 = @gone;
                error_page 418 https://example.test/teapot;
                error_page 401 =301 https://example.test/login;
                location = /404.html { return 200 "custom 404 page for $request_uri\\n"; }
                location = /50x.html { return 200 "custom 50x page\\n"; }
                location /forbidden { return 403; }
                location = /forbidden-ok { return 200 "was forbidden, method $request_method\\n"; }
                location /gone { return 410; }
                location @gone { return 200 "named gone\\n"; }
                location /tea { return 418; }
                location /auth { return 401; }
                location /moved { rewrite ^ /nowhere; }
                location /dead/ { proxy_pass http://127.0.0.1:\(deadPort)/; }
                location /icpt/ { proxy_intercept_errors on; proxy_pass http://127.0.0.1:\(backendPort)/; }
                location /plain/ { proxy_pass http://127.0.0.1:\(backendPort)/; }
                location /r302text { error_page 302 /target302?1; return 302 "first"; }
                location = /target302 { return 302 "http://example.test/$args"; }
                location /r302url { error_page 302 http://example.test/; return 302 "first"; }
                location /r302dir { error_page 302 /dir; return 302 "first"; }
                location /r302auto { error_page 302 /auto; return 302 "first"; }
                location /auto/ { proxy_pass http://127.0.0.1:\(backendPort)/; }
                location /nested { error_page 404 =200 /nothing-here.txt; return 404; }
            }
            """
        }
        try FileManager.default.createDirectory(atPath: root + "/dir", withIntermediateDirectories: true)
        try vigil.write(config: Vigil.config(workers: 1, http: server(vport)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(nport), waitFor: [nport])
        defer { nginx.cleanup() }
        var differences: [String] = []
        for (method, path) in [("GET", "/missing.txt"), ("GET", "/forbidden"), ("POST", "/forbidden"), ("GET", "/gone"),
                               ("GET", "/tea"), ("GET", "/auth"), ("GET", "/moved/x"), ("GET", "/dead/x"), ("GET", "/icpt/x"),
                               ("GET", "/plain/x"), ("HEAD", "/missing.txt"), ("GET", "/r302text"), ("GET", "/r302url"),
                               ("GET", "/r302dir"), ("GET", "/r302auto"), ("GET", "/auto?a=1"), ("GET", "/nested"), ("GET", "/icpt/auth")] {
            let raw = getRequest(path, headers: ["Connection: close"] + (method == "POST" ? ["Content-Length: 0"] : []), method: method)
            let v = try httpExchange(vport, raw, method: method), n = try httpExchange(nport, raw, method: method)
            let vLocation = v.header("Location")?.replacingOccurrences(of: ":\(vport)/", with: ":PORT/")
            let nLocation = n.header("Location")?.replacingOccurrences(of: ":\(nport)/", with: ":PORT/")
            if v.status != n.status { differences.append("\(method) \(path): status vigil \(v.status), nginx \(n.status)") }
            if vLocation != nLocation { differences.append("\(method) \(path): Location vigil \(vLocation ?? "-"), nginx \(nLocation ?? "-")") }
            if v.header("WWW-Authenticate") != n.header("WWW-Authenticate") {
                differences.append("\(method) \(path): WWW-Authenticate vigil \(v.header("WWW-Authenticate") ?? "-"), nginx \(n.header("WWW-Authenticate") ?? "-")")
            }
            if !(n.header("Content-Type") ?? "").hasPrefix("text/html"), v.body != n.body {
                differences.append("\(method) \(path): body vigil \(String(decoding: v.body, as: UTF8.self).debugDescription), nginx \(String(decoding: n.body, as: UTF8.self).debugDescription)")
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    /// `server_name ~regex` after exact and wildcard names, with its named group as a variable.
    func testRegexServerNamesMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        func servers(_ port: UInt16) -> String {
            """
            server { listen 127.0.0.1:\(port) default_server; return 200 "default\\n"; }
            server { listen 127.0.0.1:\(port); server_name www.example.test; return 200 "exact\\n"; }
            server { listen 127.0.0.1:\(port); server_name *.example.test; return 200 "wildcard $host\\n"; }
            server { listen 127.0.0.1:\(port); server_name "~^(?<user>[a-z]+)\\.users\\.test$"; return 200 "user $user\\n"; }
            server { listen 127.0.0.1:\(port); server_name ~^api-(\\d+)\\.test$; location / { return 200 "api $1\\n"; } }
            """
        }
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: servers(vport)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: servers(nport), waitFor: [nport])
        defer { nginx.cleanup() }
        var differences: [String] = []
        for host in ["www.example.test", "a.example.test", "bob.users.test", "BOB.users.test", "api-42.test", "api-x.test", "other.test"] {
            let raw = getRequest("/", host: host, headers: ["Connection: close"])
            let v = try httpExchange(vport, raw), n = try httpExchange(nport, raw)
            if v.status != n.status || v.body != n.body {
                differences.append("\(host): vigil \(v.status) \(String(decoding: v.body, as: UTF8.self).debugDescription), nginx \(n.status) \(String(decoding: n.body, as: UTF8.self).debugDescription)")
            }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    /// Static files: Last-Modified, ETag, conditional requests (304), `expires` in its forms, the index
    /// file's type.
    func testStaticFilesMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: root + "/dir", withIntermediateDirectories: true)
        try "<p>index</p>\n".write(toFile: root + "/dir/index.html", atomically: true, encoding: .utf8)
        try "body { }\n".write(toFile: root + "/style.css", atomically: true, encoding: .utf8)
        func server(_ port: UInt16) -> String {
            """
            types { text/html html; text/css css; }
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                location / { expires 1h; }
                location /dir/ { expires epoch; }
                location = /style.css { expires max; etag off; }
            }
            """
        }
        try vigil.write(config: Vigil.config(workers: 1, http: server(vport)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(nport), waitFor: [nport])
        defer { nginx.cleanup() }
        let first = try httpExchange(nport, getRequest("/dir/index.html", headers: ["Connection: close"]))
        let etag = first.header("ETag") ?? "", lastModified = first.header("Last-Modified") ?? ""
        XCTAssertFalse(etag.isEmpty)
        let ignored: Set<String> = ["server", "date", "connection", "expires", "accept-ranges", "content-length"]
        var differences: [String] = []
        for (path, headers) in [("/dir/", []), ("/dir/index.html", []), ("/dir/index.html", ["If-None-Match: \(etag)"]),
                                ("/dir/index.html", ["If-None-Match: \"other\""]), ("/dir/index.html", ["If-Modified-Since: \(lastModified)"]),
                                ("/style.css", []), ("/style.css", ["If-Modified-Since: \(lastModified)"])] {
            let raw = getRequest(path, headers: headers + ["Connection: close"])
            let v = try httpExchange(vport, raw), n = try httpExchange(nport, raw)
            func normal(_ r: HTTPResponse) -> [String] {
                r.headers.filter { !ignored.contains($0.name.lowercased()) }.map { "\($0.name.lowercased()): \($0.value)" }.sorted()
                    + [r.header("Expires") == nil ? "no expires" : "expires"]
            }
            if v.status != n.status { differences.append("\(path) \(headers): status vigil \(v.status), nginx \(n.status)") }
            if normal(v) != normal(n) { differences.append("\(path) \(headers): headers vigil \(normal(v)), nginx \(normal(n))") }
            if v.body != n.body { differences.append("\(path) \(headers): body differs") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    /// Directives inside `if` in a location (nginx's nameless `if` location): add_header (the CORS pattern,
    /// and two `if`s that both hold, where only the last one's configuration counts), proxy_pass inside an
    /// `if`, a location's proxy_pass kept by an `if` without one, root, error_page and expires in an `if`.
    func testIfBlocksMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let backendPort = freePort(), vport = freePort(), nport = freePort()
        let backend = try NginxPeer(http: """
            server { listen 127.0.0.1:\(backendPort);
                location / { add_header X-Backend b; return 200 "backend uri=$uri args=$args\\n"; } }
            """, waitFor: [backendPort])
        defer { backend.cleanup() }
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let other = vigil.prefix + "/other"
        try FileManager.default.createDirectory(atPath: other + "/st", withIntermediateDirectories: true)
        try "other root\n".write(toFile: other + "/st/f.txt", atomically: true, encoding: .utf8)
        func server(_ port: UInt16) -> String {
            """
            server {
                listen 127.0.0.1:\(port);
                add_header X-Server s;
                location /cors/ {
                    add_header X-Loc loc;
                    if ($request_method = OPTIONS) {
                        add_header Access-Control-Allow-Origin "*";
                        add_header Access-Control-Max-Age 1728000;
                        return 204;
                    }
                    if ($arg_one) { add_header X-First 1; }
                    if ($arg_two) { add_header X-Second 2; }
                    return 200 "cors\\n";
                }
                location /px/ {
                    if ($arg_p) { add_header X-If-Proxy 1; proxy_pass http://127.0.0.1:\(backendPort); }
                    return 200 "not proxied\\n";
                }
                location /keep/ {
                    proxy_pass http://127.0.0.1:\(backendPort)/mapped/;
                    if ($arg_noop) { }
                    if ($arg_hdr) { add_header X-If hdr; }
                }
                location /st/ {
                    if ($arg_other) { root \(other); }
                    if ($arg_ep) { error_page 404 =200 /cors/; }
                    if ($arg_exp) { expires epoch; }
                }
            }
            """
        }
        try vigil.write(config: Vigil.config(workers: 1, http: server(vport)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(nport), waitFor: [nport])
        defer { nginx.cleanup() }
        let ignored: Set<String> = ["server", "date", "connection", "content-length", "content-type", "etag", "last-modified",
                                    "accept-ranges", "transfer-encoding"]
        func normal(_ r: HTTPResponse) -> [String] {
            r.headers.filter { !ignored.contains($0.name.lowercased()) }.map { "\($0.name.lowercased()): \($0.value)" }.sorted()
        }
        var differences: [String] = []
        let requests: [(String, String)] = [
            ("OPTIONS", "/cors/"), ("GET", "/cors/"), ("GET", "/cors/?one=1"), ("GET", "/cors/?one=1&two=1"),
            ("GET", "/px/x?p=1"), ("GET", "/px/x"), ("GET", "/keep/a?noop=1"), ("GET", "/keep/a?hdr=1"), ("GET", "/keep/a"),
            ("GET", "/st/f.txt?other=1"), ("GET", "/st/f.txt"), ("GET", "/st/f.txt?ep=1"), ("GET", "/st/f.txt?other=1&exp=1"),
        ]
        for (method, path) in requests {
            let raw = getRequest(path, headers: ["Connection: close"], method: method)
            let v = try httpExchange(vport, raw, method: method), n = try httpExchange(nport, raw, method: method)
            if v.status != n.status { differences.append("\(method) \(path): status vigil \(v.status), nginx \(n.status)") }
            if normal(v) != normal(n) { differences.append("\(method) \(path): headers vigil \(normal(v)), nginx \(normal(n))") }
            if n.status < 300 && v.body != n.body { differences.append("\(method) \(path): body vigil \(String(decoding: v.body, as: UTF8.self)), nginx \(String(decoding: n.body, as: UTF8.self))") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))

        // Directives nginx does not allow in an `if`, and a URI on proxy_pass inside one, fail `-t` as in nginx.
        for (server, message) in [
            ("location / { if ($a) { proxy_set_header X 1; } }", "\"proxy_set_header\" directive is not allowed here"),
            ("location / { if ($a) { proxy_pass http://127.0.0.1:1/x; } }",
             "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block"),
            ("if ($a) { add_header X 1; }", "\"add_header\" directive is not allowed here"),
        ] {
            try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); \(server) }"))
            let r = vigil.vigil(["-t"])
            XCTAssertEqual(r.status, 1, server)
            XCTAssertTrue(r.stderr.contains("\(message) in \(vigil.confPath):10"), r.stderr)
        }
    }

    /// The answers nginx-tests pins down (rewrite.t, http_absolute_redirect.t, http_variables.t, gzip.t): a
    /// `return` below 400 without a text inside an error page (the page's status, an empty body), a redirect's
    /// Location kept through its error page, a bare `return 204` and `return 301`, captures escaped again
    /// into a rewrite's arguments, `break` after a rewrite sending the whole URI upstream, a directory's and a
    /// location's 301 escaped (with the arguments, absolute or not), `$limit_rate` set and read, and gzip
    /// without a `types` block (html is text/html) on GET and HEAD, its ETag made weak.
    func testReturnsRedirectsAndGzipHeadsMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let backendPort = freePort(), vport = freePort(), nport = freePort()
        let backend = try NginxPeer(http: """
            server { listen 127.0.0.1:\(backendPort); location / { return 200 "backend $request_uri\\n"; } }
            """, waitFor: [backendPort])
        defer { backend.cleanup() }
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: root + "/dir sp", withIntermediateDirectories: true)
        try String(repeating: "X", count: 64).write(toFile: root + "/index.html", atomically: true, encoding: .utf8)
        func server(_ port: UInt16) -> String {
            """
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                absolute_redirect off;
                location / { gzip on; }
                location /abs/ { absolute_redirect on; alias \(root)/; }
                location "/auto sp/" { proxy_pass http://127.0.0.1:\(backendPort)/; }
                location /r204 { return 204; }
                location /r200 { return 200; }
                location /r301 { return 301; }
                location /e204 { error_page 405 /r204; return 405; }
                location /e200 { error_page 405 /r200; return 405; }
                location /e302 { error_page 302 /text; return 302 "there"; }
                location = /text { return 200 "text\\n"; }
                location /capture { rewrite ^(.*) $1?c=$1; return 200 "uri=$uri args=$args\\n"; }
                location /brk { rewrite ^ /text; break; proxy_pass http://127.0.0.1:\(backendPort)/elsewhere; }
                location /lr { set $limit_rate $arg_l; add_header X-Rate $limit_rate; return 200 "ok\\n"; }
            }
            """
        }
        try vigil.write(config: Vigil.config(workers: 1, http: server(vport)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: server(nport), waitFor: [nport])
        defer { nginx.cleanup() }
        let compared: Set<String> = ["location", "content-type", "content-length", "content-encoding", "etag", "x-rate", "vary"]
        // Built-in pages differ in their signature's length; a compressed body is chunked by nginx, whole by Vigil.
        func normal(_ r: HTTPResponse, _ port: UInt16, length: Bool) -> [String] {
            r.headers.filter { compared.contains($0.name.lowercased()) && (length || $0.name.lowercased() != "content-length") }
                .map { "\($0.name.lowercased()): \($0.value.replacingOccurrences(of: ":\(port)/", with: ":PORT/"))" }.sorted()
        }
        let gzip = ["Accept-Encoding: gzip"]
        var differences: [String] = []
        for (method, path, headers) in [
            ("GET", "/r204", []), ("GET", "/r200", []), ("GET", "/r301", []), ("GET", "/e204", []), ("GET", "/e200", []),
            ("GET", "/e302", []), ("GET", "/capture/%25?a=b", []), ("GET", "/capture/a+b?a=b", []), ("GET", "/capture/plain?a=b", []),
            ("GET", "/brk", []), ("GET", "/lr?l=40k", []), ("GET", "/lr?l=1m", []), ("GET", "/lr", []), ("GET", "/lr?l=2g", []),
            ("GET", "/dir%20sp", []), ("GET", "/dir%20sp?a=b", []), ("GET", "/abs/dir%20sp?a=b", []), ("GET", "/auto%20sp?a=b", []),
            ("GET", "/index.html", gzip), ("HEAD", "/index.html", gzip), ("HEAD", "/index.html", []), ("GET", "/index.html", []),
        ] as [(String, String, [String])] {
            let raw = getRequest(path, headers: headers + ["Connection: close"], method: method)
            let v = try httpExchange(vport, raw, method: method), n = try httpExchange(nport, raw, method: method)
            if v.status != n.status { differences.append("\(method) \(path): status vigil \(v.status), nginx \(n.status)") }
            let page = (n.header("Content-Type") ?? "").hasPrefix("text/html") && n.status >= 300, gzipped = n.header("Content-Encoding") != nil
            let vh = normal(v, vport, length: !page && !gzipped), nh = normal(n, nport, length: !page && !gzipped)
            if vh != nh { differences.append("\(method) \(path): headers vigil \(vh), nginx \(nh)") }
            if !page && !gzipped,
               v.body != n.body { differences.append("\(method) \(path): body vigil \(String(decoding: v.body, as: UTF8.self).debugDescription), nginx \(String(decoding: n.body, as: UTF8.self).debugDescription)") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
    }

    func testScriptErrorsAtConfigTest() throws {
        let vigil = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(freePort());
                location / { rewrite ^/(a $1; } }
            """))
        defer { vigil.cleanup() }
        var r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("pcre2_compile() failed: missing closing parenthesis in \"^/(a\" at \"\" in \(vigil.confPath):11"), r.stderr)
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); location / { return 200 $nosuch; } }"))
        r = vigil.vigil(["-t"])
        XCTAssertTrue(r.stderr.contains("unknown \"nosuch\" variable in \(vigil.confPath):10"), r.stderr)
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); set $host x; }"))
        r = vigil.vigil(["-t"])
        XCTAssertTrue(r.stderr.contains("the duplicate \"host\" variable in \(vigil.confPath):10"), r.stderr)
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); if ($a ~) { } }"))
        r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 1, r.stderr)
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); location / { rewrite ^ /x bogus; } }"))
        r = vigil.vigil(["-t"])
        XCTAssertTrue(r.stderr.contains("invalid parameter \"bogus\" in \(vigil.confPath):10"), r.stderr)
    }
}

/// Whether a server closes the connection without any response byte (nginx's `return 444`).
enum HTTPClientProbe {
    static func closesWithoutResponse(_ port: UInt16, _ path: String) -> Bool {
        guard let c = try? HTTPConnection(port: port) else { return false }
        defer { c.close() }
        try? c.send(getRequest(path, host: "r.test"))
        return c.readToEOF().isEmpty
    }
}

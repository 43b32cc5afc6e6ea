import Foundation
import TestHarness
import XCTest

/// Directives of nginx.conf files that people run, beyond routing: conditional access logs, the Keep-Alive
/// header, connection lifetimes, and a realistic mix of map, add_header and rewrite in one server.
final class ConfigLanguageTests: XCTestCase {
    var vigil: Vigil!
    override func tearDown() { vigil?.cleanup() }

    func testConditionalAccessLogKeepAliveHeaderAndKeepaliveTime() throws {
        let port = freePort()
        vigil = try Vigil(config: Vigil.config(http: """
            map $status $loggable { ~^[23] 0; default 1; }
            log_format brief '$status $uri';
            server {
                listen 127.0.0.1:\(port);
                access_log logs/errors-only.log brief if=$loggable;
                keepalive_timeout 65 60;
                keepalive_time 1s;
                location / { return 200 "ok\\n"; }
                location /missing { return 404; }
            }
            """))
        _ = try vigil.start()
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/a"))
        let first = try c.readResponse()
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.header("Keep-Alive"), "timeout=60")
        XCTAssertEqual(first.header("Connection"), "keep-alive")
        try c.send(getRequest("/missing"))
        XCTAssertEqual(try c.readResponse().status, 404)
        // keepalive_time: once the connection is older than 1 s, its next response closes it.
        usleep(1_200_000)
        try c.send(getRequest("/b"))
        let late = try c.readResponse()
        XCTAssertEqual(late.header("Connection"), "close")
        XCTAssertTrue(c.peerClosed(within: 3))
        let log = try String(contentsOfFile: vigil.prefix + "/logs/errors-only.log", encoding: .utf8)
        XCTAssertEqual(log, "404 /missing\n", "only the request whose $loggable is 1 is logged")
    }

    /// The kind of server block the benchmark uses: a map, two add_header, one rewrite.
    /// chunked_transfer_encoding off: a body of unknown length goes unchunked and the close ends it. Upstream
    /// keepalive_time: a cached connection older than that is closed when its request ends, not cached again.
    func testChunkedTransferEncodingAndUpstreamKeepaliveTime() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let backendPort = freePort(), port = freePort()
        let backend = try NginxPeer(http: """
            server { listen 127.0.0.1:\(backendPort);
                gzip on; gzip_types text/plain; gzip_min_length 0;
                location / { default_type text/plain; return 200 "connection $connection\\n"; } }
            """, waitFor: [backendPort])
        defer { backend.cleanup() }
        vigil = try Vigil(config: Vigil.config(http: """
            upstream pool { server 127.0.0.1:\(backendPort); keepalive 4; keepalive_time 1s; }
            server {
                listen 127.0.0.1:\(port);
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                location / { proxy_pass http://pool; }
                location /unchunked/ { chunked_transfer_encoding off; proxy_pass http://pool; }
            }
            """))
        _ = try vigil.start()
        let gz = ["Accept-Encoding: gzip", "Connection: close"]
        let chunked = try httpExchange(port, getRequest("/x", headers: gz))
        XCTAssertEqual(chunked.header("Transfer-Encoding"), "chunked")
        let plain = try httpExchange(port, getRequest("/unchunked/x", headers: gz))
        XCTAssertEqual(plain.status, 200)
        XCTAssertNil(plain.header("Transfer-Encoding"))
        XCTAssertEqual(plain.header("Connection"), "close")
        XCTAssertEqual(plain.header("Content-Encoding"), "gzip")
        XCTAssertEqual(plain.body, chunked.body, "the unchunked body differs from the chunked one")

        func connection() -> String? { httpGet(port, "/")?.body }
        let first = connection(), second = connection()
        XCTAssertNotNil(first)
        XCTAssertEqual(first, second, "the upstream connection was not kept alive")
        usleep(1_200_000)
        XCTAssertEqual(connection(), first, "a connection cached before keepalive_time passed is used once more")
        XCTAssertNotEqual(connection(), first, "a connection older than keepalive_time was cached again")
    }

    func testRealisticServerBlock() throws {
        let port = freePort()
        vigil = try Vigil(config: Vigil.config(http: """
            map $http_accept_language $lang { default en; ~^de de; ~^fr fr; }
            server {
                listen 127.0.0.1:\(port);
                add_header X-Frame-Options DENY;
                add_header X-Lang $lang;
                rewrite ^/docs/(.*)\\.html$ /d/$1 last;
                location /d/ { return 200 "doc $1 in $lang\\n"; }
                location / { return 200 "home\\n"; }
            }
            """))
        _ = try vigil.start()
        let r = try httpExchange(port, getRequest("/docs/intro.html", headers: ["Accept-Language: de-DE,de;q=0.9", "Connection: close"]))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "doc intro in de\n")
        XCTAssertEqual(r.header("X-Frame-Options"), "DENY")
        XCTAssertEqual(r.header("X-Lang"), "de")
        let home = try httpExchange(port, getRequest("/", headers: ["Connection: close"]))
        XCTAssertEqual(home.header("X-Lang"), "en")
    }

    /// `proxy_pass http://$var`: the variable names an upstream block or an address; anything else is a 502
    /// with nginx's "no resolver defined" line.
    func testVariablesInProxyPass() throws {
        let a = freePort(), b = freePort(), port = freePort()
        vigil = try Vigil(config: Vigil.config(http: """
            map $arg_pool $pool { default pool_a; b pool_b; literal 127.0.0.1:\(b); far unknown.invalid; }
            upstream pool_a { server 127.0.0.1:\(a); }
            upstream pool_b { server 127.0.0.1:\(b); }
            server { listen 127.0.0.1:\(a); location / { return 200 "a $host $request_uri\\n"; } }
            server { listen 127.0.0.1:\(b); location / { return 200 "b $host $request_uri\\n"; } }
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://$pool; }
                location /fixed/ { proxy_pass http://$pool/other$is_args$args; }
            }
            """))
        _ = try vigil.start()
        XCTAssertEqual(httpGet(port, "/x?pool=a")?.body, "a pool_a /x?pool=a\n")
        XCTAssertEqual(httpGet(port, "/x?pool=b")?.body, "b pool_b /x?pool=b\n")
        XCTAssertEqual(httpGet(port, "/x?pool=literal")?.body, "b 127.0.0.1 /x?pool=literal\n")
        XCTAssertEqual(httpGet(port, "/fixed/y?pool=b")?.body, "b pool_b /other?pool=b\n", "a URI in the variable URL replaces the request's")
        XCTAssertEqual(httpGet(port, "/x?pool=far")?.status, 502)
        XCTAssertTrue(vigil.errorLog().contains("no resolver defined to resolve unknown.invalid"), vigil.errorLog())
    }

    /// proxy_next_upstream across peers and $upstream_addr / $upstream_status listing every attempt, as nginx
    /// joins them; proxy_next_upstream_tries 1 stops after the first.
    func testNextUpstreamListsEveryAttempt() throws {
        let dead = freePort(), deadToo = freePort(), live = freePort(), port = freePort()
        vigil = try Vigil(config: Vigil.config(http: """
            upstream pool { server 127.0.0.1:\(dead); server 127.0.0.1:\(live); }
            upstream once { server 127.0.0.1:\(deadToo); server 127.0.0.1:\(live); }
            server { listen 127.0.0.1:\(live); location / { return 200 "live\\n"; } }
            server {
                listen 127.0.0.1:\(port);
                add_header X-Upstream $upstream_addr always;
                add_header X-Upstream-Status $upstream_status always;
                location /retry/ { proxy_pass http://pool; }
                location /once/ { proxy_pass http://once; proxy_next_upstream_tries 1; }
            }
            """))
        _ = try vigil.start()
        let retried = try httpExchange(port, getRequest("/retry/", headers: ["Connection: close"]))
        XCTAssertEqual(retried.status, 200)
        XCTAssertEqual(retried.header("X-Upstream"), "127.0.0.1:\(dead), 127.0.0.1:\(live)")
        XCTAssertEqual(retried.header("X-Upstream-Status"), "502, 200")
        let next = try httpExchange(port, getRequest("/retry/", headers: ["Connection: close"]))
        XCTAssertEqual(next.header("X-Upstream"), "127.0.0.1:\(live)", "the refused peer is out for fail_timeout")
        let once = try httpExchange(port, getRequest("/once/", headers: ["Connection: close"]))
        XCTAssertEqual(once.status, 502)
        XCTAssertEqual(once.header("X-Upstream"), "127.0.0.1:\(deadToo)")
        XCTAssertEqual(once.header("X-Upstream-Status"), "502")
    }

    /// Unix-domain sockets: a listener, `proxy_pass http://unix:/path:/uri` (also from variables), an upstream `server unix:`
    /// with a tcp check; the socket file is removed at stop.
    func testUnixDomainSockets() throws {
        let port = freePort()
        vigil = try Vigil(config: "")
        let sock = vigil.prefix + "/logs/app.sock"
        try vigil.write(config: Vigil.config(http: """
            upstream app { server unix:\(sock); check interval=300 rise=1 fall=1 timeout=1000 type=tcp; }
            server { listen unix:\(sock); location / { return 200 "over unix from $remote_addr, host $host, uri $uri\\n"; } }
            server {
                listen 127.0.0.1:\(port);
                location /direct/ { proxy_pass http://unix:\(sock):/inner/; }
                location /var { proxy_pass http://$arg_b; }
                location /pool/ { proxy_pass http://app; }
                location /status { check_status csv; }
            }
            """))
        let master = try vigil.start()
        XCTAssertEqual(httpGet(port, "/direct/x")?.body, "over unix from unix:, host localhost, uri /inner/x\n")
        // With variables the socket is known per request, its path up to the next colon, as nginx reads it.
        XCTAssertEqual(httpGet(port, "/var?b=unix:\(sock):/v")?.body, "over unix from unix:, host localhost, uri /v\n")
        // The checked peer starts down (default_down), and is up once its first probe connects.
        XCTAssertTrue(waitFor(5) { (httpGet(port, "/status")?.body ?? "").contains("unix:\(sock),up") }, httpGet(port, "/status")?.body ?? "")
        XCTAssertEqual(httpGet(port, "/pool/y")?.body, "over unix from unix:, host app, uri /pool/y\n")
        XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(master) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: sock), "the socket file is removed at stop")
    }
}

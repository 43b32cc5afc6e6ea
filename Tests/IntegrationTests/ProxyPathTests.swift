import Foundation
import TestHarness
import XCTest

/// Proxying and balancing, the status pages and the access log on the real binary.
final class ProxyPathTests: RequestPathTestCase {
    // MARK: proxy

    func testWeightedRoundRobin() throws {
        let b = (freePort(), freePort(), freePort())
        try start("""
            upstream weighted {
                server 127.0.0.1:\(b.0) weight=1;
                server 127.0.0.1:\(b.1) weight=1;
                server 127.0.0.1:\(b.2) weight=2;
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://weighted; } }
            \(backend(b.0, "one"))\(backend(b.1, "two"))\(backend(b.2, "three"))
            """)
        let c = try HTTPConnection(port: port)
        var sequence: [String] = []
        for _ in 0..<400 {
            try c.send(getRequest("/"))
            let r = try c.readResponse()
            XCTAssertEqual(r.status, 200)
            sequence.append(r.text)
        }
        let counts = Dictionary(sequence.map { ($0, 1) }, uniquingKeysWith: +)
        XCTAssertEqual(counts, ["one": 100, "two": 100, "three": 200])
        // nginx's smooth weighted round robin interleaves: c a b c, repeated.
        XCTAssertEqual(Array(sequence.prefix(8)), ["three", "one", "two", "three", "three", "one", "two", "three"])
    }

    func testBackupOnlyWhenPrimariesUnreachable() throws {
        let live = freePort(), spare = freePort(), dead1 = freePort(), dead2 = freePort()
        try start("""
            upstream healthy {
                server 127.0.0.1:\(live);
                server 127.0.0.1:\(spare) backup;
            }
            upstream broken {
                server 127.0.0.1:\(dead1);
                server 127.0.0.1:\(dead2);
                server 127.0.0.1:\(spare) backup;
            }
            server {
                listen 127.0.0.1:\(port);
                location /healthy { proxy_pass http://healthy; }
                location /broken { proxy_pass http://broken; }
            }
            \(backend(live, "primary"))\(backend(spare, "backup"))
            """)
        let c = try HTTPConnection(port: port)
        for _ in 0..<20 {
            try c.send(getRequest("/healthy"))
            XCTAssertEqual(try c.readResponse().text, "primary")
        }
        for i in 0..<10 {
            try c.send(getRequest("/broken"))
            let r = try c.readResponse()
            XCTAssertEqual(r.status, 200, "request \(i)")
            XCTAssertEqual(r.text, "backup", "request \(i)")
        }
        XCTAssertTrue(errorLogEventually(contains: "connect() failed (111: Connection refused) while connecting to upstream"), vigil!.errorLog())
    }

    func testAllPeersDead502() throws {
        let dead1 = freePort(), dead2 = freePort()
        try start("""
            upstream dead {
                server 127.0.0.1:\(dead1);
                server 127.0.0.1:\(dead2);
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://dead; } }
            """)
        let c = try HTTPConnection(port: port)
        for _ in 0..<2 {
            try c.send(getRequest("/x"))
            let r = try c.readResponse()
            XCTAssertEqual(r.statusLine, "HTTP/1.1 502 Bad Gateway")
            XCTAssertEqual(r.text, errorPage("502 Bad Gateway"))
            XCTAssertEqual(r.header("Content-Type"), "text/html")
        }
        XCTAssertTrue(errorLogEventually(contains: "connect() failed (111: Connection refused) while connecting to upstream"), vigil!.errorLog())
        // Both peers failed once (max_fails=1): the second request finds none left.
        XCTAssertTrue(errorLogEventually(contains: "no live upstreams while connecting to upstream"), vigil!.errorLog())
    }

    func testAllPeersDownByCheck502() throws {
        let dead1 = freePort(), dead2 = freePort()
        try start("""
            upstream checked {
                server 127.0.0.1:\(dead1);
                server 127.0.0.1:\(dead2);
                check interval=3000 type=tcp;
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://checked; } }
            """)
        let r = try get("/y")
        XCTAssertEqual(r.status, 502)
        XCTAssertEqual(r.text, errorPage("502 Bad Gateway"))
        XCTAssertTrue(errorLogEventually(contains: "no live upstreams while connecting to upstream"), vigil!.errorLog())
        XCTAssertTrue(vigil!.errorLog().contains("request: \"GET /y HTTP/1.1\", upstream: \"http://checked/y\""), vigil!.errorLog())
    }

    /// `keepalive 2` under bursts of 6 concurrent requests: the connections above 2 are reused by a burst that
    /// follows within a second instead of being closed and opened again, and closed once idle that long.
    func testUpstreamKeepaliveReusesExcessWithinGraceThenTrims() throws {
        let upstream = try RawServer(.keepAlive(Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8), afterMs: 300))
        defer { upstream.stop() }
        port = freePort()   // chosen while the upstream listens, so that the two cannot be given the same port
        try start("""
            upstream pool { server 127.0.0.1:\(upstream.port); keepalive 2; }
            server { listen 127.0.0.1:\(port);
                     location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; } }
            """)
        func burst() throws {
            let clients = try (0..<6).map { _ in try HTTPConnection(port: port) }
            for c in clients { try c.send(getRequest("/")) }
            for c in clients { XCTAssertEqual(try c.readResponse().text, "ok") }
        }
        try burst()
        XCTAssertEqual(upstream.accepted, 6, "six requests at once need six upstream connections")
        try burst()
        XCTAssertEqual(upstream.accepted, 6, "a burst right after the first reuses its connections")
        XCTAssertTrue(waitFor(5) { upstream.openConnections == 2 }, "\(upstream.openConnections) upstream connections left")
        usleep(1_500_000)
        XCTAssertEqual(upstream.openConnections, 2, "keepalive 2 keeps two")
        XCTAssertEqual(try get("/").text, "ok")
        XCTAssertEqual(upstream.accepted, 6)
    }

    /// Like HAProxy's `tcp-smart-connect`: the handshake's last ACK rides on the request, so the backend
    /// receives one segment fewer than from a plain connect-then-send client (what tcpdump shows as
    /// `S`, `S.`, `.P` in place of `S`, `S.`, `.`, `.P`).
    func testUpstreamRequestCarriesTheHandshakeAck() throws {
        guard let (listener, upstreamPort) = loopbackSocket(listening: 8) else { return XCTFail("listen") }
        defer { close(listener) }
        /// Accepts one connection, reads its request head and returns it with the segments it has received.
        func acceptRequest() -> (fd: Int32, segmentsIn: UInt32)? {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            let fd = poll(&pfd, 1, 5000) == 1 ? accept(listener, nil, nil) : -1
            guard fd >= 0 else { return nil }
            var head: [UInt8] = [], buf = [UInt8](repeating: 0, count: 4096)
            while CaptureServer.find([13, 10, 13, 10], in: head) == nil {
                var rfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let n = poll(&rfd, 1, 5000) == 1 ? recv(fd, &buf, buf.count, 0) : 0
                guard n > 0 else { close(fd); return nil }
                head += buf[0..<n]
            }
            // tcpi_segs_in sits at byte 140 of Linux's struct tcp_info (4.2 and later); Glibc's copy predates it.
            var info = [UInt8](repeating: 0, count: 256)
            var length = socklen_t(info.count)
            guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0, length >= 144 else { close(fd); return nil }
            return (fd, info.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 140, as: UInt32.self) })
        }
        let plain = try HTTPConnection(port: upstreamPort)
        try plain.send(getRequest("/"))
        guard let reference = acceptRequest() else { return XCTFail("no request from the plain client") }
        close(reference.fd)

        try start("server { listen 127.0.0.1:\(port); location / { proxy_pass http://127.0.0.1:\(upstreamPort); } }")
        let client = try HTTPConnection(port: port)
        try client.send(getRequest("/"))
        guard let proxied = acceptRequest() else { return XCTFail("no request from Vigil") }
        _ = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".utf8).withUnsafeBytes {
            send(proxied.fd, $0.baseAddress, $0.count, 0)
        }
        close(proxied.fd)
        XCTAssertEqual(try client.readResponse().text, "ok")
        XCTAssertEqual(proxied.segmentsIn, reference.segmentsIn - 1,
                       "segments the backend received up to the request: Vigil's, a plain client's")
    }

    func testIPHashIsSticky() throws {
        let b = (freePort(), freePort(), freePort())
        try start("""
            upstream sticky {
                ip_hash;
                server 127.0.0.1:\(b.0);
                server 127.0.0.1:\(b.1);
                server 127.0.0.1:\(b.2);
            }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://sticky; } }
            \(backend(b.0, "one"))\(backend(b.1, "two"))\(backend(b.2, "three"))
            """)
        var seen: [String: Int] = [:]
        for _ in 0..<50 {
            let r = try get("/")   // a new connection (and client port) every time
            XCTAssertEqual(r.status, 200)
            seen[r.text, default: 0] += 1
        }
        // nginx's ip_hash of 127.0.0.0/24 over three equal peers picks the third.
        XCTAssertEqual(seen, ["three": 50])
    }

    func testLargePostProxied() throws {
        let b = freePort()
        let cap = try CaptureServer()
        capture = cap
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /upload { proxy_pass http://127.0.0.1:\(b); }
                location /capture/ { proxy_pass http://127.0.0.1:\(cap.port); }
            }
            \(backend(b, "stored"))
            """)
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let head = "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: \(body.count)\r\n\r\n"
        let c = try HTTPConnection(port: port)
        try c.send(Array(head.utf8) + body)
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "stored")
        XCTAssertEqual(r.header("Connection"), "keep-alive")

        // The bytes the backend received: nginx's upstream request with the whole body.
        let capHead = "POST /capture/x?y=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: \(body.count)\r\n\r\n"
        try c.send(Array(capHead.utf8) + body)
        let cr = try c.readResponse()
        XCTAssertEqual(cr.status, 200)
        XCTAssertEqual(cr.text, "ok")
        let got = try XCTUnwrap(cap.requests.first)
        let split = try XCTUnwrap(CaptureServer.find([13, 10, 13, 10], in: got))
        let upstreamHead = String(decoding: got[0..<split], as: UTF8.self)
        let lines = upstreamHead.components(separatedBy: "\r\n")
        XCTAssertEqual(lines.first, "POST /capture/x?y=1 HTTP/1.0")
        XCTAssertTrue(lines.contains("Host: 127.0.0.1:\(cap.port)"), upstreamHead)
        XCTAssertTrue(lines.contains("Connection: close"), upstreamHead)
        XCTAssertTrue(lines.contains("Content-Length: 300000"), upstreamHead)
        XCTAssertTrue(lines.contains("Content-Type: application/octet-stream"), upstreamHead)
        XCTAssertEqual(Array(got[(split + 4)...]), body, "the proxied body differs")
    }

    func testChunkedPostProxied() throws {
        let b = freePort()
        let cap = try CaptureServer()
        capture = cap
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /upload { proxy_pass http://127.0.0.1:\(b); }
                location /capture { proxy_pass http://127.0.0.1:\(cap.port); }
            }
            \(backend(b, "stored"))
            """)
        let chunks = ["hello, ", String(repeating: "z", count: 5000), " bye"]
        var chunked = ""
        for ch in chunks { chunked += String(ch.utf8.count, radix: 16) + "\r\n" + ch + "\r\n" }
        chunked += "0\r\n\r\n"
        let c = try HTTPConnection(port: port)
        try c.send("POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "stored")

        try c.send("POST /capture HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        XCTAssertEqual(try c.readResponse().status, 200)
        let got = try XCTUnwrap(cap.requests.first)
        let split = try XCTUnwrap(CaptureServer.find([13, 10, 13, 10], in: got))
        let lines = String(decoding: got[0..<split], as: UTF8.self).components(separatedBy: "\r\n")
        let joined = chunks.joined()
        XCTAssertTrue(lines.contains("Content-Length: \(joined.utf8.count)"), "\(lines)")
        XCTAssertFalse(lines.contains { $0.lowercased().hasPrefix("transfer-encoding") }, "\(lines)")
        XCTAssertEqual(String(decoding: got[(split + 4)...], as: UTF8.self), joined)
    }

    /// proxy_bind (an address, inherited, off, from a variable) by the address the backend sees, and
    /// proxy_set_body by the body the backend receives.
    func testProxyBindAndSetBody() throws {
        let backendPort = freePort()
        let capture = try CaptureServer()
        self.capture = capture
        try start("""
            server { listen 127.0.0.1:\(backendPort); return 200 "$remote_addr"; }
            server {
                listen 127.0.0.1:\(port);
                proxy_bind 127.0.0.2;
                location /own { proxy_bind 127.0.0.3; proxy_pass http://127.0.0.1:\(backendPort); }
                location /inherited { proxy_pass http://127.0.0.1:\(backendPort); }
                location /off { proxy_bind off; proxy_pass http://127.0.0.1:\(backendPort); }
                location /var { proxy_bind $arg_b; proxy_pass http://127.0.0.1:\(backendPort); }
                location /body { proxy_set_body "replaced $request_method $arg_x"; proxy_pass http://127.0.0.1:\(capture.port); }
            }
            """)
        XCTAssertEqual(try get("/own").text, "127.0.0.3")
        XCTAssertEqual(try get("/inherited").text, "127.0.0.2")
        XCTAssertEqual(try get("/off").text, "127.0.0.1")
        XCTAssertEqual(try get("/var?b=127.0.0.4").text, "127.0.0.4")
        XCTAssertEqual(try get("/var?b=not-an-address").text, "127.0.0.1")
        XCTAssertTrue(vigil!.errorLog().contains("invalid local address \"not-an-address\""), vigil!.errorLog())
        let c = try HTTPConnection(port: port)
        defer { c.close() }
        try c.send("POST /body?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\noriginal")
        XCTAssertEqual(try c.readResponse().status, 200)
        let sent = String(decoding: try XCTUnwrap(capture.requests.last), as: UTF8.self)
        XCTAssertTrue(sent.hasSuffix("\r\nContent-Length: 15\r\n\r\nreplaced POST 1"), sent)
        XCTAssertFalse(sent.contains("original"))
    }

    func testProxyPassURIReplacementAndSetHeader() throws {
        let b = freePort(), h = freePort()
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /outer/ { proxy_pass http://127.0.0.1:\(b)/inner/; }
                location /plain/ { proxy_pass http://127.0.0.1:\(b); }
                location /hdr/ {
                    proxy_set_header X-Test $host;
                    proxy_pass http://127.0.0.1:\(h);
                }
            }
            server { listen 127.0.0.1:\(b); location / { return 200 "$request_uri"; } }
            server { listen 127.0.0.1:\(h); location / { return 200 "$http_x_test"; } }
            """)
        XCTAssertEqual(try get("/outer/a/b?x=1").text, "/inner/a/b?x=1")
        XCTAssertEqual(try get("/outer/").text, "/inner/")
        XCTAssertEqual(try get("/plain/a?x=1").text, "/plain/a?x=1")
        let r = try get("/hdr/", host: "Example.ORG:1234")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, "example.org")
        // The client's own X-Test is replaced, not passed alongside.
        XCTAssertEqual(try get("/hdr/", host: "site.test", headers: ["X-Test: from-client"]).text, "site.test")
    }

    // MARK: status pages

    func testCheckStatusPage() throws {
        let b = (freePort(), freePort(), freePort())
        try start("""
            upstream app {
                server 127.0.0.1:\(b.0);
                server 127.0.0.1:\(b.1);
                server 127.0.0.1:\(b.2);
                check interval=1000 default_down=false type=tcp;
            }
            server {
                listen 127.0.0.1:\(port);
                location /status { check_status; }
                location / { proxy_pass http://app; }
            }
            \(backend(b.0, "one"))\(backend(b.1, "two"))\(backend(b.2, "three"))
            """)
        let names = ["127.0.0.1:\(b.0)", "127.0.0.1:\(b.1)", "127.0.0.1:\(b.2)"]
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/status"))
        let html = try c.readResponse()
        XCTAssertEqual(html.status, 200)
        XCTAssertEqual(html.header("Content-Type"), "text/html")
        XCTAssertEqual(html.header("Content-Length"), String(html.body.count))
        // The checker probes each peer within its first second, so a live peer's rise
        // count may already be 1 or more when the page is read: take it from the page, every other byte is fixed.
        let rises = names.map { name -> String in
            let pattern = "<td>" + NSRegularExpression.escapedPattern(for: name) + "</td>\n    <td>up</td>\n    <td>(\\d+)</td>"
            guard let re = try? NSRegularExpression(pattern: pattern),
                  let m = re.firstMatch(in: html.text, range: NSRange(html.text.startIndex..., in: html.text)),
                  let r = Range(m.range(at: 1), in: html.text) else { return "0" }
            return String(html.text[r])
        }
        // The reference module's page, reproduced exactly but for the DOCTYPE's missing quote (a reference bug Vigil fixes).
        var expected = """
            <!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"
            "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
            <html xmlns="http://www.w3.org/1999/xhtml">
            <head>
              <title>Nginx http upstream check status</title>
            </head>
            <body>
            <h1>Nginx http upstream check status</h1>
            <h2>Check upstream server number: 3, generation: 1</h2>
            <table style="background-color:white" cellspacing="0"        cellpadding="3" border="1">
              <tr bgcolor="#C0C0C0">
                <th>Index</th>
                <th>Upstream</th>
                <th>Name</th>
                <th>Status</th>
                <th>Rise counts</th>
                <th>Fall counts</th>
                <th>Check type</th>
                <th>Check port</th>
              </tr>

            """
        for (i, n) in names.enumerated() {
            expected += "  <tr>\n"
            for v in [String(i), "app", n, "up", rises[i], "0", "tcp", "0"] { expected += "    <td>\(v)</td>\n" }
            expected += "  </tr>\n"
        }
        expected += "</table>\n</body>\n</html>\n"
        XCTAssertEqual(html.text, expected)

        try c.send(getRequest("/status?format=csv"))
        let csv = try c.readResponse()
        XCTAssertEqual(csv.header("Content-Type"), "text/plain")
        let csvLines = csv.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(csvLines.count, 4, csv.text)
        XCTAssertEqual(csvLines.last, "")
        for (i, n) in names.enumerated() where i < csvLines.count {
            XCTAssertTrue(fullMatch(csvLines[i], "\(i),app," + NSRegularExpression.escapedPattern(for: n) + ",up,\\d+,0,tcp,0"), csvLines[i])
        }

        try c.send(getRequest("/status?format=json"))
        let json = try c.readResponse()
        XCTAssertEqual(json.header("Content-Type"), "application/json")
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.body)) as? [String: Any])
        let servers = try XCTUnwrap(obj["servers"] as? [String: Any])
        XCTAssertEqual(servers["total"] as? Int, 3)
        XCTAssertEqual(servers["generation"] as? Int, 1)
        let rows = try XCTUnwrap(servers["server"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["name"] as? String }, names)
        XCTAssertEqual(rows.map { $0["status"] as? String }, ["up", "up", "up"])
        XCTAssertEqual(rows.map { $0["index"] as? Int }, [0, 1, 2])

        try c.send(getRequest("/status?format=json&status=down"))
        let none = try c.readResponse()
        XCTAssertEqual(none.status, 200)
        let noneObj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(none.body)) as? [String: Any], none.text)
        let noneServers = try XCTUnwrap(noneObj["servers"] as? [String: Any])
        XCTAssertEqual(noneServers["total"] as? Int, 0)
        XCTAssertEqual((noneServers["server"] as? [Any])?.count, 0)

        try c.send(getRequest("/status", method: "HEAD"))
        let head = try c.readResponse(method: "HEAD")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.header("Content-Type"), "text/html")
        XCTAssertNil(head.header("Content-Length"))
        // No body bytes follow: the next response on the connection starts cleanly.
        try c.send(getRequest("/status?format=csv&status=up"))
        XCTAssertEqual(try c.readResponse().text.split(separator: "\n").count, 3)

        try c.send("POST /status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\na=b")
        let post = try c.readResponse()
        XCTAssertEqual(post.statusLine, "HTTP/1.1 405 Not Allowed")
        XCTAssertEqual(post.text, errorPage("405 Not Allowed"))
    }

    func testStubStatusShape() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /nginx_status { stub_status; }
            }
            """)
        func page(_ active: Int, _ accepts: Int, _ requests: Int, _ reading: Int, _ writing: Int, _ waiting: Int) -> String {
            "Active connections: \(active) \nserver accepts handled requests\n \(accepts) \(accepts) \(requests) \nReading: \(reading) Writing: \(writing) Waiting: \(waiting) \n"
        }
        let a = try HTTPConnection(port: port)
        try a.send(getRequest("/nginx_status"))
        let first = try a.readResponse()
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.header("Content-Type"), "text/plain")
        XCTAssertEqual(first.text, page(1, 1, 1, 0, 1, 0))
        try a.send(getRequest("/nginx_status"))
        XCTAssertEqual(try a.readResponse().text, page(1, 1, 2, 0, 1, 0))

        // An idle keep-alive connection is "Waiting", as in nginx; so is one that has sent nothing yet.
        let b = try HTTPConnection(port: port)
        try b.send(getRequest("/nginx_status"))
        XCTAssertEqual(try b.readResponse().text, page(2, 2, 3, 0, 1, 1))
        let idle = try HTTPConnection(port: port)
        usleep(200_000)
        try a.send(getRequest("/nginx_status"))
        XCTAssertEqual(try a.readResponse().text, page(3, 3, 4, 0, 1, 2))
        // A connection in the middle of its request head is "Reading" (and its request is counted).
        try idle.send("GET /nginx_status HTTP/1.1\r\n")
        usleep(200_000)
        try a.send(getRequest("/nginx_status"))
        XCTAssertEqual(try a.readResponse().text, page(3, 3, 6, 1, 1, 1))
        b.close()
        idle.close()
    }

    /// A killed worker's connections stop counting as active once the master reaps it (nginx counts them until
    /// restart); its accepted and handled totals stay in the sums.
    func testStubStatusForgetsAKilledWorkersConnections() throws {
        try start("""
            server {
                listen 127.0.0.1:\(port);
                location /nginx_status { stub_status; }
            }
            """)
        let v = try XCTUnwrap(vigil)
        let master = try XCTUnwrap(v.masterPid())
        let worker = try XCTUnwrap(v.waitForWorkers(master, count: 1).first)
        let idle = try (0..<3).map { _ in try HTTPConnection(port: port) }
        defer { for c in idle { c.close() } }
        usleep(200_000)
        XCTAssertTrue(httpGet(port, "/nginx_status")?.body.hasPrefix("Active connections: 4 ") ?? false)
        kill(worker, SIGKILL)
        XCTAssertTrue(waitFor(5) { let w = childPids(of: master); return w.count == 1 && w[0] != worker })
        let page = try XCTUnwrap(httpGet(port, "/nginx_status")?.body)
        XCTAssertTrue(page.hasPrefix("Active connections: 1 \nserver accepts handled requests\n 5 5 2 \n"), page)
        XCTAssertTrue(page.hasSuffix("Reading: 0 Writing: 1 Waiting: 0 \n"), page)
    }

    // MARK: access log

    func testAccessLogCombinedCustomAndOff() throws {
        try start("""
            log_format timing '$status $request_time';
            server {
                listen 127.0.0.1:\(port);
                access_log logs/access.log;
                location / { return 200 "hi"; }
                location /quiet { access_log off; return 200 "q"; }
                location /timed { access_log logs/timing.log timing; return 200 "t"; }
            }
            """)
        let v = vigil!
        let access = v.prefix + "/logs/access.log", timing = v.prefix + "/logs/timing.log"
        func lines(_ path: String) -> [String] {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/hello?x=1", headers: ["User-Agent: test-agent/1.0", "Referer: http://ref.test/"]))
        XCTAssertEqual(try c.readResponse().text, "hi")
        try c.send(getRequest("/quiet"))
        XCTAssertEqual(try c.readResponse().text, "q")
        try c.send(getRequest("/timed"))
        XCTAssertEqual(try c.readResponse().text, "t")
        try c.send("GET /plain HTTP/1.0\r\n\r\n")
        XCTAssertEqual(try c.readResponse().text, "hi")

        XCTAssertTrue(waitFor(3) { lines(access).count >= 3 }, "\(lines(access))")
        let log = lines(access)
        // Two lines and the empty string after the final newline: /quiet and /timed are not in it.
        XCTAssertEqual(log.count, 3, "\(log)")
        let stamp = #"\[\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"#
        XCTAssertTrue(fullMatch(log[0], #"127\.0\.0\.1 - - "# + stamp + #" "GET /hello\?x=1 HTTP/1\.1" 200 2 "http://ref\.test/" "test-agent/1\.0""#), log[0])
        XCTAssertTrue(fullMatch(log[1], #"127\.0\.0\.1 - - "# + stamp + #" "GET /plain HTTP/1\.0" 200 2 "-" "-""#), log[1])
        XCTAssertEqual(log[2], "")

        XCTAssertTrue(waitFor(3) { !lines(timing).isEmpty && lines(timing)[0] != "" }, "\(lines(timing))")
        let t = lines(timing)
        XCTAssertEqual(t.count, 2, "\(t)")
        XCTAssertTrue(fullMatch(t[0], #"200 \d+\.\d{3}"#), t[0])
    }
}

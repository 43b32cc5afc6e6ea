import Foundation
import TestHarness
import XCTest

/// nginx's realip module and the PROXY protocol on the real binary, spoken by raw sockets: what the client's
/// address becomes for variables, `allow`/`deny` and the logs, and what a bad header does to the connection.
/// Expected values are nginx 1.22's (its realip.t, proxy_protocol.t and proxy_protocol2.t say the same).
final class RealIPTests: XCTestCase {
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// A v2 PROXY header for TCP over IPv4.
    static func v2(from src: [UInt8], _ sport: UInt16, to dst: [UInt8], _ dport: UInt16, tlvs: [UInt8] = []) -> [UInt8] {
        let body = src + dst + [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF)] + tlvs
        return v2Signature + [0x21, 0x11, 0, UInt8(body.count)] + body
    }

    var vigil: Vigil!
    var port: UInt16 = 0

    override func tearDown() { vigil?.cleanup() }

    func start(_ http: String) throws {
        vigil = try Vigil(config: Vigil.config(http: http))
        _ = try vigil.htmlRoot(["t", "pp", "on", "off"].map { ($0, Array("SEE-THIS".utf8)) })
        _ = try vigil.start()
    }

    func exchange(_ prefix: [UInt8], _ request: String) throws -> HTTPResponse {
        let c = try HTTPConnection(port: port)
        try c.send(prefix + Array(request.utf8))
        return try c.readResponse()
    }

    func logLines(_ name: String) -> [String] {
        ((try? String(contentsOfFile: vigil.prefix + "/logs/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func testProxyProtocolHeadersAndRealIPFromThem() throws {
        port = freePort()
        try start("""
            log_format pp '$remote_addr:$remote_port $realip_remote_addr $status';
            server {
                listen 127.0.0.1:\(port) proxy_protocol;
                root html;
                add_header X-IP $remote_addr!$remote_port;
                add_header X-PP $proxy_protocol_addr!$proxy_protocol_port;
                add_header X-PPS $proxy_protocol_server_addr!$proxy_protocol_server_port;
                set_real_ip_from 127.0.0.1;
                location /pp {
                    real_ip_header proxy_protocol;
                    access_log logs/pp.log pp;
                    location /pp/deny { deny 192.0.2.1; }
                }
            }
            """)
        let v1 = Array("PROXY TCP4 192.0.2.1 192.0.2.2 123 5678\r\n".utf8)
        var r = try exchange(v1, getRequest("/t", version: "1.0"))
        XCTAssertEqual(r.text, "SEE-THIS")
        XCTAssertEqual(r.header("X-PP"), "192.0.2.1!123")
        XCTAssertEqual(r.header("X-PPS"), "192.0.2.2!5678")
        XCTAssertTrue(r.header("X-IP")?.hasPrefix("127.0.0.1!") ?? false, "without real_ip_header proxy_protocol: \(r.rawHead)")

        let v2 = Self.v2(from: [192, 0, 2, 1], 123, to: [192, 0, 2, 2], 5678, tlvs: [0x01, 0x00, 0x02, 0x68, 0x32])
        r = try exchange(v2, getRequest("/pp", version: "1.0"))
        XCTAssertEqual(r.text, "SEE-THIS")
        XCTAssertEqual(r.header("X-IP"), "192.0.2.1!123", "realip takes the header's address and port")
        XCTAssertEqual(r.header("X-PPS"), "192.0.2.2!5678")
        r = try exchange(Array("PROXY TCP6 2001:Db8::1 2001:Db8::2 123 5678\r\n".utf8), getRequest("/pp", version: "1.0"))
        XCTAssertEqual(r.header("X-PP"), "2001:Db8::1!123", "v1's address as written")
        XCTAssertEqual(r.header("X-IP"), "2001:db8::1!123", "and as nginx prints it once realip took it")
        XCTAssertEqual(try exchange(v1, getRequest("/pp/deny", version: "1.0")).status, 403)
        // UNKNOWN: no addresses, the request goes on.
        r = try exchange(Array("PROXY UNKNOWN\r\n".utf8), getRequest("/t", version: "1.0"))
        XCTAssertEqual(r.text, "SEE-THIS")
        XCTAssertEqual(r.header("X-PP"), "!")

        // A header that arrives in pieces is waited for.
        let c = try HTTPConnection(port: port)
        try c.send(Array(v1[..<9]))
        XCTAssertTrue(c.stillOpen(after: 100))
        try c.send(Array(v1[9...]) + Array(getRequest("/t", version: "1.0").utf8))
        XCTAssertEqual(try c.readResponse().header("X-PP"), "192.0.2.1!123")

        XCTAssertTrue(waitFor(3) { self.logLines("pp.log").count == 3 }, "\(logLines("pp.log"))")
        XCTAssertEqual(logLines("pp.log"), ["192.0.2.1:123 127.0.0.1 200", "2001:db8::1:123 127.0.0.1 200", "192.0.2.1:123 127.0.0.1 403"])
        XCTAssertTrue(vigil.errorLog().contains("access forbidden by rule, client: 192.0.2.1, server: "), vigil.errorLog())
    }

    func testBrokenHeaderClosesTheConnectionWithNginxsLogLine() throws {
        port = freePort()
        try start("server { listen 127.0.0.1:\(port) proxy_protocol; location / { return 200 ok; } }")
        let workers = childPids(of: try XCTUnwrap(vigil.masterPid()))
        func closedWithoutAnswer(_ bytes: [UInt8]) throws -> Bool {
            let c = try HTTPConnection(port: port)
            try c.send(bytes)
            return c.peerClosed() && c.readToEOF().isEmpty
        }
        XCTAssertTrue(try closedWithoutAnswer(Array("GET / HTTP/1.0\r\n\r\n".utf8)), "a request without the header")
        XCTAssertTrue(try closedWithoutAnswer(Self.v2Signature + [0x31, 0x11, 0, 12] + [UInt8](repeating: 0, count: 12)))
        // Garbage of every kind costs its connection and nothing else.
        var rng = SystemRandomNumberGenerator()
        for i in 0..<50 {
            let c = try HTTPConnection(port: port)
            let prefix: [UInt8] = i % 2 == 0 ? Self.v2Signature : Array("PROXY ".utf8)
            try c.send(prefix + (0..<(i * 4)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        }
        XCTAssertEqual(try exchange(Array("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n".utf8), getRequest("/")).text, "ok")
        XCTAssertEqual(Set(childPids(of: try XCTUnwrap(vigil.masterPid()))), Set(workers), "no worker died")
        let log = vigil.errorLog()
        XCTAssertTrue(log.contains("[error]"), log)
        XCTAssertTrue(log.contains("broken header: \"GET / HTTP/1.0\r\n\r\n\" while reading PROXY protocol, client: 127.0.0.1, server: 127.0.0.1:\(port)"), log)
        XCTAssertTrue(log.contains("unknown PROXY protocol version: 3 while reading PROXY protocol, client: 127.0.0.1, server: 127.0.0.1:\(port)"), log)
    }

    func testForwardedForFromTrustedAndUntrustedPeers() throws {
        port = freePort()
        let untrusted = freePort()
        try start("""
            log_format real '$remote_addr $realip_remote_addr $status';
            access_log logs/real.log real;
            add_header X-IP $remote_addr;
            add_header X-Real $realip_remote_addr;
            server {
                listen 127.0.0.1:\(port);
                root html;
                set_real_ip_from 127.0.0.1;
                set_real_ip_from 10.0.0.0/8;
                # The server's header is X-Real-IP: the post-read phase finds nothing, and each location
                # looks again with its own settings before the access phase.
                location /off { real_ip_header X-Forwarded-For; }
                location /on { real_ip_header X-Forwarded-For; real_ip_recursive on; }
                location /t { real_ip_header X-Forwarded-For; deny 192.0.2.9; }
            }
            server {
                listen 127.0.0.1:\(untrusted);
                root html;
                set_real_ip_from 10.9.9.9;
                real_ip_header X-Forwarded-For;
            }
            """)
        func ip(_ path: String, _ xff: String, on p: UInt16? = nil) throws -> String? {
            try httpExchange(p ?? port, getRequest(path, headers: ["X-Forwarded-For: \(xff)", "Connection: close"])).header("X-IP")
        }
        XCTAssertEqual(try ip("/off", "192.0.2.7, 10.0.0.5"), "10.0.0.5", "recursive off: the last address")
        XCTAssertEqual(try ip("/on", "192.0.2.7, 10.0.0.5"), "192.0.2.7", "recursive on: the last one not trusted")
        XCTAssertEqual(try ip("/on", "203.0.113.1, 192.0.2.7, 10.0.0.5"), "192.0.2.7", "a forged start changes nothing")
        XCTAssertEqual(try ip("/t", "192.0.2.7", on: untrusted), "127.0.0.1", "an untrusted peer's header is ignored")
        XCTAssertEqual(try ip("/off", "not-an-address"), "127.0.0.1")

        // allow/deny, the access log and the error log see the real address.
        XCTAssertEqual(try httpExchange(port, getRequest("/t", headers: ["X-Forwarded-For: 192.0.2.9", "Connection: close"])).status, 403)
        XCTAssertEqual(try httpExchange(port, getRequest("/t", headers: ["X-Forwarded-For: 192.0.2.8", "Connection: close"])).status, 200)
        XCTAssertTrue(vigil.errorLog().contains("access forbidden by rule, client: 192.0.2.9, server: "), vigil.errorLog())

        // Keep-alive: the next request on the connection starts from the socket's address again.
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/off", headers: ["X-Forwarded-For: 192.0.2.5"]))
        XCTAssertEqual(try c.readResponse().header("X-IP"), "192.0.2.5")
        try c.send(getRequest("/off"))
        let second = try c.readResponse()
        XCTAssertEqual(second.header("X-IP"), "127.0.0.1")
        XCTAssertEqual(second.header("X-Real"), "127.0.0.1")
        c.close()

        XCTAssertTrue(waitFor(3) { self.logLines("real.log").count == 9 }, "\(logLines("real.log"))")
        XCTAssertEqual(Array(logLines("real.log")[5...]),
                       ["192.0.2.9 127.0.0.1 403", "192.0.2.8 127.0.0.1 200", "192.0.2.5 127.0.0.1 200", "127.0.0.1 127.0.0.1 200"])
    }
}

/// `listen … ssl proxy_protocol`: the header comes before the TLS handshake (a Python client sends it, then
/// speaks TLS on the same socket).
final class ProxyProtocolTLSTests: TLSTestCase {
    func testHeaderBeforeTheHandshake() throws {
        let python = "/usr/bin/python3"
        try XCTSkipUnless(Tools.available(python), "python3 is not installed")
        let port = freePort()
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(port) ssl proxy_protocol;
                \(certs("a-rsa"))
                root html;
                set_real_ip_from 127.0.0.1;
                add_header X-IP $remote_addr;
                add_header X-PP $proxy_protocol_addr;
                location /pp { real_ip_header proxy_protocol; }
            }
            """)
        try v.htmlRoot([("t", Array("SEE-THIS".utf8)), ("pp", Array("SEE-THIS".utf8))])
        func get(_ header: [UInt8], _ path: String) -> String {
            let script = """
                import socket, ssl, sys
                s = socket.create_connection(("127.0.0.1", \(port)))
                s.sendall(bytes.fromhex(sys.argv[1]))
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                t = ctx.wrap_socket(s)
                t.sendall(b"GET \(path) HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n")
                out = b""
                while True:
                    d = t.recv(4096)
                    if not d: break
                    out += d
                sys.stdout.write(out.decode("latin-1"))
                """
            let hex = header.map { String(format: "%02x", $0) }.joined()
            return runCommand(python, ["-c", script, hex], timeout: 10).stdout
        }
        var out = get(Array("PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\n".utf8), "/t")
        XCTAssertTrue(out.contains("X-PP: 192.0.2.1\r\n") && out.contains("X-IP: 127.0.0.1\r\n") && out.hasSuffix("SEE-THIS"), out)
        out = get(RealIPTests.v2(from: [192, 0, 2, 1], 1234, to: [192, 0, 2, 2], 443), "/pp")
        XCTAssertTrue(out.contains("X-IP: 192.0.2.1\r\n") && out.hasSuffix("SEE-THIS"), out)
        out = get(Array("PROXY UNKNOWN\r\n".utf8), "/t")
        XCTAssertTrue(out.hasPrefix("HTTP/1.1 200") && !out.contains("X-PP") && out.hasSuffix("SEE-THIS"), "no addresses, so no X-PP (add_header skips an empty value): \(out)")
    }
}

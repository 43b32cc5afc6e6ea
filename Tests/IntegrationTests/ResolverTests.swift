import Foundation
import TestHarness
import XCTest

/// `resolver` with names in `proxy_pass` variables, against Debian's dnsmasq answering from a hosts file the
/// test writes, and against DNS servers of the test's own that never answer or answer garbage.
final class ResolverTests: XCTestCase {
    static let dnsmasq = "/usr/sbin/dnsmasq"

    /// dnsmasq on 127.0.0.1:`port` answering for `.test` names from `hosts` only (NXDOMAIN for the rest).
    final class DNSServer {
        let process: Process
        let port: UInt16
        init(hosts: String, port: UInt16, extra: [String] = []) throws {
            self.port = port
            process = try spawnProcess(ResolverTests.dnsmasq, [
                "-k", "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                "--addn-hosts=\(hosts)", "--pid-file=", "--user=root", "--local=/test/", "--log-facility=-",
            ] + extra)
            guard waitFor(5, { canConnect(port) }) else { throw HTTPClientError("dnsmasq did not start on \(port)") }
        }
        /// dnsmasq reads its hosts files again on SIGHUP.
        func reload() { kill(process.processIdentifier, SIGHUP) }
        func stop() { stopProcess(process) }
    }

    /// A UDP "DNS server" on loopback that never answers, or answers every query with `reply(query)`.
    final class FakeDNS: @unchecked Sendable {
        let fd: Int32
        let port: UInt16
        private var running = true
        init(reply: (@Sendable ([UInt8]) -> [UInt8])?) {
            let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            fd = s
            port = UInt16(bigEndian: sa.sin_port)
            guard let reply else { return }
            let fd = self.fd
            Thread.detachNewThread { [self] in
                var buf = [UInt8](repeating: 0, count: 2048)
                while self.running {
                    var from = sockaddr_storage()
                    var fromLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    let n = withUnsafeMutablePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &fromLen) }
                    }
                    guard n > 0 else { continue }
                    let out = reply(Array(buf[0..<n]))
                    _ = withUnsafePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, out, out.count, 0, $0, fromLen) }
                    }
                }
            }
        }
        func stop() { running = false; usleep(200_000); close(fd) }
    }

    func testNamesInProxyPassAreResolved() throws {
        try XCTSkipUnless(Tools.available(ResolverTests.dnsmasq), "dnsmasq is not installed (scripts/install-deps installs it)")
        let backend = freePort(), front = freePort(), dnsPort = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let hosts = vigil.prefix + "/dns-hosts"
        // 60 addresses for big.test: the UDP answer is truncated (over 512 bytes), so only TCP gets them all.
        let big = (1...60).map { "127.0.1.\($0) big.test" }.joined(separator: "\n")
        try "127.0.0.1 svc.test\n\(big)\n".write(toFile: hosts, atomically: true, encoding: .utf8)
        try vigil.write(config: Vigil.config(workers: 1, http: """
            server { listen 127.0.0.1:\(backend); return 200 "one\\n"; }
            server { listen 127.0.0.2:\(backend); return 200 "two\\n"; }
            server { listen 127.0.1.60:\(backend); return 200 "sixty\\n"; }
            server {
                listen 127.0.0.1:\(front);
                resolver 127.0.0.1:\(dnsPort) valid=1s;
                resolver_timeout 3s;
                location / { set $be "svc.test"; proxy_pass http://$be:\(backend); }
                location /by-arg/ { proxy_pass http://$arg_host:\(backend)/; }
            }
            """))
        _ = try vigil.start()
        // dnsmasq starts after Vigil: started before it, Foundation's Process never saw the daemonizing
        // parent of `vigil` exit (a zombie, and start() waited for ever), seen on this toolchain.
        let dns = try DNSServer(hosts: hosts, port: dnsPort, extra: ["--cname=alias.test,svc.test", "--local-ttl=3600"])
        defer { dns.stop() }

        XCTAssertEqual(httpGet(front, "/")?.body, "one\n")
        XCTAssertEqual(httpGet(front, "/by-arg/?host=alias.test")?.body, "one\n", "a CNAME is followed")
        // big.test's first address has no server behind it; proxy_next_upstream moves on through the list, so
        // an answer needs the addresses past the truncated UDP reply: the TCP one.
        let bigAnswer = httpGet(front, "/by-arg/?host=big.test", timeout: 10)
        XCTAssertEqual(bigAnswer?.status, 200, vigil.errorLog())
        XCTAssertEqual(bigAnswer?.body, "sixty\n")

        let missing = httpGet(front, "/by-arg/?host=nosuch.test")
        XCTAssertEqual(missing?.status, 502)
        XCTAssertTrue(vigil.errorLog().contains("nosuch.test could not be resolved (3: Host not found)"), vigil.errorLog())

        // valid=1s: a changed answer is used within a second or so of the change (the TTL is an hour).
        try "127.0.0.2 svc.test\n".write(toFile: hosts, atomically: true, encoding: .utf8)
        dns.reload()
        XCTAssertTrue(waitFor(5) { httpGet(front, "/")?.body == "two\n" }, "the new address was not used after valid=1s")
    }

    func testResolverFailuresAnswer502AndTheWorkerCarriesOn() throws {
        let silent = FakeDNS(reply: nil)
        defer { silent.stop() }
        // Replies with the query's id and then nonsense: a malformed answer, not someone else's.
        let garbage = FakeDNS(reply: { q in Array(q.prefix(2)) + [0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xC0, 0xFF, 0x07] })
        defer { garbage.stop() }
        let backend = freePort(), front = freePort()
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            server { listen 127.0.0.1:\(backend); return 200 "up\\n"; }
            server {
                listen 127.0.0.1:\(front);
                resolver_timeout 1s;
                location /silent/ { resolver 127.0.0.1:\(silent.port); proxy_pass http://$arg_host:\(backend); }
                location /garbage/ { resolver 127.0.0.1:\(garbage.port); proxy_pass http://$arg_host:\(backend); }
                location /none/ { proxy_pass http://$arg_host:\(backend); }
                location /ok/ { proxy_pass http://$arg_host:\(backend); }
            }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()

        let started = Date()
        XCTAssertEqual(httpGet(front, "/silent/?host=quiet.test")?.status, 502)
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(waited, 0.8)
        XCTAssertLessThan(waited, 4, "resolver_timeout 1s did not bound the wait")
        XCTAssertTrue(vigil.errorLog().contains("quiet.test could not be resolved (110: Operation timed out)"), vigil.errorLog())

        XCTAssertEqual(httpGet(front, "/garbage/?host=junk.test")?.status, 502)
        XCTAssertTrue(vigil.errorLog().contains("invalid DNS response"), vigil.errorLog())
        XCTAssertTrue(vigil.errorLog().contains("junk.test could not be resolved (1: Format error)"), vigil.errorLog())

        XCTAssertEqual(httpGet(front, "/none/?host=name.test")?.status, 502)
        XCTAssertTrue(vigil.errorLog().contains("no resolver defined to resolve name.test"), vigil.errorLog())

        // The same worker still serves: numeric addresses need no resolver, with or without a port.
        XCTAssertEqual(httpGet(front, "/ok/?host=127.0.0.1")?.body, "up\n")
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }

    func testResolverDirectiveErrors() throws {
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        for (directive, message) in [
            ("resolver 127.0.0.1 valid=abc;", "invalid parameter: valid=abc"),
            ("resolver 127.0.0.1 ipv4=off ipv6=off;", "\"ipv4\" and \"ipv6\" cannot both be \"off\""),
            ("resolver 127.0.0.1:99999;", "invalid port in resolver \"127.0.0.1:99999\""),
            ("resolver valid=5s;", "invalid number of arguments in \"resolver\" directive"),
        ] {
            try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); \(directive) }"))
            let r = vigil.vigil(["-t"])
            XCTAssertEqual(r.status, 1, directive)
            XCTAssertTrue(r.stderr.contains("\(message) in \(vigil.confPath):10"), r.stderr)
        }
    }
}

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

    /// A UDP "DNS server" on loopback that never answers, or answers every query with `reply(query)`; on
    /// the same port over TCP, optionally, one that answers with `tcp(query)` or (`tcpSilent`) accepts
    /// connections and never answers.
    final class FakeDNS: @unchecked Sendable {
        let fd: Int32
        let port: UInt16
        private var tcpFD: Int32 = -1
        private var running = true
        init(reply: (@Sendable ([UInt8]) -> [UInt8])?, tcp: (@Sendable ([UInt8]) -> [UInt8])? = nil, tcpSilent: Bool = false) {
            var udp = FakeDNS.bound(SOCK_DGRAM, port: 0)
            if tcp != nil || tcpSilent {
                // The UDP port the kernel picked may be taken over TCP: pick again until both bind.
                for _ in 0..<50 {
                    tcpFD = FakeDNS.bound(SOCK_STREAM, port: udp.port).fd
                    if tcpFD >= 0 { break }
                    close(udp.fd)
                    udp = FakeDNS.bound(SOCK_DGRAM, port: 0)
                }
                listen(tcpFD, 16)
            }
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(udp.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            fd = udp.fd
            port = udp.port
            if let tcp { serveTCP(answer: tcp) }
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
        func stop() { running = false; usleep(200_000); close(fd); if tcpFD >= 0 { close(tcpFD) } }

        /// A socket bound to 127.0.0.1:`port` (0: any), and its port; fd -1 when the port is taken.
        static func bound(_ type: __socket_type, port: UInt16) -> (fd: Int32, port: UInt16) {
            let s = socket(AF_INET, Int32(type.rawValue), 0)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_addr.s_addr = inet_addr("127.0.0.1")
            sa.sin_port = port.bigEndian
            guard withUnsafePointer(to: &sa, {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }) == 0 else { close(s); return (-1, port) }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            return (s, UInt16(bigEndian: sa.sin_port))
        }

        /// RFC 1035 4.2.2 framing: each message behind its two-byte length; one query per connection. Without
        /// this (tcpSilent) the kernel completes connections nobody reads.
        private func serveTCP(answer: @escaping @Sendable ([UInt8]) -> [UInt8]) {
            let l = tcpFD
            // accept() wakes up to see stop().
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            Thread.detachNewThread { [self] in
                while self.running {
                    let c = accept(l, nil, nil)
                    guard c >= 0 else { continue }
                    var tv = timeval(tv_sec: 2, tv_usec: 0)
                    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    var query: [UInt8] = [], buf = [UInt8](repeating: 0, count: 2048)
                    while query.count < 2 || query.count < 2 + (Int(query[0]) << 8 | Int(query[1])) {
                        let n = read(c, &buf, buf.count)
                        if n <= 0 { break }
                        query += buf[0..<n]
                    }
                    if query.count > 2 {
                        let out = answer(Array(query[2...]))
                        _ = write(c, [UInt8(out.count >> 8), UInt8(out.count & 0xFF)] + out, out.count + 2)
                    }
                    close(c)
                }
            }
        }

        /// A reply to `query`: its id and question, `flags` (rcode included), then `answers`, each a record
        /// of the asked name (a pointer to the question) with a type and rdata.
        static func answer(_ query: [UInt8], flags: UInt16 = 0x8180, _ answers: [(type: UInt16, rdata: [UInt8])] = []) -> [UInt8] {
            var out = Array(query[0..<2]) + [UInt8(flags >> 8), UInt8(flags & 0xFF), 0, 1, 0, UInt8(answers.count), 0, 0, 0, 0]
            out += query[12...]
            for a in answers {
                out += [0xC0, 12, 0, UInt8(a.type), 0, 1, 0, 0, 0x0E, 0x10, 0, UInt8(a.rdata.count)] + a.rdata
            }
            return out
        }

        /// The asked name (as written, lowercase) and type of a query.
        static func question(_ query: [UInt8]) -> (name: String, type: UInt16) {
            var labels: [String] = [], at = 12
            while at < query.count, query[at] != 0 {
                labels.append(String(decoding: query[(at + 1)..<(at + 1 + Int(query[at]))], as: UTF8.self))
                at += 1 + Int(query[at])
            }
            return (labels.joined(separator: ".").lowercased(), UInt16(query[at + 1]) << 8 | UInt16(query[at + 2]))
        }

        /// A name in wire form (for a CNAME's rdata).
        static func wire(_ name: String) -> [UInt8] {
            name.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
        }
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

    /// nginx's http_resolver.t "tcp" and "tcp with resend": a truncated UDP answer is asked again over TCP of
    /// the same server, and a server whose TCP never answers is left for the next one after the 5 s resend,
    /// still over TCP. A and AAAA go to the same server: a lookup on the good one never waits for the other.
    func testTruncatedAnswersAreAskedAgainOverTCP() throws {
        // Over UDP both say TC (the bad one with a format error too, as in nginx's test), the good one with an
        // address that must not be used; over TCP the good one answers 127.0.0.1 and the bad one is silent.
        let good = FakeDNS(reply: { q in
            let (_, type) = FakeDNS.question(q)
            return FakeDNS.answer(q, flags: 0x8380, type == 1 ? [(1, [127, 0, 0, 201])] : [])
        }, tcp: { q in FakeDNS.answer(q, FakeDNS.question(q).type == 1 ? [(1, [127, 0, 0, 1])] : []) })
        defer { good.stop() }
        let bad = FakeDNS(reply: { q in FakeDNS.answer(q, flags: 0x8381) }, tcpSilent: true)
        defer { bad.stop() }
        let backend = freePort(), front = freePort()
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            server { listen 127.0.0.1:\(backend); return 200 "up\\n"; }
            server {
                listen 127.0.0.1:\(front);
                resolver 127.0.0.1:\(good.port) 127.0.0.1:\(bad.port);
                resolver_timeout 8s;
                location / { proxy_pass http://$arg_host:\(backend); proxy_connect_timeout 1s; }
            }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()

        // The servers are asked in turn, the good one first.
        var started = Date()
        XCTAssertEqual(httpGet(front, "/?host=tcp.test", timeout: 10)?.body, "up\n", vigil.errorLog())
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "both families were not asked of the same server")
        started = Date()
        XCTAssertEqual(httpGet(front, "/?host=tcp2.test", timeout: 10)?.body, "up\n", vigil.errorLog())
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 4.5, "the silent server's TCP was not waited on")
    }

    /// nginx's http_resolver_aaaa.t: A and AAAA answers judged together. An error in either family fails the
    /// name; addresses of either are used; without any, the AAAA answer's CNAME is followed for both.
    func testBothFamiliesAreJudgedTogether() throws {
        let dns = FakeDNS(reply: { q in
            let (name, type) = FakeDNS.question(q)
            let a: [(type: UInt16, rdata: [UInt8])] = type == 1 ? [(1, [127, 0, 0, 1])] : []
            switch name {
            case "a-error.test": return type == 1 ? FakeDNS.answer(q, a) : FakeDNS.answer(q, flags: 0x8182)
            case "zero-cname.test": return type == 1 ? FakeDNS.answer(q) : FakeDNS.answer(q, [(5, FakeDNS.wire("real.test"))])
            case "cname-zero.test": return type == 1 ? FakeDNS.answer(q, [(5, FakeDNS.wire("real.test"))]) : FakeDNS.answer(q)
            case "real.test": return FakeDNS.answer(q, a)
            default: return FakeDNS.answer(q, flags: 0x8183)
            }
        })
        defer { dns.stop() }
        let backend = freePort(), front = freePort()
        let vigil = try Vigil(config: Vigil.config(workers: 1, http: """
            server { listen 127.0.0.1:\(backend); return 200 "up\\n"; }
            server {
                listen 127.0.0.1:\(front);
                resolver 127.0.0.1:\(dns.port);
                resolver_timeout 2s;
                location / { proxy_pass http://$arg_host:\(backend); }
                location /v4/ { resolver 127.0.0.1:\(dns.port) ipv6=off; proxy_pass http://$arg_host:\(backend); }
            }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()

        XCTAssertEqual(httpGet(front, "/?host=a-error.test")?.status, 502)
        XCTAssertTrue(vigil.errorLog().contains("a-error.test could not be resolved (2: Server failure)"), vigil.errorLog())
        XCTAssertEqual(httpGet(front, "/v4/?host=a-error.test")?.body, "up\n", "ipv6=off asks no AAAA")
        XCTAssertEqual(httpGet(front, "/?host=zero-cname.test")?.body, "up\n", vigil.errorLog())
        XCTAssertEqual(httpGet(front, "/?host=cname-zero.test")?.status, 502)
        XCTAssertTrue(vigil.errorLog().contains("cname-zero.test could not be resolved (3: Host not found)"), vigil.errorLog())
        XCTAssertEqual(httpGet(front, "/v4/?host=cname-zero.test")?.body, "up\n", "with A alone, its CNAME is followed")
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

import Foundation
import TestHarness
import XCTest

/// geo and split_clients side by side with Debian's nginx: networks (longest prefix, IPv4, IPv6, IPv4-mapped,
/// deleted), ranges (later ones overriding the ones they overlap), trusted proxies with X-Forwarded-For, and
/// split_clients' MurmurHash2 shares over many keys.
final class GeoParityTests: XCTestCase {
    func config(port: UInt16) -> String {
        """
        geo $arg_ip $net {
            default        none;
            10.0.0.0/8     ten;
            10.1.0.0/16    ten-one;
            10.1.2.3       host;
            2001:db8::/32  doc6;
            ::1            loop6;
            192.0.2.0/24   doc;
            delete         192.0.2.0/24;
        }
        geo $arg_ip $ranged {
            ranges;
            default                    none;
            10.0.0.0-10.255.255.255    ten;
            10.1.0.0-10.1.255.255      ten-one;
            10.1.0.5-10.2.0.0          middle;
            delete                     10.1.0.7-10.1.0.9;
        }
        geo $client {
            proxy_recursive;
            default      none;
            proxy        127.0.0.0/8;
            proxy        10.9.0.0/16;
            203.0.113.0/24  doc3;
            127.0.0.0/8  loopback;
        }
        split_clients "${arg_k}salt" $variant {
            12.5%  a;
            30%    b;
            0.01%  c;
            *      rest;
        }
        server {
            listen 127.0.0.1:\(port);
            location / { return 200 "[$net] [$ranged] [$client] [$variant]\\n"; }
        }
        """
    }

    func testGeoAndSplitClientsMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        let vigil = try Vigil(config: Vigil.config(http: config(port: vport)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(port: nport), waitFor: [nport])
        defer { nginx.cleanup() }

        let ips = ["10.1.2.3", "10.1.2.4", "10.2.0.1", "10.200.0.1", "11.0.0.1", "192.0.2.7", "2001:db8::5", "::1",
                   "::ffff:10.1.2.3", "fe80::1", "bogus", "", "10.1.0.5", "10.1.0.8", "10.1.0.10", "10.2.0.0", "10.2.0.1"]
        let forwarded = ["203.0.113.9", "198.51.100.1, 203.0.113.9", "203.0.113.9, 10.9.1.1", "10.9.1.1, 127.0.0.2", "junk"]
        var requests = ips.map { "GET /?ip=\($0) HTTP/1.0\r\n\r\n" }
        requests += forwarded.map { "GET / HTTP/1.0\r\nX-Forwarded-For: \($0)\r\n\r\n" }
        requests += (0..<200).map { "GET /?k=\($0) HTTP/1.0\r\n\r\n" }
        var differences: [String] = []
        var variants = Set<String>()
        for request in requests {
            let v = try httpExchange(vport, request), n = try httpExchange(nport, request)
            if v.text != n.text { differences.append("\(request.debugDescription): vigil \(v.text) nginx \(n.text)") }
            variants.insert(String(v.text.split(separator: " ").last ?? ""))
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(variants.count, 3, "the keys must have fallen in several parts: \(variants)")
    }

    /// A range over the whole address space is 65,536 pieces: loading it must stay quick (it once took minutes).
    func testAWholeSpaceRangeLoadsQuickly() throws {
        let vigil = try Vigil(config: Vigil.config(http: "geo $g { ranges; 0.0.0.0-255.255.255.254 all; 10.0.0.0-10.0.0.9 ten; }"))
        defer { vigil.cleanup() }
        let started = Date()
        let t = vigil.vigil(["-t"], timeout: 30)
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }

    func testBadGeoAndSplitClientsAreRefusedAsNginxDoes() throws {
        for (block, message) in [("geo $g { 10.0.0.0/33 x; }", "invalid network \"10.0.0.0/33\""),
                                 ("geo $g { ranges; 10.0.0.9-10.0.0.1 x; }", "invalid range \"10.0.0.9-10.0.0.1\""),
                                 ("split_clients $remote_addr $s { 60% a; 50% b; }", "percent total is greater than 100%"),
                                 ("split_clients $remote_addr $s { 5 a; }", "invalid percent value \"5\""),
                                 ("geo $remote_addr { default x; }", "the duplicate \"remote_addr\" variable")] {
            let vigil = try Vigil(config: Vigil.config(http: block))
            defer { vigil.cleanup() }
            let t = vigil.vigil(["-t"])
            XCTAssertEqual(t.status, 1, block)
            XCTAssertTrue(t.stderr.contains(message), "\(block): \(t.stderr)")
        }
    }
}

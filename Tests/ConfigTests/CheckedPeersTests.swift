import XCTest
@testable import Config

/// The shm index order of checked peers, as the reference module numbers them: upstreams in order of first
/// mention, primaries before backups, `down` skipped, unchecked upstreams and literal addresses absent.
final class CheckedPeersTests: XCTestCase {
    private func peers(_ conf: Configuration) -> [String] {
        conf.checkedPeers.map { "\($0.upstream) \($0.address)" }
    }

    func testOrderOfFirstMention() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            server {
                listen 127.0.0.1:8080;
                location /b { proxy_pass http://b; }
                location /lit { proxy_pass http://127.0.0.1:1970; }
                location /c { proxy_pass http://c/x; }
            }
            upstream a {
                server 127.0.0.2:1;
                check interval=1000;
            }
            upstream b {
                server 127.0.0.3:1 backup;
                server 127.0.0.3:2;
                server 127.0.0.3:3 down;
                server 127.0.0.3:4 backup;
                server 127.0.0.3:5;
                check type=tcp;
            }
            upstream c {
                server 127.0.0.4:1;
            }
            upstream d {
                server 127.0.0.1:1970;
                check type=http;
            }
            """)))
        // b was named by a proxy_pass before a's block; c has no check; 127.0.0.1:1970 is only
        // checked through d's block, never through the literal proxy_pass.
        XCTAssertEqual(peers(conf), [
            "b 127.0.0.3:2", "b 127.0.0.3:5", "b 127.0.0.3:1", "b 127.0.0.3:4",
            "a 127.0.0.2:1",
            "d 127.0.0.1:1970",
        ])
        XCTAssertEqual(conf.http?.upstreams.map(\.name), ["b", "c", "a", "d"])
        XCTAssertEqual(conf.checkedPeers.map(\.check.type), [.tcp, .tcp, .tcp, .tcp, .tcp, .http])
    }

    func testLiteralProxyPassIsNeverChecked() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            server {
                location / { proxy_pass http://127.0.0.1:1970; }
            }
            """)))
        XCTAssertTrue(conf.checkedPeers.isEmpty)
        XCTAssertTrue(conf.http?.upstreams.isEmpty ?? false)
    }

    func testUncheckedUpstreamsAreAbsent() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("upstream a {\n  server 127.0.0.1:1;\n}\nupstream b {\n  server 127.0.0.1:2;\n}")))
        XCTAssertEqual(conf.http?.upstreams.count, 2)
        XCTAssertTrue(conf.checkedPeers.isEmpty)
    }

    func testAllDownUpstreamHasNoPeers() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("upstream a {\n  server 127.0.0.1:1 down;\n  check interval=1000;\n}")))
        XCTAssertTrue(conf.checkedPeers.isEmpty)
    }

    func testMentionOrderAcrossServersAndNestedLocations() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            server {
                location / {
                    location /deep { proxy_pass http://z; }
                }
            }
            server {
                location / { proxy_pass http://y; }
            }
            upstream x { server 127.0.0.1:3; check interval=1000; }
            upstream y { server 127.0.0.1:2; check interval=1000; }
            upstream z { server 127.0.0.1:1; check interval=1000; }
            """)))
        XCTAssertEqual(peers(conf), ["z 127.0.0.1:1", "y 127.0.0.1:2", "x 127.0.0.1:3"])
    }

    func testSameAddressInTwoUpstreamsIsTwoPeers() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            upstream a { server 127.0.0.1:1; check interval=1000; }
            upstream b { server 127.0.0.1:1; server 127.0.0.1:1; check interval=2000; }
            """)))
        XCTAssertEqual(peers(conf), ["a 127.0.0.1:1", "b 127.0.0.1:1", "b 127.0.0.1:1"])
        XCTAssertEqual(conf.checkedPeers.map(\.check.interval), [1000, 2000, 2000])
    }

    func testIPv6Peer() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("upstream a { server [::1]:8080; check interval=1000; }")))
        XCTAssertEqual(conf.checkedPeers.map(\.address), [PeerAddress(host: "::1", port: 8080, isIPv6: true)])
        XCTAssertEqual(conf.checkedPeers.first?.address.description, "[::1]:8080")
    }

    func testHostnamePeerIsListedByItsNumericAddress() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("upstream a { server localhost:28091; check interval=1000; }")))
        let addrs = conf.checkedPeers.map(\.address)
        XCTAssertFalse(addrs.isEmpty)
        for a in addrs {
            XCTAssertEqual(a.port, 28091)
            XCTAssertTrue(a.host == "127.0.0.1" || a.host == "::1", a.description)
        }
        XCTAssertEqual(Set(addrs).count, addrs.count, "each address appears once")
    }
}

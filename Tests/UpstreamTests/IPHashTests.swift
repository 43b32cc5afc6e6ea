import XCTest
@testable import Config
@testable import Upstream

/// ip_hash: the first three octets of an IPv4 client (the whole of an IPv6 one) pick the peer, so one /24
/// always lands on the same peer; a peer that cannot take the request is hashed past, and one marked `down`
/// keeps its place so that other clients do not move (nginx's documented reason for `down` with ip_hash).
final class IPHashTests: XCTestCase {
    let a = "127.0.0.1:8001", b = "127.0.0.1:8002", c = "127.0.0.1:8003"
    var block: String { "upstream u { ip_hash; server \(a); server \(b); server \(c); }" }

    /// The /24 `10.n.m.0` for n*256+m = `net`, host part `host`.
    func client(_ net: Int, host: UInt8) -> [UInt8] { [10, UInt8(net / 256), UInt8(net % 256), host] }

    func testSameSlash24AlwaysGetsSamePeer() throws {
        let ih = try balancer(block)
        XCTAssertEqual(ih.method, .ipHash)
        for net in 0..<40 {
            let first = ih.pick(now: 1000, client: client(net, host: 1))
            XCTAssertNotEqual(first, "-")
            for host in UInt8(0)...UInt8(255) {
                XCTAssertEqual(ih.pick(now: 1000 + UInt64(host), client: client(net, host: host)), first, "10.x.\(net).\(host)")
            }
        }
        // Another balancer of the same configuration (another worker) agrees.
        let other = try balancer(block)
        for net in 0..<40 {
            XCTAssertEqual(other.pick(now: 5, client: client(net, host: 9)), ih.pick(now: 5, client: client(net, host: 200)))
        }
    }

    func testDifferentSlash24sSpreadOverPeers() throws {
        let ih = try balancer(block)
        let n = counts((0..<300).map { ih.pick(now: 1000, client: client($0, host: 7)) })
        XCTAssertEqual(Set(n.keys), [a, b, c])
        for (peer, count) in n { XCTAssertGreaterThan(count, 60, "\(peer) got \(count) of 300 networks") }
    }

    func testWeightsShiftTheShare() throws {
        let ih = try balancer("upstream u { ip_hash; server \(a) weight=3; server \(b); }")
        let n = counts((0..<400).map { ih.pick(now: 1000, client: client($0, host: 7)) })
        XCTAssertGreaterThan(n[a] ?? 0, 2 * (n[b] ?? 0), "weight 3 against 1: \(n)")
        XCTAssertGreaterThan(n[b] ?? 0, 40)
    }

    func testUnusablePeerIsHashedPastOthersStay() throws {
        let ih = try balancer(block)
        let before = (0..<200).map { ih.pick(now: 1000, client: client($0, host: 1)) }
        // b fails once (max_fails=1): its clients go elsewhere, everyone else stays put.
        ih.finished(ih.peer(b), failed: true, now: 2000)
        let during = (0..<200).map { ih.pick(now: 2001, client: client($0, host: 1)) }
        XCTAssertTrue(before.contains(b))
        XCTAssertFalse(during.contains(b), "a failed peer is skipped")
        XCTAssertFalse(during.contains("-"), "its clients find another peer")
        for i in 0..<200 where before[i] != b { XCTAssertEqual(during[i], before[i], "network \(i) moved though its peer is fine") }
        // tried: a retry of the same client goes elsewhere too.
        let first = ih.select(clientAddress: { self.client(3, host: 3) }, hashKey: nil, now: 2002, tried: [])!
        let retry = ih.select(clientAddress: { self.client(3, host: 3) }, hashKey: nil, now: 2002, tried: [first])
        XCTAssertNotNil(retry)
        XCTAssertFalse(retry === first)
        // After fail_timeout one of b's clients tries it again, and once that request succeeds b has all its
        // clients back.
        let firstOfB = try XCTUnwrap(before.firstIndex(of: b))
        XCTAssertEqual(ih.pick(now: 12_001, client: client(firstOfB, host: 1)), b)
        ih.finished(ih.peer(b), failed: false, now: 12_002)
        let later = (0..<200).map { ih.pick(now: 12_003, client: client($0, host: 1)) }
        XCTAssertEqual(later, before)
    }

    func testDownKeepsTheMappingOfOtherClients() throws {
        let up = try balancer(block)
        let withDown = try balancer("upstream u { ip_hash; server \(a); server \(b) down; server \(c); }")
        var moved = 0
        for net in 0..<300 {
            let was = up.pick(now: 1000, client: client(net, host: 1))
            let now = withDown.pick(now: 1000, client: client(net, host: 1))
            XCTAssertNotEqual(now, b)
            XCTAssertNotEqual(now, "-")
            if was != b { XCTAssertEqual(now, was, "network \(net)") } else { moved += 1 }
        }
        XCTAssertGreaterThan(moved, 0)
    }

    func testNoUsablePeerAnswersNil() throws {
        let ih = try balancer("upstream u { ip_hash; server \(a); server \(b) down; }")
        ih.finished(ih.peer(a), failed: true, now: 100)
        XCTAssertEqual(ih.pick(now: 101, client: client(1, host: 1)), "-")
    }

    func testIPv6HashesTheWholeAddress() throws {
        let ih = try balancer(block)
        let prefix: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11)
        let picks = (0...255).map { ih.pick(now: 1000, client: prefix + [UInt8($0)]) }
        XCTAssertGreaterThan(Set(picks).count, 1, "IPv6 clients differing only in the last byte are not grouped")
        XCTAssertEqual(ih.pick(now: 1000, client: prefix + [42]), ih.pick(now: 2000, client: prefix + [42]), "but each is stable")
    }

    /// As nginx's, ip_hash moves the chosen peer's failure window on once fail_timeout has passed, so a later
    /// success clears its failures.
    func testSuccessesClearAnEarlierFailure() throws {
        let ih = try balancer("upstream u { ip_hash; server \(a) max_fails=2; server \(b); server \(c); }")
        let net = try XCTUnwrap((0..<100).first { ih.pick(now: 1, client: client($0, host: 1)) == a })
        XCTAssertTrue(survivesSparseFailures(ih, ih.peer(a)) { ih.select(clientAddress: { self.client(net, host: 1) }, hashKey: nil, now: $0, tried: []) },
                      "two failures an hour apart, with successes between, should not reach max_fails=2")
    }

    /// After fail_timeout a failed peer gets one request and waits for its outcome, as in nginx; not all of its
    /// clients at once.
    func testAfterFailTimeoutOneRequestProbesThePeer() throws {
        let ih = try balancer("upstream u { ip_hash; server \(a); server \(b); server \(c); }")
        let net = try XCTUnwrap((0..<100).first { ih.pick(now: 1, client: client($0, host: 1)) == a })
        ih.finished(ih.peer(a), failed: true, now: 1000)
        XCTAssertNotEqual(ih.pick(now: 1001, client: client(net, host: 1)), a)
        XCTAssertEqual(ih.pick(now: 11_001, client: client(net, host: 1)), a, "fail_timeout over: one request")
        XCTAssertNotEqual(ih.pick(now: 11_002, client: client(net, host: 1)), a, "nginx: not another until it succeeds")
    }
}

import Foundation
import TestHarness
import XCTest

/// Health checks against peers that misbehave: each must end down, the checker must keep checking the others
/// on schedule, and it must not leak the descriptors of the probes it gives up on.
final class CheckFaultTests: FaultTestCase {
    func testMisbehavingPeersAreDownAndTheCheckerCarriesOn() throws {
        let ok = Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8)
        let behaviours: [(name: String, peer: RawServer.Behaviour)] = [
            ("garbage", .reply(Array("SSH-2.0-OpenSSH_9.2\r\n".utf8))),
            ("silent", .silent),
            ("drip", .drip(prefix: [], bytes: ok, everyMs: 100)),
            // An endless status line: the reply never becomes a verdict on its own.
            ("flood", .flood(prefix: Array("HTTP/1.1 200 OK".utf8), filler: [UInt8](repeating: 0x4B, count: 4096))),
            ("live", .answer(ok)),
        ]
        let peers = try behaviours.map { try RawServer($0.peer) }
        defer { for p in peers { p.stop() } }
        let port = freePort()
        let servers = peers.map { "server 127.0.0.1:\($0.port);" }.joined(separator: "\n")
        let vigil = try Vigil(config: Vigil.config(http: """
            upstream app {
                \(servers)
                check interval=500 rise=1 fall=1 timeout=1000 type=http default_down=false;
            }
            server { listen 127.0.0.1:\(port); location /status { check_status json; } }
            """))
        defer { vigil.cleanup() }
        let master = try vigil.start()
        _ = vigil.waitForWorkers(master, count: 1)

        func states() -> [String] {
            guard let r = httpGet(port, "/status"), r.status == 200,
                  let obj = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                  let servers = (obj["servers"] as? [String: Any])?["server"] as? [[String: Any]] else { return [] }
            return servers.map { $0["status"] as? String ?? "?" }
        }
        func checks() -> [Int] { (vigil.shmdumpJSON()["peers"] as? [[String: Any]])?.map { $0["checks"] as? Int ?? -1 } ?? [] }

        let expected = ["down", "down", "down", "down", "up"]
        let t0 = Date()
        XCTAssertTrue(waitFor(8) { states() == expected }, "\(states()) for \(behaviours.map(\.name))")
        let settled = Date().timeIntervalSince(t0)
        let checker = try XCTUnwrap(vigil.checkerPid())

        // Five seconds of probing: every peer is still checked (the live one about twice a second), and the
        // checker's descriptor count stays flat (in-flight probes come and go; nothing accumulates).
        let before = checks()
        var fds: [Int] = []
        let end = Date().addingTimeInterval(5)
        while Date() < end {
            fds.append(openDescriptors(checker))
            usleep(250_000)
        }
        let after = checks()
        let probes = zip(before, after).map { $1 - $0 }
        XCTAssertEqual(states(), expected)
        record("http checks vs garbage, silent, dripping, flooding and live peers (interval=500)",
               String(format: "all down but the live one after %.1f s; probes in 5 s %@; checker fds %d..%d", settled,
                      probes.map(String.init).joined(separator: "/"), fds.min() ?? -1, fds.max() ?? -1))
        XCTAssertEqual(probes.count, peers.count)
        // A probe that times out takes timeout + interval (1.5 s): at least 3 in 5 s, 2 with a slow machine's margin.
        XCTAssertTrue(probes.allSatisfy { $0 >= 2 }, "a peer was not checked on schedule: \(probes)")
        XCTAssertGreaterThanOrEqual(probes.last ?? 0, 7, "the live peer was not checked twice a second")
        // At most one probe per peer in flight at any time.
        XCTAssertLessThanOrEqual((fds.max() ?? 0) - (fds.min() ?? 0), peers.count, "checker descriptors: \(fds)")
        XCTAssertTrue(vigil.errorLog().contains("check time out with peer: 127.0.0.1:\(peers[1].port)"), vigil.errorLog())
    }
}

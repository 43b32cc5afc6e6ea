import Foundation
import TestHarness
import XCTest

/// A proxied body larger than what waits for a client that is slow to start reading: every byte reaches it
/// before the close. (The last resume of the upstream once read the rest and the upstream's end in one go,
/// and the connection closed with that rest still queued.)
final class SlowClientProxyTests: XCTestCase {
    func testWholeBodyReachesAClientThatReadsLate() throws {
        let port = freePort(), upstream = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let sizes = [300_000, 600_000, 1 << 20]
        let root = try vigil.htmlRoot(sizes.map { ("\($0)", [UInt8](repeating: UInt8(ascii: "X"), count: $0)) })
        try vigil.write(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(port) sndbuf=32k; location / { proxy_pass http://127.0.0.1:\(upstream); } }
            server { listen 127.0.0.1:\(upstream); root \(root); }
            """))
        _ = try vigil.start()
        var short: [String] = []
        for round in 0..<4 {
            for size in sizes {
                let c = try HTTPConnection(port: port, timeout: 10)
                try c.send("GET /\(size) HTTP/1.0\r\n\r\n")
                usleep(250_000)   // the upstream has sent all it has; Vigil waits on this client
                let raw = c.readToEOF()
                c.close()
                let body = raw.count - (raw.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound ?? raw.count)
                if body != size { short.append("round \(round), \(size) bytes: \(body) arrived") }
            }
        }
        XCTAssertEqual(short, [])
    }
}

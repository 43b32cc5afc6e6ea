import Foundation
import TestHarness
import XCTest

/// Backends that misbehave, proxied with short timeouts: each request must end in a timely, well-formed answer,
/// and the worker must survive with bounded memory. The peers are raw sockets in this process.
final class UpstreamFaultTests: FaultTestCase {
    var vigil: Vigil?
    var peers: [RawServer] = []
    var port: UInt16 = 0
    var worker: Int32 = 0

    override func tearDown() {
        vigil?.cleanup()
        for p in peers { p.stop() }
    }

    /// One worker proxying each location to a peer that behaves as given, with `/ok` answered by Vigil itself.
    func startProxy(_ locations: [(path: String, peer: RawServer.Behaviour)], readTimeout: String = "1s", extra: String = "") throws {
        var blocks = ""
        for (path, behaviour) in locations {
            let p = try RawServer(behaviour)
            peers.append(p)
            blocks += "location = \(path) { proxy_pass http://127.0.0.1:\(p.port); }\n"
        }
        port = freePort()
        let v = try Vigil(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                proxy_connect_timeout 1s;
                proxy_send_timeout 1s;
                proxy_read_timeout \(readTimeout);
                \(extra)
                \(blocks)
                location = /ok { return 200 "ok"; }
            }
            """))
        vigil = v
        let master = try v.start()
        worker = try XCTUnwrap(v.waitForWorkers(master, count: 1).first)
    }

    /// GET on a fresh connection: the response and how long it took.
    func timedGet(_ path: String) throws -> (response: HTTPResponse, seconds: Double) {
        let t0 = Date()
        let r = try httpExchange(port, getRequest(path))
        return (r, Date().timeIntervalSince(t0))
    }

    /// The same worker is alive and still answers.
    func assertWorkerServes(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(processAlive(worker), "the worker died", file: file, line: line)
        XCTAssertEqual(httpGet(port, "/ok")?.body, "ok", file: file, line: line)
    }

    func assertLogged(_ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(waitFor(3) { self.vigil!.errorLog().contains(message) }, "no \"\(message)\" in:\n\(vigil!.errorLog())", file: file, line: line)
    }

    func testPeerThatNeverAnswers() throws {
        try startProxy([("/", .silent)])
        let (r, t) = try timedGet("/")
        record("peer accepts, never answers; proxy_read_timeout 1s", String(format: "%d after %.2f s", r.status, t))
        XCTAssertEqual(r.status, 504)
        XCTAssertGreaterThanOrEqual(t, 0.9)
        XCTAssertLessThan(t, 2.5)
        assertLogged("upstream timed out (110: Connection timed out) while reading response header from upstream")
        assertWorkerServes()
    }

    /// proxy_read_timeout bounds the wait for the whole response head, then each read of the body: nginx's
    /// semantics, checked against Debian's nginx. A body dripped for longer than the timeout completes; a head
    /// dripped for longer than it is a 504.
    func testPeerThatAnswersByteByByte() throws {
        let body = "dripped, one byte every 60 ms"
        let head = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
        try startProxy([("/body", .drip(prefix: Array(head.utf8), bytes: Array(body.utf8), everyMs: 60)),
                        ("/head", .drip(prefix: [], bytes: Array((head + body).utf8), everyMs: 60))])
        let (slowBody, tBody) = try timedGet("/body")
        let (slowHead, tHead) = try timedGet("/head")
        record("peer drips its answer, 1 byte / 60 ms; proxy_read_timeout 1s",
               String(format: "dripped body: %d, %d bytes in %.2f s; dripped head: %d after %.2f s",
                      slowBody.status, slowBody.body.count, tBody, slowHead.status, tHead))
        XCTAssertEqual(slowBody.status, 200)
        XCTAssertEqual(slowBody.text, body)
        XCTAssertGreaterThan(tBody, 1.2, "the body took longer than proxy_read_timeout, one read at a time")
        XCTAssertEqual(slowHead.status, 504)
        XCTAssertLessThan(tHead, 2.5)
        assertWorkerServes()
    }

    func testPeerThatFloodsAHeader() throws {
        try startProxy([("/", .flood(prefix: Array("HTTP/1.1 200 OK\r\nX-Flood: ".utf8), filler: [UInt8](repeating: 0x61, count: 4096)))])
        let (r, t) = try timedGet("/")
        XCTAssertEqual(r.status, 502)
        assertLogged("upstream sent too big header while reading response header from upstream")
        // Vigil let go of the flooding connection.
        XCTAssertTrue(waitFor(3) { self.peers[0].openConnections == 0 }, "the upstream connection is still open")
        record("peer floods an endless header", String(format: "%d after %.2f s, upstream connection closed", r.status, t))
        assertWorkerServes()
    }

    func testPeerThatFloodsABody() throws {
        try startProxy([("/", .flood(prefix: Array("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".utf8),
                                     filler: [UInt8](repeating: 0x78, count: 65536)))], readTimeout: "1s")
        let rss0 = try XCTUnwrap(rssKB(worker))
        var rssMax = rss0
        let c = try HTTPConnection(port: port)
        try c.send(getRequest("/"))
        var received: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        /// Reads at most 16 kB every 10 ms (about 1.6 MB/s, far slower than the flood) for `seconds`.
        func readSlowly(_ seconds: Double) {
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                let n = buf.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 { received += buf[0..<n] }
                rssMax = max(rssMax, rssKB(worker) ?? 0)
                usleep(10_000)
            }
        }
        readSlowly(1.5)
        let streamed = received.count
        // The client stops reading for longer than proxy_read_timeout: Vigil stops reading the peer instead of
        // buffering the flood, and (as nginx) that pause is not an upstream timeout; send_timeout (60 s) governs it.
        let stallEnd = Date().addingTimeInterval(1.5)
        while Date() < stallEnd {
            rssMax = max(rssMax, rssKB(worker) ?? 0)
            usleep(100_000)
        }
        readSlowly(0.5)
        let resumed = received.count - streamed
        c.close()
        let growthMB = Double(rssMax - rss0) / 1024
        XCTAssertTrue(String(decoding: received.prefix(15), as: UTF8.self).hasPrefix("HTTP/1.1 200 OK"))
        XCTAssertGreaterThan(streamed, 256 * 1024, "the body was not streamed")
        XCTAssertGreaterThan(resumed, 0, "the connection did not survive the client's pause")
        XCTAssertLessThan(growthMB, 64, "the worker's RSS grew by \(growthMB) MB")
        XCTAssertTrue(waitFor(3) { self.peers[0].openConnections == 0 }, "the upstream connection outlived the client")
        record("peer floods an endless body; client reads slowly, stops 1.5 s, resumes",
               String(format: "%.1f MB streamed, %.1f MB after the pause, worker RSS +%.1f MB", Double(streamed) / 1048576,
                      Double(resumed) / 1048576, growthMB))
        assertWorkerServes()
    }

    /// A client that stops reading a proxied response is dropped after send_timeout, not proxy_read_timeout,
    /// and the upstream connection goes with it.
    func testClientThatStopsReadingIsClosedAfterSendTimeout() throws {
        try startProxy([("/", .flood(prefix: Array("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".utf8),
                                     filler: [UInt8](repeating: 0x78, count: 65536)))], readTimeout: "30s", extra: "send_timeout 1s;")
        let c = try HTTPConnection(port: port)
        defer { c.close() }
        try c.send(getRequest("/"))
        var buf = [UInt8](repeating: 0, count: 65536)
        XCTAssertGreaterThan(buf.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }, 0, "nothing arrived")
        // Stop reading: the socket buffers fill and Vigil's writes stall.
        let stopped = Date()
        XCTAssertTrue(waitFor(8) { self.vigil!.errorLog().contains("client timed out (110: Connection timed out) while sending to client") },
                      vigil!.errorLog())
        let t = Date().timeIntervalSince(stopped)
        XCTAssertGreaterThan(t, 0.9)
        XCTAssertLessThan(t, 6, "send_timeout 1s took \(t) s")
        XCTAssertTrue(waitFor(3) { self.peers[0].openConnections == 0 }, "the upstream connection outlived the client")
        record("client stops reading a proxied flood; send_timeout 1s, proxy_read_timeout 30s",
               String(format: "closed after %.2f s, upstream closed", t))
        assertWorkerServes()
    }

    /// nginx relays a reply that is not HTTP as an HTTP/0.9 body with status 200; Vigil refuses it with a 502.
    func testPeerThatAnswersGarbage() throws {
        try startProxy([("/", .answer(Array("SSH-2.0-OpenSSH_9.2\r\n".utf8)))])
        let (r, t) = try timedGet("/")
        record("peer answers garbage (an SSH banner)", String(format: "%d after %.3f s", r.status, t))
        XCTAssertEqual(r.status, 502)
        assertLogged("while reading response header from upstream")
        assertWorkerServes()
    }
}

import FuzzSupport
import XCTest
@testable import Checks
@testable import Config
import ShmTable

/// `Probes.evaluate` on seeded pseudo-random input (the same cases on every run): it never crashes, never
/// answers "need more" once the peer has closed, and a verdict reached on part of a reply does not change as
/// more bytes arrive (the engine re-evaluates the whole buffer after every read).
final class ProbeRobustnessTests: XCTestCase {
    private var cases = 0

    private func randomExpect(_ rng: inout SplitMix64) -> (ExpectAlive, Bool) {
        (ExpectAlive(rawValue: UInt8.random(in: 0...15, using: &rng) << 2), Bool.random(using: &rng))
    }

    /// The invariants for one reply; `allPrefixes` also walks every segment boundary.
    private func check(_ type: CheckType, _ reply: [UInt8], _ rng: inout SplitMix64, allPrefixes: Bool = false,
                       file: StaticString = #filePath, line: UInt = #line) {
        let (expect, expectSet) = randomExpect(&rng)
        func eval(_ r: [UInt8], _ eof: Bool) -> Verdict {
            Probes.evaluate(type, r, eof: eof, expect: expect, expectSet: expectSet, peer: testPeer)
        }
        cases += 1
        let open = eval(reply, false), closed = eval(reply, true)
        let note = "\(type) \(hexString(reply)) expect \(expect.rawValue) set \(expectSet)"
        XCTAssertNotEqual(closed, .needMore, "eof=true must give a verdict: \(note)", file: file, line: line)
        if open != .needMore { XCTAssertEqual(closed, open, "EOF changed a verdict: \(note)", file: file, line: line) }
        if case .down(_, let m) = closed { XCTAssertFalse(m.isEmpty, note, file: file, line: line) }
        if type == .tcp { XCTAssertEqual(open, .up, note, file: file, line: line) }

        let cuts = allPrefixes ? Array(0...reply.count) : [Int.random(in: 0...reply.count, using: &rng)]
        var first: Verdict? = nil
        for k in cuts {
            let v = eval(Array(reply[0..<k]), false)
            if let first {
                XCTAssertEqual(v, first, "verdict changed at \(k) bytes: \(note)", file: file, line: line)
            } else if v != .needMore {
                first = v
                XCTAssertEqual(open, v, "prefix of \(k) bytes judged differently: \(note)", file: file, line: line)
            }
        }
    }

    private func randomBytes(_ n: Int, _ rng: inout SplitMix64) -> [UInt8] {
        (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    private func randomText(_ n: Int, from alphabet: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
    }

    /// Uniform random bytes, lengths 0...200, every type, both eof values (in `check`).
    func testRandomBytes() {
        var rng = SplitMix64(seed: 0x5EED_0001)
        for type in CheckType.allCases {
            for _ in 0..<300 {
                check(type, randomBytes(Int.random(in: 0...200, using: &rng), &rng), &rng)
            }
            for n in 0...200 { check(type, randomBytes(n, &rng), &rng) }   // every length at least once
        }
    }

    /// Inputs shaped like each protocol's reply, so the random walk goes deep into the parsers.
    func testStructuredRandomReplies() {
        var rng = SplitMix64(seed: 0x5EED_0002)
        let httpAlphabet = bytes("HTTP/0123456789. \r\nOKx\t")
        let headerAlphabet = bytes("Status:S 0123456789\r\nX-A:\u{0}")
        for i in 0..<400 {
            let walk = i % 8 == 0
            // http: a "HTTP/" start, then status-line characters.
            var http = Bool.random(using: &rng) ? bytes("HTTP/") : []
            if Bool.random(using: &rng) { http += bytes(["1.1 ", "1.0 ", "10.1  ", "2 "].randomElement(using: &rng)!) }
            http += randomText(Int.random(in: 0...40, using: &rng), from: httpAlphabet, &rng)
            check(.http, Array(http.prefix(200)), &rng, allPrefixes: walk)

            // ssl_hello: byte 0 and byte 5 right half of the time.
            var ssl = randomBytes(Int.random(in: 0...120, using: &rng), &rng)
            if ssl.count > 0 && Bool.random(using: &rng) { ssl[0] = 0x16 }
            if ssl.count > 5 && Bool.random(using: &rng) { ssl[5] = 0x02 }
            check(.ssl_hello, ssl, &rng, allPrefixes: walk)

            // mysql: sequence byte 0 half of the time.
            var my = randomBytes(Int.random(in: 0...12, using: &rng), &rng)
            if my.count > 3 && Bool.random(using: &rng) { my[3] = 0 }
            check(.mysql, my, &rng, allPrefixes: walk)

            // ajp: a CPONG with at most one byte changed, then a random tail.
            var ajp = hex("41 42 00 01 09")
            if Bool.random(using: &rng) { ajp[Int.random(in: 0..<5, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            ajp = Array(ajp.prefix(Int.random(in: 0...5, using: &rng))) + randomBytes(Int.random(in: 0...6, using: &rng), &rng)
            check(.ajp, ajp, &rng, allPrefixes: walk)

            // fastcgi: a mostly valid header, header-like content, sometimes padding and a following record.
            let content = randomText(Int.random(in: 0...60, using: &rng), from: headerAlphabet, &rng)
            let type: UInt8 = [6, 6, 6, 6, 7, 3, UInt8.random(in: 0...255, using: &rng)].randomElement(using: &rng)!
            var rec = fcgiRecord(type, content, padding: Int.random(in: 0...7, using: &rng),
                                 version: Int.random(in: 0..<10, using: &rng) == 0 ? 2 : 1,
                                 requestID: Int.random(in: 0..<10, using: &rng) == 0 ? 0x0101 : 1)
            if Int.random(in: 0..<4, using: &rng) == 0 {      // a length field that lies
                rec[4] = UInt8.random(in: 0...255, using: &rng)
                rec[5] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { rec += fcgiEnd }
            rec = Array(rec.prefix(Int.random(in: 0...rec.count, using: &rng) + (Bool.random(using: &rng) ? rec.count : 0)))
            check(.fastcgi, Array(rec.prefix(200)), &rng, allPrefixes: walk)

            check(.tcp, randomBytes(Int.random(in: 0...20, using: &rng), &rng), &rng)
        }
    }

    /// Every type: the known good replies, walked byte by byte, settle on up at the first full verdict.
    func testGoodRepliesStreamToUp() {
        var rng = SplitMix64(seed: 0x5EED_0003)
        let good: [(CheckType, [UInt8])] = [
            (.http, bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")),
            (.ssl_hello, hex("16 03 03 00 3d 02") + [UInt8](repeating: 0, count: 60)),
            (.mysql, hex("4a 00 00 00 0a 35 2e 37")),
            (.ajp, hex("41 42 00 01 09")),
            (.fastcgi, fcgiReply("Status: 200 OK\r\n\r\n")),
        ]
        for (type, reply) in good {
            check(type, reply, &rng, allPrefixes: true)
            XCTAssertEqual(judge(type, reply), .up, "\(type)")
        }
    }

    override func tearDown() {
        // Sanity: the random tests really ran thousands of cases.
        if name.contains("testRandomBytes") { XCTAssertGreaterThan(cases, 2500) }
        if name.contains("testStructuredRandomReplies") { XCTAssertGreaterThan(cases, 2000) }
        super.tearDown()
    }
}

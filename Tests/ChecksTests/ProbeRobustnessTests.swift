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

    /// The invariants for one reply; `allPrefixes` also walks every segment boundary.
    private func check(_ type: CheckType, _ reply: [UInt8], _ rng: inout SplitMix64, allPrefixes: Bool = false,
                       file: StaticString = #filePath, line: UInt = #line) {
        cases += 1
        for problem in Self.problems(type, reply, &rng, allPrefixes: allPrefixes) { XCTFail(problem, file: file, line: line) }
    }

    /// What is wrong with the verdicts on `reply` (nothing, normally), with a random expectation: `eof` always
    /// gives a verdict, a verdict reached before EOF stands after it, a down verdict says why, tcp is always up,
    /// and once a prefix gets a verdict every longer prefix gets the same one.
    static func problems(_ type: CheckType, _ reply: [UInt8], _ rng: inout SplitMix64, allPrefixes: Bool = false) -> [String] {
        let expect = ExpectAlive(rawValue: UInt8.random(in: 0...15, using: &rng) << 2), expectSet = Bool.random(using: &rng)
        func eval(_ r: [UInt8], _ eof: Bool) -> Verdict {
            Probes.evaluate(type, r, eof: eof, expect: expect, expectSet: expectSet, peer: testPeer)
        }
        var found: [String] = []
        let open = eval(reply, false), closed = eval(reply, true)
        var note: String { "\(type) \(hexString(reply)) expect \(expect.rawValue) set \(expectSet)" }
        if closed == .needMore { found.append("eof=true must give a verdict: \(note)") }
        if open != .needMore && closed != open { found.append("EOF changed a verdict: \(note)") }
        if case .down(_, let m) = closed, m.isEmpty { found.append("a down verdict without a reason: \(note)") }
        if type == .tcp && open != .up { found.append("tcp must be up: \(note)") }

        let cuts = allPrefixes ? Array(0...reply.count) : [Int.random(in: 0...reply.count, using: &rng)]
        var first: Verdict? = nil
        for k in cuts {
            let v = eval(Array(reply[0..<k]), false)
            if let first {
                if v != first { found.append("verdict changed at \(k) bytes: \(note)") }
            } else if v != .needMore {
                first = v
                if open != v { found.append("prefix of \(k) bytes judged differently: \(note)") }
            }
        }
        return found
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

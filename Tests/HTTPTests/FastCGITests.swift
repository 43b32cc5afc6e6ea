import FuzzSupport
import XCTest
@testable import HTTP

final class FastCGITests: XCTestCase {
    /// A record as an application writes it, with `padding` zeros after its content.
    static func record(_ type: UInt8, _ content: [UInt8], padding: Int = 0, id: UInt8 = 1) -> [UInt8] {
        [1, type, 0, id, UInt8(content.count >> 8), UInt8(content.count & 0xff), UInt8(padding), 0]
            + content + [UInt8](repeating: 0, count: padding)
    }

    static let endRequest = record(FastCGI.endRequest, [0, 0, 0, 0, 0, 0, 0, 0])

    /// Everything the decoder reports for `bytes` fed in pieces of `size`.
    static func decode(_ bytes: [UInt8], pieces size: Int) -> (stdout: [UInt8], stderr: [UInt8], events: [String]) {
        var d = FastCGI.Decoder()
        var out: [UInt8] = [], err: [UInt8] = [], events: [String] = []
        var start = 0
        while start < bytes.count {
            let piece = Array(bytes[start..<min(start + size, bytes.count)])
            start += size
            piece.withUnsafeBytes { buf in
                var i = 0
                while let e = d.next(buf, &i) {
                    switch e {
                    case .stdout(let r): out += buf[r]
                    case .stderr(let r): err += buf[r]
                    case .stdoutClosed: events.append("closed")
                    case .endRequest: events.append("end")
                    case .invalid(let m): events.append(m); return
                    }
                }
                XCTAssertEqual(i, buf.count, "a piece is used up")
            }
        }
        return (out, err, events)
    }

    func testRequestRecords() {
        let bytes = FastCGI.request(params: [("A", "b")], keepConn: true)
        XCTAssertEqual(Array(bytes[0..<16]), [1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
        // PARAMS: one pair of 1+1+1+1 bytes padded to eight, the empty PARAMS, the empty STDIN.
        XCTAssertEqual(Array(bytes[16...]), [1, 4, 0, 1, 0, 4, 4, 0, 1, 1, 65, 98, 0, 0, 0, 0,
                                             1, 4, 0, 1, 0, 0, 0, 0, 1, 5, 0, 1, 0, 0, 0, 0])
    }

    func testLongLengthsTakeFourBytes() {
        var out: [UInt8] = []
        FastCGI.appendLength(128, to: &out)
        FastCGI.appendLength(127, to: &out)
        XCTAssertEqual(out, [0x80, 0, 0, 128, 127])
    }

    func testLongStreamIsSplitIntoRecords() {
        let content = [UInt8](repeating: 7, count: 70_000)
        let bytes = FastCGI.stream(FastCGI.stdin, content)
        // Read back as if it were STDOUT.
        var rewritten = bytes, i = 0
        while i < rewritten.count {
            rewritten[i + 1] = FastCGI.stdout
            let len = Int(rewritten[i + 4]) << 8 | Int(rewritten[i + 5])
            i += 8 + len + Int(rewritten[i + 6])
        }
        let r = FastCGITests.decode(rewritten, pieces: 4096)
        XCTAssertEqual(r.stdout, content)
        XCTAssertEqual(r.events, ["closed"])
    }

    func testDecoderInAnyPieces() {
        let head = Array("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody".utf8)
        let stream = FastCGITests.record(FastCGI.stderr, Array("warning\n".utf8), padding: 3)
            + FastCGITests.record(FastCGI.stdout, head, padding: 5)
            + FastCGITests.record(FastCGI.stdout, Array(" more".utf8))
            + FastCGITests.record(FastCGI.stdout, []) + FastCGITests.endRequest
        for size in 1...stream.count {
            let r = FastCGITests.decode(stream, pieces: size)
            XCTAssertEqual(r.stdout, head + Array(" more".utf8), "pieces of \(size)")
            XCTAssertEqual(r.stderr, Array("warning\n".utf8))
            XCTAssertEqual(r.events, ["closed", "end"])
        }
    }

    func testInvalidRecordsInNginxWords() {
        XCTAssertEqual(FastCGITests.decode([2, 6, 0, 1, 0, 0, 0, 0], pieces: 8).events, ["upstream sent unsupported FastCGI protocol version: 2"])
        XCTAssertEqual(FastCGITests.decode([1, 9, 0, 1, 0, 0, 0, 0], pieces: 8).events, ["upstream sent invalid FastCGI record type: 9"])
        XCTAssertEqual(FastCGITests.decode([1, 6, 1, 1, 0, 0, 0, 0], pieces: 8).events, ["upstream sent unexpected FastCGI request id high byte: 1"])
        XCTAssertEqual(FastCGITests.decode([1, 6, 0, 2, 0, 0, 0, 0], pieces: 8).events, ["upstream sent unexpected FastCGI request id low byte: 2"])
    }

    /// A length that claims more than comes waits for it (the session's read timeout or the close ends it).
    func testLyingLengthWaits() {
        let r = FastCGITests.decode([1, 6, 0, 1, 0xff, 0xff, 0, 0] + Array("short".utf8), pieces: 3)
        XCTAssertEqual(r.stdout, Array("short".utf8))
        XCTAssertEqual(r.events, [])
    }

    func testStderrTrimmedAsNginx() {
        func trim(_ s: String) -> String { Array(s.utf8).withUnsafeBytes { FastCGI.trimmedStderr($0) } }
        XCTAssertEqual(trim("PHP Warning: x. \n\r\n"), "PHP Warning: x")
        XCTAssertEqual(trim("...."), ".")
        XCTAssertEqual(trim("ok"), "ok")
    }

    func testCGIHead() {
        func parse(_ s: String) -> ResponseParseResult {
            var fields: [HeaderField] = []
            return Array(s.utf8).withUnsafeBytes { ResponseParser.parseCGI($0, maxHead: 4096, fields: &fields) }
        }
        guard case .complete(let h, let consumed) = parse("Status: 404 Not Found\r\nX-A: b\r\n\r\nrest") else { return XCTFail() }
        XCTAssertEqual(h.status, 404)
        XCTAssertEqual(h.reason, "Not Found")
        XCTAssertEqual(consumed, 33)
        guard case .complete(let redirect, _) = parse("Location: /there\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(redirect.status, 302)
        guard case .complete(let plain, _) = parse("Content-Length: 3\n\nabc") else { return XCTFail() }
        XCTAssertEqual(plain.status, 200)
        XCTAssertEqual(plain.contentLength, 3)
        guard case .complete(let empty, _) = parse("\r\n") else { return XCTFail() }
        XCTAssertEqual(empty.status, 200)
        guard case .invalid(let why) = parse("Status: abc\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(why, "upstream sent invalid status \"abc\"")
        guard case .incomplete = parse("X-A: b\r\n") else { return XCTFail() }
        guard case .invalid(let big) = parse("X-A: " + String(repeating: "b", count: 5000)) else { return XCTFail() }
        XCTAssertEqual(big, "upstream sent too big header")
    }

    static let corpus: [[UInt8]] = [
        record(FastCGI.stdout, Array("Status: 200\r\n\r\nhello".utf8), padding: 3) + record(FastCGI.stderr, Array("e".utf8))
            + record(FastCGI.stdout, []) + endRequest,
        record(FastCGI.stderr, [UInt8](repeating: 0x61, count: 300)) + record(FastCGI.stdout, Array("Location: /x\r\n\r\n".utf8)) + endRequest,
        record(FastCGI.stdout, Array("Content-Length: 3\r\nX-A: b\r\n\r\nabc".utf8), padding: 7) + endRequest,
        endRequest,
    ]

    /// Mutated record streams fed in random pieces: the decoder never traps, never loops, and uses up each piece
    /// or stops at an error; what it reports as content lies inside the piece. `VIGIL_FUZZ_ITERATIONS` and
    /// `VIGIL_FUZZ_SEED` as for the other fuzzers (Benchmarks/fuzz).
    func testMutationFuzz() {
        let seed = FuzzEnvironment.seed(default: 29)
        _ = FuzzProgress.runTest("FastCGI fuzz", iterations: FuzzEnvironment.iterations(default: 5000), seed: seed,
                                 show: { $0.map { String($0) }.joined(separator: ",") },
                                 summary: { $0.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") }) { iteration, progress in
            var rng = SplitMix64(seed: seed ^ (UInt64(iteration) &* 0xD1B5_4A32_D192_ED03))
            let bytes = BinaryMutation.mutate(rng.pick(FastCGITests.corpus), corpus: FastCGITests.corpus, rng: &rng)
            progress.start(bytes)
            var d = FastCGI.Decoder(), start = 0, outcome = "needs more"
            let size = 1 + rng.below(64)
            pieces: while start < bytes.count {
                let piece = Array(bytes[start..<min(start + size, bytes.count)])
                start += size
                piece.withUnsafeBytes { buf in
                    var i = 0
                    while let e = d.next(buf, &i) {
                        switch e {
                        case .stdout(let r), .stderr(let r):
                            if r.lowerBound < 0 || r.upperBound > buf.count { progress.fail("range \(r) outside a piece of \(buf.count), iteration \(iteration)") }
                        case .stdoutClosed: break
                        case .endRequest: outcome = "ended"
                        case .invalid: outcome = "invalid"; return
                        }
                    }
                    if i != buf.count { progress.fail("piece not used up at iteration \(iteration)") }
                }
                if outcome == "invalid" { break pieces }
            }
            progress.count(outcome)
            progress.finish()
        }
    }
}

import CZlib
import Foundation
import Gzip
import XCTest

final class GzipStreamTests: XCTestCase {
    /// The folded CRC agrees with zlib's at every length around the fold's block sizes, from every alignment,
    /// and when a buffer arrives in pieces.
    func testCRCMatchesZlib() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        data.withUnsafeBufferPointer { b in
            for offset in 0..<16 {
                for n in Array(0...300) + [1023, 1024, 1025, 2146, 4096, 4984] {
                    let zlib = UInt32(crc32(0, b.baseAddress! + offset, uInt(n)))
                    XCTAssertEqual(vigil_crc32(0, b.baseAddress! + offset, n), zlib, "offset \(offset), \(n) bytes")
                }
            }
            var pieces: UInt32 = 0, at = 0
            for n in [5, 64, 100, 17, 1000, 2814] {
                pieces = vigil_crc32(pieces, b.baseAddress! + at, n)
                at += n
            }
            XCTAssertEqual(pieces, UInt32(crc32(0, b.baseAddress!, uInt(at))))
        }
    }

    /// What a stream writes is a gzip file: nginx's header, and gzip(1) gets the input back from it, for an
    /// empty body, a small one, one past the 16 kB output piece, and one given in many pieces.
    func testOutputIsGzipWithNginxsHeader() throws {
        let text = Array((0..<4000).map { "line \($0) of a body that compresses\n" }.joined().utf8)
        let random = (0..<40000).map { _ in UInt8.random(in: 0...255) }
        for (name, body, pieces) in [("empty", [UInt8](), 1), ("small", Array(text[0..<2000]), 1),
                                     ("random", random, 1), ("streamed", text, 37)] {
            let pool = GzipPool()
            for round in 0..<2 {   // the second time on a stream reset by the pool
                let gz = try XCTUnwrap(pool.take(level: 1, length: pieces == 1 ? body.count : nil))
                var out: [UInt8] = []
                let step = max(1, (body.count + pieces - 1) / pieces)
                var at = 0
                repeat {
                    let end = min(body.count, at + step)
                    body[at..<end].withUnsafeBytes { gz.compress($0, finish: end == body.count) { out += $0 } }
                    at = end
                } while at < body.count
                gz.compress(UnsafeRawBufferPointer(start: nil, count: 0), finish: true) { out += $0 }   // finishing again adds nothing
                pool.give(gz)
                XCTAssertEqual(Array(out.prefix(10)), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3], "\(name) round \(round)")
                XCTAssertEqual(try gunzip(out), body, "\(name) round \(round)")
            }
        }
    }

    private func gunzip(_ data: [UInt8]) throws -> [UInt8] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-dc"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        input.fileHandleForWriting.write(Data(data))
        try input.fileHandleForWriting.close()
        let result = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "gzip -dc failed")
        return [UInt8](result)
    }
}

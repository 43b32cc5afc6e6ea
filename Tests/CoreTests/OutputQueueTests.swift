import XCTest
@testable import Core
#if canImport(Glibc)
import Glibc
#endif

/// OutputQueue: what appends write, how a flush to a non-blocking socket stops at a full socket and
/// goes on later, `rewind`, and when its storage is worth keeping.
final class OutputQueueTests: XCTestCase {
    private func text(_ q: OutputQueue) -> String { String(decoding: q.bytes, as: UTF8.self) }

    func testAppendsStringsIntegersAndHex() {
        let q = OutputQueue()
        XCTAssertTrue(q.isEmpty)
        XCTAssertEqual(q.bytes, [])
        q.append("Content-Length: ")
        q.append(0)
        q.append(" ")
        q.append(1234567)
        q.append(" ")
        q.append(-42)
        q.append(" ")
        q.append(Int.max)
        q.append(" ")
        q.append(Int.min)
        q.append(" ")
        q.appendHex(0)
        q.append(" ")
        q.appendHex(255)
        q.append(" ")
        q.appendHex(0x1a2b)
        q.append(" ")
        q.appendHex(Int.max)
        q.append([0x0d, 0x0a])
        q.append("")   // nothing
        let expected = "Content-Length: 0 1234567 -42 9223372036854775807 -9223372036854775808 0 ff 1a2b 7fffffffffffffff\r\n"
        XCTAssertEqual(text(q), expected)
        XCTAssertEqual(q.count, expected.utf8.count)
        XCTAssertFalse(q.isEmpty)
    }

    /// Appends of every short length (copied inline) and longer ones (memmove), each byte where it belongs, at
    /// every alignment of the queue's end.
    func testAppendsOfEveryLengthCopyEachByte() {
        let source = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for offset in 0..<8 {
            let q = OutputQueue()
            var expected = Array(repeating: UInt8(ascii: "."), count: offset)
            q.append(expected)
            for n in 0...40 {
                source.withUnsafeBytes { q.append(UnsafeRawBufferPointer(rebasing: $0[3..<(3 + n)])) }
                expected += source[3..<(3 + n)]
            }
            XCTAssertEqual(q.bytes, expected, "queue end at offset \(offset)")
        }
    }

    func testAppendOfANonContiguousString() {
        // A bridged or otherwise non-UTF-8-contiguous string takes the copying path.
        let q = OutputQueue()
        let lazy = String(String("olleh".reversed()))
        q.append(lazy)
        q.append("é€")
        XCTAssertEqual(text(q), "helloé€")
    }

    func testAppendUpToWritesInPlace() {
        let q = OutputQueue()
        q.append("ab")
        let n = q.append(upTo: 10) { p in
            let s: [UInt8] = Array("cdef".utf8)
            s.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: s.count) }
            return s.count
        }
        XCTAssertEqual(n, 4)
        XCTAssertEqual(q.append(upTo: 10) { _ in -1 }, -1, "an error is returned and nothing added")
        XCTAssertEqual(text(q), "abcdef")
    }

    func testFlushStopsAtAFullSocketAndTheRestGoesAfterTheReaderDrains() {
        let (a, b) = socketPair(self)
        var small: Int32 = 4096
        setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let payload = (0..<(512 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let q = OutputQueue()
        q.append(payload)

        XCTAssertEqual(q.flush(to: a), .wouldBlock)
        XCTAssertGreaterThan(q.sent, 0, "some went out before the socket filled")
        XCTAssertLessThan(q.sent, payload.count)
        XCTAssertEqual(q.count, payload.count - q.sent)
        XCTAssertFalse(q.isEmpty)
        XCTAssertEqual(q.flush(to: a), .wouldBlock, "still full: nobody read")

        var received = drain(b)
        var rounds = 0
        while q.flush(to: a) == .wouldBlock {
            received += drain(b)
            rounds += 1
            XCTAssertLessThan(rounds, 100_000)
            if rounds >= 100_000 { return }
        }
        received += drain(b)
        XCTAssertTrue(q.isEmpty)
        XCTAssertEqual(q.count, 0)
        XCTAssertEqual(received.count, payload.count)
        XCTAssertEqual(received, payload, "every byte, once, in order")
    }

    func testRewindMakesSentBytesDueAgain() {
        let (a, b) = socketPair(self)
        let q = OutputQueue()
        q.append("GET / HTTP/1.0\r\n\r\n")
        XCTAssertEqual(q.flush(to: a), .drained)
        XCTAssertTrue(q.isEmpty)
        XCTAssertEqual(text(q), "GET / HTTP/1.0\r\n\r\n", "sent bytes stay until the next append")
        q.rewind()
        XCTAssertEqual(q.count, 18)
        XCTAssertFalse(q.isEmpty)
        XCTAssertEqual(q.flush(to: a), .drained)
        XCTAssertEqual(String(decoding: drain(b), as: UTF8.self), "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n")

        // The next append after everything went starts over.
        q.append("x")
        XCTAssertEqual(text(q), "x")
        q.clear()
        XCTAssertTrue(q.isEmpty)
        XCTAssertEqual(q.bytes, [])
    }

    func testFlushToAClosedPeerFails() {
        let (a, b) = socketPair(self)
        close(b)
        let q = OutputQueue()
        q.append("late")
        XCTAssertEqual(q.flush(to: a), .failed, "EPIPE, without a SIGPIPE")
        XCTAssertEqual(q.count, 4, "nothing counted as sent")
    }

    func testPoolableOnlyWhenDrainedAndSmall() {
        let (a, b) = socketPair(self)
        let q = OutputQueue()
        XCTAssertTrue(q.poolable, "a new queue")
        q.append("small")
        XCTAssertFalse(q.poolable, "bytes still due")
        XCTAssertEqual(q.flush(to: a), .drained)
        XCTAssertTrue(q.poolable)
        _ = drain(b)

        // A large append grows the storage past what a response head needs.
        q.append([UInt8](repeating: 0x61, count: OutputQueue.poolableCapacity + 1))
        while q.flush(to: a) == .wouldBlock { _ = drain(b) }
        _ = drain(b)
        XCTAssertTrue(q.isEmpty)
        XCTAssertFalse(q.poolable, "drained, but its storage grew past \(OutputQueue.poolableCapacity)")
        q.append("y")   // storage under 64 kB is kept as it is
        while q.flush(to: a) == .wouldBlock { _ = drain(b) }
        XCTAssertFalse(q.poolable)

        // Past 64 kB the storage goes back to the allocator at the next append after a drain.
        q.append([UInt8](repeating: 0x62, count: 100_000))
        while q.flush(to: a) == .wouldBlock { _ = drain(b) }
        _ = drain(b)
        XCTAssertFalse(q.poolable)
        q.append("z")
        XCTAssertEqual(q.flush(to: a), .drained)
        XCTAssertTrue(q.poolable, "the large storage was given back and a small one made")
        XCTAssertEqual(String(decoding: drain(b), as: UTF8.self), "z")
    }

    func testOpenMovesWhatFollowsAlong() {
        let q = OutputQueue()
        q.append("abcdef")
        q.open(3, at: 2)
        XCTAssertEqual(q.count, 9)
        "XYZ".utf8.withContiguousStorageIfAvailable { q.overwrite(at: 2, UnsafeRawBufferPointer($0)) }
        XCTAssertEqual(String(decoding: q.bytes, as: UTF8.self), "abXYZcdef")
        // Past its storage: the queue grows and keeps every byte.
        let long = String(repeating: "x", count: 5000)
        q.append(long)
        q.open(2, at: 0)
        "<>".utf8.withContiguousStorageIfAvailable { q.overwrite(at: 0, UnsafeRawBufferPointer($0)) }
        XCTAssertEqual(String(decoding: q.bytes, as: UTF8.self), "<>abXYZcdef" + long)
    }
}

import XCTest
@testable import Core
#if canImport(Glibc)
import Glibc
#endif

/// ByteBuffer.receive on a real socket: what lands, when it reports the socket drained, how it grows and
/// where its caller's limit stops it.
final class ByteBufferTests: XCTestCase {
    private func text(_ b: ByteBuffer) -> String { b.withReadable { String(decoding: $0, as: UTF8.self) } }

    func testNoStorageUntilTheFirstReceive() {
        let b = ByteBuffer(capacity: 1024)
        XCTAssertEqual(b.capacity, 1024)
        XCTAssertEqual(b.storageCapacity, 0, "an idle connection's buffer costs no storage")
        XCTAssertTrue(b.isEmpty)
        XCTAssertEqual(ByteBuffer(capacity: 10).capacity, 64, "capacities below 64 are raised to 64")
    }

    func testReceivedBytesLandAndAShortReadReportsDrained() {
        let (a, b) = socketPair(self)
        sendAll(a, "hello, world")
        let buf = ByteBuffer(capacity: 1024)
        XCTAssertEqual(buf.receive(from: b, limit: 4096), 12)
        XCTAssertEqual(buf.readable, 12)
        XCTAssertFalse(buf.isEmpty)
        XCTAssertEqual(text(buf), "hello, world")
        XCTAssertEqual(buf.storageCapacity, 1024)
        XCTAssertTrue(buf.drained, "12 bytes into room for 1024: the socket had nothing more")

        // Nothing waiting: recv's -1 and EAGAIN come back as they are.
        XCTAssertEqual(buf.receive(from: b, limit: 4096), -1)
        XCTAssertEqual(errno, EAGAIN)
        XCTAssertFalse(buf.drained)
        XCTAssertEqual(text(buf), "hello, world", "a failed receive keeps what was there")

        // The peer's close is recv's 0, and a zero-byte read is a short one.
        close(a)
        XCTAssertEqual(buf.receive(from: b, limit: 4096), 0)
        XCTAssertTrue(buf.drained)
    }

    func testAFullReadIsNotDrained() {
        let (a, b) = socketPair(self)
        sendAll(a, [UInt8](repeating: 0x41, count: 100))
        let buf = ByteBuffer(capacity: 64)
        XCTAssertEqual(buf.receive(from: b, limit: 64), 64)
        XCTAssertFalse(buf.drained, "the read filled all the room it had: more may wait in the socket")
    }

    func testConsumeAdvancesAndAnEmptiedBufferStartsOver() {
        let (a, b) = socketPair(self)
        sendAll(a, "abcdef")
        let buf = ByteBuffer(capacity: 64)
        XCTAssertEqual(buf.receive(from: b, limit: 64), 6)
        buf.consume(2)
        XCTAssertEqual(buf.readable, 4)
        XCTAssertEqual(text(buf), "cdef")
        buf.consume(4)
        XCTAssertTrue(buf.isEmpty)
        XCTAssertEqual(buf.readable, 0)
        XCTAssertTrue(buf.poolable, "drained and at its first size")
        sendAll(a, "xyz")
        XCTAssertEqual(buf.receive(from: b, limit: 64), 3)
        XCTAssertEqual(text(buf), "xyz")
    }

    func testTheLimitReturnsMinusTwoWhenFull() {
        let (a, b) = socketPair(self)
        sendAll(a, [UInt8](repeating: 0x42, count: 64 + 10))
        let buf = ByteBuffer(capacity: 64)
        XCTAssertEqual(buf.receive(from: b, limit: 64), 64)
        XCTAssertEqual(buf.receive(from: b, limit: 64), -2, "the caller's limit is reached")
        XCTAssertEqual(buf.readable, 64)
        XCTAssertEqual(buf.storageCapacity, 64, "nothing grew past the limit")
        // The ten bytes past the limit are still in the socket.
        buf.consume(64)
        XCTAssertEqual(buf.receive(from: b, limit: 64), 10)
    }

    func testStorageGrowsUpToTheLimitAndNoFurther() {
        let (a, b) = socketPair(self)
        let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0) }
        sendAll(a, payload)
        let buf = ByteBuffer(capacity: 64)
        var total = 0
        while true {
            let n = buf.receive(from: b, limit: 200)
            if n <= 0 {
                XCTAssertEqual(n, -2)
                break
            }
            total += n
        }
        XCTAssertEqual(total, 200)
        XCTAssertEqual(buf.readable, 200)
        XCTAssertEqual(buf.storageCapacity, 200, "doubled from 64 and capped at the limit")
        XCTAssertEqual(buf.withReadable { Array($0) }, Array(payload[0..<200]))
        buf.consume(200)
        XCTAssertFalse(buf.poolable, "a buffer that grew is not worth pooling")
    }

    func testAFullBufferWithConsumedBytesMovesTheRestToTheFront() {
        let (a, b) = socketPair(self)
        let payload = (0..<74).map { UInt8($0) }
        sendAll(a, payload)
        let buf = ByteBuffer(capacity: 64)
        XCTAssertEqual(buf.receive(from: b, limit: 64), 64)
        buf.consume(10)
        XCTAssertEqual(buf.receive(from: b, limit: 64), 10, "the 54 unread bytes moved to make room for 10")
        XCTAssertEqual(buf.storageCapacity, 64, "compacted, not grown")
        XCTAssertEqual(buf.withReadable { Array($0) }, Array(payload[10..<74]))
    }

    func testUninitializedHasTheCountAsked() {
        XCTAssertEqual(ByteBuffer.uninitialized(4096).count, 4096)
        XCTAssertEqual(ByteBuffer.uninitialized(0).count, 0)
    }
}

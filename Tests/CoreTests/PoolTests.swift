import XCTest
@testable import Core
#if canImport(Glibc)
import Glibc
#endif

/// Pool, ArrayPool and a worker's BufferPools: what is kept, what is refused, what is handed out again.
final class PoolTests: XCTestCase {
    final class Thing {}

    func testPoolKeepsAtMostKeepAndHandsOutLastInFirstOut() {
        let pool = Pool<Thing>(keep: 2)
        XCTAssertNil(pool.take())
        let (x, y, z) = (Thing(), Thing(), Thing())
        pool.give(x)
        pool.give(y)
        pool.give(z)
        XCTAssertEqual(pool.count, 2, "the third is dropped")
        XCTAssertTrue(pool.take() === y)
        XCTAssertTrue(pool.take() === x)
        XCTAssertNil(pool.take())
        pool.give(z)
        pool.removeAll()
        XCTAssertEqual(pool.count, 0)
        XCTAssertNil(pool.take())
    }

    func testArrayPoolBoundsCountAndCapacity() {
        var pool = ArrayPool<Int>(keep: 2, maxCapacity: 64)
        XCTAssertEqual(pool.take(), [], "an empty pool hands out a new empty array")

        pool.give([])   // no storage: nothing worth keeping
        var big: [Int] = []
        big.reserveCapacity(1000)
        big.append(1)
        pool.give(big)   // over maxCapacity
        XCTAssertEqual(pool.take().capacity, 0, "neither was kept")

        var a = [1, 2, 3]
        a.reserveCapacity(8)
        let capacity = a.capacity
        XCTAssertLessThanOrEqual(capacity, 64)
        // Given up, not shared: emptying a shared array would copy it into storage of whatever size malloc rounds
        // to, and the test would measure the heap instead of the pool.
        pool.give(consume a)
        let taken = pool.take()
        XCTAssertEqual(taken, [], "taken empty")
        XCTAssertEqual(taken.capacity, capacity, "with its storage")

        for _ in 0..<3 {
            var s: [Int] = [7]
            s.reserveCapacity(4)
            pool.give(s)
        }
        XCTAssertGreaterThan(pool.take().capacity, 0)
        XCTAssertGreaterThan(pool.take().capacity, 0)
        XCTAssertEqual(pool.take().capacity, 0, "only two were kept")
    }

    /// A buffer that has received (so has its storage) and been consumed: what a connection gives back.
    private func usedInput(_ pools: BufferPools, capacity: Int, fd: (Int32, Int32)) -> ByteBuffer {
        let b = pools.takeInput(capacity: capacity)
        sendAll(fd.0, "GET / HTTP/1.1\r\n\r\n")
        XCTAssertEqual(b.receive(from: fd.1, limit: capacity), 18)
        b.consume(b.readable)
        return b
    }

    func testOneInputSizeIsPooledAndAnotherReplacesIt() {
        let fds = socketPair(self)
        let pools = BufferPools()
        let small = usedInput(pools, capacity: 1024, fd: fds)
        pools.giveInput(small)
        XCTAssertEqual(pools.pooled, 1)
        XCTAssertTrue(pools.takeInput(capacity: 1024) === small, "the same size comes back from the pool")
        XCTAssertEqual(pools.pooled, 0)
        pools.giveInput(small)

        let other = pools.takeInput(capacity: 2048)
        XCTAssertFalse(other === small, "another size is never served from the pool")
        XCTAssertEqual(other.capacity, 2048)
        XCTAssertEqual(pools.pooled, 1)
        XCTAssertEqual(other.receive(from: fds.1, limit: 2048), -1)   // storage made, nothing to read
        pools.giveInput(other)
        XCTAssertEqual(pools.pooled, 1, "the 2048 size replaced the 1024 ones")
        XCTAssertTrue(pools.takeInput(capacity: 2048) === other)
        XCTAssertFalse(pools.takeInput(capacity: 1024) === small, "the 1024 buffer was dropped")
    }

    func testInputsThatAreNotPoolableAreDropped() {
        let fds = socketPair(self)
        let pools = BufferPools()
        let unread = pools.takeInput(capacity: 1024)
        sendAll(fds.0, "partial")
        XCTAssertEqual(unread.receive(from: fds.1, limit: 1024), 7)
        pools.giveInput(unread)
        XCTAssertEqual(pools.pooled, 0, "it still holds unread bytes")

        let grown = pools.takeInput(capacity: 64)
        sendAll(fds.0, [UInt8](repeating: 0x41, count: 100))
        while grown.receive(from: fds.1, limit: 1000) > 0 {}
        XCTAssertGreaterThan(grown.storageCapacity, 64)
        grown.consume(grown.readable)
        pools.giveInput(grown)
        XCTAssertEqual(pools.pooled, 0, "it grew for an oversized head")

        let fresh = pools.takeInput(capacity: 1024)
        pools.giveInput(fresh)
        XCTAssertEqual(pools.pooled, 0, "never received into: it has no storage of its first size")
    }

    func testOutputsArePooledUnlessTheyGrew() throws {
        let fds = socketPair(self)
        let pools = BufferPools()
        let q = pools.takeOutput()
        q.append("HTTP/1.1 200 OK\r\n\r\n")
        pools.giveOutput(q)
        XCTAssertEqual(pools.pooled, 0, "bytes still due")
        XCTAssertEqual(q.flush(to: fds.0), .drained)
        pools.giveOutput(q)
        XCTAssertEqual(pools.pooled, 1)
        XCTAssertTrue(pools.takeOutput() === q)

        let big = pools.takeOutput()
        XCTAssertFalse(big === q)
        big.append([UInt8](repeating: 0, count: 20_000))
        while big.flush(to: fds.0) == .wouldBlock { _ = drain(fds.1) }
        pools.giveOutput(big)
        XCTAssertEqual(pools.pooled, 0, "a queue that grew past \(OutputQueue.poolableCapacity) goes back to the allocator")
    }

    func testResponsesThatGrewAreNotKept() {
        let fds = socketPair(self)
        let pools = BufferPools()
        let r = pools.takeResponse()
        XCTAssertEqual(r.capacity, BufferPools.responseCapacity)
        sendAll(fds.0, "HTTP/1.1 200 OK\r\n")
        XCTAssertGreaterThan(r.receive(from: fds.1, limit: 65536), 0)
        pools.giveResponse(r)   // with unread bytes: emptied on the way in
        let again = pools.takeResponse()
        XCTAssertTrue(again === r)
        XCTAssertTrue(again.isEmpty, "given back emptied")

        sendAll(fds.0, [UInt8](repeating: 0x42, count: 40_000))
        while again.receive(from: fds.1, limit: 65536) > 0 {}
        XCTAssertGreaterThan(again.storageCapacity, BufferPools.responseCapacity)
        pools.giveResponse(again)
        XCTAssertFalse(pools.takeResponse() === again, "one that grew for an oversized head is not kept")
    }

    func testHeldIsTheConnectionsCount() {
        let pools = BufferPools()
        XCTAssertEqual(pools.held, 0)
        pools.held += 2
        XCTAssertEqual(pools.held, 2)
        XCTAssertEqual(pools.pooled, 0, "held and pooled are counted apart")
    }
}

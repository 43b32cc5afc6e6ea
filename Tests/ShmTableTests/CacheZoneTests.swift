import Glibc
import XCTest
@testable import ShmTable

/// The cache keys zone: uses, the fill lock and its age, stored files and errors, and the manager's expiry by
/// inactivity, size and free space.
final class CacheZoneTests: XCTestCase {
    private func zone(size: Int = 64 * 1024) -> CacheZone { CacheZone(name: "c", size: size, path: "/tmp/c")! }
    private func key(_ n: UInt64) -> CacheDigest { CacheDigest(hi: n &* 0x9E37_79B9_7F4A_7C15, lo: n) }

    func testUsesAndTheFillLock() {
        let z = zone()
        XCTAssertEqual(z.use(key(1), now: 100, nowMs: 0, lockAge: 5000), CacheZone.Entry(exists: false, validUntil: 0, uses: 1, filling: false))
        XCTAssertEqual(z.use(key(1), now: 100, nowMs: 0, lockAge: 5000)?.uses, 2)
        XCTAssertTrue(z.lock(key(1), nowMs: 1000, lockAge: 5000))
        XCTAssertFalse(z.lock(key(1), nowMs: 2000, lockAge: 5000), "held")
        XCTAssertEqual(z.use(key(1), now: 100, nowMs: 2000, lockAge: 5000)?.filling, true)
        XCTAssertTrue(z.lock(key(1), nowMs: 6001, lockAge: 5000), "older than the lock age: taken over")
        z.stored(key(1), validUntil: 160, blocks: 8, now: 101)
        let e = z.use(key(1), now: 102, nowMs: 6100, lockAge: 5000)
        XCTAssertEqual(e?.exists, true)
        XCTAssertEqual(e?.validUntil, 160)
        XCTAssertEqual(e?.filling, false, "storing lets go of the lock")
        XCTAssertEqual(z.usage.keys, 1)
        XCTAssertEqual(z.usage.bytes, 4096)
        z.storedError(key(1), status: 404, validUntil: 170)
        XCTAssertEqual(z.use(key(1), now: 103, nowMs: 6200, lockAge: 5000)?.error, 404)
        z.stored(key(1), validUntil: 180, blocks: 8, now: 104)
        XCTAssertEqual(z.use(key(1), now: 105, nowMs: 6300, lockAge: 5000)?.error, 0, "a stored response replaces a cached error")
        z.lost(key(1))
        XCTAssertEqual(z.use(key(1), now: 106, nowMs: 6400, lockAge: 5000)?.exists, false)
        XCTAssertEqual(z.usage.bytes, 0)
    }

    func testExpiryByInactivitySizeAndSpace() {
        let z = zone()
        for n in 1...5 {
            _ = z.use(key(UInt64(n)), now: 100 + n, nowMs: 0, lockAge: 5000)
            z.stored(key(UInt64(n)), validUntil: 1000, blocks: 8, now: 100 + n)
        }
        XCTAssertEqual(z.expire(now: 104, inactive: 100, maxBlocks: nil, limit: 100), [], "none idle")
        XCTAssertEqual(z.secondsToNextExpiry(now: 150, inactive: 100), 10, "at most 10 s")
        XCTAssertEqual(z.secondsToNextExpiry(now: 198, inactive: 100), 3)
        XCTAssertEqual(z.expire(now: 203, inactive: 100, maxBlocks: nil, limit: 2), [key(1), key(2)], "least recently used first, manager_files at a time")
        XCTAssertEqual(z.expire(now: 203, inactive: 100, maxBlocks: nil, limit: 100), [key(3)])
        XCTAssertEqual(z.expire(now: 203, inactive: 100, maxBlocks: 8, limit: 100), [key(4)], "down to max_size")
        XCTAssertEqual(z.expire(now: 203, inactive: 100, maxBlocks: nil, limit: 100), [], "no max_size")
        XCTAssertTrue(z.lock(key(5), nowMs: 0, lockAge: 5000))
        XCTAssertEqual(z.expire(now: 203, inactive: 100, maxBlocks: nil, short: true, limit: 100), [], "a key being filled stays")
        z.unlock(key(5))
        XCTAssertEqual(z.expire(now: 203, inactive: 100, maxBlocks: nil, short: true, limit: 100), [key(5)], "short of space: whatever its age")
        XCTAssertEqual(z.usage.keys, 0)
    }

    func testAFullZoneGivesUpItsLeastRecentlyUsedKeyAndKeepsAWatermark() {
        let z = zone(size: 8192)
        XCTAssertEqual(z.capacity, (8192 - 128 - 64) / 132)
        for n in 0..<UInt64(z.capacity) {
            XCTAssertNotNil(z.use(key(n), now: 1, nowMs: 0, lockAge: 5000))
            z.stored(key(n), validUntil: 100, blocks: 8, now: 1)
        }
        XCTAssertEqual(z.expire(now: 2, inactive: 600, maxBlocks: nil, limit: 100), [], "full, but never past full yet")
        XCTAssertNotNil(z.use(key(999), now: 2, nowMs: 0, lockAge: 5000))
        XCTAssertEqual(z.takeEvicted(), [key(0)], "its file is the caller's to delete")
        XCTAssertEqual(z.takeEvicted(), [])
        XCTAssertEqual(z.use(key(0), now: 3, nowMs: 0, lockAge: 5000)?.uses, 1, "the oldest key went to make room")
        let capacity = z.capacity
        let gone = z.expire(now: 4, inactive: 600, maxBlocks: nil, limit: 100)
        XCTAssertEqual(gone.count, capacity / 8 + 1, "the manager brings it under seven eighths of what it held")
        XCTAssertEqual(z.usage.keys, capacity - capacity / 8 - 1)
    }

    func testOneManagerAtATime() {
        let z = zone()
        XCTAssertTrue(z.claimManaging(pid: getpid()))
        XCTAssertTrue(z.claimManaging(pid: getpid()), "still its own")
        XCTAssertFalse(z.claimManaging(pid: 1), "another live process's")
    }

    func testLoadingIsClaimedOnce() {
        let z = zone()
        XCTAssertTrue(z.claimLoading(pid: getpid()))
        XCTAssertFalse(z.claimLoading(pid: getpid() + 1), "another live process claimed it")
        z.load(key(7), validUntil: 50, blocks: 16, lastUse: 10)
        z.finishLoading()
        XCTAssertFalse(z.claimLoading(pid: getpid()))
        XCTAssertEqual(z.use(key(7), now: 11, nowMs: 0, lockAge: 5000)?.exists, true)
        XCTAssertEqual(z.usage.bytes, 8192)
    }
}

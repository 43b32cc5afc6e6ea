import XCTest
@testable import Event

/// The loop's timers: order, cancellation that leaves nothing behind, and re-arming without allocation.
final class TimerTests: XCTestCase {
    func testTimersFireInDeadlineOrderAndCancelledOnesNever() throws {
        let loop = try EventLoop()
        var fired: [Int] = []
        loop.schedule(after: 30) { fired.append(3) }
        loop.schedule(after: 10) { fired.append(1) }
        let cancelled = loop.schedule(after: 15) { fired.append(99) }
        loop.schedule(after: 20) { fired.append(2) }
        loop.schedule(after: 40) { loop.stop() }
        cancelled.cancel()
        XCTAssertFalse(cancelled.isArmed)
        loop.run()
        XCTAssertEqual(fired, [1, 2, 3])
    }

    func testRearmMovesTheDeadlineBothWays() throws {
        let loop = try EventLoop()
        var fired: [String] = []
        let t = loop.makeTimer()
        XCTAssertFalse(t.isArmed)
        t.rearm(after: 50) { fired.append("late") }
        t.rearm(after: 5) { fired.append("early") }   // earlier: replaces the action too
        loop.schedule(after: 20) {
            t.rearm(after: 10) { fired.append("again") }   // re-armed after firing
        }
        loop.schedule(after: 60) { loop.stop() }
        loop.run()
        XCTAssertEqual(fired, ["early", "again"])
    }

    /// A connection re-arming its timeout thousands of times keeps one heap entry, not thousands.
    func testRearmingDoesNotGrowTheHeap() throws {
        let loop = try EventLoop()
        let timers = (0..<100).map { _ in loop.makeTimer() }
        for round in 0..<1000 {
            for (i, t) in timers.enumerated() { t.rearm(after: UInt64(60_000 + (round * 7 + i) % 500)) {} }
        }
        XCTAssertEqual(loop.pendingTimers, 100)
        for t in timers.prefix(40) { t.cancel() }
        XCTAssertEqual(loop.pendingTimers, 60)
    }
}

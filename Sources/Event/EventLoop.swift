#if canImport(Glibc)
import Glibc
#endif
import CShim
import Core

/// Something that wants readiness events for one file descriptor.
public protocol EventHandler: AnyObject {
    func handleEvent(_ events: UInt32)
}

public enum Events {
    public static let readable: UInt32 = 0x001
    public static let writable: UInt32 = 0x004
    public static let error: UInt32 = 0x008
    public static let hangup: UInt32 = 0x010
    public static let readHangup: UInt32 = 0x2000
    public static let exclusive: UInt32 = 1 << 28
    public static let edgeTriggered: UInt32 = 1 << 31
}

/// One epoll loop per worker: fd handlers indexed by fd (no hashing on the hot path) and a timer heap.
public final class EventLoop {
    private let epfd: Int32
    private var handlers: [EventHandler?] = []
    fileprivate var timers = TimerHeap()
    private var running = false
    /// How late a timer may fire so that timers due close together share one wake-up (nginx's
    /// `timer_resolution`); 0 wakes for each deadline. Readiness events are never delayed by it.
    public var timerSlackMs: UInt64 = 0
    /// Monotonic microseconds, refreshed once per loop iteration (nginx's cached clock): the request path
    /// times requests and upstream attempts with it instead of reading the clock for each.
    public private(set) var nowUs: UInt64 = vigil_monotonic_us()
    /// The same clock in milliseconds (`vigil_monotonic_ms`'s scale), for timers.
    public var now: UInt64 { nowUs / 1000 }

    public init() throws {
        epfd = vigil_epoll_create()
        guard epfd >= 0 else { throw SystemError("epoll_create1()") }
    }

    deinit {
        timers.removeAll()
        Glibc.close(epfd)
    }

    public func register(fd: Int32, events: UInt32, handler: EventHandler) throws {
        if Int(fd) >= handlers.count { handlers += Array(repeating: nil, count: Int(fd) + 64 - handlers.count) }
        handlers[Int(fd)] = handler
        guard vigil_epoll_ctl(epfd, 1, fd, events, UInt64(fd)) == 0 else {
            handlers[Int(fd)] = nil
            throw SystemError("epoll_ctl(ADD, \(fd))")
        }
    }

    /// Hands a registered fd to another handler without a system call (edge-triggered fds keep their mask).
    public func setHandler(fd: Int32, _ handler: EventHandler) {
        handlers[Int(fd)] = handler
    }

    public func modify(fd: Int32, events: UInt32) throws {
        guard vigil_epoll_ctl(epfd, 3, fd, events, UInt64(fd)) == 0 else {
            throw SystemError("epoll_ctl(MOD, \(fd))")
        }
    }

    /// Stops watching `fd` that stays open.
    public func unregister(fd: Int32) {
        _ = vigil_epoll_ctl(epfd, 2, fd, 0, 0)
        forget(fd: fd)
    }

    /// Closes `fd`. Closing the last descriptor of a socket takes it out of the epoll set, so unlike
    /// `unregister` + `close` this costs one system call, not two (nginx relies on the same rule). Only for
    /// descriptors this process created and never shared (accepted or connected sockets).
    public func close(fd: Int32) {
        forget(fd: fd)
        Glibc.close(fd)
    }

    private func forget(fd: Int32) {
        if Int(fd) < handlers.count { handlers[Int(fd)] = nil }
    }

    @discardableResult
    public func schedule(after ms: UInt64, _ action: @escaping () -> Void) -> Timer {
        let t = Timer(deadline: now + ms, action: action, loop: self)
        timers.push(t)
        return t
    }

    /// Armed timers (for tests and diagnostics).
    public var pendingTimers: Int { timers.count }

    /// An unarmed timer for an object that re-arms one timeout over and over (a connection).
    public func makeTimer(_ action: @escaping () -> Void = {}) -> Timer { Timer(deadline: 0, action: action, loop: self) }

    public func stop() { running = false }

    public func run() {
        running = true
        var events = [UInt32](repeating: 0, count: 256)
        var data = [UInt64](repeating: 0, count: 256)
        while running && turn(waitingAtMost: nil, &events, &data) {}
    }

    /// One turn of the loop, as `run` makes them, waiting at most `ms` for an event: how a test drives a
    /// connection in process (as swift-nio's embedded loop does) without a thread of its own.
    public func runOnce(waitingAtMost ms: UInt64) {
        var events = [UInt32](repeating: 0, count: 64)
        var data = [UInt64](repeating: 0, count: 64)
        _ = turn(waitingAtMost: ms, &events, &data)
    }

    /// Due timers, then one epoll_wait and its handlers; false when epoll_wait fails for good.
    @inline(__always)
    private func turn(waitingAtMost limit: UInt64?, _ events: inout [UInt32], _ data: inout [UInt64]) -> Bool {
        nowUs = vigil_monotonic_us()
        runDueTimers()
        if limit == nil && !running { return true }   // a timer stopped the loop
        var timeout: Int32 = limit.map { Int32(min($0, 60_000)) } ?? -1
        if let next = timers.nextDeadline {
            let due = next <= now ? 0 : min(max(next - now, timerSlackMs), 60_000)
            timeout = timeout < 0 ? Int32(due) : min(timeout, Int32(due))
        }
        // epoll hands out a level-triggered fd and puts it back at the end of its ready list at once: taken all
        // together, an fd that becomes ready just after the wait comes after every fd of this batch in the
        // next one too, and waits two batches (under load, one client in sixteen did). Taken a few at a time,
        // fds go in the order they became ready; the timers (and the sends they batch) still run once per
        // turn, when nothing more is ready or `events.count` events were handled.
        var handled = 0
        repeat {
            let n = vigil_epoll_wait(epfd, &events, &data, Int32(min(EventLoop.batch, events.count - handled)), timeout)
            if n < 0 { return errno == EINTR }
            nowUs = vigil_monotonic_us()
            for i in 0..<Int(n) {
                let fd = Int(data[i])
                if fd < handlers.count, let h = handlers[fd] { h.handleEvent(events[i]) }
            }
            if Int(n) < EventLoop.batch { break }
            handled += Int(n)
            timeout = 0
        } while handled < events.count
        return true
    }

    private static let batch = 8

    private func runDueTimers() {
        while let t = timers.popDue(now: now) { t.action() }
    }
}

/// A one-shot timer that can be re-armed without allocating. It sits in its loop's heap only while armed:
/// `cancel()` takes it out at once, so a busy connection re-arming its timeout leaves no garbage behind.
public final class Timer {
    fileprivate(set) var deadline: UInt64
    fileprivate var action: () -> Void
    /// Position in the heap, or -1 when not armed.
    fileprivate var heapIndex = -1
    /// Not weak, not even checked: a weak or unowned load on every re-arm showed in profiles, and a loop
    /// outlives its timers (their owners cancel them before the loop goes).
    fileprivate unowned(unsafe) let loop: EventLoop

    init(deadline: UInt64, action: @escaping () -> Void, loop: EventLoop) {
        self.deadline = deadline
        self.action = action
        self.loop = loop
    }

    public var isArmed: Bool { heapIndex >= 0 }

    /// What it will do when it fires, set without arming it: an owner can keep its timer in a `let` (a `var`
    /// is loaded, retained and released around every re-arm) and still hand it a closure that captures itself.
    public func setAction(_ action: @escaping () -> Void) { self.action = action }

    public func cancel() {
        if heapIndex >= 0 { withLoop { $0.timers.remove(self) } }
    }

    /// Fires `action` after `ms`, replacing whatever it was armed for.
    public func rearm(after ms: UInt64, _ action: @escaping () -> Void) {
        self.action = action
        rearm(after: ms)
    }

    /// Fires the action it already has after `ms`: no closure to allocate.
    public func rearm(after ms: UInt64) {
        withLoop { $0.timers.update(self, deadline: $0.now + ms) }
    }

    /// Fires at `deadline` on the loop's clock (`vigil_monotonic_ms`), or on the next wake-up if it has passed.
    public func rearm(at deadline: UInt64) {
        withLoop { $0.timers.update(self, deadline: deadline) }
    }

    /// The loop borrowed, not retained: a strong load of `loop` around the heap's update cost a retain and a
    /// release on every re-arm, several a request.
    private func withLoop(_ body: (EventLoop) -> Void) {
        Unmanaged.passUnretained(loop)._withUnsafeGuaranteedRef(body)
    }
}

/// A binary min-heap of timers that knows each timer's position (removal and re-arming in O(log n)).
/// Deadlines sit in the heap array itself, so sifting compares contiguous memory instead of chasing
/// each timer object.
struct TimerHeap {
    /// The heap holds one reference to each armed timer (a fire-and-forget timer has no other owner), kept as
    /// Unmanaged so that sifting, which touches a dozen entries per re-arm, neither retains nor releases.
    private struct Entry {
        var deadline: UInt64
        let timer: Unmanaged<Timer>
    }
    private var heap: [Entry] = []

    var nextDeadline: UInt64? { heap.first?.deadline }

    /// Drops every armed timer (the loop is going away).
    mutating func removeAll() {
        let entries = heap
        heap = []   // before any release: a timer's owner going away must find the heap consistent
        for e in entries { e.timer._withUnsafeGuaranteedRef { $0.heapIndex = -1 } }
        for e in entries { e.timer.release() }
    }
    var count: Int { heap.count }

    mutating func push(_ t: Timer) {
        t.heapIndex = heap.count
        heap.append(Entry(deadline: t.deadline, timer: .passRetained(t)))
        siftUp(heap.count - 1)
    }

    mutating func update(_ t: Timer, deadline: UInt64) {
        let earlier = deadline < t.deadline
        t.deadline = deadline
        let i = t.heapIndex
        guard i >= 0 else { return push(t) }
        heap[i].deadline = deadline
        if earlier { siftUp(i) } else { siftDown(i) }
    }

    mutating func remove(_ t: Timer) {
        let i = t.heapIndex
        guard i >= 0 && i < heap.count && heap[i].timer.toOpaque() == Unmanaged.passUnretained(t).toOpaque() else { return }
        let last = heap.count - 1
        if i != last { swapAt(i, last) }
        heap.removeLast().timer.release()
        t.heapIndex = -1
        if i < heap.count {
            siftDown(i)
            siftUp(i)
        }
    }

    mutating func popDue(now: UInt64) -> Timer? {
        guard let top = heap.first, top.deadline <= now else { return nil }
        let t = top.timer.takeUnretainedValue()
        remove(t)
        return t
    }

    /// Swapping moves the references without retaining them (plain assignment would retain and release).
    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        heap[a].timer._withUnsafeGuaranteedRef { $0.heapIndex = a }
        heap[b].timer._withUnsafeGuaranteedRef { $0.heapIndex = b }
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].deadline < heap[parent].deadline else { break }
            swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        let n = heap.count
        var i = start
        while true {
            let l = 2 * i + 1
            guard l < n else { return }
            let r = l + 1
            let m = r < n && heap[r].deadline < heap[l].deadline ? r : l
            guard heap[m].deadline < heap[i].deadline else { return }
            swapAt(i, m)
            i = m
        }
    }
}

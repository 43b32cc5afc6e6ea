#if canImport(Glibc)
import Glibc
#endif
import CShim

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
    private var timers = TimerHeap()
    private var running = false
    /// Monotonic milliseconds, refreshed once per loop iteration (nginx's cached clock).
    public private(set) var now: UInt64 = vigil_monotonic_ms()

    public init() throws {
        epfd = vigil_epoll_create()
        guard epfd >= 0 else { throw SystemError("epoll_create1()") }
    }

    deinit { close(epfd) }

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

    /// Stops watching `fd` (call before closing it).
    public func unregister(fd: Int32) {
        _ = vigil_epoll_ctl(epfd, 2, fd, 0, 0)
        if Int(fd) < handlers.count { handlers[Int(fd)] = nil }
    }

    @discardableResult
    public func schedule(after ms: UInt64, _ action: @escaping () -> Void) -> Timer {
        let t = Timer(deadline: now + ms, action: action)
        timers.push(t)
        return t
    }

    public func stop() { running = false }

    public func run() {
        running = true
        var events = [UInt32](repeating: 0, count: 256)
        var data = [UInt64](repeating: 0, count: 256)
        while running {
            now = vigil_monotonic_ms()
            runDueTimers()
            guard running else { break }
            var timeout: Int32 = -1
            if let next = timers.nextDeadline {
                timeout = next <= now ? 0 : Int32(min(next - now, 60_000))
            }
            let n = vigil_epoll_wait(epfd, &events, &data, 256, timeout)
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            now = vigil_monotonic_ms()
            for i in 0..<Int(n) {
                let fd = Int(data[i])
                if fd < handlers.count, let h = handlers[fd] { h.handleEvent(events[i]) }
            }
        }
    }

    private func runDueTimers() {
        while let t = timers.popDue(now: now) { t.action() }
    }
}

/// A one-shot timer; `cancel()` makes it a no-op (it is dropped lazily from the heap).
public final class Timer {
    let deadline: UInt64
    fileprivate var action: () -> Void
    public private(set) var cancelled = false
    init(deadline: UInt64, action: @escaping () -> Void) { self.deadline = deadline; self.action = action }
    public func cancel() { cancelled = true; action = {} }
}

struct TimerHeap {
    private var heap: [Timer] = []

    var nextDeadline: UInt64? {
        mutating get {
            while let top = heap.first, top.cancelled { _ = pop() }
            return heap.first?.deadline
        }
    }

    mutating func push(_ t: Timer) {
        heap.append(t)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].deadline < heap[parent].deadline else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func popDue(now: UInt64) -> Timer? {
        while let top = heap.first {
            if top.cancelled { _ = pop(); continue }
            return top.deadline <= now ? pop() : nil
        }
        return nil
    }

    private mutating func pop() -> Timer {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l].deadline < heap[m].deadline { m = l }
                if r < heap.count && heap[r].deadline < heap[m].deadline { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// A failed system call, worded like nginx: `bind() to 127.0.0.1:80 failed (98: Address already in use)`.
public struct SystemError: Error, CustomStringConvertible {
    public let call: String
    public let errno: Int32
    public init(_ call: String, errno e: Int32 = Glibc.errno) { self.call = call; self.errno = e }
    public var description: String { "\(call) failed (\(errno): \(String(cString: strerror(errno))))" }
}

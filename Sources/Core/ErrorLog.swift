#if canImport(Glibc)
import Glibc
#endif
import CShim

/// nginx's error log: `2026/11/23 13:24:14 [notice] 1234#1234: message`, one write(2) per line (O_APPEND),
/// so lines from the master and every worker interleave whole.
public final class ErrorLog {
    struct Sink {
        let path: String
        let fd: Int32
        let level: LogLevel
    }

    private var sinks: [Sink] = []
    /// The checker thread logs too; reopening (USR1) must not race with its writes.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
    }

    /// Opens every target; the first failure is returned worded like nginx (`open() "..." failed (13: ...)`).
    public func open(_ targets: [ErrorLogTarget]) throws {
        var opened: [Sink] = []
        for t in targets {
            if t.path == "stderr" {
                opened.append(Sink(path: t.path, fd: 2, level: t.level))
                continue
            }
            do {
                opened.append(Sink(path: t.path, fd: try LogFile.open(t.path), level: t.level))
            } catch {
                for s in opened where s.fd != 2 { close(s.fd) }
                throw error
            }
        }
        pthread_mutex_lock(mutex)
        let old = sinks
        sinks = opened
        pthread_mutex_unlock(mutex)
        for s in old where s.fd != 2 { close(s.fd) }
    }

    /// `-s reopen`: reopen the same files (after logrotate moved them). One that cannot be opened keeps its old
    /// descriptor, and says so there.
    public func reopen() {
        do { try open(sinks.map { ErrorLogTarget(path: $0.path, level: $0.level) }) } catch { alert("\(error)") }
    }

    /// The files (not stderr) the log writes to, for the master to hand over to the workers' user.
    public var filePaths: [String] { sinks.filter { $0.fd != 2 }.map(\.path) }

    /// The fd of the first file target, which becomes the daemon's stderr as in nginx.
    public var firstFileDescriptor: Int32? { sinks.first(where: { $0.fd != 2 })?.fd }
    public var writesToStderr: Bool { sinks.contains { $0.fd == 2 } }

    public func enabled(_ level: LogLevel) -> Bool { sinks.contains { level <= $0.level } }

    public func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
        guard enabled(level) else { return }
        let pid = getpid()
        let line = "\(Clock.errorLogTime()) [\(level.name)] \(pid)#\(vigil_gettid()): \(message())\n"
        pthread_mutex_lock(mutex)
        for s in sinks where level <= s.level { writeAll(s.fd, line) }
        pthread_mutex_unlock(mutex)
    }

    public func emerg(_ m: @autoclosure () -> String) { log(.emerg, m()) }
    public func alert(_ m: @autoclosure () -> String) { log(.alert, m()) }
    public func error(_ m: @autoclosure () -> String) { log(.error, m()) }
    public func warn(_ m: @autoclosure () -> String) { log(.warn, m()) }
    public func notice(_ m: @autoclosure () -> String) { log(.notice, m()) }
    public func info(_ m: @autoclosure () -> String) { log(.info, m()) }
    public func debug(_ m: @autoclosure () -> String) { log(.debug, m()) }
}

/// Writes all of `s`, retrying short writes and EINTR; a full disk loses the line, never the process.
/// Returns 0, or the errno of the write that failed.
@discardableResult
public func writeAll(_ fd: Int32, _ s: String) -> Int32 {
    var s = s
    return s.withUTF8 { writeAll(fd, UnsafeRawBufferPointer($0)) }
}

/// Writes all of `bytes`, retrying short writes and EINTR; 0, or the errno of the write that failed.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
    var off = 0
    while off < bytes.count {
        let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        off += n
    }
    return 0
}

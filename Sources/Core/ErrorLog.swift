#if canImport(Glibc)
import Glibc
#endif
import CShim

/// nginx's error log: `2026/11/23 13:24:14 [notice] 1234#1234: message`, one write(2) per line (O_APPEND),
/// so lines from the master and every worker interleave whole.
public final class ErrorLog {
    struct Sink {
        let target: ErrorLogTarget
        /// -1 for a syslog server.
        let fd: Int32
        let syslog: SyslogPeer?
    }

    private var sinks: [Sink] = []
    /// The checker thread logs too; reopening (USR1) must not race with its writes.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    /// Where a syslog server's failures are told: the main error log, as nginx tells them to its cycle's log
    /// (nil: this one, the main log itself).
    private let failureLog: ErrorLog?

    public init(failuresTo main: ErrorLog? = nil) {
        failureLog = main
        pthread_mutex_init(mutex, nil)
    }

    /// Opens every file target; the first failure is returned worded like nginx (`open() "..." failed (13: ...)`).
    /// A syslog server's socket is made when the first line goes to it.
    public func open(_ targets: [ErrorLogTarget]) throws {
        try open(targets.map { ($0, $0.syslog.map(SyslogPeer.init)) })
    }

    private func open(_ targets: [(ErrorLogTarget, SyslogPeer?)]) throws {
        var opened: [Sink] = []
        for (t, peer) in targets {
            if let peer {
                opened.append(Sink(target: t, fd: -1, syslog: peer))
                continue
            }
            if t.path == "stderr" {
                opened.append(Sink(target: t, fd: 2, syslog: nil))
                continue
            }
            do {
                opened.append(Sink(target: t, fd: try LogFile.open(t.path), syslog: nil))
            } catch {
                for s in opened where s.target.isFile { close(s.fd) }
                throw error
            }
        }
        pthread_mutex_lock(mutex)
        let old = sinks
        sinks = opened
        pthread_mutex_unlock(mutex)
        for s in old where s.target.isFile { close(s.fd) }
    }

    /// `-s reopen`: reopen the same files (after logrotate moved them). One that cannot be opened keeps its old
    /// descriptor, and says so there. Syslog sockets stay as they are, as nginx's do.
    public func reopen() {
        do { try open(sinks.map { ($0.target, $0.syslog) }) } catch { alert("\(error)") }
    }

    /// The files (not stderr, not syslog) the log writes to, for the master to hand over to the workers' user.
    public var filePaths: [String] { sinks.filter(\.target.isFile).map(\.target.path) }

    /// The fd of the first file target, which becomes the daemon's stderr as in nginx.
    public var firstFileDescriptor: Int32? { sinks.first(where: \.target.isFile)?.fd }
    public var writesToStderr: Bool { sinks.contains { $0.fd == 2 } }

    public func enabled(_ level: LogLevel) -> Bool { sinks.contains { level <= $0.target.level } }

    /// A syslog server gets the same line without its newline, after syslog's header, at the line's level as
    /// its severity (nginx's ngx_syslog_writer). A send that fails is reported to the main log (to each of its
    /// targets, the failing one too: its peer reports at most once a minute, which also ends the recursion).
    /// `forced`: every target takes the line whatever its level (debug_connection's clients).
    public func log(_ level: LogLevel, forced: Bool = false, _ message: @autoclosure () -> String) {
        guard forced || enabled(level) else { return }
        let pid = getpid()
        let line = "\(Clock.errorLogTime()) [\(level.name)] \(pid)#\(vigil_gettid()): \(message())\n"
        var failure: SystemError?
        pthread_mutex_lock(mutex)
        for s in sinks where forced || level <= s.target.level {
            guard let peer = s.syslog else {
                writeAll(s.fd, line)
                continue
            }
            var datagram = ""
            peer.appendHeader(to: &datagram, severity: level.rawValue - 1)
            datagram += line.dropLast()
            failure = peer.send(&datagram) ?? failure
        }
        pthread_mutex_unlock(mutex)
        if let failure, let l = SyslogPeer.level(of: failure) { (failureLog ?? self).log(l, "\(failure)") }
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

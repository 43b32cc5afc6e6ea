#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// Open access log files, shared by every location that names the same path; reopened on USR1.
public final class AccessLogFiles {
    private var fds: [String: Int32] = [:]
    private let formats: [String: LogFormat]
    let log: ErrorLog

    init(config: Configuration, log: ErrorLog) {
        self.log = log
        formats = config.http?.logFormats ?? [:]
    }

    /// The request's lines, one per `access_log` of its location (unless its `if=` is empty or "0").
    func write(_ r: RequestContext) {
        for target in r.settings.log.accessLogs {
            if let c = target.condition {
                let v = c.render(r)
                if v.isEmpty || v == "0" { continue }
            }
            guard let format = formats[target.format], let fd = fd(for: target.path) else { continue }
            let e = writeAll(fd, format.template.logLine(r, escape: format.escape))
            if e != 0 { writeFailed(target.path, errno: e, context: r.logContext) }
        }
    }

    func fd(for path: String) -> Int32? {
        if let fd = fds[path] { return fd }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            log.alert("open() \"\(path)\" failed (\(Errno.text(errno)))")
            return nil
        }
        fds[path] = fd
        return fd
    }

    func reopen() {
        for (_, fd) in fds { close(fd) }
        fds.removeAll()
    }

    /// When each file's last write failure was logged.
    private var failureLogged: [String: time_t] = [:]

    /// A line that could not be written (ENOSPC on a full disk) is lost; the failure is logged as nginx does, at
    /// [alert] and at most once a minute per file, so that a full disk, which often holds the error log too,
    /// does not cost one more error line per request.
    func writeFailed(_ path: String, errno e: Int32, context: @autoclosure () -> String) {
        let now = time(nil)
        if let last = failureLogged[path], now - last < 60 { return }
        failureLogged[path] = now
        log.alert("write() to \"\(path)\" failed (\(Errno.text(e))) while logging request\(context())")
    }
}

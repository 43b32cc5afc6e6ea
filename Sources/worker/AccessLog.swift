#if canImport(Glibc)
import Glibc
#endif
import Config
import Script

/// A `log_format` compiled once: literal runs and variable names, evaluated per request.
struct CompiledLogFormat {
    enum Part { case literal(String), variable(Variable) }
    let parts: [Part]
    let escape: String

    /// `table` names the configuration's own variables (`set`, `map`) the format may use. The text is split
    /// as every template is (Script's `Template`), so `$name`, `${name}` and `$1` read the same everywhere.
    init(_ format: LogFormat, table: VariableTable?) {
        escape = format.escape
        parts = Template(format.template).segments(table ?? VariableTable()).map { segment in
            switch segment {
            case .literal(let s): return .literal(s)
            case .variable(let v): return .variable(v)
            }
        }
    }

    func render(_ value: (Variable) -> String?) -> String {
        var out = ""
        for p in parts {
            switch p {
            case .literal(let s): out += s
            case .variable(let variable):
                let v = value(variable)
                out += escape == "json" ? JSONText.escape(v ?? "") : CompiledLogFormat.defaultEscape(v ?? "-", escape: escape != "none")
            }
        }
        return out + "\n"
    }

    /// nginx's default escaping: `"`, `\`, control and non-ASCII bytes as \xHH.
    static func defaultEscape(_ s: String, escape: Bool) -> String {
        guard escape, s.utf8.contains(where: { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 || $0 >= 0x7F }) else { return s }
        var out = ""
        for b in s.utf8 {
            if b == 0x22 || b == 0x5C || b < 0x20 || b >= 0x7F {
                out += "\\x" + String(b, radix: 16, uppercase: true).leftPadded(2)
            } else {
                out.unicodeScalars.append(UnicodeScalar(b))
            }
        }
        return out
    }

}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Open access log files, shared by every location that names the same path; reopened on USR1.
final class AccessLogFiles {
    private var fds: [String: Int32] = [:]
    private var formats: [String: CompiledLogFormat] = [:]
    let log: ErrorLog

    init(config: Configuration, log: ErrorLog) {
        self.log = log
        for (name, f) in config.http?.logFormats ?? [:] { formats[name] = CompiledLogFormat(f, table: config.http?.variables) }
    }

    func format(_ name: String) -> CompiledLogFormat? { formats[name] }

    func fd(for path: String) -> Int32? {
        if let fd = fds[path] { return fd }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            log.alert("open() \"\(path)\" failed (\(errno): \(String(cString: strerror(errno))))")
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
        log.alert("write() to \"\(path)\" failed (\(e): \(String(cString: strerror(e)))) while logging request\(context())")
    }
}

/// Time formats nginx uses in logs and headers.
enum Clock {
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]

    /// `23/Nov/2026:14:25:01 +0000` ($time_local).
    static func timeLocal() -> String {
        var t = time(nil)
        var tmv = tm()
        localtime_r(&t, &tmv)
        let off = tmv.tm_gmtoff / 60
        let sign = off < 0 ? "-" : "+"
        let a = abs(off)
        return "\(two(tmv.tm_mday))/\(months[Int(tmv.tm_mon)])/\(tmv.tm_year + 1900):\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)) \(sign)\(two(Int32(a / 60)))\(two(Int32(a % 60)))"
    }

    /// `2026-11-23T14:25:01+00:00` ($time_iso8601).
    static func iso8601() -> String {
        var t = time(nil)
        var tmv = tm()
        localtime_r(&t, &tmv)
        let off = tmv.tm_gmtoff / 60
        let a = abs(off)
        return "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday))T\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec))\(off < 0 ? "-" : "+")\(two(Int32(a / 60))):\(two(Int32(a % 60)))"
    }

    /// `Mon, 23 Nov 2026 14:25:01 GMT` (the Date header), cached per second.
    nonisolated(unsafe) private static var cachedSecond: time_t = 0
    nonisolated(unsafe) private static var cachedDate = ""
    static func httpDate() -> String {
        var t = time(nil)
        if t == cachedSecond { return cachedDate }
        var tmv = tm()
        gmtime_r(&t, &tmv)
        cachedDate = "\(days[Int(tmv.tm_wday)]), \(two(tmv.tm_mday)) \(months[Int(tmv.tm_mon)]) \(tmv.tm_year + 1900) \(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)) GMT"
        cachedSecond = t
        return cachedDate
    }

    /// The HTTP date of any moment (Last-Modified, Expires).
    static func httpDate(at seconds: Int) -> String {
        var t = time_t(seconds)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return "\(days[Int(tmv.tm_wday)]), \(two(tmv.tm_mday)) \(months[Int(tmv.tm_mon)]) \(tmv.tm_year + 1900) \(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)) GMT"
    }

    static func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
}

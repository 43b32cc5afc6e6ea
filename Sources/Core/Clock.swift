#if canImport(Glibc)
import Glibc
#endif

/// The time formats nginx prints: in the error log, the access log and the Date, Expires and Last-Modified
/// headers.
public enum Clock {
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]

    private static func local() -> tm {
        var t = time(nil)
        var tmv = tm()
        localtime_r(&t, &tmv)
        return tmv
    }

    /// `2026/11/23 13:24:14`, local time (the error log).
    public static func errorLogTime() -> String {
        let t = local()
        return "\(t.tm_year + 1900)/\(two(t.tm_mon + 1))/\(two(t.tm_mday)) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))"
    }

    /// `23/Nov/2026:14:25:01 +0000` ($time_local).
    public static func timeLocal() -> String {
        let t = local()
        let off = t.tm_gmtoff / 60
        let a = abs(off)
        return "\(two(t.tm_mday))/\(months[Int(t.tm_mon)])/\(t.tm_year + 1900):\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) \(off < 0 ? "-" : "+")\(two(Int32(a / 60)))\(two(Int32(a % 60)))"
    }

    /// `2026-11-23T14:25:01+00:00` ($time_iso8601).
    public static func iso8601() -> String {
        let t = local()
        let off = t.tm_gmtoff / 60
        let a = abs(off)
        return "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))T\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))\(off < 0 ? "-" : "+")\(two(Int32(a / 60))):\(two(Int32(a % 60)))"
    }

    /// `Mon, 23 Nov 2026 14:25:01 GMT` (the Date header), made once per second.
    nonisolated(unsafe) private static var cachedSecond: time_t = 0
    nonisolated(unsafe) private static var cachedDate = ""
    public static func httpDate() -> String {
        let t = time(nil)
        if t == cachedSecond { return cachedDate }
        cachedDate = httpDate(at: Int(t))
        cachedSecond = t
        return cachedDate
    }

    /// The HTTP date of any moment (Last-Modified, Expires).
    public static func httpDate(at seconds: Int) -> String {
        var t = time_t(seconds)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return "\(days[Int(tmv.tm_wday)]), \(two(tmv.tm_mday)) \(months[Int(tmv.tm_mon)]) \(tmv.tm_year + 1900) \(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)) GMT"
    }

    /// Microseconds as nginx prints durations ($request_time, $upstream_response_time): `0.012`.
    public static func seconds(fromMicroseconds us: UInt64) -> String {
        "\(us / 1_000_000).\(String(us / 1000 % 1000).leftPadded(3))"
    }

    /// `$msec`: seconds since the epoch with milliseconds, `1700000000.123`.
    public static func msec(_ ms: Int64) -> String { "\(ms / 1000).\(String(ms % 1000).leftPadded(3))" }

    static func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
}

extension String {
    /// Zeros in front up to `n` characters.
    public func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

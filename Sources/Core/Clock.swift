#if canImport(Glibc)
import Glibc
#endif

/// The time formats nginx prints: in the error log, the access log and the Date, Expires and Last-Modified
/// headers.
public enum Clock {
    public static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
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

    /// `Nov  3 14:25:01`, local time (syslog's header: the day padded with a space, no year).
    public static func syslogTime() -> String {
        let t = local()
        return "\(months[Int(t.tm_mon)]) \(t.tm_mday < 10 ? " " : "")\(t.tm_mday) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))"
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

    /// The next moment the local clock shows `secondsOfDay` past midnight (nginx's ngx_next_time, for
    /// `expires @15h30m`): today's, or tomorrow's once today's has passed.
    public static func nextTimeOfDay(_ secondsOfDay: Int) -> Int {
        var now = time(nil)
        var tmv = tm()
        localtime_r(&now, &tmv)
        tmv.tm_hour = Int32(secondsOfDay / 3600)
        tmv.tm_min = Int32(secondsOfDay % 3600 / 60)
        tmv.tm_sec = Int32(secondsOfDay % 60)
        let today = mktime(&tmv)
        if today > now { return Int(today) }
        tmv.tm_mday += 1
        return Int(mktime(&tmv))
    }

    /// An HTTP date in any of its three forms (RFC 1123 `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850
    /// `Sunday, 06-Nov-94 08:49:37 GMT`, asctime `Sun Nov  6 08:49:37 1994`) as seconds since the epoch; nil for
    /// anything else, as nginx's parser answers.
    public static func parseHTTPDate(_ text: String) -> Int? {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        var day: Int?, month: Int?, year: Int?, clock: [Int]?
        switch words.count {
        case 4 where words[1].contains("-"):   // RFC 850: Sunday 06-Nov-94 08:49:37 GMT
            let d = words[1].split(separator: "-")
            guard d.count == 3, words[3] == "GMT" else { return nil }
            day = Int(d[0]); month = months.firstIndex(of: String(d[1])); year = Int(d[2]).map { $0 < 70 ? 2000 + $0 : $0 < 100 ? 1900 + $0 : $0 }
            clock = words[2].split(separator: ":").compactMap { Int($0) }
        case 5 where words[4] != "GMT":   // asctime: Sun Nov 6 08:49:37 1994
            month = months.firstIndex(of: words[1]); day = Int(words[2]); year = Int(words[4])
            clock = words[3].split(separator: ":").compactMap { Int($0) }
        case 6 where words[5] == "GMT":   // RFC 1123: Sun 06 Nov 1994 08:49:37 GMT
            day = Int(words[1]); month = months.firstIndex(of: words[2]); year = Int(words[3])
            clock = words[4].split(separator: ":").compactMap { Int($0) }
        default:
            return nil
        }
        guard let day, let month, let year, let clock, clock.count == 3, (1...31).contains(day), year >= 1970,
              clock[0] < 24, clock[1] < 60, clock[2] < 60 else { return nil }
        // Days since the epoch for a proleptic Gregorian date (no timegm: it consults the environment).
        let y = month < 2 ? year - 1 : year, m = month < 2 ? month + 10 : month - 2   // March first
        let era = y / 400, yoe = y - era * 400
        let doy = (153 * m + 2) / 5 + day - 1
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
        return days * 86_400 + clock[0] * 3600 + clock[1] * 60 + clock[2]
    }

    /// Microseconds as nginx prints durations ($request_time, $upstream_response_time): `0.012`.
    public static func seconds(fromMicroseconds us: UInt64) -> String {
        "\(us / 1_000_000).\(String(us / 1000 % 1000).leftPadded(3))"
    }

    /// `$msec`: seconds since the epoch with milliseconds, `1700000000.123`.
    public static func msec(_ ms: Int64) -> String { "\(ms / 1000).\(String(ms % 1000).leftPadded(3))" }

    /// Two digits, as `%02d`.
    public static func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
}

extension String {
    /// Zeros in front up to `n` characters.
    public func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

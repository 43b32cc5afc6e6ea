/// nginx's log levels, most severe first: a sink at level L takes every line at L or above.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug = 8, info = 7, notice = 6, warn = 5, error = 4, crit = 3, alert = 2, emerg = 1
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
    public var name: String {
        switch self {
        case .debug: "debug"; case .info: "info"; case .notice: "notice"; case .warn: "warn"
        case .error: "error"; case .crit: "crit"; case .alert: "alert"; case .emerg: "emerg"
        }
    }
    public init?(name: String) {
        guard let l = LogLevel.allCases.first(where: { $0.name == name }) else { return nil }
        self = l
    }
}

/// `error_log file [level]`; `stderr` is a valid file, and `syslog:…` (`path` is the text as written) a syslog
/// server.
public struct ErrorLogTarget: Equatable, Sendable {
    public var path: String
    public var level: LogLevel
    public var syslog: SyslogTarget?
    public init(path: String, level: LogLevel, syslog: SyslogTarget? = nil) {
        self.path = path
        self.level = level
        self.syslog = syslog
    }

    /// A file the master opens (and hands to the workers' user on reopen): not stderr, not syslog.
    public var isFile: Bool { syslog == nil && path != "stderr" }

    /// A syslog target is what its text says.
    public static func == (a: ErrorLogTarget, b: ErrorLogTarget) -> Bool { a.path == b.path && a.level == b.level }
}

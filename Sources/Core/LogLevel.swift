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

/// `error_log file [level]`; `stderr` is a valid file.
public struct ErrorLogTarget: Equatable, Sendable {
    public var path: String
    public var level: LogLevel
    public init(path: String, level: LogLevel) { self.path = path; self.level = level }
}

/// A configuration error worded like nginx's: `<message> in <file>:<line>`.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public enum Level: String, Sendable { case emerg, warn, notice, crit }
    public var level: Level
    public var message: String
    public var file: String?
    public var line: Int
    /// Printed after the location, where nginx leaves the user guessing.
    public var hint: String?

    public init(_ message: String, level: Level = .emerg, file: String? = nil, line: Int = 0, hint: String? = nil) {
        self.message = message
        self.level = level
        self.file = file
        self.line = line
        self.hint = hint
    }

    public var description: String {
        var s = message
        if let file { s += line > 0 ? " in \(file):\(line)" : " in \(file)" }
        if let hint { s += ", \(hint)" }
        return s
    }
}

/// Where a token came from, for `in file:line`.
public struct SourceLocation: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) { self.file = file; self.line = line }
    public var description: String { "\(file):\(line)" }

    public func error(_ message: String, hint: String? = nil) -> ConfigError {
        ConfigError(message, file: file, line: line, hint: hint)
    }

    func warning(_ message: String) -> ConfigError { ConfigError(message, level: .warn, file: file, line: line) }
}

/// `map $source $variable { … }`: the value of a variable chosen by another value, as nginx's map module
/// chooses it: exact keys (compared case-insensitively), then with `hostnames` the wildcard keys
/// (`*.example.com`, `.example.com`, `www.example.*`), then the regexes in order, then `default`. Evaluated
/// when a request first reads the variable, and kept for the rest of the request unless `volatile`.
public final class Map {
    public let source: Template
    public private(set) var exact: [String: Template] = [:]
    private var wildcards: [(key: String, value: Template)] = []
    private var regexes: [(Regex, Template)] = []
    public var defaultValue: Template?
    public var hostnames = false
    public var volatile = false

    public init(source: Template) { self.source = source }

    public enum AddError: Error { case conflicting }

    public func add(key: String, value: Template) throws {
        if hostnames && (key.hasPrefix("*.") || key.hasPrefix(".") || key.hasSuffix(".*")) {
            wildcards.append((key.lowercased(), value))
            return
        }
        let k = key.lowercased()
        if let old = exact[k] {
            // nginx ignores the same pair twice and refuses a key with two values.
            if old.text == value.text { return }
            throw AddError.conflicting
        }
        exact[k] = value
    }

    public func add(regex: Regex, value: Template) { regexes.append((regex, value)) }

    public func evaluate(_ ctx: ScriptContext) -> String {
        var key = source.render(ctx)
        if hostnames && key.hasSuffix(".") { key.removeLast() }
        // Keys are stored lowercased; most values already are, and need no lowercased copy.
        if !exact.isEmpty, let v = exact[key.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? key.lowercased() : key] { return v.render(ctx) }
        if hostnames {
            let h = key.lowercased()
            for (k, v) in wildcards where Wildcard.matches(h, k) { return v.render(ctx) }
        }
        for (re, v) in regexes {
            if let m = re.match(key) {
                Program.take(m, of: re, ctx)
                return v.render(ctx)
            }
        }
        return defaultValue?.render(ctx) ?? ""
    }
}

/// nginx's wildcard names, as `server_name` and `map … { hostnames; }` take them: `*.example.com`,
/// `.example.com` (which also matches example.com itself) and `www.example.*`. `host` is lowercased.
public enum Wildcard {
    public static func matches(_ host: String, _ pattern: String) -> Bool {
        if pattern.hasPrefix("*.") { return host.hasSuffix(pattern.dropFirst()) }
        if pattern.hasPrefix(".") { return host == pattern.dropFirst() || host.hasSuffix(pattern) }
        if pattern.hasSuffix(".*") { return host.hasPrefix(pattern.dropLast()) }
        return false
    }
}

/// `map $source $variable { … }`: the value of a variable chosen by another value, as nginx's map module
/// chooses it: exact keys (compared case-insensitively), then with `hostnames` the wildcard keys
/// (`*.example.com`, `.example.com`, `www.example.*`), then the regexes in order, then `default`. Evaluated
/// when a request first reads the variable, and kept for the rest of the request unless `volatile`.
public final class Map: ComputedVariable {
    public let source: Template
    public private(set) var exact: [String: Template] = [:]
    private var wildcards = WildcardNames<Template>()
    private var regexes: [(Regex, Template)] = []
    public var defaultValue: Template?
    public var hostnames = false
    public var volatile = false

    public init(source: Template) { self.source = source }

    public enum AddError: Error { case conflicting }

    public func add(key: String, value: Template) throws {
        var k = key.lowercased()
        if hostnames && WildcardNames<Template>.isWildcard(k) {
            wildcards.add(k, value)
            guard k.hasPrefix(".") else { return }
            k.removeFirst()
        }
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
        if !wildcards.isEmpty, let v = wildcards.find(key.lowercased()) { return v.render(ctx) }
        for (re, v) in regexes {
            if let m = re.match(key) {
                Program.take(m, of: re, ctx)
                return v.render(ctx)
            }
        }
        return defaultValue?.render(ctx) ?? ""
    }
}

/// nginx's wildcard names as its wildcard hashes find them, for `server_name` and `map … { hostnames; }`: of
/// the leading wildcards (`*.example.com`, `.example.com`) the longest that matches, then of the trailing ones
/// (`www.example.*`) the longest; of two equally long the first added. `.example.com` also names example.com
/// itself, which nginx enters among the exact names: the caller's to add. Hosts and names are lowercased.
public struct WildcardNames<Value> {
    /// `*.example.com` and `.example.com` as ".example.com", longest first.
    private var leading: [(suffix: String, value: Value)] = []
    /// `www.example.*` as "www.example.", longest first.
    private var trailing: [(prefix: String, value: Value)] = []

    public init() {}

    public var isEmpty: Bool { leading.isEmpty && trailing.isEmpty }

    public static func isWildcard(_ name: String) -> Bool { name.hasPrefix(".") || name.hasPrefix("*.") || name.hasSuffix(".*") }

    /// Adds a name for which `isWildcard` holds.
    public mutating func add(_ name: String, _ value: Value) {
        if name.hasSuffix(".*") {
            let prefix = String(name.dropLast())
            trailing.insert((prefix, value), at: trailing.firstIndex { $0.prefix.utf8.count < prefix.utf8.count } ?? trailing.endIndex)
        } else {
            let suffix = name.hasPrefix("*") ? String(name.dropFirst()) : name
            leading.insert((suffix, value), at: leading.firstIndex { $0.suffix.utf8.count < suffix.utf8.count } ?? leading.endIndex)
        }
    }

    public func find(_ host: String) -> Value? {
        if let w = leading.first(where: { host.utf8.count > $0.suffix.utf8.count && host.hasSuffix($0.suffix) }) { return w.value }
        return trailing.first(where: { host.utf8.count > $0.prefix.utf8.count && host.hasPrefix($0.prefix) })?.value
    }
}

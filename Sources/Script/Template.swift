import Core

/// Where a script takes its values from: the worker's request, with its variables, its own (`set`) values,
/// the groups of the last regex match, and a URI and arguments that `rewrite` may change.
public protocol ScriptContext: AnyObject {
    func value(_ v: Variable) -> String?
    /// The value's UTF-8 appended to `out`; false when the variable has none. A context writes the values it
    /// holds without a String for each (a gateway's params render twenty per request).
    func appendValue(_ v: Variable, to out: OutputQueue) -> Bool
    func setUser(_ index: Int, _ value: String)
    /// `set` on a built-in for which `Variable.isSettable` holds.
    func setBuiltin(_ v: Variable, _ value: String)
    var uri: String { get set }
    var args: String? { get set }
    var captures: Captures? { get set }
    /// The request's path came with a %-escape or a "+" (nginx's quoted_uri, plus_in_uri).
    var uriWasQuoted: Bool { get }
    /// An `if` block's condition held: its configuration (the location's `if` block number `ifBlock`) applies.
    func select(ifBlock: Int)
}

extension ScriptContext {
    public func appendValue(_ v: Variable, to out: OutputQueue) -> Bool {
        guard let s = value(v) else { return false }
        out.append(s)
        return true
    }
}

/// A string with `$name`, `${name}` and `$1`…`$9` in it, split once, when the configuration loads; the names
/// are resolved to variables when every `set` and `map` of the configuration is known (nginx allows a
/// variable to be used above the line that declares it).
/// Unchecked Sendable: `resolve` runs while the configuration loads, before any worker or thread sees it.
public final class Template: @unchecked Sendable {
    enum Part { case literal(String), name(String), variable(Variable) }
    private(set) var parts: [Part]
    public let text: String

    public init(_ text: String) {
        self.text = text
        var parts: [Part] = []
        var lit = ""
        let chars = Array(text.unicodeScalars)
        var i = 0
        while i < chars.count {
            if chars[i] == "$", i + 1 < chars.count {
                var name = ""
                var j = i + 1
                if chars[j] == "{" {
                    j += 1
                    while j < chars.count && chars[j] != "}" { name.unicodeScalars.append(chars[j]); j += 1 }
                    j += 1
                } else if ("0"..."9").contains(chars[j]) {
                    name.unicodeScalars.append(chars[j])   // $1 is one digit: "$10" is $1 then "0"
                    j += 1
                } else {
                    // nginx's names are ASCII letters, digits and `_`: any other character ends one.
                    while j < chars.count, chars[j].isASCII && (chars[j].properties.isAlphabetic || chars[j] == "_" || ("0"..."9").contains(chars[j])) {
                        name.unicodeScalars.append(chars[j])
                        j += 1
                    }
                }
                if !name.isEmpty {
                    if !lit.isEmpty { parts.append(.literal(lit)); lit = "" }
                    parts.append(.name(name))
                    i = j
                    continue
                }
            }
            lit.unicodeScalars.append(chars[i])
            i += 1
        }
        if !lit.isEmpty { parts.append(.literal(lit)) }
        self.parts = parts
    }

    /// The names this template uses, for declaring and checking them.
    public var names: [String] {
        parts.compactMap { if case .name(let n) = $0 { return n } else { return nil } }
    }

    public func resolve(_ table: VariableTable) {
        var resolved: [Part] = []
        for p in parts {
            var part = p
            if case .name(let n) = p { part = .variable(Variable(name: n, table: table)) }
            // A constant is known now: Debian's `SERVER_SOFTWARE nginx/$nginx_version` is as much a literal as
            // `CGI/1.1`, and is written as one.
            if case .variable(.nginxVersion) = part { part = .literal(Version.number) }
            if case .literal(let s) = part, case .literal(let before)? = resolved.last {
                resolved[resolved.count - 1] = .literal(before + s)
            } else {
                resolved.append(part)
            }
        }
        parts = resolved
    }

    /// The template's one part when it has no other: its text, or its variable (resolved).
    public var literal: String? {
        if parts.isEmpty { return "" }
        if parts.count == 1, case .literal(let s) = parts[0] { return s }
        return nil
    }
    public var soleVariable: Variable? {
        if parts.count == 1, case .variable(let v) = parts[0] { return v }
        return nil
    }

    /// The text with `ctx`'s values; a variable without one is empty.
    public func render(_ ctx: ScriptContext) -> String {
        if parts.count == 1 {
            // A lone literal or variable is its own value: no string to build.
            switch parts[0] {
            case .literal(let s): return s
            case .variable(let v): return ctx.value(v) ?? ""
            case .name(let n): return ctx.value(Variable(name: n)) ?? ""
            }
        }
        var out = ""
        render(ctx, into: &out) { $0 ?? "" }
        return out
    }

    /// The same text as `render`, appended to `out` as UTF-8 without a String in between.
    public func render(_ ctx: ScriptContext, into out: OutputQueue) {
        for p in parts {
            switch p {
            case .literal(let s): out.append(s)
            case .variable(let v): _ = ctx.appendValue(v, to: out)
            case .name(let n): _ = ctx.appendValue(Variable(name: n), to: out)
            }
        }
    }

    /// An access log line (`log_format`), appended to `line` (a buffer kept from one request to the next):
    /// values escaped as the format says, a missing one `-` (empty in JSON); no newline.
    public func appendLogLine(_ ctx: ScriptContext, escape: LogEscape, to line: inout String) {
        render(ctx, into: &line) { v in
            switch escape {
            case .json: return JSONText.escape(v ?? "")
            case .default: return LogEscape.escaped(v ?? "-")
            // As nginx: a variable without a value is "-" in the default escaping, nothing in the others.
            case .none: return v ?? ""
            }
        }
    }

    /// A `rewrite` replacement: the text before the first `?` written in the template (not one a variable's
    /// value brings) and, if there is one, what follows it, as nginx splits a URI from its arguments.
    public func renderSplittingArguments(_ ctx: ScriptContext) -> (path: String, arguments: String?) {
        var path = "", arguments: String?
        for p in parts {
            let text: String
            switch p {
            case .literal(let s):
                if arguments == nil, let q = s.firstIndex(of: "?") {
                    path += s[..<q]
                    arguments = String(s[s.index(after: q)...])
                    continue
                }
                text = s
            case .variable(let v): text = ctx.value(v) ?? ""
            case .name(let n): text = ctx.value(Variable(name: n)) ?? ""
            }
            if arguments != nil {
                // As nginx: a capture of a quoted URI goes into the arguments escaped again, so that "%25" stays so.
                if case .variable(.capture) = p, ctx.uriWasQuoted { arguments! += URIText.escaped(text, .args) } else { arguments! += text }
            } else {
                path += text
            }
        }
        return (path, arguments)
    }

    /// The one renderer: literals as they are, each variable's value through `shown`, appended to `out`.
    private func render(_ ctx: ScriptContext, into out: inout String, _ shown: (String?) -> String) {
        for p in parts {
            switch p {
            case .literal(let s): out += s
            case .variable(let v): out += shown(ctx.value(v))
            case .name(let n): out += shown(ctx.value(Variable(name: n)))
            }
        }
    }
}

/// `log_format … escape=`: how variable values are written into access log lines.
public enum LogEscape: String, Sendable {
    case `default`, json, none

    /// nginx's default escaping: `"`, `\`, control and non-ASCII bytes as \xHH.
    public static func escaped(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 || $0 >= 0x7F }) else { return s }
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

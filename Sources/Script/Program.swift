#if canImport(Glibc)
import Glibc
#endif

/// nginx's rewrite module compiled into a flat list of instructions, once per `server` and `location`, as
/// nginx compiles its script codes: a request pays only for the directives its blocks have.
public final class Program {
    public enum Instruction {
        /// `set $name value`.
        case set(Int, Template)
        /// `set` on a built-in that takes it (`$limit_rate`).
        case setBuiltin(Variable, Template)
        /// `if (condition) {`: when it does not hold, continue at the index (after the block).
        case unless(Condition, Int)
        /// `rewrite regex replacement [flag]`.
        case rewrite(Regex, Template, RewriteFlag?)
        /// `return code [text|URL]`, `return URL`.
        case `return`(Int, Template?)
        /// `break`.
        case stop
        /// First in an `if` block inside a location: the request takes that block's configuration (its
        /// number among the location's `if` blocks), as nginx's `if` does.
        case select(Int)
    }

    public enum RewriteFlag: String { case last, `break`, redirect, permanent }

    public enum Condition {
        /// `if ($var)`: false for "" and "0".
        case variable(Template)
        case equals(Template, Template, negate: Bool)
        case matches(Template, Regex, negate: Bool)
        case file(FileTest, Template, negate: Bool)
    }

    public enum FileTest: String { case f = "-f", d = "-d", e = "-e", x = "-x" }

    /// What running a program decided.
    public enum Outcome: Equatable {
        /// Every instruction ran; the URI may have changed (then nginx looks for the location again).
        case next
        /// `return` (or a `rewrite` to a URL): answer now.
        case respond(Int, String?)
        /// `rewrite … last`: look for the location of the new URI.
        case last
        /// `break` or `rewrite … break`: stop rewriting, stay in this location.
        case stop
    }

    public private(set) var instructions: [Instruction] = []
    public init() {}

    public var isEmpty: Bool { instructions.isEmpty }
    public var count: Int { instructions.count }

    public func append(_ i: Instruction) { instructions.append(i) }

    /// Points the `unless` at `index` past the block it guards.
    public func patchJump(at index: Int) {
        guard case .unless(let c, _) = instructions[index] else { return }
        instructions[index] = .unless(c, instructions.count)
    }

    public func run(_ ctx: ScriptContext) -> Outcome {
        var pc = 0
        while pc < instructions.count {
            switch instructions[pc] {
            case .set(let i, let t):
                ctx.setUser(i, t.render(ctx))
            case .setBuiltin(let v, let t):
                ctx.setBuiltin(v, t.render(ctx))
            case .unless(let c, let target):
                if !holds(c, ctx) { pc = target; continue }
            case .rewrite(let re, let replacement, let flag):
                if let outcome = rewrite(re, replacement, flag, ctx) { return outcome }
            case .return(let code, let t):
                return .respond(code, t?.render(ctx))
            case .stop:
                return .stop
            case .select(let block):
                ctx.select(ifBlock: block)
            }
            pc += 1
        }
        return .next
    }

    private func holds(_ c: Condition, _ ctx: ScriptContext) -> Bool {
        switch c {
        case .variable(let t):
            let v = t.render(ctx)
            return !v.isEmpty && v != "0"
        case .equals(let a, let b, let negate):
            return (a.render(ctx) == b.render(ctx)) != negate
        case .matches(let t, let re, let negate):
            guard let m = re.match(t.render(ctx)) else { return negate }
            if !negate { Program.take(m, of: re, ctx) }
            return !negate
        case .file(let test, let t, let negate):
            return Program.test(test, t.render(ctx)) != negate
        }
    }

    /// A match's groups become $1…$9, and its named groups the variables they name.
    public static func take(_ m: Captures, of re: Regex, _ ctx: ScriptContext) {
        ctx.captures = m
        for b in re.bindings { ctx.setUser(b.variable, m.group(b.group) ?? "") }
    }

    static func test(_ test: FileTest, _ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        switch test {
        case .f: return (st.st_mode & S_IFMT) == S_IFREG
        case .d: return (st.st_mode & S_IFMT) == S_IFDIR
        case .e: return true
        // nginx's ngx_is_exec: the owner's execute bit, whoever asks and whatever the file is (a directory too).
        case .x: return st.st_mode & S_IXUSR != 0
        }
    }

    /// As nginx's: the regex runs on $uri; a replacement that starts with a scheme is a
    /// redirect; a `?` in it replaces the arguments (the old ones are appended unless it ends with `?`).
    private func rewrite(_ re: Regex, _ replacement: Template, _ flag: RewriteFlag?, _ ctx: ScriptContext) -> Outcome? {
        guard let m = re.match(ctx.uri) else { return nil }
        Program.take(m, of: re, ctx)
        // Arguments start at a `?` written in the replacement, never at one a variable's value brings.
        let (target, arguments) = replacement.renderSplittingArguments(ctx)
        // Byte comparisons: String's hasPrefix and firstIndex(of:) walk characters.
        let isURL = target.utf8.starts(with: "http://".utf8) || target.utf8.starts(with: "https://".utf8)
            || replacement.text.utf8.starts(with: "$scheme".utf8)
        var newArgs = ctx.args
        if var query = arguments {
            if query.hasSuffix("?") || replacement.text.hasSuffix("?") {
                query = String(query.dropLast(query.hasSuffix("?") ? 1 : 0))
            } else if let old = ctx.args, !old.isEmpty {
                query += (query.isEmpty ? "" : "&") + old
            }
            newArgs = query.isEmpty ? nil : query
        }
        if isURL || flag == .redirect || flag == .permanent {
            let code = flag == .permanent ? 301 : 302
            return .respond(code, target + (newArgs.map { "?" + $0 } ?? ""))
        }
        ctx.uri = target
        ctx.args = newArgs
        switch flag {
        case .last: return .last
        case .break: return .stop
        default: return nil
        }
    }
}

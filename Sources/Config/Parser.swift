#if canImport(Glibc)
import Glibc
#endif
import Core
import Script

/// The block a statement appears in, carrying the object its directives fill in.
enum BlockContext {
    case main
    case events(EventsBlock)
    case http(HTTPBlock)
    case server(Server, HTTPBlock)
    case location(Location, Server, HTTPBlock)
    case upstream(Upstream, HTTPBlock)
    case types(TypesTable)
    /// `if (…) { }` in a server or location: its rewrite directives join the enclosing block's program; in a
    /// location, the block's other directives configure the `Location` a request takes when the condition holds.
    case ifBlock(Program, HTTPBlock, Location?)
    /// `map … { }`: every statement is a key and a value.
    case map(Map, HTTPBlock)
    /// `limit_except METHOD … { }`: the nameless location a request with another method takes.
    case limitExcept(Location, HTTPBlock)
    /// `charset_map from to { }`: every statement is a byte and what it becomes.
    case charsetMap(CharsetMapTable)
    /// `geo … { }` and `split_clients … { }`: every statement is a key and a value, or a parameter.
    case geo(Geo, HTTPBlock)
    case splitClients(SplitClients)

    var kind: Contexts {
        switch self {
        case .main: .main
        case .events: .events
        case .http: .http
        case .server: .server
        case .location: .location
        case .upstream: .upstream
        case .types: .types
        case .ifBlock(_, _, let l): l == nil ? .ifBlock : .locationIf
        case .map: .map
        case .limitExcept: .limitExcept
        case .charsetMap: .charsetMap
        case .geo, .splitClients: .map
        }
    }
}

/// Collects a `types {}` block; a class so the block's statements can add to it.
final class TypesTable {
    var map: [String: String] = [:]
}

struct Contexts: OptionSet {
    let rawValue: UInt16
    static let main = Contexts(rawValue: 1)
    static let events = Contexts(rawValue: 2)
    static let http = Contexts(rawValue: 4)
    static let server = Contexts(rawValue: 8)
    static let location = Contexts(rawValue: 16)
    static let upstream = Contexts(rawValue: 32)
    static let types = Contexts(rawValue: 64)
    static let ifBlock = Contexts(rawValue: 128)
    static let map = Contexts(rawValue: 256)
    /// `if` inside a location (nginx's NGX_HTTP_LIF_CONF); `.ifBlock` is one inside a server.
    static let locationIf = Contexts(rawValue: 512)
    /// Inside `limit_except` (nginx's NGX_HTTP_LMT_CONF): access rules, access_log and proxy_pass.
    static let limitExcept = Contexts(rawValue: 1024)
    static let charsetMap = Contexts(rawValue: 2048)
    /// Where the rewrite module's directives go.
    static let script: Contexts = [.server, .location, .ifBlock, .locationIf]
    static let httpAll: Contexts = [.http, .server, .location]
}

/// One statement handed to a directive handler.
struct Call {
    let words: [String]
    let location: SourceLocation
    let context: BlockContext
    let parser: Parser

    var name: String { words[0] }
    var args: ArraySlice<String> { words.dropFirst() }
    var configuration: Configuration { parser.configuration }

    func error(_ message: String, hint: String? = nil) -> ConfigError { location.error(message, hint: hint) }
    /// nginx's generic handler failure wording: `"name" directive <reason>`.
    func directiveError(_ reason: String) -> ConfigError { location.error("\"\(name)\" directive \(reason)") }
    func duplicate() -> ConfigError { directiveError("is duplicate") }
    func invalidParameter(_ p: String) -> ConfigError { location.error("invalid parameter \"\(p)\"") }
    func warn(_ message: String) { parser.configuration.warnings.append(location.warning(message)) }

    /// The directive is accepted and has no effect in Vigil, for `reason`.
    func noEffect(_ reason: String) {
        parser.configuration.notices.append(ConfigError("\"\(name)\" has no effect in vigil: \(reason)", level: .notice,
                                                        file: location.file, line: location.line))
    }

    /// Parses the `{ ... }` that follows a block directive in the given context.
    func parseBlock(_ ctx: BlockContext) throws { try parser.parseBlock(context: ctx) }
}

/// As nginx's: statements to directive handlers, blocks recursively, `include` in any context.
final class Parser {
    let configuration: Configuration
    private var lexers: [Lexer] = []
    private var depth = 0
    static let maxDepth = 256

    init(configuration: Configuration) { self.configuration = configuration }

    func parseFile(path: String, context: BlockContext, includedFrom: SourceLocation?) throws {
        let bytes: [UInt8]
        do {
            bytes = try FileBytes.read(path)
        } catch let e as FileBytes.Failure {
            let msg = "open() \"\(path)\" failed (\(e.text))"
            if let includedFrom { throw includedFrom.error(msg) }
            throw ConfigError(msg)
        }
        configuration.recordSource(path: path, text: bytes)
        try parse(bytes: bytes, file: path, context: context, isParameterString: false)
    }

    func parse(bytes: [UInt8], file: String, context: BlockContext, isParameterString: Bool) throws {
        lexers.append(Lexer(bytes: bytes, file: file, isParameterString: isParameterString))
        defer { lexers.removeLast() }
        try parseStatements(context: context, inBlock: false, isParameterString: isParameterString)
    }

    /// Where the lexer is now: after a block, the line of its closing `}`.
    var currentLocation: SourceLocation {
        let lexer = lexers[lexers.count - 1]
        return SourceLocation(file: lexer.file, line: lexer.reportedLine)
    }

    func parseBlock(context: BlockContext) throws {
        depth += 1
        defer { depth -= 1 }
        if depth > Parser.maxDepth {
            throw lexers[lexers.count - 1].errorHere("too many nested blocks (more than \(Parser.maxDepth))")
        }
        try parseStatements(context: context, inBlock: true, isParameterString: false)
    }

    private func parseStatements(context: BlockContext, inBlock: Bool, isParameterString: Bool) throws {
        while true {
            let stmt = try lexers[lexers.count - 1].next()
            let here = SourceLocation(file: lexers[lexers.count - 1].file, line: isParameterString ? 0 : stmt.line)
            switch stmt.terminator {
            case .blockEnd:
                if !inBlock { throw here.error("unexpected \"}\"") }
                return
            case .endOfInput:
                if inBlock { throw here.error("unexpected end of file, expecting \"}\"") }
                return
            case .blockStart where isParameterString:
                throw ConfigError("block directives are not supported in -g option", file: "command line")
            case .semicolon, .blockStart:
                break
            }
            try handle(stmt, at: here, context: context)
        }
    }

    private func handle(_ stmt: Lexer.Statement, at here: SourceLocation, context: BlockContext) throws {
        let words = stmt.words
        let call = Call(words: words, location: here, context: context, parser: self)

        if words[0] == "include" {
            guard stmt.terminator == .semicolon else { throw here.error("directive \"include\" is not terminated by \";\"") }
            guard words.count == 2 else { throw here.error("invalid number of arguments in \"include\" directive") }
            try include(words[1], call: call)
            return
        }
        if case .types(let table) = context {
            guard stmt.terminator == .semicolon else { throw here.error("unexpected \"{\"") }
            try Directives.addTypes(call, table)
            return
        }
        if case .geo(let geo, _) = context {
            guard stmt.terminator == .semicolon else { throw here.error("unexpected \"{\"") }
            try GeoDirectives.addEntry(call, geo)
            return
        }
        if case .splitClients(let split) = context {
            guard stmt.terminator == .semicolon else { throw here.error("unexpected \"{\"") }
            try GeoDirectives.addPart(call, split)
            return
        }
        if case .charsetMap(let table) = context {
            guard stmt.terminator == .semicolon else { throw here.error("unexpected \"{\"") }
            try CharsetDirectives.addEntry(call, table)
            return
        }
        if case .map(let map, _) = context {
            guard stmt.terminator == .semicolon else { throw here.error("unexpected \"{\"") }
            try MapDirective.addEntry(call, map)
            return
        }

        let candidates = Directives.table[words[0]] ?? []
        guard !candidates.isEmpty else {
            if UnsupportedDirectives.names.contains(words[0]) { throw here.error("\"\(words[0])\" directive is not supported by vigil") }
            throw here.error("unknown directive \"\(Lexer.printableWord(words[0]))\"")
        }
        guard let spec = candidates.first(where: { $0.contexts.contains(context.kind) }) else {
            throw here.error("\"\(words[0])\" directive is not allowed here")
        }
        if !spec.isBlock && stmt.terminator != .semicolon {
            throw here.error("directive \"\(words[0])\" is not terminated by \";\"")
        }
        if spec.isBlock && stmt.terminator != .blockStart {
            throw here.error("directive \"\(words[0])\" has no opening \"{\"")
        }
        guard spec.arity.accepts(words.count - 1) else {
            throw here.error("invalid number of arguments in \"\(words[0])\" directive")
        }
        try spec.handler(call)
    }

    private func include(_ pattern: String, call: Call) throws {
        let path = configuration.fullConfPath(pattern)
        let isGlob = pattern.contains(where: { $0 == "*" || $0 == "?" || $0 == "[" })
        let files: [String]
        if isGlob {
            var g = glob_t()
            defer { globfree(&g) }
            let rc = Glibc.glob(path, 0, nil, &g)
            if rc != 0 && rc != GLOB_NOMATCH {
                throw call.error("glob() \"\(path)\" failed")
            }
            files = (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }.sorted()
        } else {
            files = [path]
        }
        if lexers.count > 64 { throw call.error("include nesting is too deep (an include loop?)") }
        for file in files {
            try parseFile(path: file, context: call.context, includedFrom: call.location)
        }
    }
}

extension Lexer {
    func errorHere(_ message: String) -> ConfigError { ConfigError(message, file: file, line: reportedLine) }

    /// Keeps error lines readable when a config is binary garbage.
    static func printableWord(_ w: String) -> String {
        let bytes = Array(w.utf8.prefix(64))
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return w.utf8.count > 64 ? String(decoding: bytes, as: UTF8.self) + "..." : w }
        return bytes.map { printable($0) }.joined()
    }
}

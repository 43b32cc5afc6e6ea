import Script

/// nginx's rewrite module: `set`, `if`, `rewrite`, `return`, `break`, compiled into the program of the
/// `server` or `location` they are in (an `if` block's directives join that program behind a jump).
/// Regexes compile here, so `-t` reports a bad one with its file:line, as nginx does.
enum RewriteDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("return", .script, .oneOrTwo) { call in
            let first = call.words[1]
            if let code = Values.plainNumber(first) {
                guard code <= 999 else { throw call.error("invalid return code \"\(first)\"") }
                program(call).append(.return(code, call.words.count == 3 ? try template(call, call.words[2]) : nil))
            } else {
                guard call.words.count == 2,
                      first.hasPrefix("http://") || first.hasPrefix("https://") || first.hasPrefix("$scheme") else {
                    throw call.error("invalid return code \"\(first)\"")
                }
                program(call).append(.return(302, try template(call, first)))
            }
        },
        Directives.spec("set", .script, .two) { call in
            let variable = try assignable(call, call.words[1])
            let value = try template(call, call.words[2])
            if case .user(let index) = variable { program(call).append(.set(index, value)) } else { program(call).append(.setBuiltin(variable, value)) }
        },
        Directives.spec("rewrite", .script, Arity(min: 2, max: 3)) { call in
            let re = try regex(call, call.words[1], caseless: false)
            var flag: Program.RewriteFlag?
            if call.words.count == 4 {
                guard let f = Program.RewriteFlag(rawValue: call.words[3]) else { throw call.error("invalid parameter \"\(call.words[3])\"") }
                flag = f
            }
            program(call).append(.rewrite(re, try template(call, call.words[2]), flag))
        },
        Directives.spec("break", .script, .none) { call in program(call).append(.stop) },
        Directives.spec("if", [.server, .location], .oneOrMore, block: true, parseIf),
        // Vigil logs nothing per rewrite, and unset variables are empty without a warning.
        Directives.spec("rewrite_log", [.http, .script], .one) { call in
            if try Directives.flagArg(call) { call.noEffect("rewrites are not logged") }
        },
        Directives.accepted("uninitialized_variable_warn", [.http, .script], .one, "a variable without a value is empty, without a warning"),
    ]

    /// The variable `set` or `auth_request_set` assigns: a built-in with a set handler, else one the
    /// configuration declares (a built-in without one is nginx's duplicate).
    static func assignable(_ call: Call, _ name: String) throws -> Variable {
        guard name.hasPrefix("$"), name.count > 1 else { throw call.error("invalid variable name \"\(name)\"") }
        let bare = String(name.dropFirst())
        if Variable.isSettable(bare) { return Variable(name: bare) }
        if Variable.isBuiltin(bare) { throw call.error("the duplicate \"\(bare)\" variable") }
        return .user(Directives.http(call).variables.declare(bare))
    }

    static func program(_ call: Call) -> Program {
        switch call.context {
        case .server(let s, _): return s.script
        case .location(let l, _, _): return l.script
        case .ifBlock(let p, _, _): return p
        default: preconditionFailure("rewrite directive \(call.name) outside server/location")
        }
    }

    /// A template of the rewrite module's directives: an unknown variable in it is an error at load.
    static func template(_ call: Call, _ text: String) throws -> Template {
        let t = Template(text)
        Directives.http(call).pendingTemplates.append((t, call.location, strict: true))
        return t
    }

    /// A template of a directive where Vigil has always expanded a variable it does not know to "" (headers
    /// sent upstream, error_page targets, hash keys, log formats): its names resolve at load all the same.
    static func lenientTemplate(_ call: Call, _ text: String) -> Template {
        let t = Template(text)
        Directives.http(call).pendingTemplates.append((t, call.location, strict: false))
        return t
    }

    static func regex(_ call: Call, _ pattern: String, caseless: Bool) throws -> Regex {
        do {
            let re = try Regex(pattern, caseless: caseless)
            // nginx makes a named group a variable: `(?<id>\d+)` sets $id.
            re.bindings = re.names.map { ($0.group, Directives.http(call).variables.declare($0.name)) }
            return re
        } catch let e as Regex.CompileError {
            throw call.error(e.description)
        }
    }

    /// As nginx's: `(` and `)` may stand alone or stick to the first and last words.
    static func parseIf(_ call: Call) throws {
        var words = Array(call.args)
        if words.first == "(" { words.removeFirst() } else if words[0].hasPrefix("(") { words[0].removeFirst() } else {
            throw call.error("invalid condition \"\(call.args.joined(separator: " "))\"")
        }
        if words.last == ")" { words.removeLast() } else if let last = words.last, last.hasSuffix(")") {
            words[words.count - 1].removeLast()
        } else {
            throw call.error("invalid condition \"\(call.args.joined(separator: " "))\"")
        }
        words.removeAll { $0.isEmpty }
        let condition: Program.Condition
        switch words.count {
        case 1:
            guard words[0].hasPrefix("$") else { throw call.error("invalid condition \"\(words[0])\"") }
            condition = .variable(try template(call, words[0]))
        case 2:
            let op = words[0]
            let negate = op.hasPrefix("!")
            guard let test = Program.FileTest(rawValue: negate ? String(op.dropFirst()) : op) else {
                throw call.error("invalid condition \"\(op)\"")
            }
            condition = .file(test, try template(call, words[1]), negate: negate)
        case 3:
            let subject = try template(call, words[0])
            switch words[1] {
            case "=", "!=": condition = .equals(subject, try template(call, words[2]), negate: words[1] == "!=")
            case "~", "~*", "!~", "!~*":
                let op = words[1]
                condition = .matches(subject, try regex(call, words[2], caseless: op.hasSuffix("*")), negate: op.hasPrefix("!"))
            default: throw call.error("unexpected \"\(words[1])\" in condition")
            }
        default:
            throw call.error("invalid condition \"\(call.args.joined(separator: " "))\"")
        }
        let p = program(call)
        let at = p.count
        p.append(.unless(condition, -1))
        var block: Location?
        if case .location(let parent, _, _) = call.context {
            // As nginx's: the block is a nameless location; holding, its configuration is the request's.
            let l = Location(ifIn: parent, location: call.location)
            p.append(.select(parent.ifBlocks.count))
            parent.ifBlocks.append(l)
            block = l
        }
        try call.parseBlock(.ifBlock(p, Directives.http(call), block))
        p.patchJump(at: at)
    }
}

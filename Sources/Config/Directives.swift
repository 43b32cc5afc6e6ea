#if canImport(Glibc)
import Glibc
#endif
import Core
import Script

/// The directive table: every directive Vigil knows, where it may appear, how many arguments it takes,
/// and the handler that validates and stores it. A directive that is not here is an error.
struct Arity {
    let min: Int
    let max: Int
    func accepts(_ n: Int) -> Bool { n >= min && n <= max }
    static let none = Arity(min: 0, max: 0)
    static let one = Arity(min: 1, max: 1)
    static let two = Arity(min: 2, max: 2)
    static let oneOrTwo = Arity(min: 1, max: 2)
    static let zeroOrOne = Arity(min: 0, max: 1)
    static let zeroToTwo = Arity(min: 0, max: 2)
    static let oneToFour = Arity(min: 1, max: 4)
    static let oneOrMore = Arity(min: 1, max: .max)
    static let twoOrMore = Arity(min: 2, max: .max)
}

struct DirectiveSpec {
    let name: String
    let contexts: Contexts
    let arity: Arity
    let isBlock: Bool
    let handler: (Call) throws -> Void
}

enum Directives {
    static let table: [String: [DirectiveSpec]] = {
        var t: [String: [DirectiveSpec]] = [:]
        for spec in MainDirectives.specs + HTTPCore.specs + Proxy.specs + GatewayDirectives.specs + UpstreamDirectives.specs + CheckDirectives.specs
                    + SSLDirectives.specs + SSLDirectives.upstreamSSL("proxy", \.proxySSL) + SSLDirectives.upstreamSSL("uwsgi", \.uwsgiSSL)
                    + SSLDirectives.refused + RewriteDirectives.specs + MapDirective.specs
                    + GzipDirectives.specs + AutoIndexDirectives.specs + CharsetDirectives.specs + TuningDirectives.specs
                    + GeoDirectives.specs + LimitDirectives.specs + RealIPDirectives.specs + AuthDirectives.specs
                    + HTTP2Directives.specs + UpsyncDirectives.specs + UpstreamAPIDirectives.specs {
            t[spec.name, default: []].append(spec)
        }
        return t
    }()

    static func spec(_ name: String, _ contexts: Contexts, _ arity: Arity, block: Bool = false,
                     _ handler: @escaping (Call) throws -> Void) -> DirectiveSpec {
        DirectiveSpec(name: name, contexts: contexts, arity: arity, isBlock: block, handler: handler)
    }

    /// `types { text/html html htm; }`
    static func addTypes(_ call: Call, _ table: TypesTable) throws {
        let mime = call.words[0]
        guard call.words.count > 1 else { throw call.error("invalid number of arguments in \"types\" directive") }
        for ext in call.args {
            let key = ext.lowercased()
            if let old = table.map[key], old != mime {
                call.warn("duplicate extension \"\(ext)\", content type: \"\(mime)\", previous content type: \"\(old)\"")
            }
            table.map[key] = mime
        }
    }

    // MARK: helpers shared by handlers

    /// Applies `body` to the inheritable settings of the block the directive is in.
    static func withSettings(_ call: Call, _ body: (inout HTTPSettings) throws -> Void) rethrows {
        switch call.context {
        case .http(let h): try body(&h.settings)
        case .server(let s, _): try body(&s.settings)
        case .location(let l, _, _), .ifBlock(_, _, let l?), .limitExcept(let l, _): try body(&l.settings)
        default: preconditionFailure("settings directive \(call.name) outside http")
        }
    }

    /// A single-valued setting (`$name` of a module's settings): a second one at the same level is a duplicate.
    static func setOnce<T>(_ call: Call, _ kp: WritableKeyPath<HTTPSettings, Setting<T>>, _ value: T) throws {
        try withSettings(call) { s in
            if s[keyPath: kp].isSet { throw call.duplicate() }
            s[keyPath: kp].wrappedValue = value
        }
    }

    /// A directive nginx lets a level repeat, each adding to what the level already has (its bitmask and types
    /// slots): `ssl_protocols`, `gzip_types`. A value given twice is nginx's warning.
    static func addTo<T: Equatable>(_ call: Call, _ kp: WritableKeyPath<HTTPSettings, Setting<[T]>>, _ values: [T],
                                    warnTwice: (T) -> String? = { _ in nil }) {
        withSettings(call) { s in
            var merged = s[keyPath: kp].isSet ? s[keyPath: kp].wrappedValue : []
            for v in values {
                if merged.contains(v) {
                    if let text = warnTwice(v) { call.warn("duplicate value \"\(text)\"") }
                } else {
                    merged.append(v)
                }
            }
            s[keyPath: kp].wrappedValue = merged
        }
    }

    static func flagArg(_ call: Call) throws -> Bool {
        let v = call.words[1]
        guard let f = Values.flag(v) else {
            throw call.error("invalid value \"\(v)\" in \"\(call.name)\" directive, it must be \"on\" or \"off\"")
        }
        return f
    }

    static func msecArg(_ call: Call, _ v: String) throws -> Int {
        guard let ms = Values.msec(v) else { throw call.directiveError("invalid value") }
        return ms
    }

    static func sizeArg(_ call: Call, _ v: String) throws -> Int {
        guard let n = Values.size(v) else { throw call.directiveError("invalid value") }
        return n
    }

    static func flagSetting(_ name: String, _ kp: WritableKeyPath<HTTPSettings, Setting<Bool>>, _ ctx: Contexts = .httpAll) -> DirectiveSpec {
        spec(name, ctx, .one) { call in try setOnce(call, kp, try flagArg(call)) }
    }

    static func msecSetting(_ name: String, _ kp: WritableKeyPath<HTTPSettings, Setting<Int>>, _ ctx: Contexts = .httpAll) -> DirectiveSpec {
        spec(name, ctx, .one) { call in try setOnce(call, kp, try msecArg(call, call.words[1])) }
    }

    static func sizeSetting(_ name: String, _ kp: WritableKeyPath<HTTPSettings, Setting<Int>>, _ ctx: Contexts = .httpAll) -> DirectiveSpec {
        spec(name, ctx, .one) { call in try setOnce(call, kp, try sizeArg(call, call.words[1])) }
    }

    static func numberSetting(_ name: String, _ kp: WritableKeyPath<HTTPSettings, Setting<Int>>, _ ctx: Contexts = .httpAll) -> DirectiveSpec {
        spec(name, ctx, .one) { call in
            guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid number") }
            try setOnce(call, kp, n)
        }
    }

    /// A tuning knob every nginx.conf or test harness may carry whose purpose Vigil's design makes moot (a hash
    /// size, a temp path for responses it never spools, …): accepted silently, `reason` is for the reader and
    /// the README's list.
    static func accepted(_ name: String, _ ctx: Contexts, _ arity: Arity, _ reason: String) -> DirectiveSpec {
        spec(name, ctx, arity) { _ in }
    }

    /// A flag that asks, when on, for a behaviour Vigil does not have: parsed as nginx parses it (its value
    /// checked, a duplicate refused) and, when on, a `[notice]` with `reason` for `-t`.
    static func noEffectWhenOn(_ spec: DirectiveSpec, _ reason: String) -> DirectiveSpec {
        DirectiveSpec(name: spec.name, contexts: spec.contexts, arity: spec.arity, isBlock: spec.isBlock) { call in
            try spec.handler(call)
            if try flagArg(call) { call.noEffect(reason) }
        }
    }

    /// The location a directive configures: a `location` block, or an `if` block inside one.
    static func location(_ call: Call) -> Location? {
        switch call.context {
        case .location(let l, _, _), .ifBlock(_, _, let l?), .limitExcept(let l, _): return l
        default: return nil
        }
    }

    /// `host[:port]` resolved now (for `resolver` and upstream `server`), with nginx's messages,
    /// which name what the address is for: `no host in upstream "…"`, `invalid port in resolver "…"`.
    static func resolveAddress(_ call: Call, _ text: String, defaultPort: UInt16, noHost: String, in what: String) throws -> [PeerAddress] {
        guard let hp = Resolver.splitHostPort(text), !hp.host.isEmpty else { throw call.error("\(noHost) in \(what) \"\(text)\"") }
        var port = defaultPort
        if let p = hp.port {
            guard let n = Values.port(p) else { throw call.error("invalid port in \(what) \"\(text)\"") }
            port = n
        }
        guard let addrs = Resolver.resolve(host: hp.host, port: port), !addrs.isEmpty else {
            throw call.error("host not found in \(what) \"\(text)\"")
        }
        return addrs
    }

    static func http(_ call: Call) -> HTTPBlock {
        switch call.context {
        case .http(let h), .server(_, let h), .location(_, _, let h), .upstream(_, let h), .ifBlock(_, let h, _), .map(_, let h),
             .limitExcept(_, let h): return h
        default: preconditionFailure("no http block for \(call.name)")
        }
    }
}

/// Main and events contexts: the process model.
enum MainDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("worker_processes", .main, .one) { call in
            try setMainOnce(call)
            let v = call.words[1]
            if v == "auto" {
                call.configuration.workerProcesses = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            } else if let n = Values.plainNumber(v) {
                call.configuration.workerProcesses = n
            } else {
                throw call.directiveError("invalid value")
            }
            if call.configuration.workerProcesses > 1024 { throw call.directiveError("invalid value") }
        },
        Directives.spec("daemon", .main, .one) { call in
            try setMainOnce(call)
            call.configuration.daemon = try Directives.flagArg(call)
        },
        Directives.spec("master_process", .main, .one) { call in
            try setMainOnce(call)
            call.configuration.masterProcess = try Directives.flagArg(call)
            // nginx's single-process debug mode has no workers to elect a checker among.
            if !call.configuration.masterProcess {
                throw call.error("\"master_process off\" is not supported by vigil, which always runs a master and workers")
            }
        },
        Directives.spec("pid", .main, .one) { call in
            try setMainOnce(call)
            call.configuration.pidPath = call.configuration.fullPath(call.words[1])
        },
        Directives.spec("error_log", [.main, .http, .server, .location], .oneOrMore) { call in
            let target = try errorLogTarget(call)
            if case .main = call.context {
                call.configuration.errorLogs.append(target)
            } else {
                Directives.withSettings(call) { $0.log.errorLogs.append(target) }
            }
        },
        Directives.spec("env", .main, .one) { call in call.configuration.env.append(call.words[1]) },
        Directives.spec("worker_rlimit_nofile", .main, .one) { call in
            try setMainOnce(call)
            guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid number") }
            call.configuration.workerRlimitNofile = n
        },
        Directives.spec("user", .main, .oneOrTwo) { call in
            if call.configuration.workerUser != nil { throw call.duplicate() }
            guard WorkerUser.masterIsRoot else {
                call.warn("the \"user\" directive makes sense only if the master process runs with super-user privileges, ignored")
                return
            }
            // Without a group, nginx takes the group of the user's name.
            switch WorkerUser.lookUp(user: call.words[1], group: call.words.last!) {
            case .success(let user): call.configuration.workerUser = user
            case .failure(let f): throw call.error(f.message)
            }
        },
        // Debian's nginx.conf includes modules-enabled/*.conf: it loads, and the modules' directives stay refused
        // by name.
        Directives.spec("load_module", .main, .one) { call in
            call.warn("vigil does not load nginx modules: \"\(call.words[1])\" is not loaded, and its directives are not supported")
        },
        Directives.spec("working_directory", .main, .one) { call in
            try setMainOnce(call)
            call.configuration.workingDirectory = call.configuration.fullPath(call.words[1])
        },
        Directives.spec("worker_rlimit_core", .main, .one) { call in
            try setMainOnce(call)
            guard let n = Values.size(call.words[1]) else { throw call.directiveError("invalid value") }
            call.configuration.workerRlimitCore = n
        },
        Directives.spec("worker_shutdown_timeout", .main, .one) { call in
            try setMainOnce(call)
            call.configuration.workerShutdownTimeout = try Directives.msecArg(call, call.words[1])
        },
        Directives.accepted("pcre_jit", .main, .one, "regular expressions are always JIT-compiled"),
        Directives.accepted("lock_file", .main, .one, "there is no accept mutex and so no lock file"),
        Directives.accepted("timer_resolution", .main, .one, "the clock is read once per turn of the loop"),
        Directives.accepted("worker_priority", .main, .one, "workers keep the master's priority"),
        Directives.spec("events", .main, .none, block: true) { call in
            if call.configuration.events != nil { throw call.duplicate() }
            let events = EventsBlock()
            call.configuration.events = events
            try call.parseBlock(.events(events))
        },
        // Events directives are single-valued too ("is duplicate"); there is only one events block.
        Directives.spec("worker_connections", .events, .one) { call in
            try setMainOnce(call)
            // nginx's wording; Vigil also refuses 0.
            guard let n = Values.plainNumber(call.words[1]), n > 0 else { throw call.error("invalid number \"\(call.words[1])\"") }
            events(call).workerConnections = n
        },
        Directives.spec("use", .events, .one) { call in
            try setMainOnce(call)
            guard call.words[1] == "epoll" else { throw call.error("invalid event type \"\(call.words[1])\"") }
        },
        Directives.spec("multi_accept", .events, .one) { call in
            try setMainOnce(call)
            events(call).multiAccept = try Directives.flagArg(call)
        },
        Directives.spec("accept_mutex", .events, .one) { call in
            try setMainOnce(call)
            if try Directives.flagArg(call) { call.noEffect("EPOLLEXCLUSIVE spreads connections over the workers without an accept mutex") }
        },
        Directives.accepted("accept_mutex_delay", .events, .one, "EPOLLEXCLUSIVE spreads connections over the workers without an accept mutex"),
        // nginx --with-debug's: requests from these clients write their debug lines to every error log,
        // whatever its level.
        Directives.spec("debug_connection", .events, .one) { call in
            let v = call.words[1]
            if v == "unix:" { return events(call).debugUnixClients = true }
            if let cidr = HTTPCore.parseCIDR(v) { return events(call).debugConnections.append(cidr) }
            guard let addrs = Resolver.resolve(host: v, port: 0), !addrs.isEmpty else { throw call.error("host not found in debug_connection \"\(v)\"") }
            events(call).debugConnections += addrs.compactMap { IPAddress.bytes($0.host).map { CIDR(bytes: $0, prefix: $0.count * 8) } }
        },
        Directives.spec("http", .main, .none, block: true) { call in
            if call.configuration.http != nil { throw call.duplicate() }
            let http = HTTPBlock()
            call.configuration.http = http
            try call.parseBlock(.http(http))
        },
    ]

    static func events(_ call: Call) -> EventsBlock {
        guard case .events(let e) = call.context else { preconditionFailure() }
        return e
    }

    /// Single-valued main directives: a second one (even from `-g`) is "is duplicate", as in nginx.
    static func setMainOnce(_ call: Call) throws {
        if !call.configuration.seenMainDirectives.insert(call.name).inserted { throw call.duplicate() }
    }

    static func errorLogTarget(_ call: Call) throws -> ErrorLogTarget {
        let file = call.words[1]
        if file.hasPrefix("memory:") {
            throw call.error("\"memory\" error log targets are not supported by vigil")
        }
        let syslog = file.hasPrefix("syslog:") ? try Directives.syslogTarget(call, file) : nil
        var level = LogLevel.error
        if call.words.count > 2 {
            guard call.words.count == 3, let l = LogLevel(name: call.words[2]) else {
                throw call.error("invalid log level \"\(call.words[call.words.count > 3 ? 3 : 2])\"")
            }
            level = l
        }
        return ErrorLogTarget(path: syslog == nil ? call.configuration.fullPath(file) : file, level: level, syslog: syslog)
    }
}

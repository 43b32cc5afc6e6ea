#if canImport(Glibc)
import Glibc
#endif
import Core
import Script

/// http, server and location directives (nginx's http core, log, access and return modules).
enum HTTPCore {
    static let hashes = "lookups are not hash tables sized by it"
    static let neverSpooled = "responses are relayed as they arrive and never spooled to a file"

    static let specs: [DirectiveSpec] = [
        Directives.spec("server", .http, .none, block: true) { call in
            let http = Directives.http(call)
            let server = Server(location: call.location)
            http.servers.append(server)
            try call.parseBlock(.server(server, http))
        },
        Directives.spec("listen", .server, .oneOrMore, parseListen),
        Directives.spec("server_name", .server, .oneOrMore) { call in
            guard case .server(let s, _) = call.context else { return }
            for name in call.args {
                if name.hasPrefix("*") && (name.count < 3 || !name.dropFirst().hasPrefix(".")) || name.hasPrefix(".") && name.count < 2 {
                    throw call.error("server name \"\(name)\" is invalid")
                }
                if name.contains("/") { call.warn("server name \"\(name)\" has suspicious symbols") }
                if s.serverNames.isEmpty && s.serverNameRegexes.isEmpty {
                    let written = name.hasPrefix("~") ? name : name.lowercased()
                    s.name = written.hasPrefix(".") ? String(written.dropFirst()) : written
                }
                // `~regex`: matched against the lowercased Host after the exact and wildcard names, without
                // case when it has a capital letter; its named groups are variables.
                if name.hasPrefix("~") {
                    guard name.count > 1 else { throw call.error("empty regex in server name \"\(name)\"") }
                    let pattern = String(name.dropFirst())
                    let caseless = pattern.utf8.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
                    s.serverNameRegexes.append(try RewriteDirectives.regex(call, pattern, caseless: caseless))
                } else {
                    s.serverNames.append(name.lowercased())
                }
            }
        },
        Directives.spec("location", [.server, .location], .oneOrTwo, block: true, parseLocation),
        Directives.spec("default_type", .httpAll, .one) { call in try Directives.setOnce(call, \.core.$defaultType, call.words[1]) },
        Directives.spec("types", .httpAll, .none, block: true) { call in
            // As nginx: a second block at the same level adds to the first.
            let table = TypesTable()
            Directives.withSettings(call) { s in if s.core.$types.isSet { table.map = s.core.types } }
            try call.parseBlock(.types(table))
            Directives.withSettings(call) { $0.core.types = table.map }
        },
        Directives.noEffectWhenOn(Directives.flagSetting("sendfile", \.core.$sendfile, [.httpAll, .locationIf]),
                            "static files are read whole (up to 16 MiB) and written after the response head"),
        Directives.noEffectWhenOn(Directives.flagSetting("tcp_nopush", \.core.$tcpNopush),
                            "it only shapes sendfile's writes, and a response head goes out with its body's first bytes already"),
        Directives.flagSetting("tcp_nodelay", \.core.$tcpNodelay),
        Directives.flagSetting("reset_timedout_connection", \.core.$resetTimedoutConnection),
        Directives.spec("server_tokens", .httpAll, .one) { call in
            let tokens: ServerTokens
            switch call.words[1] {
            case "on", "build": tokens = .on
            case "off": tokens = .off
            case let s: tokens = .custom(try RewriteDirectives.template(call, s))
            }
            try Directives.setOnce(call, \.core.$serverTokens, tokens)
        },
        Directives.spec("add_header", [.httpAll, .locationIf], Arity(min: 2, max: 3)) { call in
            let header = try addedField(call)
            Directives.withSettings(call) { $0.headers.addHeaders.append(header) }
        },
        Directives.spec("add_trailer", [.httpAll, .locationIf], Arity(min: 2, max: 3)) { call in
            let trailer = try addedField(call)
            Directives.withSettings(call) { $0.headers.addTrailers.append(trailer) }
        },
        Directives.flagSetting("absolute_redirect", \.core.$absoluteRedirect),
        Directives.flagSetting("etag", \.core.$etag),
        Directives.numberSetting("max_ranges", \.core.$maxRanges),
        Directives.spec("expires", [.httpAll, .locationIf], .oneOrTwo) { call in
            let modified = call.words.count == 3
            if modified && call.words[1] != "modified" { throw call.directiveError("invalid value") }
            let v = call.words.last!
            let e: ExpiresSetting
            if v.contains("$") {
                e = .variable(try RewriteDirectives.template(call, v), modified: modified)
            } else {
                do throws(ExpiresSetting.Invalid) { e = try ExpiresSetting.parse(v, modified: modified) } catch { throw call.directiveError(error.message) }
            }
            try Directives.setOnce(call, \.headers.$expires, e)
        },
        Directives.flagSetting("port_in_redirect", \.core.$portInRedirect),
        Directives.flagSetting("server_name_in_redirect", \.core.$serverNameInRedirect),
        Directives.spec("keepalive_timeout", .httpAll, .oneOrTwo) { call in
            try Directives.setOnce(call, \.core.$keepaliveTimeout, try Directives.msecArg(call, call.words[1]))
            if call.words.count == 3 {
                try Directives.withSettings(call) { $0.core.keepaliveHeaderTimeout = try Directives.msecArg(call, call.words[2]) / 1000 * 1000 }
            }
        },
        Directives.spec("resolver", .httpAll, .oneOrMore, parseResolver),
        Directives.msecSetting("resolver_timeout", \.core.$resolverTimeout),
        Directives.numberSetting("keepalive_requests", \.core.$keepaliveRequests),
        Directives.msecSetting("keepalive_time", \.core.$keepaliveTime),
        Directives.spec("limit_rate", [.httpAll, .locationIf], .one) { call in try Directives.setOnce(call, \.core.$limitRate, try sizeTemplate(call)) },
        Directives.spec("limit_rate_after", [.httpAll, .locationIf], .one) { call in
            try Directives.setOnce(call, \.core.$limitRateAfter, try sizeTemplate(call))
        },
        Directives.spec("if_modified_since", .httpAll, .one) { call in
            guard let mode = IfModifiedSince(rawValue: call.words[1]) else { throw call.error("invalid value \"\(call.words[1])\"") }
            try Directives.setOnce(call, \.core.$ifModifiedSince, mode)
        },
        Directives.flagSetting("log_not_found", \.core.$logNotFound),
        Directives.accepted("connection_pool_size", [.http, .server], .one, "memory is not allocated in pools"),
        Directives.accepted("request_pool_size", [.http, .server], .one, "memory is not allocated in pools"),
        Directives.spec("keepalive_disable", .httpAll, .oneOrMore) { call in
            var set: KeepaliveDisable = []
            for v in call.args {
                guard let option = KeepaliveDisable.names[v] else { throw call.error("invalid value \"\(v)\"") }
                set.formUnion(option)
            }
            try Directives.setOnce(call, \.core.$keepaliveDisable, set)
        },
        Directives.flagSetting("chunked_transfer_encoding", \.core.$chunkedTransferEncoding),
        Directives.accepted("server_names_hash_bucket_size", .http, .one, hashes),
        Directives.accepted("server_names_hash_max_size", .http, .one, hashes),
        Directives.accepted("variables_hash_bucket_size", .http, .one, hashes),
        Directives.accepted("variables_hash_max_size", .http, .one, hashes),
        Directives.accepted("types_hash_bucket_size", .httpAll, .one, hashes),
        Directives.accepted("types_hash_max_size", .httpAll, .one, hashes),
        Directives.spec("open_log_file_cache", .httpAll, .oneToFour, parseLogFileCache),
        Directives.sizeSetting("client_max_body_size", \.core.$clientMaxBodySize),
        Directives.msecSetting("client_header_timeout", \.core.$clientHeaderTimeout, [.http, .server]),
        Directives.msecSetting("client_body_timeout", \.core.$clientBodyTimeout),
        Directives.msecSetting("send_timeout", \.core.$sendTimeout),
        Directives.sizeSetting("client_header_buffer_size", \.core.$clientHeaderBufferSize, [.http, .server]),
        Directives.sizeSetting("client_body_buffer_size", \.core.$clientBodyBufferSize),
        Directives.flagSetting("merge_slashes", \.core.$mergeSlashes, [.http, .server]),
        Directives.flagSetting("ignore_invalid_headers", \.core.$ignoreInvalidHeaders, [.http, .server]),
        Directives.flagSetting("underscores_in_headers", \.core.$underscoresInHeaders, [.http, .server]),
        Directives.spec("large_client_header_buffers", [.http, .server], .two) { call in
            guard let n = Values.plainNumber(call.words[1]), n > 0,
                  let size = Values.size(call.words[2]), size > 0 else { throw call.directiveError("invalid value") }
            try Directives.setOnce(call, \.core.$largeClientHeaderBuffers, LargeHeaderBuffers(count: n, size: size))
        },
        // A body past client_body_buffer_size goes to a file here. Vigil never spills responses to files: the
        // other temp paths are accepted, as nginx tests always emit them.
        Directives.spec("client_body_temp_path", .httpAll, .oneToFour) { call in try Directives.setOnce(call, \.core.$clientBodyTempPath, call.words[1]) },
        Directives.spec("client_body_in_file_only", .httpAll, .one) { call in
            guard let v = BodyInFileOnly(rawValue: call.words[1]) else { throw call.error("invalid value \"\(call.words[1])\"") }
            try Directives.setOnce(call, \.core.$clientBodyInFileOnly, v)
        },
        // A body Vigil keeps in memory is always one buffer.
        Directives.spec("client_body_in_single_buffer", .httpAll, .one) { call in _ = try Directives.flagArg(call) },
        Directives.accepted("proxy_temp_path", .httpAll, .oneToFour, neverSpooled),
        Directives.accepted("fastcgi_temp_path", .httpAll, .oneToFour, neverSpooled),
        Directives.accepted("uwsgi_temp_path", .httpAll, .oneToFour, neverSpooled),
        Directives.accepted("scgi_temp_path", .httpAll, .oneToFour, neverSpooled),
        Directives.spec("root", [.httpAll, .locationIf], .one) { call in
            if case .location(let l, _, _) = call.context, l.alias != nil {
                throw call.error("\"root\" directive is duplicate, \"alias\" directive was specified earlier")
            }
            try Directives.setOnce(call, \.core.$root, call.words[1])
        },
        Directives.spec("alias", .location, .one) { call in
            guard case .location(let l, _, _) = call.context else { return }
            if l.alias != nil { throw call.duplicate() }
            if l.settings.core.$root.isSet {
                throw call.error("\"alias\" directive is duplicate, \"root\" directive was specified earlier")
            }
            if case .regex = l.match {
                l.alias = Alias(path: call.words[1], replacedPrefix: nil)
            } else {
                l.alias = Alias(path: call.words[1], replacedPrefix: l.pattern)
            }
        },
        Directives.spec("limit_except", .location, .oneOrMore, block: true) { call in
            guard case .location(let l, _, let http) = call.context else { return }
            if l.limitExcept != nil { throw call.duplicate() }
            var methods = Set<String>()
            for m in call.args {
                guard HTTPCore.limitableMethods.contains(m) else { throw call.error("invalid method \"\(m)\"") }
                methods.insert(m)
            }
            if methods.contains("GET") { methods.insert("HEAD") }
            let block = Location(ifIn: l, location: call.location)
            l.limitExcept = (methods, block)
            try call.parseBlock(.limitExcept(block, http))
        },
        Directives.spec("internal", .location, .none) { call in
            guard case .location(let l, _, _) = call.context else { return }
            if l.isInternal { throw call.duplicate() }
            l.isInternal = true
        },
        Directives.spec("try_files", [.server, .location], .twoOrMore) { call in try tryFiles(call) },
        Directives.spec("index", .httpAll, .oneOrMore) { call in
            let names = call.args.map { RewriteDirectives.lenientTemplate(call, $0) }
            Directives.withSettings(call) { s in s.core.index = (s.core.$index.isSet ? s.core.index : []) + names }
        },
        Directives.spec("log_format", .http, .twoOrMore) { call in
            let http = Directives.http(call)
            let name = call.words[1]
            if http.logFormats[name] != nil { throw call.error("duplicate \"log_format\" name \"\(name)\"") }
            var parts = Array(call.words.dropFirst(2))
            var escape = LogEscape.default
            if let first = parts.first, first.hasPrefix("escape=") {
                guard let e = LogEscape(rawValue: String(first.dropFirst(7))) else {
                    throw call.error("unknown log format escaping \"\(first.dropFirst(7))\"")
                }
                escape = e
                parts.removeFirst()
                guard !parts.isEmpty else { throw call.error("invalid number of arguments in \"log_format\" directive") }
            }
            http.logFormats[name] = LogFormat(name: name, escape: escape, template: RewriteDirectives.lenientTemplate(call, parts.joined()))
        },
        Directives.spec("access_log", [.httpAll, .locationIf, .limitExcept], .oneOrMore, parseAccessLog),
        Directives.spec("allow", [.httpAll, .limitExcept], .one) { call in try addAccessRule(call, allow: true) },
        Directives.spec("deny", [.httpAll, .limitExcept], .one) { call in try addAccessRule(call, allow: false) },
        Directives.spec("error_page", [.httpAll, .locationIf], .twoOrMore, parseErrorPage),
        Directives.spec("stub_status", [.server, .location], .zeroOrOne) { call in
            try setContent(call, .stubStatus)
        },
    ]

    static func parseResolver(_ call: Call) throws {
        try Directives.setOnce(call, \.core.$resolver, resolverSetting(call))
    }

    /// As nginx's: parameters anywhere among the addresses; a name is resolved now, port 53 by default.
    static func resolverSetting(_ call: Call) throws -> ResolverSetting {
        var setting = ResolverSetting(servers: [], text: call.args.joined(separator: " "))
        for word in call.args {
            func flag(_ prefix: String) throws -> Bool {
                guard let f = Values.flag(String(word.dropFirst(prefix.count))) else { throw call.error("invalid parameter: \(word)") }
                return f
            }
            if word.hasPrefix("valid=") {
                guard let ms = Values.msec(String(word.dropFirst(6))) else { throw call.error("invalid parameter: \(word)") }
                setting.validMs = ms
            } else if word.hasPrefix("ipv4=") {
                setting.ipv4 = try flag("ipv4=")
            } else if word.hasPrefix("ipv6=") {
                setting.ipv6 = try flag("ipv6=")
            } else {
                setting.servers += try Directives.resolveAddress(call, word, defaultPort: 53, noHost: "invalid host", in: "resolver")
            }
        }
        if !setting.ipv4 && !setting.ipv6 { throw call.error("\"ipv4\" and \"ipv6\" cannot both be \"off\"") }
        guard !setting.servers.isEmpty else { throw call.error("invalid number of arguments in \"resolver\" directive") }
        return setting
    }

    /// A size that may come from variables (nginx's complex value of a size): checked now when it has none.
    static func sizeTemplate(_ call: Call) throws -> Template {
        let text = call.words[1]
        if !text.contains("$") { _ = try Directives.sizeArg(call, text) }
        return try RewriteDirectives.template(call, text)
    }

    static func tryFiles(_ call: Call) throws {
        let args = Array(call.args)
        // A name ending in "/" tests for a directory; the last argument is never a candidate.
        let candidates = args.dropLast().map { word -> TryFiles.Candidate in
            let isDirectory = word.hasSuffix("/")
            return TryFiles.Candidate(name: RewriteDirectives.lenientTemplate(call, isDirectory ? String(word.dropLast()) : word),
                                      isDirectory: isDirectory)
        }
        let last = args[args.count - 1]
        let fallback: TryFiles.Fallback
        if last.hasPrefix("=") {
            guard let code = Values.plainNumber(last.dropFirst()), code <= 999 else { throw call.error("invalid code \"\(last)\"") }
            fallback = .status(code)
        } else {
            fallback = .uri(RewriteDirectives.lenientTemplate(call, last))
        }
        let tf = TryFiles(candidates: candidates, fallback: fallback)
        switch call.context {
        case .location(let l, _, _):
            if l.tryFiles != nil { throw call.duplicate() }
            l.tryFiles = tf
        case .server(let s, _):
            if s.tryFiles != nil { throw call.duplicate() }
            s.tryFiles = tf
        default: preconditionFailure()
        }
    }

    /// The methods limit_except may name: nginx's own.
    static let limitableMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "MKCOL", "COPY", "MOVE", "OPTIONS",
                                                "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "PATCH"]

    static func setContent(_ call: Call, _ handler: ContentHandler) throws {
        switch call.context {
        case .location(let l, _, _):
            if case .none = l.content {} else { throw call.duplicate() }
            l.content = handler
        case .server(let s, _):
            if case .none = s.content {} else { throw call.duplicate() }
            s.content = handler
        default:
            break
        }
    }

    static func parseListen(_ call: Call) throws {
        guard case .server(let server, _) = call.context else { return }
        let text = call.words[1]
        var host = "0.0.0.0", portText: String?
        if text.hasPrefix("unix:") {
            guard text.count > 5 else { throw call.error("no path in the unix domain socket \"\(text)\"") }
            host = text   // a unix-domain socket: the path is the address, port 0
        } else if Values.plainNumber(text) != nil {
            portText = text
        } else {
            guard let hp = Resolver.splitHostPort(text) else { throw call.error("invalid host in \"\(text)\" of the \"listen\" directive") }
            host = hp.host == "*" ? "0.0.0.0" : hp.host
            portText = hp.port
        }
        var port = 80
        if let portText {
            guard let p = Values.plainNumber(portText), p >= 1, p <= 65535 else {
                throw call.error("invalid port in \"\(text)\" of the \"listen\" directive")
            }
            port = p
        }
        let unix = host.hasPrefix("unix:")
        guard let addrs = unix ? [PeerAddress(host: host, port: 0, isIPv6: false)] : Resolver.resolve(host: host, port: UInt16(port)),
              let first = addrs.first else {
            throw call.error("host not found in \"\(text)\" of the \"listen\" directive")
        }
        var listen = Listen(address: ListenAddress(host: first.host, port: first.port, isIPv6: first.isIPv6),
                            defaultServer: false, backlog: 511, reusePort: false, ipv6Only: true, location: call.location)
        for p in call.args.dropFirst() {
            switch p {
            case "default_server", "default": listen.defaultServer = true
            case "reuseport": listen.reusePort = true
            case "bind": break   // Vigil binds every address it listens on
            case "deferred": listen.options.deferred = true
            case _ where p.hasPrefix("rcvbuf="):
                guard let n = Values.size(String(p.dropFirst(7))), n > 0, n <= Int(Int32.max) else { throw call.error("invalid rcvbuf \"\(p.dropFirst(7))\"") }
                listen.options.receiveBuffer = Int32(n)
            case _ where p.hasPrefix("sndbuf="):
                guard let n = Values.size(String(p.dropFirst(7))), n > 0, n <= Int(Int32.max) else { throw call.error("invalid sndbuf \"\(p.dropFirst(7))\"") }
                listen.options.sendBuffer = Int32(n)
            case _ where p.hasPrefix("fastopen="):
                guard let n = Values.plainNumber(p.dropFirst(9)), n <= Int(Int32.max) else { throw call.error("invalid fastopen \"\(p.dropFirst(9))\"") }
                listen.options.fastOpen = Int32(n)
            case _ where p.hasPrefix("so_keepalive="):
                try parseKeepalive(String(p.dropFirst(13)), into: &listen.options, call)
            case _ where p.hasPrefix("accept_filter="):
                call.warn("accept filters \"\(p)\" are not supported on this platform, ignored")
            case _ where p.hasPrefix("backlog="):
                guard let n = Values.plainNumber(p.dropFirst(8)), n > 0, n <= Int(Int32.max) else {
                    throw call.error("invalid backlog \"\(p.dropFirst(8))\"")
                }
                listen.backlog = Int32(n)
            case "ipv6only=on": listen.ipv6Only = true
            case "ipv6only=off": listen.ipv6Only = false
            case "ssl": listen.ssl = true
            case "proxy_protocol": listen.proxyProtocol = true
            case "http2": listen.http2 = true
            case "quic":
                throw call.error("the \"\(p)\" parameter of \"listen\" is not supported by vigil")
            default:
                throw call.error("invalid parameter \"\(p)\"")
            }
        }
        server.listens.append(listen)
    }

    /// `so_keepalive=on|off|[idle]:[interval]:[count]`, as nginx reads it.
    private static func parseKeepalive(_ v: String, into o: inout ListenOptions, _ call: Call) throws {
        let invalid = call.error("invalid so_keepalive value: \"\(v)\"")
        switch v {
        case "on": o.keepalive = true
        case "off": o.keepalive = false
        default:
            let parts = v.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3 else { throw invalid }
            func seconds(_ s: Substring) throws -> Int32? {
                if s.isEmpty { return nil }
                guard let n = Values.seconds(String(s)), n > 0, n <= Int(Int32.max) else { throw invalid }
                return Int32(n)
            }
            o.keepaliveIdle = try seconds(parts[0])
            o.keepaliveInterval = try seconds(parts[1])
            if !parts[2].isEmpty {
                guard let n = Values.plainNumber(parts[2]), n > 0, n <= Int(Int32.max) else { throw invalid }
                o.keepaliveCount = Int32(n)
            }
            guard o.keepaliveIdle != nil || o.keepaliveInterval != nil || o.keepaliveCount != nil else { throw invalid }
            o.keepalive = true
        }
    }

    static func parseLocation(_ call: Call) throws {
        let http = Directives.http(call)
        let match: LocationMatch
        let pattern: String
        if call.words.count == 3 {
            switch call.words[1] {
            case "=": match = .exact
            case "^~": match = .preferentialPrefix
            case "~": match = .regex(caseInsensitive: false)
            case "~*": match = .regex(caseInsensitive: true)
            default: throw call.error("invalid location modifier \"\(call.words[1])\"")
            }
            pattern = call.words[2]
        } else {
            let w = call.words[1]
            if w.hasPrefix("=") && w.count > 1 { match = .exact; pattern = String(w.dropFirst()) }
            else if w.hasPrefix("^~") && w.count > 2 { match = .preferentialPrefix; pattern = String(w.dropFirst(2)) }
            else if w.hasPrefix("~*") && w.count > 2 { match = .regex(caseInsensitive: true); pattern = String(w.dropFirst(2)) }
            else if w.hasPrefix("~") && w.count > 1 { match = .regex(caseInsensitive: false); pattern = String(w.dropFirst()) }
            else if w.hasPrefix("@") { match = .named; pattern = w }
            else { match = .prefix; pattern = w }
        }
        let loc = Location(match: match, pattern: pattern, location: call.location)
        switch call.context {
        case .server(let server, _):
            server.locations.append(loc)
            try call.parseBlock(.location(loc, server, http))
        case .location(let parent, let server, _):
            if match == .named { throw call.error("named location \"\(pattern)\" can be on the server level only") }
            if parent.match == .exact {
                throw call.error("location \"\(pattern)\" cannot be inside the exact location \"\(parent.pattern)\"")
            }
            if parent.match == .named {
                throw call.error("location \"\(pattern)\" cannot be inside the named location \"\(parent.pattern)\"")
            }
            let isPrefix = match == .exact || match == .prefix || match == .preferentialPrefix
            let parentIsPrefix = parent.match == .prefix || parent.match == .preferentialPrefix
            if isPrefix && parentIsPrefix && !pattern.hasPrefix(parent.pattern) {
                throw call.error("location \"\(pattern)\" is outside location \"\(parent.pattern)\"")
            }
            parent.locations.append(loc)
            try call.parseBlock(.location(loc, server, http))
        default:
            break
        }
    }

    static func parseAccessLog(_ call: Call) throws {
        let http = Directives.http(call)
        if call.words[1] == "off" {
            guard call.words.count == 2 else { throw call.error("invalid parameter \"\(call.words[2])\"") }
            try Directives.withSettings(call) { s in
                if !s.log.accessLogs.isEmpty { throw call.duplicate() }
                s.log.accessLogs = []
            }
            return
        }
        let syslog = call.words[1].hasPrefix("syslog:") ? try Directives.syslogTarget(call, call.words[1]) : nil
        var format = "combined"
        var rest = call.args.dropFirst()
        if let f = rest.first, !f.contains("=") {
            format = f
            rest = rest.dropFirst()
        }
        guard http.logFormats[format] != nil else { throw call.error("unknown log format \"\(format)\"") }
        var condition: Template?
        var buffered = false
        for p in rest {
            if p.hasPrefix("if=") {
                condition = try RewriteDirectives.template(call, String(p.dropFirst(3)))
                continue
            }
            // Vigil writes each line as it is produced; buffering parameters only tune that.
            guard p.hasPrefix("buffer=") || p.hasPrefix("flush=") || p == "gzip" || p.hasPrefix("gzip=") else {
                throw call.error("invalid parameter \"\(p)\"")
            }
            buffered = buffered || !p.hasPrefix("flush=")
        }
        if let syslog {
            if buffered { throw call.error("logs to syslog cannot be buffered") }
            let target = AccessLogTarget(path: call.words[1], format: format, condition: condition, syslog: syslog)
            Directives.withSettings(call) { s in s.log.accessLogs.append(target) }
            return
        }
        let path = call.configuration.fullPath(call.words[1])
        let target = AccessLogTarget(path: path, pathTemplate: path.contains("$") ? RewriteDirectives.lenientTemplate(call, path) : nil,
                                     format: format, condition: condition)
        Directives.withSettings(call) { s in s.log.accessLogs.append(target) }
    }

    /// As nginx's: parameters in any order, `off` alone or among them, `max` required; inactive 10s, min_uses 1,
    /// valid 60s.
    /// `add_header` and `add_trailer`: `name value [always]`.
    private static func addedField(_ call: Call) throws -> AddedHeader {
        if call.words.count == 4 && call.words[3] != "always" { throw call.error("invalid value \"\(call.words[3])\"") }
        return AddedHeader(name: call.words[1], value: try RewriteDirectives.template(call, call.words[2]), always: call.words.count == 4)
    }

    static func parseLogFileCache(_ call: Call) throws {
        var max = 0, inactive = 10, minUses = 1, valid = 60, off = false
        func seconds(_ v: String) -> Int? { v.contains("ms") ? nil : Values.msec(v).map { $0 / 1000 } }
        for p in call.args {
            let value = String(p.drop(while: { $0 != "=" }).dropFirst())
            let parsed: Int?
            switch p.prefix(while: { $0 != "=" }) + (p.contains("=") ? "=" : "") {
            case "max=": parsed = Values.plainNumber(value); max = parsed ?? 0
            case "inactive=": parsed = seconds(value); inactive = parsed ?? 0
            case "min_uses=": parsed = Values.plainNumber(value); minUses = parsed ?? 0
            case "valid=": parsed = seconds(value); valid = parsed ?? 0
            case "off": parsed = 0; off = true
            default: parsed = nil
            }
            guard parsed != nil else { throw call.error("invalid \"open_log_file_cache\" parameter \"\(p)\"") }
        }
        if !off && max == 0 { throw call.error("\"open_log_file_cache\" must have \"max\" parameter") }
        let http = Directives.http(call)
        let cache = off ? nil : LogFileCacheSetting(id: http.logFileCaches, max: max, inactive: inactive, minUses: minUses, valid: valid)
        if !off { http.logFileCaches += 1 }
        try Directives.setOnce(call, \.log.$openLogFileCache, cache)
    }

    static func addAccessRule(_ call: Call, allow: Bool) throws {
        let v = call.words[1]
        var rule = AccessRule(allow: allow, network: nil)
        if v != "all" {
            guard let cidr = parseCIDR(v) else { throw call.error("invalid parameter \"\(v)\"") }
            if !cidr.hostBitsZero { call.warn("low address bits of \(v) are meaningless") }
            rule.network = cidr
        }
        Directives.withSettings(call) { s in s.log.accessRules.append(rule) }
    }

    /// `unix:`, an address, or `address/bits`, as nginx's ngx_ptocidr reads them; nil for anything else.
    static func parseCIDR(_ v: String) -> CIDR? {
        if v == "unix:" { return CIDR(bytes: [], prefix: 0) }
        let parts = v.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = IPAddress.bytes(String(parts[0])) else { return nil }
        let bits = bytes.count * 8
        guard parts.count == 2 else { return CIDR(bytes: bytes, prefix: bits) }
        guard let p = Values.plainNumber(parts[1]), p <= bits else { return nil }
        return CIDR(bytes: bytes, prefix: p)
    }

    static func parseErrorPage(_ call: Call) throws {
        var args = Array(call.args)
        let uri = args.removeLast()
        var override: Int?
        if let last = args.last, last.hasPrefix("=") {
            args.removeLast()
            if last == "=" { override = 0 } else {
                guard let c = Values.plainNumber(last.dropFirst()) else { throw call.error("invalid value \"\(last)\"") }
                override = c
            }
        }
        guard !args.isEmpty else { throw call.error("invalid number of arguments in \"error_page\" directive") }
        var codes: [Int] = []
        for a in args {
            guard let c = Values.plainNumber(a) else { throw call.error("invalid value \"\(a)\"") }
            guard (300...599).contains(c), c != 499 else { throw call.error("value \"\(a)\" must be between 300 and 599") }
            codes.append(c)
        }
        let page = ErrorPage(codes: codes, overrideCode: override, uri: RewriteDirectives.lenientTemplate(call, uri))
        Directives.withSettings(call) { s in s.core.errorPages.append(page) }
    }
}

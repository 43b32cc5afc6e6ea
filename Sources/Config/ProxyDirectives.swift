import Core
/// `proxy_*` directives.
enum Proxy {
    static let specs: [DirectiveSpec] = UpstreamFamily.specs("proxy", \.proxy) + [
        Directives.spec("proxy_pass", [.location, .locationIf, .limitExcept], .one, parseProxyPass),
        Directives.spec("proxy_set_header", .httpAll, .two) { call in
            let header = HeaderSetting(name: call.words[1], value: RewriteDirectives.lenientTemplate(call, call.words[2]))
            Directives.withSettings(call) { s in s.proxy.setHeaders.append(header) }
        },
        Directives.spec("proxy_http_version", .httpAll, .one) { call in
            guard let version = ProxyHTTPVersion(rawValue: call.words[1]) else {
                throw call.error("invalid value \"\(call.words[1])\" in \"proxy_http_version\" directive, it must be \"1.0\" or \"1.1\"")
            }
            try Directives.setOnce(call, \.proxy.$httpVersion, version)
        },
        Directives.spec("proxy_cookie_domain", .httpAll, .oneOrTwo) { call in
            try cookieRule(call, \.proxy.$cookieDomains) { words in
                if words[0].hasPrefix("~") {
                    return .regex(try RewriteDirectives.regex(call, String(words[0].dropFirst()), caseless: true),
                                  replacement: RewriteDirectives.lenientTemplate(call, words[1]))
                }
                // The domains' leading dots are not compared.
                func undotted(_ s: String) -> String { s.hasPrefix(".") ? String(s.dropFirst()) : s }
                return .domain(RewriteDirectives.lenientTemplate(call, undotted(words[0])),
                               replacement: RewriteDirectives.lenientTemplate(call, undotted(words[1])))
            }
        },
        Directives.spec("proxy_cookie_path", .httpAll, .oneOrTwo) { call in
            try cookieRule(call, \.proxy.$cookiePaths) { words in
                if words[0].hasPrefix("~") {
                    let caseless = words[0].hasPrefix("~*")
                    return .regex(try RewriteDirectives.regex(call, String(words[0].dropFirst(caseless ? 2 : 1)), caseless: caseless),
                                  replacement: RewriteDirectives.lenientTemplate(call, words[1]))
                }
                return .prefix(RewriteDirectives.lenientTemplate(call, words[0]), replacement: RewriteDirectives.lenientTemplate(call, words[1]))
            }
        },
        Directives.spec("proxy_cookie_flags", .httpAll, .oneOrMore) { call in
            try cookieRule(call, \.proxy.$cookieFlags) { words in
                let cookie: CookieFlagsRule.Cookie = words[0].hasPrefix("~")
                    ? .regex(try RewriteDirectives.regex(call, String(words[0].dropFirst()), caseless: true))
                    : .name(RewriteDirectives.lenientTemplate(call, words[0]))
                return CookieFlagsRule(cookie: cookie, flags: words.dropFirst().map { RewriteDirectives.lenientTemplate(call, $0) })
            }
        },
        Directives.spec("proxy_set_body", .httpAll, .one) { call in
            try Directives.setOnce(call, \.proxy.$setBody, RewriteDirectives.lenientTemplate(call, call.words[1]))
        },
        Directives.spec("proxy_method", .httpAll, .one) { call in
            try Directives.setOnce(call, \.proxy.$method, try RewriteDirectives.template(call, call.words[1]))
        },
        Directives.spec("proxy_redirect", .httpAll, .oneOrTwo) { call in
            let r: ProxyRedirect
            if call.words.count == 2 {
                switch call.words[1] {
                case "off": r = .off
                case "default": r = .default
                default: throw call.error("invalid parameter \"\(call.words[1])\"")
                }
            } else {
                let pattern = call.words[1], replacement = try RewriteDirectives.template(call, call.words[2])
                if pattern.hasPrefix("~*") {
                    r = .regex(try RewriteDirectives.regex(call, String(pattern.dropFirst(2)), caseless: true), replacement)
                } else if pattern.hasPrefix("~") {
                    r = .regex(try RewriteDirectives.regex(call, String(pattern.dropFirst()), caseless: false), replacement)
                } else {
                    r = .rule(try RewriteDirectives.template(call, pattern), replacement)
                }
            }
            try Directives.withSettings(call) { s in
                // The level's own rules so far (the default `default` until one is written here).
                let mine = s.proxy.$redirects.isSet ? s.proxy.redirects : []
                if case .off? = mine.first { throw call.error("invalid parameter \"\(call.words[1])\"") }
                if case .off = r, !mine.isEmpty { throw call.error("invalid parameter \"off\"") }
                s.proxy.redirects = mine + [r]
            }
        },
    ]

    /// A cookie directive: `off` (alone at its level), or one more rule; nginx's errors for a second `off` or a
    /// lone word that is not `off`.
    private static func cookieRule<T>(_ call: Call, _ kp: WritableKeyPath<HTTPSettings, Setting<[T]>>,
                                      _ rule: ([String]) throws -> T) throws {
        let words = Array(call.args)
        if words.count == 1 {
            guard words[0] == "off" else { throw call.invalidParameter(words[0]) }
            try Directives.setOnce(call, kp, [])
            return
        }
        let parsed = try rule(words)
        try Directives.withSettings(call) { s in
            if s[keyPath: kp].isSet && s[keyPath: kp].wrappedValue.isEmpty { throw call.duplicate() }
            s[keyPath: kp].wrappedValue.append(parsed)
        }
    }

    /// A URI replaces the part of the request's that the location matched: only prefix and exact locations have one.
    private static func refuseURI(_ uri: String?, in loc: Location, _ call: Call) throws {
        guard uri != nil, loc.parent != nil || ![.exact, .prefix, .preferentialPrefix].contains(loc.match) else { return }
        throw call.error("\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block")
    }

    static func parseProxyPass(_ call: Call) throws {
        guard let loc = Directives.location(call) else { return }
        if case .none = loc.content {} else { throw call.duplicate() }
        let url = call.words[1]
        guard let (scheme, rest) = ProxyPass.splitScheme(url) else {
            // As nginx: a URL with variables is checked per request, scheme and all.
            if url.contains("$") {
                loc.content = .proxy(ProxyPass(scheme: "", hostText: "$proxy_host", port: nil, uri: nil,
                                               target: .variableURL(try RewriteDirectives.template(call, url)), location: call.location))
                return
            }
            // nginx stops at "invalid URL prefix"; say what was probably meant.
            let guess = url.contains("://") ? nil : "did you mean \"http://\(url)\"?"
            throw call.error("invalid URL prefix", hint: guess)
        }
        // With variables, the host (a unix socket's too) is known per request.
        if rest.contains("$") {
            let t = try RewriteDirectives.template(call, String(rest))
            loc.content = .proxy(ProxyPass(scheme: scheme, hostText: String(rest.prefix(while: { $0 != "/" })), port: nil, uri: nil,
                                           target: .variable(t),
                                           location: call.location))
            return
        }
        // `http://unix:/path:/uri`: the socket's path ends at the next colon; Host is "localhost", as in nginx.
        if let (socket, uri) = ProxyPass.splitUnix(rest) {
            guard let socketPath = socket else { throw call.error("no path in the unix domain socket \"\(rest)\"") }
            try refuseURI(uri, in: loc, call)
            loc.content = .proxy(ProxyPass(scheme: scheme, hostText: "localhost", port: nil, uri: uri,
                                           target: .address([PeerAddress(host: socketPath, port: 0, isIPv6: false)], text: socketPath),
                                           location: call.location))
            return
        }
        let hostPort: Substring
        var uri: String?
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            uri = String(rest[slash...])
        } else {
            hostPort = rest
        }
        guard !hostPort.isEmpty, let hp = Resolver.splitHostPort(String(hostPort)), !hp.host.isEmpty else {
            throw call.error("no host in upstream \"\(url.dropFirst(scheme.count + 3))\"")
        }
        var port: UInt16?
        if let p = hp.port {
            guard let n = Values.port(p) else { throw call.error("invalid port in upstream \"\(hostPort)\"") }
            port = n
        }
        let http = Directives.http(call)
        if port == nil && http.upstream(named: hp.host) == nil {
            http.upstreams.append(Upstream(name: hp.host, firstMention: call.location))
        }
        try refuseURI(uri, in: loc, call)
        let pass = ProxyPass(scheme: scheme, hostText: hp.host, port: port, uri: uri,
                             target: port == nil ? .upstream(hp.host) : .address([], text: String(hostPort)),
                             location: call.location)
        loc.content = .proxy(pass)
    }
}

/// `upstream {}` and the directives inside it, apart from the check module's.
enum UpstreamDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("upstream", .http, .one, block: true) { call in
            let http = Directives.http(call)
            let name = call.words[1]
            let upstream: Upstream
            if let existing = http.upstream(named: name) {
                if existing.declared != nil { throw call.error("duplicate upstream \"\(name)\"") }
                upstream = existing
            } else {
                upstream = Upstream(name: name, firstMention: call.location)
                http.upstreams.append(upstream)
            }
            upstream.declared = call.location
            try call.parseBlock(.upstream(upstream, http))
            // nginx checks this as the block closes, so the error names the line of its `}`.
            if let state = upstream.stateFile {
                // As NGINX Plus: the file holds the servers, and the API changes them in shared memory.
                guard upstream.servers.isEmpty else { throw call.parser.currentLocation.error("\"state\" is incompatible with \"server\" in upstream \"\(name)\"") }
                guard upstream.zone != nil else { throw call.parser.currentLocation.error("\"state\" requires \"zone\" in upstream \"\(name)\"") }
                switch StateFile.read(state) {
                case .failure(let e): throw call.parser.currentLocation.error("cannot read state file \"\(state)\" (\(e.text))")
                case .success(let text):
                    if case .failure(let e) = StateFile.parse(text) { throw call.parser.currentLocation.error("state file \"\(state)\": \(e)") }
                }
            } else if upstream.servers.isEmpty {
                throw call.parser.currentLocation.error("no servers are inside upstream")
            }
        },
        Directives.spec("server", .upstream, .oneOrMore, parseServer),
        Directives.spec("resolver", .upstream, .oneOrMore) { call in
            let u = upstream(call)
            guard u.resolver == nil else { throw call.duplicate() }
            u.resolver = try HTTPCore.resolverSetting(call)
        },
        Directives.spec("resolver_timeout", .upstream, .one) { call in
            let u = upstream(call)
            guard u.resolverTimeout == nil else { throw call.duplicate() }
            u.resolverTimeout = try Directives.msecArg(call, call.words[1])
        },
        Directives.spec("zone", .upstream, .oneOrTwo) { call in
            let name = call.words[1]
            guard !name.isEmpty else { throw call.error("invalid zone name \"\(name)\"") }
            var size = 0
            if call.words.count == 3 {
                guard let n = Values.size(call.words[2]) else { throw call.error("invalid zone size \"\(call.words[2])\"") }
                // nginx's minimum: eight pages.
                guard n >= 8 * 4096 else { throw call.error("zone \"\(name)\" is too small") }
                size = n
            }
            try Directives.http(call).addSharedZone(call, name: name, size: size, use: .upstream)
            upstream(call).zone = name
        },
        Directives.spec("random", .upstream, .zeroToTwo) { call in
            if call.words.count > 1 && call.words[1] != "two" { throw call.invalidParameter(call.words[1]) }
            // least_conn is the only method `two` knows, and its default.
            if call.words.count > 2 && call.words[2] != "least_conn" { throw call.invalidParameter(call.words[2]) }
            try setBalancer(call, .random(two: call.words.count > 1))
        },
        Directives.spec("ip_hash", .upstream, .none) { call in try setBalancer(call, .ipHash) },
        Directives.spec("least_conn", .upstream, .none) { call in try setBalancer(call, .leastConn) },
        Directives.spec("hash", .upstream, .oneOrTwo) { call in
            var consistent = false
            if call.words.count == 3 {
                guard call.words[2] == "consistent" else { throw call.invalidParameter(call.words[2]) }
                consistent = true
            }
            try setBalancer(call, .hash(key: RewriteDirectives.lenientTemplate(call, call.words[1]), consistent: consistent))
        },
        Directives.spec("keepalive", .upstream, .one) { call in
            guard let n = Values.plainNumber(call.words[1]), n > 0 else {
                throw call.error("invalid value \"\(call.words[1])\" in \"keepalive\" directive")
            }
            upstream(call).keepalive = n
        },
        Directives.spec("keepalive_timeout", .upstream, .one) { call in
            upstream(call).keepaliveTimeout = try Directives.msecArg(call, call.words[1])
        },
        Directives.spec("keepalive_time", .upstream, .one) { call in
            upstream(call).keepaliveTime = try Directives.msecArg(call, call.words[1])
        },
        Directives.spec("keepalive_requests", .upstream, .one) { call in
            guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid number") }
            upstream(call).keepaliveRequests = n
        },
    ]

    static func upstream(_ call: Call) -> Upstream {
        guard case .upstream(let u, _) = call.context else { preconditionFailure() }
        return u
    }

    static func setBalancer(_ call: Call, _ b: Balancer) throws {
        let u = upstream(call)
        if u.balancer != .roundRobin { call.warn("load balancing method redefined") }
        if b != .leastConn, let backup = u.servers.first(where: { $0.backup }) {
            throw backup.location.error("balancing method does not support parameter \"backup\"")
        }
        u.balancer = b
    }

    static func parseServer(_ call: Call) throws {
        let u = upstream(call)
        let text = call.words[1]
        var server: UpstreamServer
        if text.hasPrefix("unix:") {
            guard text.count > 5 else { throw call.error("no path in the unix domain socket \"\(text)\"") }
            server = UpstreamServer(text: text, addresses: [PeerAddress(host: text, port: 0, isIPv6: false)], location: call.location)
        } else if let service = call.args.dropFirst().last(where: { $0.hasPrefix("service=") }) {
            // nginx's order of checks for an SRV server.
            guard service.count > 8 else { throw call.error("service is empty") }
            guard call.args.dropFirst().contains("resolve") else { throw call.error("service upstream \"\(text)\" requires \"resolve\" parameter") }
            guard let hp = Resolver.splitHostPort(text), !hp.host.isEmpty else { throw call.error("no host in upstream \"\(text)\"") }
            guard hp.port == nil else { throw call.error("service upstream \"\(text)\" may not have port") }
            guard !Resolver.isNumeric(hp.host) else { throw call.error("service upstream \"\(text)\" requires domain name") }
            let name = String(service.dropFirst(8))
            server = UpstreamServer(text: text, addresses: [], location: call.location)
            server.resolve = (hp.host, 0)
            server.service = (name.contains(".") ? name : "_\(name)._tcp") + "." + hp.host
        } else if call.args.dropFirst().contains("resolve"), let (host, port) = Resolver.hostAndPort(text, defaultPort: 80),
                  !Resolver.isNumeric(host) {
            // As nginx: a name is not resolved now but while running (a numeric address needs no resolving).
            server = UpstreamServer(text: text, addresses: [], location: call.location)
            server.resolve = (host, port)
        } else {
            server = try inetServer(call, text)
        }
        try parseServerParameters(call, &server)
        u.servers.append(server)
    }

    static func inetServer(_ call: Call, _ text: String) throws -> UpstreamServer {
        let addrs = try Directives.resolveAddress(call, text, defaultPort: 80, noHost: "no host", in: "upstream")
        return UpstreamServer(text: text, addresses: addrs, location: call.location)
    }

    static func parseServerParameters(_ call: Call, _ server: inout UpstreamServer) throws {
        let u = upstream(call)
        for p in call.args.dropFirst() {
            if p.hasPrefix("weight=") {
                guard let n = Values.plainNumber(p.dropFirst(7)), n > 0 else { throw call.invalidParameter(p) }
                server.weight = n
            } else if p.hasPrefix("max_fails=") {
                guard let n = Values.plainNumber(p.dropFirst(10)) else { throw call.invalidParameter(p) }
                server.maxFails = n
            } else if p.hasPrefix("max_conns=") {
                guard let n = Values.plainNumber(p.dropFirst(10)) else { throw call.invalidParameter(p) }
                server.maxConns = n
            } else if p.hasPrefix("slow_start=") {
                guard let ms = Values.msec(String(p.dropFirst(11))) else { throw call.invalidParameter(p) }
                server.slowStart = ms
            } else if p.hasPrefix("fail_timeout=") {
                guard let ms = Values.msec(String(p.dropFirst(13))) else { throw call.invalidParameter(p) }
                server.failTimeout = ms
            } else if p == "backup" {
                switch u.balancer {
                case .ipHash, .hash, .random: throw call.error("balancing method does not support parameter \"backup\"")
                default: server.backup = true
                }
            } else if p == "down" {
                server.down = true
            } else if p == "resolve" || (p.hasPrefix("service=") && server.service != nil) {
                continue
            } else {
                throw call.invalidParameter(p)
            }
        }
    }
}

/// `fastcgi_*` directives: the upstream family on `fastcgi.upstream`, and FastCGI's own.
enum FastCGIDirectives {
    static let specs: [DirectiveSpec] = UpstreamFamily.specs("fastcgi", \.fastcgi.upstream) + [
        Directives.spec("fastcgi_pass", [.location, .locationIf], .one) { call in try parsePass(call, .fastcgi) },
        Directives.spec("fastcgi_param", .httpAll, Arity(min: 2, max: 3)) { call in
            if call.words.count == 4 && call.words[3] != "if_not_empty" { throw call.invalidParameter(call.words[3]) }
            let param = FastCGIParam(name: call.words[1], value: RewriteDirectives.lenientTemplate(call, call.words[2]),
                                     ifNotEmpty: call.words.count == 4)
            Directives.withSettings(call) { $0.fastcgi.params.append(param) }
        },
        Directives.spec("fastcgi_index", .httpAll, .one) { call in try Directives.setOnce(call, \.fastcgi.$index, call.words[1]) },
        Directives.spec("fastcgi_split_path_info", .httpAll, .one) { call in
            let re = try RewriteDirectives.regex(call, call.words[1], caseless: false)
            try Directives.setOnce(call, \.fastcgi.$splitPathInfo, re)
        },
        Directives.flagSetting("fastcgi_keep_conn", \.fastcgi.$keepConn),
        Directives.spec("fastcgi_catch_stderr", .httpAll, .one) { call in
            Directives.withSettings(call) { $0.fastcgi.catchStderr.append(call.words[1]) }
        },
    ]

    /// `fastcgi_pass address` (uwsgi_pass and scgi_pass alike): host and port, `unix:/path`, an upstream block's
    /// name, or variables that give one of those per request. No scheme and no URI, as nginx's.
    static func parsePass(_ call: Call, _ proto: UpstreamProtocol) throws {
        guard let loc = Directives.location(call) else { return }
        if case .none = loc.content {} else { throw call.duplicate() }
        let scheme = proto.rawValue
        let text = call.words[1]
        if text.contains("$") {
            loc.content = .proxy(ProxyPass(scheme: scheme, hostText: text, port: nil, uri: nil, target: .variable(try RewriteDirectives.template(call, text)),
                                           location: call.location, upstreamProtocol: proto))
            return
        }
        if text.hasPrefix("unix:") {
            guard text.count > 5 else { throw call.error("no path in the unix domain socket \"\(text)\"") }
            loc.content = .proxy(ProxyPass(scheme: scheme, hostText: "localhost", port: nil, uri: nil,
                                           target: .address([PeerAddress(host: text, port: 0, isIPv6: false)], text: text),
                                           location: call.location, upstreamProtocol: proto))
            return
        }
        guard let hp = Resolver.splitHostPort(text), !hp.host.isEmpty else { throw call.error("no host in upstream \"\(text)\"") }
        var port: UInt16?
        if let p = hp.port {
            guard let n = Values.port(p) else { throw call.error("invalid port in upstream \"\(text)\"") }
            port = n
        }
        let http = Directives.http(call)
        if port == nil && http.upstream(named: hp.host) == nil {
            http.upstreams.append(Upstream(name: hp.host, firstMention: call.location))
        }
        loc.content = .proxy(ProxyPass(scheme: scheme, hostText: hp.host, port: port, uri: nil,
                                       target: port == nil ? .upstream(hp.host) : .address([], text: text),
                                       location: call.location, upstreamProtocol: proto))
    }
}

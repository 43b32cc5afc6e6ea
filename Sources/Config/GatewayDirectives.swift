/// The gateway modules' directives: `fastcgi_*`, `scgi_*` and `uwsgi_*`, each the upstream family, a pass and
/// params on its own settings, and what only it has.
enum GatewayDirectives {
    static let specs: [DirectiveSpec] = common(.fastcgi, \.fastcgi) + common(.scgi, \.scgi) + common(.uwsgi, \.uwsgi) + [
        Directives.spec("fastcgi_index", .httpAll, .one) { call in try Directives.setOnce(call, \.fastcgi.$index, call.words[1]) },
        Directives.spec("fastcgi_split_path_info", .httpAll, .one) { call in
            let re = try RewriteDirectives.regex(call, call.words[1], caseless: false)
            guard re.captureCount == 2 else { throw call.error("pattern \"\(call.words[1])\" must have 2 captures") }
            try Directives.setOnce(call, \.fastcgi.$splitPathInfo, re)
        },
        Directives.flagSetting("fastcgi_keep_conn", \.fastcgi.$keepConn),
        Directives.spec("fastcgi_catch_stderr", .httpAll, .one) { call in
            Directives.withSettings(call) { $0.fastcgi.catchStderr.append(call.words[1]) }
        },
        modifier("uwsgi_modifier1", \.uwsgi.$modifier1),
        modifier("uwsgi_modifier2", \.uwsgi.$modifier2),
    ]

    /// `<module>_pass`, `<module>_param` and the upstream family.
    private static func common(_ proto: UpstreamProtocol, _ kp: WritableKeyPath<HTTPSettings, GatewaySettings>) -> [DirectiveSpec] {
        let prefix = proto.rawValue
        return UpstreamFamily.specs(prefix, kp.appending(path: \.upstream)) + [
            Directives.spec(prefix + "_pass", [.location, .locationIf], .one) { call in try parsePass(call, proto) },
            Directives.spec(prefix + "_param", .httpAll, Arity(min: 2, max: 3)) { call in
                if call.words.count == 4 && call.words[3] != "if_not_empty" { throw call.invalidParameter(call.words[3]) }
                let param = GatewayParam(name: call.words[1], value: RewriteDirectives.lenientTemplate(call, call.words[2]),
                                         ifNotEmpty: call.words.count == 4)
                Directives.withSettings(call) { $0[keyPath: kp].params.append(param) }
            },
        ]
    }

    /// A modifier byte: 0 to 255.
    private static func modifier(_ name: String, _ kp: WritableKeyPath<HTTPSettings, Setting<Int>>) -> DirectiveSpec {
        Directives.spec(name, .httpAll, .one) { call in
            guard let n = Values.plainNumber(call.words[1]) else { throw call.directiveError("invalid number") }
            guard n <= 255 else { throw call.error("value must be between 0 and 255") }
            try Directives.setOnce(call, kp, n)
        }
    }

    /// `fastcgi_pass address` (scgi_pass and uwsgi_pass alike): host and port, `unix:/path`, an upstream block's
    /// name, or variables that give one of those per request. No URI, and no scheme but uwsgi_pass's, as nginx's.
    static func parsePass(_ call: Call, _ proto: UpstreamProtocol) throws {
        guard let loc = Directives.location(call) else { return }
        if case .none = loc.content {} else { throw call.duplicate() }
        var scheme = proto.rawValue
        var text = call.words[1]
        // uwsgi_pass may name its scheme: uwsgi://, or suwsgi:// for uwsgi over TLS.
        if proto == .uwsgi {
            for s in ["uwsgi://", "suwsgi://"] where text.lowercased().hasPrefix(s) {
                scheme = String(s.dropLast(3))
                text = String(text.dropFirst(s.count))
            }
        }
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

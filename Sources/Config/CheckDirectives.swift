import Script

/// The upstream check module's directives, with the reference module's defaults and error wording
///.
enum CheckDirectives {

    static let specs: [DirectiveSpec] = [
        Directives.spec("check", .upstream, .oneOrMore, parseCheck),
        Directives.spec("check_http_send", .upstream, .one) { call in
            let u = UpstreamDirectives.upstream(call)
            // An empty string counts as unset: the type's default payload is sent.
            u.pendingCheck.httpSend = Array(call.words[1].utf8)
            u.sawHTTPSend = true
        },
        Directives.spec("check_http_expect_alive", .upstream, .oneOrMore) { call in
            let u = UpstreamDirectives.upstream(call)
            var set = u.pendingCheck.expectAlive ?? []
            for v in call.args {
                let name = v.lowercased()
                let bit: ExpectAlive
                switch name {
                case "http_2xx": bit = .http2xx
                case "http_3xx": bit = .http3xx
                case "http_4xx": bit = .http4xx
                case "http_5xx": bit = .http5xx
                default:
                    // The reference prints this at warn level and then fails the configuration.
                    throw ConfigError("invalid value \"\(v)\"", level: .warn, file: call.location.file, line: call.location.line)
                }
                if set.contains(bit) { call.warn("duplicate value \"\(v)\"") }
                set.insert(bit)
            }
            u.pendingCheck.expectAlive = set
            u.sawExpectAlive = true
        },
        // Beyond the reference: the response must also hold a text (or match a regex), and carry headers.
        Directives.spec("check_http_expect_body", .upstream, .oneOrTwo) { call in
            let u = UpstreamDirectives.upstream(call)
            if u.sawExpectBody { throw call.duplicate() }
            u.pendingCheck.expectBody = try textMatch(call, Array(call.args))
            u.sawExpectBody = true
        },
        Directives.spec("check_http_expect_header", .upstream, Arity(min: 2, max: 3)) { call in
            let u = UpstreamDirectives.upstream(call)
            let match = HeaderMatch(name: call.words[1].lowercased(), value: try textMatch(call, Array(call.args.dropFirst())))
            u.pendingCheck.expectHeaders.append(match)
        },
        // Envoy's panic threshold: a broken check (a typo in check_http_send) cannot take a whole service offline.
        Directives.spec("check_fail_open", .upstream, .one) { call in
            let u = UpstreamDirectives.upstream(call)
            if u.failOpenPercent != nil { throw call.duplicate() }
            let v = call.words[1]
            guard v.hasSuffix("%"), let n = Values.plainNumber(v.dropLast()), n <= 100 else { throw call.error("invalid value \"\(v)\", it must be a percentage from 0% to 100%") }
            u.failOpenPercent = n
        },
        Directives.spec("check_keepalive_requests", .upstream, .one) { call in
            guard let n = Values.plainNumber(call.words[1]), n >= 1 else { throw call.directiveError("invalid value") }
            let u = UpstreamDirectives.upstream(call)
            u.pendingCheck.keepaliveRequests = n
            u.sawKeepaliveRequests = true
        },
        Directives.spec("check_fastcgi_param", .upstream, .two) { call in
            let u = UpstreamDirectives.upstream(call)
            u.pendingCheck.fastcgiParams = (u.pendingCheck.fastcgiParams ?? []) + [(call.words[1], call.words[2])]
            u.sawFastcgiParams = true
        },
        Directives.spec("check_shm_size", .http, .one) { call in
            let http = Directives.http(call)
            if http.checkShmSize != nil { throw call.duplicate() }
            guard let n = Values.size(call.words[1], allowGiga: false) else { throw call.directiveError("invalid value") }
            http.checkShmSize = n
        },
        // HAProxy's server-state-file: a restart resumes from the peers' last verdicts instead of default_down.
        Directives.spec("check_state_file", .http, .oneOrTwo) { call in
            let http = Directives.http(call)
            if http.checkStateFile != nil { throw call.duplicate() }
            if call.words.count == 3 {
                let p = call.words[2]
                guard p.hasPrefix("interval="), let ms = Values.msec(String(p.dropFirst(9))), ms >= 1000 else { throw call.invalidParameter(p) }
                http.checkStateIntervalMs = ms
            }
            http.checkStateFile = PathSetting(path: call.configuration.fullPath(call.words[1]), location: call.location)
        },
        Directives.spec("check_status", [.server, .location], .zeroOrOne) { call in
            if call.words.count == 2 {
                guard let format = StatusFormat(rawValue: call.words[1]) else { throw call.error("invalid check format \"\(call.words[1])\"") }
                Directives.withSettings(call) { $0.status.format = format }
            }
            try HTTPCore.setContent(call, .checkStatus)
        },
        Directives.flagSetting("check_status_admin", \.status.$admin),
    ]

    /// `"text"` or `~ "regex"` (PCRE2, as nginx's regexes).
    static func textMatch(_ call: Call, _ words: [String]) throws -> TextMatch {
        if words.count == 1 { return .contains(words[0]) }
        guard words[0] == "~" else { throw call.error("invalid parameter \"\(words[0])\"") }
        do { return .regex(try Regex(words[1], caseless: false)) } catch let e as Regex.CompileError { throw call.error(e.description) }
    }

    static func parseCheck(_ call: Call) throws {
        let u = UpstreamDirectives.upstream(call)
        // A second `check` resets the numbers to their defaults but keeps an earlier type, as the reference does.
        var c = CheckSettings()
        if let earlier = u.check { c.type = earlier.type }
        for arg in call.args {
            func number(_ prefix: String) throws -> Int {
                guard let n = Values.plainNumber(arg.dropFirst(prefix.count)), n >= 1 else { throw call.invalidParameter(arg) }
                return n
            }
            if arg.hasPrefix("interval=") { c.interval = try number("interval=") }
            else if arg.hasPrefix("timeout=") { c.timeout = try number("timeout=") }
            else if arg.hasPrefix("rise=") { c.rise = try number("rise=") }
            else if arg.hasPrefix("fall=") { c.fall = try number("fall=") }
            else if arg.hasPrefix("port=") {
                c.port = try number("port=")
                // The reference truncates ports above 65535 to 16 bits; Vigil refuses them.
                if c.port > 65535 { throw call.invalidParameter(arg) }
            } else if arg.hasPrefix("type=") {
                guard let t = CheckType(rawValue: String(arg.dropFirst(5))) else { throw call.invalidParameter(arg) }
                c.type = t
            } else if arg.hasPrefix("default_down=") {
                switch arg.dropFirst(13).lowercased() {
                case "true": c.defaultDown = true
                case "false": c.defaultDown = false
                default: throw call.error("invalid value \"\(arg)\", it must be \"true\" or \"false\"")
                }
            } else {
                throw call.invalidParameter(arg)
            }
        }
        u.check = c
    }
}

import Script

/// The `ssl_*` (client side), `proxy_ssl_*` (upstream side) and `check_ssl_*` directives, with nginx's names,
/// defaults and messages. Files are checked and loaded when the TLS contexts are built (`-t` included), so a
/// missing certificate fails there with the directive's file:line.
enum SSLDirectives {
    static let protocolNames = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]

    static let specs: [DirectiveSpec] = [
        // Array directives in nginx: each line adds one certificate (or key); they pair up in order.
        Directives.spec("ssl_certificate", [.http, .server], .one) { call in
            let cert = try certificateArg(call)
            Directives.withSettings(call) { $0.ssl.certificates.append(cert) }
        },
        Directives.spec("ssl_certificate_key", [.http, .server], .one) { call in
            let key = try certificateArg(call)
            Directives.withSettings(call) { $0.ssl.certificateKeys.append(key) }
        },
        Directives.spec("ssl_password_file", [.http, .server], .one) { call in
            try Directives.setOnce(call, \.ssl.$passwordFile, PathSetting(path: call.configuration.fullConfPath(call.words[1]), location: call.location))
        },
        Directives.spec("ssl_protocols", [.http, .server], .oneOrMore) { call in
            Directives.addTo(call, \.ssl.$protocols, try protocols(call)) { $0 }
        },
        Directives.spec("ssl_ciphers", [.http, .server], .one) { call in try Directives.setOnce(call, \.ssl.$ciphers, call.words[1]) },
        Directives.flagSetting("ssl_prefer_server_ciphers", \.ssl.$preferServerCiphers, [.http, .server]),
        Directives.spec("ssl_session_cache", [.http, .server], .oneOrTwo) { call in
            // As nginx: a second one at the same level replaces the first.
            let cache = try sessionCache(call)
            Directives.withSettings(call) { $0.ssl.sessionCache = cache }
        },
        Directives.msecSetting("ssl_session_timeout", \.ssl.$sessionTimeout, [.http, .server]),
        Directives.flagSetting("ssl_session_tickets", \.ssl.$sessionTickets, [.http, .server]),
        // Repeatable, as nginx's array: the first key encrypts, every key decrypts (a rotation keeps the old one).
        Directives.spec("ssl_session_ticket_key", [.http, .server], .one) { call in
            let key = pathArg(call)
            Directives.withSettings(call) { $0.ssl.sessionTicketKeys.append(key) }
        },
        Directives.flagSetting("ssl_reject_handshake", \.ssl.$rejectHandshake, [.http, .server]),
        Directives.spec("ssl_dhparam", [.http, .server], .one) { call in try Directives.setOnce(call, \.ssl.$dhParam, pathArg(call)) },
        Directives.spec("ssl_ecdh_curve", [.http, .server], .one) { call in try Directives.setOnce(call, \.ssl.$ecdhCurve, call.words[1]) },
        Directives.spec("ssl_trusted_certificate", [.http, .server], .one) { call in
            try Directives.setOnce(call, \.ssl.$trustedCertificate, pathArg(call))
        },
        Directives.spec("ssl_verify_client", [.http, .server], .one) { call in
            guard let v = VerifyClient(rawValue: call.words[1]) else { throw call.error("invalid value \"\(call.words[1])\"") }
            try Directives.setOnce(call, \.ssl.$verifyClient, v)
        },
        Directives.spec("ssl_client_certificate", [.http, .server], .one) { call in
            try Directives.setOnce(call, \.ssl.$clientCertificate, pathArg(call))
        },
        Directives.numberSetting("ssl_verify_depth", \.ssl.$verifyDepth, [.http, .server]),
        Directives.spec("ssl_crl", [.http, .server], .one) { call in try Directives.setOnce(call, \.ssl.$crl, pathArg(call)) },
        Directives.spec("ssl", [.http, .server], .one) { call in
            call.warn("the \"ssl\" directive is deprecated, use the \"listen ... ssl\" directive instead")
            try Directives.setOnce(call, \.ssl.$on, try Directives.flagArg(call))
        },
        // Vigil writes each response as records of what is queued, and never accepts 0-RTT data.
        Directives.accepted("ssl_buffer_size", [.http, .server], .one, "TLS records are as large as what is queued"),
        Directives.spec("ssl_early_data", [.http, .server], .one) { call in
            if try Directives.flagArg(call) { throw call.error("\"ssl_early_data on\" is not supported by vigil") }
        },
        // OCSP stapling is an optimisation clients do without (they ask the responder themselves).
        Directives.spec("ssl_stapling", [.http, .server], .one) { call in
            if try Directives.flagArg(call) { call.warn("\"ssl_stapling\" ignored, not supported by vigil") }
        },
        Directives.accepted("ssl_stapling_verify", [.http, .server], .one, "OCSP stapling is not done"),

        Directives.spec("check_ssl_server_name", .upstream, .one) { call in
            let u = UpstreamDirectives.upstream(call)
            u.pendingCheck.sslServerName = call.words[1]
            u.sawSSLServerName = true
        },
        Directives.spec("check_ssl_verify", .upstream, .one) { call in
            let u = UpstreamDirectives.upstream(call)
            u.pendingCheck.sslVerify = try Directives.flagArg(call)
            u.sawSSLVerify = true
        },
        Directives.spec("check_ssl_trusted_certificate", .upstream, .one) { call in
            let u = UpstreamDirectives.upstream(call)
            u.pendingCheck.sslTrustedCertificate = pathArg(call)
            u.sawSSLTrustedCertificate = true
        },
    ]

    /// `proxy_ssl_*` and `uwsgi_ssl_*`: TLS towards the upstream, each module's on its own settings.
    static func upstreamSSL(_ prefix: String, _ kp: WritableKeyPath<HTTPSettings, ProxySSLSettings>) -> [DirectiveSpec] {
        func k<T>(_ field: WritableKeyPath<ProxySSLSettings, Setting<T>>) -> WritableKeyPath<HTTPSettings, Setting<T>> {
            kp.appending(path: field)
        }
        return [
            Directives.flagSetting(prefix + "_ssl_server_name", k(\.$serverName)),
            Directives.spec(prefix + "_ssl_name", .httpAll, .one) { call in
                try Directives.setOnce(call, k(\.$name), RewriteDirectives.lenientTemplate(call, call.words[1]))
            },
            Directives.flagSetting(prefix + "_ssl_verify", k(\.$verify)),
            Directives.numberSetting(prefix + "_ssl_verify_depth", k(\.$verifyDepth)),
            Directives.spec(prefix + "_ssl_trusted_certificate", .httpAll, .one) { call in
                try Directives.setOnce(call, k(\.$trustedCertificate), pathArg(call))
            },
            Directives.spec(prefix + "_ssl_certificate", .httpAll, .one) { call in
                try Directives.setOnce(call, k(\.$certificate), try certificateArg(call))
            },
            Directives.spec(prefix + "_ssl_certificate_key", .httpAll, .one) { call in
                try Directives.setOnce(call, k(\.$certificateKey), try certificateArg(call))
            },
            Directives.spec(prefix + "_ssl_crl", .httpAll, .one) { call in try Directives.setOnce(call, k(\.$crl), pathArg(call)) },
            Directives.spec(prefix + "_ssl_password_file", .httpAll, .one) { call in
                try Directives.setOnce(call, k(\.$passwordFile), pathArg(call))
            },
            Directives.spec(prefix + "_ssl_protocols", .httpAll, .oneOrMore) { call in
                Directives.addTo(call, k(\.$protocols), try protocols(call)) { $0 }
            },
            Directives.spec(prefix + "_ssl_ciphers", .httpAll, .one) { call in try Directives.setOnce(call, k(\.$ciphers), call.words[1]) },
            Directives.flagSetting(prefix + "_ssl_session_reuse", k(\.$sessionReuse)),
        ]
    }

    /// nginx directives Vigil refuses by name rather than as unknown: OCSP and raw OpenSSL commands.
    static let refused: [DirectiveSpec] = [
        "ssl_conf_command", "ssl_ocsp", "ssl_ocsp_responder", "ssl_ocsp_cache", "ssl_stapling_file",
        "ssl_stapling_responder", "proxy_ssl_conf_command", "uwsgi_ssl_conf_command",
    ].map { name in
        Directives.spec(name, [.http, .server, .location], .oneOrMore) { call in
            throw call.error("\"\(name)\" is not supported by vigil")
        }
    }

    static func pathArg(_ call: Call) -> PathSetting {
        PathSetting(path: call.configuration.fullConfPath(call.words[1]), location: call.location)
    }

    /// A certificate or key: with variables a template (an unknown variable is an error, as nginx's complex
    /// value), PEM text after `data:` as it is, else a file relative to the configuration's directory.
    static func certificateArg(_ call: Call) throws -> CertificateSetting {
        let value = call.words[1]
        if value.hasPrefix("data:") { return CertificateSetting(path: value, location: call.location, template: nil) }
        let template = try RewriteDirectives.template(call, value)
        if !template.names.isEmpty { return CertificateSetting(path: value, location: call.location, template: template) }
        return CertificateSetting(path: call.configuration.fullConfPath(value), location: call.location, template: nil)
    }

    /// nginx's bitmask slot: each value must be a known protocol name.
    static func protocols(_ call: Call) throws -> [String] {
        for p in call.args where !protocolNames.contains(p) { throw call.error("invalid value \"\(p)\"") }
        return Array(call.args)
    }

    /// As nginx's: `off`, `none`, `builtin[:size]`, `shared:name:size` (a shared cache wins
    /// over a builtin one given with it: every worker sees it).
    static func sessionCache(_ call: Call) throws -> SessionCacheSetting {
        var result: SessionCacheSetting?
        for v in call.args {
            let bad = call.error("invalid session cache \"\(v)\"")
            switch v {
            case "off", "none":
                guard call.args.count == 1 else { throw bad }
                return v == "off" ? .off : .none
            case "builtin":
                if result == nil { result = .builtin(size: 20480) }
            case _ where v.hasPrefix("builtin:"):
                guard let n = Values.plainNumber(v.dropFirst(8)), n > 0 else { throw bad }
                if result == nil { result = .builtin(size: n) }
            case _ where v.hasPrefix("shared:"):
                let parts = v.split(separator: ":", omittingEmptySubsequences: false)
                guard parts.count == 3, !parts[1].isEmpty, let size = Values.size(String(parts[2])) else { throw bad }
                // nginx refuses a zone smaller than eight pages.
                guard size >= 8 * 4096 else { throw call.error("session cache \"\(v)\" is too small") }
                try Directives.http(call).addSharedZone(call, name: String(parts[1]), size: size, use: .sslSessionCache)
                result = .shared(name: String(parts[1]), size: size)
            default:
                throw bad
            }
        }
        return result ?? .none
    }
}

import Config

/// Every TLS context one configuration needs, built together so that `-t`, a start and a reload fail
/// alike (with the directive's file:line) on a certificate, CRL or ticket key that does not load: one server
/// context per `server` block with certificates or `ssl_reject_handshake on`, one client context per `proxy_pass https://` location and per
/// upstream with `check … type=https`.
public final class TLSBundle {
    private var servers: [ObjectIdentifier: TLSServerContext] = [:]
    private var locations: [ObjectIdentifier: TLSClientContext] = [:]
    private var checks: [String: TLSClientContext] = [:]

    public init(config: Configuration) throws {
        guard let http = config.http else { return }
        let sslAddresses = Set(config.listenAddresses.filter(\.ssl).map(\.address))
        let fullPath = { [config] in config.fullConfPath($0) }
        for server in http.servers {
            let ssl = server.settings.ssl
            if !ssl.certificates.isEmpty || ssl.rejectHandshake {
                servers[ObjectIdentifier(server)] = try TLSServerContext(settings: ssl, at: server.location, fullPath: fullPath)
            }
            try addLocations(server.locations, fullPath: fullPath)
        }
        // nginx requires a certificate of each ssl address's default server, which answers clients without SNI,
        // unless it rejects handshakes: then every server there needs one, or rejects too.
        for address in sslAddresses {
            let candidates = http.servers.filter { $0.listens.contains { $0.address == address } }
            guard let def = candidates.first(where: { $0.listens.contains { $0.address == address && $0.defaultServer } }) ?? candidates.first
            else { continue }
            let needing = def.settings.ssl.rejectHandshake ? candidates : [def]
            if let bare = needing.first(where: { $0.settings.ssl.certificates.isEmpty && !$0.settings.ssl.rejectHandshake }) {
                throw ConfigError("no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive in \(bare.location)")
            }
        }
        for upstream in http.upstreams {
            guard let c = upstream.check, c.type == .https else { continue }
            checks[upstream.name.lowercased()] = try TLSClientContext(
                protocols: ProxySSLSettings().protocols, ciphers: ProxySSLSettings().ciphers, verify: c.sslVerify, verifyDepth: 9, trusted: c.sslTrustedCertificate,
                certificate: nil, key: nil, passwordFile: nil, sessionReuse: true, directives: "check",
                at: upstream.declared ?? upstream.firstMention)
        }
    }

    private func addLocations(_ list: [Location], fullPath: @escaping (String) -> String) throws {
        for loc in list {
            // A URL from variables may turn out https: its context is ready too. `uwsgi_pass suwsgi://` has uwsgi_ssl_*'s.
            if case .proxy(let pass) = loc.content, pass.scheme == "https" || pass.scheme.isEmpty || pass.scheme == "suwsgi" {
                let uwsgi = pass.upstreamProtocol == .uwsgi
                let s = uwsgi ? loc.settings.uwsgiSSL : loc.settings.proxySSL
                locations[ObjectIdentifier(loc)] = try TLSClientContext(
                    protocols: s.protocols, ciphers: s.ciphers, verify: s.verify, verifyDepth: s.verifyDepth, trusted: s.trustedCertificate,
                    crl: s.crl, certificate: s.certificate, key: s.certificateKey, passwordFile: s.passwordFile, sessionReuse: s.sessionReuse,
                    directives: uwsgi ? "uwsgi" : "proxy", at: pass.location, fullPath: fullPath)
            }
            try addLocations(loc.configured, fullPath: fullPath)
        }
    }

    public func context(for server: Server) -> TLSServerContext? { servers[ObjectIdentifier(server)] }
    public func context(for location: Location) -> TLSClientContext? { locations[ObjectIdentifier(location)] }
    public func checkContext(upstream name: String) -> TLSClientContext? { checks[name.lowercased()] }
}

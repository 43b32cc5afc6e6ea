/// nginx-upsync-module's directives, for its etcd source: `upsync HOST:PORT/PATH upsync_type=etcd
/// [upsync_interval=T] [upsync_timeout=T] [strong_dependency=on|off]` and `upsync_dump_path FILE` in an
/// `upstream`, `upsync_lb` accepted for the configurations that carry it (Vigil's balancers take servers that
/// come and go as they are).
public struct UpsyncSource: Sendable, Equatable {
    /// etcd's client address, numeric, and `HOST:PORT` as written (the Host header, the log lines).
    public var address: PeerAddress
    public var authority: String
    /// The keys' prefix: the path written after the address, without upsync's `/v2/keys` (etcd's v2 API,
    /// which upsync speaks; Vigil reads the same keys through v3), ending in "/".
    public var prefix: String
    /// How soon a failed read is tried again (upsync_interval, 5 s), and how long a read or a quiet watch may
    /// last (upsync_timeout, 6 min).
    public var intervalMs = 5000
    public var timeoutMs = 360_000
    /// Whether Vigil refuses to start while etcd cannot be read.
    public var strongDependency = false
    /// Where the servers are written after each change, as `server` lines an `include` reads back
    /// (upsync_dump_path; upsync's default is /tmp/servers_NAME.conf).
    public var dumpPath: String
}

enum UpsyncDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("upsync", .upstream, .oneOrMore) { call in
            let upstream = UpstreamDirectives.upstream(call)
            guard upstream.upsync == nil else { throw call.error("\"upsync\" directive is duplicate") }
            var type = "consul"
            var source = try parseSource(call, call.words[1], upstream: upstream.name)
            for word in call.words.dropFirst(2) {
                guard let eq = word.firstIndex(of: "=") else { throw call.invalidParameter(word) }
                let name = word[..<eq], value = String(word[word.index(after: eq)...])
                switch name {
                case "upsync_type": type = value
                case "upsync_interval":
                    guard let ms = Values.msec(value), ms > 0 else { throw call.error("invalid upsync_interval \"\(value)\"") }
                    source.intervalMs = ms
                case "upsync_timeout":
                    guard let ms = Values.msec(value), ms > 0 else { throw call.error("invalid upsync_timeout \"\(value)\"") }
                    source.timeoutMs = ms
                case "strong_dependency":
                    guard value == "on" || value == "off" else { throw call.error("invalid strong_dependency \"\(value)\"") }
                    source.strongDependency = value == "on"
                default: throw call.invalidParameter(word)
                }
            }
            // upsync's other stores (consul, consul_services, consul_health) are not Vigil's.
            guard type == "etcd" else {
                throw call.error("upsync_type=\(type) is not supported by vigil, which reads etcd only (upsync_type=etcd)")
            }
            upstream.upsync = source
            if let dump = upstream.pendingUpsyncDumpPath { upstream.upsync?.dumpPath = dump }
        },
        Directives.spec("upsync_dump_path", .upstream, .one) { call in
            let upstream = UpstreamDirectives.upstream(call)
            let path = call.configuration.fullPath(call.words[1])
            upstream.pendingUpsyncDumpPath = path
            upstream.upsync?.dumpPath = path
        },
        Directives.spec("upsync_lb", .upstream, .one) { call in
            guard ["round_robin", "ip_hash", "least_conn", "hash_modula", "hash_ketama"].contains(call.words[1]) else {
                throw call.invalidParameter(call.words[1])
            }
        },
    ]

    /// `HOST:PORT/PATH`: etcd's address (a name is resolved now, its first address used) and the key prefix.
    static func parseSource(_ call: Call, _ text: String, upstream: String) throws -> UpsyncSource {
        let slash = text.firstIndex(of: "/") ?? text.endIndex
        let authority = String(text[..<slash])
        var path = String(text[slash...])
        guard let colon = authority.lastIndex(of: ":"), let port = UInt16(authority[authority.index(after: colon)...]), port > 0 else {
            throw call.error("invalid upsync address \"\(text)\": no port")
        }
        var host = String(authority[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let address = Resolver.resolve(host: host, port: port)?.first else {
            throw call.error("host not found in upsync \"\(text)\"")
        }
        for api in ["/v2/keys", "/v3/kv"] where path.hasPrefix(api + "/") { path = String(path.dropFirst(api.count)) }
        guard path.count > 1 else { throw call.error("invalid upsync address \"\(text)\": no key prefix") }
        if !path.hasSuffix("/") { path += "/" }
        return UpsyncSource(address: address, authority: authority, prefix: path, dumpPath: "/tmp/servers_\(upstream).conf")
    }
}

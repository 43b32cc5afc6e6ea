#if canImport(Glibc)
import Glibc
#endif
import Core
import Script

/// A whole loaded configuration: what `vigil -t` validates and what the master hands to its workers.
public final class Configuration {
    public let prefix: String
    public let file: String
    /// Directory of the main file: relative `include`s resolve against it, as in nginx.
    public let confPrefix: String

    public var workerProcesses = 1
    public var daemon = true
    public var masterProcess = true
    public var pidPath: String
    public var errorLogs: [ErrorLogTarget] = []
    public var env: [String] = []
    public var workerRlimitNofile: Int?
    public var workerShutdownTimeout: Int?   // ms
    /// Who workers run as: `user`, or nginx's default; nil when the master is not root (workers keep its user).
    public var workerUser: WorkerUser?
    /// `working_directory`: where workers chdir to (and dump core).
    public var workingDirectory: String?
    /// `worker_rlimit_core`: the workers' core file size limit, in bytes.
    public var workerRlimitCore: Int?
    public var events: EventsBlock?
    public var http: HTTPBlock?
    /// `[warn]` lines nginx would print while parsing; the load still succeeds.
    public var warnings: [ConfigError] = []
    /// Directives accepted for compatibility that change nothing in Vigil, each with why: `-t` prints them at
    /// `[notice]`, a start or reload logs them at that level.
    public var notices: [ConfigError] = []
    var seenMainDirectives = Set<String>()
    /// Every file read, with its text, for `-T`.
    public private(set) var sources: [(path: String, text: [UInt8])] = []

    /// Every access log file and client body temp directory of any level, each once: the master opens the
    /// logs and makes the directories before workers give up root.
    public private(set) var accessLogPaths: [String] = []
    /// The error logs of http, server and location levels, each list once: a request's errors go to its
    /// level's (LogSettings.errorLogSet indexes this).
    public private(set) var requestErrorLogs: [[ErrorLogTarget]] = []
    /// Their files, which the workers' user must be able to reopen.
    public var requestErrorLogPaths: [String] { requestErrorLogs.flatMap { $0.filter(\.isFile).map(\.path) } }
    public private(set) var clientBodyTempPaths: [String] = []

    /// The checked peers in shm index order, filled by `finish()`.
    public private(set) var checkedPeers: [CheckedPeer] = []

    /// Upstream `zone`s in declaration order, with how many peers the upstreams naming each put in it.
    public private(set) var upstreamZones: [UpstreamZone] = []
    /// Peer records in the segment's zone area: one per address of each server of a zoned upstream.
    public private(set) var zonedPeerCount = 0

    /// The upstreams with `server … resolve`, in order: the segment keeps room for their peers, which the
    /// checker's thread resolves (a DynamicPeer names its upstream by this index).
    public var resolvingUpstreams: [Upstream] { http?.upstreams.filter(\.hasRunTimePeers) ?? [] }

    /// `limit_req_zone`s and `limit_conn_zone`s: the master maps one shared zone for each.
    public var limitZones: [LimitZoneSpec] { http?.limitZones ?? [] }
    public var cacheZones: [CacheZoneSpec] { http?.cacheZones ?? [] }

    public static let minimumShmSize = 1 << 20

    /// Effective `check_shm_size`: the reference raises anything below 1 MiB to 1 MiB.
    public var shmSize: Int { max(Configuration.minimumShmSize, http?.checkShmSize ?? 0) }

    init(prefix: String, file: String) {
        self.prefix = prefix
        self.file = file
        self.confPrefix = Configuration.directory(of: file)
        self.pidPath = Configuration.join(prefix, "logs/vigil.pid")
    }

    /// Loads and validates `file`, applying `-g` directives first, exactly as nginx does.
    public static func load(file: String, prefix: String, globalDirectives: String? = nil) throws -> Configuration {
        let conf = Configuration(prefix: prefix, file: file)
        let parser = Parser(configuration: conf)
        if let g = globalDirectives, !g.isEmpty {
            try parser.parse(bytes: Array(g.utf8), file: "command line", context: .main, isParameterString: true)
        }
        try parser.parseFile(path: file, context: .main, includedFrom: nil)
        try conf.finish()
        return conf
    }

    /// Loads from text as if it were the file `file` (includes resolve beside it); for tests and fuzzing.
    public static func parse(text: String, file: String = "/tmp/vigil-test/vigil.conf", prefix: String = "/tmp/vigil-test",
                             globalDirectives: String? = nil) throws -> Configuration {
        let conf = Configuration(prefix: prefix, file: file)
        let parser = Parser(configuration: conf)
        if let g = globalDirectives, !g.isEmpty {
            try parser.parse(bytes: Array(g.utf8), file: "command line", context: .main, isParameterString: true)
        }
        conf.recordSource(path: file, text: Array(text.utf8))
        try parser.parse(bytes: Array(text.utf8), file: file, context: .main, isParameterString: false)
        try conf.finish()
        return conf
    }

    /// Resolves a path the way nginx does for most directives: relative to the prefix.
    public func fullPath(_ path: String) -> String {
        Configuration.join(prefix, path)
    }

    /// Resolves a path against the configuration's directory (nginx's conf_prefix: include, auth_basic_user_file).
    public func fullConfPath(_ path: String) -> String {
        Configuration.join(confPrefix, path)
    }

    static func join(_ base: String, _ path: String) -> String {
        if path.hasPrefix("/") || path == "stderr" { return path }
        if base.isEmpty { return path }
        return base.hasSuffix("/") ? base + path : base + "/" + path
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// As nginx's ngx_conf_add_dump, a file included twice is dumped once (the first time it was read).
    func recordSource(path: String, text: [UInt8]) {
        guard !sources.contains(where: { $0.path == path }) else { return }
        sources.append((path, text))
    }

    /// `-T`: every file, each headed by `# configuration file PATH:` as nginx prints it.
    public func dump() -> String {
        var out = ""
        for (path, text) in sources where path != "command line" {
            out += "# configuration file \(path):\n"
            out += String(decoding: text, as: UTF8.self)
            if !(text.last == 0x0A) { out += "\n" }
            out += "\n"
        }
        return out
    }

    // MARK: - post-parse validation

    func finish() throws {
        guard events != nil else { throw ConfigError("no \"events\" section in configuration") }
        if workerUser == nil && WorkerUser.masterIsRoot {
            switch WorkerUser.lookUp(user: WorkerUser.defaultName, group: WorkerUser.defaultGroup) {
            case .success(let user): workerUser = user
            case .failure(let f): throw ConfigError(f.message)
            }
        }
        guard let http else { return }
        if !http.settings.log.$accessLogs.isSet {
            http.settings.log.accessLogs = [AccessLogTarget(path: fullPath("logs/access.log"), format: "combined")]
        }
        resolvePaths(&http.settings)
        for server in http.servers {
            server.settings.inherit(from: http.settings)
            resolvePaths(&server.settings)
            if server.settings.ssl.on { for i in server.listens.indices { server.listens[i].ssl = true } }
            for loc in server.locations { inherit(loc, from: server.settings) }
            if server.listens.isEmpty {
                // nginx's default when running as root is *:80; Vigil uses the same.
                server.listens.append(Listen(address: ListenAddress(host: "0.0.0.0", port: 80, isIPv6: false),
                                             defaultServer: false, backlog: 511, reusePort: false, ipv6Only: true,
                                             location: server.location))
            }
        }
        for server in http.servers {
            try resolveProxyTargets(server.locations, http: http)
            try compileRegexes(server.locations, http: http)
            try checkCharsetMaps(server.settings, server.locations, http: http)
        }
        try checkCaches(http.settings, http: http)
        for server in http.servers {
            try checkCaches(server.settings, http: http)
            try checkCaches(server.locations, http: http)
        }
        try resolveTemplates(http)
        http.upstreams.removeAll { $0.declared == nil }
        for upstream in http.upstreams {
            upstream.finishCheck()
            // As NGINX Plus: the hash balancers place keys by weight, a ramp would move them.
            if let slow = upstream.servers.first(where: { $0.slowStart > 0 }), upstream.balancer != .roundRobin && upstream.balancer != .leastConn {
                warnings.append(slow.location.warning("\"slow_start\" is ignored by this balancing method in upstream \"\(upstream.name)\""))
            }
        }
        for upstream in http.upstreams where upstream.resolves { try upstream.finishResolve(http) }
        try validateListens(http)
        checkedPeers = http.upstreams.flatMap { $0.checkedPeers() }
        layOutZones(http)
        for server in http.servers {
            warnIfOpenToAll(server.content, server.settings, at: server.location)
            warnOpenAdmin(server.locations)
        }
    }

    /// Numbers the zoned upstreams' peer records, upstream by upstream in the order their balancers number
    /// their peers (servers, then addresses). Sizes are checked with the segment's (`SegmentPlan`), as nginx
    /// checks them when it maps its zones, after the syntax.
    private func layOutZones(_ http: HTTPBlock) {
        var next = 0
        upstreamZones = http.sharedZones.filter { $0.use == .upstream }
            .map { UpstreamZone(name: $0.name, size: $0.size, peers: 0, location: $0.location) }
        for u in http.upstreams {
            guard let name = u.zone, let z = upstreamZones.firstIndex(where: { $0.name == name }) else { continue }
            let peers = u.servers.reduce(0) { $0 + $1.addresses.count }
            u.zoneRecord = next
            next += peers
            upstreamZones[z].peers += peers
        }
        zonedPeerCount = next
    }

    private func warnOpenAdmin(_ locations: [Location]) {
        for loc in locations {
            warnIfOpenToAll(loc.content, loc.settings, at: loc.location)
            warnOpenAdmin(loc.configured)
        }
    }

    /// A status page that takes writes, behind no `deny`: anyone who reaches it can take peers out of service.
    private func warnIfOpenToAll(_ content: ContentHandler, _ settings: HTTPSettings, at site: SourceLocation) {
        guard case .checkStatus = content, settings.status.admin, !settings.log.accessRules.contains(where: { !$0.allow }) else { return }
        warnings.append(site.warning("\"check_status_admin\" is on and no \"deny\" limits who may use it: any client can change peer states"))
    }

    /// Script templates name variables that may be declared further down (nginx's variables are global):
    /// once everything is read, each name must be a built-in variable, a declared one or a capture.
    private func resolveTemplates(_ http: HTTPBlock) throws {
        for (t, location, strict) in http.pendingTemplates {
            for name in t.names {
                switch Variable(name: name, table: http.variables) {
                case .none where strict && !Variable.isKnownUnset(name): throw location.error("unknown \"\(name)\" variable")
                case .upstreamHeader, .upstreamCookie: http.readsUpstreamHeaders = true
                case .sentHeader: http.readsSentHeaders = true
                default: break
                }
            }
            t.resolve(http.variables)
        }
        http.pendingTemplates = []
    }

    /// As nginx: a level whose `charset` and `source_charset` are two different names (no variables) needs the
    /// charset_map between them.
    private func checkCharsetMaps(_ settings: HTTPSettings, _ locations: [Location], http: HTTPBlock) throws {
        if let to = settings.charset.charset, let from = settings.charset.source, to.names.isEmpty, from.names.isEmpty,
           to.text.lowercased() != from.text.lowercased(), !http.charsetMaps.contains(where: { $0.joins(from.text, to.text) }) {
            throw ConfigError("no \"charset_map\" between the charsets \"\(from.text)\" and \"\(to.text)\"")
        }
        for loc in locations { try checkCharsetMaps(loc.settings, loc.locations + loc.ifBlocks, http: http) }
    }

    /// As nginx's merge: every level's cache must be a declared zone, and the gateway modules, which have no
    /// default key, need one where their cache is on.
    private func checkCaches(_ settings: HTTPSettings, http: HTTPBlock) throws {
        let families: [(String, ProxySettings)] = [("proxy", settings.proxy), ("fastcgi", settings.fastcgi.upstream),
                                                    ("scgi", settings.scgi.upstream), ("uwsgi", settings.uwsgi.upstream)]
        for (prefix, conf) in families {
            guard case .named(let zone) = conf.cache.zone else { continue }
            let at = conf.cache.zoneLocation ?? SourceLocation(file: "", line: 0)
            if !http.cacheZones.contains(where: { $0.name == zone }) { throw at.error("\"\(prefix)_cache\" zone \"\(zone)\" is unknown") }
            if prefix != "proxy" && conf.cache.key == nil { throw at.error("no \"\(prefix)_cache_key\" for \"\(prefix)_cache\"") }
        }
    }

    private func checkCaches(_ locations: [Location], http: HTTPBlock) throws {
        for loc in locations {
            try checkCaches(loc.settings, http: http)
            try checkCaches(loc.locations + loc.ifBlocks, http: http)
        }
    }

    /// Regex locations are compiled here, once: `-t` rejects a bad one, and workers match with the result.
    private func compileRegexes(_ locations: [Location], http: HTTPBlock) throws {
        for loc in locations {
            if case .regex(let ci) = loc.match {
                do {
                    let re = try Regex(loc.pattern, caseless: ci)
                    // As nginx: a named group of a location's regex is a variable.
                    re.bindings = re.names.map { ($0.group, http.variables.declare($0.name)) }
                    loc.regex = re
                } catch let e as Regex.CompileError {
                    throw loc.location.error(e.description)
                }
            }
            try compileRegexes(loc.locations, http: http)
        }
    }

    private func inherit(_ loc: Location, from parent: HTTPSettings) {
        loc.settings.inherit(from: parent)
        resolvePaths(&loc.settings)
        for child in loc.locations {
            // root and alias are one setting in nginx: a nested location with neither keeps its parent's alias.
            if child.alias == nil && !child.settings.core.$root.isSet { child.alias = loc.alias }
            inherit(child, from: loc.settings)
        }
        // An `if` or `limit_except` block without `root` keeps its location's alias too.
        for block in loc.ifBlocks + (loc.limitExcept.map { [$0.block] } ?? []) {
            if !block.settings.core.$root.isSet { block.alias = loc.alias }
            inherit(block, from: loc.settings)
        }
    }

    /// Paths a level wrote relative to the prefix, made absolute once (those it inherited already are); the
    /// files and directories workers write are noted for the master to prepare.
    private func resolvePaths(_ s: inout HTTPSettings) {
        s.core.$root.resolve(fullPath)
        s.core.$clientBodyTempPath.resolve(fullPath)
        note(s.core.clientBodyTempPath, in: &clientBodyTempPaths)
        for target in s.log.accessLogs where target.pathTemplate == nil && target.syslog == nil { note(target.path, in: &accessLogPaths) }
        if !s.log.errorLogs.isEmpty {
            if let i = requestErrorLogs.firstIndex(of: s.log.errorLogs) {
                s.log.errorLogSet = i
            } else {
                s.log.errorLogSet = requestErrorLogs.count
                requestErrorLogs.append(s.log.errorLogs)
            }
        }
    }

    private func note(_ path: String, in paths: inout [String]) {
        if !paths.contains(path) { paths.append(path) }
    }

    /// `proxy_pass http://name` names an upstream block when one exists (before or after it);
    /// otherwise the host is resolved now, and that implicit upstream is never checked (as in the reference).
    private func resolveProxyTargets(_ locations: [Location], http: HTTPBlock) throws {
        for loc in locations {
            // An `if` block without a content handler of its own keeps its location's (already resolved).
            if let parent = loc.parent, case .none = loc.content { loc.content = parent.content }
            if case .proxy(let pass) = loc.content { loc.content = .proxy(try resolve(pass, http: http)) }
            try resolveProxyTargets(loc.configured, http: http)
        }
    }

    private func resolve(_ pass: ProxyPass, http: HTTPBlock) throws -> ProxyPass {
        switch pass.target {
        // Variables are resolved per request; a unix-domain socket is its address already.
        case .variable, .variableURL: return pass
        case .address(let addrs, _) where !addrs.isEmpty: return pass
        default: break
        }
        let declared = http.upstream(named: pass.hostText)?.declared != nil
        if let port = pass.port {
            if declared { throw pass.location.error("upstream \"\(pass.hostText)\" may not have port \(port)") }
        } else if declared {
            return pass
        }
        // fastcgi_pass names no scheme to take a port from.
        if pass.port == nil && pass.upstreamProtocol != .http { throw pass.location.error("no port in upstream \"\(pass.hostText)\"") }
        let port = pass.port ?? (pass.scheme == "https" ? 443 : 80)
        guard let addrs = Resolver.resolve(host: pass.hostText, port: port), !addrs.isEmpty else {
            throw pass.location.error("host not found in upstream \"\(pass.hostText)\"")
        }
        return pass.with(target: .address(addrs, text: pass.hostHeader))
    }

    private func validateListens(_ http: HTTPBlock) throws {
        // A duplicate `listen ... default_server` for one address is an nginx error.
        var defaults: [ListenAddress: SourceLocation] = [:]
        for server in http.servers {
            for l in server.listens where l.defaultServer {
                if defaults[l.address] != nil {
                    throw l.location.error("a duplicate default server for \(l.address)")
                }
                defaults[l.address] = l.location
            }
        }
    }

    /// All distinct listening addresses, in config order. `ssl` on any `listen` of an address makes the
    /// address a TLS one, as in nginx.
    public var listenAddresses: [Listen] {
        var index: [ListenAddress: Int] = [:]
        var out: [Listen] = []
        for server in http?.servers ?? [] {
            for l in server.listens {
                if let i = index[l.address] {
                    // As nginx's: an address is ssl, or proxy_protocol, if any server's listen on it says so.
                    out[i].ssl = out[i].ssl || l.ssl
                    out[i].proxyProtocol = out[i].proxyProtocol || l.proxyProtocol
                    continue
                }
                index[l.address] = out.count
                out.append(l)
            }
        }
        return out
    }

    public var workerConnections: Int { events?.workerConnections ?? 512 }
    public var multiAccept: Bool { events?.multiAccept ?? false }
}

extension Upstream {
    func finishCheck() {
        guard var check else { return }
        // Companions may come before or after `check`; the reference applies them either way.
        if sawHTTPSend { check.httpSend = pendingCheck.httpSend }
        if sawExpectAlive { check.expectAlive = pendingCheck.expectAlive }
        if sawKeepaliveRequests { check.keepaliveRequests = pendingCheck.keepaliveRequests }
        if sawFastcgiParams { check.fastcgiParams = pendingCheck.fastcgiParams }
        if sawSSLServerName { check.sslServerName = pendingCheck.sslServerName }
        if sawSSLVerify { check.sslVerify = pendingCheck.sslVerify }
        if sawSSLTrustedCertificate { check.sslTrustedCertificate = pendingCheck.sslTrustedCertificate }
        if sawExpectBody { check.expectBody = pendingCheck.expectBody }
        check.expectHeaders = pendingCheck.expectHeaders
        self.check = check
    }

    /// nginx's checks for run-time resolution, in its order and words: the peers must be in shared memory
    /// (`zone`), and a resolver must be defined here or at the http level, whose resolver_timeout applies too.
    func finishResolve(_ http: HTTPBlock) throws {
        let site = declared.map { "\($0.file):\($0.line)" } ?? ""
        guard zone != nil else {
            throw ConfigError("resolving names at run time requires upstream \"\(name)\" in \(site) to be in shared memory")
        }
        if resolver == nil { resolver = http.settings.core.resolver }
        guard resolver != nil else {
            throw ConfigError("no resolver defined to resolve names at run time in upstream \"\(name)\" in \(site)")
        }
        if resolverTimeout == nil { resolverTimeout = http.settings.core.resolverTimeout }
    }

    func checkedPeers() -> [CheckedPeer] {
        guard let check else { return [] }
        var out: [CheckedPeer] = []
        for backup in [false, true] {
            for server in servers where server.backup == backup && !server.down {
                let host = Resolver.splitHostPort(server.text)?.host
                for a in server.addresses {
                    out.append(CheckedPeer(upstream: name, address: a, check: check,
                                           hostName: host.flatMap { Resolver.isNumeric($0) ? nil : $0 }))
                }
            }
        }
        return out
    }
}

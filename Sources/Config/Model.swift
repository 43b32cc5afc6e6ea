#if canImport(Glibc)
import Glibc
#endif
import Core
import Script

/// The typed configuration that the directive handlers fill in. Reference types so that handlers can
/// mutate the block they are in; after `Configuration.load` returns, treat everything as read-only.

/// `open_log_file_cache max=N [inactive=time] [min_uses=N] [valid=time]`: a worker keeps the descriptors of
/// access logs whose paths have variables open, as nginx's cache does. `id` names the cache: a level that sets
/// the directive has its own, shared by the levels that inherit it. Times in seconds.
public struct LogFileCacheSetting: Sendable, Equatable {
    public let id: Int
    public let max: Int
    public let inactive: Int
    public let minUses: Int
    public let valid: Int
}

public struct AccessLogTarget: Equatable, Sendable {
    /// For a syslog server, the text as written (`syslog:server=…`).
    public var path: String
    /// A path with variables: the file is opened for each line, by the worker (nginx's way, as its user).
    public var pathTemplate: Template?
    public var format: String
    /// `if=condition`: the line is written unless the value is empty or "0".
    public var condition: Template?
    public var syslog: SyslogTarget?
    public init(path: String, pathTemplate: Template? = nil, format: String, condition: Template? = nil, syslog: SyslogTarget? = nil) {
        self.path = path
        self.pathTemplate = pathTemplate
        self.format = format
        self.condition = condition
        self.syslog = syslog
    }
    public static func == (a: AccessLogTarget, b: AccessLogTarget) -> Bool {
        a.path == b.path && a.format == b.format && a.condition?.text == b.condition?.text
    }
}

/// `log_format name [escape=…] string …`, its template compiled when the configuration loads.
public final class LogFormat: Sendable {
    public let name: String
    public let escape: LogEscape
    public let template: Template
    init(name: String, escape: LogEscape, template: Template) { self.name = name; self.escape = escape; self.template = template }

    /// nginx's predefined `combined` format, byte for byte (only built-in variables: resolved at once).
    static func combined() -> LogFormat {
        let t = Template("$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"")
        t.resolve(VariableTable())
        return LogFormat(name: "combined", escape: .default, template: t)
    }
}

/// A socket address as the config wrote it and as it resolved.
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String   // numeric text ("0.0.0.0", "127.0.0.1", "::1")
    public var port: UInt16
    public var isIPv6: Bool
    public var isUnix: Bool { host.hasPrefix("unix:") }
    public var description: String { isUnix ? host : isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct Listen: Sendable, Equatable {
    public var address: ListenAddress
    public var defaultServer: Bool
    public var backlog: Int32
    public var reusePort: Bool
    public var ipv6Only: Bool
    /// `listen … ssl`: connections on this address start with a TLS handshake.
    public var ssl = false
    /// `listen … proxy_protocol`: connections on this address start with a PROXY protocol header (before
    /// the TLS handshake on an ssl one).
    public var proxyProtocol = false
    /// `listen … http2` (nginx 1.22's form): HTTP/2 for every server on the address, by ALPN over TLS, by the
    /// connection preface over plain TCP.
    public var http2 = false
    public var options = ListenOptions()
    public var location: SourceLocation
}

/// The socket options `listen` may set on its socket (accepted connections inherit them).
public struct ListenOptions: Sendable, Equatable {
    public var receiveBuffer: Int32?
    public var sendBuffer: Int32?
    /// `deferred`: accept() only once the client has sent data (TCP_DEFER_ACCEPT).
    public var deferred = false
    /// `fastopen=N`: TCP Fast Open's queue of pending handshakes.
    public var fastOpen: Int32?
    /// `so_keepalive=on|off|idle:interval:count` (nil: the system's; seconds, count).
    public var keepalive: Bool?
    public var keepaliveIdle: Int32?, keepaliveInterval: Int32?, keepaliveCount: Int32?
}

public enum CheckType: String, CaseIterable, Sendable {
    /// New types go last: the position is the code stored in the shared segment.
    case tcp, http, ssl_hello, mysql, ajp, fastcgi, https
    /// Stable code stored in the shared segment.
    public var code: UInt8 { UInt8(CheckType.allCases.firstIndex(of: self)!) }
    public init?(code: UInt8) {
        guard Int(code) < CheckType.allCases.count else { return nil }
        self = CheckType.allCases[Int(code)]
    }
}

/// `check_http_expect_alive` classes as a bit set: http_2xx = 1<<2 ... http_5xx = 1<<5.
public struct ExpectAlive: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let http2xx = ExpectAlive(rawValue: 1 << 2)
    public static let http3xx = ExpectAlive(rawValue: 1 << 3)
    public static let http4xx = ExpectAlive(rawValue: 1 << 4)
    public static let http5xx = ExpectAlive(rawValue: 1 << 5)
}

/// What `check_http_expect_body` and `check_http_expect_header` want: a substring, or a regex (`~`).
public enum TextMatch: Sendable {
    case contains(String)
    case regex(Regex)

    /// As written (reloads compare it).
    public var text: String {
        switch self {
        case .contains(let s): return s
        case .regex(let re): return "~" + re.pattern
        }
    }

    public func matches(_ value: String) -> Bool {
        switch self {
        case .contains(let s): return s.isEmpty || value.contains(s)
        case .regex(let re): return re.matches(value)
        }
    }
}

/// `check_http_expect_header Name [~] value`: the name lowercased.
public struct HeaderMatch: Sendable {
    public var name: String
    public var value: TextMatch
}

/// The `check` directive and its companions, with the reference module's defaults.
public struct CheckSettings: Sendable, Equatable {
    public var interval: Int = 30000
    public var fall: Int = 5
    public var rise: Int = 2
    public var timeout: Int = 1000
    public var defaultDown = true
    public var type: CheckType = .tcp
    public var port: Int = 0
    public var httpSend: [UInt8] = []            // empty: the type's default payload
    public var expectAlive: ExpectAlive? = nil   // nil: directive absent
    public var keepaliveRequests: Int = 1
    public var fastcgiParams: [(String, String)]? = nil
    /// `type=https`: the SNI name sent (nil: the peer's host), and whether the certificate must verify.
    public var sslServerName: String? = nil
    public var sslVerify = false
    public var sslTrustedCertificate: PathSetting? = nil
    /// An http(s) check is up only when its response also has this body text and these headers.
    public var expectBody: TextMatch? = nil
    public var expectHeaders: [HeaderMatch] = []

    /// Whether a check reads the whole response (headers and body), not just the status line.
    public var matchesResponse: Bool { expectBody != nil || !expectHeaders.isEmpty }

    public static func == (a: CheckSettings, b: CheckSettings) -> Bool {
        a.interval == b.interval && a.fall == b.fall && a.rise == b.rise && a.timeout == b.timeout
            && a.defaultDown == b.defaultDown && a.type == b.type && a.port == b.port && a.httpSend == b.httpSend
            && a.expectAlive == b.expectAlive && a.keepaliveRequests == b.keepaliveRequests
            && a.sslServerName == b.sslServerName && a.sslVerify == b.sslVerify
            && a.sslTrustedCertificate?.path == b.sslTrustedCertificate?.path
            && a.expectBody?.text == b.expectBody?.text
            && a.expectHeaders.map { "\($0.name): \($0.value.text)" } == b.expectHeaders.map { "\($0.name): \($0.value.text)" }
            && a.fastcgiParams?.map { "\($0.0)=\($0.1)" } == b.fastcgiParams?.map { "\($0.0)=\($0.1)" }
    }

    /// What the http check treats as alive when the directive is absent.
    public var effectiveExpectAlive: ExpectAlive { expectAlive ?? [.http2xx, .http3xx] }
}

/// One resolved address of an upstream `server` line.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public var isIPv6: Bool
    /// `unix:/path`, a unix-domain socket (port 0).
    public var isUnix: Bool { host.hasPrefix("unix:") }
    public var description: String { isUnix ? host : isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
    public init(host: String, port: UInt16, isIPv6: Bool) {
        self.host = host
        self.port = port
        self.isIPv6 = isIPv6
    }
}

public struct UpstreamServer: Sendable {
    public var text: String            // as written: "10.0.0.1:80", "localhost:8081"
    public var addresses: [PeerAddress]
    public var weight = 1
    public var maxFails = 1
    public var failTimeout = 10_000    // ms
    public var maxConns = 0
    /// `slow_start=time` (ms): a peer that comes up ramps its weight over this long.
    public var slowStart = 0
    public var backup = false
    public var down = false
    public var location: SourceLocation
    /// `resolve` on a name: no addresses at load; the checker's thread resolves `host` while running and the
    /// peers it finds (on `port`) join the upstream (nginx 1.27.3's run-time resolution).
    public var resolve: (host: String, port: UInt16)? = nil
    /// `service=NAME` with `resolve`: the SRV name asked (nginx's: `_NAME._tcp.host`, or `NAME.host` when NAME has
    /// a dot); its records give the peers' ports and weights, the lowest priority primary and the rest backup.
    public var service: String? = nil

    public init(text: String, addresses: [PeerAddress], location: SourceLocation) {
        self.text = text
        self.addresses = addresses
        self.location = location
    }
}

public enum Balancer: Sendable, Equatable {
    case roundRobin
    case ipHash
    /// `hash key [consistent]`: the key compiled once.
    case hash(key: Template, consistent: Bool)
    case leastConn
    /// `random [two [least_conn]]`: with `two`, the less loaded of two random picks.
    case random(two: Bool)

    public static func == (a: Balancer, b: Balancer) -> Bool {
        switch (a, b) {
        case (.roundRobin, .roundRobin), (.ipHash, .ipHash), (.leastConn, .leastConn): return true
        case (.random(let t1), .random(let t2)): return t1 == t2
        case (.hash(let k1, let c1), .hash(let k2, let c2)): return k1.text == k2.text && c1 == c2
        default: return false
        }
    }
}

public final class Upstream {
    public let name: String
    /// Where it was first mentioned (a `proxy_pass` may precede the block).
    public var declared: SourceLocation?
    public var firstMention: SourceLocation
    public var servers: [UpstreamServer] = []
    public var balancer: Balancer = .roundRobin
    public var keepalive: Int? = nil
    public var keepaliveTimeout = 60_000
    public var keepaliveRequests = 1000
    public var keepaliveTime = 3_600_000
    public var check: CheckSettings? = nil
    /// `zone name [size]`: the peers' passive state (failures, connections) lives in the shared segment.
    public var zone: String? = nil
    /// Index of this upstream's first peer record in the segment's zone area (set when the zone is laid out).
    public internal(set) var zoneRecord: Int? = nil
    /// `check_fail_open N%`: past this share of checked peers down, balance over all of them.
    public var failOpenPercent: Int? = nil
    /// `resolver` and `resolver_timeout` in the block (nginx 1.27.3), else the http level's, for `resolve` servers.
    public var resolver: ResolverSetting? = nil
    public var resolverTimeout: Int? = nil
    /// Whether some `server` resolves its name at run time.
    public var resolves: Bool { servers.contains { $0.resolve != nil } }
    /// `state FILE` (NGINX Plus): the servers live in this file, which the upstream API changes.
    public var stateFile: String? = nil
    /// Whether its servers come from a store (etcd, or a state file) rather than its `server` lines.
    public var hasStore: Bool { upsync != nil || stateFile != nil }
    /// Whether peers join it at run time, from names (`resolve`) or from a store.
    public var hasRunTimePeers: Bool { resolves || hasStore }
    /// The `server` line index a peer from a store names: one past the configured lines.
    public var storeLine: Int { servers.count }
    /// `upsync … upsync_type=etcd`: servers kept under a key prefix in etcd.
    public var upsync: UpsyncSource? = nil
    /// `upsync_dump_path` may come before `upsync`.
    var pendingUpsyncDumpPath: String? = nil
    /// Companion directives may precede `check`; they are kept here and merged at the end.
    var pendingCheck = CheckSettings()
    var sawHTTPSend = false
    var sawExpectAlive = false
    var sawKeepaliveRequests = false
    var sawFastcgiParams = false
    var sawSSLServerName = false
    var sawSSLVerify = false
    var sawSSLTrustedCertificate = false
    var sawExpectBody = false

    init(name: String, firstMention: SourceLocation) {
        self.name = name
        self.firstMention = firstMention
    }
}

/// A file named by a directive, with where it was named: errors loading it point at that line.
public struct PathSetting: Sendable, Equatable {
    public var path: String
    public var location: SourceLocation
}

/// `ssl_certificate`, `ssl_certificate_key` and their `proxy_ssl_` forms: a file (made absolute when the
/// configuration loads), PEM text after `data:`, or, with variables, a template that names one of those for
/// each connection (made absolute against the configuration's prefix then, as nginx does).
public struct CertificateSetting: Sendable {
    /// The file, the `data:` text, or the template's text (what nginx prints in its messages).
    public var path: String
    public var location: SourceLocation
    public var template: Template?
}

/// `ssl_session_cache`: nginx's `off`, `none` (the default), `builtin[:size]` and `shared:name:size`.
public enum SessionCacheSetting: Sendable, Equatable {
    case off, none
    case builtin(size: Int)
    case shared(name: String, size: Int)
}

/// `proxy_redirect`: `off`, `default` (the proxy_pass URL becomes the location's prefix), a prefix (which may
/// have variables) and its replacement, or a regex (`~`, `~*`) whose match makes the whole URL the replacement,
/// with its groups.
public enum ProxyRedirect: Sendable {
    case off, `default`
    case rule(Template, Template)
    case regex(Regex, Template)
}

/// `resolver address[:port] … [valid=time] [ipv4=on|off] [ipv6=on|off]`: the DNS servers that names in
/// `proxy_pass` variables are resolved with, while requests run.
public struct ResolverSetting: Sendable {
    public var servers: [PeerAddress]
    /// `valid=`: how long an answer is kept, instead of its TTL.
    public var validMs: Int?
    public var ipv4 = true
    public var ipv6 = true
    /// The directive's arguments: one resolver per distinct directive in a worker, as nginx has one per directive.
    public var text: String
}

/// `expires`: `off`, `epoch`, `max`, seconds from the response (negative: already expired), from its
/// Last-Modified (`modified`), the next time of day (`@15h30m`), or any of these from a variable.
public enum ExpiresSetting: Sendable {
    case off, epoch, max
    case access(Int), modified(Int), daily(Int)
    case variable(Template, modified: Bool)

    public struct Invalid: Error { public let message: String }

    /// nginx's ngx_http_parse_expires: one value, after `modified` when `modified`.
    public static func parse(_ v: String, modified: Bool) throws(Invalid) -> ExpiresSetting {
        if !modified {
            switch v {
            case "epoch": return .epoch
            case "max": return .max
            case "off": return .off
            default: break
            }
        }
        let daily = v.hasPrefix("@")
        if daily && modified { throw Invalid(message: "daily time cannot be used with \"modified\" parameter") }
        let negative = v.hasPrefix("-")
        guard let n = Values.seconds(String(daily || negative || v.hasPrefix("+") ? v.dropFirst() : Substring(v))) else {
            throw Invalid(message: "invalid value")
        }
        if daily {
            guard n <= 86_400 else { throw Invalid(message: "daily time value must be less than 24 hours") }
            return .daily(n)
        }
        return modified ? .modified(negative ? -n : n) : .access(negative ? -n : n)
    }
}

/// `add_header name value [always]`.
public struct AddedHeader: Sendable {
    public var name: String
    public var value: Template
    public var always: Bool
}

/// `proxy_set_header name value`: the value compiled once.
public struct HeaderSetting: Sendable {
    public var name: String
    public var value: Template
}

public struct AccessRule: Sendable, Equatable {
    public var allow: Bool
    /// nil means `all`.
    public var network: CIDR?
}

public struct ErrorPage: Sendable, Equatable {
    public var codes: [Int]
    public var overrideCode: Int?   // `=code`; 0 for bare `=`
    /// A URI, `@name` or a URL, possibly with variables.
    public var uri: Template
    public static func == (a: ErrorPage, b: ErrorPage) -> Bool { a.codes == b.codes && a.overrideCode == b.overrideCode && a.uri.text == b.uri.text }
}

/// Settings that nginx inherits http → server → location, one struct per module, each with its defaults
/// where its fields are declared. `Configuration.finish` merges every level with its parent once, as
/// nginx's merge functions do; afterwards every value is final.
public struct HTTPSettings: Sendable {
    public var core = CoreSettings()
    public var log = LogSettings()
    public var headers = HeadersSettings()
    public var proxy = ProxySettings()
    public var fastcgi = GatewaySettings()
    public var scgi = GatewaySettings()
    public var uwsgi = GatewaySettings()
    public var proxySSL = ProxySSLSettings()
    /// `uwsgi_ssl_*`, towards `uwsgi_pass suwsgi://` upstreams.
    public var uwsgiSSL = ProxySSLSettings()
    public var gzip = GzipSettings()
    public var charset = CharsetSettings()
    public var ssl = SSLSettings()
    public var status = StatusSettings()
    public var autoIndex = AutoIndexSettings()
    public var limits = LimitSettings()
    public var realIP = RealIPSettings()
    public var auth = AuthSettings()
    public var http2 = HTTP2Settings()

    public init() {}

    mutating func inherit(from p: HTTPSettings) {
        core.merge(p.core)
        log.merge(p.log)
        headers.merge(p.headers)
        proxy.merge(p.proxy)
        fastcgi.merge(p.fastcgi)
        scgi.merge(p.scgi)
        uwsgi.merge(p.uwsgi)
        proxySSL.merge(p.proxySSL)
        uwsgiSSL.merge(p.uwsgiSSL)
        gzip.merge(p.gzip)
        charset.merge(p.charset)
        ssl.merge(p.ssl)
        status.merge(p.status)
        autoIndex.merge(p.autoIndex)
        limits.merge(p.limits)
        realIP.merge(p.realIP)
        auth.merge(p.auth)
        http2.merge(p.http2)
    }
}

/// `proxy_pass` target: an upstream block, or a literal address (never checked, as in the reference).
/// A class: every proxied request holds its location's, and a struct of six references was copied (and each
/// of them retained and released) per request.
public final class ProxyPass: Sendable {
    /// `variable`: `proxy_pass http://$name…`, the host (and URI) known per request: an upstream block, an
    /// address, or a name the location's `resolver` resolves. `variableURL`: `proxy_pass $url`, the scheme
    /// too (`scheme` is then empty).
    public enum Target: Sendable { case upstream(String), address([PeerAddress], text: String), variable(Template), variableURL(Template) }
    public let scheme: String
    public let hostText: String
    public let port: UInt16?
    /// The host as a URL writes it: an IPv6 address in brackets (`[::1]`), as `$proxy_host` and the default
    /// proxy_ssl_name have it.
    public let urlHost: String
    /// `$proxy_host`: host, and port when one was written (made once, it goes into every request).
    public let hostHeader: String
    public let uri: String?           // nil: pass the request URI unchanged
    public let target: Target
    public let location: SourceLocation
    /// What the upstream speaks: `proxy_pass`'s HTTP, or a gateway protocol (FastCGI, SCGI, uwsgi).
    public let upstreamProtocol: UpstreamProtocol

    init(scheme: String, hostText: String, port: UInt16?, uri: String?, target: Target, location: SourceLocation,
         upstreamProtocol: UpstreamProtocol = .http) {
        self.upstreamProtocol = upstreamProtocol
        self.scheme = scheme
        self.hostText = hostText
        self.port = port
        // An IPv6 address is written in brackets in a Host, as in the URL it came from.
        let urlHost = hostText.contains(":") && Resolver.isNumericAddress(hostText) ? "[\(hostText)]" : hostText
        self.urlHost = urlHost
        hostHeader = port.map { "\(urlHost):\($0)" } ?? urlHost
        self.uri = uri
        self.target = target
        self.location = location
    }

    /// `http://` or `https://` (in any case) and what follows: nil for any other URL.
    public static func splitScheme(_ url: String) -> (scheme: String, rest: Substring)? {
        let lower = url.prefix(8).lowercased()
        if lower.hasPrefix("http://") { return ("http", url.dropFirst(7)) }
        if lower.hasPrefix("https://") { return ("https", url.dropFirst(8)) }
        return nil
    }

    /// `unix:/path:/uri` after the scheme: the socket ("unix:/path", its path ending at the next colon) and the
    /// URI after that colon (nil when there is none); nil when `rest` is not a unix socket's. nil as the socket
    /// when the path is empty.
    public static func splitUnix(_ rest: Substring) -> (socket: String?, uri: String?)? {
        guard rest.hasPrefix("unix:") else { return nil }
        let path = rest.dropFirst(5)
        let end = path.firstIndex(of: ":") ?? path.endIndex
        let uri = end < path.endIndex ? path[path.index(after: end)...] : ""
        return (end > path.startIndex ? "unix:" + path[..<end] : nil, uri.isEmpty ? nil : String(uri))
    }

    /// The same proxy_pass going to `target` (a host name resolved to its addresses).
    func with(target: Target) -> ProxyPass {
        ProxyPass(scheme: scheme, hostText: hostText, port: port, uri: uri, target: target, location: location,
                  upstreamProtocol: upstreamProtocol)
    }
}

/// The protocol a location's upstream speaks; its raw value is the scheme nginx's log lines give it.
public enum UpstreamProtocol: String, Sendable {
    case http, fastcgi, scgi, uwsgi
}

/// What produces a response's body in a location (nginx's content phase).
public enum ContentHandler: Sendable {
    case none
    case proxy(ProxyPass)
    case stubStatus
    case checkStatus
    /// NGINX Plus's `api`: the upstream API, its writes allowed or not.
    case upstreamAPI(write: Bool)
}

/// `alias`: a directory that stands for the URI's prefix the location matched; in a regex location, the whole
/// file's path. Nested locations without `root` or `alias` of their own keep their parent's, as in nginx.
public struct Alias: Sendable, Equatable {
    public let path: String
    /// The prefix of the URI the alias replaces; nil in a regex location.
    public let replacedPrefix: String?
}

/// `try_files file … uri|=code`: the first candidate that exists (a file; a directory when it ends in `/`)
/// becomes the URI; when none does, the last argument is an internal redirect, a named location or a status.
public struct TryFiles: Sendable {
    public struct Candidate: Sendable {
        public let name: Template
        public let isDirectory: Bool
    }
    public enum Fallback: Sendable {
        case uri(Template)
        case status(Int)
    }
    public let candidates: [Candidate]
    public let fallback: Fallback
}

public enum LocationMatch: Sendable, Equatable {
    case exact, prefix, preferentialPrefix, regex(caseInsensitive: Bool), named
}

public final class Location {
    public let match: LocationMatch
    public let pattern: String
    public var settings = HTTPSettings()
    public var content: ContentHandler = .none
    /// The rewrite module's directives (`set`, `if`, `rewrite`, `return`, `break`), compiled in order.
    public let script = Program()
    public var alias: Alias?
    /// `internal`: only internal redirects (error_page, try_files, rewrite, named locations) reach it.
    public var isInternal = false
    /// `try_files`: not inherited by nested locations, as in nginx.
    public var tryFiles: TryFiles?
    /// `limit_except`: the methods that keep this location's configuration (GET brings HEAD), and the nameless
    /// location every other method takes.
    public var limitExcept: (methods: Set<String>, block: Location)?
    /// Compiled when the configuration is validated (regex locations only).
    public internal(set) var regex: Regex?
    public var locations: [Location] = []
    /// The `if` blocks of this location, each a nameless location with this one's match and pattern (a URI is
    /// passed on and aliased as by this location), its settings inherited from this one's.
    public var ifBlocks: [Location] = []
    /// The location an `if` block is in.
    public private(set) unowned(unsafe) var parent: Location?
    public let location: SourceLocation
    init(match: LocationMatch, pattern: String, location: SourceLocation) {
        self.match = match
        self.pattern = pattern
        self.location = location
    }

    init(ifIn parent: Location, location: SourceLocation) {
        self.match = parent.match
        self.pattern = parent.pattern
        self.parent = parent
        self.location = location
    }

    /// Every block inside this one with a configuration of its own: nested locations and `if` blocks.
    public var configured: [Location] { locations + ifBlocks + (limitExcept.map { [$0.block] } ?? []) }
}

public final class Server {
    public var listens: [Listen] = []
    /// The names and wildcards, lowercased.
    public var serverNames: [String] = []
    /// nginx's `$server_name`: the first name as written (a regex with its "~", `.example.com` without its
    /// dot), "" without `server_name`.
    public var name = ""
    /// `server_name ~regex`, in order.
    public var serverNameRegexes: [Regex] = []
    public var settings = HTTPSettings()
    public var content: ContentHandler = .none   // server-level `check_status`: serves requests no location matches
    /// Server-level `try_files`: for requests no location matches.
    public var tryFiles: TryFiles?
    /// Server-level rewrite directives, run before the location is chosen (nginx's server rewrite phase).
    public let script = Program()
    public var locations: [Location] = []
    public let location: SourceLocation
    init(location: SourceLocation) { self.location = location }
}

public final class HTTPBlock {
    public var settings = HTTPSettings()
    public var servers: [Server] = []
    /// In order of first mention, as the reference indexes checked peers.
    public var upstreams: [Upstream] = []
    public var logFormats: [String: LogFormat] = ["combined": .combined()]
    /// `charset_map` tables.
    public var charsetMaps: [CharsetMap] = []
    /// How many `open_log_file_cache` caches the configuration makes (their ids).
    public var logFileCaches = 0
    /// Variables the configuration declares (`set`, `map`, named regex groups).
    public let variables = VariableTable()
    /// Templates whose names resolve once every declaration is read, with where each was written.
    var pendingTemplates: [(Template, SourceLocation, strict: Bool)] = []
    public var checkShmSize: Int? = nil
    /// Shared memory zones by name, as nginx's cycle keeps them: upstream `zone`s and `ssl_session_cache shared:`.
    var sharedZones: [SharedZone] = []
    /// `limit_req_zone`s and `limit_conn_zone`s in order of first mention (a `limit_req` may name one declared
    /// further down); rules hold their index.
    public internal(set) var limitZones: [LimitZoneSpec] = []
    /// `*_cache_path`s in order.
    public internal(set) var cacheZones: [CacheZoneSpec] = []
    /// Some template reads `$upstream_http_*` or `$upstream_cookie_*`: proxied requests keep the upstream's
    /// response head (no copy is made otherwise).
    public internal(set) var readsUpstreamHeaders = false
    /// Some template reads `$sent_http_*`: requests keep a copy of their response head.
    public internal(set) var readsSentHeaders = false
    /// Some level has `set_real_ip_from`: requests look for the client's real address.
    public internal(set) var usesRealIP = false
    /// `check_state_file PATH [interval=time]`: where the master keeps every peer's verdict and admin state.
    public var checkStateFile: PathSetting? = nil
    public var checkStateIntervalMs = 10_000
    /// nginx compares upstream names case-insensitively.
    public func upstream(named name: String) -> Upstream? {
        let lower = name.lowercased()
        return upstreams.first { $0.name.lowercased() == lower }
    }
}

/// An upstream `zone` as the segment lays it out.
public struct UpstreamZone: Sendable {
    public var name: String
    /// Bytes, 0 when no declaration gave a size.
    public var size: Int
    public var peers: Int
    public var location: SourceLocation
}

/// A `limit_req_zone` or `limit_conn_zone`.
public struct LimitZoneSpec: Sendable {
    public enum Kind: Sendable { case requests, connections }
    public let name: String
    public let kind: Kind
    /// Bytes; 0 while only a `limit_req`/`limit_conn` has named it.
    public var size = 0
    /// nil until the zone's directive declares it.
    public var key: LimitKey?
    public var keyText = ""
    /// Milli-requests a second (limit_req).
    public var rate = 1000
}

/// A `*_cache_path`: the directory a cache's files live in, how they are spread over subdirectories, and its
/// keys zone.
public struct CacheZoneSpec: Sendable {
    public internal(set) var name = ""
    public let path: String
    /// `levels=1:2`: the subdirectories' name lengths, taken from the end of the key's MD5 (none by default).
    public internal(set) var levels: [Int] = []
    /// The keys zone's bytes.
    public internal(set) var size = 0
    /// Seconds a key may go unused before the manager removes it and its file (nginx's 10m).
    public internal(set) var inactive = 600
    /// Bytes the files may take (nil: no limit; 0 is none at all, as in nginx).
    public internal(set) var maxSize: Int? = nil
    /// Bytes the file system must keep free: below that the manager removes the least recently used (0: no
    /// limit).
    public internal(set) var minFree = 0
    /// The manager's pass: at most this many files, then a pause.
    public internal(set) var managerFiles = 100
    public internal(set) var managerSleepMs = 50
    /// The loader's pass over the files already on disk, likewise.
    public internal(set) var loaderFiles = 100
    public internal(set) var loaderSleepMs = 50
    public let location: SourceLocation
}

/// A zone's key: `$binary_remote_addr`, the usual one, read straight from the connection's address; else a
/// template.
public enum LimitKey: Sendable {
    case binaryRemoteAddr
    case template(Template)
}

/// A named shared memory zone (nginx's `ngx_shared_memory_add`): one name, one use, one size.
struct SharedZone {
    enum Use { case upstream, sslSessionCache, limitReq, limitConn, cache }
    var name: String
    var use: Use
    /// 0 until some declaration gives it (an upstream `zone` may name a zone without a size).
    var size: Int
    /// The declaration that gave the size, else the first one.
    var location: SourceLocation
}

extension HTTPBlock {
    /// As nginx's `ngx_shared_memory_add`: a name is declared once per use, and sizes given twice must agree.
    func addSharedZone(_ call: Call, name: String, size: Int, use: SharedZone.Use) throws {
        guard let i = sharedZones.firstIndex(where: { $0.name == name }) else {
            sharedZones.append(SharedZone(name: name, use: use, size: size, location: call.location))
            return
        }
        guard sharedZones[i].use == use else {
            throw call.error("the shared memory zone \"\(name)\" is already declared for a different use")
        }
        if sharedZones[i].size == 0 {
            sharedZones[i].size = size
            sharedZones[i].location = call.location
        }
        if size != 0 && size != sharedZones[i].size {
            throw call.error("the size \(size) of shared memory zone \"\(name)\" conflicts with already declared size \(sharedZones[i].size)")
        }
    }
}

public final class EventsBlock {
    public var workerConnections = 512
    public var multiAccept = false
    /// `debug_connection`: clients whose requests log at debug level.
    public var debugConnections: [CIDR] = []
    public var debugUnixClients = false
}

/// A checked peer as the shm table numbers it: upstreams in order, primaries then backups, `down` skipped.
public struct CheckedPeer: Sendable {
    public var upstream: String
    public var address: PeerAddress
    public var check: CheckSettings
    /// The `server` line's host when it is a name, not a numeric address: an https check's default SNI.
    public var hostName: String? = nil

    public init(upstream: String, address: PeerAddress, check: CheckSettings, hostName: String? = nil) {
        self.upstream = upstream
        self.address = address
        self.check = check
        self.hostName = hostName
    }

    /// The address actually probed (port replaced by `port=`).
    public var checkAddress: PeerAddress {
        var a = address
        if check.port > 0 { a.port = UInt16(truncatingIfNeeded: check.port) }
        return a
    }
}

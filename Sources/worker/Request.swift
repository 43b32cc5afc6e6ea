#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import HTTP

/// What the request path needs of a server or location, resolved once per worker: its merged settings,
/// held in a class of this module so that requests borrow them in place (reading them through Config's
/// classes copied the whole, large, struct on every access), and for a `proxy_pass` location its balancer
/// and header templates.
final class SettingsScope {
    let settings: HTTPSettings
    let proxyRoute: ProxyRoute?
    init(_ settings: HTTPSettings, proxyRoute: ProxyRoute? = nil) {
        self.settings = settings
        self.proxyRoute = proxyRoute
    }
}

/// One request in flight on a client connection: where it was routed and what has been answered.
final class RequestContext {
    let head: RequestHead
    let server: Server
    let location: Location?
    private let scope: SettingsScope
    /// The location's merged settings (the server's when there is no location).
    var settings: HTTPSettings { _read { yield scope.settings } }
    /// Set for a request in a `proxy_pass` location (every one is resolved at worker start).
    var proxyRoute: ProxyRoute? { scope.proxyRoute }
    let startUs = vigil_monotonic_us()
    let requestLength: Int
    var status = 0
    var bodyBytesSent = 0
    var headerBytesSent = 0
    /// Each upstream tried, in order; the $upstream_* strings are made only if something reads them.
    var upstreamAttempts: [UpstreamAttempt] = []
    var upstreamAddr: String? { upstreamList { $0.address } }
    var upstreamStatus: String? { upstreamList { $0.status.map(String.init) } }
    var upstreamResponseTime: String? { upstreamList { $0.elapsedUs.map(Variables.seconds) } }

    private func upstreamList(_ field: (UpstreamAttempt) -> String?) -> String? {
        let parts = upstreamAttempts.compactMap(field)
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
    /// The request body, when a handler needs it whole (proxying).
    var body: [UInt8] = []

    init(head: RequestHead, server: Server, location: Location?, scope: SettingsScope, requestLength: Int) {
        self.head = head
        self.server = server
        self.location = location
        self.scope = scope
        self.requestLength = requestLength
    }

    /// nginx's `$host`: the Host header without port, lowercased, else the first server_name.
    var host: String {
        if var h = head.host?.lowercased(), !h.isEmpty {
            if h.hasPrefix("[") { return String(h.prefix(while: { $0 != "]" })) + "]" }
            if let c = h.firstIndex(of: ":") { h = String(h[..<c]) }
            return h
        }
        return server.serverNames.first ?? ""
    }
}

/// One upstream a request was sent to: its address, the status it gave (or 502/504 for a failure) and how
/// long it took.
struct UpstreamAttempt {
    let address: String
    var status: Int?
    var elapsedUs: UInt64?
}

/// An nginx variable, resolved from its name once, when a template is compiled, so that rendering does
/// not compare names.
enum Variable {
    case remoteAddr, remotePort, timeLocal, msec, request, requestMethod, requestURI, uri, args, isArgs
    case serverProtocol, scheme, host, hostname, serverName, serverPort, serverAddr, status, bodyBytesSent
    case bytesSent, requestLength, requestTime, connection, connectionRequests, pid, contentLength, contentType
    case upstreamAddr, upstreamStatus, upstreamResponseTime, proxyHost, proxyAddXForwardedFor
    case https, sslProtocol, sslCipher, sslServerName, sslSessionReused
    /// `$http_user_agent`: the header `user-agent`.
    case httpHeader(String)
    /// `$arg_name`: a query argument.
    case arg(String)
    /// Variables Vigil knows but never sets ($remote_user, $time_iso8601) and unknown names.
    case none

    init(name: String) {
        switch name {
        case "remote_addr", "binary_remote_addr": self = .remoteAddr
        case "remote_port": self = .remotePort
        case "time_local": self = .timeLocal
        case "msec": self = .msec
        case "request": self = .request
        case "request_method": self = .requestMethod
        case "request_uri": self = .requestURI
        case "uri", "document_uri": self = .uri
        case "args", "query_string": self = .args
        case "is_args": self = .isArgs
        case "server_protocol": self = .serverProtocol
        case "scheme": self = .scheme
        case "host": self = .host
        case "hostname": self = .hostname
        case "server_name": self = .serverName
        case "server_port": self = .serverPort
        case "server_addr": self = .serverAddr
        case "status": self = .status
        case "body_bytes_sent": self = .bodyBytesSent
        case "bytes_sent": self = .bytesSent
        case "request_length": self = .requestLength
        case "request_time": self = .requestTime
        case "connection": self = .connection
        case "connection_requests": self = .connectionRequests
        case "pid": self = .pid
        case "content_length": self = .contentLength
        case "content_type": self = .contentType
        case "upstream_addr": self = .upstreamAddr
        case "upstream_status": self = .upstreamStatus
        case "upstream_response_time": self = .upstreamResponseTime
        case "proxy_host": self = .proxyHost
        case "proxy_add_x_forwarded_for": self = .proxyAddXForwardedFor
        case "https": self = .https
        case "ssl_protocol": self = .sslProtocol
        case "ssl_cipher": self = .sslCipher
        case "ssl_server_name": self = .sslServerName
        case "ssl_session_reused": self = .sslSessionReused
        case _ where name.hasPrefix("http_"): self = .httpHeader(String(name.dropFirst(5)).replacingUnderscores())
        case _ where name.hasPrefix("arg_"): self = .arg(String(name.dropFirst(4)))
        default: self = .none
        }
    }
}

/// Values of nginx variables for a request on a connection (log formats, proxy_set_header).
struct Variables {
    let request: RequestContext
    let connection: ClientConnection

    /// Microseconds as nginx prints durations: seconds with milliseconds, `0.012`.
    static func seconds(_ us: UInt64) -> String {
        "\(us / 1_000_000).\(String(us / 1000 % 1000).leftPadded(3))"
    }

    func value(_ variable: Variable) -> String? {
        let h = request.head
        switch variable {
        case .remoteAddr: return connection.remoteAddress
        case .remotePort: return String(connection.remotePort)
        case .timeLocal: return Clock.timeLocal()
        case .msec:
            let ms = vigil_realtime_ms()
            return "\(ms / 1000).\(String(ms % 1000).leftPadded(3))"
        case .request: return h.requestLine
        case .requestMethod: return h.method
        case .requestURI: return h.target
        case .uri: return h.path
        case .args: return h.query
        case .isArgs: return h.query == nil ? "" : "?"
        case .serverProtocol: return "HTTP/\(h.versionMajor).\(h.versionMinor)"
        case .scheme: return connection.tls == nil ? "http" : "https"
        case .https: return connection.tls == nil ? "" : "on"
        case .sslProtocol: return connection.tls?.protocolName
        case .sslCipher: return connection.tls?.cipherName
        case .sslServerName: return connection.tls?.serverName
        case .sslSessionReused: return connection.tls.map { $0.sessionReused ? "r" : "." }
        case .host: return request.host
        case .hostname: return connection.worker.hostname
        case .serverName: return request.server.serverNames.first ?? ""
        case .serverPort: return String(connection.listening.listen.address.port)
        case .serverAddr: return connection.listening.listen.address.host
        case .status: return String(request.status)
        case .bodyBytesSent: return String(request.bodyBytesSent)
        case .bytesSent: return String(request.bodyBytesSent + request.headerBytesSent)
        case .requestLength: return String(request.requestLength)
        case .requestTime: return Variables.seconds(vigil_monotonic_us() - request.startUs)
        case .connection: return String(connection.serial)
        case .connectionRequests: return String(connection.requestsServed + 1)
        case .pid: return String(getpid())
        case .contentLength: return h.contentLength.map(String.init)
        case .contentType: return h.header("content-type")
        case .upstreamAddr: return request.upstreamAddr
        case .upstreamStatus: return request.upstreamStatus
        case .upstreamResponseTime: return request.upstreamResponseTime
        case .proxyHost:
            if case .proxy(let p)? = request.location?.content { return p.hostHeader }
            return nil
        case .proxyAddXForwardedFor:
            if let xff = h.header("x-forwarded-for") { return xff + ", " + connection.remoteAddress }
            return connection.remoteAddress
        case .httpHeader(let name): return h.header(name)
        case .arg(let key):
            guard let q = h.query else { return nil }
            for pair in q.split(separator: "&") where pair.hasPrefix(key + "=") { return String(pair.dropFirst(key.count + 1)) }
            return nil
        case .none: return nil
        }
    }

    /// Expands `$name`/`${name}` in a proxy_set_header value; unknown variables expand to "".
    func expand(_ template: String) -> String {
        guard template.utf8.contains(UInt8(ascii: "$")) else { return template }
        return render(connection.worker.compiledTemplate(template))
    }

    /// A compiled template with this request's values.
    func render(_ compiled: CompiledLogFormat) -> String {
        var out = ""
        for p in compiled.parts {
            switch p {
            case .literal(let s): out += s
            case .variable(let v): out += value(v) ?? ""
            }
        }
        return out
    }
}

extension String {
    /// `$http_user_agent` names the header `user-agent`.
    func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}

#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import HTTP

/// One request in flight on a client connection: where it was routed and what has been answered.
final class RequestContext {
    let head: RequestHead
    let server: Server
    let location: Location?
    /// The location's merged settings, borrowed in place (the struct is large; copying it per request is not free).
    var settings: HTTPSettings {
        _read {
            if let location { yield location.settings } else { yield server.settings }
        }
    }
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

    init(head: RequestHead, server: Server, location: Location?, requestLength: Int) {
        self.head = head
        self.server = server
        self.location = location
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

/// Values of nginx variables for a request on a connection (log formats, proxy_set_header).
struct Variables {
    let request: RequestContext
    let connection: ClientConnection

    /// Microseconds as nginx prints durations: seconds with milliseconds, `0.012`.
    static func seconds(_ us: UInt64) -> String {
        "\(us / 1_000_000).\(String(us / 1000 % 1000).leftPadded(3))"
    }

    func value(_ name: String) -> String? {
        let h = request.head
        switch name {
        case "remote_addr", "binary_remote_addr": return connection.remoteAddress
        case "remote_port": return String(connection.remotePort)
        case "remote_user": return nil
        case "time_local": return Clock.timeLocal()
        case "time_iso8601": return nil
        case "msec":
            let ms = vigil_realtime_ms()
            return "\(ms / 1000).\(String(ms % 1000).leftPadded(3))"
        case "request": return h.requestLine
        case "request_method": return h.method
        case "request_uri": return h.target
        case "uri", "document_uri": return h.path
        case "args", "query_string": return h.query
        case "is_args": return h.query == nil ? "" : "?"
        case "server_protocol": return "HTTP/\(h.versionMajor).\(h.versionMinor)"
        case "scheme": return "http"
        case "host": return request.host
        case "hostname": return connection.worker.hostname
        case "server_name": return request.server.serverNames.first ?? ""
        case "server_port": return String(connection.listening.listen.address.port)
        case "server_addr": return connection.listening.listen.address.host
        case "status": return String(request.status)
        case "body_bytes_sent": return String(request.bodyBytesSent)
        case "bytes_sent": return String(request.bodyBytesSent + request.headerBytesSent)
        case "request_length": return String(request.requestLength)
        case "request_time": return Variables.seconds(vigil_monotonic_us() - request.startUs)
        case "connection": return String(connection.serial)
        case "connection_requests": return String(connection.requestsServed + 1)
        case "pid": return String(getpid())
        case "content_length": return h.contentLength.map(String.init)
        case "content_type": return h.header("content-type")
        case "upstream_addr": return request.upstreamAddr
        case "upstream_status": return request.upstreamStatus
        case "upstream_response_time": return request.upstreamResponseTime
        case "proxy_host":
            if case .proxy(let p)? = request.location?.content { return p.port.map { "\(p.hostText):\($0)" } ?? p.hostText }
            return nil
        case "proxy_add_x_forwarded_for":
            if let xff = h.header("x-forwarded-for") { return xff + ", " + connection.remoteAddress }
            return connection.remoteAddress
        default:
            if name.hasPrefix("http_") {
                return h.header(String(name.dropFirst(5)).replacingUnderscores())
            }
            if name.hasPrefix("arg_"), let q = h.query {
                let key = String(name.dropFirst(4))
                for pair in q.split(separator: "&") where pair.hasPrefix(key + "=") { return String(pair.dropFirst(key.count + 1)) }
            }
            return nil
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
            case .variable(let n): out += value(n) ?? ""
            }
        }
        return out
    }
}

extension String {
    /// `$http_user_agent` names the header `user-agent`.
    func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}

#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import Script

/// Values of nginx variables for a request on a connection (log formats, proxy_set_header).
struct Variables {
    let request: RequestContext
    private var client: ClientInfo { request.client }
    private var service: HTTPService { request.service }

    func value(_ variable: Variable) -> String? {
        switch variable {
        case .remoteAddr: return client.address
        case .remotePort: return String(client.port)
        case .timeLocal: return Clock.timeLocal()
        case .msec:
            return Clock.msec(vigil_realtime_ms())
        case .request: return request.head.requestLine
        case .requestMethod: return request.method
        case .requestURI: return request.head.target
        case .uri: return request.uri
        case .args: return request.args
        case .isArgs: return request.args == nil ? "" : "?"
        case .serverProtocol: return "HTTP/\(request.head.versionMajor).\(request.head.versionMinor)"
        case .scheme: return client.isSecure ? "https" : "http"
        case .https: return client.isSecure ? "on" : ""
        case .sslProtocol: return client.tls?.protocolName
        case .sslCipher: return client.tls?.cipherName
        case .sslServerName: return client.tls?.serverName
        case .sslSessionReused: return client.tls.map { $0.sessionReused ? "r" : "." }
        case .host: return request.host
        case .hostname: return service.hostname
        case .serverName: return request.server.serverNames.first ?? ""
        case .serverPort: return String(client.listen.address.port)
        case .serverAddr: return client.localAddress
        case .status: return String(request.status)
        case .bodyBytesSent: return String(request.bodyBytesSent)
        case .bytesSent: return String(request.bodyBytesSent + request.headerBytesSent)
        case .requestLength: return String(request.requestLength)
        case .requestTime: return Clock.seconds(fromMicroseconds: service.loop.nowUs - request.startUs)
        case .connection: return String(client.serial)
        case .connectionRequests: return String(client.requestsServed + 1)
        case .pid: return String(getpid())
        case .contentLength: return request.head.contentLength.map(String.init)
        case .contentType: return request.header("content-type")
        case .upstreamAddr: return request.upstreamAttempts.list { $0.address }
        case .upstreamStatus: return request.upstreamAttempts.list { $0.status.map(String.init) }
        case .upstreamResponseTime: return request.upstreamAttempts.list { $0.elapsedUs.map(Clock.seconds(fromMicroseconds:)) }
        case .proxyHost:
            if let h = request.proxyHost { return h }
            if case .proxy(let p)? = request.location?.content { return p.hostHeader }
            return nil
        case .proxyAddXForwardedFor:
            if let xff = request.header("x-forwarded-for") { return xff + ", " + client.address }
            return client.address
        case .httpHeader(let name): return request.header(name)
        case .arg(let key):
            guard let q = request.head.query else { return nil }
            for pair in q.split(separator: "&") where pair.hasPrefix(key + "=") { return String(pair.dropFirst(key.count + 1)) }
            return nil
        case .cookie(let name): return Variables.cookie(name, in: request.header("cookie"))
        case .user(let i): return request.userValue(i) ?? mapped(i)
        case .capture(let n): return request.captures?.group(n)
        case .timeISO8601: return Clock.iso8601()
        case .documentRoot: return request.location?.alias?.path ?? request.settings.core.root
        case .requestFilename: return StaticFiles.filePath(request.uri, request)
        case .buffersHeld: return String(service.buffers.held)
        case .buffersPooled: return String(service.buffers.pooled)
        case .realpathRoot:
            // The root with its symbolic links resolved (nginx: a root that does not exist is an error, empty here).
            guard let root = value(.documentRoot), let real = realpath(root, nil) else { return nil }
            defer { free(real) }
            return String(cString: real)
        case .requestBody: return request.body.bytes.isEmpty ? nil : String(decoding: request.body.bytes, as: UTF8.self)
        case .none: return nil
        }
    }

    /// A `map` variable, chosen when first read and kept for the request unless the map is volatile.
    private func mapped(_ i: Int) -> String? {
        guard let map = service.config.http?.variables.maps[i] else { return nil }
        let v = map.evaluate(request)
        if !map.volatile { request.setUser(i, v) }
        return v
    }

    /// `$cookie_name`: the value of `name` in the Cookie header (`a=1; b=2`).
    static func cookie(_ name: String, in header: String?) -> String? {
        guard let header else { return nil }
        for pair in header.split(separator: ";") {
            let p = pair.drop(while: { $0 == " " })
            if p.hasPrefix(name + "=") { return String(p.dropFirst(name.count + 1)) }
        }
        return nil
    }
}

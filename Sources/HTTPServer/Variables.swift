#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import HTTP
import Script

/// Values of nginx variables for a request on a connection (log formats, proxy_set_header).
struct Variables {
    let request: RequestContext
    private var client: ClientInfo { request.client }
    private var service: HTTPService { request.service }
    private var scheme: String { client.isSecure ? "https" : "http" }
    private var https: String { client.isSecure ? "on" : "" }
    private var documentRoot: String { request.location?.alias?.path ?? request.settings.core.root }

    /// nginx's split of the URI by fastcgi_split_path_info's two groups; without it, or when it does not
    /// match, the whole URI is the script.
    private func fastcgiSplit() -> (script: String, pathInfo: String) {
        guard let re = request.settings.fastcgi.splitPathInfo, let m = re.match(request.uri) else { return (request.uri, "") }
        return (m.group(1) ?? "", m.group(2) ?? "")
    }

    func value(_ variable: Variable) -> String? {
        switch variable {
        case .remoteAddr: return client.address
        // The address's 4 or 16 bytes ("unix:" for a unix socket, as nginx). A String holds text: each byte is
        // the character of that number, so bytes past 0x7F are not themselves in a log line.
        case .binaryRemoteAddr:
            let bytes = client.addressBytes
            return bytes.isEmpty ? client.address : String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        case .remotePort: return Variables.port(client.port)
        case .realipRemoteAddr: return client.peerAddress
        case .realipRemotePort: return Variables.port(client.peerPort)
        case .proxyProtocolAddr: return client.proxyProtocol?.sourceAddress
        case .proxyProtocolPort: return client.proxyProtocol.map { Variables.port($0.sourcePort) }
        case .proxyProtocolServerAddr: return client.proxyProtocol?.destinationAddress
        case .proxyProtocolServerPort: return client.proxyProtocol.map { Variables.port($0.destinationPort) }
        case .proxyProtocolTLV(let name):
            // A binary value's bytes past 0x7F are not themselves in a String, as $binary_remote_addr's.
            return client.proxyProtocol.flatMap { ProxyProtocol.tlv(name[...], in: $0.tlvs) }
                .map { String(String.UnicodeScalarView($0.map { Unicode.Scalar($0) })) }
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
        case .scheme: return scheme
        case .https: return https
        case .http2: return request.head.versionMajor == 2 ? (client.isSecure ? "h2" : "h2c") : ""
        case .sslProtocol: return client.tls?.protocolName
        case .sslCipher: return client.tls?.cipherName
        case .sslCurve: return client.tls?.curveName
        case .sslCurves: return client.tls?.offeredCurves
        case .sslServerName: return client.tls?.serverName
        case .sslSessionReused: return client.tls.map { $0.sessionReused ? "r" : "." }
        case .sslSessionID: return client.tls?.sessionID
        case .sslCiphers: return client.tls?.offeredCiphers
        case .sslClientSDNLegacy: return client.tls?.clientSubjectLegacy
        case .sslClientIDNLegacy: return client.tls?.clientIssuerLegacy
        case .sslClientVerify: return client.tls?.clientVerify
        case .sslClientSDN: return client.tls?.clientSubject
        case .sslClientIDN: return client.tls?.clientIssuer
        case .sslClientSerial: return client.tls?.clientSerial
        case .sslClientFingerprint: return client.tls?.clientFingerprint
        case .sslClientCert: return client.tls?.clientCertificate
        case .sslClientRawCert: return client.tls?.clientRawCertificate
        case .sslClientEscapedCert: return client.tls?.clientEscapedCertificate
        case .sslClientVStart: return client.tls?.clientValidFrom
        case .sslClientVEnd: return client.tls?.clientValidUntil
        case .sslClientVRemain: return client.tls?.clientValidRemain
        case .host: return request.host
        case .hostname: return service.hostname
        case .serverName: return request.server.name
        case .serverPort: return String(client.listen.address.port)
        case .serverAddr: return client.localAddress
        case .status: return String(request.status)
        case .limitRate: return String(request.limitRate ?? 0)
        case .limitReqStatus: return request.limitReqStatus.name
        case .limitConnStatus: return request.limitConnStatus.name
        case .pipe: return request.isPipelined ? "p" : "."
        case .bodyBytesSent: return String(request.bodyBytesSent)
        case .bytesSent: return String(request.bodyBytesSent + request.headerBytesSent)
        case .requestLength: return String(request.requestLength)
        case .requestTime: return Clock.seconds(fromMicroseconds: service.loop.nowUs - request.startUs)
        case .connection: return String(client.serial)
        case .connectionRequests: return String(client.requestsServed + 1)
        case .connectionTime: return Clock.seconds(fromMicroseconds: (service.loop.now - client.openedAt) * 1000)
        case .pid: return String(getpid())
        // As nginx: a chunked body's length once it has all been read.
        case .contentLength:
            if let n = request.head.contentLength { return String(n) }
            return request.head.chunked && request.body.complete ? String(request.body.received) : nil
        case .contentType: return request.joinedHeader("content-type")
        case .upstreamAddr: return request.upstreamAttempts.list { $0.address }
        case .upstreamStatus: return request.upstreamAttempts.list { $0.status.map(String.init) }
        case .upstreamCacheStatus: return request.cacheStatus
        case .upstreamCacheLastModified: return request.cacheValidators?.lastModified
        case .upstreamCacheEtag: return request.cacheValidators?.etag
        case .upstreamResponseTime: return request.upstreamAttempts.list { $0.elapsedUs.map(Clock.seconds(fromMicroseconds:)) }
        case .upstreamConnectTime: return request.upstreamAttempts.list { $0.connectUs.map(Clock.seconds(fromMicroseconds:)) }
        case .upstreamHeaderTime: return request.upstreamAttempts.list { $0.headerUs.map(Clock.seconds(fromMicroseconds:)) }
        case .upstreamResponseLength: return request.upstreamAttempts.list { String($0.bytesReceived - $0.headLength - $0.framingLength) }
        case .upstreamBytesReceived: return request.upstreamAttempts.list { String($0.bytesReceived) }
        case .upstreamBytesSent: return request.upstreamAttempts.list { String($0.bytesSent) }
        case .upstreamHeader(let name):
            guard let (block, fields) = request.upstreamHead else { return nil }
            return block.withUnsafeBytes { RequestHead.joinedValues(of: name, in: $0, fields, separator: ", ") }
        case .sentTrailer(let name):
            let values = request.sentTrailers.filter { $0.name.lowercased() == name }.map(\.value)
            return values.isEmpty ? nil : values.joined(separator: ", ")
        case .sentHeader(let name):
            guard let head = request.sentHead else { return nil }
            return Variables.field(name, inHead: head)
        case .upstreamCookie(let name):
            guard let (block, fields) = request.upstreamHead else { return nil }
            return block.withUnsafeBytes { buf in
                fields.lazy.filter { RequestParser.matches(buf[$0.name], lowercase: "set-cookie") }
                    .compactMap { Variables.setCookie(name, in: String(decoding: buf[$0.value], as: UTF8.self)) }.first
            }
        case .proxyHost:
            if let h = request.proxyHost { return h }
            if case .proxy(let p)? = request.location?.content { return p.hostHeader }
            return nil
        case .proxyPort:
            guard case .proxy(let p)? = request.location?.content else { return nil }
            return String(p.port ?? (p.scheme == "https" ? 443 : 80))
        case .fastcgiScriptName:
            let script = fastcgiSplit().script
            guard Variables.endsInSlash(script), let index = request.settings.fastcgi.index else { return script }
            return script + index
        case .fastcgiPathInfo: return fastcgiSplit().pathInfo
        // What Debian's fastcgi_params sends as SERVER_SOFTWARE nginx/$nginx_version: Vigil's own version.
        case .nginxVersion: return Version.number
        case .proxyAddXForwardedFor:
            if let xff = request.header("x-forwarded-for") { return xff + ", " + client.address }
            return client.address
        case .httpHeader(let name): return request.joinedHeader(name)
        case .arg(let key):
            // As nginx: the arguments as they are now (after a rewrite), the name in any case.
            guard let q = request.args else { return nil }
            let k = Array(key.utf8)
            for pair in q.utf8.split(separator: UInt8(ascii: "&")) {
                let p = Array(pair)
                if p.count > k.count && p[k.count] == UInt8(ascii: "=") && zip(p, k).allSatisfy({ Variables.lower($0) == Variables.lower($1) }) {
                    return String(decoding: p[(k.count + 1)...], as: UTF8.self)
                }
            }
            return nil
        case .cookie(let name): return Variables.cookie(name, in: request.joinedHeader("cookie"))
        case .remoteUser: return Variables.basicUser(request)
        case .user(let i): return request.userValue(i) ?? mapped(i)
        case .capture(let n): return request.captures?.group(n)
        case .timeISO8601: return Clock.iso8601()
        case .documentRoot: return documentRoot
        case .requestFilename: return StaticFiles.filePath(request.uri, request)
        case .connectionsActive: return String(StubStatus.Gauges(service.counters).active)
        case .connectionsReading: return String(StubStatus.Gauges(service.counters).reading)
        case .connectionsWriting: return String(StubStatus.Gauges(service.counters).writing)
        case .connectionsWaiting: return String(StubStatus.Gauges(service.counters).waiting)
        case .buffersHeld: return String(service.buffers.held)
        case .buffersPooled: return String(service.buffers.pooled)
        case .realpathRoot:
            // The root with its symbolic links resolved (nginx: a root that does not exist is an error, empty here).
            guard let root = value(.documentRoot), let real = realpath(root, nil) else { return nil }
            defer { free(real) }
            return String(cString: real)
        case .requestBody: return request.body.bytes.isEmpty ? nil : String(decoding: request.body.bytes, as: UTF8.self)
        case .requestBodyFile: return request.body.file?.path
        case .none: return nil
        }
    }

    /// The value's bytes appended to `out` (false: it has none). The variables a gateway's params send for every
    /// request (Debian's fastcgi_params) are written from what the request holds, without a String each.
    func append(_ variable: Variable, to out: OutputQueue) -> Bool {
        switch variable {
        case .serverProtocol:
            out.append("HTTP/")
            out.append(request.head.versionMajor)
            out.append(".")
            out.append(request.head.versionMinor)
        case .remotePort: if client.port != 0 { out.append(Int(client.port)) }
        case .serverPort: out.append(Int(client.listen.address.port))
        case .host:
            if let h = request.head.host, !h.isEmpty { HostName.appendServerName(h, to: out) } else { out.append(request.server.name) }
        case .contentType: return request.appendJoinedHeader("content-type", to: out)
        case .httpHeader(let name): return request.appendJoinedHeader(name, to: out)
        case .fastcgiScriptName where request.settings.fastcgi.splitPathInfo == nil && !Variables.endsInSlash(request.uri):
            out.append(request.uri)
        // What a gateway's params read on every request, written without an optional String made of each.
        case .requestMethod: out.append(request.method)
        case .requestURI: out.append(request.head.target)
        case .uri: out.append(request.uri)
        case .args:
            guard let args = request.args else { return false }
            out.append(args)
        case .scheme: out.append(scheme)
        case .https: out.append(https)
        case .remoteAddr: out.append(client.address)
        case .serverAddr: out.append(client.localAddress)
        case .serverName: out.append(request.server.name)
        case .documentRoot: out.append(documentRoot)
        default:
            guard let s = value(variable) else { return false }
            out.append(s)
        }
        return true
    }

    /// Whether a script name is a directory's (fastcgi_index then names the script): its last byte read from the
    /// string's bytes, not through the generic UTF8View.last.
    private static func endsInSlash(_ s: String) -> Bool { s.withUTF8Bytes { $0.last } == UInt8(ascii: "/") }

    /// A `map` variable, chosen when first read and kept for the request unless the map is volatile.
    private func mapped(_ i: Int) -> String? {
        guard let map = service.config.http?.variables.maps[i] else { return nil }
        let v = map.evaluate(request)
        if !map.volatile { request.setUser(i, v) }
        return v
    }

    /// `$sent_http_name` in a written head (status line, then `Name: value` lines): every field of that name,
    /// joined by ", " (as nginx 1.23+).
    static func field(_ name: String, inHead head: [UInt8]) -> String? {
        let values = fields(name, inHead: head)
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    /// Every value of the field `name` (lowercase) in a written head, in order.
    static func fields(_ name: String, inHead head: [UInt8]) -> [String] {
        var values: [String] = []
        for line in String(decoding: head, as: UTF8.self).split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == name else { continue }
            values.append(String(line[line.index(after: colon)...].drop(while: { $0 == " " })))
        }
        return values
    }

    /// `$upstream_cookie_name`: the value a `Set-Cookie: name=value; Path=/` line gives `name`, as nginx reads
    /// it: the name (any case) first on the line, spaces allowed around `=`, the value up to `;`.
    static func setCookie(_ name: String, in line: String) -> String? {
        let bytes = Array(line.utf8), key = Array(name.utf8)
        guard bytes.count > key.count, zip(bytes, key).allSatisfy({ lower($0) == lower($1) }) else { return nil }
        var i = key.count
        while i < bytes.count && bytes[i] == 0x20 { i += 1 }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else { return nil }
        i += 1
        while i < bytes.count && bytes[i] == 0x20 { i += 1 }
        let end = bytes[i...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
        return String(decoding: bytes[i..<end], as: UTF8.self)
    }

    /// A port as nginx prints one: none for 0 (a unix-domain client, an address realip found without a port).
    static func port(_ p: UInt16) -> String { p == 0 ? "" : String(p) }

    static func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }

    /// `$remote_user`: the user of an `Authorization: Basic` header, as nginx decodes it (nil when there is none
    /// or it is not valid base64 with a colon).
    static func basicUser(_ request: RequestContext) -> String? {
        request.withHeader("authorization") { value in
            basicCredentials(value).map { String(decoding: $0.decoded[..<$0.colon], as: UTF8.self) }
        } ?? nil
    }

    /// `Authorization: Basic` decoded, with where its first ":" is, as nginx's ngx_http_auth_basic_user takes
    /// it: nil without a user (an empty one too) or a colon. Read as bytes: a request checked by auth_basic
    /// goes through here every time.
    static func basicCredentials(_ value: UnsafeRawBufferPointer) -> (decoded: [UInt8], colon: Int)? {
        guard value.count > 6, RequestParser.matches(value.prefix(6), lowercase: "basic ") else { return nil }
        let encoded = value.dropFirst(6).drop { $0 == UInt8(ascii: " ") }
        guard let decoded = Base64.decode(encoded),
              let colon = decoded.firstIndex(of: UInt8(ascii: ":")), colon > 0 else { return nil }
        return (decoded, colon)
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

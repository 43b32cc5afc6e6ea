/// nginx's variables: built-in ones resolved to a case once, when a template is compiled, so that rendering
/// does not compare names; and the configuration's own (`set`, `map`), numbered in a `VariableTable`.
public enum Variable: Equatable, Sendable {
    case remoteAddr, remoteUser, binaryRemoteAddr, remotePort, timeLocal, msec, request, requestMethod, requestURI, uri, args, isArgs
    case serverProtocol, scheme, host, hostname, serverName, serverPort, serverAddr, status, bodyBytesSent
    case bytesSent, requestLength, requestTime, connection, connectionRequests, connectionTime, pid, contentLength, contentType
    case upstreamAddr, upstreamStatus, upstreamResponseTime, upstreamConnectTime, upstreamHeaderTime
    /// The upstream cache's: what the lookup found (HIT, MISS, …), and the validators of the response a refresh revalidates.
    case upstreamCacheStatus, upstreamCacheLastModified, upstreamCacheEtag
    case upstreamResponseLength, upstreamBytesReceived, upstreamBytesSent, proxyHost, proxyPort, proxyAddXForwardedFor
    /// The fastcgi module's: the URI's script and path-info parts (fastcgi_split_path_info, fastcgi_index).
    case fastcgiScriptName, fastcgiPathInfo
    case nginxVersion
    /// `$http2`: "h2" over TLS, "h2c" over plain TCP, empty for HTTP/1.
    case http2
    case https, sslProtocol, sslCipher, sslCurve, sslCurves, sslServerName, sslSessionReused
    /// The client certificate's `$ssl_client_*`.
    case sslClientVerify, sslClientSDN, sslClientIDN, sslClientSerial, sslClientFingerprint, sslClientCert, sslClientRawCert
    case sslClientEscapedCert, sslClientVStart, sslClientVEnd, sslClientVRemain, sslSessionID
    case sslClientSDNLegacy, sslClientIDNLegacy, sslCiphers
    case timeISO8601, documentRoot, realpathRoot, requestBody, requestBodyFile, requestFilename
    /// `$limit_rate`: the response's rate, which `set` may change.
    case limitRate
    /// `$limit_req_status`, `$limit_conn_status`: what the limits did to the request.
    case limitReqStatus, limitConnStatus
    /// `$pipe`: "p" for a pipelined request, else ".".
    case pipe
    /// The realip module's: the socket's peer, whatever address realip found.
    case realipRemoteAddr, realipRemotePort
    /// What the connection's PROXY protocol header says: `$proxy_protocol_addr`, `_port`, `_server_addr`, `_server_port`.
    case proxyProtocolAddr, proxyProtocolPort, proxyProtocolServerAddr, proxyProtocolServerPort
    /// `$proxy_protocol_tlv_name`: a v2 TLV of the header.
    case proxyProtocolTLV(String)
    /// stub_status's numbers: `$connections_active`, `_reading`, `_writing`, `_waiting`.
    case connectionsActive, connectionsReading, connectionsWriting, connectionsWaiting
    /// Vigil's own: connection buffers held and pooled in this worker (a debugging aid for memory tests).
    case buffersHeld, buffersPooled
    /// `$http_user_agent`: the header `user-agent`.
    case httpHeader(String)
    /// `$arg_name`: a query argument.
    case arg(String)
    /// `$cookie_name`: a cookie of the request.
    case cookie(String)
    /// `$upstream_http_name`, `$upstream_cookie_name`: from the last upstream's response head.
    case upstreamHeader(String)
    case upstreamCookie(String)
    /// `$sent_http_name`: from the response head as far as it is written.
    case sentHeader(String)
    /// `$sent_trailer_name`: a trailer `add_trailer` has added before this one.
    case sentTrailer(String)
    /// A variable of the configuration (`set`, `map`, a named regex group), by its index in the table.
    case user(Int)
    /// `$1`…`$9`: a group of the last regex that matched.
    case capture(Int)
    /// Variables Vigil knows but never sets ($remote_user) and unknown names.
    case none

    /// Resolves `name` once: nginx's built-in variables, then those the configuration declares.
    public init(name: String, table: VariableTable? = nil) {
        if let n = Int(name), n >= 0, n <= 9 { self = .capture(n); return }
        self = Variable.builtin(name)
        if self == .none, let i = table?.index(of: name) { self = .user(i) }
    }

    /// Whether nginx defines `name` itself (`set` may not take such a name).
    public static func isBuiltin(_ name: String) -> Bool { builtin(name) != .none || isKnownUnset(name) }

    /// The built-ins `set` changes through their own handler (nginx's set_handler) rather than taking the name.
    public static func isSettable(_ name: String) -> Bool { name == "limit_rate" || name == "args" || name == "query_string" }

    /// nginx variables Vigil knows and leaves empty (no HTTP authentication, no real-IP module…).
    public static func isKnownUnset(_ name: String) -> Bool { name == "binary_remote_addr_raw" }

    private static func builtin(_ name: String) -> Variable {
        switch name {
        case "remote_addr": return .remoteAddr
        case "remote_user": return .remoteUser
        case "binary_remote_addr": return .binaryRemoteAddr
        case "limit_req_status": return .limitReqStatus
        case "limit_conn_status": return .limitConnStatus
        case "remote_port": return .remotePort
        case "time_local": return .timeLocal
        case "msec": return .msec
        case "request": return .request
        case "request_method": return .requestMethod
        case "request_uri": return .requestURI
        case "uri", "document_uri": return .uri
        case "args", "query_string": return .args
        case "is_args": return .isArgs
        case "server_protocol": return .serverProtocol
        case "scheme": return .scheme
        case "host": return .host
        case "hostname": return .hostname
        case "server_name": return .serverName
        case "server_port": return .serverPort
        case "server_addr": return .serverAddr
        case "status": return .status
        case "body_bytes_sent": return .bodyBytesSent
        case "bytes_sent": return .bytesSent
        case "request_length": return .requestLength
        case "request_time": return .requestTime
        case "connection": return .connection
        case "connection_requests": return .connectionRequests
        case "connection_time": return .connectionTime
        case "pid": return .pid
        case "content_length": return .contentLength
        case "content_type": return .contentType
        case "upstream_addr": return .upstreamAddr
        case "upstream_status": return .upstreamStatus
        case "upstream_cache_status": return .upstreamCacheStatus
        case "upstream_cache_last_modified": return .upstreamCacheLastModified
        case "upstream_cache_etag": return .upstreamCacheEtag
        case "upstream_response_time": return .upstreamResponseTime
        case "upstream_connect_time": return .upstreamConnectTime
        case "upstream_header_time": return .upstreamHeaderTime
        case "upstream_response_length": return .upstreamResponseLength
        case "upstream_bytes_received": return .upstreamBytesReceived
        case "upstream_bytes_sent": return .upstreamBytesSent
        case "proxy_host": return .proxyHost
        case "proxy_port": return .proxyPort
        case "proxy_add_x_forwarded_for": return .proxyAddXForwardedFor
        case "fastcgi_script_name": return .fastcgiScriptName
        case "fastcgi_path_info": return .fastcgiPathInfo
        case "nginx_version": return .nginxVersion
        case "https": return .https
        case "http2": return .http2
        case "ssl_protocol": return .sslProtocol
        case "ssl_cipher": return .sslCipher
        case "ssl_curve": return .sslCurve
        case "ssl_curves": return .sslCurves
        case "ssl_server_name": return .sslServerName
        case "ssl_session_reused": return .sslSessionReused
        case "ssl_session_id": return .sslSessionID
        case "ssl_ciphers": return .sslCiphers
        case "ssl_client_s_dn_legacy": return .sslClientSDNLegacy
        case "ssl_client_i_dn_legacy": return .sslClientIDNLegacy
        case "ssl_client_verify": return .sslClientVerify
        case "ssl_client_s_dn": return .sslClientSDN
        case "ssl_client_i_dn": return .sslClientIDN
        case "ssl_client_serial": return .sslClientSerial
        case "ssl_client_fingerprint": return .sslClientFingerprint
        case "ssl_client_cert": return .sslClientCert
        case "ssl_client_raw_cert": return .sslClientRawCert
        case "ssl_client_escaped_cert": return .sslClientEscapedCert
        case "ssl_client_v_start": return .sslClientVStart
        case "ssl_client_v_end": return .sslClientVEnd
        case "ssl_client_v_remain": return .sslClientVRemain
        case _ where name.hasPrefix("http_"): return .httpHeader(String(name.dropFirst(5).map { $0 == "_" ? "-" : $0 }).lowercased())
        case _ where name.hasPrefix("arg_"): return .arg(String(name.dropFirst(4)))
        case _ where name.hasPrefix("cookie_"): return .cookie(String(name.dropFirst(7)))
        case _ where name.hasPrefix("proxy_protocol_tlv_"): return .proxyProtocolTLV(String(name.dropFirst(19)))
        case _ where name.hasPrefix("upstream_http_"):
            return .upstreamHeader(String(name.dropFirst(14).map { $0 == "_" ? "-" : $0 }).lowercased())
        case _ where name.hasPrefix("upstream_cookie_"): return .upstreamCookie(String(name.dropFirst(16)))
        case _ where name.hasPrefix("sent_trailer_"):
            return .sentTrailer(String(name.dropFirst(13).map { $0 == "_" ? "-" : $0 }).lowercased())
        case _ where name.hasPrefix("sent_http_"):
            return .sentHeader(String(name.dropFirst(10).map { $0 == "_" ? "-" : $0 }).lowercased())
        case "time_iso8601": return .timeISO8601
        case "document_root": return .documentRoot
        case "realpath_root": return .realpathRoot
        case "request_filename": return .requestFilename
        case "connections_active": return .connectionsActive
        case "connections_reading": return .connectionsReading
        case "connections_writing": return .connectionsWriting
        case "connections_waiting": return .connectionsWaiting
        case "vigil_buffers_held": return .buffersHeld
        case "vigil_buffers_pooled": return .buffersPooled
        case "request_body": return .requestBody
        case "request_body_file": return .requestBodyFile
        case "limit_rate": return .limitRate
        case "pipe": return .pipe
        case "realip_remote_addr": return .realipRemoteAddr
        case "realip_remote_port": return .realipRemotePort
        case "proxy_protocol_addr": return .proxyProtocolAddr
        case "proxy_protocol_port": return .proxyProtocolPort
        case "proxy_protocol_server_addr": return .proxyProtocolServerAddr
        case "proxy_protocol_server_port": return .proxyProtocolServerPort
        default: return .none
        }
    }
}


/// The variables one configuration declares with `set`, `map` and named regex groups, numbered in the order
/// they are first declared. A name is a variable wherever nginx takes one, whichever line declared it.
public final class VariableTable {
    public private(set) var names: [String] = []
    private var byName: [String: Int] = [:]
    public init() {}

    public func index(of name: String) -> Int? { byName[name] }

    /// The `map`, `geo` or `split_clients` that defines a variable, by the variable's index.
    public private(set) var maps: [Int: ComputedVariable] = [:]

    public func define(_ index: Int, by map: ComputedVariable) { maps[index] = map }

    @discardableResult
    public func declare(_ name: String) -> Int {
        if let i = byName[name] { return i }
        byName[name] = names.count
        names.append(name)
        return names.count - 1
    }
}

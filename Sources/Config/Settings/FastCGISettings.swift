import Script

/// One `fastcgi_param`: a name and its value, which may have variables; `if_not_empty` leaves out an empty one.
public struct FastCGIParam: Sendable {
    public let name: String
    public let value: Template
    public let ifNotEmpty: Bool
}

/// nginx's fastcgi module, per level: the upstream family shared with proxy_pass (timeouts, next upstream,
/// buffers, headers hidden and passed, …) and FastCGI's own.
public struct FastCGISettings: Sendable {
    /// The `fastcgi_*` directives that proxy_pass has as `proxy_*`.
    public var upstream = ProxySettings()
    /// As nginx's: a level with any `fastcgi_param` takes only its own, else its parent's.
    @Setting public var params: [FastCGIParam] = []
    @Setting public var index: String? = nil
    /// `fastcgi_split_path_info`: its two groups are `$fastcgi_script_name` and `$fastcgi_path_info`.
    @Setting public var splitPathInfo: Regex? = nil
    @Setting public var keepConn = false
    /// `fastcgi_catch_stderr`: a response whose stderr (before its head) holds one of these is a 502.
    @Setting public var catchStderr: [String] = []

    public init() {
        // FastCGI has no fastcgi_redirect: a Location goes to the client as the application wrote it.
        upstream.$redirects.resolve { _ in [] }
    }

    mutating func merge(_ p: FastCGISettings) {
        upstream.merge(p.upstream)
        $params.inherit(p.$params)
        $index.inherit(p.$index)
        $splitPathInfo.inherit(p.$splitPathInfo)
        $keepConn.inherit(p.$keepConn)
        $catchStderr.inherit(p.$catchStderr)
    }
}

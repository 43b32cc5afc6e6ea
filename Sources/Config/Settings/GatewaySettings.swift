import Script

/// One `fastcgi_param` (`scgi_param`, `uwsgi_param`): a name and its value, which may have variables;
/// `if_not_empty` leaves out an empty one.
public struct GatewayParam: Sendable {
    public let name: String
    public let value: Template
    public let ifNotEmpty: Bool
    public init(name: String, value: Template, ifNotEmpty: Bool) { self.name = name; self.value = value; self.ifNotEmpty = ifNotEmpty }
}

/// A CGI-like gateway module per level (nginx's fastcgi, scgi and uwsgi modules, one value of this each): the
/// upstream family shared with proxy_pass (timeouts, next upstream, buffers, headers hidden and passed, …), the
/// params, and what only one of them has (set only by that module's directives).
public struct GatewaySettings: Sendable {
    /// The `fastcgi_*` (`scgi_*`, `uwsgi_*`) directives that proxy_pass has as `proxy_*`.
    public var upstream = ProxySettings()
    /// As nginx's: a level with any param takes only its own, else its parent's.
    @Setting public var params: [GatewayParam] = []
    /// fastcgi_index.
    @Setting public var index: String? = nil
    /// `fastcgi_split_path_info`: its two groups are `$fastcgi_script_name` and `$fastcgi_path_info`.
    @Setting public var splitPathInfo: Regex? = nil
    @Setting public var keepConn = false
    /// `fastcgi_catch_stderr`: a response whose stderr (before its head) holds one of these is a 502.
    @Setting public var catchStderr: [String] = []
    /// `uwsgi_modifier1`, `uwsgi_modifier2`: the packet header's two modifier bytes.
    @Setting public var modifier1 = 0
    @Setting public var modifier2 = 0

    public init() {
        // These modules have no *_redirect: a Location goes to the client as the application wrote it.
        upstream.$redirects.resolve { _ in [] }
        // Only proxy_cache turns a HEAD into a GET.
        upstream.cache.$convertHead.resolve { _ in false }
    }

    mutating func merge(_ p: GatewaySettings) {
        upstream.merge(p.upstream)
        $params.inherit(p.$params)
        $index.inherit(p.$index)
        $splitPathInfo.inherit(p.$splitPathInfo)
        $keepConn.inherit(p.$keepConn)
        $catchStderr.inherit(p.$catchStderr)
        $modifier1.inherit(p.$modifier1)
        $modifier2.inherit(p.$modifier2)
    }
}

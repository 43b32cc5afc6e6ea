import Core
/// nginx's realip module, per level: which peers are trusted to name the client (`set_real_ip_from`), where
/// they name it (`real_ip_header`), and whether X-Forwarded-For is walked back past trusted addresses
/// (`real_ip_recursive`).
public struct RealIPSettings: Sendable {
    /// Empty: the module does nothing at this level. A level with its own replaces its parent's, as in nginx.
    @Setting public var from: [CIDR] = []
    @Setting public var header = RealIPHeader.field("x-real-ip")
    @Setting public var recursive = false

    public init() {}

    mutating func merge(_ p: RealIPSettings) {
        $from.inherit(p.$from)
        $header.inherit(p.$header)
        $recursive.inherit(p.$recursive)
    }
}

/// Where `real_ip_header` finds the client: nginx takes the words `X-Forwarded-For` (every such header, the
/// last address first) and `proxy_protocol` as written; any other name, `X-Real-IP` too, is the first header
/// of that name (lowercased here).
public enum RealIPHeader: Sendable, Equatable {
    case forwardedFor
    case proxyProtocol
    case field(String)
}

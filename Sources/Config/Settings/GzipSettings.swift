import Script

/// `gzip_proxied`: which responses to requests that came through another proxy (`Via`) are compressed.
public struct GzipProxied: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let expired = GzipProxied(rawValue: 1 << 0)
    public static let noCache = GzipProxied(rawValue: 1 << 1)
    public static let noStore = GzipProxied(rawValue: 1 << 2)
    public static let `private` = GzipProxied(rawValue: 1 << 3)
    public static let noLastModified = GzipProxied(rawValue: 1 << 4)
    public static let noETag = GzipProxied(rawValue: 1 << 5)
    public static let auth = GzipProxied(rawValue: 1 << 6)
    public static let any = GzipProxied(rawValue: 1 << 7)

    /// The directive's words (`off` is the empty set).
    public static let names: [String: GzipProxied] = [
        "off": [], "expired": .expired, "no-cache": .noCache, "no-store": .noStore, "private": .private,
        "no_last_modified": .noLastModified, "no_etag": .noETag, "auth": .auth, "any": .any,
    ]
}

/// `gzip_static`: whether a file's `.gz` neighbour is sent in its place, to clients that accept gzip (`on`) or
/// to all (`always`).
public enum GzipStatic: String, Sendable {
    case off, on, always
}

/// nginx's gzip filter and gzip_static module, per level.
public struct GzipSettings: Sendable {
    @Setting public var on = false
    /// Beside text/html, which is always compressed; `*` is any type.
    @Setting public var types: [String] = []
    @Setting public var compLevel = 1
    @Setting public var minLength = 20
    @Setting public var proxied: GzipProxied = []
    @Setting public var vary = false
    /// The lowest HTTP/1 minor version compressed for (`gzip_http_version 1.1` is 1).
    @Setting public var httpVersionMinor = 1
    @Setting public var disable: [Regex] = []
    @Setting public var staticFiles = GzipStatic.off

    public init() {}

    mutating func merge(_ p: GzipSettings) {
        $on.inherit(p.$on)
        $types.inherit(p.$types)
        $compLevel.inherit(p.$compLevel)
        $minLength.inherit(p.$minLength)
        $proxied.inherit(p.$proxied)
        $vary.inherit(p.$vary)
        $httpVersionMinor.inherit(p.$httpVersionMinor)
        $disable.inherit(p.$disable)
        $staticFiles.inherit(p.$staticFiles)
    }
}

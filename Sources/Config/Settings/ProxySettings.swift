import Script

/// `proxy_next_upstream`: which failures send a request on to the next peer. Empty is `off`.
public struct NextUpstream: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let error = NextUpstream(rawValue: 1 << 0)
    public static let timeout = NextUpstream(rawValue: 1 << 1)
    public static let invalidHeader = NextUpstream(rawValue: 1 << 2)
    public static let http500 = NextUpstream(rawValue: 1 << 3)
    public static let http502 = NextUpstream(rawValue: 1 << 4)
    public static let http503 = NextUpstream(rawValue: 1 << 5)
    public static let http504 = NextUpstream(rawValue: 1 << 6)
    public static let http403 = NextUpstream(rawValue: 1 << 7)
    public static let http404 = NextUpstream(rawValue: 1 << 8)
    public static let http429 = NextUpstream(rawValue: 1 << 9)
    /// POST, LOCK and PATCH may go to the next peer even after they were sent.
    public static let nonIdempotent = NextUpstream(rawValue: 1 << 10)
    /// `*_cache_use_stale updating`: while another request refreshes the response.
    public static let updating = NextUpstream(rawValue: 1 << 11)

    /// The directive's words.
    public static let names: [String: NextUpstream] = [
        "error": .error, "timeout": .timeout, "invalid_header": .invalidHeader, "http_500": .http500,
        "http_502": .http502, "http_503": .http503, "http_504": .http504, "http_403": .http403,
        "http_404": .http404, "http_429": .http429, "non_idempotent": .nonIdempotent, "off": [],
    ]

    /// `*_cache_use_stale`'s words: the same failures, and `updating`.
    public static let staleNames: [String: NextUpstream] = names.filter { $0.key != "non_idempotent" }.merging(["updating": .updating]) { a, _ in a }

    /// The `http_NNN` case for an upstream's status, if there is one.
    public init?(status: Int) {
        switch status {
        case 500: self = .http500
        case 502: self = .http502
        case 503: self = .http503
        case 504: self = .http504
        case 403: self = .http403
        case 404: self = .http404
        case 429: self = .http429
        default: return nil
        }
    }
}

/// `proxy_http_version`.
public enum ProxyHTTPVersion: String, Sendable {
    case http10 = "1.0", http11 = "1.1"
}

/// nginx's proxy module, per level.
/// `proxy_ignore_headers`: upstream response headers not acted on.
public struct IgnoredUpstreamHeaders: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let xAccelRedirect = IgnoredUpstreamHeaders(rawValue: 1 << 0)
    public static let xAccelLimitRate = IgnoredUpstreamHeaders(rawValue: 1 << 1)
    public static let xAccelExpires = IgnoredUpstreamHeaders(rawValue: 1 << 2)
    public static let expires = IgnoredUpstreamHeaders(rawValue: 1 << 3)
    public static let cacheControl = IgnoredUpstreamHeaders(rawValue: 1 << 4)
    public static let setCookie = IgnoredUpstreamHeaders(rawValue: 1 << 5)
    public static let vary = IgnoredUpstreamHeaders(rawValue: 1 << 6)
    /// nginx's names, compared in any case. X-Accel-Buffering and X-Accel-Charset change nothing in Vigil,
    /// which relays as responses arrive and recodes by `charset` alone.
    public static let names: [String: IgnoredUpstreamHeaders] = [
        "x-accel-redirect": .xAccelRedirect, "x-accel-limit-rate": .xAccelLimitRate, "x-accel-expires": .xAccelExpires,
        "x-accel-buffering": [], "x-accel-charset": [], "expires": .expires, "cache-control": .cacheControl,
        "set-cookie": .setCookie, "vary": .vary,
    ]
}

/// `proxy_store`: where a proxied 200's body is kept as a file.
public enum ProxyStore: Sendable {
    case off
    /// `on`: at the request's file name (root or alias and the URI, `$request_filename`).
    case requestFilename
    case path(Template)
}

/// One rule of `proxy_cookie_domain` or `proxy_cookie_path`: the Domain or Path attribute of an upstream's
/// Set-Cookie that matches is replaced.
public enum CookieRewrite: Sendable {
    /// proxy_cookie_path: a value that starts with the pattern has that part replaced.
    case prefix(Template, replacement: Template)
    /// proxy_cookie_domain: the whole value (a leading "." aside), compared in any case, is replaced.
    case domain(Template, replacement: Template)
    /// Either, `~pattern`: a value the expression matches is replaced whole (its groups in the replacement).
    case regex(Regex, replacement: Template)
}

/// `proxy_cookie_flags cookie flag…`: the flags a cookie (by name, or `~regex`) gets or loses.
public struct CookieFlagsRule: Sendable {
    public enum Cookie: Sendable { case name(Template), regex(Regex) }
    public let cookie: Cookie
    public let flags: [Template]
}

public struct ProxySettings: Sendable {
    @Setting public var httpVersion = ProxyHTTPVersion.http10
    @Setting public var setHeaders: [HeaderSetting] = []
    @Setting public var connectTimeout = 60_000
    @Setting public var sendTimeout = 60_000
    @Setting public var readTimeout = 60_000
    @Setting public var nextUpstream: NextUpstream = [.error, .timeout]
    /// 0: no limit.
    @Setting public var nextUpstreamTries = 0
    /// 0: no limit.
    @Setting public var nextUpstreamTimeout = 0
    @Setting public var buffering = true
    /// The most an upstream's response head may take (nginx's default: one memory page).
    @Setting public var bufferSize = 4096
    @Setting public var requestBuffering = true
    @Setting public var passRequestHeaders = true
    @Setting public var passRequestBody = true
    @Setting public var interceptErrors = false
    /// `proxy_force_ranges`: a 200 with a Content-Length answers one byte range, whatever the upstream says.
    @Setting public var forceRanges = false
    /// Lowercased names.
    @Setting public var hideHeaders: [String] = []
    @Setting public var passHeaders: [String] = []
    /// `proxy_method`, which may come from variables.
    @Setting public var method: Template? = nil
    @Setting public var redirects: [ProxyRedirect] = [.default]
    @Setting public var ignoreHeaders: IgnoredUpstreamHeaders = []
    /// `proxy_bind`: the local address of upstream connections (nil: off).
    @Setting public var bind: Template? = nil
    /// `proxy_set_body`: the body sent upstream instead of the client's.
    @Setting public var setBody: Template? = nil
    /// `proxy_cookie_domain`, `proxy_cookie_path`, `proxy_cookie_flags` (empty: off).
    @Setting public var cookieDomains: [CookieRewrite] = []
    @Setting public var cookiePaths: [CookieRewrite] = []
    @Setting public var cookieFlags: [CookieFlagsRule] = []
    @Setting public var store = ProxyStore.off
    /// `proxy_store_access`: the stored files' mode (directories made for them get x where they get r).
    @Setting public var storeAccess: UInt32 = 0o600
    public var cache = CacheSettings()

    public init() {}

    mutating func merge(_ p: ProxySettings) {
        $httpVersion.inherit(p.$httpVersion)
        $ignoreHeaders.inherit(p.$ignoreHeaders)
        $bind.inherit(p.$bind)
        $setBody.inherit(p.$setBody)
        $cookieDomains.inherit(p.$cookieDomains)
        $cookiePaths.inherit(p.$cookiePaths)
        $cookieFlags.inherit(p.$cookieFlags)
        $store.inherit(p.$store)
        $storeAccess.inherit(p.$storeAccess)
        $setHeaders.inherit(p.$setHeaders)
        $connectTimeout.inherit(p.$connectTimeout)
        $sendTimeout.inherit(p.$sendTimeout)
        $readTimeout.inherit(p.$readTimeout)
        $nextUpstream.inherit(p.$nextUpstream)
        $nextUpstreamTries.inherit(p.$nextUpstreamTries)
        $nextUpstreamTimeout.inherit(p.$nextUpstreamTimeout)
        $buffering.inherit(p.$buffering)
        $bufferSize.inherit(p.$bufferSize)
        $requestBuffering.inherit(p.$requestBuffering)
        $passRequestHeaders.inherit(p.$passRequestHeaders)
        $passRequestBody.inherit(p.$passRequestBody)
        $interceptErrors.inherit(p.$interceptErrors)
        $forceRanges.inherit(p.$forceRanges)
        $hideHeaders.inherit(p.$hideHeaders)
        $passHeaders.inherit(p.$passHeaders)
        $method.inherit(p.$method)
        $redirects.inherit(p.$redirects)
        cache.merge(p.cache)
    }
}

/// TLS towards `proxy_pass https://` upstreams.
public struct ProxySSLSettings: Sendable {
    @Setting public var serverName = false
    /// The name verified and sent in SNI; nil: the host of proxy_pass.
    @Setting public var name: Template? = nil
    @Setting public var verify = false
    @Setting public var verifyDepth = 1
    @Setting public var trustedCertificate: PathSetting? = nil
    @Setting public var certificate: CertificateSetting? = nil
    @Setting public var certificateKey: CertificateSetting? = nil
    @Setting public var passwordFile: PathSetting? = nil
    /// `proxy_ssl_crl`: revocation lists the upstream's chain is checked against (with `proxy_ssl_verify on`).
    @Setting public var crl: PathSetting? = nil
    @Setting public var protocols = ["TLSv1.2", "TLSv1.3"]
    @Setting public var ciphers = "DEFAULT"
    @Setting public var sessionReuse = true

    public init() {}

    mutating func merge(_ p: ProxySSLSettings) {
        $serverName.inherit(p.$serverName)
        $name.inherit(p.$name)
        $verify.inherit(p.$verify)
        $verifyDepth.inherit(p.$verifyDepth)
        $trustedCertificate.inherit(p.$trustedCertificate)
        $certificate.inherit(p.$certificate)
        $certificateKey.inherit(p.$certificateKey)
        $passwordFile.inherit(p.$passwordFile)
        $crl.inherit(p.$crl)
        $protocols.inherit(p.$protocols)
        $ciphers.inherit(p.$ciphers)
        $sessionReuse.inherit(p.$sessionReuse)
    }
}

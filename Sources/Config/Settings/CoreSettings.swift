import Core
import Script

/// nginx's http core module, per level: connection and request limits, keep-alive, static files, redirects.
/// `keepalive_disable`: the browsers nginx does not keep connections alive for (old MSIE after a POST, which
/// may wait on a kept connection; Safari, which may send a POST on one that closed).
public struct KeepaliveDisable: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let msie6 = KeepaliveDisable(rawValue: 1)
    public static let safari = KeepaliveDisable(rawValue: 2)
    public static let names: [String: KeepaliveDisable] = ["none": [], "msie6": .msie6, "safari": .safari]
}

/// `if_modified_since`: how If-Modified-Since is compared with a response's Last-Modified.
public enum IfModifiedSince: String, Sendable { case off, exact, before }

/// `client_body_in_file_only`: whether a body read whole always goes to a file under client_body_temp_path,
/// and whether that file stays after the request (`on`, for a backend that reads it by `$request_body_file`)
/// or is removed when the request ends (`clean`).
public enum BodyInFileOnly: String, Sendable {
    case off, on, clean
}

/// `server_tokens on|off|build|string`: Vigil has no build name, so `build` is `on`; a string (variables
/// allowed) is NGINX Plus's form, the whole Server field and error-page signature, none when it is empty.
public enum ServerTokens: Sendable {
    case on, off
    case custom(Template)
}

public struct CoreSettings: Sendable {
    @Setting public var defaultType = "text/plain"
    /// Without a `types` block anywhere, nginx's built-in three (ngx_http_core_default_types).
    @Setting public var types = ["html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"]
    @Setting public var keepaliveTimeout = 75_000
    /// keepalive_timeout's second value: the `Keep-Alive: timeout=N` header (seconds as milliseconds).
    @Setting public var keepaliveHeaderTimeout: Int? = nil
    @Setting public var keepaliveRequests = 1000
    @Setting public var keepaliveTime = 3_600_000
    @Setting public var keepaliveDisable = KeepaliveDisable.msie6
    @Setting public var ifModifiedSince = IfModifiedSince.exact
    /// `log_not_found`: whether a file that does not exist is logged at [error].
    @Setting public var logNotFound = true
    /// `limit_rate` and `limit_rate_after`: sizes, or templates whose value is one.
    @Setting public var limitRate: Template? = nil
    @Setting public var limitRateAfter: Template? = nil
    @Setting public var sendfile = false
    @Setting public var tcpNopush = false
    @Setting public var tcpNodelay = true
    @Setting public var resetTimedoutConnection = false
    @Setting public var serverTokens = ServerTokens.on
    /// 0: no limit.
    @Setting public var clientMaxBodySize = 1 << 20
    @Setting public var clientHeaderTimeout = 60_000
    @Setting public var clientBodyTimeout = 60_000
    @Setting public var sendTimeout = 60_000
    @Setting public var clientHeaderBufferSize = 1024
    @Setting public var largeClientHeaderBuffers = LargeHeaderBuffers(count: 4, size: 8192)
    @Setting public var clientBodyBufferSize = 16384
    /// How request heads are read (server level, from the default server of an address, as the request line is).
    @Setting public var mergeSlashes = true
    @Setting public var ignoreInvalidHeaders = true
    @Setting public var underscoresInHeaders = false
    /// Resolved against the prefix when the configuration loads.
    @Setting public var clientBodyTempPath = "client_body_temp"
    @Setting public var clientBodyInFileOnly = BodyInFileOnly.off
    @Setting public var chunkedTransferEncoding = true
    /// Resolved against the prefix when the configuration loads.
    @Setting public var root = "html"
    /// `index`: names, variables allowed.
    @Setting public var index = [CoreSettings.defaultIndex]
    static let defaultIndex: Template = {
        let t = Template("index.html")
        t.resolve(VariableTable())
        return t
    }()
    @Setting public var errorPages: [ErrorPage] = []
    @Setting public var absoluteRedirect = true
    @Setting public var portInRedirect = true
    @Setting public var serverNameInRedirect = false
    @Setting public var etag = true
    /// `max_ranges`: the most byte ranges a request may ask for (0: ranges are not served).
    @Setting public var maxRanges = Int(Int32.max)
    @Setting public var resolver: ResolverSetting? = nil
    @Setting public var resolverTimeout = 30_000

    public init() {}

    mutating func merge(_ p: CoreSettings) {
        $defaultType.inherit(p.$defaultType)
        $types.inherit(p.$types)
        $keepaliveTimeout.inherit(p.$keepaliveTimeout)
        $keepaliveHeaderTimeout.inherit(p.$keepaliveHeaderTimeout)
        $keepaliveRequests.inherit(p.$keepaliveRequests)
        $keepaliveTime.inherit(p.$keepaliveTime)
        $keepaliveDisable.inherit(p.$keepaliveDisable)
        $ifModifiedSince.inherit(p.$ifModifiedSince)
        $logNotFound.inherit(p.$logNotFound)
        $limitRate.inherit(p.$limitRate)
        $limitRateAfter.inherit(p.$limitRateAfter)
        $sendfile.inherit(p.$sendfile)
        $tcpNopush.inherit(p.$tcpNopush)
        $tcpNodelay.inherit(p.$tcpNodelay)
        $resetTimedoutConnection.inherit(p.$resetTimedoutConnection)
        $serverTokens.inherit(p.$serverTokens)
        $clientMaxBodySize.inherit(p.$clientMaxBodySize)
        $clientHeaderTimeout.inherit(p.$clientHeaderTimeout)
        $clientBodyTimeout.inherit(p.$clientBodyTimeout)
        $sendTimeout.inherit(p.$sendTimeout)
        $clientHeaderBufferSize.inherit(p.$clientHeaderBufferSize)
        $largeClientHeaderBuffers.inherit(p.$largeClientHeaderBuffers)
        $clientBodyBufferSize.inherit(p.$clientBodyBufferSize)
        $mergeSlashes.inherit(p.$mergeSlashes)
        $ignoreInvalidHeaders.inherit(p.$ignoreInvalidHeaders)
        $underscoresInHeaders.inherit(p.$underscoresInHeaders)
        $clientBodyTempPath.inherit(p.$clientBodyTempPath)
        $clientBodyInFileOnly.inherit(p.$clientBodyInFileOnly)
        $chunkedTransferEncoding.inherit(p.$chunkedTransferEncoding)
        $root.inherit(p.$root)
        $index.inherit(p.$index)
        $errorPages.inherit(p.$errorPages)
        $absoluteRedirect.inherit(p.$absoluteRedirect)
        $portInRedirect.inherit(p.$portInRedirect)
        $serverNameInRedirect.inherit(p.$serverNameInRedirect)
        $etag.inherit(p.$etag)
        $maxRanges.inherit(p.$maxRanges)
        $resolver.inherit(p.$resolver)
        $resolverTimeout.inherit(p.$resolverTimeout)
    }
}

/// `large_client_header_buffers number size`: the longest request or header line is `size`, the whole head
/// at most `count × size`.
public struct LargeHeaderBuffers: Sendable, Equatable {
    public var count: Int
    public var size: Int
}

/// `access_log`, `error_log` and `allow`/`deny` of a level.
public struct LogSettings: Sendable {
    /// `[]` is `access_log off`; the http level's default (logs/access.log, combined) is set when the
    /// configuration loads, as it depends on the prefix.
    @Setting public var accessLogs: [AccessLogTarget] = []
    @Setting public var accessRules: [AccessRule] = []
    /// nil: off, each line opens its file.
    @Setting public var openLogFileCache: LogFileCacheSetting? = nil
    /// `error_log` of http, server or location: where a request's errors go (empty: the main error_log).
    @Setting public var errorLogs: [ErrorLogTarget] = []
    /// The index of `errorLogs` among the configuration's `requestErrorLogs`, set when it loads.
    public internal(set) var errorLogSet: Int?

    public init() {}

    mutating func merge(_ p: LogSettings) {
        $accessLogs.inherit(p.$accessLogs)
        $errorLogs.inherit(p.$errorLogs)
        $openLogFileCache.inherit(p.$openLogFileCache)
        $accessRules.inherit(p.$accessRules)
    }
}

/// nginx's headers module: `add_header` and `add_trailer` (a level that has any does not inherit its parent's)
/// and `expires`.
public struct HeadersSettings: Sendable {
    @Setting public var addHeaders: [AddedHeader] = []
    @Setting public var addTrailers: [AddedHeader] = []
    @Setting public var expires = ExpiresSetting.off

    public init() {}

    mutating func merge(_ p: HeadersSettings) {
        $addHeaders.inherit(p.$addHeaders)
        $addTrailers.inherit(p.$addTrailers)
        $expires.inherit(p.$expires)
    }
}

/// The check module's `check_status [format]`.
public enum StatusFormat: String, Sendable, CaseIterable {
    case html, csv, json, prometheus
}

public struct StatusSettings: Sendable {
    @Setting public var format = StatusFormat.html
    /// `check_status_admin`: whether a POST may change peers' admin states; a status page is read-only unless
    /// its configuration says so.
    @Setting public var admin = false

    public init() {}

    mutating func merge(_ p: StatusSettings) {
        $format.inherit(p.$format)
        $admin.inherit(p.$admin)
    }
}

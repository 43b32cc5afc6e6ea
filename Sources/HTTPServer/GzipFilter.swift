import Config
import Core
import Gzip
import HTTP

/// nginx's gzip filter: which responses are compressed for which clients, and the compression of a body as
/// it streams through (its deflate stream comes from the worker's pool and goes back with the response).
public enum GzipFilter {
    /// Whether the response itself may be compressed: gzip on, status 200/403/404, not encoded already, long
    /// enough when its length is known, a type in gzip_types (text/html always). Such a response also gets
    /// `Vary: Accept-Encoding` with gzip_vary on, whatever this client accepts. The method does not count: a
    /// HEAD is answered with the head its GET would have (Content-Encoding, no Content-Length), as nginx's.
    public static func eligible(_ r: RequestContext, status: Int, contentType: String?, contentLength: Int?, encoded: Bool) -> Bool {
        guard let contentType else { return false }
        var type = contentType
        return type.withUTF8 { eligible(r, status: status, contentType: UnsafeRawBufferPointer($0), contentLength: contentLength, encoded: encoded) }
    }

    /// The same, on the header's bytes as they came (a proxied response's Content-Type, without a copy).
    public static func eligible(_ r: RequestContext, status: Int, contentType: UnsafeRawBufferPointer, contentLength: Int?, encoded: Bool) -> Bool {
        // Read in place: a copy of the settings would retain every reference in them.
        guard r.settings.gzip.on, status == 200 || status == 403 || status == 404, !encoded else { return false }
        if let len = contentLength, len < r.settings.gzip.minLength { return false }
        // The type before any parameters, compared without making a lowercased copy.
        var end = contentType.firstIndex(of: UInt8(ascii: ";")) ?? contentType.count
        var start = 0
        while start < end && (contentType[start] == 0x20 || contentType[start] == 0x09) { start += 1 }
        while end > start && (contentType[end - 1] == 0x20 || contentType[end - 1] == 0x09) { end -= 1 }
        let type = UnsafeRawBufferPointer(rebasing: contentType[start..<end])
        func isType(_ t: String) -> Bool { RequestParser.equalsIgnoringASCIICase(type, t) }
        if isType("text/html") { return true }
        return r.settings.gzip.types.contains { $0 == "*" || isType($0) }
    }

    /// Whether this client gets it compressed: HTTP version, `Accept-Encoding: gzip` (not with q=0), not a
    /// request through another proxy (unless gzip_proxied any), not a gzip_disable user agent.
    public static func accepted(_ r: RequestContext) -> Bool {
        guard r.head.versionMinor >= r.settings.gzip.httpVersionMinor || r.head.versionMajor > 1 else { return false }
        guard r.withHeader("accept-encoding", acceptsGzip) == true else { return false }
        if r.withHeader("via", { _ in true }) != nil && !r.settings.gzip.proxied.contains(.any) { return false }
        if !r.settings.gzip.disable.isEmpty, let ua = r.header("user-agent"), r.settings.gzip.disable.contains(where: { $0.matches(ua) }) { return false }
        return true
    }

    /// One pass over the list's bytes: a `gzip` or `x-gzip` item accepts unless its `q` is zero.
    static func acceptsGzip(_ h: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < h.count {
            var itemEnd = i
            while itemEnd < h.count && h[itemEnd] != UInt8(ascii: ",") { itemEnd += 1 }
            let item = UnsafeRawBufferPointer(rebasing: h[i..<itemEnd])
            i = itemEnd + 1
            var codingEnd = item.firstIndex(of: UInt8(ascii: ";")) ?? item.count
            var start = 0
            while start < codingEnd && (item[start] == 0x20 || item[start] == 0x09) { start += 1 }
            while codingEnd > start && (item[codingEnd - 1] == 0x20 || item[codingEnd - 1] == 0x09) { codingEnd -= 1 }
            let coding = UnsafeRawBufferPointer(rebasing: item[start..<codingEnd])
            guard RequestParser.equalsIgnoringASCIICase(coding, "gzip") || RequestParser.equalsIgnoringASCIICase(coding, "x-gzip") else { continue }
            // Parameters: a `q=0` (0, 0.0, 0.000) refuses gzip.
            var params = Substring(decoding: item[(item.firstIndex(of: UInt8(ascii: ";")) ?? item.count)...], as: UTF8.self)
            while let semi = params.firstIndex(of: ";") {
                params = params[params.index(after: semi)...]
                let p = params.prefix { $0 != ";" }.trimmingSpaces()
                if p.hasPrefix("q="), let v = Double(p.dropFirst(2)), v == 0 { return false }
            }
            return true
        }
        return false
    }

    /// nginx's ngx_http_weak_etag, for a body the filter compresses: its ETag becomes weak, and one that is not a
    /// quoted tag is dropped.
    public static func weakened(_ etag: String) -> String? {
        if etag.utf8.count > 2 && etag.hasPrefix("W/") { return etag }
        return etag.hasPrefix("\"") ? "W/" + etag : nil
    }

    /// A whole body compressed at once (its length is known, so it keeps a Content-Length).
    static func compressed(_ body: [UInt8], _ r: RequestContext) -> [UInt8]? {
        guard let gz = r.service.gzipStreams.take(level: Int32(r.settings.gzip.compLevel), length: body.count) else { return nil }
        var packed: [UInt8] = []
        body.withUnsafeBytes { b in gz.compress(b, finish: true) { packed.append(contentsOf: $0) } }
        r.service.gzipStreams.give(gz)
        return packed
    }

    /// Compresses what follows of a streamed body: false when no deflate stream could be made.
    static func start(_ r: RequestContext, length: Int?) -> Bool {
        guard let gz = r.service.gzipStreams.take(level: Int32(r.settings.gzip.compLevel), length: length) else { return false }
        r.response.gzip = gz
        r.response.weakETag = true
        return true
    }

    /// One piece through the stream (`finish`: the body ends with it, so deflate finishes in the same call, as
    /// nginx's filter does with the last buffer); `next` gets deflate's output in its small, uneven pieces.
    static func compress(_ r: RequestContext, _ bytes: UnsafeRawBufferPointer, finish: Bool, _ next: (UnsafeRawBufferPointer) -> Void) {
        r.response.gzip?.compress(bytes, finish: finish, next)
    }

    /// The stream goes back to the pool once the body is out.
    static func release(_ r: RequestContext) {
        if let gz = r.response.gzip { r.service.gzipStreams.give(gz) }
        r.response.gzip = nil
    }
}

import Config
import Gzip
import HTTP

/// nginx's gzip filter decisions (ngx_http_gzip_header_filter and ngx_http_gzip_ok), and the per-worker
/// pool of deflate streams the compressed bodies use.
enum GzipPolicy {
    /// Whether the response itself may be compressed: gzip on, status 200/403/404, not encoded already, long
    /// enough when its length is known, a type in gzip_types (text/html always). Such a response also gets
    /// `Vary: Accept-Encoding` with gzip_vary on, whatever this client accepts.
    static func eligible(_ r: RequestContext, status: Int, contentType: String?, contentLength: Int?, encoded: Bool) -> Bool {
        let s = r.settings
        guard s.gzip == true, status == 200 || status == 403 || status == 404, !encoded, r.method != "HEAD" else { return false }
        if let len = contentLength, len < (s.gzipMinLength ?? 20) { return false }
        guard let contentType else { return false }
        // The type before any parameters, compared without making a lowercased copy.
        let type = (contentType.firstIndex(of: ";").map { contentType[..<$0] } ?? Substring(contentType)).trimmingSpaces()
        func isType(_ t: String) -> Bool { RequestParser.equalsIgnoringASCIICase(type, t) }
        if isType("text/html") { return true }
        guard let types = s.gzipTypes else { return false }
        return types.contains { $0 == "*" || isType($0) }
    }

    /// Whether this client gets it compressed: HTTP version, `Accept-Encoding: gzip` (not with q=0), not a
    /// request through another proxy (unless gzip_proxied any), not a gzip_disable user agent.
    static func accepted(_ r: RequestContext) -> Bool {
        let s = r.settings
        guard r.head.versionMinor >= (s.gzipHTTPVersion ?? 1) || r.head.versionMajor > 1 else { return false }
        guard let ae = r.head.header("accept-encoding"), acceptsGzip(ae) else { return false }
        if r.head.header("via") != nil && !(s.gzipProxied?.contains("any") ?? false) { return false }
        if let disable = s.gzipDisable, let ua = r.head.header("user-agent"), disable.contains(where: { $0.matches(ua) }) { return false }
        return true
    }

    static func acceptsGzip(_ header: String) -> Bool {
        for item in header.split(separator: ",") {
            let parts = item.split(separator: ";")
            guard let coding = parts.first?.trimmingSpaces().lowercased(), coding == "gzip" || coding == "x-gzip" else { continue }
            let q = parts.dropFirst().first { $0.trimmingSpaces().hasPrefix("q=") }
            if let q, let v = Double(q.trimmingSpaces().dropFirst(2)), v == 0 { return false }
            return true
        }
        return false
    }
}

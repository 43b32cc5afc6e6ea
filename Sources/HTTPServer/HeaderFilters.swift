#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP

/// nginx's header filter: the Server and Date every response carries (unless an upstream's own are passed
/// through with proxy_pass_header).
public enum HeaderFilter {
    /// What error pages are signed with, as the Server field names the server.
    static func signature(_ r: RequestContext) -> String {
        switch r.settings.core.serverTokens {
        case .on: return Version.serverToken
        case .off: return Version.serverName
        case .custom(let t):
            let s = t.render(r)
            return s.isEmpty ? Version.serverName : s
        }
    }

    /// The Server lines of `server_tokens on` and `off`, made once: every response head carries one.
    private static let serverTokenLine = "Server: \(Version.serverToken)\r\n"
    private static let serverNameLine = "Server: \(Version.serverName)\r\n"

    static func write(_ r: RequestContext, upstreamSent: (server: Bool, date: Bool), into w: OutputQueue) {
        if !upstreamSent.server {
            switch r.settings.core.serverTokens {
            case .on: w.append(serverTokenLine)
            case .off: w.append(serverNameLine)
            case .custom(let t):
                let s = t.render(r)
                if !s.isEmpty { w.header("Server", s) }
            }
        }
        if !upstreamSent.date {
            w.append("Date: ")
            w.append(Clock.httpDate())
            w.append("\r\n")
        }
        for h in r.carriedHeaders where h.name.lowercased() != "content-type" { w.header(h.name, h.value) }
    }
}

/// nginx's headers filter: `expires` and `add_header`, on the statuses nginx adds them to (any status for
/// `add_header … always`). Its decisions are made before the handler writes its fields, which they change:
/// `expires` replaces an upstream's Expires and Cache-Control, `add_header` ETag or Last-Modified the handler's.
public enum HeadersFilter {
    static func prepare(_ r: RequestContext, status: Int) {
        // Read in place: a copy of the module's settings would retain their arrays.
        let normal = takesAddedHeaders(status)
        r.response.expires = normal ? expires(r) : nil
        r.response.replaced = r.response.expires == nil ? [] : .caching
        for h in r.settings.headers.addHeaders where h.always || normal {
            switch h.name.lowercased() {
            case "etag": r.response.replaced.insert(.etag)
            case "last-modified": r.response.replaced.insert(.lastModified)
            default: break
            }
        }
    }

    static func write(_ r: RequestContext, status: Int, into w: OutputQueue) {
        if let (expires, cacheControl) = r.response.expires {
            w.header("Expires", expires)
            w.header("Cache-Control", cacheControl)
        }
        guard !r.settings.headers.addHeaders.isEmpty else { return }
        let normal = takesAddedHeaders(status)
        let added = r.settings.headers.addHeaders
        for (i, h) in added.enumerated() where h.always || normal {
            // As nginx: ETag and Last-Modified are set, not added; the last one wins, and an empty one removes.
            if r.response.replaced.contains(field: h.name),
               added[(i + 1)...].contains(where: { ($0.always || normal) && $0.name.lowercased() == h.name.lowercased() }) { continue }
            var value = h.value.render(r)
            if r.response.weakETag && h.name.lowercased() == "etag" { value = GzipFilter.weakened(value) ?? "" }
            guard !value.isEmpty else { continue }
            w.header(h.name, value)
            // `$sent_http_*` in a later add_header sees this one, as in nginx.
            r.sentHead?.append(contentsOf: "\(h.name): \(value)\r\n".utf8)
        }
    }

    /// The value the last `add_header name` that applies to `status` sets (ETag, Last-Modified: "" removes the
    /// field); nil when none does.
    static func addedValue(_ r: RequestContext, _ name: String, status: Int) -> String? {
        let normal = takesAddedHeaders(status)
        return r.settings.headers.addHeaders.last { ($0.always || normal) && $0.name.lowercased() == name }?.value.render(r)
    }

    /// Statuses a Location goes with (`return`, error_page URLs).
    public static func isRedirect(_ status: Int) -> Bool {
        switch status {
        case 301, 302, 303, 307, 308: return true
        default: return false
        }
    }

    /// The statuses nginx's headers filter adds `add_header` and `expires` headers to (unless `always`); a
    /// switch, not a Set, as it runs for every response head.
    /// add_trailer's fields for the response, rendered now, at the body's end (empty values are not sent).
    static func trailers(_ r: RequestContext) -> [(String, String)] {
        let normal = takesAddedHeaders(r.status)
        var out: [(String, String)] = []
        for t in r.settings.headers.addTrailers where t.always || normal {
            let value = t.value.render(r)
            guard !value.isEmpty else { continue }
            r.sentTrailers.append((t.name, value))
            out.append((t.name, value))
        }
        return out
    }

    static func takesAddedHeaders(_ status: Int) -> Bool {
        switch status {
        case 200, 201, 204, 206, 304: return true
        default: return isRedirect(status)
        }
    }

    /// Expires and Cache-Control as nginx's ngx_http_set_expires makes them; nil for none (`off`, or a variable
    /// whose value is off or not valid).
    private static func expires(_ r: RequestContext) -> (String, String)? {
        var e = r.settings.headers.expires
        if case .variable(let t, let modified) = e {
            guard let parsed = try? ExpiresSetting.parse(t.render(r), modified: modified) else { return nil }
            e = parsed
        }
        let now = Int(time(nil))
        let at: Int, maxAge: Int
        switch e {
        case .off, .variable: return nil
        case .epoch: return ("Thu, 01 Jan 1970 00:00:01 GMT", "no-cache")
        case .max: return ("Thu, 31 Dec 2037 23:55:55 GMT", "max-age=315360000")
        case .access(0), .modified(0): return (Clock.httpDate(), "max-age=0")
        case .daily(let n):
            at = Clock.nextTimeOfDay(n)
            maxAge = at - now
        case .modified(let n) where r.response.lastModified != nil:
            at = r.response.lastModified! + n
            maxAge = at - now
        case .access(let n), .modified(let n):
            at = now + n
            maxAge = n
        }
        return (Clock.httpDate(at: at), maxAge < 0 ? "no-cache" : "max-age=\(maxAge)")
    }
}

/// HTTP/1.1's chunked transfer coding of a body of unknown length: each piece framed as a chunk, and the last,
/// empty chunk at the end, with add_trailer's trailers. The HTTP/1 connection runs a response's body through it
/// when the head said `Transfer-Encoding: chunked`.
enum ChunkedFilter {
    static func piece(_ bytes: UnsafeRawBufferPointer, into out: OutputQueue) { ChunkedEncoder.chunk(bytes, into: out) }

    static func end(_ r: RequestContext?, into out: OutputQueue) {
        guard let r, r.response.trailers else { return ChunkedEncoder.end(into: out) }
        out.append("0\r\n")
        for (name, value) in HeadersFilter.trailers(r) { out.header(name, value) }
        out.append("\r\n")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP

/// nginx's header filter: the Server and Date every response carries (unless an upstream's own are passed
/// through with proxy_pass_header).
public enum HeaderFilter {
    static func write(_ r: RequestContext, upstreamSent: (server: Bool, date: Bool), into w: OutputQueue) {
        // Each name with its colon in one append: every response head carries both.
        if !upstreamSent.server {
            w.append("Server: ")
            w.append(r.settings.core.serverTokens ? Version.serverToken : Version.serverName)
            w.append("\r\n")
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
/// `add_header … always`).
public enum HeadersFilter {
    static func write(_ r: RequestContext, status: Int, into w: OutputQueue) {
        // Read in place: a copy of the module's settings would retain their arrays.
        let normal = takesAddedHeaders(status)
        if r.settings.headers.expires != .off && normal { expires(r.settings.headers.expires, into: w) }
        guard !r.settings.headers.addHeaders.isEmpty else { return }
        for h in r.settings.headers.addHeaders where h.always || normal {
            let value = h.value.render(r)
            if !value.isEmpty { w.header(h.name, value) }
        }
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
    static func takesAddedHeaders(_ status: Int) -> Bool {
        switch status {
        case 200, 201, 204, 206, 304: return true
        default: return isRedirect(status)
        }
    }

    /// Expires and Cache-Control as nginx writes them.
    private static func expires(_ e: ExpiresSetting, into w: OutputQueue) {
        switch e {
        case .off: return
        case .epoch:
            w.header("Expires", "Thu, 01 Jan 1970 00:00:01 GMT")
            w.header("Cache-Control", "no-cache")
        case .max:
            w.header("Expires", "Thu, 31 Dec 2037 23:55:55 GMT")
            w.header("Cache-Control", "max-age=315360000")
        case .seconds(let n):
            w.header("Expires", Clock.httpDate(at: Int(time(nil)) + n))
            w.header("Cache-Control", n < 0 ? "no-cache" : "max-age=\(n)")
        }
    }
}

/// HTTP/1.1's chunked transfer coding of a body of unknown length: each piece framed as a chunk, and the last,
/// empty chunk at the end. The HTTP/1 connection runs a response's body through it when the head said
/// `Transfer-Encoding: chunked`.
enum ChunkedFilter {
    static func piece(_ bytes: UnsafeRawBufferPointer, into out: OutputQueue) { ChunkedEncoder.chunk(bytes, into: out) }
    static func end(into out: OutputQueue) { ChunkedEncoder.end(into: out) }
}

import Config
import Core

/// nginx's not-modified filter for a response that has validators (static files): If-Unmodified-Since and
/// If-Match fail with 412; If-Modified-Since (as `if_modified_since` says: exact, before or off) or
/// If-None-Match (a weak comparison, `*` for any) answer 304.
public enum Conditional {
    public enum Outcome { case full, notModified, preconditionFailed }

    public static func evaluate(_ r: RequestContext, lastModified: Int, etag: String?) -> Outcome {
        if let iums = r.header("if-unmodified-since"), !(Clock.parseHTTPDate(iums).map { $0 >= lastModified } ?? false) {
            return .preconditionFailed
        }
        if let im = r.header("if-match"), !matches(im, etag, weak: false) { return .preconditionFailed }
        let ims = r.header("if-modified-since"), inm = r.header("if-none-match")
        guard ims != nil || inm != nil else { return .full }
        if let ims, modified(since: ims, lastModified, r.settings.core.ifModifiedSince) { return .full }
        if let inm, !matches(inm, etag, weak: true) { return .full }
        return .notModified
    }

    private static func modified(since text: String, _ lastModified: Int, _ mode: IfModifiedSince) -> Bool {
        guard mode != .off, let ims = Clock.parseHTTPDate(text) else { return true }
        if ims == lastModified { return false }
        return mode == .exact || ims < lastModified
    }

    /// An If-Match / If-None-Match list against the response's ETag: `*` matches anything; a weak comparison
    /// ignores `W/` on either side.
    static func matches(_ list: String, _ etag: String?, weak: Bool) -> Bool {
        if list == "*" { return true }
        guard var tag = etag else { return false }
        if weak && tag.hasPrefix("W/") { tag.removeFirst(2) }
        for item in list.split(separator: ",") {
            var candidate = item.drop(while: { $0 == " " || $0 == "\t" })
            while let last = candidate.last, last == " " || last == "\t" { candidate = candidate.dropLast() }
            if weak && candidate.hasPrefix("W/") { candidate = candidate.dropFirst(2) }
            if candidate == tag { return true }
        }
        return false
    }
}

import Config
import HTTPServer
import Script

/// proxy_redirect's rules on an upstream's redirect URL (a Location, or the URL of a Refresh), as nginx applies
/// them: a prefix (which may come from variables) is compared byte for byte where the URL starts and replaced;
/// a regex is searched in the URL, which the replacement then takes the place of, with the regex's groups.
enum ProxyRedirects {
    /// Where the URL starts in a Refresh value such as "5; url=…" ("url=" in any case); nil without one.
    static func urlStart(inRefresh value: String) -> String.Index? {
        let u = value.utf8
        var i = u.startIndex
        while let at = u[i...].firstIndex(where: { $0 | 0x20 == UInt8(ascii: "u") }) {
            let rest = u[at...].prefix(4)
            if rest.count == 4, rest.map({ $0 | 0x20 }).elementsEqual("url=".utf8.map { $0 | 0x20 }) {
                return u.index(at, offsetBy: 4)
            }
            i = u.index(after: at)
        }
        return nil
    }

    /// Where `rule` matches `url`: the end of what it replaces (from the URL's start) and the replacement.
    static func match(_ rule: ProxyRedirect, _ url: Substring, _ request: RequestContext) -> (end: String.Index, replacement: String)? {
        switch rule {
        case .off:
            return nil
        case .default:
            guard let (prefix, replacement) = defaultRule(request) else { return nil }
            return prefixEnd(url, prefix).map { ($0, replacement) }
        case .rule(let pattern, let replacement):
            return prefixEnd(url, pattern.render(request)).map { ($0, replacement.render(request)) }
        case .regex(let re, let replacement):
            guard let m = re.match(String(url)) else { return nil }
            Program.take(m, of: re, request)
            return (url.endIndex, replacement.render(request))
        }
    }

    private static func prefixEnd(_ url: Substring, _ prefix: String) -> String.Index? {
        guard url.utf8.starts(with: prefix.utf8) else { return nil }
        return url.utf8.index(url.startIndex, offsetBy: prefix.utf8.count)
    }

    /// `default` (nginx's default): the proxy_pass URL, its host as sent upstream, becomes the location's
    /// prefix. It has nothing to map when proxy_pass takes its URL from variables.
    private static func defaultRule(_ request: RequestContext) -> (String, String)? {
        guard let loc = request.location, case .proxy(let p) = loc.content else { return nil }
        switch p.target {
        case .variable, .variableURL: return nil
        case .upstream, .address: break
        }
        let base = "\(p.scheme)://\(p.hostHeader)"
        return p.uri.map { (base + $0, loc.pattern) } ?? (base + "/", "/")
    }
}

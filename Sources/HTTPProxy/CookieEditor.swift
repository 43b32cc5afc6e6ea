import Config
import HTTPServer
import Script

/// proxy_cookie_domain, proxy_cookie_path and proxy_cookie_flags on one upstream Set-Cookie value, as nginx
/// edits it: the value is split into attributes at ";", the first rule that matches a Domain or Path rewrites
/// it, the first flags rule that names the cookie sets or clears Secure, HttpOnly and SameSite. nil when
/// nothing changed: the value then passes exactly as it came.
enum CookieEditor {
    struct Attribute {
        var key: String?
        var value: String?
    }

    static func edit(_ header: String, _ p: ProxySettings, _ r: RequestContext) -> String? {
        var attrs = parse(header)
        guard attrs[0].value != nil else { return nil }
        var changed = false
        for i in attrs.indices.dropFirst() {
            guard let key = attrs[i].key?.lowercased(), let value = attrs[i].value else { continue }
            let rules = key == "domain" ? p.cookieDomains : key == "path" ? p.cookiePaths : []
            if let new = rewrite(value, rules, r) {
                attrs[i].value = new
                changed = true
            }
        }
        if !p.cookieFlags.isEmpty, let flags = flags(for: attrs[0].key ?? "", p.cookieFlags, r), !flags.isEmpty {
            apply(flags, to: &attrs)
            changed = true
        }
        guard changed else { return nil }
        return attrs.compactMap { a in a.key.map { $0 + (a.value.map { "=" + $0 } ?? "") } }.joined(separator: "; ")
    }

    static func parse(_ header: String) -> [Attribute] {
        header.split(separator: ";", omittingEmptySubsequences: false).map { part in
            let trimmed = part.drop(while: { $0 == " " })
            guard let eq = trimmed.firstIndex(of: "=") else { return Attribute(key: trimmedRight(trimmed), value: nil) }
            let value = trimmed[trimmed.index(after: eq)...].drop(while: { $0 == " " })
            return Attribute(key: trimmedRight(trimmed[..<eq]), value: trimmedRight(value))
        }
    }

    private static func trimmedRight(_ s: Substring) -> String {
        var s = s
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }

    private static func rewrite(_ value: String, _ rules: [CookieRewrite], _ r: RequestContext) -> String? {
        for rule in rules {
            switch rule {
            case .prefix(let pattern, let replacement):
                let p = pattern.render(r)
                if value.hasPrefix(p) { return replacement.render(r) + value.dropFirst(p.count) }
            case .domain(let pattern, let replacement):
                let dotted = value.hasPrefix(".")
                let host = dotted ? String(value.dropFirst()) : value
                if host.lowercased() == pattern.render(r).lowercased() { return (dotted ? "." : "") + replacement.render(r) }
            case .regex(let re, let replacement):
                if let m = re.match(value) {
                    Program.take(m, of: re, r)
                    return replacement.render(r)
                }
            }
        }
        return nil
    }

    /// The flags of the first rule that names this cookie, in lowercase; nil when none does.
    private static func flags(for name: String, _ rules: [CookieFlagsRule], _ r: RequestContext) -> Set<String>? {
        for rule in rules {
            switch rule.cookie {
            case .name(let t): guard t.render(r).lowercased() == name.lowercased() else { continue }
            case .regex(let re): guard re.matches(name) else { continue }
            }
            return Set(rule.flags.map { $0.render(r).lowercased() }.filter { known.contains($0) })
        }
        return nil
    }

    static let known: Set<String> = ["secure", "nosecure", "httponly", "nohttponly", "samesite=strict", "samesite=lax",
                                     "samesite=none", "nosamesite"]

    /// As nginx: an attribute already as asked stays; one a flag removes goes; the flags still to set follow.
    private static func apply(_ flags: Set<String>, to attrs: inout [Attribute]) {
        var pending = flags
        let sameSite = ["samesite=strict": "Strict", "samesite=lax": "Lax", "samesite=none": "None"]
        for i in attrs.indices.dropFirst() {
            switch attrs[i].key?.lowercased() {
            case "secure":
                if pending.remove("secure") == nil && flags.contains("nosecure") { attrs[i].key = nil }
            case "httponly":
                if pending.remove("httponly") == nil && flags.contains("nohttponly") { attrs[i].key = nil }
            case "samesite":
                if let (flag, value) = sameSite.first(where: { pending.contains($0.key) }) {
                    pending.remove(flag)
                    if attrs[i].value?.lowercased() != value.lowercased() { attrs[i] = Attribute(key: "SameSite", value: value) }
                } else if flags.contains("nosamesite") {
                    attrs[i].key = nil
                }
            default:
                break
            }
        }
        if pending.contains("secure") { attrs.append(Attribute(key: "Secure", value: nil)) }
        if pending.contains("httponly") { attrs.append(Attribute(key: "HttpOnly", value: nil)) }
        for (flag, value) in [("samesite=strict", "Strict"), ("samesite=lax", "Lax"), ("samesite=none", "None")] where pending.contains(flag) {
            attrs.append(Attribute(key: "SameSite", value: value))
            break
        }
    }
}

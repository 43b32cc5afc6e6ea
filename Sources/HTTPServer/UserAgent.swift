import Config

/// The browsers `keepalive_disable` names, told apart from User-Agent as nginx does: MSIE 4–6 (6 without
/// "SV1"), never Opera; Safari on Mac OS X unless the agent also says Gecko or Chrome.
enum UserAgent {
    /// Whether `keepalive_disable` closes this request's connection. The header is looked up only when a
    /// disabled browser could be concerned (MSIE 6 matters for POST only).
    static func keepaliveDisabled(_ r: RequestContext) -> Bool {
        let disabled = r.settings.core.keepaliveDisable
        guard disabled.contains(.safari) || (disabled.contains(.msie6) && r.head.method == "POST"),
              let ua = r.header("user-agent") else { return false }
        if disabled.contains(.msie6) && r.head.method == "POST" && isMSIE6(ua) { return true }
        return disabled.contains(.safari) && isSafari(ua)
    }

    static func isMSIE6(_ ua: String) -> Bool {
        guard !ua.contains("Opera"), let msie = ua.utf8.firstRange(of: "MSIE ".utf8) else { return false }
        let rest = Array(ua.utf8[msie.upperBound...])
        guard rest.count > 2, rest[1] == UInt8(ascii: ".") else { return false }
        switch rest[0] {
        case UInt8(ascii: "4"), UInt8(ascii: "5"): return true
        case UInt8(ascii: "6"): return !String(decoding: rest.dropFirst(3), as: UTF8.self).contains("SV1")
        default: return false
        }
    }

    static func isSafari(_ ua: String) -> Bool {
        if ua.contains("MSIE ") || ua.contains("Opera") || ua.contains("Gecko/") || ua.contains("Chrome/") { return false }
        return ua.contains("Safari/") && ua.contains("Mac OS X")
    }
}

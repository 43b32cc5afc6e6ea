import Config

/// `allow` / `deny`: the first rule that matches decides; without a match the module declines.
enum AccessCheck {
    static func verdict(_ r: RequestContext) -> AccessVerdict {
        let rules = r.settings.log.accessRules
        guard !rules.isEmpty, let allow = matching(rules, r.client.addressBytes) else { return .declined }
        if allow { return .allowed }
        // As nginx: with `satisfy any` the phase's end logs it, if nothing else allowed.
        if !r.settings.auth.satisfyAny { r.log.error("access forbidden by rule\(r.logContext)") }
        return .denied(403)
    }

    /// Whether the first rule that matches `addr` allows it; nil when none matches.
    static func matching(_ rules: [AccessRule], _ addr: [UInt8]) -> Bool? {
        for rule in rules {
            guard let net = rule.network else { return rule.allow }
            guard net.count == addr.count else { continue }
            var matches = true
            var bits = rule.prefix
            for i in 0..<net.count where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if net[i] & mask != addr[i] & mask { matches = false; break }
                bits -= 8
            }
            if matches { return rule.allow }
        }
        return nil
    }
}

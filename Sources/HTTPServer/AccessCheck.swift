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
            if net.contains(addr) { return rule.allow }
        }
        return nil
    }
}

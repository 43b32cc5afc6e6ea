import Config

/// `allow` / `deny`: the first rule that matches decides; no match allows.
enum AccessCheck {
    static func allows(_ rules: [AccessRule], _ addr: [UInt8]) -> Bool {
        for rule in rules {
            guard let net = rule.network else { return rule.allow }
            if net.contains(addr) { return rule.allow }
        }
        return true
    }
}

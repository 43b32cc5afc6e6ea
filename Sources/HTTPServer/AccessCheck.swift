import Config

/// `allow` / `deny`: the first rule that matches decides; no match allows.
enum AccessCheck {
    static func allows(_ rules: [AccessRule], _ addr: [UInt8]) -> Bool {
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
        return true
    }
}

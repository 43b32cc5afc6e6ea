extension UpstreamBalancer {
    /// nginx's ip_hash: the first three octets of IPv4 (the whole IPv6 address; three zero bytes for a
    /// unix-domain client), 20 tries, then round robin.
    func ipHash(_ addr: [UInt8], now: UInt64, tried: [Peer]) -> Peer? {
        guard !primaries.isEmpty else { return nil }
        let octets = addr.count == 16 ? addr : addr.isEmpty ? [0, 0, 0] : Array(addr.prefix(3))
        var hash = 89
        for _ in 0..<20 {
            for o in octets { hash = (hash * 113 + Int(o)) % 6271 }
            let p = primary(atWeight: hash % totalWeight)
            if usable(p, now: now, tried: tried) { return chosen(p, now: now) }
        }
        return nil
    }

    /// The primary whose share of the total weight contains `w` (nginx's weighted hash placement).
    func primary(atWeight w: Int) -> Peer {
        var w = w
        var i = 0
        while w >= primaries[i].weight {
            w -= primaries[i].weight
            i += 1
        }
        return primaries[i]
    }
}

extension UpstreamBalancer {
    /// nginx's smooth weighted round robin (ngx_http_upstream_get_peer).
    func roundRobin(_ peers: [Peer], now: UInt64, tried: [Peer]) -> Peer? {
        var best: Peer?
        var total = 0
        for p in peers where usable(p, now: now, tried: tried) {
            let weight = p.slowStartMs > 0 ? min(p.effectiveWeight, rampedWeight(p, now: now)) : p.effectiveWeight
            p.currentWeight += weight
            total += weight
            if p.effectiveWeight < p.weight { p.effectiveWeight = min(p.weight, p.effectiveWeight + p.weightStep) }
            if best == nil || p.currentWeight > best!.currentWeight { best = p }
        }
        guard let chosen = best else { return nil }
        chosen.currentWeight -= total
        if now - chosen.checkedAt > chosen.failTimeout { chosen.checkedAt = now }
        return chosen
    }
}

extension UpstreamBalancer {
    /// nginx's smooth weighted round robin.
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
        guard let winner = best else { return nil }
        winner.currentWeight -= total
        return chosen(winner, now: now)
    }

    /// Every method, as nginx's: a peer chosen after its fail_timeout starts a new failure window, so that a
    /// success clears its failures and a failed peer gets one request to prove itself.
    @inline(__always) func chosen(_ p: Peer, now: UInt64) -> Peer {
        if Peer.elapsed(p.checkedAt, now) > p.failTimeout { p.checkedAt = now }
        return p
    }
}

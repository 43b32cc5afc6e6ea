extension UpstreamBalancer {
    /// nginx's least_conn: fewest connections per weight; ties go to weighted round robin.
    func leastConn(_ peers: [Peer], now: UInt64, tried: [Peer]) -> Peer? {
        var best: Peer?
        for p in peers where usable(p, now: now, tried: tried) {
            if best == nil || p.connections * rampedWeight(best!, now: now) < best!.connections * rampedWeight(p, now: now) { best = p }
        }
        guard let b = best else { return nil }
        let bw = rampedWeight(b, now: now)
        let ties = peers.filter { usable($0, now: now, tried: tried) && $0.connections * bw == b.connections * rampedWeight($0, now: now) }
        // Another worker of a `zone` may change the counts between these reads: the best then stands alone.
        return ties.count > 1 ? roundRobin(ties, now: now, tried: tried) ?? chosen(b, now: now) : chosen(b, now: now)
    }
}

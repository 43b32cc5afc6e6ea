extension UpstreamBalancer {
    /// nginx's random: a primary drawn by weight; with `two`, the one of two different usable draws with fewer
    /// connections per weight (the second on a tie). 21 draws at most, then round robin, which also takes an
    /// upstream of one peer, as in nginx.
    func random(two: Bool, now: UInt64, tried: [Peer]) -> Peer? {
        guard primaries.count > 1 else { return nil }
        var first: Peer?
        for _ in 0...20 {
            // Down peers have shares of the weight too, as in nginx: drawing one is a miss.
            let p = primary(atWeight: Int(draws.next().multipliedFullWidth(by: UInt64(totalWeight)).high))
            guard p !== first, usable(p, now: now, tried: tried) else { continue }
            guard two else { return chosen(p, now: now) }
            guard let f = first else {
                first = p
                continue
            }
            return chosen(f.connections * p.weight < p.connections * f.weight ? f : p, now: now)
        }
        return nil
    }
}

/// xorshift64*: `random`'s draws, from a seed the system's generator gives each worker's balancer (a
/// getrandom() per request would cost a system call).
struct RandomDraws {
    private var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

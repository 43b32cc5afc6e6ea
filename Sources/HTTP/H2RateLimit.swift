/// A token bucket in milliseconds: `burst` events at once, then `perSecond` more each second. Bounds what a
/// client may make a connection do for nothing (resetting the streams it opens, CVE-2023-44487).
public struct H2RateLimit: Equatable, Sendable {
    public let burst: Int
    public let perSecond: Int
    private var tokens: Int
    private var lastRefillMs: UInt64?

    public init(burst: Int, perSecond: Int) {
        self.burst = burst
        self.perSecond = perSecond
        tokens = burst
    }

    /// One event at `nowMs`; false once the allowance is spent.
    public mutating func take(nowMs: UInt64) -> Bool {
        if let last = lastRefillMs {
            let elapsed = nowMs > last ? nowMs - last : 0
            let earned = Int(min(elapsed, 3_600_000)) * perSecond / 1000
            if earned > 0 {
                tokens = min(burst, tokens + earned)
                lastRefillMs = last + UInt64(earned * 1000 / perSecond)
            }
        } else {
            lastRefillMs = nowMs
        }
        guard tokens > 0 else { return false }
        tokens -= 1
        return true
    }
}

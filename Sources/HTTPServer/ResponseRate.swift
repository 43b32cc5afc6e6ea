import Config

/// `limit_rate` and `limit_rate_after` for one response, as nginx's write filter applies them: after the first
/// `after` bytes, no more than `bytesPerSecond` × (whole seconds since the request began + 1) may have gone,
/// and when the budget is spent the connection waits until it is not.
struct ResponseRate {
    let bytesPerSecond: Int
    let after: Int
    let startMs: UInt64
    /// Bytes of the response (head included) that went out.
    var sent = 0

    /// The response's rate: the request's own ($limit_rate, X-Accel-Limit-Rate), else the location's, which
    /// becomes the request's (as nginx's write filter settles r->limit_rate); nil when unlimited.
    init?(_ r: RequestContext, nowMs: UInt64) {
        // Read in place: a copy of the core settings retains every reference in them.
        let rate = r.limitRate ?? r.settings.core.limitRate.flatMap { Values.size($0.render(r)) } ?? 0
        r.limitRate = rate
        guard rate > 0 else { return nil }
        bytesPerSecond = rate
        after = r.settings.core.limitRateAfter.flatMap { Values.size($0.render(r)) } ?? 0
        startMs = r.startUs / 1000
    }

    /// How many bytes may go now (0 or less: none).
    func budget(nowMs: UInt64) -> Int {
        bytesPerSecond * (Int(nowMs - startMs) / 1000 + 1) - (sent - after)
    }

    /// How long to wait, with nothing left to send now, until some may go: the budget grows by the rate at each
    /// whole second since the request began.
    func delayMs(nowMs: UInt64) -> UInt64 {
        let elapsed = Int(nowMs - startMs)
        let deficit = max(0, -budget(nowMs: nowMs))
        let seconds = elapsed / 1000 + deficit / bytesPerSecond + 1
        return UInt64(seconds * 1000 - elapsed)
    }
}

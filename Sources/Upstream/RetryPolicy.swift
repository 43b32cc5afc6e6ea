import Config

/// Why an attempt at a peer failed before its response went to the client (nginx's upstream failure types).
public enum UpstreamFailure {
    case error, timeout, invalidHeader
    /// A response whose status `proxy_next_upstream` names (http_500 …).
    case status(Int)

    public var isTimeout: Bool { if case .timeout = self { return true } else { return false } }

    /// Whether it counts against the peer for max_fails / fail_timeout.
    public var countsAgainstPeer: Bool {
        guard case .status(let s) = self else { return true }
        switch s {
        case 500, 502, 503, 504, 429: return true
        default: return false
        }
    }
}

/// `proxy_next_upstream`, `proxy_next_upstream_tries` and `proxy_next_upstream_timeout`: whether a failed
/// attempt goes on to the next peer.
public struct RetryPolicy {
    public let conditions: NextUpstream
    /// 0: as many as there are peers.
    public let tries: Int
    /// 0: no limit.
    public let timeoutMs: UInt64

    public init(_ s: ProxySettings) {
        conditions = s.nextUpstream
        tries = s.nextUpstreamTries
        timeoutMs = UInt64(s.nextUpstreamTimeout)
    }

    /// Whether `failure` is one to retry on: named by proxy_next_upstream, and for POST, LOCK and PATCH that
    /// already went out, only with non_idempotent.
    public func covers(_ failure: UpstreamFailure, method: String, requestSent: Bool) -> Bool {
        if conditions.isEmpty { return false }
        if requestSent && !conditions.contains(.nonIdempotent) && (method == "POST" || method == "LOCK" || method == "PATCH") { return false }
        switch failure {
        case .error: return conditions.contains(.error)
        case .timeout: return conditions.contains(.timeout)
        case .invalidHeader: return conditions.contains(.invalidHeader)
        case .status(let s): return NextUpstream(status: s).map(conditions.contains) ?? false
        }
    }

    /// Whether a response with this status is one to retry on at all (checked before the response is read on).
    public func retriesStatus(_ status: Int) -> Bool {
        NextUpstream(status: status).map(conditions.contains) ?? false
    }

    /// Whether the attempts made so far, the first of which started at `startedMs`, leave room for another.
    public func allowsAnother(after attempts: Int, startedMs: UInt64, nowMs: UInt64) -> Bool {
        if tries > 0 && attempts >= tries { return false }
        if timeoutMs > 0 && nowMs - startedMs >= timeoutMs { return false }
        return true
    }
}

import Script

/// `proxy_cache_valid [code ...] time`: how long responses with these statuses stay fresh (`any`: every
/// status; no code: 200, 301 and 302).
public struct CacheValidity: Sendable {
    /// Empty: any status.
    public let codes: [Int]
    public let seconds: Int
    public init(codes: [Int], seconds: Int) { self.codes = codes; self.seconds = seconds }
}

/// `*_cache`'s value.
public enum CacheZoneChoice: Sendable {
    case named(String)
    /// Per request: empty or "off" is no cache, another name must be a zone's.
    case variable(Template)
}

/// An upstream module's cache (`proxy_cache*`, `fastcgi_cache*`, …), per level.
public struct CacheSettings: Sendable {
    /// `*_cache NAME`: the `*_cache_path` zone, or variables that name one per request; nil: off. With where
    /// it was written, for the merge's errors.
    @Setting public var zone: CacheZoneChoice? = nil
    public internal(set) var zoneLocation: SourceLocation? = nil
    /// `*_cache_key`; proxy_cache's default is `$scheme$proxy_host$request_uri`, the others have none.
    @Setting public var key: Template? = nil
    @Setting public var valid: [CacheValidity] = []
    /// `*_cache_bypass`: a value neither empty nor "0" answers from the upstream (whose response may be stored).
    @Setting public var bypass: [Template] = []
    /// `*_no_cache`: likewise, the response is not stored.
    @Setting public var noCache: [Template] = []
    /// `*_cache_methods`: GET and HEAD always among them.
    @Setting public var methods: [String] = ["GET", "HEAD"]
    @Setting public var minUses = 1
    /// `*_cache_use_stale`: the failures a stale cached response answers (proxy_next_upstream's, and `updating`).
    @Setting public var useStale: NextUpstream = []
    @Setting public var lock = false
    @Setting public var lockTimeout = 5000
    @Setting public var lockAge = 5000
    @Setting public var revalidate = false
    /// `*_cache_background_update`: a stale response served while it is refreshed is refreshed by a request of
    /// its own, and the client is answered at once.
    @Setting public var backgroundUpdate = false
    @Setting public var convertHead = true
    /// `*_cache_max_range_offset` (nil: none).
    @Setting public var maxRangeOffset: Int? = nil

    public init() {}

    public var enabled: Bool { zone != nil }

    mutating func merge(_ p: CacheSettings) {
        if !$zone.isSet { zoneLocation = p.zoneLocation }
        $zone.inherit(p.$zone)
        $key.inherit(p.$key)
        $valid.inherit(p.$valid)
        $bypass.inherit(p.$bypass)
        $noCache.inherit(p.$noCache)
        $methods.inherit(p.$methods)
        $minUses.inherit(p.$minUses)
        $useStale.inherit(p.$useStale)
        $lock.inherit(p.$lock)
        $lockTimeout.inherit(p.$lockTimeout)
        $lockAge.inherit(p.$lockAge)
        $revalidate.inherit(p.$revalidate)
        $backgroundUpdate.inherit(p.$backgroundUpdate)
        $convertHead.inherit(p.$convertHead)
        $maxRangeOffset.inherit(p.$maxRangeOffset)
    }

    /// The seconds a response with `status` stays fresh by `*_cache_valid` (0: not cached).
    public func validSeconds(for status: Int) -> Int {
        for v in valid where v.codes.isEmpty || v.codes.contains(status) { return v.seconds }
        return 0
    }
}

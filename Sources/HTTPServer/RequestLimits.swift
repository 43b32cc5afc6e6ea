#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Event
import ShmTable

/// `$limit_req_status` and `$limit_conn_status`: what the limits did to a request (nil: none applied).
public enum LimitStatus: UInt8 {
    case none, passed, delayed, rejected, delayedDryRun, rejectedDryRun

    var name: String? {
        switch self {
        case .none: nil
        case .passed: "PASSED"
        case .delayed: "DELAYED"
        case .rejected: "REJECTED"
        case .delayedDryRun: "DELAYED_DRY_RUN"
        case .rejectedDryRun: "REJECTED_DRY_RUN"
        }
    }
}

/// A zone as a worker uses it: the shared table the master mapped and what the configuration says of it.
final class LimitZoneUse {
    let zone: LimitZone
    let spec: LimitZoneSpec
    init(zone: LimitZone, spec: LimitZoneSpec) {
        self.zone = zone
        self.spec = spec
    }

    /// The request's key, read in place: `$binary_remote_addr` from the connection's address on the stack;
    /// another key is rendered (a short value stays a small string, without allocating).
    @inline(__always) func withKey<R>(_ r: RequestContext, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        switch spec.key {
        case .binaryRemoteAddr, nil: return r.client.withAddressBytes(body)
        case .template(let t):
            var s = t.render(r)
            return s.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        }
    }
}

/// The connections a request counts in limit_conn zones, released when it ends (nginx's pool cleanups).
/// Nearly every request counts in one zone at most: it is kept inline, and only more allocate.
struct HeldConnections {
    private var first: (zone: Int, node: UInt32)?
    private var more: [(zone: Int, node: UInt32)] = []

    mutating func append(zone: Int, node: UInt32) {
        if first == nil { first = (zone, node) } else { more.append((zone, node)) }
    }

    mutating func release(_ zones: [LimitZoneUse]) {
        guard let f = first else { return }
        zones[f.zone].zone.releaseConnection(f.node)
        for h in more { zones[h.zone].zone.releaseConnection(h.node) }
        first = nil
        more = []
    }
}

/// nginx's preaccess phase: limit_req, then limit_conn (nginx runs a phase's handlers in the reverse of the
/// order their modules register, and limit_conn registers first). Each runs once a request: an error page or
/// an internal redirect that comes back here finds its status set.
enum RequestLimits {
    enum Verdict { case declined, reject(Int), delay(Int) }

    /// ngx_http_limit_req_handler: each limit's key is looked up in its zone; every limit but the last only
    /// holds its node, so that a request one limit refuses is not counted by the others; once all pass, the
    /// held nodes are accounted and the longest delay any of them asks for is the request's.
    static func limitRequests(_ r: RequestContext) -> Verdict {
        let settings = r.settings.limits
        let rules = settings.requests
        let zones = r.service.limitZones
        let now = r.service.loop.now
        return withUnsafeTemporaryAllocation(of: UInt32.self, capacity: rules.count) { held in
            var outcome: LimitZone.Lookup?
            var last = rules.count - 1
            for (n, rule) in rules.enumerated() {
                held[n] = 0
                let use = zones[rule.zone]
                let found: LimitZone.Lookup? = use.withKey(r) { key in
                    if key.isEmpty { return nil }
                    if key.count > 65535 {
                        r.log.error("the value of the \"\(use.spec.keyText)\" key is more than 65535 bytes: \"\(String(decoding: key, as: UTF8.self))\"\(r.logContext)")
                        return nil
                    }
                    return use.zone.lookup(key, rate: use.spec.rate, burst: rule.burst, account: n == rules.count - 1, now: now)
                }
                guard let found else { continue }
                outcome = found
                last = n
                guard case .held(let node, _) = found else { break }
                held[n] = node
            }
            guard let outcome else { return .declined }
            var excess = 0
            switch outcome {
            case .busy, .full:
                let zone = zones[rules[last].zone]
                if case .busy(let e) = outcome {
                    r.log.log(settings.requestLogLevel, "limiting requests\(settings.requestDryRun ? ", dry run" : ""), excess: \(milli(e)) by zone \"\(zone.spec.name)\"\(r.logContext)")
                } else {
                    r.service.log.alert("could not allocate node in limit_req zone \"\(zone.spec.name)\"")
                }
                for n in 0..<last where held[n] != 0 { zones[rules[n].zone].zone.release(held[n]) }
                r.limitReqStatus = settings.requestDryRun ? .rejectedDryRun : .rejected
                return settings.requestDryRun ? .declined : .reject(settings.requestStatus)
            case .passed(let e): excess = e
            case .held: break
            }
            // The last limit that looked its key up (or the last limit, when its key was empty) sets the delay
            // the held ones must beat.
            var delayingZone = rules[last].zone
            var delay = LeakyBucket.delay(excess: excess, allowed: rules[last].delay, rate: zones[rules[last].zone].spec.rate)
            for n in stride(from: last - 1, through: 0, by: -1) where held[n] != 0 {
                let use = zones[rules[n].zone]
                let e = use.zone.account(held[n], rate: use.spec.rate, now: now)
                let d = LeakyBucket.delay(excess: e, allowed: rules[n].delay, rate: use.spec.rate)
                if d > delay { (delay, excess, delayingZone) = (d, e, rules[n].zone) }
            }
            guard delay > 0 else {
                r.limitReqStatus = .passed
                return .declined
            }
            r.log.log(settings.delayLogLevel, "delaying request\(settings.requestDryRun ? ", dry run" : ""), excess: \(milli(excess)), by zone \"\(zones[delayingZone].spec.name)\"\(r.logContext)")
            r.limitReqStatus = settings.requestDryRun ? .delayedDryRun : .delayed
            return settings.requestDryRun ? .declined : .delay(delay)
        }
    }

    /// ngx_http_limit_conn_handler: the request counts in each zone whose key it has, until it ends; at a
    /// zone's limit (or when the zone is full) what it counted so far is let go and it is refused.
    static func limitConnections(_ r: RequestContext) -> Int? {
        let settings = r.settings.limits
        let zones = r.service.limitZones
        for rule in settings.connections {
            let use = zones[rule.zone]
            let counted: LimitZone.Count? = use.withKey(r) { key in
                if key.isEmpty { return nil }
                if key.count > 255 {
                    r.log.error("the value of the \"\(use.spec.keyText)\" key is more than 255 bytes: \"\(String(decoding: key, as: UTF8.self))\"\(r.logContext)")
                    return nil
                }
                return use.zone.countConnection(key, limit: rule.limit)
            }
            guard let counted else { continue }
            r.limitConnStatus = .passed
            switch counted {
            case .counted(let node):
                r.heldConnections.append(zone: rule.zone, node: node)
                continue
            case .limited:
                r.log.log(settings.connectionLogLevel, "limiting connections\(settings.connectionDryRun ? ", dry run," : "") by zone \"\(use.spec.name)\"\(r.logContext)")
            case .full:
                r.service.log.log(.crit, "ngx_slab_alloc() failed: no memory in limit_conn_zone \"\(use.spec.name)\"")
            }
            r.heldConnections.release(zones)
            r.limitConnStatus = settings.connectionDryRun ? .rejectedDryRun : .rejected
            return settings.connectionDryRun ? nil : settings.connectionStatus
        }
        return nil
    }

    /// nginx's `%ui.%03ui` of milli-requests.
    private static func milli(_ e: Int) -> String {
        let frac = String(e % 1000)
        return "\(e / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
    }
}

/// A request limit_req delays: it waits on a timer of the worker's loop (never blocking it), then goes on
/// with the phases. As the request's handler meanwhile, a client that goes away ends it (499), as nginx's
/// ngx_http_test_reading does.
final class LimitDelay: ActiveHandler {
    private var timer: Timer!
    private var request: RequestContext?
    private let resume: (RequestContext) -> Void
    private(set) var isFinished = false

    init(_ r: RequestContext, ms: Int, resume: @escaping (RequestContext) -> Void) {
        request = r
        self.resume = resume
        timer = r.service.loop.makeTimer { [unowned(unsafe) self] in self.fire() }
        timer.rearm(after: UInt64(ms))
    }

    private func fire() {
        // Letting go of the request's handler may release the last reference to this object and its timer.
        withExtendedLifetime(self) {
            guard let r = request else { return }
            abort()
            if r.handler === self { r.handler = nil }
            resume(r)
        }
    }

    /// The timer's action does not hold this object: it must not outlive it armed.
    deinit { timer.cancel() }

    /// The request ended while it waited (its client went away, the worker stops).
    func abort() {
        isFinished = true
        timer.cancel()
        request = nil
    }
}

import Config
import CShim
import ShmTable

extension CheckEngine {
    /// Makes one source's run-time peers (`current`: name → slot) exactly `wanted`: a peer gone is retired
    /// (requests on it finish) and its probe stops; a new one takes a record and, when `check` gives it one, a
    /// prober that starts at once. A peer whose values changed (an SRV record's weight, etcd's parameters) takes
    /// a new record and keeps its verdict: workers read those when a peer joins. `added` and `removed` word the
    /// log lines for a name. Returns whether anything changed; the caller publishes the membership.
    func syncDynamicPeers(_ current: inout [String: Int], to wanted: [DynamicPeer], upstream: Upstream, hostName: String?,
                          check: (DynamicPeer) -> CheckSettings?, added: (String) -> String, removed: (String) -> String) -> Bool {
        let now = vigil_monotonic_ms()
        var changed = false
        var replaced: [String: PeerState] = [:]
        // By name, so that a store of thousands of servers syncs in one pass.
        var byName: [String: DynamicPeer] = [:]
        for p in wanted where byName[p.name] == nil { byName[p.name] = p }
        for (name, slot) in current where byName[name].map({ segment.dynamicPeer(slot: slot) != $0 }) ?? true {
            removeProber(slot: slot)
            if byName[name] != nil {
                replaced[name] = segment.slot(slot).read()
            } else {
                log.notice(removed(name))
            }
            segment.retireDynamicPeer(slot: slot, nowMs: now)
            current[name] = nil
            changed = true
        }
        var probed: [(slot: Int, peer: CheckedPeer)] = []
        for p in wanted where current[p.name] == nil {
            let peerCheck = check(p)
            let state = replaced[p.name] ?? peerCheck.map { PeerState.unseen(down: $0.defaultDown) } ?? PeerState(down: false)
            guard let slot = segment.addDynamicPeer(p, state: state, type: peerCheck?.type.code ?? 0,
                                                    checkPort: UInt16(peerCheck?.port ?? 0), nowMs: now) else {
                log.error("cannot add new server \(p.name) to upstream \"\(upstream.name)\", memory exhausted: "
                          + "check_shm_size holds \(segment.dynamicCapacity) run-time peers")
                break
            }
            current[p.name] = slot
            changed = true
            if replaced[p.name] == nil { log.notice(added(p.name)) }
            if let peerCheck {
                probed.append((slot, CheckedPeer(upstream: upstream.name, address: PeerAddress(host: p.host, port: p.port, isIPv6: p.isIPv6),
                                                 check: peerCheck, hostName: hostName)))
            }
        }
        // Together, so that their first probes are spread as at start.
        addProbers(probed)
        return changed
    }

    /// One source of run-time peers has had its first answer (or error); once all have, requests that found no
    /// peer stop waiting for them.
    func firstAnswerCame() {
        pendingFirstAnswers -= 1
        if pendingFirstAnswers == 0 { segment.markNamesResolved() }
    }
}

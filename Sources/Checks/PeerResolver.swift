import Config
import CShim
import Core
import DNS
import Event
import ShmTable

/// `server NAME resolve` (nginx 1.27.3): on the checker's loop, so that one process resolves each name for all
/// workers. Each name is asked at once, then again when its answer's TTL (or the resolver's `valid=`) runs out
/// (1 s at least); the addresses found become the server's peers in the segment's dynamic slots, published
/// to every worker by the membership version. "Host not found" empties the server's peers; any other error
/// keeps the last good set and asks again after max(resolver_timeout, 1 s), as nginx does. A new peer of a
/// checked upstream starts in its first round, so it is probed at once and gets no traffic until it passes.
final class PeerResolver {
    /// One `server … resolve` line.
    private final class Name {
        let upstream: Upstream
        /// Index of the upstream among the segment's dynamic upstreams, and of the line in the upstream.
        let upstreamIndex: Int
        let serverIndex: Int
        let server: UpstreamServer
        let host: String
        let port: UInt16
        let client: DNSClient
        let timer: Timer
        /// The peers it has now: address text → slot.
        var peers: [String: Int] = [:]
        /// Whether it has had an answer (or an error) in this generation.
        var answered = false

        init(upstream: Upstream, upstreamIndex: Int, serverIndex: Int, server: UpstreamServer, host: String, port: UInt16,
             client: DNSClient, timer: Timer) {
            self.upstream = upstream
            self.upstreamIndex = upstreamIndex
            self.serverIndex = serverIndex
            self.server = server
            self.host = host
            self.port = port
            self.client = client
            self.timer = timer
        }
    }

    unowned let engine: CheckEngine
    private var names: [Name] = []
    private var clients: [String: DNSClient] = [:]
    private var unresolved = 0

    init(engine: CheckEngine, upstreams: [Upstream]) {
        self.engine = engine
        let segment = engine.segment
        // The peers already in the segment (carried over a reload, or left by the checker before this one).
        let existing = segment.activeDynamicPeers()
        for u in upstreams {
            guard let k = segment.dynamicUpstreamIndex(u.name), let setting = u.resolver else { continue }
            let client = clients[setting.text] ?? DNSClient(loop: engine.loop, setting: setting, log: engine.log)
            clients[setting.text] = client
            for (s, server) in u.servers.enumerated() {
                guard let (host, port) = server.resolve else { continue }
                let name = Name(upstream: u, upstreamIndex: k, serverIndex: s, server: server, host: host, port: port,
                                client: client, timer: engine.loop.makeTimer())
                for (slot, p) in existing where p.upstream == k && p.server == s {
                    name.peers[p.name] = slot
                    if let check = u.check, !server.down { engine.addProber(slot: slot, peer: checkedPeer(name, p, check)) }
                }
                names.append(name)
            }
        }
        unresolved = names.count
    }

    /// Asks for every name now.
    func start() {
        for n in names { resolve(n) }
    }

    func stop() {
        for n in names { n.timer.cancel() }
        for c in clients.values { c.shutdown() }
    }

    private func resolve(_ n: Name) {
        n.client.resolve(n.host, timeoutMs: n.upstream.resolverTimeout ?? 30_000) { [unowned self, unowned n] result in
            self.resolved(n, result)
        }
    }

    private func resolved(_ n: Name, _ result: Result<[ResolvedAddress], ResolveError>) {
        let again: UInt64
        switch result {
        case .success(let found):
            update(n, to: found)
            again = max(n.client.validForMs(n.host), 1000)
        case .failure(let e):
            engine.log.error("\(n.host) could not be resolved (\(e)) in upstream \"\(n.upstream.name)\"")
            // "Host not found" is an answer: the name has no peers. Anything else keeps what it had.
            if e == .hostNotFound { update(n, to: []) }
            again = e == .hostNotFound ? max(n.client.validForMs(n.host), 1000) : UInt64(max(n.upstream.resolverTimeout ?? 30_000, 1000))
        }
        if !n.answered {
            n.answered = true
            unresolved -= 1
            if unresolved == 0 { engine.segment.markNamesResolved() }
        }
        n.timer.rearm(after: again) { [unowned self, unowned n] in self.resolve(n) }
    }

    /// Makes the name's peers `found`: those gone are retired (requests on them finish), new ones added.
    private func update(_ n: Name, to found: [ResolvedAddress]) {
        let segment = engine.segment
        let now = vigil_monotonic_ms()
        let wanted = found.map { DynamicPeer(upstream: n.upstreamIndex, server: n.serverIndex, host: $0.host, port: n.port,
                                             isIPv6: $0.isIPv6, weight: n.server.weight, backup: n.server.backup) }
        var changed = false
        for (name, slot) in n.peers where !wanted.contains(where: { $0.name == name }) {
            engine.removeProber(slot: slot)
            segment.retireDynamicPeer(slot: slot, nowMs: now)
            n.peers[name] = nil
            changed = true
            engine.log.notice("server \(name) removed from upstream \"\(n.upstream.name)\": \(n.host) no longer resolves to it")
        }
        let check = n.server.down ? nil : n.upstream.check
        for p in wanted where n.peers[p.name] == nil {
            let state = check.map { PeerState.unseen(down: $0.defaultDown) } ?? PeerState(down: false)
            guard let slot = segment.addDynamicPeer(p, state: state, type: check?.type.code ?? 0,
                                                    checkPort: UInt16(check?.port ?? 0), nowMs: now) else {
                engine.log.error("cannot add new server \(p.name) to upstream \"\(n.upstream.name)\", memory exhausted: "
                                 + "check_shm_size holds \(segment.dynamicCapacity) resolved peers")
                break
            }
            n.peers[p.name] = slot
            changed = true
            engine.log.notice("server \(p.name) added to upstream \"\(n.upstream.name)\": \(n.host) resolves to it")
            if let check { engine.addProber(slot: slot, peer: checkedPeer(n, p, check)) }
        }
        if changed { segment.publishMembership() }
    }

    private func checkedPeer(_ n: Name, _ p: DynamicPeer, _ check: CheckSettings) -> CheckedPeer {
        CheckedPeer(upstream: n.upstream.name, address: PeerAddress(host: p.host, port: p.port, isIPv6: p.isIPv6), check: check,
                    hostName: n.host)
    }
}

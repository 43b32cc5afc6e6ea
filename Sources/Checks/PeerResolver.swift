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
        /// `service=`: the SRV name asked instead of the host's addresses.
        let service: String?
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
            self.service = server.service
            self.client = client
            self.timer = timer
        }
    }

    unowned let engine: CheckEngine
    private var names: [Name] = []
    private var clients: [String: DNSClient] = [:]

    init(engine: CheckEngine, upstreams: [Upstream]) {
        self.engine = engine
        let segment = engine.segment
        // The peers already in the segment (carried over a reload, or left by the checker before this one).
        let existing = segment.activeDynamicPeers()
        var probed: [(slot: Int, peer: CheckedPeer)] = []
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
                    if let check = u.check, !server.down { probed.append((slot, checkedPeer(name, p, check))) }
                }
                names.append(name)
            }
        }
        engine.pendingFirstAnswers += names.count
        engine.addProbers(probed)
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
        let timeout = n.upstream.resolverTimeout ?? 30_000
        guard let service = n.service else {
            return n.client.resolve(n.host, timeoutMs: timeout) { [unowned self, unowned n] result in
                self.resolved(n, result.map { $0.map { Found(address: $0, port: n.port, weight: n.server.weight, backup: n.server.backup) } })
            }
        }
        n.client.resolveService(service, timeoutMs: timeout) { [unowned self, unowned n] result in
            switch result {
            case .success(let records): self.resolveTargets(n, records)
            case .failure(let e): self.resolved(n, .failure(e))
            }
        }
    }

    /// An address a name (or an SRV target) gave, with what the peer takes from its record.
    private struct Found {
        let address: ResolvedAddress
        let port: UInt16
        let weight: Int
        let backup: Bool
    }

    /// SRV: the records of the lowest priority are primary and the rest backup (with `backup` on the server,
    /// the lowest are backup and the rest ignored), as nginx; each target's addresses take the record's port
    /// and weight. A target that does not resolve is left out and logged; the set is what the others gave.
    private func resolveTargets(_ n: Name, _ records: [ServiceRecord]) {
        let lowest = records.map(\.priority).min() ?? 0
        let used = records.filter { !n.server.backup || $0.priority == lowest }
        var targets: [String] = []
        for r in used where !targets.contains(r.target) { targets.append(r.target) }
        guard !targets.isEmpty else { return resolved(n, .success([])) }
        var found: [Found] = []
        var pending = targets.count
        var next = 0
        // At most `targetsInFlight` lookups at once: 200 targets asked together (400 datagrams with AAAA)
        // overflowed a DNS server's receive buffer, and the dropped ones only timed out.
        func askNext() {
            guard next < targets.count else { return }
            let target = targets[next]
            next += 1
            n.client.resolve(target, timeoutMs: n.upstream.resolverTimeout ?? 30_000) { [unowned self, unowned n] result in
                switch result {
                case .success(let addresses):
                    for r in used where r.target == target {
                        let backup = n.server.backup || r.priority != lowest
                        found += addresses.map { Found(address: $0, port: r.port, weight: max(Int(r.weight), 1), backup: backup) }
                    }
                case .failure(let e):
                    self.engine.log.error("\(target) could not be resolved (\(e)) while resolving service \(n.service ?? "") of \(n.host)")
                }
                pending -= 1
                if pending == 0 { return self.resolved(n, .success(found)) }
                askNext()
            }
        }
        for _ in 0..<min(PeerResolver.targetsInFlight, targets.count) { askNext() }
    }

    static let targetsInFlight = 16

    private func resolved(_ n: Name, _ result: Result<[Found], ResolveError>) {
        let again: UInt64
        let asked = n.service ?? n.host
        switch result {
        case .success(let found):
            update(n, to: found)
            again = max(n.client.validForMs(asked, service: n.service != nil), 1000)
        case .failure(let e):
            engine.log.error(n.service.map { "service \($0) of \(n.host) could not be resolved (\(e))" } ?? "\(n.host) could not be resolved (\(e))"
                             + " in upstream \"\(n.upstream.name)\"")
            // "Host not found" is an answer: the name has no peers. Anything else keeps what it had.
            if e == .hostNotFound { update(n, to: []) }
            again = e == .hostNotFound ? max(n.client.validForMs(asked, service: n.service != nil), 1000)
                                       : UInt64(max(n.upstream.resolverTimeout ?? 30_000, 1000))
        }
        if !n.answered {
            n.answered = true
            engine.firstAnswerCame()
        }
        n.timer.rearm(after: again) { [unowned self, unowned n] in self.resolve(n) }
    }

    /// Makes the name's peers `found`.
    private func update(_ n: Name, to found: [Found]) {
        var wanted: [DynamicPeer] = []
        for f in found where !wanted.contains(where: { $0.name == DynamicPeer.name(f.address.host, f.port, f.address.isIPv6) }) {
            wanted.append(DynamicPeer(upstream: n.upstreamIndex, server: n.serverIndex, host: f.address.host, port: f.port,
                                      isIPv6: f.address.isIPv6, weight: f.weight, backup: f.backup))
        }
        let asked = n.service ?? n.host, upstream = n.upstream.name
        let check = n.server.down ? nil : n.upstream.check
        if engine.syncDynamicPeers(&n.peers, to: wanted, upstream: n.upstream, hostName: n.host, check: { _ in check },
                                   added: { "server \($0) added to upstream \"\(upstream)\": \(asked) resolves to it" },
                                   removed: { "server \($0) removed from upstream \"\(upstream)\": \(asked) no longer resolves to it" }) {
            engine.segment.publishMembership()
        }
    }

    private func checkedPeer(_ n: Name, _ p: DynamicPeer, _ check: CheckSettings) -> CheckedPeer {
        CheckedPeer(upstream: n.upstream.name, address: PeerAddress(host: p.host, port: p.port, isIPv6: p.isIPv6), check: check,
                    hostName: n.host)
    }
}

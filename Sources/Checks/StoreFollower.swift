#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Etcd
import ShmTable

/// The stores upstreams keep their servers in, followed on the checker's loop so that one process does it for
/// all workers: etcd (`upsync … upsync_type=etcd`), watched, and `state` files, read at start and whenever the
/// upstream API rings the segment's doorbell after writing one. A store's servers become the upstream's
/// run-time peers (with their own weight, max_fails, fail_timeout, down and backup), replacing the configured
/// ones once the store gives any; a new server of a checked upstream is probed at once and gets no traffic
/// before it passes; a server removed finishes the requests it has. After each change from etcd the set is
/// written to `upsync_dump_path` as `server` lines that the upstream can `include`, so a restart without etcd
/// serves the last set.
final class StoreFollower {
    private final class Source {
        let upstream: Upstream
        let index: Int
        /// etcd's, or nil for a state file.
        let upsync: UpsyncSource?
        var watcher: EtcdWatcher?
        /// The state file's servers as last read, and the file as it was then: the doorbell also rings for
        /// re-checks, and an unchanged file is not read again.
        var stateServers: [StateServer]?
        var stateSeen: FileIdentity?
        /// The servers it has now: name → slot.
        var peers: [String: Int] = [:]

        init(upstream: Upstream, index: Int, upsync: UpsyncSource?) {
            self.upstream = upstream
            self.index = index
            self.upsync = upsync
        }
    }

    unowned let engine: CheckEngine
    private var sources: [Source] = []

    init(engine: CheckEngine, upstreams: [Upstream]) {
        self.engine = engine
        let segment = engine.segment
        let existing = segment.activeDynamicPeers()
        for u in upstreams {
            guard u.hasStore, let k = segment.dynamicUpstreamIndex(u.name) else { continue }
            let source = Source(upstream: u, index: k, upsync: u.upsync)
            // Servers a reload carried over (or a previous checker added) are this follower's to keep or retire.
            var probed: [(slot: Int, peer: CheckedPeer)] = []
            for (slot, p) in existing where p.upstream == k && p.server == u.storeLine {
                source.peers[p.name] = slot
                if let check = u.check, !p.down {
                    probed.append((slot, CheckedPeer(upstream: u.name, address: PeerAddress(host: p.host, port: p.port, isIPv6: p.isIPv6), check: check)))
                }
            }
            engine.addProbers(probed)
            sources.append(source)
            guard let setting = u.upsync,
                  let address = SocketAddress(host: setting.address.host, port: setting.address.port, isIPv6: setting.address.isIPv6) else { continue }
            let watcher = EtcdWatcher(loop: engine.loop, address: address, authority: setting.authority, prefix: setting.prefix,
                                      timeoutMs: UInt64(setting.timeoutMs), retryMs: UInt64(setting.intervalMs), log: engine.log,
                                      upstream: u.name) { [unowned self, unowned source] set in self.changed(source, to: set) }
            watcher.onFirstResult = { [unowned engine] in engine.firstAnswerCame() }
            source.watcher = watcher
        }
        engine.pendingFirstAnswers += sources.count
    }

    func start() {
        for s in sources {
            if let w = s.watcher { w.start() } else { readState(s); engine.firstAnswerCame() }
        }
    }

    func stop() {
        for s in sources { s.watcher?.stop() }
    }

    /// The doorbell rang: state files the API may have written are read again (unchanged ones change nothing).
    func refresh() {
        for s in sources where s.watcher == nil { readState(s) }
    }

    private func readState(_ s: Source) {
        guard let path = s.upstream.stateFile else { return }
        let seen = FileIdentity(path: path)
        if seen != nil && seen == s.stateSeen { return }
        s.stateSeen = seen
        switch StateFile.read(path).map(StateFile.parse) {
        case .failure(let e):
            engine.log.error("cannot read state file \"\(path)\" (\(e.text)), upstream \"\(s.upstream.name)\" keeps its servers")
        case .success(.failure(let e)):
            engine.log.error("state file \"\(path)\": \(e), upstream \"\(s.upstream.name)\" keeps its servers")
        case .success(.success(let servers)):
            guard servers != s.stateServers else { return }
            s.stateServers = servers
            let wanted = servers.map {
                DynamicPeer(upstream: s.index, server: s.upstream.storeLine, host: $0.address.host, port: $0.address.port,
                            isIPv6: $0.address.isIPv6, weight: $0.weight, backup: $0.backup, maxFails: $0.maxFails,
                            failTimeout: ($0.failTimeout + 999) / 1000, down: $0.down, maxConns: $0.maxConns)
            }
            update(s, to: wanted, from: "the upstream API")
        }
    }

    private func changed(_ s: Source, to set: [UpsyncPeer]) {
        let wanted = set.map {
            DynamicPeer(upstream: s.index, server: s.upstream.storeLine, host: $0.host, port: $0.port, isIPv6: $0.isIPv6,
                        weight: $0.weight, backup: $0.backup, maxFails: $0.maxFails, failTimeout: $0.failTimeout, down: $0.down)
        }
        update(s, to: wanted, from: "etcd at \(s.upsync!.authority)")
        dump(s, set)
    }

    private func update(_ s: Source, to wanted: [DynamicPeer], from store: String) {
        let name = s.upstream.name
        if engine.syncDynamicPeers(&s.peers, to: wanted, upstream: s.upstream, hostName: nil, check: { $0.down ? nil : s.upstream.check },
                                   added: { "server \($0) added to upstream \"\(name)\" from \(store)" },
                                   removed: { "server \($0) removed from upstream \"\(name)\" by \(store)" }) {
            engine.segment.publishMembership()
        }
    }

    /// The set as `server` lines, replacing the dump whole: a reader (an `include` at reload) never sees half.
    private func dump(_ s: Source, _ set: [UpsyncPeer]) {
        guard let path = s.upsync?.dumpPath else { return }
        let text = set.map { $0.serverLine + "\n" }.joined()
        if let e = FileBytes.replace(path, with: Array(text.utf8)) {
            engine.log.error("upsync: writing \"\(path)\" failed (\(Errno.text(e))), upstream \"\(s.upstream.name)\"")
        }
    }
}

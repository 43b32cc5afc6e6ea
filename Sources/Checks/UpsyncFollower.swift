#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Etcd
import ShmTable

/// `upsync … upsync_type=etcd` on the checker's loop, so that one process follows etcd for all workers: each
/// upstream's servers under its key prefix become its run-time peers (with their own weight, max_fails,
/// fail_timeout, down and backup), replacing the configured ones once etcd gives any; a new server of a checked
/// upstream is probed at once and gets no traffic before it passes; a server removed finishes the requests it
/// has. After each change the set is written to `upsync_dump_path` as `server` lines that the upstream can
/// `include`, so a restart without etcd serves the last set.
final class UpsyncFollower {
    private final class Source {
        let upstream: Upstream
        let index: Int
        let setting: UpsyncSource
        var watcher: EtcdWatcher?
        /// The servers it has now: name → slot.
        var peers: [String: Int] = [:]

        init(upstream: Upstream, index: Int, setting: UpsyncSource) {
            self.upstream = upstream
            self.index = index
            self.setting = setting
        }
    }

    unowned let engine: CheckEngine
    private var sources: [Source] = []

    init(engine: CheckEngine, upstreams: [Upstream]) {
        self.engine = engine
        let segment = engine.segment
        let existing = segment.activeDynamicPeers()
        for u in upstreams {
            guard let setting = u.upsync, let k = segment.dynamicUpstreamIndex(u.name) else { continue }
            let source = Source(upstream: u, index: k, setting: setting)
            // Servers a reload carried over (or a previous checker added) are this follower's to keep or retire.
            for (slot, p) in existing where p.upstream == k && p.server == u.upsyncLine {
                source.peers[p.name] = slot
                if let check = u.check, !p.down {
                    engine.addProber(slot: slot, peer: CheckedPeer(upstream: u.name, address: PeerAddress(host: p.host, port: p.port, isIPv6: p.isIPv6),
                                                                   check: check))
                }
            }
            guard let address = SocketAddress(host: setting.address.host, port: setting.address.port, isIPv6: setting.address.isIPv6) else { continue }
            let watcher = EtcdWatcher(loop: engine.loop, address: address, authority: setting.authority, prefix: setting.prefix,
                                      timeoutMs: UInt64(setting.timeoutMs), retryMs: UInt64(setting.intervalMs), log: engine.log,
                                      upstream: u.name) { [unowned self, unowned source] set in self.update(source, to: set) }
            watcher.onFirstResult = { [unowned engine] in engine.firstAnswerCame() }
            source.watcher = watcher
            sources.append(source)
        }
        engine.pendingFirstAnswers += sources.count
    }

    func start() {
        for s in sources { s.watcher?.start() }
    }

    func stop() {
        for s in sources { s.watcher?.stop() }
    }

    private func update(_ s: Source, to set: [UpsyncPeer]) {
        let wanted = set.map {
            DynamicPeer(upstream: s.index, server: s.upstream.upsyncLine, host: $0.host, port: $0.port, isIPv6: $0.isIPv6,
                        weight: $0.weight, backup: $0.backup, maxFails: $0.maxFails, failTimeout: $0.failTimeout, down: $0.down)
        }
        let name = s.upstream.name, authority = s.setting.authority
        if engine.syncDynamicPeers(&s.peers, to: wanted, upstream: s.upstream, hostName: nil, check: { $0.down ? nil : s.upstream.check },
                                   added: { "server \($0) added to upstream \"\(name)\" from etcd at \(authority)" },
                                   removed: { "server \($0) removed from upstream \"\(name)\": no longer in etcd at \(authority)" }) {
            engine.segment.publishMembership()
        }
        dump(s, set)
    }

    /// The set as `server` lines, written whole to a temporary file renamed over the dump: a reader (an
    /// `include` at reload) never sees half of it.
    private func dump(_ s: Source, _ set: [UpsyncPeer]) {
        let path = s.setting.dumpPath
        let text = set.map(\.serverLine).joined(separator: "\n") + (set.isEmpty ? "" : "\n")
        let temporary = path + ".vigil-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            return engine.log.error("upsync: open() \"\(temporary)\" failed (\(Errno.text(errno))), upstream \"\(s.upstream.name)\"")
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            engine.log.error("upsync: writing \"\(path)\" failed (\(Errno.text(errno))), upstream \"\(s.upstream.name)\"")
            unlink(temporary)
            return
        }
    }
}

import CShim
import Config
import Core
import Etcd
import Event

/// `strong_dependency=on`, as nginx-upsync-module means it: Vigil does not start while an upstream's etcd
/// cannot be read. The master reads each such prefix once before it forks, on an event loop of its own (no
/// thread), for at most the source's upsync_timeout; the checker reads it again when it starts.
enum UpsyncStartup {
    /// Why Vigil must not start, or nil.
    static func unreadable(_ config: Configuration, log: ErrorLog) -> String? {
        for u in config.http?.upstreams ?? [] {
            guard let s = u.upsync, s.strongDependency else { continue }
            guard let loop = try? EventLoop(),
                  let address = SocketAddress(host: s.address.host, port: s.address.port, isIPv6: s.address.isIPv6) else {
                return "upsync: etcd at \(s.authority) cannot be read"
            }
            var read: Bool?
            let watcher = EtcdWatcher(loop: loop, address: address, authority: s.authority, prefix: s.prefix, timeoutMs: UInt64(s.timeoutMs),
                                      retryMs: UInt64(s.timeoutMs), log: log, upstream: u.name) { _ in }
            watcher.onFirstResult = { [unowned watcher] in read = watcher.hasSynced }
            watcher.start()
            let deadline = vigil_monotonic_ms() + UInt64(s.timeoutMs)
            while read == nil && vigil_monotonic_ms() < deadline { loop.runOnce(waitingAtMost: 100) }
            watcher.stop()
            if read != true { return "upsync: etcd at \(s.authority) cannot be read, and upstream \"\(u.name)\" has strong_dependency=on" }
        }
        return nil
    }
}

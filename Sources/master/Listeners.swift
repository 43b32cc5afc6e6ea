#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import Event
import Worker

/// The master's listening sockets by address. They survive reloads: an address kept by the new
/// configuration keeps its socket, so no connection is refused while workers change.
struct ListenerSet {
    private(set) var sockets: [ListenAddress: ListeningSocket] = [:]

    /// Opens what `config` needs that is not open yet; returns the set for that config.
    /// On failure nothing new stays open.
    mutating func prepare(for config: Configuration, log: ErrorLog) throws -> [ListeningSocket] {
        var opened: [ListenAddress] = []
        var result: [ListeningSocket] = []
        do {
            for l in config.listenAddresses {
                if let existing = sockets[l.address] {
                    result.append(ListeningSocket(fd: existing.fd, listen: l))
                    continue
                }
                let fd = try Socket.listen(host: l.address.host, port: l.address.port, isIPv6: l.address.isIPv6,
                                           backlog: l.backlog, reusePort: l.reusePort, ipv6Only: l.ipv6Only)
                ListenerSet.apply(l.options, to: fd, l.address, log)
                let s = ListeningSocket(fd: fd, listen: l)
                sockets[l.address] = s
                opened.append(l.address)
                result.append(s)
            }
        } catch {
            for a in opened { ListenerSet.close(sockets[a]!); sockets[a] = nil }
            throw error
        }
        return result
    }

    /// Closes the master's copies of sockets the current config no longer uses.
    mutating func retain(only keep: [ListeningSocket]) {
        let wanted = Set(keep.map { $0.listen.address })
        for (addr, s) in sockets where !wanted.contains(addr) {
            ListenerSet.close(s)
            sockets[addr] = nil
        }
    }

    mutating func closeAll() {
        for s in sockets.values { ListenerSet.close(s) }
        sockets.removeAll()
    }

    /// `listen`'s socket options, as nginx sets them after listen(); one that fails is an alert, not a refusal.
    private static func apply(_ o: ListenOptions, to fd: Int32, _ address: ListenAddress, _ log: ErrorLog) {
        func set(_ level: Int32, _ name: Int32, _ value: Int32?, _ what: String) {
            guard let value, !Socket.setOption(fd, level, name, value) else { return }
            log.alert("setsockopt(\(what), \(value)) \(address) failed (\(Errno.text(errno))), ignored")
        }
        set(SOL_SOCKET, SO_RCVBUF, o.receiveBuffer, "SO_RCVBUF")
        set(SOL_SOCKET, SO_SNDBUF, o.sendBuffer, "SO_SNDBUF")
        set(SOL_SOCKET, SO_KEEPALIVE, o.keepalive.map { $0 ? 1 : 0 }, "SO_KEEPALIVE")
        set(Int32(IPPROTO_TCP), TCP_KEEPIDLE, o.keepaliveIdle, "TCP_KEEPIDLE")
        set(Int32(IPPROTO_TCP), TCP_KEEPINTVL, o.keepaliveInterval, "TCP_KEEPINTVL")
        set(Int32(IPPROTO_TCP), TCP_KEEPCNT, o.keepaliveCount, "TCP_KEEPCNT")
        set(Int32(IPPROTO_TCP), TCP_FASTOPEN, o.fastOpen, "TCP_FASTOPEN")
        set(Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, o.deferred ? 1 : nil, "TCP_DEFER_ACCEPT")
    }

    /// A unix-domain socket's file goes with it, as nginx removes it, so that the next start can bind.
    private static func close(_ s: ListeningSocket) {
        Glibc.close(s.fd)
        if s.listen.address.isUnix { unlink(String(s.listen.address.host.dropFirst(5))) }
    }
}

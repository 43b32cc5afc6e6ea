#if canImport(Glibc)
import Glibc
#endif
import CShim
import Core

/// Socket helpers shared by listeners, client connections and upstream connections.
public enum Socket {
    /// The address family of a host as the configuration spells it: `unix:/path` is a unix-domain socket.
    public static func family(host: String, isIPv6: Bool) -> Int32 {
        host.hasPrefix("unix:") ? AF_UNIX : isIPv6 ? AF_INET6 : AF_INET
    }

    /// Starts a connect to `address` (the caller's socket is non-blocking): 0, or -1 with errno set.
    public static func connect(_ fd: Int32, to address: SocketAddress) -> Int32 {
        address.withSockaddr { Glibc.connect(fd, $0, $1) }
    }

    /// Binds a socket about to connect to a local address (proxy_bind); an address without a port leaves the
    /// port to connect(), so that many connections to different peers can share the address's ports.
    public static func bind(_ fd: Int32, to address: SocketAddress, portChosenAtConnect: Bool) -> Int32 {
        if portChosenAtConnect {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        return address.withSockaddr { Glibc.bind(fd, $0, $1) }
    }

    /// Holds back the handshake's last ACK so that it rides on the first data segment, and the first reply's
    /// ACK on the next one (HAProxy's `option tcp-smart-connect`): on a connection that sends a request and
    /// reads one reply, two segments of ten fewer. Only for a TCP socket, before connect(), whose caller
    /// sends as soon as it is writable: the kernel otherwise sends the ACK on its own after up to 200 ms.
    public static func delayHandshakeAck(_ fd: Int32) {
        var zero: Int32 = 0
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &zero, socklen_t(MemoryLayout<Int32>.size))
    }

    /// An integer socket option; false when the kernel refused it (errno says why).
    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
        var v = value
        return setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    /// The close that follows sends a RST and frees the socket at once, unsent data dropped (SO_LINGER 0:
    /// nginx's reset_timedout_connection), instead of lingering in FIN_WAIT with a client that is gone.
    /// A lingering close's read: drops what the peer sent; true once the peer has closed (or the socket
    /// failed), false when nothing more is there for now.
    public static func discardInput(_ fd: Int32) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 1) { scratch in
            while true {
                let n = recv(fd, scratch.baseAddress, scratch.count, 0)
                if n > 0 { continue }
                return !(n < 0 && (errno == EAGAIN || errno == EINTR))
            }
        }
    }

    public static func resetOnClose(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
    }

    /// The error a non-blocking connect() ended with (SO_ERROR; reading it clears it), 0 if none.
    public static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err
    }

    /// Opens a non-blocking listening socket; errors read like nginx's.
    public static func listen(host: String, port: UInt16, isIPv6: Bool, backlog: Int32,
                              reusePort: Bool, ipv6Only: Bool) throws -> Int32 {
        let unix = host.hasPrefix("unix:")
        let display = unix ? host : isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
        let fd = socket(family(host: host, isIPv6: isIPv6), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket() \(display)") }
        if !unix {
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
            if isIPv6 {
                var v: Int32 = ipv6Only ? 1 : 0
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &v, socklen_t(MemoryLayout<Int32>.size))
            }
        }
        let rc = SocketAddress(host: host, port: port, isIPv6: isIPv6)?.withSockaddr { Glibc.bind(fd, $0, $1) }
        guard rc == 0 else {
            let e = rc == nil ? EINVAL : errno
            close(fd)
            throw SystemError("bind() to \(display)", errno: e)
        }
        // As nginx: any local user may connect (workers run as `user`; whoever else should be kept out is
        // kept out by the directory's permissions).
        if unix && chmod(String(host.dropFirst(5)), 0o666) != 0 {
            let e = errno
            close(fd)
            throw SystemError("chmod() \"\(host.dropFirst(5))\"", errno: e)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let e = errno
            close(fd)
            throw SystemError("listen() to \(display), backlog \(backlog)", errno: e)
        }
        _ = vigil_set_nonblock(fd)
        return fd
    }
}

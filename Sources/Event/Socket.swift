#if canImport(Glibc)
import Glibc
#endif
import CShim

/// Socket helpers shared by listeners, client connections and upstream connections.
public enum Socket {
    /// Builds a sockaddr for a numeric host and port and hands it to `body`.
    public static func withSockaddr<R>(host: String, port: UInt16, isIPv6: Bool,
                                       _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R? {
        if isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, host, &sa.sin6_addr) == 1 else { return nil }
            return try withUnsafePointer(to: &sa) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &sa.sin_addr) == 1 else { return nil }
        return try withUnsafePointer(to: &sa) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Opens a non-blocking listening socket; errors read like nginx's.
    public static func listen(host: String, port: UInt16, isIPv6: Bool, backlog: Int32,
                              reusePort: Bool, ipv6Only: Bool) throws -> Int32 {
        let display = isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
        let fd = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket() \(display)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
        if isIPv6 {
            var v: Int32 = ipv6Only ? 1 : 0
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &v, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = withSockaddr(host: host, port: port, isIPv6: isIPv6) { Glibc.bind(fd, $0, $1) }
        guard rc == 0 else {
            let e = rc == nil ? EINVAL : errno
            close(fd)
            throw SystemError("bind() to \(display)", errno: e)
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

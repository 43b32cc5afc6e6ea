#if canImport(Glibc)
import Glibc
#endif

/// A peer's address in binary form, parsed once so that connecting to it again costs no `inet_pton`: a numeric
/// IPv4 or IPv6 host and port, or a `unix:/path`. In Core because the error log connects to syslog servers.
public struct SocketAddress: Sendable {
    private var storage = sockaddr_storage()
    private let length: socklen_t
    public var family: Int32 { Int32(storage.ss_family) }

    public init?(host: String, port: UInt16, isIPv6: Bool) {
        var ss = sockaddr_storage()
        guard let len = SocketAddress.withSockaddr(host: host, port: port, isIPv6: isIPv6, { sa, len in
            withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(len))) }
            return len
        }) else { return nil }
        storage = ss
        length = len
    }

    /// The sockaddr and its length, for connect() or bind().
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        try withUnsafePointer(to: storage) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) } }
    }

    /// Builds a sockaddr for a numeric host and port (or a `unix:/path`) and hands it to `body`.
    private static func withSockaddr<R>(host: String, port: UInt16, isIPv6: Bool,
                                        _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R? {
        if host.hasPrefix("unix:") {
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            let path = Array(host.utf8.dropFirst(5))
            guard !path.isEmpty, path.count < MemoryLayout.size(ofValue: sa.sun_path) else { return nil }
            withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: path) }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + 1)
            return try withUnsafePointer(to: &sa) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
            }
        }
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
}

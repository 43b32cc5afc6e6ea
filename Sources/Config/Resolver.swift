#if canImport(Glibc)
import Glibc
#endif

/// Turns a host into numeric addresses once, at load time (as nginx does for upstream servers and listens).
public enum Resolver {
    /// Off only in tests (the config fuzzer): a name that is not a numeric address is then "not found" at
    /// once instead of waiting on DNS, whose timeouts would make a fuzzing run slow and its timing flaky.
    nonisolated(unsafe) static var looksUpNames = true

    public static func resolve(host: String, port: UInt16) -> [PeerAddress]? {
        // getaddrinfo would stop at a NUL and resolve only the part before it.
        if host.utf8.contains(0) { return nil }
        if !looksUpNames && !isNumeric(host) { return nil }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = isNumeric(host) ? AI_NUMERICHOST : AI_ADDRCONFIG
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &res) == 0, let first = res else { return nil }
        defer { freeaddrinfo(first) }
        var out: [PeerAddress] = []
        var cur: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cur {
            if let text = numericHost(ai.pointee.ai_addr) {
                let a = PeerAddress(host: text, port: port, isIPv6: ai.pointee.ai_family == AF_INET6)
                if !out.contains(a) { out.append(a) }
            }
            cur = ai.pointee.ai_next
        }
        return out
    }

    public static func isNumericAddress(_ host: String) -> Bool { isNumeric(host) }

    static func isNumeric(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    static func numericHost(_ sa: UnsafePointer<sockaddr>?) -> String? {
        guard let sa else { return nil }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p -> String? in
                var addr = p.pointee.sin_addr
                guard inet_ntop(AF_INET, &addr, &buf, socklen_t(buf.count)) != nil else { return nil }
                return String(cString: buf)
            }
        case AF_INET6:
            return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p -> String? in
                var addr = p.pointee.sin6_addr
                guard inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count)) != nil else { return nil }
                return String(cString: buf)
            }
        default:
            return nil
        }
    }

    /// `host[:port]` with the port checked (`defaultPort` when absent); nil for an empty host or a bad port.
    public static func hostAndPort(_ s: String, defaultPort: UInt16) -> (host: String, port: UInt16)? {
        guard let hp = splitHostPort(s), !hp.host.isEmpty else { return nil }
        guard let text = hp.port else { return (hp.host, defaultPort) }
        return Values.port(text).map { (hp.host, $0) }
    }

    /// Splits `host[:port]`, `[v6][:port]`, `*:port` or a bare port; nil port when absent.
    public static func splitHostPort(_ s: String) -> (host: String, port: String?)? {
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            let host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            if rest.isEmpty { return (host, nil) }
            guard rest.hasPrefix(":") else { return nil }
            return (host, String(rest.dropFirst()))
        }
        if let colon = s.lastIndex(of: ":") {
            return (String(s[..<colon]), String(s[s.index(after: colon)...]))
        }
        return (s, nil)
    }
}

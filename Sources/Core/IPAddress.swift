#if canImport(Glibc)
import Glibc
#endif

/// Numeric IP addresses, as nginx's access, realip and geo modules read them.
public enum IPAddress {
    /// A numeric IPv4 or IPv6 address's 4 or 16 bytes.
    public static func bytes(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        guard text.count < 64 else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf -> [UInt8]? in
            for (i, c) in text.enumerated() { buf[i] = CChar(bitPattern: c) }
            buf[text.count] = 0
            var v4 = in_addr(), v6 = in6_addr()
            if inet_pton(AF_INET, buf.baseAddress, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
            if inet_pton(AF_INET6, buf.baseAddress, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
            return nil
        }
    }

    public static func bytes(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }
}

/// A network as `allow`, `deny`, `set_real_ip_from` and geo's `proxy` name it: its 4 or 16 bytes and prefix length, or no
/// bytes for `unix:` (the clients of unix-domain listeners, whose address has none).
public struct CIDR: Sendable, Equatable {
    public var bytes: [UInt8]
    public var prefix: Int

    public init(bytes: [UInt8], prefix: Int) {
        self.bytes = bytes
        self.prefix = prefix
    }

    /// Whether `addr` (4 or 16 bytes, none for a unix-domain client) is in the network.
    public func contains(_ addr: [UInt8]) -> Bool {
        guard bytes.count == addr.count else { return false }
        var bits = prefix
        for i in 0..<bytes.count where bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xFF : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if bytes[i] & mask != addr[i] & mask { return false }
            bits -= 8
        }
        return true
    }

    /// Whether the bits past the prefix are all zero (nginx warns "low address bits of … are meaningless").
    public var hostBitsZero: Bool {
        for (i, byte) in bytes.enumerated() {
            let keep = max(0, prefix - i * 8)
            if keep >= 8 { continue }
            let mask: UInt8 = keep == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
            if byte & ~mask != 0 { return false }
        }
        return true
    }
}

/// The address a trusted client forwards for (nginx's ngx_http_get_forwarded_addr), as realip and geo's
/// `proxy` take it from X-Forwarded-For or the PROXY protocol.
public enum ForwardedAddress {
    /// ngx_http_get_forwarded_addr: from the peer (`addr`), while it is trusted, the address the last value
    /// names — the last of a list, and with `recursive` the one before it while that one is trusted too —
    /// going back through `values` (the header's lines in order) from the last one with `recursive`.
    public static func find(_ addr: [UInt8], _ values: [UnsafeRawBufferPointer], _ trusted: [CIDR], recursive: Bool) -> (bytes: [UInt8], port: UInt16)? {
        var current: (bytes: [UInt8], port: UInt16) = (addr, 0)
        var found = false
        for value in values.reversed() {
            switch walk(value, &current, trusted, recursive: recursive) {
            case .declined:
                return found ? current : nil
            case .done:
                return current
            case .ok:
                found = true
                if !recursive { return current }
            }
        }
        return found ? current : nil
    }

    private enum Walk { case declined, done, ok }

    /// ngx_http_get_forwarded_addr_internal on one value: its addresses from the last, each taken while the
    /// address before it is trusted.
    private static func walk(_ xff: UnsafeRawBufferPointer, _ addr: inout (bytes: [UInt8], port: UInt16), _ trusted: [CIDR],
                             recursive: Bool) -> Walk {
        func separator(_ c: UInt8) -> Bool { c == 0x20 || c == UInt8(ascii: ",") }
        var length = xff.count
        var p = 0
        var found = false
        repeat {
            guard isTrusted(addr.bytes, trusted) else { return found ? .done : .declined }
            // The last address: separators after it dropped, up to the separator before it.
            p = length - 1
            while p > 0 && separator(xff[p]) { p -= 1; length -= 1 }
            while p > 0 {
                if separator(xff[p]) { p += 1; break }
                p -= 1
            }
            guard p >= 0, let parsed = parseAddressAndPort(UnsafeRawBufferPointer(rebasing: xff[p..<length])) else {
                return found ? .done : .declined
            }
            addr = parsed
            found = true
            length = p - 1
        } while recursive && p > 0
        return .ok
    }

    /// ngx_cidr_match: an IPv4-mapped IPv6 address is matched as the IPv4 address it holds.
    public static func isTrusted(_ addr: [UInt8], _ trusted: [CIDR]) -> Bool {
        if addr.count == 16 && addr[0..<10].allSatisfy({ $0 == 0 }) && addr[10] == 0xFF && addr[11] == 0xFF {
            let v4 = Array(addr[12...])
            return trusted.contains { $0.contains(v4) }
        }
        return trusted.contains { $0.contains(addr) }
    }

    /// ngx_parse_addr_port: an address, `IPv4:port` or `[IPv6]:port` (a port from 1 to 65535).
    public static func parseAddressAndPort(_ text: UnsafeRawBufferPointer) -> (bytes: [UInt8], port: UInt16)? {
        if let bytes = IPAddress.bytes(text) { return (bytes, 0) }
        let hostEnd: Int, portStart: Int, hostStart: Int
        if text.first == UInt8(ascii: "[") {
            guard let close = text.firstIndex(of: UInt8(ascii: "]")), close + 1 < text.count, text[close + 1] == UInt8(ascii: ":") else {
                return nil
            }
            (hostStart, hostEnd, portStart) = (1, close, close + 2)
        } else {
            guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            (hostStart, hostEnd, portStart) = (0, colon, colon + 1)
        }
        var port = 0
        for c in text[portStart...] {
            guard c >= 0x30 && c <= 0x39, port <= 65535 else { return nil }
            port = port * 10 + Int(c - 0x30)
        }
        guard portStart < text.count, port >= 1, port <= 65535,
              let bytes = IPAddress.bytes(UnsafeRawBufferPointer(rebasing: text[hostStart..<hostEnd])) else { return nil }
        return (bytes, UInt16(port))
    }
}

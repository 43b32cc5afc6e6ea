#if canImport(Glibc)
import Glibc
#endif
import Config
import HTTP

/// An address realip put in the client's place: as nginx prints it, its bytes, and its port (0: none).
public final class RealAddress {
    public let text: String
    public let bytes: [UInt8]
    public let port: UInt16

    init(bytes: [UInt8], port: UInt16) {
        self.bytes = bytes
        self.port = port
        text = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
            bytes.withUnsafeBytes { _ = inet_ntop(bytes.count == 16 ? AF_INET6 : AF_INET, $0.baseAddress, buf.baseAddress, 64) }
            return String(cString: buf.baseAddress!)
        }
    }
}

/// nginx's realip module: when the client's peer is trusted (`set_real_ip_from`), the address it names in
/// `real_ip_header` (or the PROXY protocol's) becomes the client's for the rest of the request. As nginx, it
/// runs in the post-read phase with the server's settings and again before the access phase with the
/// location's, and the first address found stands for the whole request.
enum RealIP {
    /// nginx's post-read phase: before the server's rewrite script (and the body size check).
    static func postRead(_ r: RequestContext) {
        guard r.service.config.http?.usesRealIP == true else { return }
        find(r, r.service.scope(server: r.server, location: nil).settings.realIP)
    }

    /// nginx's preaccess phase: the location the request ended in, when no earlier phase found an address.
    static func preAccess(_ r: RequestContext) {
        guard r.service.config.http?.usesRealIP == true else { return }
        find(r, r.settings.realIP)
    }

    private static func find(_ r: RequestContext, _ s: RealIPSettings) {
        let client = r.client
        guard !s.from.isEmpty, client.realAddress == nil else { return }
        let peer = client.addressBytes
        let found: (bytes: [UInt8], port: UInt16)?
        switch s.header {
        case .proxyProtocol:
            guard let pp = client.proxyProtocol else { return }
            found = Array(pp.sourceAddress.utf8).withUnsafeBytes { forwarded(peer, [$0], s.from, recursive: s.recursive) }
                .map { ($0.bytes, pp.sourcePort) }
        case .forwardedFor:
            found = r.head.withFields { block, fields in
                let values = fields.lazy.filter { RequestParser.matches(block[$0.name], lowercase: "x-forwarded-for") }
                    .map { UnsafeRawBufferPointer(rebasing: block[$0.value]) }
                return values.isEmpty ? nil : forwarded(peer, Array(values), s.from, recursive: s.recursive)
            }
        case .field(let name):
            found = r.withHeader(name) { forwarded(peer, [$0], s.from, recursive: s.recursive) } ?? nil
        }
        if let found { client.realAddress = RealAddress(bytes: found.bytes, port: found.port) }
    }

    /// ngx_http_get_forwarded_addr: from the peer (`addr`), while it is trusted, the address the last value
    /// names — the last of a list, and with `recursive` the one before it while that one is trusted too —
    /// going back through `values` (the header's lines in order) from the last one with `recursive`.
    static func forwarded(_ addr: [UInt8], _ values: [UnsafeRawBufferPointer], _ trusted: [CIDR], recursive: Bool) -> (bytes: [UInt8], port: UInt16)? {
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
    static func isTrusted(_ addr: [UInt8], _ trusted: [CIDR]) -> Bool {
        if addr.count == 16 && addr[0..<10].allSatisfy({ $0 == 0 }) && addr[10] == 0xFF && addr[11] == 0xFF {
            let v4 = Array(addr[12...])
            return trusted.contains { $0.contains(v4) }
        }
        return trusted.contains { $0.contains(addr) }
    }

    /// ngx_parse_addr_port: an address, `IPv4:port` or `[IPv6]:port` (a port from 1 to 65535).
    static func parseAddressAndPort(_ text: UnsafeRawBufferPointer) -> (bytes: [UInt8], port: UInt16)? {
        if let bytes = parseAddress(text) { return (bytes, 0) }
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
              let bytes = parseAddress(UnsafeRawBufferPointer(rebasing: text[hostStart..<hostEnd])) else { return nil }
        return (bytes, UInt16(port))
    }

    /// A numeric IPv4 or IPv6 address's bytes.
    static func parseAddress(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
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
}

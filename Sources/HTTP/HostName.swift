import Core

/// The rules for a Host header and an absolute form's host. They are those of nginx 1.29.4, which are stricter
/// than 1.22's: RFC 3986's reg-name (letters, digits, "-", ".", "_", "~", sub-delims, "%") or an IP literal in
/// brackets, no "..", then an optional ":" and a port of at most 65535. nginx 1.22 also passes a "\" (which
/// browsers read as "/" in a redirect built from the host), spaces inside literals, bytes past ASCII and junk
/// after the port.
public enum HostName {
    /// The name a valid host stands for, as nginx matches server names and sets `$host`: lowercased, without its
    /// port and a trailing dot ("Example.COM.:80" is "example.com", "[::1]:80" is "[::1]").
    public static func serverName(_ host: String) -> String {
        host.withUTF8Bytes { u in
            guard let end = asciiNameEnd(u) else { return unicodeServerName(host) }
            // The usual Host (lowercase, no port, no trailing dot) is its own name: no copy.
            if end == u.count && !u.contains(where: isUpper) { return host }
            return String(unsafeUninitializedCapacity: end) { out in
                for i in 0..<end { out[i] = lower(u[i]) }
                return end
            }
        }
    }

    /// The same name as `serverName`, appended to `out`.
    public static func appendServerName(_ host: String, to out: OutputQueue) {
        host.withUTF8Bytes { u in
            guard let end = asciiNameEnd(u) else { return out.append(unicodeServerName(host)) }
            _ = out.append(upTo: end) { p in
                for i in 0..<end { p.storeBytes(of: lower(u[i]), toByteOffset: i, as: UInt8.self) }
                return end
            }
        }
    }

    /// Where an ASCII host's name ends: before the port (after an IP literal's "]") and a trailing dot; nil for a
    /// host with bytes past ASCII, which Unicode rules lowercase.
    private static func asciiNameEnd(_ u: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !u.contains(where: { $0 >= 0x80 }) else { return nil }
        if u.first == UInt8(ascii: "[") { return u.firstIndex(of: UInt8(ascii: "]")).map { $0 + 1 } ?? u.count }
        var end = u.firstIndex(of: UInt8(ascii: ":")) ?? u.count
        if end > 0 && u[end - 1] == UInt8(ascii: ".") { end -= 1 }
        return end
    }

    @inline(__always) private static func isUpper(_ c: UInt8) -> Bool { c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") }
    @inline(__always) private static func lower(_ c: UInt8) -> UInt8 { isUpper(c) ? c | 0x20 : c }

    private static func unicodeServerName(_ host: String) -> String {
        var h = host.lowercased()
        if h.hasPrefix("[") { return String(h.prefix(while: { $0 != "]" })) + "]" }
        if let c = h.firstIndex(of: ":") { h = String(h[..<c]) }
        if h.hasSuffix(".") { h.removeLast() }
        return h
    }

    static func isValid(_ buf: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        enum Part { case start, name, literal, afterLiteral, port }
        var part = Part.start
        var nameLength = range.count
        var lastDot = -2
        var port = 0
        for i in range {
            let c = buf[i]
            switch part {
            case .start where c == UInt8(ascii: "["):
                part = .literal
                continue
            case .start, .name:
                part = .name
                if c == UInt8(ascii: ":") {
                    nameLength = i - range.lowerBound
                    part = .port
                    continue
                }
                guard isNameByte(c) || c == UInt8(ascii: "%") else { return false }
            case .literal:
                if c == UInt8(ascii: "]") {
                    nameLength = i + 1 - range.lowerBound
                    part = .afterLiteral
                    continue
                }
                guard isLiteralByte(c) else { return false }
            case .afterLiteral:
                guard c == UInt8(ascii: ":") else { return false }
                part = .port
                continue
            case .port:
                guard let d = RequestLine.digit(c), port * 10 + d <= 65535 else { return false }
                port = port * 10 + d
                continue
            }
            if c == UInt8(ascii: ".") {
                if lastDot == i - 1 { return false }
                lastDot = i
            }
        }
        if part == .literal { return false }
        // A name's trailing dot is not part of it: "example.com." is "example.com", and "." is empty.
        if lastDot == range.lowerBound + nameLength - 1 { nameLength -= 1 }
        return nameLength > 0
    }

    /// Letters, digits, unreserved and sub-delims: what a name and an IP literal are made of (":" too in a literal).
    @inline(__always) static func isNameByte(_ c: UInt8) -> Bool {
        if RequestLine.isLetter(c) || RequestLine.digit(c) != nil { return true }
        switch c {
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
             UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }

    @inline(__always) static func isLiteralByte(_ c: UInt8) -> Bool { isNameByte(c) || c == UInt8(ascii: ":") }
}

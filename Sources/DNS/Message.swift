/// DNS messages as RFC 1035 writes them: a query for one name, and the parts of a reply a resolver of
/// upstream names needs (A and AAAA records, CNAMEs, the lowest TTL). Parsing never trusts a length or a
/// compression pointer: a reply that does not add up is `.malformed`, never a crash or a loop.
public enum RecordType: UInt16, Sendable {
    case a = 1, cname = 5, aaaa = 28, srv = 33
}

/// An SRV record (RFC 2782): where a service runs, and how to choose among its targets.
public struct ServiceRecord: Hashable, Sendable {
    public let priority: UInt16
    public let weight: UInt16
    public let port: UInt16
    public let target: String
}

/// An address a name resolved to, in the numeric text the rest of Vigil connects with.
public struct ResolvedAddress: Hashable, Sendable {
    public let host: String
    public let isIPv6: Bool
}

/// nginx's resolver error codes: the DNS rcodes, and 110 for a timeout.
public struct ResolveError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int
    public static let formatError = ResolveError(code: 1)
    public static let serverFailure = ResolveError(code: 2)
    public static let hostNotFound = ResolveError(code: 3)
    public static let timedOut = ResolveError(code: 110)

    /// `3: Host not found`, as nginx's `… could not be resolved (3: Host not found)`.
    public var description: String {
        let text: String
        switch code {
        case 1: text = "Format error"
        case 2: text = "Server failure"
        case 3: text = "Host not found"
        case 4: text = "Unimplemented"
        case 5: text = "Operation refused"
        case 110: text = "Operation timed out"
        default: text = "Unknown error"
        }
        return "\(code): \(text)"
    }
}

public enum Query {
    /// A recursive query for `name` (the caller checked it with `isValidName`).
    public static func encode(id: UInt16, name: String, type: RecordType) -> [UInt8] {
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: true) {
            out.append(UInt8(label.count))
            out.append(contentsOf: label)
        }
        out += [0, UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xFF), 0, 1]
        return out
    }

    /// Labels of 1…63 bytes (a final dot allowed): anything else cannot be asked. Like nginx, no limit on
    /// the whole name: servers answer names past RFC 1035's 255 bytes, and nginx asks for them.
    public static func isValidName(_ name: String) -> Bool {
        var bytes = Array(name.utf8)
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        guard !bytes.isEmpty else { return false }
        return bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).allSatisfy { (1...63).contains($0.count) }
    }
}

/// What a reply says about the question it answers.
public struct Reply: Equatable, Sendable {
    public enum Outcome: Equatable, Sendable {
        /// The server set TC: the full answer needs TCP.
        case truncated
        /// An rcode other than 0 (3 is NXDOMAIN).
        case failed(Int)
        /// Addresses of the name (possibly none) and the CNAME it led to when the reply stops there.
        case answered(addresses: [ResolvedAddress], ttl: UInt32, cname: String?)
        /// The SRV records of the name (possibly none), for a question of type SRV.
        case services([ServiceRecord], ttl: UInt32)
    }

    public enum ParseError: Error, Equatable { case malformed, notOurs }

    public let id: UInt16
    public let outcome: Outcome

    /// Just the id, to find the query a datagram answers before parsing it against that query.
    public static func id(of bytes: [UInt8]) -> UInt16? {
        bytes.count >= 12 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil
    }

    /// Parses a reply to the query (`id`, `name`, `type`): `.notOurs` when it answers something else (a late
    /// or spoofed datagram, which the caller drops), `.malformed` when it does not parse.
    public static func parse(_ bytes: [UInt8], id: UInt16, name: String, type: RecordType) throws -> Reply {
        var r = Reader(bytes: bytes)
        guard bytes.count >= 12 else { throw ParseError.malformed }
        let gotID = try r.u16()
        let flags = try r.u16()
        let qd = try r.u16(), an = try r.u16()
        _ = try r.u16(); _ = try r.u16()
        guard gotID == id, flags & 0x8000 != 0, (flags >> 11) & 0xF == 0 else { throw ParseError.notOurs }
        if flags & 0x0200 != 0 { return Reply(id: id, outcome: .truncated) }
        let rcode = Int(flags & 0xF)
        guard qd == 1 else { throw rcode != 0 && qd == 0 ? ParseError.notOurs : ParseError.malformed }
        let qname = try r.name()
        let qtype = try r.u16(), qclass = try r.u16()
        guard equalNames(qname, name), qtype == type.rawValue, qclass == 1 else { throw ParseError.notOurs }
        if rcode != 0 { return Reply(id: id, outcome: .failed(rcode)) }

        // Records of the name, or of the CNAME chain it starts (in the order servers send them).
        var owners = [trimmed(name).lowercased()]
        var addresses: [ResolvedAddress] = []
        var ttl = UInt32.max
        var cname: String?
        var services: [ServiceRecord] = []
        for _ in 0..<an {
            let owner = try r.name().lowercased()
            let rtype = try r.u16(), rclass = try r.u16()
            let recordTTL = try r.u32()
            let length = Int(try r.u16())
            let rdata = try r.take(length)
            guard rclass == 1, owners.contains(trimmed(owner)) else { continue }
            switch rtype {
            case RecordType.a.rawValue where type == .a:
                guard length == 4 else { throw ParseError.malformed }
                addresses.append(ResolvedAddress(host: rdata.map(String.init).joined(separator: "."), isIPv6: false))
                ttl = min(ttl, recordTTL)
            case RecordType.aaaa.rawValue where type == .aaaa:
                guard length == 16 else { throw ParseError.malformed }
                addresses.append(ResolvedAddress(host: ipv6Text(Array(rdata)), isIPv6: true))
                ttl = min(ttl, recordTTL)
            case RecordType.srv.rawValue where type == .srv:
                guard length >= 7 else { throw ParseError.malformed }
                let d = Array(rdata)
                // The target is read where it stands (servers should not compress it; some do).
                var inner = r
                inner.position -= length - 6
                let target = trimmed(try inner.name()).lowercased()
                services.append(ServiceRecord(priority: UInt16(d[0]) << 8 | UInt16(d[1]), weight: UInt16(d[2]) << 8 | UInt16(d[3]),
                                              port: UInt16(d[4]) << 8 | UInt16(d[5]), target: target))
                ttl = min(ttl, recordTTL)
            case RecordType.cname.rawValue:
                // The target may be compressed against the whole message: read it where it stands.
                var inner = r
                inner.position -= length
                let target = trimmed(try inner.name()).lowercased()
                guard owners.count < 16 else { throw ParseError.malformed }
                owners.append(target)
                cname = target
                ttl = min(ttl, recordTTL)
            default:
                continue
            }
        }
        if type == .srv { return Reply(id: id, outcome: .services(services, ttl: ttl == .max ? 0 : ttl)) }
        return Reply(id: id, outcome: .answered(addresses: addresses, ttl: ttl == .max ? 0 : ttl,
                                                cname: addresses.isEmpty ? cname : nil))
    }

    static func trimmed(_ s: String) -> String { s.hasSuffix(".") ? String(s.dropLast()) : s }

    static func equalNames(_ a: String, _ b: String) -> Bool { trimmed(a).lowercased() == trimmed(b).lowercased() }

    /// RFC 5952 text: lowercase hex, the longest run of zero groups (two or more) as `::`.
    static func ipv6Text(_ b: [UInt8]) -> String {
        let groups = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
        var bestStart = -1, bestLength = 1, i = 0
        while i < 8 {
            guard groups[i] == 0 else { i += 1; continue }
            var j = i
            while j < 8 && groups[j] == 0 { j += 1 }
            if j - i > bestLength { bestStart = i; bestLength = j - i }
            i = j
        }
        func hex(_ range: Range<Int>) -> String { range.map { String(groups[$0], radix: 16) }.joined(separator: ":") }
        guard bestStart >= 0 else { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

/// A cursor over a message that throws instead of reading past its end.
struct Reader {
    let bytes: [UInt8]
    var position = 0

    mutating func u16() throws -> UInt16 {
        guard position + 2 <= bytes.count else { throw Reply.ParseError.malformed }
        defer { position += 2 }
        return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
    }

    mutating func u32() throws -> UInt32 {
        UInt32(try u16()) << 16 | UInt32(try u16())
    }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, position + n <= bytes.count else { throw Reply.ParseError.malformed }
        defer { position += n }
        return bytes[position..<position + n]
    }

    /// A name, following compression pointers (each must point backwards), at most 128 labels and
    /// pointers in all as nginx allows: enough for any real name, and a pointer loop ends there.
    mutating func name() throws -> String {
        var labels: [String] = []
        var at = position
        var jumped = false
        for _ in 0..<128 {
            guard at < bytes.count else { throw Reply.ParseError.malformed }
            let length = Int(bytes[at])
            if length & 0xC0 == 0xC0 {
                guard at + 1 < bytes.count else { throw Reply.ParseError.malformed }
                let target = (length & 0x3F) << 8 | Int(bytes[at + 1])
                guard target < at else { throw Reply.ParseError.malformed }
                if !jumped { position = at + 2; jumped = true }
                at = target
                continue
            }
            guard length & 0xC0 == 0 else { throw Reply.ParseError.malformed }
            if length == 0 {
                if !jumped { position = at + 1 }
                return labels.joined(separator: ".")
            }
            guard at + 1 + length <= bytes.count else { throw Reply.ParseError.malformed }
            labels.append(String(decoding: bytes[(at + 1)...(at + length)], as: UTF8.self))
            at += 1 + length
        }
        throw Reply.ParseError.malformed
    }
}

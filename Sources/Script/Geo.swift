#if canImport(Glibc)
import Glibc
#endif

/// `geo [$address] $variable { … }`: a value by the client's address (or another variable's), from networks
/// (the longest prefix that holds the address, IPv4 and IPv6) or, with `ranges`, from IPv4 ranges (a later range
/// overrides the earlier ones it overlaps); `default` otherwise. `proxy` networks are trusted to say, in
/// X-Forwarded-For, whom they forward for (`proxy_recursive`: past trusted addresses there too).
public final class Geo: ComputedVariable {
    public let source: Template?
    public var defaultValue = ""
    public var usesRanges = false
    public var proxyRecursive = false
    public var volatile: Bool { false }
    /// By family (IPv4 or not), then prefix length; the lengths longest first.
    private var networks: [Bool: [Int: [UInt128: String]]] = [:]
    private var prefixLengths: [Bool: [Int]] = [:]
    /// `ranges`, as nginx keeps them: by the address's high 16 bits, each bucket's pieces (low 16 bits) in order.
    private var buckets: [UInt16: [(start: UInt16, end: UInt16, value: String)]] = [:]
    private var proxies: [Network] = []

    /// nil: `$remote_addr`.
    public init(source: Template?) { self.source = source }

    public struct Network: Equatable {
        public let address: UInt128
        /// Out of 128 (an IPv4 network's plus 96: its address is in the low 32 bits).
        public let length: Int
        public let isV4: Bool
    }

    /// `addr` or `addr/bits`, IPv4 or IPv6; nil for anything else.
    public static func network(_ text: String) -> Network? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let (address, isV4) = parse(String(parts[0])) else { return nil }
        let width = isV4 ? 32 : 128
        var bits = width
        if parts.count == 2 {
            guard let b = Int(parts[1]), (0...width).contains(b) else { return nil }
            bits = b
        }
        let length = bits + (isV4 ? 96 : 0)
        return Network(address: mask(address, length), length: length, isV4: isV4)
    }

    public func add(_ n: Network, value: String) {
        if networks[n.isV4]?[n.length] == nil {
            prefixLengths[n.isV4, default: []].append(n.length)
            prefixLengths[n.isV4]!.sort(by: >)
        }
        networks[n.isV4, default: [:]][n.length, default: [:]][n.address] = value
    }

    /// False when no such network was added.
    public func delete(_ n: Network) -> Bool { networks[n.isV4]?[n.length]?.removeValue(forKey: n.address) != nil }

    public func addProxy(_ n: Network) { proxies.append(n) }

    /// `start-end` IPv4 addresses, in order.
    public static func range(_ text: String) -> (UInt32, UInt32)? {
        let parts = text.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let (s, v4s) = parse(String(parts[0])), let (e, v4e) = parse(String(parts[1])), v4s, v4e else { return nil }
        let (start, end) = (UInt32(truncatingIfNeeded: s), UInt32(truncatingIfNeeded: e))
        return start <= end ? (start, end) : nil
    }

    /// A later range overrides what it overlaps (split around it), as nginx's ranges. As nginx, a range is kept in
    /// pieces that do not cross a /16 boundary, and `delete` removes pieces exactly.
    public func add(range: (UInt32, UInt32), value: String) {
        Geo.forEachPiece(range) { high, start, end in
            var pieces = buckets[high] ?? []
            var kept: [(start: UInt16, end: UInt16, value: String)] = []
            for x in pieces {
                if x.end < start || x.start > end { kept.append(x); continue }
                if x.start < start { kept.append((x.start, start - 1, x.value)) }
                if x.end > end { kept.append((end + 1, x.end, x.value)) }
            }
            pieces = kept
            pieces.insert((start, end, value), at: pieces.firstIndex { $0.start > start } ?? pieces.count)
            buckets[high] = pieces
        }
    }

    /// `delete start-end`: the pieces that are exactly these go; false when some piece was not there (nginx's
    /// warning).
    public func delete(range: (UInt32, UInt32)) -> Bool {
        var all = true
        Geo.forEachPiece(range) { high, start, end in
            if let i = buckets[high]?.firstIndex(where: { $0.start == start && $0.end == end }) {
                buckets[high]!.remove(at: i)
            } else {
                all = false
            }
        }
        return all
    }

    /// The range cut at /16 boundaries: each piece's high 16 bits and its low bounds.
    private static func forEachPiece(_ r: (UInt32, UInt32), _ body: (UInt16, UInt16, UInt16) -> Void) {
        var start = r.0
        while true {
            let end = min(r.1, start | 0xffff)
            body(UInt16(start >> 16), UInt16(truncatingIfNeeded: start), UInt16(truncatingIfNeeded: end))
            if end == r.1 { return }
            start = end + 1
        }
    }

    public func evaluate(_ ctx: ScriptContext) -> String {
        var text = source?.render(ctx) ?? ctx.value(.remoteAddr) ?? ""
        if !proxies.isEmpty, source == nil, let forwarded = ctx.value(.httpHeader("x-forwarded-for")) {
            text = forwardedAddress(text, forwarded)
        }
        // As nginx: what is not an address is looked up as 255.255.255.255, an IPv4-mapped one as its IPv4.
        let (address, isV4) = Geo.parse(text).map(Geo.unmapped) ?? (UInt128(0xffff_ffff), true)
        if usesRanges {
            guard isV4 else { return defaultValue }
            let a = UInt32(truncatingIfNeeded: address), low = UInt16(truncatingIfNeeded: a)
            return buckets[UInt16(a >> 16)]?.first { $0.start <= low && low <= $0.end }?.value ?? defaultValue
        }
        for length in prefixLengths[isV4] ?? [] {
            if let v = networks[isV4]?[length]?[Geo.mask(address, length)] { return v }
        }
        return defaultValue
    }

    /// nginx's ngx_http_get_forwarded_addr: a trusted client's rightmost X-Forwarded-For address, and with
    /// proxy_recursive the first one from the right that is not trusted itself.
    private func forwardedAddress(_ client: String, _ forwarded: String) -> String {
        var current = client
        var list = forwarded.split(separator: ",").map { $0.trimmingCharacters(in: " ") }
        while trusted(current), let last = list.popLast() {
            guard Geo.parse(last) != nil else { return current }
            current = last
            if !proxyRecursive { break }
        }
        return current
    }

    private func trusted(_ text: String) -> Bool {
        guard let (a, isV4) = Geo.parse(text).map(Geo.unmapped) else { return false }
        return proxies.contains { $0.isV4 == isV4 && Geo.mask(a, $0.length) == $0.address }
    }

    /// An address as 128 bits (IPv4 in the low 32), and whether it is IPv4.
    static func parse(_ text: String) -> (UInt128, Bool)? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return (UInt128(UInt32(bigEndian: v4.s_addr)), true) }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        return (bytes.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }, false)
    }

    /// ::ffff:a.b.c.d is a.b.c.d.
    static func unmapped(_ a: (UInt128, Bool)) -> (UInt128, Bool) {
        !a.1 && a.0 >> 32 == 0xffff ? (a.0 & 0xffff_ffff, true) : a
    }

    static func mask(_ a: UInt128, _ length: Int) -> UInt128 {
        length == 0 ? 0 : length >= 128 ? a : a & ~((UInt128(1) << (128 - length)) - 1)
    }
}

private extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}

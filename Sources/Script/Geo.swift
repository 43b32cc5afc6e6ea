import Core

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
    private var proxies: [CIDR] = []

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
        guard let (address, isV4) = IPAddress.bytes(String(parts[0])).map(value) else { return nil }
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

    public func addProxy(_ n: CIDR) { proxies.append(n) }

    /// `start-end` IPv4 addresses, in order.
    public static func range(_ text: String) -> (UInt32, UInt32)? {
        let parts = text.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let s = IPAddress.bytes(String(parts[0])).map(value), let e = IPAddress.bytes(String(parts[1])).map(value),
              s.1, e.1 else { return nil }
        let (start, end) = (UInt32(truncatingIfNeeded: s.0), UInt32(truncatingIfNeeded: e.0))
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
        var bytes = IPAddress.bytes(source?.render(ctx) ?? ctx.value(.remoteAddr) ?? "")
        // A trusted client's X-Forwarded-For (its fields, joined in order) names the address, as realip's does.
        if !proxies.isEmpty, source == nil, var forwarded = ctx.value(.httpHeader("x-forwarded-for")),
           let found = forwarded.withUTF8({ ForwardedAddress.find(bytes ?? [], [UnsafeRawBufferPointer($0)], proxies, recursive: proxyRecursive) }) {
            bytes = found.bytes
        }
        // As nginx: what is not an address is looked up as 255.255.255.255, an IPv4-mapped one as its IPv4.
        let (address, isV4) = bytes.map { Geo.unmapped(Geo.value($0)) } ?? (UInt128(0xffff_ffff), true)
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

    /// An address's 4 or 16 bytes as 128 bits (IPv4 in the low 32), and whether it is IPv4.
    static func value(_ bytes: [UInt8]) -> (UInt128, Bool) {
        (bytes.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }, bytes.count == 4)
    }

    /// ::ffff:a.b.c.d is a.b.c.d.
    static func unmapped(_ a: (UInt128, Bool)) -> (UInt128, Bool) {
        !a.1 && a.0 >> 32 == 0xffff ? (a.0 & 0xffff_ffff, true) : a
    }

    static func mask(_ a: UInt128, _ length: Int) -> UInt128 {
        length == 0 ? 0 : length >= 128 ? a : a & ~((UInt128(1) << (128 - length)) - 1)
    }
}

extension UpstreamBalancer {
    /// nginx's `hash` (non-consistent), Cache::Memcached's placement: the key goes to the peer at
    /// `((crc32(key) >> 16) & 0x7fff) % total weight`; on a miss the next try adds
    /// `(crc32(tries ++ key) >> 16) & 0x7fff` to that sum, 21 tries in all, then round robin takes over.
    func keyHash(_ key: String, now: UInt64, tried: [Peer]) -> Peer? {
        guard !primaries.isEmpty else { return nil }
        var sum: UInt64 = 0
        for rehash in 0...20 {
            var crc = CRC32.start
            if rehash > 0 { crc = CRC32.update(crc, String(rehash).utf8) }
            crc = CRC32.update(crc, key.utf8)
            sum += UInt64((CRC32.finish(crc) >> 16) & 0x7fff)
            let p = primary(atWeight: Int(sum % UInt64(totalWeight)))
            if usable(p, now: now, tried: tried) { return chosen(p, now: now) }
        }
        return nil
    }
}

/// nginx's `hash … consistent`: 160 × weight points per server, each
/// crc32(HOST \0 PORT PREV_HASH) — the placement of Cache::Memcached::Fast, so keys land where nginx puts them.
struct ConsistentHashRing {
    private(set) var points: [(hash: UInt32, server: String)] = []

    init(_ peers: [Peer]) {
        for peer in peers {
            let text = Array(peer.serverText.utf8)
            // Split a trailing ":digits" off as the port; the rest is the host.
            var host = text[...], port = text[text.endIndex...]
            if let colon = text.lastIndex(of: UInt8(ascii: ":")), text[(colon + 1)...].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                host = text[..<colon]
                port = text[(colon + 1)...]
            }
            let base = Array(host) + [0] + Array(port)
            var prev: UInt32 = 0
            for _ in 0..<(peer.weight * 160) {
                let hash = CRC32.of(base + withUnsafeBytes(of: prev.littleEndian) { Array($0) })
                points.append((hash, peer.serverText))
                prev = hash
            }
        }
        points.sort { $0.hash < $1.hash }
        var unique: [(hash: UInt32, server: String)] = []
        for p in points where unique.last?.hash != p.hash { unique.append(p) }
        points = unique
    }

    /// The first point at or after the key's hash, walking on (20 tries) past servers that are not usable;
    /// among the peers of one server (a name with several addresses), weighted round robin decides.
    func select(_ key: String, from peers: [Peer], now: UInt64, usable: (Peer) -> Bool, pick: ([Peer]) -> Peer?) -> Peer? {
        guard !points.isEmpty else { return nil }
        let h = CRC32.of(Array(key.utf8))
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid].hash < h { lo = mid + 1 } else { hi = mid }
        }
        var index = lo
        for _ in 0...20 {
            let server = points[index % points.count].server
            let candidates = peers.filter { $0.serverText == server && usable($0) }
            if !candidates.isEmpty, let p = pick(candidates) { return p }
            index += 1
        }
        return nil
    }
}

/// CRC-32 (IEEE), as nginx computes it, for `hash` placement.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func of(_ bytes: [UInt8]) -> UInt32 { finish(update(start, bytes)) }

    /// Piecewise, without joining the pieces into one array.
    static let start: UInt32 = 0xFFFF_FFFF
    static func update<S: Sequence<UInt8>>(_ crc: UInt32, _ bytes: S) -> UInt32 {
        var c = crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c
    }
    static func finish(_ crc: UInt32) -> UInt32 { crc ^ 0xFFFF_FFFF }
}

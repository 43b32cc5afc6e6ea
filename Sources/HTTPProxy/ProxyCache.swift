#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Config
import Core
import HTTP
import HTTPServer
import Script
import ShmTable

/// One `*_cache_path`: its keys zone and where its files go. One per zone in a worker.
final class CacheStore {
    let zone: CacheZone
    let spec: CacheZoneSpec
    init(zone: CacheZone, spec: CacheZoneSpec) {
        self.zone = zone
        self.spec = spec
    }

    /// The zone's `use`: a key it pushes out to make room loses its file here, as nginx's forced expiry does.
    func use(_ key: CacheDigest, now: Int, nowMs: UInt64, lockAge: Int) -> CacheZone.Entry? {
        defer { deleteEvicted() }
        return zone.use(key, now: now, nowMs: nowMs, lockAge: lockAge)
    }

    /// The zone's `stored`, likewise.
    func stored(_ key: CacheDigest, validUntil: Int, blocks: UInt64, now: Int) {
        zone.stored(key, validUntil: validUntil, blocks: blocks, now: now)
        deleteEvicted()
    }

    private func deleteEvicted() {
        guard !zone.evicted.isEmpty else { return }
        for digest in zone.takeEvicted() { unlink(ProxyCache.path(of: digest, in: spec)) }
    }
}

/// A location's upstream cache (`proxy_cache NAME` and the rest of its module's `*_cache*` directives),
/// prepared once per worker: the cache it uses (or the variables that name one), its key, and its rules.
final class ProxyCache {
    private let store: CacheStore?
    private let variable: Template?
    private let stores: [CacheStore]
    let settings: CacheSettings
    let key: Template
    let ignored: IgnoredUpstreamHeaders

    /// proxy_cache_key's default; the gateway modules have none (the configuration requires one).
    private static let defaultKey = ProxyHeaders.resolved("$scheme$proxy_host$request_uri")

    init?(_ conf: ProxySettings, stores: [CacheStore]) {
        switch conf.cache.zone {
        case nil: return nil
        case .named(let name):
            guard let s = stores.first(where: { $0.spec.name == name }) else { return nil }
            store = s
            variable = nil
        case .variable(let t):
            store = nil
            variable = t
        }
        self.stores = stores
        settings = conf.cache
        key = conf.cache.key ?? ProxyCache.defaultKey
        ignored = conf.ignoreHeaders
    }

    /// The cache this request uses: nil when its variables name none (empty, "off"); `.failure` (with the
    /// name, for the log) when they name a cache that does not exist, which nginx answers with 500.
    func store(for r: RequestContext) -> Result<CacheStore?, UnknownCache> {
        if let store { return .success(store) }
        let name = variable?.render(r) ?? ""
        if name.isEmpty || name == "off" { return .success(nil) }
        guard let s = stores.first(where: { $0.spec.name == name }) else { return .failure(UnknownCache(name: name)) }
        return .success(s)
    }

    struct UnknownCache: Error { let name: String }

    /// The key's MD5: its node in the zone, and its file's name (hex) under the `levels` directories taken
    /// from the name's end, as nginx lays them out (levels=1:2: `c/29/b7f5…029c`).
    static func locate(_ key: [UInt8], in spec: CacheZoneSpec) -> (digest: CacheDigest, path: String) {
        var ctx = MD5_CTX()
        var md = [UInt8](repeating: 0, count: 16)
        vigil_md5_init(&ctx)
        key.withUnsafeBytes { vigil_md5_update(&ctx, $0.baseAddress, $0.count) }
        vigil_md5_final(&ctx, &md)
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(md[i]); lo = lo << 8 | UInt64(md[i + 8]) }
        let digest = CacheDigest(hi: hi, lo: lo)
        return (digest, ProxyCache.path(of: digest, in: spec))
    }

    /// Where a key's file lies.
    static func path(of digest: CacheDigest, in spec: CacheZoneSpec) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex = [UInt8](repeating: 0, count: 32)
        for i in 0..<16 {
            let byte = UInt8(truncatingIfNeeded: (i < 8 ? digest.hi : digest.lo) >> (56 - 8 * UInt64(i % 8)))
            hex[2 * i] = digits[Int(byte >> 4)]
            hex[2 * i + 1] = digits[Int(byte & 15)]
        }
        var path = spec.path
        var end = 32
        for n in spec.levels {
            path += "/" + String(decoding: hex[(end - n)..<end], as: UTF8.self)
            end -= n
        }
        return path + "/" + String(decoding: hex, as: UTF8.self)
    }

    /// A file name that is a key's (32 lowercase hex digits), as its digest.
    static func digest(ofName name: UnsafeRawBufferPointer) -> CacheDigest? {
        guard name.count == 32 else { return nil }
        var hi: UInt64 = 0, lo: UInt64 = 0
        for (i, c) in name.enumerated() {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            default: return nil
            }
            if i < 16 { hi = hi << 4 | UInt64(v) } else { lo = lo << 4 | UInt64(v) }
        }
        return CacheDigest(hi: hi, lo: lo)
    }

    /// Whether any of the `*_cache_bypass` or `*_no_cache` values is neither empty nor "0" (nginx's
    /// ngx_http_test_predicates).
    static func anySet(_ predicates: [Template], _ r: RequestContext) -> Bool {
        predicates.contains { let v = $0.render(r); return !v.isEmpty && v != "0" }
    }
}

/// How long an upstream's response may be served from the cache, and how long stale after that.
struct Freshness {
    /// Unix seconds the response is fresh until.
    var validUntil: Int
    /// Cache-Control's stale-while-revalidate and stale-if-error: seconds past `validUntil` it may be served
    /// while it is refreshed, or when the refresh fails.
    var updatingSeconds = 0
    var errorSeconds = 0
}

/// How long an upstream's response may be served from the cache, as nginx decides it from the response's
/// head: X-Accel-Expires first (`@` an absolute time, 0 never; a second one is ignored), then Cache-Control
/// (no-cache, no-store or private never; s-maxage or max-age), then Expires; a Set-Cookie or `Vary: *` keeps
/// it out; without a lifetime from the head, `*_cache_valid` gives the status its own. Each header
/// `*_ignore_headers` names is not looked at.
enum CachePolicy {
    /// nil: the response is not stored.
    static func freshness(status: Int, fields: [(name: String, value: String)], ignored: IgnoredUpstreamHeaders,
                          settings: CacheSettings, now: Int) -> Freshness? {
        var fromHead: Int?
        func field(_ name: String) -> String? { fields.first { $0.name.lowercased() == name }?.value }
        if !ignored.contains(.setCookie) && field("set-cookie") != nil { return nil }
        if !ignored.contains(.vary), varyNames(fields.filter { $0.name.lowercased() == "vary" }.map(\.value)).contains("*") { return nil }
        if !ignored.contains(.xAccelExpires), let v = field("x-accel-expires") {
            let at = v.hasPrefix("@")
            guard let n = Int(Substring(v).dropFirst(at ? 1 : 0).trimmingSpaces()), n >= 0 else { return nil }
            if n == 0 { return nil }
            fromHead = at ? n : now + n
        }
        var freshness = Freshness(validUntil: 0)
        if !ignored.contains(.cacheControl) {
            let cc = fields.filter { $0.name.lowercased() == "cache-control" }.map { $0.value.lowercased() }.joined(separator: ",")
            if fromHead == nil {
                if cc.contains("no-cache") || cc.contains("no-store") || cc.contains("private") { return nil }
                if let n = maxAge(cc, "s-maxage=") ?? maxAge(cc, "max-age=") {
                    if n == 0 { return nil }
                    fromHead = now + n
                }
            }
            // The extensions count whatever gave the lifetime.
            freshness.updatingSeconds = maxAge(cc, "stale-while-revalidate=") ?? 0
            freshness.errorSeconds = maxAge(cc, "stale-if-error=") ?? 0
        }
        if fromHead == nil && !ignored.contains(.expires), let v = field("expires") {
            guard let at = Clock.parseHTTPDate(v), at > now else { return nil }
            fromHead = at
        }
        if let fromHead {
            freshness.validUntil = fromHead
            return freshness
        }
        let seconds = settings.validSeconds(for: status)
        guard seconds > 0 else { return nil }
        freshness.validUntil = now + seconds
        return freshness
    }

    private static func maxAge(_ cc: String, _ directive: String) -> Int? {
        guard let r = cc.firstRange(of: directive) else { return nil }
        let digits = cc[r.upperBound...].prefix { $0.isASCII && $0.isNumber }
        return digits.isEmpty ? nil : Int(digits).map { min($0, Int(Int32.max)) }
    }

    /// The request headers `Vary` names, as the variant they make: each name's values joined, their list
    /// items without the whitespace around them and without empty ones (RFC 7234's whitespace
    /// normalization, as nginx's).
    static func variant(_ varyNames: [String], _ r: RequestContext) -> [UInt8] {
        var out: [UInt8] = []
        for name in varyNames {
            let items = (r.joinedHeader(name) ?? "").split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
            out += Array(name.utf8) + [0x3A] + Array(items.joined(separator: ",").utf8) + [0x0A]
        }
        return out
    }

    /// The names the `Vary` fields list, lowercased.
    static func varyNames(_ values: [String]) -> [String] {
        values.flatMap { $0.split(separator: ",").map { $0.trimmingSpaces().lowercased() }.filter { !$0.isEmpty } }
    }
}

/// A cached response's file: a fixed header, the key (to tell an MD5 collision), the response's ETag, the
/// names its Vary lists and the variant of the request it answered, its head as the upstream sent it (status
/// line and fields, without framing), then the body, de-chunked.
///
///     0   "VIGILC01"                 8   valid until (i64)      16  stored at (i64)
///     24  Last-Modified (i64, -1)    32  status (u16)           34  ETag length (u16)
///     36  key length (u32)           40  vary names length (u32) 44 variant length (u32)
///     48  head length (u32)          52  stale-while-revalidate (u32)  56  stale-if-error (u32)  60  reserved
struct CacheFile {
    static let headerSize = 64
    static let magic = Array("VIGILC01".utf8)

    var validUntil: Int
    var updatingSeconds = 0
    var errorSeconds = 0
    var storedAt: Int
    var lastModified: Int
    var status: Int
    var etag: String
    var key: [UInt8]
    var varyNames: [String]
    var variant: [UInt8]
    var headLength: Int

    var bodyStart: Int { CacheFile.headerSize + key.count + etag.utf8.count + varyText.utf8.count + variant.count + headLength }
    private var varyText: String { varyNames.joined(separator: ",") }

    /// The header and what follows it up to the head.
    func preamble() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: CacheFile.headerSize)
        b.replaceSubrange(0..<8, with: CacheFile.magic)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) { withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(at..<(at + $0.count), with: $0) } }
        put(Int64(validUntil), 8)
        put(Int64(storedAt), 16)
        put(Int64(lastModified), 24)
        put(UInt16(status), 32)
        put(UInt16(etag.utf8.count), 34)
        put(UInt32(key.count), 36)
        put(UInt32(varyText.utf8.count), 40)
        put(UInt32(variant.count), 44)
        put(UInt32(headLength), 48)
        put(UInt32(updatingSeconds), 52)
        put(UInt32(errorSeconds), 56)
        return b + key + Array(etag.utf8) + Array(varyText.utf8) + variant
    }

    /// Reads the header and what follows it up to the head; nil for a file that is not one (too short, another
    /// format), which the cache then treats as absent.
    static func read(_ fd: Int32) -> CacheFile? {
        var h = [UInt8](repeating: 0, count: headerSize)
        guard pread(fd, &h, headerSize, 0) == headerSize, Array(h[0..<8]) == magic else { return nil }
        func get<T: FixedWidthInteger>(_ type: T.Type, _ at: Int) -> T {
            h.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
        }
        let etagLength = Int(get(UInt16.self, 34)), keyLength = Int(get(UInt32.self, 36))
        let varyLength = Int(get(UInt32.self, 40)), variantLength = Int(get(UInt32.self, 44))
        let rest = keyLength + etagLength + varyLength + variantLength
        guard rest < 1 << 20 else { return nil }
        var tail = [UInt8](repeating: 0, count: rest)
        guard rest == 0 || pread(fd, &tail, rest, off_t(headerSize)) == rest else { return nil }
        var at = 0
        func take(_ n: Int) -> ArraySlice<UInt8> { defer { at += n }; return tail[at..<(at + n)] }
        let key = Array(take(keyLength)), etag = String(decoding: take(etagLength), as: UTF8.self)
        let vary = String(decoding: take(varyLength), as: UTF8.self), variant = Array(take(variantLength))
        return CacheFile(validUntil: Int(get(Int64.self, 8)), updatingSeconds: Int(get(UInt32.self, 52)),
                         errorSeconds: Int(get(UInt32.self, 56)), storedAt: Int(get(Int64.self, 16)), lastModified: Int(get(Int64.self, 24)),
                         status: Int(get(UInt16.self, 32)), etag: etag, key: key,
                         varyNames: vary.isEmpty ? [] : vary.split(separator: ",").map(String.init), variant: variant,
                         headLength: Int(get(UInt32.self, 48)))
    }

    /// Rewrites a revalidated file's freshness in place.
    static func refresh(path: String, validUntil: Int) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var v = Int64(validUntil).littleEndian
        return pwrite(fd, &v, 8, 8) == 8
    }
}

/// A cached file the lookup opened: fresh (served at once) or stale (kept while the upstream is asked, to
/// serve if it fails as `*_cache_use_stale` allows, or to revalidate).
struct OpenCacheFile {
    let fd: Int32
    let file: CacheFile
    let size: Int
    /// Its disk use (512-byte blocks), as the zone counts it for max_size.
    let blocks: UInt64
    var bodyLength: Int { size - file.bodyStart }
}

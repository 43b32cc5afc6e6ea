#if canImport(Glibc)
import Glibc
#endif
import CShim

/// The MD5 of a cache key: the name of its file and its identity in the keys zone.
public struct CacheDigest: Hashable, Sendable {
    public let hi: UInt64, lo: UInt64
    public init(hi: UInt64, lo: UInt64) { self.hi = hi; self.lo = lo }
}

/// A `*_cache_path … keys_zone=NAME:SIZE`: what every worker knows of the cached responses under one path,
/// nginx's ngx_http_file_cache_node_t tree as a hash table. The files are the responses; a node says whether
/// its file exists and until when it is fresh, counts the requests for it (`*_cache_min_uses`), marks the one
/// request that fills or refreshes it (`*_cache_lock`, `*_cache_use_stale updating`), and keeps the LRU order
/// and the disk use the cache manager expires by (`inactive=`, `max_size=`). An anonymous shared mapping the
/// master makes before it forks, kept across reloads as LimitZone is.
///
/// Layout (native byte order):
///
///     0    robust process-shared mutex
///     64   nodes ever used, free list head, LRU head (most recent), LRU tail, live nodes (u32 each),
///          the loader's pid (i32), whether the files on disk were loaded (u32), the manager's pid (i32)
///     96   the files' disk use in 512-byte blocks (u64)
///     104  the watermark: keys the manager keeps the zone under once it was full (u32, 0 until then)
///     128  hash buckets: u32 node references (index + 1; 0 ends a chain), one per node
///     ...  64-aligned: the nodes, 128 bytes each (nginx's slab size for its node: a 1m zone holds about
///          7,900 keys, nginx "about 8 thousand")
///
/// A node: digest (2 × u64), chain next, LRU prev, LRU next, uses, flags (u32 each: bit 0 the file exists,
/// bit 1 a request is filling it), valid until (i64 s), last use (i64 s), disk use (u64 blocks), the fill's
/// lock taken at (u64 ms), an error status cached instead of a file (u32: an intercepted error's, 0 none).
public final class CacheZone {
    public let name: String
    public let size: Int
    /// The directory its files live under: a reload may keep the zone only with the same one.
    public let path: String
    let base: UnsafeMutableRawPointer
    private let table: NodeTable
    var capacity: Int { table.capacity }
    private let seed: UInt64

    static let headerSize = 128, nodeSize = 128
    private static let loaderOffset = 84, loadedOffset = 88, managerOffset = 92, blocksOffset = 96, watermarkOffset = 104
    private static let hiField = 0, loField = 8, usesField = 28
    private static let flagsField = 32, validField = 40, lastUseField = 48, blocksField = 56, lockedField = 64, errorField = 72
    private static let exists: UInt32 = 1, filling: UInt32 = 2

    public init?(name: String, size: Int, path: String) {
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return nil }
        self.name = name
        self.size = size
        self.path = path
        base = p
        table = NodeTable(base: p, size: size, headerSize: CacheZone.headerSize, nodeSize: CacheZone.nodeSize,
                          chainField: 16, prevField: 20, nextField: 24)
        seed = UInt64.random(in: 1...UInt64.max) | 1
        precondition(vigil_shared_mutex_size() <= 64)
        vigil_shared_mutex_init(base)
    }

    deinit { munmap(base, size) }

    /// The zones a configuration names: one of `previous` with the same name, size and path is kept with its
    /// state (nginx keeps a cache zone across reloads); the others are new.
    public static func mapping(_ specs: [(name: String, size: Int, path: String)], previous: [CacheZone] = []) throws -> [CacheZone] {
        try specs.map { s in
            if let old = previous.first(where: { $0.name == s.name && $0.size == s.size && $0.path == s.path }) { return old }
            guard let z = CacheZone(name: s.name, size: s.size, path: s.path) else {
                throw ShmError.sys("mmap(MAP_ANONYMOUS|MAP_SHARED, \(s.size))")
            }
            return z
        }
    }

    /// What a request found for its key.
    public struct Entry: Equatable, Sendable {
        /// The file was stored (or found on disk) and not removed since.
        public var exists: Bool
        /// Fresh until then (unix seconds).
        public var validUntil: Int
        /// Requests for the key, this one included, since it was first seen.
        public var uses: Int
        /// Another request is filling or refreshing the file now (its lock younger than the lock age).
        public var filling: Bool
        /// An intercepted error's status, cached until `validUntil` in place of a response (0: none).
        public var error: Int = 0
    }

    /// Counts a request for `key` (made the most recently used); nil when the zone is full even after its
    /// least recently used unlocked key went (nginx: "could not allocate node"), so the request goes uncached.
    public func use(_ key: CacheDigest, now: Int, nowMs: UInt64, lockAge: Int) -> Entry? {
        locked {
            guard let ref = findOrInsert(key) else { return nil }
            let n = node(ref)
            table.touch(ref)
            let uses = n.load(fromByteOffset: Self.usesField, as: UInt32.self) &+ 1
            n.storeBytes(of: uses, toByteOffset: Self.usesField, as: UInt32.self)
            n.storeBytes(of: Int64(now), toByteOffset: Self.lastUseField, as: Int64.self)
            let flags = n.load(fromByteOffset: Self.flagsField, as: UInt32.self)
            let lockedAt = n.load(fromByteOffset: Self.lockedField, as: UInt64.self)
            return Entry(exists: flags & Self.exists != 0, validUntil: Int(n.load(fromByteOffset: Self.validField, as: Int64.self)),
                         uses: Int(uses), filling: flags & Self.filling != 0 && nowMs &- lockedAt < UInt64(lockAge),
                         error: Int(n.load(fromByteOffset: Self.errorField, as: UInt32.self)))
        }
    }

    /// Takes the key's fill lock for this request: false while another request holds one younger than
    /// `lockAge` ms (nginx's cache lock and its "updating" state).
    public func lock(_ key: CacheDigest, nowMs: UInt64, lockAge: Int) -> Bool {
        locked {
            guard let ref = find(key) else { return true }
            let n = node(ref)
            let flags = n.load(fromByteOffset: Self.flagsField, as: UInt32.self)
            if flags & Self.filling != 0 && nowMs &- n.load(fromByteOffset: Self.lockedField, as: UInt64.self) < UInt64(lockAge) { return false }
            n.storeBytes(of: flags | Self.filling, toByteOffset: Self.flagsField, as: UInt32.self)
            n.storeBytes(of: nowMs, toByteOffset: Self.lockedField, as: UInt64.self)
            return true
        }
    }

    /// The request holding the fill lock ended without storing.
    public func unlock(_ key: CacheDigest) {
        locked {
            guard let ref = find(key) else { return }
            let n = node(ref)
            n.storeBytes(of: n.load(fromByteOffset: Self.flagsField, as: UInt32.self) & ~Self.filling, toByteOffset: Self.flagsField, as: UInt32.self)
        }
    }

    /// A file was stored (or revalidated, or found on disk) for the key: it exists, fresh until `validUntil`,
    /// taking `blocks` of disk; the fill lock goes.
    public func stored(_ key: CacheDigest, validUntil: Int, blocks: UInt64, now: Int) {
        locked {
            guard let ref = findOrInsert(key) else { return }
            let n = node(ref)
            let old = n.load(fromByteOffset: Self.blocksField, as: UInt64.self)
            setBlocks(blocks64 &- old &+ blocks)
            n.storeBytes(of: blocks, toByteOffset: Self.blocksField, as: UInt64.self)
            n.storeBytes(of: Int64(validUntil), toByteOffset: Self.validField, as: Int64.self)
            n.storeBytes(of: Int64(now), toByteOffset: Self.lastUseField, as: Int64.self)
            let flags = n.load(fromByteOffset: Self.flagsField, as: UInt32.self)
            n.storeBytes(of: (flags | Self.exists) & ~Self.filling, toByteOffset: Self.flagsField, as: UInt32.self)
            n.storeBytes(of: 0, toByteOffset: Self.errorField, as: UInt32.self)
        }
    }

    /// An intercepted error (an upstream status an error_page answers) is the key's response until
    /// `validUntil`, as nginx caches one in its node; the fill lock goes.
    public func storedError(_ key: CacheDigest, status: Int, validUntil: Int) {
        locked {
            guard let ref = find(key) else { return }
            let n = node(ref)
            n.storeBytes(of: UInt32(status), toByteOffset: Self.errorField, as: UInt32.self)
            n.storeBytes(of: Int64(validUntil), toByteOffset: Self.validField, as: Int64.self)
            n.storeBytes(of: n.load(fromByteOffset: Self.flagsField, as: UInt32.self) & ~Self.filling, toByteOffset: Self.flagsField, as: UInt32.self)
        }
    }

    /// The key's file is gone or unusable: the node says so (its uses stay).
    public func lost(_ key: CacheDigest) {
        locked {
            guard let ref = find(key) else { return }
            let n = node(ref)
            setBlocks(blocks64 &- n.load(fromByteOffset: Self.blocksField, as: UInt64.self))
            n.storeBytes(of: 0, toByteOffset: Self.blocksField, as: UInt64.self)
            n.storeBytes(of: n.load(fromByteOffset: Self.flagsField, as: UInt32.self) & ~Self.exists, toByteOffset: Self.flagsField, as: UInt32.self)
        }
    }

    /// The cache manager's pass (nginx's ngx_http_file_cache_expire and forced expiry): from the least
    /// recently used end, keys unused for `inactive` seconds go, and while the files take more than
    /// `maxBlocks` (0: no limit) or the disk is short of space (`short`, min_free) the oldest go whatever
    /// their age; a key being filled is passed over. At most `limit` keys a call. Returns the removed keys
    /// that had a file, for the caller to delete.
    public func expire(now: Int, inactive: Int, maxBlocks: UInt64?, short: Bool = false, limit: Int) -> [CacheDigest] {
        locked {
            var gone: [CacheDigest] = []
            var ref = table.tail, removed = 0
            let watermark = Int(field(Self.watermarkOffset))
            while ref != 0 && removed < limit {
                let n = node(ref), prev = table.newer(than: ref)
                let idle = now - Int(n.load(fromByteOffset: Self.lastUseField, as: Int64.self)) >= inactive
                let over = short || maxBlocks.map { blocks64 > $0 } ?? false || watermark > 0 && table.live >= watermark
                if !idle && !over { break }
                if n.load(fromByteOffset: Self.flagsField, as: UInt32.self) & Self.filling == 0 {
                    if n.load(fromByteOffset: Self.flagsField, as: UInt32.self) & Self.exists != 0 { gone.append(digest(ref)) }
                    setBlocks(blocks64 &- n.load(fromByteOffset: Self.blocksField, as: UInt64.self))
                    remove(ref)
                    removed += 1
                }
                ref = prev
            }
            return gone
        }
    }

    /// Seconds until the least recently used key becomes inactive (nginx's manager waits that long, at most
    /// 10 s, when a pass had nothing to do).
    public func secondsToNextExpiry(now: Int, inactive: Int) -> Int {
        locked {
            let ref = table.tail
            guard ref != 0 else { return 10 }
            let left = inactive - (now - Int(node(ref).load(fromByteOffset: Self.lastUseField, as: Int64.self)))
            return min(max(left, 1), 10)
        }
    }

    /// The manager's claim: one process at a time runs the zone's passes (nginx's cache manager); another takes
    /// over once it is gone.
    public func claimManaging(pid: Int32) -> Bool {
        locked {
            let holder = Int32(bitPattern: field(Self.managerOffset))
            if holder == pid { return true }
            if holder != 0 && kill(holder, 0) == 0 { return false }
            setField(Self.managerOffset, UInt32(bitPattern: pid))
            return true
        }
    }

    /// Keys this process pushed out of a full zone to make room, whose files it must delete (nginx's forced
    /// expiry deletes them where it happens).
    public private(set) var evicted: [CacheDigest] = []
    public func takeEvicted() -> [CacheDigest] {
        defer { evicted = [] }
        return evicted
    }

    /// The cache loader's claim (one process walks the files into a new zone): true for the first caller, or
    /// when the one before it died before it finished.
    public func claimLoading(pid: Int32) -> Bool {
        locked {
            if field(Self.loadedOffset) != 0 { return false }
            let holder = Int32(bitPattern: field(Self.loaderOffset))
            if holder != 0 && holder != pid && kill(holder, 0) == 0 { return false }
            setField(Self.loaderOffset, UInt32(bitPattern: pid))
            return true
        }
    }

    /// The walk of the files finished.
    public func finishLoading() { locked { setField(Self.loadedOffset, 1) } }

    /// A file the loader found: known from now on unless a request already knows it.
    public func load(_ key: CacheDigest, validUntil: Int, blocks: UInt64, lastUse: Int) {
        locked {
            guard find(key) == nil, let ref = table.insert(bucket: bucket(key)) else { return }
            setDigest(ref, key)
            let n = node(ref)
            n.storeBytes(of: Int64(validUntil), toByteOffset: Self.validField, as: Int64.self)
            n.storeBytes(of: Int64(lastUse), toByteOffset: Self.lastUseField, as: Int64.self)
            n.storeBytes(of: blocks, toByteOffset: Self.blocksField, as: UInt64.self)
            n.storeBytes(of: Self.exists, toByteOffset: Self.flagsField, as: UInt32.self)
            setBlocks(blocks64 &+ blocks)
        }
    }

    /// Keys known and the files' disk use in bytes (the status of the zone, and tests).
    public var usage: (keys: Int, bytes: UInt64) { locked { (table.live, blocks64 * 512) } }

    // MARK: the table (callers hold the lock)

    @inline(__always) private func locked<R>(_ body: () -> R) -> R {
        vigil_shared_mutex_lock(base)
        defer { vigil_shared_mutex_unlock(base) }
        return body()
    }

    private var blocks64: UInt64 { base.load(fromByteOffset: Self.blocksOffset, as: UInt64.self) }
    private func setBlocks(_ v: UInt64) { base.storeBytes(of: Int64(bitPattern: v) < 0 ? 0 : v, toByteOffset: Self.blocksOffset, as: UInt64.self) }
    @inline(__always) private func field(_ offset: Int) -> UInt32 { base.load(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) private func setField(_ offset: Int, _ v: UInt32) { base.storeBytes(of: v, toByteOffset: offset, as: UInt32.self) }
    @inline(__always) private func node(_ ref: UInt32) -> UnsafeMutableRawPointer { table.node(ref) }
    /// MD5 is even, but keys are the clients' to choose: the bucket mixes in the zone's own seed.
    @inline(__always) private func bucket(_ key: CacheDigest) -> Int {
        Int((((key.lo ^ seed) &* 0x9E37_79B9_7F4A_7C15) >> 17) % UInt64(table.capacity))
    }
    private func digest(_ ref: UInt32) -> CacheDigest {
        CacheDigest(hi: node(ref).load(fromByteOffset: Self.hiField, as: UInt64.self), lo: node(ref).load(fromByteOffset: Self.loField, as: UInt64.self))
    }
    private func setDigest(_ ref: UInt32, _ key: CacheDigest) {
        node(ref).storeBytes(of: key.hi, toByteOffset: Self.hiField, as: UInt64.self)
        node(ref).storeBytes(of: key.lo, toByteOffset: Self.loField, as: UInt64.self)
    }

    private func find(_ key: CacheDigest) -> UInt32? {
        var ref = table.first(inBucket: bucket(key))
        while ref != 0 {
            if digest(ref) == key { return ref }
            ref = table.next(inChain: ref)
        }
        return nil
    }

    /// The key's node, or a new one; when the zone is full the least recently used key nobody is filling makes
    /// room (nil when there is none).
    private func findOrInsert(_ key: CacheDigest) -> UInt32? {
        if let ref = find(key) { return ref }
        if let ref = table.insert(bucket: bucket(key)) {
            setDigest(ref, key)
            return ref
        }
        var victim = table.tail
        while victim != 0 && node(victim).load(fromByteOffset: Self.flagsField, as: UInt32.self) & Self.filling != 0 {
            victim = table.newer(than: victim)
        }
        guard victim != 0 else { return nil }
        // As nginx once its zone ran full: the manager keeps it under seven eighths from now on.
        if field(Self.watermarkOffset) == 0 { setField(Self.watermarkOffset, UInt32(table.live - table.live / 8)) }
        if node(victim).load(fromByteOffset: Self.flagsField, as: UInt32.self) & Self.exists != 0 { evicted.append(digest(victim)) }
        setBlocks(blocks64 &- node(victim).load(fromByteOffset: Self.blocksField, as: UInt64.self))
        remove(victim)
        guard let ref = table.insert(bucket: bucket(key)) else { return nil }
        setDigest(ref, key)
        return ref
    }

    private func remove(_ ref: UInt32) { table.remove(ref, bucket: bucket(digest(ref))) }
}

/// The shared mappings a generation's workers inherit beside its segment: limit zones and cache keys zones,
/// each kept across a reload that declares it again alike.
public struct SharedZones {
    public let limits: [LimitZone]
    public let caches: [CacheZone]
    public init(limits: [LimitZone] = [], caches: [CacheZone] = []) {
        self.limits = limits
        self.caches = caches
    }
}

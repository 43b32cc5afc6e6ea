#if canImport(Glibc)
import Glibc
#endif
import CShim

/// nginx's leaky bucket (ngx_http_limit_req_module), in milli-requests: a key's `excess` is how many requests
/// above the rate it has made, drained at `rate` (milli-requests a second) as time passes.
public enum LeakyBucket {
    /// Milliseconds since `last`, as nginx reads them: a clock gone back more than a minute counts as 1 ms,
    /// less as none.
    public static func elapsed(now: UInt64, since last: UInt64) -> Int {
        let ms = Int64(bitPattern: now &- last)
        return ms < -60_000 ? 1 : ms < 0 ? 0 : Int(ms)
    }

    /// The excess once this request is added: nginx's `excess - rate * ms / 1000 + 1000`, never below 0.
    public static func excess(_ previous: Int, rate: Int, elapsedMs ms: Int) -> Int {
        let (drained, overflow) = rate.multipliedReportingOverflow(by: ms)
        return overflow ? 0 : max(0, previous - drained / 1000 + 1000)
    }

    /// How long a request with `excess` waits when `allowed` (milli-requests) pass at once: nothing within the
    /// allowance, else the time the bucket takes to drain back to it.
    public static func delay(excess: Int, allowed: Int, rate: Int) -> Int {
        excess <= allowed ? 0 : (excess - allowed) * 1000 / rate
    }
}

/// A `limit_req_zone` or `limit_conn_zone`: the state of each key, shared by every worker of every
/// generation that names the zone with the same size (nginx keeps such a zone across reloads). It is an
/// anonymous shared mapping the master makes before it forks, not a part of the per-generation segment: a
/// reload's new workers must see the counts and buckets the old ones are still changing.
///
/// Layout (offsets from the mapping's start, native byte order: only processes of one master read it):
///
///     0    robust process-shared mutex (every operation holds it)
///     64   nodes ever used (u32), free list head, LRU head (most recent), LRU tail, live nodes (u32 each)
///     128  hash buckets: u32 node references (index + 1; 0 ends a chain), one per node
///     ...  64-aligned: the nodes, `nodeSize` bytes each
///
/// A node: hash (u64), chain next, LRU prev and next (u32 each), key length (u16), count (u32: requests
/// between lookup and account, or connections), last request time (u64 ms), excess (i64 milli-requests),
/// then the key's first `nodeSize - 48` bytes. Keys that fit are compared whole; a longer key is taken as
/// matching a node with the same 64-bit seeded hash, length and stored prefix, so two long keys merge only
/// if all three agree. A request zone's node is 128 bytes and a connection zone's 64, nginx's slab sizes on
/// 64-bit for such states, so a 1m zone holds about as many keys as nginx's: 7,942 and 15,417 (nginx about
/// 8,000 and 16,000).
public final class LimitZone {
    public enum Kind: Sendable {
        case requests, connections
        var nodeSize: Int { self == .requests ? 128 : 64 }
    }

    public let name: String
    public let size: Int
    public let kind: Kind
    /// The key as configured: a reload that keeps the zone must keep it (nginx's rule).
    public let key: String
    let base: UnsafeMutableRawPointer
    private let table: NodeTable
    /// Nodes (and buckets) the size holds.
    var capacity: Int { table.capacity }
    private let seed: UInt64

    static let headerSize = 128
    private static let hashField = 0, lengthField = 20
    private static let countField = 24, lastField = 32, excessField = 40, keyField = 48

    /// A new, empty zone; nil when the mapping fails.
    public init?(name: String, size: Int, kind: Kind, key: String) {
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return nil }
        self.name = name
        self.size = size
        self.kind = kind
        self.key = key
        base = p
        table = NodeTable(base: p, size: size, headerSize: LimitZone.headerSize, nodeSize: kind.nodeSize, chainField: 8, prevField: 12, nextField: 16)
        // A seed per zone: keys a client chooses ($arg_…) cannot be picked to share one chain.
        seed = UInt64.random(in: 1...UInt64.max)
        precondition(vigil_shared_mutex_size() <= 64)
        vigil_shared_mutex_init(base)
    }

    /// The zone replaced by a reload unmaps in the master when its generation retires; workers keep their own.
    deinit { munmap(base, size) }

    /// The zones a configuration names: each one of `previous` with the same name, kind and size is kept, with
    /// its state, as nginx keeps a zone; the others are new. A kept zone whose key changed fails the reload.
    public static func mapping(_ specs: [(name: String, size: Int, kind: Kind, key: String)],
                               previous: [LimitZone] = []) throws -> [LimitZone] {
        try specs.map { s in
            if let old = previous.first(where: { $0.name == s.name && $0.kind == s.kind && $0.size == s.size }) {
                guard old.key == s.key else {
                    let what = s.kind == .requests ? "limit_req" : "limit_conn_zone"
                    throw ShmError("\(what) \"\(s.name)\" uses the \"\(s.key)\" key while previously it used the \"\(old.key)\" key")
                }
                return old
            }
            guard let z = LimitZone(name: s.name, size: s.size, kind: s.kind, key: s.key) else {
                throw ShmError.sys("mmap(MAP_ANONYMOUS|MAP_SHARED, \(s.size))")
            }
            return z
        }
    }

    // MARK: limit_req

    /// What one limit's lookup found (nginx's ngx_http_limit_req_lookup): `passed` with the excess it stored
    /// (the request's last limit), `held` for an earlier limit (the node counted until `account` or `release`),
    /// `busy` above the burst, `full` when no node could be had.
    public enum Lookup: Equatable {
        case passed(excess: Int)
        case held(node: UInt32, excess: Int)
        case busy(excess: Int)
        case full
    }

    public func lookup(_ key: UnsafeRawBufferPointer, rate: Int, burst: Int, account: Bool, now: UInt64) -> Lookup {
        let hash = hashKey(key)
        return locked {
            if let ref = find(key, hash) {
                let n = node(ref)
                table.touch(ref)
                let ms = LeakyBucket.elapsed(now: now, since: n.load(fromByteOffset: Self.lastField, as: UInt64.self))
                let excess = LeakyBucket.excess(n.load(fromByteOffset: Self.excessField, as: Int.self), rate: rate, elapsedMs: ms)
                if excess > burst { return .busy(excess: excess) }
                if account {
                    n.storeBytes(of: excess, toByteOffset: Self.excessField, as: Int.self)
                    if ms != 0 { n.storeBytes(of: now, toByteOffset: Self.lastField, as: UInt64.self) }
                    return .passed(excess: excess)
                }
                n.storeBytes(of: n.load(fromByteOffset: Self.countField, as: UInt32.self) + 1, toByteOffset: Self.countField, as: UInt32.self)
                return .held(node: ref, excess: excess)
            }
            expire(rate: rate, now: now, force: false)
            var added = insert(key, hash)
            if added == nil {
                expire(rate: rate, now: now, force: true)
                added = insert(key, hash)
            }
            guard let ref = added else { return .full }
            // A new key's first request is free, as in nginx: a held node has no time yet, so that `account`
            // drains whatever it would have had.
            let n = node(ref)
            n.storeBytes(of: account ? now : 0, toByteOffset: Self.lastField, as: UInt64.self)
            n.storeBytes(of: account ? 0 : 1, toByteOffset: Self.countField, as: UInt32.self)
            return account ? .passed(excess: 0) : .held(node: ref, excess: 0)
        }
    }

    /// A held node's request passed every limit: its excess is updated now (nginx's
    /// ngx_http_limit_req_account) and returned.
    public func account(_ ref: UInt32, rate: Int, now: UInt64) -> Int {
        locked {
            let n = node(ref)
            let ms = LeakyBucket.elapsed(now: now, since: n.load(fromByteOffset: Self.lastField, as: UInt64.self))
            let excess = LeakyBucket.excess(n.load(fromByteOffset: Self.excessField, as: Int.self), rate: rate, elapsedMs: ms)
            if ms != 0 { n.storeBytes(of: now, toByteOffset: Self.lastField, as: UInt64.self) }
            n.storeBytes(of: excess, toByteOffset: Self.excessField, as: Int.self)
            n.storeBytes(of: n.load(fromByteOffset: Self.countField, as: UInt32.self) - 1, toByteOffset: Self.countField, as: UInt32.self)
            return excess
        }
    }

    /// A held node's request was refused by a later limit: it is no longer counted (nginx's
    /// ngx_http_limit_req_unlock).
    public func release(_ ref: UInt32) {
        locked {
            let n = node(ref)
            n.storeBytes(of: n.load(fromByteOffset: Self.countField, as: UInt32.self) - 1, toByteOffset: Self.countField, as: UInt32.self)
        }
    }

    /// nginx's ngx_http_limit_req_expire: from the least recently used end, up to two nodes whose bucket has
    /// been empty for a minute go; `force` first removes the oldest whatever its state. A node in the middle
    /// of a request's accounting stops the walk (lookups move nodes to the front, so older ones are behind it).
    private func expire(rate: Int, now: UInt64, force: Bool) {
        var n = force ? 0 : 1
        while n < 3 {
            let ref = table.tail
            guard ref != 0 else { return }
            let lr = node(ref)
            if lr.load(fromByteOffset: Self.countField, as: UInt32.self) != 0 { return }
            if n != 0 {
                let ms = abs(Int64(bitPattern: now &- lr.load(fromByteOffset: Self.lastField, as: UInt64.self)))
                if ms < 60_000 { return }
                let (drained, overflow) = rate.multipliedReportingOverflow(by: Int(ms))
                if !overflow && lr.load(fromByteOffset: Self.excessField, as: Int.self) - drained / 1000 > 0 { return }
            }
            n += 1
            remove(ref)
        }
    }

    // MARK: limit_conn

    /// What counting one connection found: `counted` (the node holds it until `releaseConnection`), `limited`
    /// at the limit, `full` when no node could be had.
    public enum Count: Equatable { case counted(node: UInt32), limited, full }

    public func countConnection(_ key: UnsafeRawBufferPointer, limit: Int) -> Count {
        let hash = hashKey(key)
        return locked {
            if let ref = find(key, hash) {
                let n = node(ref)
                let conn = n.load(fromByteOffset: Self.countField, as: UInt32.self)
                if Int(conn) >= limit { return .limited }
                n.storeBytes(of: conn + 1, toByteOffset: Self.countField, as: UInt32.self)
                return .counted(node: ref)
            }
            guard let ref = insert(key, hash) else { return .full }
            node(ref).storeBytes(of: 1, toByteOffset: Self.countField, as: UInt32.self)
            return .counted(node: ref)
        }
    }

    /// The request that counted on `ref` ended; the key goes with its last connection.
    public func releaseConnection(_ ref: UInt32) {
        locked {
            let n = node(ref)
            let conn = n.load(fromByteOffset: Self.countField, as: UInt32.self) - 1
            n.storeBytes(of: conn, toByteOffset: Self.countField, as: UInt32.self)
            if conn == 0 { remove(ref) }
        }
    }

    // MARK: reading (tests)

    /// Keys held now.
    var liveNodes: Int { locked { table.live } }

    /// A node's count (held requests, or connections) and excess, by key.
    func state(of key: UnsafeRawBufferPointer) -> (count: Int, excess: Int)? {
        let hash = hashKey(key)
        return locked {
            guard let ref = find(key, hash) else { return nil }
            let n = node(ref)
            return (Int(n.load(fromByteOffset: Self.countField, as: UInt32.self)), n.load(fromByteOffset: Self.excessField, as: Int.self))
        }
    }

    // MARK: the table (callers hold the lock)

    @inline(__always) private func locked<R>(_ body: () -> R) -> R {
        vigil_shared_mutex_lock(base)
        defer { vigil_shared_mutex_unlock(base) }
        return body()
    }

    @inline(__always) private func node(_ ref: UInt32) -> UnsafeMutableRawPointer { table.node(ref) }
    @inline(__always) private func bucket(_ hash: UInt64) -> Int { Int(hash % UInt64(table.capacity)) }

    /// FNV-1a from the zone's seed.
    private func hashKey(_ key: UnsafeRawBufferPointer) -> UInt64 {
        var h = seed
        for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    private func find(_ key: UnsafeRawBufferPointer, _ hash: UInt64) -> UInt32? {
        let stored = min(key.count, table.nodeSize - Self.keyField)
        var ref = table.first(inBucket: bucket(hash))
        while ref != 0 {
            let n = node(ref)
            if n.load(fromByteOffset: Self.hashField, as: UInt64.self) == hash,
               Int(n.load(fromByteOffset: Self.lengthField, as: UInt16.self)) == min(key.count, 0xFFFF),
               stored == 0 || memcmp(n + Self.keyField, key.baseAddress!, stored) == 0 {
                return ref
            }
            ref = table.next(inChain: ref)
        }
        return nil
    }

    /// A new node for the key at the front of the LRU list, its counters zero; nil when the zone is full.
    private func insert(_ key: UnsafeRawBufferPointer, _ hash: UInt64) -> UInt32? {
        guard let ref = table.insert(bucket: bucket(hash)) else { return nil }
        let n = node(ref)
        n.storeBytes(of: hash, toByteOffset: Self.hashField, as: UInt64.self)
        n.storeBytes(of: UInt16(min(key.count, 0xFFFF)), toByteOffset: Self.lengthField, as: UInt16.self)
        let stored = min(key.count, table.nodeSize - Self.keyField)
        if stored > 0 { memcpy(n + Self.keyField, key.baseAddress!, stored) }
        return ref
    }

    private func remove(_ ref: UInt32) {
        table.remove(ref, bucket: bucket(node(ref).load(fromByteOffset: Self.hashField, as: UInt64.self)))
    }
}

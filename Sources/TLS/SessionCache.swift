#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import CShim

/// `ssl_session_cache shared:NAME:SIZE`: TLS sessions in a mapping the master makes before it forks, so a
/// client that resumes on another worker (or after a reload that keeps the cache) still resumes. Sessions
/// go into a ring of fixed slots, written in order, so the pages a cache touches grow with the sessions it
/// holds rather than with its size (a hashed slot per session touched a new page almost every time); a small
/// index of 8-entry buckets, found by hashing the session id, points into the ring, and an entry whose slot
/// the ring has since reused is recognised by comparing ids. One robust process-shared mutex guards it (a
/// worker that dies holding it cannot wedge the others).
public final class SharedSessionCache {
    let name: String
    let size: Int
    private let base: UnsafeMutableRawPointer
    private let slots: Int
    private let buckets: Int

    /// nginx stores about 4,000 sessions a megabyte; a TLS 1.2 or 1.3 session without a client certificate
    /// serializes to 130–200 bytes here.
    static let slotSize = 256
    /// The mutex, the ring's next position at offset 64, and three session ticket keys at `ticketKeysOffset`.
    static let headerSize = 512
    static let ticketKeysOffset = 128
    static let bucketEntries = 8
    /// Slot: used (1), id length (1), DER length (2), padding (4), expiry in realtime seconds (8), id (32), DER.
    static let expiryOffset = 8
    static let idOffset = 16
    static let derOffset = 48
    static var derCapacity: Int { slotSize - derOffset }

    /// One cache per name in this (master) process: a reload that names the same cache with the same size
    /// keeps its sessions.
    nonisolated(unsafe) private static var byName: [String: SharedSessionCache] = [:]

    static func named(_ name: String, size: Int) -> SharedSessionCache? {
        if let c = byName[name], c.size == size { return c }
        guard let c = SharedSessionCache(name: name, size: size) else { return nil }
        byName[name] = c
        return c
    }

    private init?(name: String, size: Int) {
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return nil }
        self.name = name
        self.size = size
        base = p
        // Each slot costs its own bytes and one 8-byte index entry.
        slots = max(SharedSessionCache.bucketEntries, (size - SharedSessionCache.headerSize) / (SharedSessionCache.slotSize + 8))
        buckets = (slots + SharedSessionCache.bucketEntries - 1) / SharedSessionCache.bucketEntries
        precondition(vigil_shared_mutex_size() <= 64)
        vigil_shared_mutex_init(base)
    }

    private var ringBase: UnsafeMutableRawPointer { base + SharedSessionCache.headerSize + buckets * SharedSessionCache.bucketEntries * 8 }
    /// A cache replaced by one of another size (a reload) unmaps in the master; workers keep their own mapping.
    deinit { munmap(base, size) }

    private func slot(_ i: Int) -> UnsafeMutableRawPointer { ringBase + i * SharedSessionCache.slotSize }
    /// Entry `k` of a bucket: a tag (the id's hash, never 0 when in use) and a slot number.
    private func entry(_ bucket: Int, _ k: Int) -> UnsafeMutableRawPointer {
        base + SharedSessionCache.headerSize + (bucket * SharedSessionCache.bucketEntries + k) * 8
    }

    private func hash(_ id: UnsafeRawBufferPointer) -> (bucket: Int, tag: UInt32) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in id { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return (Int(h % UInt64(buckets)), UInt32(truncatingIfNeeded: h >> 32) | 1)
    }

    private func holds(_ s: UnsafeMutableRawPointer, _ id: UnsafeRawBufferPointer) -> Bool {
        guard s.load(as: UInt8.self) == 1, Int(s.load(fromByteOffset: 1, as: UInt8.self)) == id.count else { return false }
        return memcmp(s + SharedSessionCache.idOffset, id.baseAddress!, id.count) == 0
    }

    /// The index entry that points at a live slot holding `id`.
    private func find(_ id: UnsafeRawBufferPointer) -> (entry: UnsafeMutableRawPointer, slot: UnsafeMutableRawPointer)? {
        let (b, tag) = hash(id)
        for k in 0..<SharedSessionCache.bucketEntries {
            let e = entry(b, k)
            guard e.load(as: UInt32.self) == tag else { continue }
            let s = slot(Int(e.load(fromByteOffset: 4, as: UInt32.self)) % slots)
            if holds(s, id) { return (e, s) }
        }
        return nil
    }

    private func withLock<R>(_ body: () -> R) -> R {
        vigil_shared_mutex_lock(base)
        defer { vigil_shared_mutex_unlock(base) }
        return body()
    }

    func store(id: UnsafeRawBufferPointer, der: UnsafeRawBufferPointer, expires: Int64) {
        guard id.count > 0, id.count <= 32, der.count <= SharedSessionCache.derCapacity else { return }
        withLock {
            let next = (base + 64).load(as: UInt64.self)
            (base + 64).storeBytes(of: next &+ 1, as: UInt64.self)
            let n = Int(next % UInt64(slots))
            let s = slot(n)
            s.storeBytes(of: 1, as: UInt8.self)
            s.storeBytes(of: UInt8(id.count), toByteOffset: 1, as: UInt8.self)
            s.storeBytes(of: UInt16(der.count), toByteOffset: 2, as: UInt16.self)
            s.storeBytes(of: expires, toByteOffset: SharedSessionCache.expiryOffset, as: Int64.self)
            memcpy(s + SharedSessionCache.idOffset, id.baseAddress!, id.count)
            memcpy(s + SharedSessionCache.derOffset, der.baseAddress!, der.count)
            // The bucket entry: the same id's, else a free or stale one, else the one whose session the
            // ring wrote longest ago.
            let (b, tag) = hash(id)
            var chosen = entry(b, 0)
            var oldest = UInt64.max
            for k in 0..<SharedSessionCache.bucketEntries {
                let e = entry(b, k)
                let t = e.load(as: UInt32.self), at = Int(e.load(fromByteOffset: 4, as: UInt32.self))
                if t == 0 || at == n { chosen = e; break }
                let other = slot(at % slots)
                if other.load(as: UInt8.self) == 0 { chosen = e; break }
                // Ring age of that slot: how many writes ago it was written (smaller = newer).
                let age = (next &- UInt64(at)) % UInt64(slots)
                if oldest == .max || age > oldest { oldest = age; chosen = e }
            }
            chosen.storeBytes(of: tag, as: UInt32.self)
            chosen.storeBytes(of: UInt32(n), toByteOffset: 4, as: UInt32.self)
        }
    }

    /// The session's DER bytes, if a live one is stored under `id`.
    func lookup(id: UnsafeRawBufferPointer) -> [UInt8]? {
        guard id.count > 0, id.count <= 32 else { return nil }
        let now = Int64(time(nil))
        return withLock {
            guard let (e, s) = find(id) else { return nil }
            if s.load(fromByteOffset: SharedSessionCache.expiryOffset, as: Int64.self) <= now {
                s.storeBytes(of: 0, as: UInt8.self)
                e.storeBytes(of: 0, as: UInt32.self)
                return nil
            }
            let n = Int(s.load(fromByteOffset: 2, as: UInt16.self))
            return Array(UnsafeRawBufferPointer(start: s + SharedSessionCache.derOffset, count: n))
        }
    }

    func remove(id: UnsafeRawBufferPointer) {
        guard id.count > 0, id.count <= 32 else { return }
        withLock {
            guard let (e, s) = find(id) else { return }
            s.storeBytes(of: 0, as: UInt8.self)
            e.storeBytes(of: 0, as: UInt32.self)
        }
    }

    /// nginx 1.23.2's ticket keys for the servers using this cache (without ssl_session_ticket_key): the current
    /// key, the previous one and the next, in TicketKeys' layout, their expiry realtime seconds (0: not made).
    /// The current key stays until its tickets' sessions may have expired, then becomes the previous one, which
    /// decrypts until its own expiry. Copies the current and previous keys to `local`; false if no random
    /// bytes were to be had.
    func syncTicketKeys(now: Int64, lifetime: Int64, into local: UnsafeMutableRawPointer) -> Bool {
        let keys = base + SharedSessionCache.ticketKeysOffset, stride = TicketKeys.stride
        func key(_ i: Int) -> UnsafeMutableRawPointer { keys + i * stride }
        func fresh(_ i: Int, expiring: Int64) -> Bool {
            key(i).storeBytes(of: expiring, as: Int64.self)
            return RAND_bytes((key(i) + TicketKeys.nameOffset).assumingMemoryBound(to: UInt8.self), Int32(stride - TicketKeys.nameOffset)) == 1
        }
        return withLock {
            if key(0).load(as: Int64.self) == 0 {
                guard fresh(0, expiring: now + lifetime) else { return false }
                // The first rotation below makes it the previous key as well as the current one.
                memcpy(key(2), key(0), stride)
            }
            if key(1).load(as: Int64.self) < now {
                memcpy(key(1), key(0), stride)
                memcpy(key(0), key(2), stride)
                guard fresh(2, expiring: 0) else { return false }
            }
            // The current key must decrypt at least until a session made now expires.
            if key(0).load(as: Int64.self) < now + lifetime { key(0).storeBytes(of: now + lifetime, as: Int64.self) }
            memcpy(local, keys, 2 * stride)
            return true
        }
    }

    // MARK: OpenSSL's external cache callbacks

    /// The cache of the context a connection started on (OpenSSL calls that context's callbacks, whatever
    /// context SNI chose since).
    private static func of(_ ssl: OpaquePointer?) -> SharedSessionCache? {
        TLSStream.stream(of: ssl).flatMap { TLSServerContext.of($0.sessionContext)?.sessionCache }
    }

    static func install(on ctx: OpaquePointer) {
        SSL_CTX_sess_set_new_cb(ctx, SharedSessionCache.newSession)
        SSL_CTX_sess_set_get_cb(ctx, SharedSessionCache.getSession)
        SSL_CTX_sess_set_remove_cb(ctx, SharedSessionCache.removeSession)
    }

    static let newSession: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
        guard let session, let cache = SharedSessionCache.of(ssl) else { return 0 }
        let len = i2d_SSL_SESSION(session, nil)
        guard len > 0, Int(len) <= derCapacity else { return 0 }
        var der = [UInt8](repeating: 0, count: Int(len))
        der.withUnsafeMutableBufferPointer { b in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            _ = i2d_SSL_SESSION(session, &p)
        }
        var idLen: UInt32 = 0
        guard let id = SSL_SESSION_get_id(session, &idLen) else { return 0 }
        let expires = Int64(SSL_SESSION_get_time(session)) + Int64(SSL_SESSION_get_timeout(session))
        der.withUnsafeBytes { cache.store(id: UnsafeRawBufferPointer(start: id, count: Int(idLen)), der: $0, expires: expires) }
        return 0   // the cache keeps a copy, not OpenSSL's reference
    }

    static let getSession: @convention(c) (OpaquePointer?, UnsafePointer<UInt8>?, Int32, UnsafeMutablePointer<Int32>?) -> OpaquePointer? = { ssl, id, len, copy in
        copy?.pointee = 0
        guard let id, let cache = SharedSessionCache.of(ssl),
              let der = cache.lookup(id: UnsafeRawBufferPointer(start: id, count: Int(len))) else { return nil }
        return der.withUnsafeBufferPointer { b in
            var p: UnsafePointer<UInt8>? = b.baseAddress
            return d2i_SSL_SESSION(nil, &p, b.count)
        }
    }

    static let removeSession: @convention(c) (OpaquePointer?, OpaquePointer?) -> Void = { ctx, session in
        guard let session, let cache = TLSServerContext.of(ctx)?.sessionCache else { return }
        var idLen: UInt32 = 0
        guard let id = SSL_SESSION_get_id(session, &idLen) else { return }
        cache.remove(id: UnsafeRawBufferPointer(start: id, count: Int(idLen)))
    }
}

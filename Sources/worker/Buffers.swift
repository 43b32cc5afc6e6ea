#if canImport(Glibc)
import Glibc
#endif
import TLS

/// A growable byte buffer with read and write indices; reads from a socket land directly in it.
final class ByteBuffer {
    private(set) var storage: [UInt8]
    private(set) var readIndex = 0
    private(set) var writeIndex = 0

    /// Storage is allocated on the first receive: an idle connection costs no buffer (as in nginx).
    private let initialCapacity: Int
    init(capacity: Int) {
        initialCapacity = max(capacity, 64)
        storage = []
    }

    /// The last receive got less than it had room for: the socket had nothing more at that moment.
    /// TCP hands over all it has, so the caller can wait for the next readiness event instead of
    /// spending a system call on EAGAIN. Over TLS a short read ends a record; unless OpenSSL holds more, what
    /// the kernel may still have is reported again on a level-triggered socket, not on an edge-triggered one.
    private(set) var drained = false

    var readable: Int { writeIndex - readIndex }
    var isEmpty: Bool { readIndex == writeIndex }

    /// Reads what the socket (through `tls`, when the connection has it) has, up to `limit` readable bytes in
    /// total. Returns recv's result (0: EOF, -1: errno).
    func receive(from fd: Int32, tls: TLSStream? = nil, limit: Int) -> Int {
        if storage.isEmpty { storage = ByteBuffer.uninitialized(initialCapacity) }
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
        if writeIndex == storage.count {
            if readIndex > 0 {
                storage.withUnsafeMutableBytes { p in
                    _ = memmove(p.baseAddress!, p.baseAddress! + readIndex, writeIndex - readIndex)
                }
                writeIndex -= readIndex
                readIndex = 0
            } else if storage.count < limit {
                storage += ByteBuffer.uninitialized(min(storage.count, limit - storage.count))
            } else {
                return -2   // full: the caller's limit is reached
            }
        }
        let room = min(storage.count - writeIndex, limit - readable)
        guard room > 0 else { return -2 }
        let w = writeIndex
        let n = storage.withUnsafeMutableBytes { p in
            tls.map { $0.read(into: p.baseAddress! + w, count: room) } ?? recv(fd, p.baseAddress! + w, room, 0)
        }
        if n > 0 { writeIndex += n }
        drained = n >= 0 && n < room && !(tls?.hasPending ?? false)
        return n
    }

    /// Its storage is the size it was made with: it can serve the next connection as a new one would.
    var poolable: Bool { readIndex == writeIndex && storage.count == initialCapacity }
    var capacity: Int { initialCapacity }

    /// Bytes only ever read after recv wrote them need no zeroing (a 16 kB memset per proxied request).
    static func uninitialized(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    func withReadable<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[readIndex..<writeIndex])) }
    }

    func consume(_ n: Int) {
        readIndex += n
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }

}

/// Upstream response buffers kept for the next proxied request: their 16 kB of storage is allocated once,
/// not per request (malloc of a block that size goes past glibc's fast paths).
final class BufferPool {
    private var spare: [ByteBuffer] = []
    private let capacity: Int
    private let limit: Int

    init(capacity: Int, keep limit: Int) {
        self.capacity = capacity
        self.limit = limit
    }

    func take() -> ByteBuffer { spare.popLast() ?? ByteBuffer(capacity: capacity) }

    func give(_ b: ByteBuffer) {
        // One that grew for an oversized head goes back to the allocator.
        guard spare.count < limit, b.storage.count <= capacity else { return }
        b.consume(b.readable)
        spare.append(b)
    }
}

/// Bytes waiting to go out on a non-blocking socket.
final class OutputQueue {
    private var pending: [UInt8] = []
    private var offset = 0

    var isEmpty: Bool { offset == pending.count }
    var count: Int { pending.count - offset }

    func append(_ s: String) {
        var s = s
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        if offset == pending.count {
            if pending.capacity == 0 { pending.reserveCapacity(1024) }
            pending.removeAll(keepingCapacity: true)
            offset = 0
        }
        pending.append(contentsOf: bytes)
    }

    /// Drained, and its storage no bigger than a response head needs: worth keeping for the next connection.
    var poolable: Bool { offset == pending.count && pending.capacity <= IdleBuffers.outputLimit }

    func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    func append(_ n: Int) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                      UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { d in
            var v = n.magnitude, k = d.count
            repeat {
                k -= 1
                d[k] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
                v /= 10
            } while v > 0
            if n < 0 { k -= 1; d[k] = 0x2D }
            append(UnsafeRawBufferPointer(rebasing: d[k...]))
        }
    }

    /// `n` in hexadecimal (a chunk's size), written in place.
    func appendHex(_ n: Int) {
        var digits: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &digits) { d in
            var v = UInt(n), k = d.count
            repeat {
                k -= 1
                let x = UInt8(truncatingIfNeeded: v & 15)
                d[k] = x < 10 ? 0x30 + x : 0x57 + x
                v >>= 4
            } while v > 0
            append(UnsafeRawBufferPointer(rebasing: d[k...]))
        }
    }

    /// One `Name: value` header line.
    func header(_ name: String, _ value: String) {
        append(name)
        append(": ")
        append(value)
        append("\r\n")
    }

    func header(_ name: String, _ value: Int) {
        append(name)
        append(": ")
        append(value)
        append("\r\n")
    }

    enum FlushResult { case drained, wouldBlock, failed }

    func flush(to fd: Int32, tls: TLSStream? = nil) -> FlushResult {
        while offset < pending.count {
            let n = pending.withUnsafeBytes { p in
                tls.map { $0.write(p.baseAddress! + offset, count: pending.count - offset) }
                    ?? send(fd, p.baseAddress! + offset, pending.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                offset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .failed
        }
        pending.removeAll(keepingCapacity: pending.capacity <= 65536)
        offset = 0
        return .drained
    }

}

/// Buffer objects, with their storage, that idle keep-alive connections gave back, for the next request on
/// any connection of this worker: a request then allocates neither the objects nor their storage. Only the
/// worker's event loop uses them (the checker thread has buffers of its own). Bounded: a burst of requests
/// leaves at most `keep` of each behind.
enum IdleBuffers {
    nonisolated(unsafe) private static var inputs: [ByteBuffer] = []
    nonisolated(unsafe) private static var inputSize = 0
    nonisolated(unsafe) private static var outputs: [OutputQueue] = []
    static let keep = 256
    /// Connections' buffer objects alive now (an input and an output per busy connection): with `pooled`,
    /// what `$vigil_buffers_held` and `$vigil_buffers_pooled` show, so a test can see that idle connections
    /// hold none.
    nonisolated(unsafe) static var held = 0
    static var pooled: Int { inputs.count + outputs.count }
    /// An output queue whose storage grew past this (a large response) goes back to the allocator.
    static let outputLimit = 16384

    static func takeInput(capacity: Int) -> ByteBuffer {
        if capacity == inputSize, let b = inputs.popLast() { return b }
        return ByteBuffer(capacity: capacity)
    }

    static func giveInput(_ b: ByteBuffer) {
        guard b.poolable else { return }
        // One size is pooled: the common client_header_buffer_size; another size replaces it.
        if b.capacity != inputSize { inputs.removeAll(); inputSize = b.capacity }
        if inputs.count < keep { inputs.append(b) }
    }

    static func takeOutput() -> OutputQueue { outputs.popLast() ?? OutputQueue() }

    static func giveOutput(_ q: OutputQueue) {
        if outputs.count < keep && q.poolable { outputs.append(q) }
    }

    /// The header lists of finished requests, for the parser to fill again. A list comes here while its
    /// request still holds it, so it is emptied when taken (then its only reference): at most 32 finished
    /// requests' headers wait here for reuse.
    nonisolated(unsafe) static var headerLists = ArrayPool<(name: String, value: String)>(keep: 32, maxCapacity: 64)

    /// Storage for the request heads sent upstream: one array per request in flight, kept across requests
    /// (at most 64 of at most 4 kB: a request with a larger head or an inline body allocates its own).
    nonisolated(unsafe) static var requestBytes = ArrayPool<UInt8>(keep: 64, maxCapacity: 4096)
}

/// Arrays kept for their storage: taken empty (emptied then, when the pool holds the only reference), given back
/// while their last user may still hold them. Bounded in number and in the capacity of each.
struct ArrayPool<Element> {
    private var arrays: [[Element]] = []
    let keep: Int
    let maxCapacity: Int

    init(keep: Int, maxCapacity: Int) {
        self.keep = keep
        self.maxCapacity = maxCapacity
    }

    mutating func take() -> [Element] {
        guard var a = arrays.popLast() else { return [] }
        a.removeAll(keepingCapacity: true)
        return a
    }

    mutating func give(_ a: [Element]) {
        if arrays.count < keep && a.capacity > 0 && a.capacity <= maxCapacity { arrays.append(a) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import HTTP
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

/// Bytes waiting to go out on a non-blocking socket. Kept in storage of its own, not an array: a response
/// head is some thirty appends, and each append to an array paid a uniqueness check and a retain and release
/// of its storage (a third of a proxied request's reference counting).
final class OutputQueue {
    private var base: UnsafeMutableRawPointer?
    private var capacity = 0
    private var end = 0
    /// How much of the bytes went out; they stay until the next append after all went, so a request sent
    /// upstream can be sent again (`rewind`).
    private(set) var sent = 0

    var isEmpty: Bool { sent == end }
    var count: Int { end - sent }

    deinit { free(base) }

    func append(_ s: String) {
        if let done: Void = s.utf8.withContiguousStorageIfAvailable({ append(UnsafeRawBufferPointer($0)) }) { return done }
        var copy = s
        copy.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let from = bytes.baseAddress, bytes.count > 0 else { return }
        let at = reserve(bytes.count)
        (base! + at).copyMemory(from: from, byteCount: bytes.count)
        end += bytes.count
    }

    /// Room for `n` more bytes; returns where they go. A drained queue starts over (and gives back storage a
    /// large response grew).
    private func reserve(_ n: Int) -> Int {
        if sent == end {
            sent = 0
            end = 0
            if capacity > 65536 { free(base); base = nil; capacity = 0 }
        }
        if end + n > capacity {
            capacity = max(end + n, capacity * 2, 1024)
            base = realloc(base, capacity)
            if base == nil { fatalError("out of memory") }
        }
        return end
    }

    /// Up to `n` bytes written in place by `fill` (which returns how many it wrote, or a negative error).
    func append(upTo n: Int, _ fill: (UnsafeMutableRawPointer) -> Int) -> Int {
        let at = reserve(n)
        let written = fill(base! + at)
        if written > 0 { end += written }
        return written
    }

    /// Empty, its storage kept.
    func clear() {
        sent = 0
        end = 0
    }

    /// The bytes that went out are due again (a request resent to the next upstream).
    func rewind() { sent = 0 }

    /// A copy of everything appended since the queue was last drained or cleared.
    var bytes: [UInt8] { base.map { Array(UnsafeRawBufferPointer(start: $0, count: end)) } ?? [] }

    /// Drained, and its storage no bigger than a response head needs: worth keeping for the next connection.
    var poolable: Bool { sent == end && capacity <= IdleBuffers.outputLimit }

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

    /// One header line from bytes as they came (a client's header passed upstream).
    func header(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
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
        while sent < end {
            let p = base! + sent, n = end - sent
            let written = tls.map { $0.write(p, count: n) } ?? send(fd, p, n, Int32(MSG_NOSIGNAL))
            if written > 0 {
                sent += written
                continue
            }
            if written < 0 && errno == EINTR { continue }
            if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .failed
        }
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

    /// The header blocks and field lists of finished requests, for the parser to fill again. They come here
    /// while their request still holds them, so they are emptied when taken (then their only reference): at
    /// most 32 finished requests' heads wait here for reuse.
    nonisolated(unsafe) private static var headBlocks = ArrayPool<UInt8>(keep: 32, maxCapacity: 4096)
    nonisolated(unsafe) private static var fieldLists = ArrayPool<HeaderField>(keep: 32, maxCapacity: 64)

    static func takeHeadStorage() -> HeadStorage { HeadStorage(block: headBlocks.take(), fields: fieldLists.take()) }

    static func giveHeadStorage(block: [UInt8], fields: [HeaderField]) {
        headBlocks.give(block)
        fieldLists.give(fields)
    }
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

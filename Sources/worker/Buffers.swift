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
    /// spending a system call on EAGAIN. Over TLS a short read ends one record, and OpenSSL (without
    /// read-ahead) has read nothing past it: the kernel may hold more, which a level-triggered socket
    /// reports again, but an edge-triggered one does not.
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
        drained = n >= 0 && n < room && (tls?.pending ?? 0) == 0
        return n
    }

    /// Bytes only ever read after recv wrote them need no zeroing (a 16 kB memset per proxied request).
    private static func uninitialized(_ count: Int) -> [UInt8] {
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
        if offset == pending.count { pending.removeAll(keepingCapacity: true); offset = 0 }
        pending.append(contentsOf: bytes)
    }

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

#if canImport(Glibc)
import Glibc
#endif

/// A growable byte buffer with read and write indices; reads from a socket land directly in it.
public final class ByteBuffer {
    private(set) var storage: [UInt8]
    private(set) var readIndex = 0
    private(set) var writeIndex = 0

    /// Storage is allocated on the first receive: an idle connection costs no buffer (as in nginx).
    private let initialCapacity: Int
    public init(capacity: Int) {
        initialCapacity = max(capacity, 64)
        storage = []
    }

    /// The last receive got less than it had room for: the socket had nothing more at that moment.
    /// TCP hands over all it has, so the caller can wait for the next readiness event instead of
    /// spending a system call on EAGAIN. Over TLS a short read ends a record; unless OpenSSL holds more, what
    /// the kernel may still have is reported again on a level-triggered socket, not on an edge-triggered one.
    public private(set) var drained = false

    public var readable: Int { writeIndex - readIndex }
    public var isEmpty: Bool { readIndex == writeIndex }

    /// Reads what the socket (through `tls`, when the connection has it) has, up to `limit` readable bytes in
    /// total. Returns recv's result (0: EOF, -1: errno).
    /// `file`: `fd` is a regular file (read(2)), not a socket.
    public func receive(from fd: Int32, tls: SecureStream? = nil, limit: Int, file: Bool = false) -> Int {
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
            tls.map { $0.read(into: p.baseAddress! + w, count: room) } ?? (file ? read(fd, p.baseAddress! + w, room) : recv(fd, p.baseAddress! + w, room, 0))
        }
        if n > 0 { writeIndex += n }
        drained = n >= 0 && n < room && !(tls?.hasPending ?? false)
        return n
    }

    /// Its storage is the size it was made with: it can serve the next connection as a new one would.
    public var poolable: Bool { readIndex == writeIndex && storage.count == initialCapacity }
    public var capacity: Int { initialCapacity }
    /// What its storage holds now (a buffer grows for an oversized head).
    public var storageCapacity: Int { storage.count }

    /// Bytes only ever read after recv wrote them need no zeroing (a 16 kB memset per proxied request).
    public static func uninitialized(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    /// Bytes added at the end (what another buffer held, handed over).
    public func append(_ bytes: UnsafeRawBufferPointer) {
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
        if storage.count < writeIndex + bytes.count { storage += ByteBuffer.uninitialized(writeIndex + bytes.count - storage.count) }
        storage.withUnsafeMutableBytes { p in
            if let from = bytes.baseAddress { (p.baseAddress! + writeIndex).copyMemory(from: from, byteCount: bytes.count) }
        }
        writeIndex += bytes.count
    }

    public func withReadable<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[readIndex..<writeIndex])) }
    }

    public func consume(_ n: Int) {
        readIndex += n
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }
}


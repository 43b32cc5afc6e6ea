#if canImport(Glibc)
import Glibc
#endif

/// Bytes waiting to go out on a non-blocking socket. Kept in storage of its own, not an array: a response
/// head is some thirty appends, and each append to an array paid a uniqueness check and a retain and release
/// of its storage (a third of a proxied request's reference counting).
public final class OutputQueue {
    // Internal to the module but visible to inlined code: the appends below inline into every head writer.
    @usableFromInline var base: UnsafeMutableRawPointer?
    @usableFromInline var capacity = 0
    @usableFromInline var end = 0
    /// How much of the bytes went out; they stay until the next append after all went, so a request sent
    /// upstream can be sent again (`rewind`).
    @usableFromInline var sentBytes = 0
    public var sent: Int { sentBytes }

    public var isEmpty: Bool { sentBytes == end }
    public var count: Int { end - sentBytes }

    public init() {}

    deinit { free(base) }

    @inlinable public func append(_ s: String) {
        s.withUTF8Bytes { append(UnsafeRawBufferPointer($0)) }
    }

    @inlinable public func append(_ bytes: UnsafeRawBufferPointer) {
        guard let from = bytes.baseAddress, bytes.count > 0 else { return }
        let at = reserve(bytes.count)
        OutputQueue.copy(to: base.unsafelyUnwrapped + at, from: from, count: bytes.count)
        end += bytes.count
    }

    /// Most appends are a few bytes (a header name, a param's value): copied inline as two overlapping words,
    /// where a call to memmove cost more than the copy. Both words are read before either is written.
    @inlinable @inline(__always)
    static func copy(to dst: UnsafeMutableRawPointer, from src: UnsafeRawPointer, count n: Int) {
        switch n {
        case 8...16:
            let head = src.loadUnaligned(as: UInt64.self), tail = src.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
            dst.storeBytes(of: head, as: UInt64.self)
            dst.storeBytes(of: tail, toByteOffset: n - 8, as: UInt64.self)
        case 4..<8:
            let head = src.loadUnaligned(as: UInt32.self), tail = src.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
            dst.storeBytes(of: head, as: UInt32.self)
            dst.storeBytes(of: tail, toByteOffset: n - 4, as: UInt32.self)
        case 1..<4:
            let first = src.load(as: UInt8.self), middle = src.load(fromByteOffset: n / 2, as: UInt8.self)
            let last = src.load(fromByteOffset: n - 1, as: UInt8.self)
            dst.storeBytes(of: first, as: UInt8.self)
            dst.storeBytes(of: middle, toByteOffset: n / 2, as: UInt8.self)
            dst.storeBytes(of: last, toByteOffset: n - 1, as: UInt8.self)
        default:
            dst.copyMemory(from: src, byteCount: n)
        }
    }

    /// Room for `n` more bytes; returns where they go. The common case (room left, not drained) is inlined.
    @inlinable func reserve(_ n: Int) -> Int {
        if sentBytes == end || end + n > capacity { makeRoom(n) }
        return end
    }

    /// A drained queue starts over (and gives back storage a large response grew); a full one grows.
    @usableFromInline func makeRoom(_ n: Int) {
        if sentBytes == end {
            sentBytes = 0
            end = 0
            if capacity > 65536 { free(base); base = nil; capacity = 0 }
        }
        if end + n > capacity {
            capacity = max(end + n, capacity * 2, 1024)
            base = realloc(base, capacity)
            if base == nil { fatalError("out of memory") }
        }
    }

    /// Up to `n` bytes written in place by `fill` (which returns how many it wrote, or a negative error).
    public func append(upTo n: Int, _ fill: (UnsafeMutableRawPointer) -> Int) -> Int {
        let at = reserve(n)
        let written = fill(base! + at)
        if written > 0 { end += written }
        return written
    }

    /// Empty, its storage kept.
    public func clear() {
        sentBytes = 0
        end = 0
    }

    /// Bytes already appended, rewritten in place (a length known only once what it measures is written).
    public func overwrite(at offset: Int, _ bytes: UnsafeRawBufferPointer) {
        precondition(offset + bytes.count <= end)
        if let from = bytes.baseAddress { (base.unsafelyUnwrapped + offset).copyMemory(from: from, byteCount: bytes.count) }
    }

    /// One byte already appended, rewritten in place.
    @inlinable public func overwrite(at offset: Int, _ byte: UInt8) {
        precondition(offset < end)
        base.unsafelyUnwrapped.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
    }

    /// Opens `n` bytes at `offset` by moving what follows it along (a length written ahead of what it measures,
    /// which turned out to need more bytes than were kept for it). The queue holds bytes past `offset`.
    public func open(_ n: Int, at offset: Int) {
        precondition(offset >= sentBytes && offset < end)
        _ = reserve(n)
        let from = base.unsafelyUnwrapped + offset
        (from + n).copyMemory(from: UnsafeRawPointer(from), byteCount: end - offset)
        end += n
    }

    /// Drops what was appended past the first `n` bytes.
    public func truncate(to n: Int) {
        precondition(n <= end && n >= sentBytes)
        end = n
    }

    /// The bytes that went out are due again (a request resent to the next upstream).
    public func rewind() { sentBytes = 0 }

    /// What is still to go out.
    public func withUnsent<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        body(UnsafeRawBufferPointer(start: base.map { $0 + sentBytes }, count: end - sentBytes))
    }

    /// A copy of everything appended since the queue was last drained or cleared.
    public var bytes: [UInt8] { base.map { Array(UnsafeRawBufferPointer(start: $0, count: end)) } ?? [] }

    /// An output queue whose storage grew past this (a large response) goes back to the allocator.
    public static let poolableCapacity = 16384

    /// Drained, and its storage no bigger than a response head needs: worth keeping for the next connection.
    public var poolable: Bool { sentBytes == end && capacity <= OutputQueue.poolableCapacity }

    public func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    public func append(_ n: Int) {
        // Written in place, from the last digit back: no buffer on the side to copy from. An Int's magnitude
        // has at most 19 digits, so `bound` stops at 10^19, within UInt.
        var v = n.magnitude, width = n < 0 ? 2 : 1, bound: UInt = 10
        while v >= bound { width += 1; bound &*= 10 }
        let at = reserve(width)
        let p = base.unsafelyUnwrapped + at
        var k = width
        repeat {
            k -= 1
            p.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + v % 10), toByteOffset: k, as: UInt8.self)
            v /= 10
        } while v > 0
        if n < 0 { p.storeBytes(of: 0x2D, as: UInt8.self) }
        end += width
    }

    /// `n` in hexadecimal (a chunk's size), written in place.
    public func appendHex(_ n: Int) {
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

    /// `limited`: `limit` bytes went and more wait.
    public enum FlushResult { case drained, wouldBlock, failed, limited }

    public func flush(to fd: Int32, tls: SecureStream? = nil, limit: Int = .max) -> FlushResult {
        var budget = limit
        while sentBytes < end {
            if budget <= 0 { return .limited }
            let p = base! + sentBytes, n = min(end - sentBytes, budget)
            let written = tls.map { $0.write(p, count: n) } ?? send(fd, p, n, Int32(MSG_NOSIGNAL))
            if written > 0 {
                sentBytes += written
                budget -= written
                continue
            }
            if written < 0 && errno == EINTR { continue }
            if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .failed
        }
        return .drained
    }
}


#if canImport(Glibc)
import Glibc
#endif

/// The decoder's dynamic table (RFC 7541 §2.3.2, §4). Compact: the entries' names and values lie back to
/// back, oldest first, in one byte buffer, and a ring of (offset, name length, value length) records indexes
/// them. Neither is allocated before the first insert, so a connection whose peer never indexes a field
/// holds no table storage at all. An entry's bytes are always contiguous (handed over as they are): when the
/// room at the end of the buffer runs out, the live bytes (less than the table's size) move to its start, and
/// the buffer grows, at most to the table's size, only where they would not fit with the new entry.
///
/// A struct of raw pointers: its owner (`HPACKDecoder`) frees it.
struct HPACKDynamicTable {
    struct Entry {
        var offset: UInt32
        var nameCount: UInt32
        var valueCount: UInt32
    }

    /// The size the encoder set (§6.3), at most the decoder's limit.
    private(set) var maxSize: Int
    /// The sum of name + value + 32 over the entries (§4.1).
    private(set) var size = 0
    private(set) var count = 0

    private var bytes: UnsafeMutableRawPointer?
    private var byteCapacity = 0
    /// Where the newest entry's bytes end; the oldest's start is its record's offset.
    private var byteEnd = 0
    private var entries: UnsafeMutablePointer<Entry>?
    /// A power of two, so that a ring position is masked, not divided.
    private var entryCapacity = 0
    /// The ring position of the oldest entry.
    private var oldest = 0

    init(maxSize: Int) { self.maxSize = maxSize }

    /// What the table holds allocated, for memory accounting.
    var storageBytes: Int { byteCapacity + entryCapacity * MemoryLayout<Entry>.stride }

    mutating func deallocate() {
        bytes?.deallocate()
        entries?.deallocate()
        bytes = nil
        entries = nil
        byteCapacity = 0
        entryCapacity = 0
        size = 0
        count = 0
        byteEnd = 0
        oldest = 0
    }

    /// Entry `k` (0: the newest, dynamic index 62), valid until the table next changes.
    @inline(__always) func entry(_ k: Int) -> (name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let e = entries.unsafelyUnwrapped[(oldest + count - 1 - k) & (entryCapacity - 1)]
        let name = UnsafeRawPointer(bytes.unsafelyUnwrapped) + Int(e.offset)
        return (UnsafeRawBufferPointer(start: name, count: Int(e.nameCount)),
                UnsafeRawBufferPointer(start: name + Int(e.nameCount), count: Int(e.valueCount)))
    }

    /// A size update (§6.3): entries are evicted to fit. A table set to 0 also gives its storage back: the
    /// peer said it will index nothing.
    mutating func setMaxSize(_ n: Int) {
        maxSize = n
        while size > maxSize { evictOldest() }
        if n == 0 { deallocate() }
    }

    private mutating func evictOldest() {
        let e = entries.unsafelyUnwrapped[oldest]
        size -= Int(e.nameCount) + Int(e.valueCount) + HPACK.entryOverhead
        oldest = (oldest + 1) & (entryCapacity - 1)
        count -= 1
        if count == 0 { byteEnd = 0; oldest = 0 }
    }

    /// Adds an entry (§4.4): older ones are evicted until it fits, and one larger than the table empties it and
    /// is not added. `name` and `value` must not point into the table.
    mutating func insert(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let entrySize = name.count + value.count + HPACK.entryOverhead
        guard entrySize <= maxSize else {
            while count > 0 { evictOldest() }
            return
        }
        while size + entrySize > maxSize { evictOldest() }
        let n = name.count + value.count
        // An empty field still needs a buffer for its entry's pointers to point into.
        if bytes == nil || byteEnd + n > byteCapacity { makeRoom(max(n, 1)) }
        if count == entryCapacity { growEntries() }
        let at = bytes.unsafelyUnwrapped + byteEnd
        if name.count > 0 { at.copyMemory(from: name.baseAddress!, byteCount: name.count) }
        if value.count > 0 { (at + name.count).copyMemory(from: value.baseAddress!, byteCount: value.count) }
        entries.unsafelyUnwrapped[(oldest + count) & (entryCapacity - 1)] =
            Entry(offset: UInt32(byteEnd), nameCount: UInt32(name.count), valueCount: UInt32(value.count))
        byteEnd += n
        count += 1
        size += entrySize
    }

    /// Room for `n` more bytes at the end: the live bytes move to the start of the buffer, which grows
    /// (doubling, at most to the table's size: the live bytes never reach it) where they would not fit.
    private mutating func makeRoom(_ n: Int) {
        let start = count > 0 ? Int(entries.unsafelyUnwrapped[oldest].offset) : 0
        let live = byteEnd - start
        var target = bytes
        if live + n > byteCapacity {
            byteCapacity = max(live + n, min(max(2 * byteCapacity, 256), maxSize))
            target = UnsafeMutableRawPointer.allocate(byteCount: byteCapacity, alignment: 1)
        }
        if live > 0 { memmove(target!, bytes! + start, live) }
        if target != bytes {
            bytes?.deallocate()
            bytes = target
        }
        for k in 0..<count {
            entries.unsafelyUnwrapped[(oldest + k) & (entryCapacity - 1)].offset -= UInt32(start)
        }
        byteEnd = live
    }

    private mutating func growEntries() {
        let capacity = max(2 * entryCapacity, 8)
        let grown = UnsafeMutablePointer<Entry>.allocate(capacity: capacity)
        for k in 0..<count { (grown + k).initialize(to: entries.unsafelyUnwrapped[(oldest + k) & (entryCapacity - 1)]) }
        entries?.deallocate()
        entries = grown
        entryCapacity = capacity
        oldest = 0
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A decoded header field: bytes valid only during the call that hands it over (they point into the block,
/// the static table, the dynamic table or the decoder's scratch buffer).
public struct HPACKField {
    public let name: UnsafeRawBufferPointer
    public let value: UnsafeRawBufferPointer
    /// Sent as "literal never indexed" (§6.2.3): a proxy passing the field on must keep it so.
    public let neverIndexed: Bool
}

/// The HPACK decoder of one connection (RFC 7541): its dynamic table and the limits we advertised. A header
/// block is decoded whole (the caller joins HEADERS and CONTINUATION payloads) and each field goes to the
/// caller's closure as it is read. Nothing is allocated per field: indexed fields point into the tables, raw
/// literals into the block, and Huffman-coded strings are decoded into one scratch buffer kept for the next
/// block. The table's storage is allocated on the peer's first insert, the scratch buffer on its first
/// Huffman-coded string; an idle connection that has seen neither holds only this object.
public final class HPACKDecoder {
    private var table: HPACKDynamicTable
    /// Our SETTINGS_HEADER_TABLE_SIZE: the most a size update may set.
    public private(set) var maxTableSizeLimit: Int
    /// The most a block's fields may come to, counted as name + value + 32 per field (the server derives it
    /// from large_client_header_buffers; it advertises no SETTINGS_MAX_HEADER_LIST_SIZE). Past it the remaining
    /// fields are decoded (the table stays in step) but not handed over, and the block ends in
    /// `.headerListTooLarge`; that also bounds what a block of many references to one large entry costs.
    public let maxHeaderListSize: Int
    /// We lowered the limit below the table's size: the next block must start with a size update (§4.2).
    private var sizeUpdateRequired = false
    private var scratch: UnsafeMutableRawPointer?
    private var scratchCapacity = 0

    /// `maxTableSize`: the SETTINGS_HEADER_TABLE_SIZE in force when the connection starts (the protocol's
    /// 4096 until a SETTINGS that changes it is acknowledged).
    public init(maxTableSize: Int = HPACK.defaultTableSize, maxHeaderListSize: Int = 65536) {
        table = HPACKDynamicTable(maxSize: maxTableSize)
        maxTableSizeLimit = maxTableSize
        self.maxHeaderListSize = maxHeaderListSize
    }

    deinit {
        table.deallocate()
        free(scratch)
    }

    /// The dynamic table's size as §4.1 counts it, its entry count and the size the peer set.
    public var tableSize: Int { table.size }
    public var tableCount: Int { table.count }
    public var tableMaxSize: Int { table.maxSize }
    /// The bytes this decoder holds allocated beyond itself (table and scratch buffer), for memory accounting.
    public var storageBytes: Int { table.storageBytes + scratchCapacity }

    /// A new SETTINGS_HEADER_TABLE_SIZE has been acknowledged. A lower one than the table's size shrinks the
    /// table now and requires the next block to start with a size update that fits it.
    public func setMaxTableSizeLimit(_ n: Int) {
        maxTableSizeLimit = n
        if n < table.maxSize {
            table.setMaxSize(n)
            sizeUpdateRequired = true
        }
    }

    /// Gives back the scratch buffer (an idle connection's memory); the next Huffman-coded string allocates it again.
    public func releaseScratch() {
        free(scratch)
        scratch = nil
        scratchCapacity = 0
    }

    /// Decodes one complete header block, handing each field to `emit` in order. A thrown error other than
    /// `.headerListTooLarge` leaves the table out of step with the peer's: the connection must end.
    public func decode(_ block: UnsafeRawBufferPointer, _ emit: (HPACKField) -> Void) throws(HPACKError) {
        var i = 0
        var listSize = 0
        var fieldSeen = false
        var tooLarge = false
        while i < block.count {
            let first = block[i]
            if first & 0xE0 == 0x20 {
                // Dynamic table size update (§6.3).
                guard !fieldSeen else { throw .tableSizeUpdateAfterField }
                let n = try HPACK.decodeInteger(block, &i, prefixBits: 5)
                guard n <= maxTableSizeLimit else { throw .tableSizeUpdateTooLarge }
                table.setMaxSize(n)
                sizeUpdateRequired = false
                continue
            }
            if sizeUpdateRequired { throw .tableSizeUpdateMissing }
            fieldSeen = true
            let name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer
            var neverIndexed = false
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                (name, value) = try entry(HPACK.decodeInteger(block, &i, prefixBits: 7))
            } else {
                // Literal with incremental indexing (§6.2.1, 01), without indexing (0000) or never indexed (0001).
                let indexing = first & 0x40 != 0
                neverIndexed = !indexing && first & 0x10 != 0
                let index = try HPACK.decodeInteger(block, &i, prefixBits: indexing ? 6 : 4)
                // Scratch bytes in use: a decoded (or copied) name first, then a decoded value.
                var used = 0
                var literalName: UnsafeRawBufferPointer
                var nameInScratch = false
                if index == 0 {
                    let s = try HPACK.stringLiteral(block, &i)
                    literalName = s.bytes
                    if s.huffman {
                        used = try huffmanDecode(s.bytes, at: 0)
                        nameInScratch = true
                    }
                } else {
                    literalName = try entry(index).name
                    // Inserting may evict the very entry the name comes from (§4.4): it is copied out first.
                    if indexing && index > HPACK.staticCount {
                        reserveScratch(literalName.count)
                        if literalName.count > 0 { scratch!.copyMemory(from: literalName.baseAddress!, byteCount: literalName.count) }
                        used = literalName.count
                        nameInScratch = true
                    }
                }
                let s = try HPACK.stringLiteral(block, &i)
                var literalValue = s.bytes
                if s.huffman {
                    let n = try huffmanDecode(s.bytes, at: used)
                    literalValue = UnsafeRawBufferPointer(start: scratch! + used, count: n)
                }
                // The scratch buffer may have moved while the value was decoded.
                if nameInScratch { literalName = UnsafeRawBufferPointer(start: scratch, count: used) }
                if indexing { table.insert(name: literalName, value: literalValue) }
                (name, value) = (literalName, literalValue)
            }
            listSize += name.count + value.count + HPACK.entryOverhead
            if listSize > maxHeaderListSize { tooLarge = true }
            if !tooLarge { emit(HPACKField(name: name, value: value, neverIndexed: neverIndexed)) }
        }
        if sizeUpdateRequired { throw .tableSizeUpdateMissing }
        if tooLarge { throw .headerListTooLarge }
    }

    /// The static or dynamic entry at `index` (§2.3.3).
    @inline(__always)
    private func entry(_ index: Int) throws(HPACKError) -> (name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if index == 0 { throw .zeroIndex }
        if index <= HPACK.staticCount { return HPACK.staticEntry(index) }
        guard index - HPACK.staticCount <= table.count else { throw .indexOutOfRange }
        return table.entry(index - HPACK.staticCount - 1)
    }

    /// Decodes a Huffman-coded string into the scratch buffer at `offset` (what is before it kept); returns its length.
    private func huffmanDecode(_ s: UnsafeRawBufferPointer, at offset: Int) throws(HPACKError) -> Int {
        reserveScratch(offset + HPACKHuffman.maxDecodedCount(s.count))
        return try HPACKHuffman.decode(s, into: scratch! + offset)
    }

    /// Room for `n` bytes in the scratch buffer, its contents kept.
    @inline(__always) private func reserveScratch(_ n: Int) {
        guard n > scratchCapacity || scratch == nil else { return }
        let capacity = max(n, 2 * scratchCapacity, 64)
        guard let grown = realloc(scratch, capacity) else { fatalError("out of memory") }
        scratch = grown
        scratchCapacity = capacity
    }

    /// The table's own storage (the scratch buffer left out), for tests of when it is allocated.
    var tableStorageBytes: Int { table.storageBytes }

    /// Dynamic entry `k` (0: the newest) copied out, for tests.
    func tableEntry(_ k: Int) -> (name: [UInt8], value: [UInt8]) {
        let e = table.entry(k)
        return (Array(e.name), Array(e.value))
    }
}

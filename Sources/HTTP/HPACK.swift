import Core

/// HPACK (RFC 7541), the header compression of HTTP/2: what the decoder and the encoder share. The static
/// table, the integer and string primitives, and the errors. Pure: no I/O, no Strings on the hot path.
public enum HPACK {
    /// The dynamic table's size before any SETTINGS_HEADER_TABLE_SIZE (RFC 7540 §6.5.2).
    public static let defaultTableSize = 4096
    /// What an entry costs beyond its name and value (§4.1); SETTINGS_MAX_HEADER_LIST_SIZE counts fields alike.
    public static let entryOverhead = 32
    /// Integers past 32 bits are refused: no field, index or table size needs more, and the bound keeps a
    /// run of continuation bytes from being read at all.
    static let maxInteger = Int(UInt32.max)
    /// A 32-bit value takes at most five continuation bytes after the prefix (five times seven bits).
    static let maxContinuationBytes = 5

    /// Appendix A. StaticString: the bytes live in the binary, nothing is built at run time.
    static let staticTable: [(name: StaticString, value: StaticString)] = [
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
        (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
        (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
        ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""), ("cache-control", ""),
        ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
        ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""), ("date", ""),
        ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""), ("if-match", ""),
        ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""),
        ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""), ("proxy-authenticate", ""),
        ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""),
        ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
        ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
    ]
    /// Indices 1...61 are the static table's; the dynamic table's start after them.
    public static let staticCount = 61

    @inline(__always) static func bytes(_ s: StaticString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)
    }

    /// The static entry at `index` (1...61) as bytes in the binary.
    @inline(__always) static func staticEntry(_ index: Int) -> (name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let e = staticTable[index - 1]
        return (bytes(e.name), bytes(e.value))
    }

    /// For the encoder: the static indices by name length, the first entry of each name only (a name the
    /// table has twice, such as `:status`, is found at its first index).
    static let staticNamesByLength: [[UInt8]] = {
        var byLength = [[UInt8]](repeating: [], count: 28)
        for k in 0..<staticTable.count {
            let name = staticTable[k].name
            if k > 0 && name.utf8CodeUnitCount == staticTable[k - 1].name.utf8CodeUnitCount
                && bytes(name).equals(bytes(staticTable[k - 1].name)) { continue }
            byLength[name.utf8CodeUnitCount].append(UInt8(k + 1))
        }
        return byLength
    }()

    /// The static index of a name (1...61), or 0 where the static table lacks it.
    public static func staticNameIndex(_ name: UnsafeRawBufferPointer) -> Int {
        guard name.count < staticNamesByLength.count else { return 0 }
        for index in staticNamesByLength[name.count] where bytes(staticTable[Int(index) - 1].name).equals(name) {
            return Int(index)
        }
        return 0
    }

    // MARK: Integers (§5.1)

    /// An integer with an `prefixBits`-bit prefix starting at `block[i]` (the bits above the prefix are the
    /// caller's); `i` is advanced past it.
    @inline(__always)
    static func decodeInteger(_ block: UnsafeRawBufferPointer, _ i: inout Int, prefixBits: Int) throws(HPACKError) -> Int {
        guard i < block.count else { throw .truncated }
        let mask = (1 << prefixBits) - 1
        var value = Int(block[i]) & mask
        i += 1
        if value < mask { return value }
        var shift = 0
        while true {
            guard i < block.count else { throw .truncated }
            guard shift < 7 * maxContinuationBytes else { throw .integerOverflow }
            let b = Int(block[i])
            i += 1
            value += (b & 0x7F) << shift
            guard value <= maxInteger else { throw .integerOverflow }
            if b & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// Appends `value` with an `prefixBits`-bit prefix; `flags` are the bits above the prefix in the first byte.
    @inline(__always) static func appendInteger(_ value: Int, prefixBits: Int, flags: UInt8, to out: inout [UInt8]) {
        let mask = (1 << prefixBits) - 1
        if value < mask {
            out.append(flags | UInt8(value))
            return
        }
        out.append(flags | UInt8(mask))
        var rest = value - mask
        while rest >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        out.append(UInt8(rest))
    }

    // MARK: Strings (§5.2)

    /// A string literal's header at `block[i]`: its bytes (still Huffman-coded where `huffman`), within the
    /// block; `i` is advanced past them.
    @inline(__always)
    static func stringLiteral(_ block: UnsafeRawBufferPointer, _ i: inout Int) throws(HPACKError) -> (bytes: UnsafeRawBufferPointer, huffman: Bool) {
        guard i < block.count else { throw .truncated }
        let huffman = block[i] & 0x80 != 0
        let length = try decodeInteger(block, &i, prefixBits: 7)
        guard length <= block.count - i else { throw .stringPastBlock }
        let s = UnsafeRawBufferPointer(rebasing: block[i..<(i + length)])
        i += length
        return (s, huffman)
    }

    /// Appends `s` as a string literal, Huffman-coded where that is shorter.
    static func appendString(_ s: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let coded = HPACKHuffman.encodedCount(s)
        if coded < s.count {
            appendInteger(coded, prefixBits: 7, flags: 0x80, to: &out)
            HPACKHuffman.encode(s, count: coded, to: &out)
        } else {
            appendInteger(s.count, prefixBits: 7, flags: 0, to: &out)
            out.append(contentsOf: s)
        }
    }
}

/// Why a header block could not be decoded. Every case but `headerListTooLarge` is a COMPRESSION_ERROR
/// (RFC 7540 §4.3): the decoder's state can no longer be trusted and the connection must go.
public enum HPACKError: Error, Equatable, Sendable {
    /// An indexed field or name at index 0 (§6.1).
    case zeroIndex
    /// An index past the static and the dynamic table.
    case indexOutOfRange
    /// An integer past 32 bits, or with more continuation bytes than one of 32 bits needs.
    case integerOverflow
    /// The block ends inside a representation (its first byte's integer, a name, a length).
    case truncated
    /// A string literal's length runs past the block.
    case stringPastBlock
    /// Huffman padding of more than 7 bits (§5.2).
    case huffmanPaddingTooLong
    /// Huffman padding that is not the EOS code's leading ones (a cut code among them).
    case huffmanPaddingInvalid
    /// The EOS symbol inside a Huffman-coded string (§5.2).
    case huffmanEOS
    /// A dynamic table size update past our SETTINGS_HEADER_TABLE_SIZE (§6.3).
    case tableSizeUpdateTooLarge
    /// A dynamic table size update after a field of the block (§4.2: only at its start).
    case tableSizeUpdateAfterField
    /// We lowered SETTINGS_HEADER_TABLE_SIZE below the table's size and the block did not start with an
    /// update to fit it (§4.2).
    case tableSizeUpdateMissing
    /// The decoded fields exceed the header list limit. The block was still decoded to its end, so the dynamic
    /// table is in step; the server ends the connection all the same, with ENHANCE_YOUR_CALM, as nginx does
    /// for a header too large.
    case headerListTooLarge
}

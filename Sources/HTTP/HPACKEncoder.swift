/// The HPACK encoder for responses, as nginx's: it never indexes, so the peer's decoder keeps no table for us
/// and we keep none for it. `:status` is an indexed field where the static table has the code, otherwise a
/// literal with the static name; other fields are literals without indexing (never indexed where the caller
/// says the value is sensitive) with the static table's name index where it has the name. Strings are
/// Huffman-coded where that is shorter. The only state is whether a dynamic table size update is owed.
public struct HPACKEncoder {
    /// The table size our encoder has announced: 4096 until the peer lowers SETTINGS_HEADER_TABLE_SIZE.
    private var announcedTableSize = HPACK.defaultTableSize
    private var sizeUpdatePending = false

    public init() {}

    /// The peer's SETTINGS_HEADER_TABLE_SIZE. Below the size our encoder announced, the peer's decoder
    /// expects a size update at the start of the next block (§4.2); we use no table, so the update is to 0
    /// and no later setting needs another.
    public mutating func peerTableSizeChanged(to n: Int) {
        if n < announcedTableSize {
            announcedTableSize = 0
            sizeUpdatePending = true
        }
    }

    /// Starts a header block: writes the size update owed, if any. Call once before each block's fields.
    public mutating func beginBlock(into out: inout [UInt8]) {
        guard sizeUpdatePending else { return }
        sizeUpdatePending = false
        Self.appendTableSizeUpdate(0, to: &out)
    }

    /// A dynamic table size update (§6.3). Only at the start of a block.
    public static func appendTableSizeUpdate(_ n: Int, to out: inout [UInt8]) {
        HPACK.appendInteger(n, prefixBits: 5, flags: 0x20, to: &out)
    }

    /// `:status`: the static entries 8...14 for 200, 204, 206, 304, 400, 404 and 500, otherwise a literal
    /// without indexing, name index 8, and the three digits.
    public static func appendStatus(_ status: Int, to out: inout [UInt8]) {
        switch status {
        case 200: out.append(0x80 | 8)
        case 204: out.append(0x80 | 9)
        case 206: out.append(0x80 | 10)
        case 304: out.append(0x80 | 11)
        case 400: out.append(0x80 | 12)
        case 404: out.append(0x80 | 13)
        case 500: out.append(0x80 | 14)
        default:
            precondition((100...999).contains(status), "status \(status) is not three digits")
            out.append(8)
            var digits: (UInt8, UInt8, UInt8) = (UInt8(48 + status / 100), UInt8(48 + status / 10 % 10), UInt8(48 + status % 10))
            withUnsafeBytes(of: &digits) { HPACK.appendString($0, to: &out) }
        }
    }

    /// A field as a literal without indexing, or never indexed where `sensitive` (a proxy passing on a field
    /// that came never indexed, or credentials). `name` must be lowercase (RFC 9113 §8.2.1): the caller's job,
    /// checked in debug builds.
    public static func appendField(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, sensitive: Bool = false,
                                   to out: inout [UInt8]) {
        assert(!name.contains { $0 >= 0x41 && $0 <= 0x5A }, "HPACK: a field name with an uppercase letter")
        let flags: UInt8 = sensitive ? 0x10 : 0
        let index = HPACK.staticNameIndex(name)
        HPACK.appendInteger(index, prefixBits: 4, flags: flags, to: &out)
        if index == 0 { HPACK.appendString(name, to: &out) }
        HPACK.appendString(value, to: &out)
    }
}

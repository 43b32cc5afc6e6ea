#if canImport(Glibc)
import Glibc
#endif
import Core
import HTTP

/// A response head's (or trailers') fields as HTTP/1 lines, the form the response sink writes them in, with
/// where each name and value lies: HTTP/2 sends them lowercased, without the connection's own fields.
struct H2Fields {
    private var block: [UInt8]
    private var lines: [(name: Range<Int>, value: Range<Int>)] = []

    init(lines text: String) { self.init(Array(text.utf8)) }

    init(_ bytes: [UInt8]) {
        block = bytes
        var found: [(name: Range<Int>, value: Range<Int>)] = []
        // One allocation for the list: a line per LF.
        found.reserveCapacity(bytes.withUnsafeBytes { b in b.reduce(0) { $1 == 0x0A ? $0 + 1 : $0 } })
        block.withUnsafeMutableBytes { b in
            var start = 0
            while let end = RequestParser.findLF(UnsafeRawBufferPointer(b), from: start, limit: b.count) {
                let lineEnd = end > start && b[end - 1] == 0x0D ? end - 1 : end
                if let colonAt = memchr(b.baseAddress! + start, 0x3A, lineEnd - start) {
                    let c = colonAt - UnsafeMutableRawPointer(b.baseAddress!)
                    var v = c + 1
                    while v < lineEnd && b[v] == 0x20 { v += 1 }
                    for i in start..<c where b[i] >= 65 && b[i] <= 90 { b[i] |= 0x20 }
                    if !H2Fields.connectionSpecific(UnsafeRawBufferPointer(rebasing: b[start..<c])) { found.append((start..<c, v..<lineEnd)) }
                }
                start = end + 1
            }
        }
        lines = found
    }

    var byteCount: Int { block.count }

    /// Fields HTTP/2 forbids (RFC 9113 §8.2.2), lowercase: the connection's own.
    static func connectionSpecific(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 7: return name.equals("upgrade")
        case 10: return name.equals("connection") || name.equals("keep-alive")
        case 16: return name.equals("proxy-connection")
        case 17: return name.equals("transfer-encoding")
        default: return false
        }
    }

    /// The fields as an HPACK header block (`:status` first when given), appended to `block`.
    func encode(status: Int?, with encoder: inout HPACKEncoder, into block: inout [UInt8]) {
        encoder.beginBlock(into: &block)
        if let status { HPACKEncoder.appendStatus(min(max(status, 100), 999), to: &block) }
        self.block.withUnsafeBytes { b in
            for (name, value) in lines {
                HPACKEncoder.appendField(name: UnsafeRawBufferPointer(rebasing: b[name]), value: UnsafeRawBufferPointer(rebasing: b[value]), to: &block)
            }
        }
    }
}

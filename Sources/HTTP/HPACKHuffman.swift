/// HPACK's Huffman code (RFC 7541 Appendix B). Encoding packs each symbol's code into a 64-bit accumulator;
/// decoding is a state machine that takes four bits a step: a state is a node of the code tree, and each
/// (state, nibble) holds the next state and the symbol finished on the way, if any. No code is shorter than
/// five bits, so a nibble finishes at most one symbol.
enum HPACKHuffman {
    /// (code, bit length) for the symbols 0...255 and EOS (256), as Appendix B lists them.
    static let codes: [(code: UInt32, bits: UInt8)] = [
        (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28), (0xfffffe5, 28),
        (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
        (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28),
        (0xfffffef, 28), (0xffffff0, 28), (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
        (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
        (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
        (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10),
        (0xf9, 8), (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
        (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6),
        (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
        (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
        (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
        (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7),
        (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
        (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
        (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
        (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5),
        (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
        (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
        (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
        (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14),
        (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
        (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23),
        (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
        (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23),
        (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
        (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21),
        (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
        (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22),
        (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
        (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22),
        (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
        (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23),
        (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
        (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21),
        (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
        (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27),
        (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
        (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22),
        (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
        (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27),
        (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
        (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26), (0x3fffffff, 30),
    ]
    static let eos = 256

    // MARK: Encoding

    /// The bytes `s` takes Huffman-coded (its padding included).
    static func encodedCount(_ s: UnsafeRawBufferPointer) -> Int {
        var bits = 0
        codes.withUnsafeBufferPointer { c in
            for b in s { bits += Int(c[Int(b)].bits) }
        }
        return (bits + 7) >> 3
    }

    /// Appends `s` Huffman-coded, `count` bytes (`encodedCount(s)`), padded with the EOS code's leading ones.
    static func encode(_ s: UnsafeRawBufferPointer, count: Int, to out: inout [UInt8]) {
        let at = out.count
        out.append(contentsOf: repeatElement(0, count: count))
        out.withUnsafeMutableBufferPointer { o in
            codes.withUnsafeBufferPointer { c in
                // Bits above `pending` in the accumulator are stale and never read: each byte is taken from
                // the top of what is pending.
                var acc: UInt64 = 0, pending = 0, w = at
                for b in s {
                    let e = c[Int(b)]
                    acc = acc << UInt64(e.bits) | UInt64(e.code)
                    pending += Int(e.bits)
                    while pending >= 8 {
                        pending -= 8
                        o[w] = UInt8(truncatingIfNeeded: acc >> UInt64(pending))
                        w += 1
                    }
                }
                if pending > 0 {
                    o[w] = UInt8(truncatingIfNeeded: acc << UInt64(8 - pending)) | UInt8(0xFF >> pending)
                    w += 1
                }
                assert(w == at + count)
            }
        }
    }

    // MARK: Decoding

    /// A transition: the next state in bits 0-7, the symbol in bits 8-15, `emits` and `failsEOS` above.
    static let emits: UInt32 = 1 << 16
    static let failsEOS: UInt32 = 1 << 17
    /// What ending in a state means: `endOK` (the root, or up to seven ones from it), `endTooLong` (eight or more
    /// ones: padding past 7 bits), else a cut code or padding with a zero in it.
    static let endOK: UInt8 = 0, endTooLong: UInt8 = 1, endInvalid: UInt8 = 2

    /// 256 states (the tree's internal nodes: the code is complete, so 257 leaves have 256) by 16 nibbles,
    /// then a byte per state for how ending there is judged. Built once from `codes`, so the machine cannot
    /// disagree with the encoder's table.
    static let machine: (transitions: [UInt32], ends: [UInt8]) = {
        // The tree: children of internal node n at child[2n], child[2n+1]; a leaf is stored as -1 - symbol.
        var child = [Int](repeating: Int.min, count: 512)
        var nodes = 1
        for symbol in 0..<codes.count {
            let (code, bits) = codes[symbol]
            var node = 0
            for k in stride(from: Int(bits) - 1, through: 0, by: -1) {
                let slot = 2 * node + Int((code >> UInt32(k)) & 1)
                if k == 0 {
                    precondition(child[slot] == Int.min, "Huffman table: code \(symbol) is a prefix of another")
                    child[slot] = -1 - symbol
                } else {
                    if child[slot] == Int.min { child[slot] = nodes; nodes += 1 }
                    precondition(child[slot] >= 0, "Huffman table: code \(symbol) has a prefix that is a code")
                    node = child[slot]
                }
            }
        }
        precondition(nodes == 256 && !child.contains(Int.min), "Huffman table: the code is not complete")
        // Each node's depth and whether its path from the root is all ones: that decides how ending there is judged.
        var ends = [UInt8](repeating: endInvalid, count: 256)
        var node = 0, depth = 0
        ends[0] = endOK
        while true {
            let next = child[2 * node + 1]
            if next < 0 { break }  // the all-ones path ends at EOS
            node = next
            depth += 1
            ends[node] = depth <= 7 ? endOK : endTooLong
        }
        var transitions = [UInt32](repeating: 0, count: 256 * 16)
        for state in 0..<256 {
            for nibble in 0..<16 {
                var node = state, t: UInt32 = 0
                for k in stride(from: 3, through: 0, by: -1) {
                    let next = child[2 * node + ((nibble >> k) & 1)]
                    if next >= 0 {
                        node = next
                    } else {
                        let symbol = -1 - next
                        t |= symbol == eos ? failsEOS : emits | UInt32(symbol) << 8
                        node = 0
                    }
                }
                transitions[state << 4 | nibble] = t | UInt32(node)
            }
        }
        return (transitions, ends)
    }()

    /// Decodes `src` into `dst`, which has room for `maxDecodedCount(src.count)` bytes; returns the count.
    static func decode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawPointer) throws(HPACKError) -> Int {
        try machine.transitions.withUnsafeBufferPointer { (table) throws(HPACKError) -> Int in
            var state = 0, n = 0
            for b in src {
                // The high nibble, then the low one: two steps written out.
                var t = table[state << 4 | Int(b >> 4)]
                if t & (emits | failsEOS) != 0 {
                    if t & failsEOS != 0 { throw .huffmanEOS }
                    dst.storeBytes(of: UInt8(truncatingIfNeeded: t >> 8), toByteOffset: n, as: UInt8.self)
                    n += 1
                }
                t = table[Int(t & 0xFF) << 4 | Int(b & 0x0F)]
                if t & (emits | failsEOS) != 0 {
                    if t & failsEOS != 0 { throw .huffmanEOS }
                    dst.storeBytes(of: UInt8(truncatingIfNeeded: t >> 8), toByteOffset: n, as: UInt8.self)
                    n += 1
                }
                state = Int(t & 0xFF)
            }
            switch machine.ends[state] {
            case endOK: return n
            case endTooLong: throw .huffmanPaddingTooLong
            default: throw .huffmanPaddingInvalid
            }
        }
    }

    /// The most bytes `count` coded bytes decode to: no code is shorter than five bits.
    @inline(__always) static func maxDecodedCount(_ count: Int) -> Int { count * 8 / 5 }
}

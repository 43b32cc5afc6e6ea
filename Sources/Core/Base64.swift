/// Standard base64 (RFC 4648, `=` padding optional), for `Authorization: Basic` and the like. Both ways work on
/// contiguous bytes into storage sized once: auth_basic decodes and encodes on every request it checks.
public enum Base64 {
    /// The bytes `text` encodes; nil when it holds anything but the alphabet and trailing padding.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? { decode(text.utf8) }

    /// The bytes that the base64 characters `text` encode; nil as above.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        text.withContiguousStorageIfAvailable(decodeContiguous) ?? Array(text).withUnsafeBufferPointer(decodeContiguous)
    }

    private static func decodeContiguous(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var valid = true
        // Four characters make three bytes; a shorter last group makes fewer.
        let out = [UInt8](unsafeUninitializedCapacity: text.count * 3 / 4) { out, count in
            var acc: UInt32 = 0, bits = 0, padding = 0
            for c in text {
                if c == UInt8(ascii: "=") { padding += 1; continue }
                guard padding == 0, let v = value(c) else { valid = false; return }
                acc = acc << 6 | UInt32(v)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out[count] = UInt8(truncatingIfNeeded: acc >> UInt32(bits))
                    count += 1
                }
            }
            valid = padding <= 2
        }
        return valid ? out : nil
    }

    /// `bytes` in base64 with `=` padding, appended to `out`.
    public static func encode(_ bytes: some Collection<UInt8>, into out: inout [UInt8]) {
        _ = bytes.withContiguousStorageIfAvailable { encodeContiguous($0, into: &out) }
            ?? Array(bytes).withUnsafeBufferPointer { encodeContiguous($0, into: &out) }
    }

    private static func encodeContiguous(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        let start = out.count, length = (bytes.count + 2) / 3 * 4
        out.append(contentsOf: repeatElement(UInt8(ascii: "="), count: length))
        out.withUnsafeMutableBufferPointer { out in
            var o = start, i = 0
            while i < bytes.count {
                let left = bytes.count - i
                let n = UInt32(bytes[i]) << 16 | (left > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (left > 2 ? UInt32(bytes[i + 2]) : 0)
                out[o] = character(n >> 18)
                out[o + 1] = character(n >> 12 & 63)
                if left > 1 { out[o + 2] = character(n >> 6 & 63) }
                if left > 2 { out[o + 3] = character(n & 63) }
                i += 3
                o += 4
            }
        }
    }

    private static func character(_ v: UInt32) -> UInt8 {
        switch v {
        case 0..<26: return UInt8(ascii: "A") + UInt8(v)
        case 26..<52: return UInt8(ascii: "a") + UInt8(v - 26)
        case 52..<62: return UInt8(ascii: "0") + UInt8(v - 52)
        case 62: return UInt8(ascii: "+")
        default: return UInt8(ascii: "/")
        }
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }
}

/// JSON string escaping for the places that emit JSON by hand (log_format escape=json, shmdump --json, autoindex),
/// as nginx escapes: `\b` and `\f` by name, other control characters as `\u00XX` in capitals; bytes past ASCII
/// pass as they are.
public enum JSONText {
    /// The escaped contents, without the surrounding quotes.
    public static func escape(_ s: String) -> String {
        var out: [UInt8] = []
        append(s.utf8, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `bytes` escaped onto `out`: a file name need not be UTF-8, and is escaped byte for byte as nginx does.
    public static func append<S: Sequence<UInt8>>(_ bytes: S, to out: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), b]
            case UInt8(ascii: "\n"): out += Array(#"\n"#.utf8)
            case UInt8(ascii: "\r"): out += Array(#"\r"#.utf8)
            case UInt8(ascii: "\t"): out += Array(#"\t"#.utf8)
            case 0x08: out += Array(#"\b"#.utf8)
            case 0x0C: out += Array(#"\f"#.utf8)
            case 0..<0x20: out += Array(#"\u00"#.utf8) + [hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            default: out.append(b)
            }
        }
    }

    public static func quoted(_ s: String) -> String { "\"" + escape(s) + "\"" }
}

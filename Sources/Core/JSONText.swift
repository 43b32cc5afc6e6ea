/// JSON string escaping for the places that emit JSON by hand (log_format escape=json, shmdump --json), as
/// nginx escapes: `\b` and `\f` by name, other control characters as `\u00XX` in capitals.
public enum JSONText {
    /// The escaped contents, without the surrounding quotes.
    public static func escape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{8}": out += "\\b"
            case "\u{c}": out += "\\f"
            default:
                if u.value < 0x20 {
                    // nginx's capital hex digits.
                    out += "\\u00" + String(u.value >> 4) + String(u.value & 0xf, radix: 16, uppercase: true)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    public static func quoted(_ s: String) -> String { "\"" + escape(s) + "\"" }
}

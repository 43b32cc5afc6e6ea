/// JSON string escaping for the places that emit JSON by hand (log_format escape=json, shmdump --json).
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
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }

    public static func quoted(_ s: String) -> String { "\"" + escape(s) + "\"" }
}

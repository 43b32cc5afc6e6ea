/// nginx's URI escaping (ngx_escape_uri) for the sets Vigil uses: each byte its set does not allow becomes %XX
/// (upper-case hex).
public enum URIText {
    public enum Set {
        /// NGX_ESCAPE_URI, a path: controls, space, `"`, `#`, `%`, `<`, `>`, `?`, `\`, `^`, `` ` ``, `{`, `|`, `}`,
        /// DEL and every byte past ASCII.
        case uri
        /// NGX_ESCAPE_ARGS, a query: as `uri`, and `&`, `+` and `;`.
        case args
        /// NGX_ESCAPE_URI_COMPONENT, a file name in a link: every byte but ALPHA, DIGIT, `-`, `.`, `_` and `~`.
        case component

        @inline(__always) func escapes(_ c: UInt8) -> Bool {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                return false
            case 0...0x20, 0x7F...0xFF,
                 UInt8(ascii: "\""), UInt8(ascii: "#"), UInt8(ascii: "%"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "?"),
                 UInt8(ascii: "\\"), UInt8(ascii: "^"), UInt8(ascii: "`"), UInt8(ascii: "{"), UInt8(ascii: "|"), UInt8(ascii: "}"):
                return true
            case UInt8(ascii: "&"), UInt8(ascii: "+"), UInt8(ascii: ";"):
                return self != .uri
            default:
                return self == .component
            }
        }
    }

    private static let hex = Array("0123456789ABCDEF".utf8)

    /// `s` escaped; itself when no byte needs it.
    public static func escaped<S: StringProtocol>(_ s: S, _ set: Set) -> String {
        guard s.utf8.contains(where: set.escapes) else { return String(s) }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 16)
        append(s.utf8, escaping: set, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public static func append<S: Sequence<UInt8>>(_ bytes: S, escaping set: Set, to out: inout [UInt8]) {
        for c in bytes {
            if set.escapes(c) {
                out += [UInt8(ascii: "%"), hex[Int(c >> 4)], hex[Int(c & 0xF)]]
            } else {
                out.append(c)
            }
        }
    }
}

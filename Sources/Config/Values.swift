/// nginx's value syntaxes: sizes (`512k`, `1m`), times (`65`, `500ms`, `1m30s`), flags, numbers.
public enum Values {
    /// As nginx's: bytes, or k/K, m/M (and g/G where the caller allows it).
    public static func size(_ s: String, allowGiga: Bool = true) -> Int? {
        guard let last = s.utf8.last else { return nil }
        var digits = Substring(s)
        var scale = 1
        switch last {
        case UInt8(ascii: "k"), UInt8(ascii: "K"): scale = 1024; digits = digits.dropLast()
        case UInt8(ascii: "m"), UInt8(ascii: "M"): scale = 1024 * 1024; digits = digits.dropLast()
        case UInt8(ascii: "g"), UInt8(ascii: "G"):
            guard allowGiga else { return nil }
            scale = 1024 * 1024 * 1024; digits = digits.dropLast()
        default: break
        }
        guard let n = plainNumber(digits) else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : v
    }

    /// nginx's time values in milliseconds; a bare number means seconds. Units must descend (1h30m, not 30m1h).
    static func msec(_ s: String) -> Int? { time(s, inSeconds: false) }
    /// A time as nginx writes one ("10s", "500ms", "1m"), in milliseconds.
    public static func milliseconds(_ s: String) -> Int? { msec(s) }

    /// nginx's time values in seconds (`expires`): `ms` is not a unit there, years and months are.
    static func seconds(_ s: String) -> Int? { time(s, inSeconds: true) }

    /// nginx's ngx_parse_time.
    private static func time(_ s: String, inSeconds: Bool) -> Int? {
        // Largest first; the index is the rank that must strictly increase along the string.
        let units: [(String, Int)] = [("y", 31_536_000), ("M", 2_592_000), ("w", 604_800), ("d", 86_400),
                                      ("h", 3_600), ("m", 60), ("s", 1)]
        let scale = inSeconds ? 1 : 1000
        var rest = Substring(s)
        var total = 0
        var lastRank = -1
        func add(_ n: Int, _ unit: Int) -> Bool {
            let (v, o1) = n.multipliedReportingOverflow(by: unit)
            let (t, o2) = total.addingReportingOverflow(v)
            total = t
            return !o1 && !o2
        }
        while true {
            rest = rest.drop(while: { $0 == " " })
            if rest.isEmpty { break }
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty, let n = Int(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            if rest.hasPrefix("ms") {
                guard !inSeconds, lastRank < 7, add(n, 1) else { return nil }
                lastRank = 7
                rest = rest.dropFirst(2)
            } else if let rank = units.firstIndex(where: { rest.hasPrefix($0.0) }) {
                // As nginx's, a millisecond value starts past months: `y` and `M` are errors in it.
                guard rank > lastRank, inSeconds || rank >= 2, add(n, units[rank].1 * scale) else { return nil }
                lastRank = rank
                rest = rest.dropFirst(units[rank].0.count)
            } else {
                // A bare number is seconds, and comes last.
                guard rest.drop(while: { $0 == " " }).isEmpty, lastRank < 6, add(n, scale) else { return nil }
                return total
            }
        }
        return lastRank >= 0 ? total : nil
    }

    /// A TCP port: digits only, 1…65535.
    static func port<S: StringProtocol>(_ s: S) -> UInt16? {
        guard let n = plainNumber(s), n >= 1, n <= 65535 else { return nil }
        return UInt16(n)
    }

    /// Digits only: no sign, no suffix, no overflow.
    static func plainNumber<S: StringProtocol>(_ s: S) -> Int? {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(s)
    }

    static func flag(_ s: String) -> Bool? {
        switch s.lowercased() {
        case "on": return true
        case "off": return false
        default: return nil
        }
    }
}

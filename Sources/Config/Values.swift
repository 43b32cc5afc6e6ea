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
    static func msec(_ s: String) -> Int? {
        // Largest first; the index is the rank that must strictly increase along the string.
        let units: [(String, Int)] = [("y", 31_536_000_000), ("M", 2_592_000_000), ("w", 604_800_000), ("d", 86_400_000),
                                      ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
        var rest = Substring(s)
        var total = 0
        var lastRank = -1
        while true {
            rest = rest.drop(while: { $0 == " " })
            if rest.isEmpty { break }
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty, let n = Int(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let rank: Int
            if rest.hasPrefix("ms") {
                rank = 7
            } else if let i = units[0..<7].firstIndex(where: { rest.hasPrefix($0.0) }) {
                rank = i
            } else {
                guard rest.drop(while: { $0 == " " }).isEmpty else { return nil }   // a bare number comes last
                rank = 6
                let (v, o1) = n.multipliedReportingOverflow(by: 1000)
                let (t, o2) = total.addingReportingOverflow(v)
                guard !o1, !o2, rank > lastRank else { return nil }
                return t
            }
            // As nginx's, a millisecond value starts past months: `y` and `M` are errors in it.
            guard rank > lastRank, rank >= 2 else { return nil }
            lastRank = rank
            rest = rest.dropFirst(units[rank].0.count)
            let (v, o1) = n.multipliedReportingOverflow(by: units[rank].1)
            let (t, o2) = total.addingReportingOverflow(v)
            guard !o1, !o2 else { return nil }
            total = t
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

import Script

/// nginx's charset module: `charset`, `source_charset`, `override_charset`, `charset_types`, `charset_map`.
enum CharsetDirectives {
    static let specs: [DirectiveSpec] = [
        Directives.spec("charset", [.httpAll, .locationIf], .one) { call in
            try Directives.setOnce(call, \.charset.$charset, call.words[1] == "off" ? nil : try RewriteDirectives.template(call, call.words[1]))
        },
        Directives.spec("source_charset", [.httpAll, .locationIf], .one) { call in
            // As nginx: "off" is no keyword here, but a charset's name.
            try Directives.setOnce(call, \.charset.$source, try RewriteDirectives.template(call, call.words[1]))
        },
        Directives.flagSetting("override_charset", \.charset.$override, [.httpAll, .locationIf]),
        Directives.spec("charset_types", .httpAll, .oneOrMore) { call in
            try Directives.setOnce(call, \.charset.$types, call.args.map { $0.lowercased() })
        },
        Directives.spec("charset_map", .http, .two, block: true) { call in
            let http = Directives.http(call)
            let (from, to) = (call.words[1], call.words[2])
            if from.lowercased() == to.lowercased() {
                throw call.error("\"charset_map\" between the same charsets \"\(from)\" and \"\(to)\"")
            }
            if http.charsetMaps.contains(where: { $0.joins(from, to) }) {
                throw call.error("duplicate \"charset_map\" between \"\(from)\" and \"\(to)\"")
            }
            let table = CharsetMapTable(CharsetMap(from: from, to: to))
            try call.parseBlock(.charsetMap(table))
            http.charsetMaps.append(table.map)
        },
    ]

    /// One line of a `charset_map` block: a byte of the first charset and what it is in the second, in hex
    /// (for utf-8, the character's UTF-8 bytes).
    static func addEntry(_ call: Call, _ table: CharsetMapTable) throws {
        guard call.words.count == 2 else { throw call.error("invalid parameters number") }
        guard let from = UInt8(call.words[0], radix: 16) else { throw call.error("invalid value \"\(call.words[0])\"") }
        let hex = Array(call.words[1].utf8)
        var bytes: [UInt8] = []
        if table.map.toUTF8 {
            guard hex.count % 2 == 0, (2...6).contains(hex.count) else { throw call.error("invalid value \"\(call.words[1])\"") }
            for i in stride(from: 0, to: hex.count, by: 2) {
                guard let b = UInt8(String(decoding: hex[i..<i + 2], as: UTF8.self), radix: 16) else {
                    throw call.error("invalid value \"\(call.words[1])\"")
                }
                bytes.append(b)
            }
        } else {
            guard let b = UInt8(call.words[1], radix: 16) else { throw call.error("invalid value \"\(call.words[1])\"") }
            bytes = [b]
        }
        table.map.forward[Int(from)] = bytes
    }
}

/// Collects a `charset_map {}` block; a class so the block's statements can fill it.
final class CharsetMapTable {
    var map: CharsetMap
    init(_ map: CharsetMap) { self.map = map }
}

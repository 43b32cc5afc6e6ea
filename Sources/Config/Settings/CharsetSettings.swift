import Script

/// nginx's charset module: the charset named in a text response's Content-Type, and the recoding to it.
public struct CharsetSettings: Sendable {
    /// `charset name|$var|off` (nil: off).
    @Setting public var charset: Template? = nil
    /// `source_charset`: what the content is written in, unless the response names its own.
    @Setting public var source: Template? = nil
    /// `override_charset`: a response that names a charset (a proxied one) is recoded all the same.
    @Setting public var override = false
    /// `charset_types`, lowercased; `*` is any type.
    @Setting public var types: [String] = ["text/html", "text/xml", "text/plain", "text/vnd.wap.wml", "application/javascript",
                                           "application/rss+xml"]

    public init() {}

    mutating func merge(_ p: CharsetSettings) {
        $charset.inherit(p.$charset)
        $source.inherit(p.$source)
        $override.inherit(p.$override)
        $types.inherit(p.$types)
    }
}

/// A `charset_map from to { … }` table: each byte of the single-byte charset `from` and what it is in `to`
/// (one byte, or a UTF-8 sequence when `to` is utf-8); the bytes it does not list above 0x7F become "?".
public struct CharsetMap: Sendable {
    public let from: String
    public let to: String
    public internal(set) var forward: [[UInt8]]

    public var toUTF8: Bool { to.lowercased() == "utf-8" }

    init(from: String, to: String) {
        self.from = from
        self.to = to
        forward = (0..<256).map { $0 < 128 ? [UInt8($0)] : [UInt8(ascii: "?")] }
    }

    /// Whether this table recodes between `a` and `b` (either way round).
    public func joins(_ a: String, _ b: String) -> Bool {
        let (f, t, a, b) = (from.lowercased(), to.lowercased(), a.lowercased(), b.lowercased())
        return f == a && t == b || f == b && t == a
    }
}

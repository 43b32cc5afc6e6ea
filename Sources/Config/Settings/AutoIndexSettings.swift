/// `autoindex_format`: how a directory listing is written.
public enum AutoIndexFormat: String, Sendable {
    case html, json, jsonp, xml
}

/// nginx's autoindex module, per level.
public struct AutoIndexSettings: Sendable {
    @Setting public var on = false
    @Setting public var format = AutoIndexFormat.html
    /// `autoindex_localtime`: the HTML listing's times in the server's time zone rather than GMT.
    @Setting public var localTime = false
    /// `autoindex_exact_size`: the HTML listing's sizes in bytes rather than rounded to K, M or G.
    @Setting public var exactSize = true

    public init() {}

    mutating func merge(_ p: AutoIndexSettings) {
        $on.inherit(p.$on)
        $format.inherit(p.$format)
        $localTime.inherit(p.$localTime)
        $exactSize.inherit(p.$exactSize)
    }
}

import Config
import Script

/// nginx's charset filter: a text response's Content-Type names the location's `charset`, and a body written
/// in another charset (`source_charset`, or the charset a proxied response names, with `override_charset`) is
/// recoded through the `charset_map` between the two.
enum CharsetFilter {
    /// The Content-Type to send for a type given as bytes (an upstream's field): nil where no `charset` is set,
    /// the one case in which the filter changes no type, so that no String is made of it.
    static func contentType(_ r: RequestContext, _ type: UnsafeRawBufferPointer, status: Int, encoded: Bool) -> String? {
        guard r.settings.charset.charset != nil else { return nil }
        return contentType(r, String(decoding: type, as: UTF8.self), status: status, encoded: encoded)
    }

    /// The Content-Type to send for the handler's `type`; sets the request's recoder when the body must be
    /// recoded. `encoded`: the body has a Content-Encoding, which nginx does not recode.
    static func contentType(_ r: RequestContext, _ type: String, status: Int, encoded: Bool) -> String {
        let settings = r.settings.charset
        guard !type.isEmpty, let charset = settings.charset else { return type }
        let (mime, named) = split(type)
        if named != nil {
            guard settings.override else { return type }
        } else {
            guard settings.types.contains("*") || settings.types.contains(mime.lowercased()) else { return type }
        }
        let destination = charset.render(r)
        // As nginx: a redirect does not name a charset (old browsers kept it for the next page).
        guard !destination.isEmpty, status != 301, status != 302 else { return type }
        let withCharset = "\(mime); charset=\(destination)"
        guard let source = named ?? settings.source?.render(r), source.lowercased() != destination.lowercased() else {
            return withCharset
        }
        if encoded { return type }
        guard let map = r.service.config.http?.charsetMaps.first(where: { $0.joins(source, destination) }) else {
            r.log.error("no \"charset_map\" between the charsets \"\(source)\" and \"\(destination)\"\(r.logContext)")
            return type
        }
        r.response.recoder = CharsetRecoder(map, forward: map.from.lowercased() == source.lowercased())
        return withCharset
    }

    /// "text/html; charset=koi8-r" is ("text/html", "koi8-r"); quotes around the name are dropped.
    static func split(_ type: String) -> (mime: String, charset: String?) {
        guard let semi = type.firstIndex(of: ";") else { return (type, nil) }
        var mime = type[..<semi]
        while mime.last == " " { mime = mime.dropLast() }
        for param in type[type.index(after: semi)...].split(separator: ";") {
            let p = param.drop(while: { $0 == " " })
            guard p.lowercased().hasPrefix("charset=") else { continue }
            var value = p.dropFirst(8)
            while value.last == " " { value = value.dropLast() }
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
            return (String(mime), String(value))
        }
        return (type, nil)
    }
}

/// One response's recoding through a charset_map table: byte for byte, from a single-byte charset to UTF-8,
/// or from UTF-8 back (a character the table lacks becomes an HTML entity, as nginx writes it).
struct CharsetRecoder {
    private enum Table {
        case bytes([UInt8])
        case toUTF8([[UInt8]])
        case fromUTF8([UInt32: UInt8])
    }
    private let table: Table
    /// The start of a UTF-8 sequence the last piece cut off.
    private var pending: [UInt8] = []

    /// Whether a recoded body's length differs from the original's (its Content-Length cannot be passed on).
    var changesLength: Bool {
        if case .bytes = table { return false }
        return true
    }

    init(_ map: CharsetMap, forward: Bool) {
        if forward {
            table = map.toUTF8 ? .toUTF8(map.forward) : .bytes(map.forward.map { $0[0] })
        } else if map.toUTF8 {
            var reverse: [UInt32: UInt8] = [:]
            for (byte, utf8) in map.forward.enumerated() where byte >= 128 {
                if let scalar = String(decoding: utf8, as: UTF8.self).unicodeScalars.first, utf8 != [UInt8(ascii: "?")] {
                    reverse[scalar.value] = UInt8(byte)
                }
            }
            table = .fromUTF8(reverse)
        } else {
            var reverse = (0..<256).map { $0 < 128 ? UInt8($0) : UInt8(ascii: "?") }
            // The lines the block listed: the bytes no longer what they were by default.
            for (byte, to) in map.forward.enumerated() where to[0] != (byte < 128 ? UInt8(byte) : UInt8(ascii: "?")) {
                reverse[Int(to[0])] = UInt8(byte)
            }
            table = .bytes(reverse)
        }
    }

    mutating func recode(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        switch table {
        case .bytes(let t):
            return input.map { t[Int($0)] }
        case .toUTF8(let t):
            var out: [UInt8] = []
            out.reserveCapacity(input.count * 2)
            for b in input { out.append(contentsOf: t[Int(b)]) }
            return out
        case .fromUTF8(let t):
            var bytes = pending
            bytes.append(contentsOf: input)
            pending = []
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                if b < 0x80 {
                    out.append(b)
                    i += 1
                    continue
                }
                let length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                if i + length > bytes.count {
                    pending = Array(bytes[i...])
                    break
                }
                var scalar = UInt32(length == 1 ? b : b & (0xFF >> (length + 1)))
                for k in 1..<max(length, 1) { scalar = scalar << 6 | UInt32(bytes[i + k] & 0x3F) }
                if let mapped = t[scalar] {
                    out.append(mapped)
                } else {
                    out.append(contentsOf: Array("&#\(scalar);".utf8))
                }
                i += length
            }
            return out
        }
    }
}

/// Parses an upstream's response head. Strict: a reply that is not HTTP/1.x is a 502 for the client,
/// never passed through as HTTP/0.9.
public struct ResponseHead: Sendable {
    public var status: Int
    public var versionMinor: Int
    public var reason: String
    /// Where each header's name and value lie in the parsed bytes: a proxy copies them from there
    /// without making strings.
    public var fields: [HeaderField]
    public var contentLength: Int?
    public var chunked = false
    public var connectionClose = false

    /// Whether the body is delimited by the connection closing.
    public var closeDelimited: Bool { !chunked && contentLength == nil && hasBody }
    public var hasBody: Bool { !(status < 200 || status == 204 || status == 304) }

    /// The headers as strings; `buf` must hold the bytes that were parsed.
    public func headers(in buf: UnsafeRawBufferPointer) -> [(name: String, value: String)] {
        fields.map { (String(decoding: buf[$0.name], as: UTF8.self), String(decoding: buf[$0.value], as: UTF8.self)) }
    }
}

public struct HeaderField: Sendable {
    public let name: Range<Int>
    public let value: Range<Int>
}

public enum ResponseParseResult: Sendable {
    case incomplete
    case complete(ResponseHead, consumed: Int)
    case invalid(String)
}

public enum ResponseParser {
    public static func parse(_ buf: UnsafeRawBufferPointer, maxHead: Int = 65536) -> ResponseParseResult {
        var fields: [HeaderField] = []
        fields.reserveCapacity(16)
        let result = parse(buf, maxHead: maxHead, fields: &fields)
        guard case .complete(var head, let consumed) = result else { return result }
        head.fields = fields
        return .complete(head, consumed: consumed)
    }

    /// Parses with the header fields going to `fields` (emptied first, its storage kept) instead of the
    /// head's own array: a proxy reuses one array for every response rather than allocating one per head.
    public static func parse(_ buf: UnsafeRawBufferPointer, maxHead: Int = 65536, fields: inout [HeaderField]) -> ResponseParseResult {
        fields.removeAll(keepingCapacity: true)
        let n = buf.count
        // Status line: "HTTP/1.x SSS reason"
        guard let lf = RequestParser.findLF(buf, from: 0, limit: min(n, 8192)) else {
            if n >= 8 {
                let prefix = Array(UnsafeRawBufferPointer(rebasing: buf[0..<min(n, 5)]))
                if prefix != Array("HTTP/".utf8).prefix(prefix.count).map({ $0 }) { return .invalid("upstream sent no valid HTTP/1.0 header") }
            } else if n > 0 {
                let want = Array("HTTP/".utf8)
                for k in 0..<min(n, 5) where buf[k] != want[k] { return .invalid("upstream sent no valid HTTP/1.0 header") }
            }
            return n >= 8192 ? .invalid("upstream sent too big header") : .incomplete
        }
        var end = lf
        if end > 0 && buf[end - 1] == 0x0D { end -= 1 }
        guard end >= 12, buf[0] == UInt8(ascii: "H"), buf[1] == UInt8(ascii: "T"), buf[2] == UInt8(ascii: "T"),
              buf[3] == UInt8(ascii: "P"), buf[4] == UInt8(ascii: "/"), buf[5] == UInt8(ascii: "1"), buf[6] == UInt8(ascii: "."),
              buf[7] >= 0x30, buf[7] <= 0x39, buf[8] == 0x20 else {
            return .invalid("upstream sent no valid HTTP/1.0 header")
        }
        var status = 0
        for k in 9..<12 {
            guard buf[k] >= 0x30, buf[k] <= 0x39 else { return .invalid("upstream sent no valid HTTP/1.0 header") }
            status = status * 10 + Int(buf[k] - 0x30)
        }
        guard status >= 100, end == 12 || buf[12] == 0x20 else { return .invalid("upstream sent no valid HTTP/1.0 header") }
        var head = ResponseHead(status: status, versionMinor: Int(buf[7] - 0x30),
                                reason: end > 13 ? RequestParser.string(buf, 13, end) : "", fields: [])
        head.connectionClose = head.versionMinor == 0
        return parseFields(buf, from: lf + 1, head: &head, maxHead: maxHead, fields: &fields)
    }

    /// A CGI response head (FastCGI's, SCGI's, uwsgi's): header lines only; the status is the `Status` line's
    /// (its first three digits), else 302 with a Location, else 200, as nginx's.
    public static func parseCGI(_ buf: UnsafeRawBufferPointer, maxHead: Int = 65536, fields: inout [HeaderField]) -> ResponseParseResult {
        fields.removeAll(keepingCapacity: true)
        var head = ResponseHead(status: 200, versionMinor: 1, reason: "", fields: [])
        let result = parseFields(buf, from: 0, head: &head, maxHead: maxHead, fields: &fields)
        guard case .complete(var h, let consumed) = result else { return result }
        var location = false
        for f in fields {
            if RequestParser.matches(buf[f.name], lowercase: "status") {
                let v = buf[f.value]
                guard v.count >= 3, v.prefix(3).allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    return .invalid("upstream sent invalid status \"\(String(decoding: v, as: UTF8.self))\"")
                }
                h.status = v.prefix(3).reduce(0) { $0 * 10 + Int($1 - 0x30) }
                h.reason = String(decoding: v.dropFirst(3), as: UTF8.self).trimmingSpaces
                return .complete(h, consumed: consumed)
            }
            if RequestParser.matches(buf[f.name], lowercase: "location") { location = true }
        }
        if location { h.status = 302 }
        return .complete(h, consumed: consumed)
    }

    /// An SCGI or uwsgi application's head: a status line and headers when it starts with "HTTP/", else a CGI head.
    public static func parseStatusOrCGI(_ buf: UnsafeRawBufferPointer, maxHead: Int = 65536, fields: inout [HeaderField]) -> ResponseParseResult {
        let prefix = Array("HTTP/".utf8)
        for k in 0..<min(buf.count, prefix.count) where buf[k] != prefix[k] {
            return parseCGI(buf, maxHead: maxHead, fields: &fields)
        }
        return buf.count < prefix.count ? .incomplete : parse(buf, maxHead: maxHead, fields: &fields)
    }

    private static func parseFields(_ buf: UnsafeRawBufferPointer, from start: Int, head: inout ResponseHead, maxHead: Int,
                                    fields: inout [HeaderField]) -> ResponseParseResult {
        let n = buf.count
        var i = start
        var sawExpires = false
        while true {
            guard let lf = RequestParser.findLF(buf, from: i, limit: min(n, maxHead)) else {
                return n >= maxHead ? .invalid("upstream sent too big header") : .incomplete
            }
            var e = lf
            if e > i && buf[e - 1] == 0x0D { e -= 1 }
            if e == i { i = lf + 1; break }
            var c = i
            while c < e && RequestParser.isToken(buf[c]) { c += 1 }
            guard c > i, c < e, buf[c] == 0x3A else { return .invalid("upstream sent invalid header") }
            var vs = c + 1
            while vs < e && (buf[vs] == 0x20 || buf[vs] == 0x09) { vs += 1 }
            var ve = e
            while ve > vs && (buf[ve - 1] == 0x20 || buf[ve - 1] == 0x09) { ve -= 1 }
            // As nginx: a NUL or a bare CR in a header is an invalid header, never passed on to the client.
            for k in vs..<ve where buf[k] == 0 || buf[k] == 0x0D { return .invalid("upstream sent invalid header") }
            switch RequestParser.knownHeader(buf, i, c) {
            case .contentLength:
                // As nginx 1.23+: a second Content-Length, even an equal one, is a 502.
                guard head.contentLength == nil else { return .invalid(duplicate("Content-Length", buf, vs, ve)) }
                guard let len = RequestParser.plainNumber(buf, vs, ve) else {
                    return .invalid("upstream sent invalid \"Content-Length\" header")
                }
                head.contentLength = len
            case .transferEncoding:
                guard !head.chunked else { return .invalid(duplicate("Transfer-Encoding", buf, vs, ve)) }
                guard RequestParser.matches(buf[vs..<ve], lowercase: "chunked") else {
                    return .invalid("upstream sent unknown \"Transfer-Encoding\": \"\(RequestParser.string(buf, vs, ve))\"")
                }
                head.chunked = true
            case .connection:
                RequestParser.forEachListItem(buf, vs, ve) { token in
                    if RequestParser.matches(token, lowercase: "close") { head.connectionClose = true }
                    if RequestParser.matches(token, lowercase: "keep-alive") && head.versionMinor == 0 { head.connectionClose = false }
                }
            default:
                // nginx keeps an upstream's first Expires and drops the others.
                if c - i == 7 && RequestParser.equalsIgnoringASCIICase(UnsafeRawBufferPointer(rebasing: buf[i..<c]), "expires") {
                    if sawExpires { i = lf + 1; continue }
                    sawExpires = true
                }
            }
            fields.append(HeaderField(name: i..<c, value: vs..<ve))
            i = lf + 1
        }
        if head.chunked && head.contentLength != nil {
            return .invalid("upstream sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time")
        }
        return .complete(head, consumed: i)
    }

    private static func duplicate(_ name: String, _ buf: UnsafeRawBufferPointer, _ vs: Int, _ ve: Int) -> String {
        "upstream sent duplicate header line: \"\(name): \(RequestParser.string(buf, vs, ve))\""
    }
}

private extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

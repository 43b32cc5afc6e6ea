/// One header line of a request head, read by nginx's rules, or the empty line that ends the head. A name is
/// letters, digits and "-" ("_" too with underscores_in_headers); a name with other bytes is invalid (nginx
/// drops it with ignore_invalid_headers, passes it on without); a space, a control byte or a line without ":"
/// is refused, as is a line that starts with whitespace (obs-fold). The value loses the spaces around it (not
/// tabs, as in nginx) and may not hold NUL or a CR that is not followed by LF.
struct HeaderLine {
    enum Validity {
        case valid
        /// A token that nginx does not take as a name ("_" without underscores_in_headers, ".", "!", …).
        case invalidName
        /// Not a token at all (bytes past ASCII, "@", "(", …): with ignore_invalid_headers off, nginx passes it
        /// on; Vigil refuses it.
        case malformedName
    }

    /// nil for the empty line that ends the head.
    var name: Range<Int>?
    var value: Range<Int> = 0..<0
    var validity = Validity.valid
    /// Just past the line's LF.
    var end: Int

    static let invalidHeader = "client sent invalid header line"

    static func scan(_ buf: UnsafeRawBufferPointer, from start: Int, rules: RequestRules) -> Scan<HeaderLine> {
        let n = buf.count
        var p = start
        guard p < n else { return .incomplete }
        if buf[p] == RequestParser.CR || buf[p] == RequestParser.LF {
            return lineEnd(buf, at: p).map { .done(HeaderLine(name: nil, end: $0)) } ?? (p + 1 < n ? .failed(status: 400, reason: invalidHeader) : .incomplete)
        }
        var line = HeaderLine(end: 0)
        while p < n && buf[p] != RequestParser.COLON {
            let c = buf[p]
            if !isNameByte(c) {
                // A space or tab before the colon, a control byte, and a line without a colon end here. nginx takes
                // the last as a header with an empty value; Vigil refuses it.
                if c <= RequestParser.SP || c == 0x7F { return .failed(status: 400, reason: invalidHeader) }
                if c == UInt8(ascii: "_") && rules.underscoresInHeaders { p += 1; continue }
                if line.validity == .valid || !RequestParser.isToken(c) {
                    line.validity = RequestParser.isToken(c) ? .invalidName : .malformedName
                }
            }
            p += 1
        }
        guard p < n else { return .incomplete }
        guard p > start else { return .failed(status: 400, reason: invalidHeader) }
        line.name = start..<p
        p += 1
        while p < n && buf[p] == RequestParser.SP { p += 1 }
        let valueStart = p
        // Eight bytes at a time while none is NUL, CR or LF (most of a value), then byte by byte.
        if let base = buf.baseAddress {
            while p + 8 <= n {
                let w = (base + p).loadUnaligned(as: UInt64.self)
                if hasByte(w, 0) || hasByte(w, RequestParser.CR) || hasByte(w, RequestParser.LF) { break }
                p += 8
            }
        }
        while p < n && buf[p] != RequestParser.CR && buf[p] != RequestParser.LF {
            if buf[p] == 0 { return .failed(status: 400, reason: invalidHeader) }
            p += 1
        }
        guard p < n else { return .incomplete }
        var valueEnd = p
        while valueEnd > valueStart && buf[valueEnd - 1] == RequestParser.SP { valueEnd -= 1 }
        // nginx also ends a line at CR CR LF; Vigil takes a CR only right before LF (a bare CR ends lines for some
        // parsers, so "a\r\r\n" could be a line and an empty one, the end of the head).
        guard let end = lineEnd(buf, at: p) else { return p + 1 < n ? .failed(status: 400, reason: invalidHeader) : .incomplete }
        line.value = valueStart..<valueEnd
        line.end = end
        return .done(line)
    }

    /// Past the LF of a line end (CRLF or a bare LF) at `p`; nil when `p` holds a CR and the byte after it is not
    /// an LF, or is not there yet.
    @inline(__always) static func lineEnd(_ buf: UnsafeRawBufferPointer, at p: Int) -> Int? {
        if buf[p] == RequestParser.LF { return p + 1 }
        return p + 1 < buf.count && buf[p + 1] == RequestParser.LF ? p + 2 : nil
    }

    /// Whether any of the word's eight bytes is `c` (the zero-byte test on the word XOR `c` in every byte).
    @inline(__always) static func hasByte(_ w: UInt64, _ c: UInt8) -> Bool {
        let x = w ^ (0x0101_0101_0101_0101 &* UInt64(c))
        return (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080 != 0
    }

    /// nginx's valid name bytes: letters, digits and "-".
    @inline(__always) static func isNameByte(_ c: UInt8) -> Bool {
        RequestLine.isLetter(c) || RequestLine.digit(c) != nil || c == UInt8(ascii: "-")
    }
}

/// The headers nginx allows only once (Host, Content-Length, Transfer-Encoding, Expect, Authorization, the
/// conditionals, Content-Range), and the framing and routing values a head needs from them.
struct SeenHeaders {
    private var once: UInt16 = 0
    var host: Range<Int>?
    var contentLength: Range<Int>?
    var transferEncoding: Range<Int>?

    /// Notes a header; a second one of a kind that must be unique is nginx's 400.
    mutating func add(_ known: RequestParser.KnownHeader, _ line: HeaderLine, in buf: UnsafeRawBufferPointer) -> ParseResult? {
        guard known != .connection else { return nil }
        let bit: UInt16 = 1 << known.rawValue
        if once & bit != 0 {
            if known == .host { return .failure(status: 400, reason: "client sent duplicate host header") }
            let text = RequestParser.string(buf, line.name!.lowerBound, line.value.upperBound)
            return .failure(status: 400, reason: "client sent duplicate header line: \"\(text)\"")
        }
        once |= bit
        switch known {
        case .host: host = line.value
        case .contentLength: contentLength = line.value
        case .transferEncoding: transferEncoding = line.value
        default: break
        }
        return nil
    }
}

/// HTTP/1.x request head parser: pure, allocation-light, and strict where leniency enables request
/// smuggling. It is re-run from the start of the buffer when more bytes arrive; a head
/// is small and bounded by `RequestLimits`, so that costs less than keeping resumable state.
public enum RequestParser {
    static let CR: UInt8 = 0x0D, LF: UInt8 = 0x0A, SP: UInt8 = 0x20, HT: UInt8 = 0x09, COLON: UInt8 = 0x3A

    /// RFC 9110 tchar.
    @inline(__always) static func isToken(_ c: UInt8) -> Bool {
        switch c {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): return true
        default: return false
        }
    }

    /// `storage`: arrays whose storage the head's header block and fields reuse (a server passes back those of
    /// a finished request, so that parsing a head does not allocate them).
    public static func parse(_ buf: UnsafeRawBufferPointer, limits: RequestLimits = RequestLimits(),
                             storage: consuming HeadStorage = HeadStorage()) -> ParseResult {
        let n = buf.count
        var i = 0
        // Tolerate empty lines before the request line (RFC 9112 §2.2), as nginx does.
        while i < n && (buf[i] == CR || buf[i] == LF) { i += 1 }
        let lineStart = i

        // Request line.
        guard let lineEnd = findLF(buf, from: i, limit: lineStart + limits.maxLineLength) else {
            if n - lineStart >= limits.maxLineLength { return .failure(status: 414, reason: "client sent too long URI") }
            return .incomplete
        }
        var line = lineEnd
        if line > lineStart && buf[line - 1] == CR { line -= 1 }

        // METHOD
        var j = lineStart
        while j < line && isToken(buf[j]) { j += 1 }
        guard j > lineStart, j < line, buf[j] == SP else { return .failure(status: 400, reason: "client sent invalid method") }
        let method = string(buf, lineStart, j)
        j += 1
        // request-target
        let targetStart = j
        while j < line && buf[j] > SP && buf[j] != 0x7F { j += 1 }
        guard j > targetStart else { return .failure(status: 400, reason: "client sent invalid request") }
        let targetEnd = j
        guard j < line, buf[j] == SP else {
            // "GET /" alone is HTTP/0.9, which Vigil does not speak.
            return .failure(status: 400, reason: "client sent invalid request")
        }
        j += 1
        // HTTP-version
        guard line - j >= 8, buf[j] == UInt8(ascii: "H"), buf[j + 1] == UInt8(ascii: "T"), buf[j + 2] == UInt8(ascii: "T"),
              buf[j + 3] == UInt8(ascii: "P"), buf[j + 4] == UInt8(ascii: "/") else {
            return .failure(status: 400, reason: "client sent invalid request")
        }
        j += 5
        guard let (major, afterMajor) = digits(buf, j, line), afterMajor < line, buf[afterMajor] == UInt8(ascii: "."),
              let (minor, afterMinor) = digits(buf, afterMajor + 1, line), afterMinor == line else {
            return .failure(status: 400, reason: "client sent invalid request")
        }
        if major != 1 { return .failure(status: major > 1 ? 505 : 400, reason: "client sent unsupported HTTP version") }

        var target = string(buf, targetStart, targetEnd)
        // absolute-form: keep only the path; the authority becomes the Host. Split on bytes, as nginx does:
        // Character-wise, a "/" or "?" followed by a combining mark is not "/" or "?".
        var absoluteHost: String?
        if buf[targetStart] != UInt8(ascii: "/") {
            guard let authorityStart = afterScheme(buf, targetStart, targetEnd) else {
                if method == "OPTIONS" && target == "*" { return finishHead(buf, lineEnd + 1, limits: limits, method: method, target: target, major: major, minor: minor, absoluteHost: nil, storage: storage) }
                return .failure(status: 400, reason: "client sent invalid request")
            }
            var a = authorityStart
            while a < targetEnd && buf[a] != UInt8(ascii: "/") && buf[a] != UInt8(ascii: "?") { a += 1 }
            absoluteHost = string(buf, authorityStart, a)
            target = a == targetEnd ? "/" : (buf[a] == UInt8(ascii: "?") ? "/" : "") + string(buf, a, targetEnd)
        }
        return finishHead(buf, lineEnd + 1, limits: limits, method: method, target: target, major: major, minor: minor, absoluteHost: absoluteHost,
                          storage: storage)
    }

    private static func finishHead(_ buf: UnsafeRawBufferPointer, _ start: Int, limits: RequestLimits, method: String,
                                   target: String, major: Int, minor: Int, absoluteHost: String?,
                                   storage: consuming HeadStorage) -> ParseResult {
        let n = buf.count
        var i = start
        // Filled in place: a copy of either array would no longer be the only reference to its storage.
        storage.fields.removeAll(keepingCapacity: true)
        storage.block.removeAll(keepingCapacity: true)
        // One allocation for a usual request's headers instead of one per doubling.
        storage.fields.reserveCapacity(12)
        // The head is made once, at the end, from these: a head built early and filled in was copied whole
        // (every string in it retained) into the result.
        var host: String?, contentLength: Int?, expectContinue = false
        var sawHost = false
        var transferEncoding: String?
        var connectionClose = false, connectionKeepAlive = false

        while true {
            guard let lf = findLF(buf, from: i, limit: i + limits.maxLineLength) else {
                if n - i >= limits.maxLineLength || n >= limits.maxHeadLength {
                    return .failure(status: 494, reason: "client sent too long header line")
                }
                return .incomplete
            }
            if lf + 1 > limits.maxHeadLength { return .failure(status: 494, reason: "client sent too large request header") }
            var end = lf
            if end > i && buf[end - 1] == CR { end -= 1 }
            if end == i {
                // Blank line: the head is complete.
                i = lf + 1
                break
            }
            // No obs-fold: a line starting with whitespace is a smuggling vector.
            if buf[i] == SP || buf[i] == HT { return .failure(status: 400, reason: "client sent invalid header line") }
            var c = i
            while c < end && isToken(buf[c]) { c += 1 }
            guard c > i, c < end, buf[c] == COLON else { return .failure(status: 400, reason: "client sent invalid header line") }
            var vs = c + 1
            while vs < end && (buf[vs] == SP || buf[vs] == HT) { vs += 1 }
            var ve = end
            while ve > vs && (buf[ve - 1] == SP || buf[ve - 1] == HT) { ve -= 1 }
            for k in vs..<ve where buf[k] == 0 || buf[k] == CR { return .failure(status: 400, reason: "client sent invalid header line") }
            storage.fields.append(HeaderField(name: (i - start)..<(c - start), value: (vs - start)..<(ve - start)))

            switch knownHeader(buf, i, c) {
            case .host:
                if sawHost { return .failure(status: 400, reason: "client sent duplicate host header") }
                sawHost = true
                host = string(buf, vs, ve)
            case .contentLength:
                guard let len = plainNumber(buf, vs, ve) else { return .failure(status: 400, reason: "client sent invalid \"Content-Length\" header") }
                // nginx refuses any repeated Content-Length, equal or not.
                if contentLength != nil {
                    return .failure(status: 400, reason: "client sent duplicate header line: \"Content-Length: \(string(buf, vs, ve))\"")
                }
                contentLength = len
            case .transferEncoding:
                if transferEncoding != nil { return .failure(status: 400, reason: "client sent duplicate \"Transfer-Encoding\" header") }
                transferEncoding = string(buf, vs, ve)
            case .connection:
                forEachListItem(buf, vs, ve) { token in
                    if matches(token, lowercase: "close") { connectionClose = true }
                    if matches(token, lowercase: "keep-alive") { connectionKeepAlive = true }
                }
            case .expect:
                if matches(buf[vs..<ve], lowercase: "100-continue") { expectContinue = true }
            case nil:
                break
            }
            i = lf + 1
        }

        if let abs = absoluteHost { host = abs }
        // nginx (and RFC 9112 §3.2) want the Host header in every HTTP/1.1 request, absolute-form included.
        if minor >= 1 && !sawHost {
            return .failure(status: 400, reason: "client sent HTTP/1.1 request without \"Host\" header")
        }
        var chunked = false
        if let te = transferEncoding {
            if contentLength != nil {
                return .failure(status: 400, reason: "client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time")
            }
            guard minor >= 1 else { return .failure(status: 400, reason: "client sent HTTP/1.0 request with \"Transfer-Encoding\" header") }
            guard equalsIgnoringASCIICase(te, "chunked") else { return .failure(status: 501, reason: "client sent unknown \"Transfer-Encoding\": \"\(te)\"") }
            chunked = true
        }
        if let h = host, !validHost(h) { return .failure(status: 400, reason: "client sent invalid host header") }
        var path = target, query: String?
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(decoding: target.utf8[..<q], as: UTF8.self)
            query = String(decoding: target.utf8[target.utf8.index(after: q)...], as: UTF8.self)
        }
        storage.block.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[start..<i]))
        // As nginx: "close" wins over "keep-alive" whatever the version.
        return .complete(RequestHead(method: method, target: target, path: path, query: query, versionMajor: major,
                                     versionMinor: minor, block: storage.block, fields: storage.fields, host: host, contentLength: contentLength,
                                     keepAlive: !connectionClose && (minor >= 1 || connectionKeepAlive),
                                     chunked: chunked, expectContinue: expectContinue), consumed: i)
    }

    /// The items of a comma-separated header value in `buf[from..<to]` (Connection), blanks around each
    /// trimmed, compared in place.
    static func forEachListItem(_ buf: UnsafeRawBufferPointer, _ from: Int, _ to: Int, _ body: (Slice<UnsafeRawBufferPointer>) -> Void) {
        var t = from
        while t < to {
            var e = t
            while e < to && buf[e] != UInt8(ascii: ",") { e += 1 }
            var a = t, b = e
            while a < b && (buf[a] == SP || buf[a] == HT) { a += 1 }
            while b > a && (buf[b - 1] == SP || buf[b - 1] == HT) { b -= 1 }
            body(buf[a..<b])
            t = e + 1
        }
    }

    static func findLF(_ buf: UnsafeRawBufferPointer, from: Int, limit: Int) -> Int? {
        let end = min(buf.count, limit)
        var k = from
        while k < end {
            if buf[k] == LF { return k }
            k += 1
        }
        return nil
    }

    static func digits(_ buf: UnsafeRawBufferPointer, _ from: Int, _ end: Int) -> (Int, Int)? {
        var k = from
        var v = 0
        while k < end, buf[k] >= 0x30, buf[k] <= 0x39, k - from < 3 {
            v = v * 10 + Int(buf[k] - 0x30)
            k += 1
        }
        return k > from ? (v, k) : nil
    }

    static func string(_ buf: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: buf[a..<b]), as: UTF8.self)
    }

    /// Digits only, at most 18 of them (no sign, no spaces): nginx's rule for Content-Length.
    static func plainNumber(_ buf: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> Int? {
        guard b > a, b - a <= 18 else { return nil }
        var n = 0
        for k in a..<b {
            let c = buf[k]
            guard c >= 0x30 && c <= 0x39 else { return nil }
            n = n * 10 + Int(c - 0x30)
        }
        return n
    }

    /// nginx's host validation, on bytes as nginx does: no "/" "\0" or controls,
    /// no "..", and the name before the port must not be empty (so "", ":80" are refused). Stricter than
    /// nginx: no leading dot, no "\\".
    static func validHost(_ h: String) -> Bool {
        guard let first = h.utf8.first, first != UInt8(ascii: ":"), first != UInt8(ascii: ".") else { return false }
        var previous: UInt8 = 0
        for c in h.utf8 {
            if c <= 0x20 || c == 0x7F || c == UInt8(ascii: "/") || c == UInt8(ascii: "\\") { return false }
            if c == UInt8(ascii: ".") && previous == UInt8(ascii: ".") { return false }
            previous = c
        }
        return true
    }

    /// Where the authority starts when `buf[from..<end]` begins with "http://" or "https://" (any case).
    static func afterScheme(_ buf: UnsafeRawBufferPointer, _ from: Int, _ end: Int) -> Int? {
        for scheme in ["http://", "https://"] {
            let s = scheme.utf8
            guard end - from >= s.count else { continue }
            if zip(s, from..<(from + s.count)).allSatisfy({ c, k in asciiLower(buf[k]) == c }) { return from + s.count }
        }
        return nil
    }

    @usableFromInline @inline(__always) static func asciiLower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }

    /// The header names that change framing or routing, recognised in place (no String, no lowercasing).
    enum KnownHeader { case host, contentLength, transferEncoding, connection, expect }

    static func knownHeader(_ buf: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> KnownHeader? {
        func named(_ lower: StaticString) -> Bool {
            guard b - a == lower.utf8CodeUnitCount else { return false }
            let p = lower.utf8Start
            for k in 0..<(b - a) where asciiLower(buf[a + k]) != p[k] { return false }
            return true
        }
        switch b - a {
        case 4: return named("host") ? .host : nil
        case 6: return named("expect") ? .expect : nil
        case 10: return named("connection") ? .connection : nil
        case 14: return named("content-length") ? .contentLength : nil
        case 17: return named("transfer-encoding") ? .transferEncoding : nil
        default: return nil
        }
    }

    /// ASCII-only case-insensitive equality with a lowercase ASCII `lower`. `lowercased()` also folds
    /// non-ASCII letters (U+212A KELVIN SIGN becomes "k"), so "chun\u{212A}ed" would pass for "chunked"
    /// where nginx, comparing bytes, sees an unknown 9-byte coding.
    /// Bytes equal to a lowercase ASCII literal but for the case of ASCII letters; allocation-free.
    @inlinable public static func matches<C: Collection>(_ bytes: C, lowercase literal: StaticString) -> Bool where C.Element == UInt8 {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        var p = literal.utf8Start
        for c in bytes {
            if asciiLower(c) != p.pointee { return false }
            p += 1
        }
        return true
    }

    @inlinable public static func equalsIgnoringASCIICase<S: StringProtocol>(_ s: S, _ lower: String) -> Bool {
        guard s.utf8.count == lower.utf8.count else { return false }
        // Native strings hand out their bytes: a plain loop, not an iterator over two views.
        if let equal = s.utf8.withContiguousStorageIfAvailable({ a in
            lower.utf8.withContiguousStorageIfAvailable { b in equalIgnoringCase(UnsafeRawBufferPointer(a), b) }
        }), let equal { return equal }
        return zip(s.utf8, lower.utf8).allSatisfy { asciiLower($0) == asciiLower($1) }
    }

    /// Bytes compared with a lowercase name (a header value in a buffer).
    @inlinable public static func equalsIgnoringASCIICase(_ a: UnsafeRawBufferPointer, _ lower: String) -> Bool {
        guard a.count == lower.utf8.count else { return false }
        if let equal = lower.utf8.withContiguousStorageIfAvailable({ equalIgnoringCase(a, $0) }) { return equal }
        return zip(a, lower.utf8).allSatisfy { asciiLower($0) == asciiLower($1) }
    }

    /// Whether `a` and `b` (of the same length) differ at most in the case of ASCII letters.
    @inlinable static func equalIgnoringCase(_ a: UnsafeRawBufferPointer, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        for i in 0..<a.count where asciiLower(a[i]) != asciiLower(b[i]) { return false }
        return true
    }
}

extension Substring {
    /// Without the spaces and tabs around it (header values, list items).
    public func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}

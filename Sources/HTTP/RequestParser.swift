#if canImport(Glibc)
import Glibc
#endif

/// HTTP/1.x request head parser: pure, allocation-light, and at least as strict as nginx 1.22, whose rules it
/// follows where it does not refuse more (README, "Deliberate strictness"). It is re-run from the start of the
/// buffer when more bytes arrive; a head is small and bounded by `RequestRules`, so that costs less than keeping
/// resumable state. As in nginx, a byte that makes a head invalid is refused when it arrives, not when its line
/// ends.
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
    public static func parse(_ buf: UnsafeRawBufferPointer, rules: RequestRules = RequestRules(),
                             storage: consuming HeadStorage = HeadStorage()) -> ParseResult {
        var i = 0
        // Empty lines before the request line are skipped, as nginx does (RFC 9112 §2.2).
        while i < buf.count && (buf[i] == CR || buf[i] == LF) { i += 1 }
        let lineCap = i + rules.maxLineLength
        let line: RequestLine
        switch RequestLine.scan(UnsafeRawBufferPointer(rebasing: buf[..<min(buf.count, lineCap)]), from: i) {
        case .incomplete:
            return buf.count >= lineCap ? .failure(status: 414, reason: "client sent too long URI") : .incomplete
        case .failed(let status, let reason):
            return .failure(status: status, reason: reason)
        case .done(let l):
            line = l
        }
        // The target and the host come before the headers, as in nginx.
        guard let target = Target(buf, line, mergeSlashes: rules.mergeSlashes) else {
            return .failure(status: 400, reason: "client sent invalid request")
        }
        if let h = line.host, !HostName.isValid(buf, h) { return .failure(status: 400, reason: "client sent invalid host in request line") }
        if line.isHTTP09 { return .failure(status: 400, reason: "client sent HTTP/0.9 request") }
        return finishHead(buf, line, target, rules: rules, storage: storage)
    }

    /// The header lines after the request line, nginx's checks on the whole head, and the head itself.
    private static func finishHead(_ buf: UnsafeRawBufferPointer, _ line: RequestLine, _ target: Target, rules: RequestRules,
                                   storage: consuming HeadStorage) -> ParseResult {
        let start = line.end
        var i = start
        // Filled in place: a copy of either array would no longer be the only reference to its storage.
        storage.fields.removeAll(keepingCapacity: true)
        storage.block.removeAll(keepingCapacity: true)
        // One allocation for a usual request's headers instead of one per doubling.
        storage.fields.reserveCapacity(12)
        // The head is made once, at the end, from these: a head built early and filled in was copied whole
        // (every string in it retained) into the result.
        var seen = SeenHeaders()
        var connectionClose = false, connectionKeepAlive = false, expectContinue = false

        while true {
            let lineCap = min(i + rules.maxLineLength, rules.maxHeadLength)
            let header: HeaderLine
            switch HeaderLine.scan(UnsafeRawBufferPointer(rebasing: buf[..<min(buf.count, lineCap)]), from: i, rules: rules) {
            case .incomplete:
                guard buf.count < lineCap else {
                    return .failure(status: 494, reason: lineCap == rules.maxHeadLength ? "client sent too large request" : "client sent too long header line")
                }
                return .incomplete
            case .failed(let status, let reason):
                return .failure(status: status, reason: reason)
            case .done(let h):
                header = h
            }
            i = header.end
            guard let name = header.name else { break }
            if header.validity != .valid {
                // nginx drops a header it deems invalid, or with ignore_invalid_headers off passes it on.
                if rules.ignoreInvalidHeaders { continue }
                if header.validity == .malformedName { return .failure(status: 400, reason: HeaderLine.invalidHeader) }
            }
            let value = header.value
            storage.fields.append(HeaderField(name: (name.lowerBound - start)..<(name.upperBound - start),
                                              value: (value.lowerBound - start)..<(value.upperBound - start)))
            guard let known = knownHeader(buf, name.lowerBound, name.upperBound) else { continue }
            if let failure = seen.add(known, header, in: buf) { return failure }
            switch known {
            case .host:
                if !HostName.isValid(buf, value) { return .failure(status: 400, reason: "client sent invalid host header") }
            case .connection:
                forEachListItem(buf, value.lowerBound, value.upperBound) { token in
                    if matches(token, lowercase: "close") { connectionClose = true }
                    if matches(token, lowercase: "keep-alive") { connectionKeepAlive = true }
                }
            case .expect:
                expectContinue = matches(buf[value], lowercase: "100-continue")
            default:
                break
            }
        }

        // nginx's checks once the head is in, in its order.
        if line.minor >= 1 && seen.host == nil {
            return .failure(status: 400, reason: "client sent HTTP/1.1 request without \"Host\" header")
        }
        var contentLength: Int?
        if let cl = seen.contentLength {
            guard let n = plainNumber(buf, cl.lowerBound, cl.upperBound) else { return .failure(status: 400, reason: "client sent invalid \"Content-Length\" header") }
            contentLength = n
        }
        var chunked = false
        if let te = seen.transferEncoding {
            guard line.minor >= 1 else { return .failure(status: 400, reason: "client sent HTTP/1.0 request with \"Transfer-Encoding\" header") }
            guard matches(buf[te], lowercase: "chunked") else {
                return .failure(status: 501, reason: "client sent unknown \"Transfer-Encoding\": \"\(string(buf, te.lowerBound, te.upperBound))\"")
            }
            if contentLength != nil {
                return .failure(status: 400, reason: "client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time")
            }
            chunked = true
        }
        let method = commonMethod(UnsafeRawBufferPointer(rebasing: buf[line.method]))
            ?? string(buf, line.method.lowerBound, line.method.upperBound)
        if method == "CONNECT" || method == "TRACE" { return .failure(status: 405, reason: "client sent \(method) method") }

        var host: String?
        if let h = line.host ?? seen.host { host = string(buf, h.lowerBound, h.upperBound) }
        storage.block.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[start..<i]))
        // As nginx: "close" wins over "keep-alive" whatever the version.
        return .complete(RequestHead(method: method, target: target.raw, path: target.path, query: target.query,
                                     pathWasEscaped: line.pathHasEscapes, versionMajor: line.major, versionMinor: line.minor,
                                     block: storage.block, fields: storage.fields, host: host, contentLength: contentLength,
                                     keepAlive: !connectionClose && (line.minor >= 1 || connectionKeepAlive),
                                     chunked: chunked, expectContinue: expectContinue && line.minor >= 1), consumed: i)
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

    /// The first LF in `buf[from..<min(count, limit)]`, by memchr: lines are found a word at a time, not a byte
    /// at a time.
    public static func findLF(_ buf: UnsafeRawBufferPointer, from: Int, limit: Int) -> Int? {
        let end = min(buf.count, limit)
        guard from < end, let base = buf.baseAddress, let lf = memchr(base + from, Int32(LF), end - from) else { return nil }
        return base.distance(to: UnsafeRawPointer(lf))
    }

    /// The methods nearly every request has, as literals: no String made and validated for each request.
    static func commonMethod(_ m: UnsafeRawBufferPointer) -> String? {
        switch m.count {
        case 3: return m.equals("GET") ? "GET" : m.equals("PUT") ? "PUT" : nil
        case 4: return m.equals("POST") ? "POST" : m.equals("HEAD") ? "HEAD" : nil
        default: return nil
        }
    }

    /// Bytes of a head as a String (invalid UTF-8 repaired). Made in place: String(decoding:) took a third more
    /// for the few short strings every request has.
    static func string(_ buf: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> String {
        let bytes = UnsafeRawBufferPointer(rebasing: buf[a..<b])
        return String(unsafeUninitializedCapacity: bytes.count) { UnsafeMutableRawBufferPointer($0).copyMemory(from: bytes); return bytes.count }
    }

    /// Digits only (no sign, no spaces), within Int's range: nginx's rule for Content-Length.
    static func plainNumber(_ buf: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> Int? {
        guard b > a else { return nil }
        var n = 0
        for k in a..<b {
            guard let d = RequestLine.digit(buf[k]) else { return nil }
            let (times10, o1) = n.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(d)
            if o1 || o2 { return nil }
            n = sum
        }
        return n
    }

    @usableFromInline @inline(__always) static func asciiLower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }

    /// The header names that change framing or routing, or that nginx allows only once, recognised in place
    /// (no String, no lowercasing).
    enum KnownHeader: UInt16 {
        case host, contentLength, transferEncoding, connection, expect, authorization, contentRange
        case ifModifiedSince, ifUnmodifiedSince, ifMatch, ifNoneMatch, ifRange
    }

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
        case 8: return named("if-match") ? .ifMatch : named("if-range") ? .ifRange : nil
        case 10: return named("connection") ? .connection : nil
        case 13: return named("authorization") ? .authorization : named("content-range") ? .contentRange : named("if-none-match") ? .ifNoneMatch : nil
        case 14: return named("content-length") ? .contentLength : nil
        case 17: return named("transfer-encoding") ? .transferEncoding : named("if-modified-since") ? .ifModifiedSince : nil
        case 19: return named("if-unmodified-since") ? .ifUnmodifiedSince : nil
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

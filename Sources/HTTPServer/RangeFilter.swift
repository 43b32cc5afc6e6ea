import Config
import Core
import HTTP

/// nginx's range filter. A 200 of known length whose handler allows ranges (static files; a proxied response
/// with proxy_force_ranges, one range at most) answers `Range: bytes=…` with 206 and the ranges asked for, one
/// as it is and several as multipart/byteranges, or with 416 when none can be served; any other request for it
/// is told `Accept-Ranges: bytes`. The filter comes after the headers filter, so If-Range is compared with the
/// ETag and Last-Modified that `add_header` set, as nginx compares them.
enum RangeFilter {
    /// Bytes `start ..< end` of the body.
    struct Span {
        let start: Int
        let end: Int
        var count: Int { end - start }
    }

    enum Plan {
        /// The whole body, with Accept-Ranges.
        case whole
        case partial([Span])
        case unsatisfiable
    }

    /// What to send for a rangeable 200 of `length` bytes. `etag` and `lastModified` are the handler's; `single`:
    /// more than one range is answered with the whole body (proxy_force_ranges), as nginx's `single_range`.
    static func plan(_ r: RequestContext, length: Int, etag: @autoclosure () -> String?, lastModified: @autoclosure () -> Int?,
                     single: Bool) -> Plan? {
        let maxRanges = r.settings.core.maxRanges
        // As nginx: max_ranges 0 turns the filter off, Accept-Ranges too.
        guard maxRanges > 0 else { return nil }
        guard r.withHeader("range", { $0.count >= 7 && RequestParser.matches($0.prefix(6), lowercase: "bytes=") }) == true else { return .whole }
        if let ifRange = r.header("if-range"), !matches(ifRange, r, etag: etag(), lastModified: lastModified()) { return .whole }
        return r.withHeader("range") { parse(UnsafeRawBufferPointer(rebasing: $0.dropFirst(6)), length: length, limit: single ? 1 : maxRanges) }
    }

    /// If-Range: an entity tag (it ends in a quote) must be the response's ETag byte for byte, a date its
    /// Last-Modified to the second; either as `add_header` left them for a 200.
    private static func matches(_ ifRange: String, _ r: RequestContext, etag: String?, lastModified: Int?) -> Bool {
        if ifRange.utf8.count >= 2 && ifRange.utf8.last == UInt8(ascii: "\"") {
            guard let tag = HeadersFilter.addedValue(r, "etag", status: 200) ?? etag, !tag.isEmpty else { return false }
            return tag == ifRange
        }
        let modified = HeadersFilter.addedValue(r, "last-modified", status: 200).map(Clock.parseHTTPDate) ?? lastModified
        guard let modified else { return false }
        return Clock.parseHTTPDate(ifRange) == modified
    }

    /// ngx_http_range_parse on what follows `bytes=`: ranges past the end are left out (all of them is 416),
    /// more than `limit` ranges or more bytes than the body has is the whole body, and so is a range that
    /// starts at 0 of an empty body.
    static func parse(_ v: UnsafeRawBufferPointer, length: Int, limit: Int) -> Plan {
        var spans: [Span] = []
        var p = 0, size = 0, left = limit
        // The value ends as nginx's NUL-terminated copy does.
        func at(_ i: Int) -> UInt8 { i < v.count ? v[i] : 0 }
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        func skipSpaces() { while at(p) == 0x20 { p += 1 } }
        // Digits into a number; nil when it would overflow.
        func number() -> Int? {
            var n = 0
            while isDigit(at(p)) {
                let (m, o1) = n.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int(at(p) - 0x30))
                if o1 || o2 { return nil }
                n = s
                p += 1
            }
            return n
        }
        while true {
            var start = 0, end = 0
            skipSpaces()
            // `-N`: the last N bytes.
            let suffix = at(p) == UInt8(ascii: "-")
            var openEnded = false
            if suffix {
                p += 1
            } else {
                guard isDigit(at(p)), let s = number() else { return .unsatisfiable }
                start = s
                skipSpaces()
                guard at(p) == UInt8(ascii: "-") else { return .unsatisfiable }
                p += 1
                skipSpaces()
                if at(p) == UInt8(ascii: ",") || at(p) == 0 {
                    end = length
                    openEnded = true
                }
            }
            if !openEnded {
                guard isDigit(at(p)), let e = number() else { return .unsatisfiable }
                end = e
                skipSpaces()
                guard at(p) == UInt8(ascii: ",") || at(p) == 0 else { return .unsatisfiable }
                if suffix {
                    start = end < length ? length - end : 0
                    end = length - 1
                }
                end = end >= length ? length : end + 1
            }
            if start < end {
                spans.append(Span(start: start, end: end))
                size += end - start
                if left == 0 { return .whole }
                left -= 1
            } else if start == 0 {
                return .whole
            }
            guard at(p) == UInt8(ascii: ",") else { break }
            p += 1
        }
        if spans.isEmpty { return .unsatisfiable }
        return size > length ? .whole : .partial(spans)
    }

    /// A streamed body's range: what of each piece falls in it; or its ranges, each piece's parts framed as
    /// multipart ones.
    struct Window {
        let span: Span
        let parts: Multipart?
        /// Where the next piece starts in the body.
        var offset = 0

        init(span: Span) {
            self.span = span
            parts = nil
        }

        init(parts: Multipart) {
            span = Span(start: parts.spans[0].start, end: parts.spans[parts.spans.count - 1].end)
            self.parts = parts
        }

        /// The multipart bytes this piece brings: each part's head where its range starts, what of the piece
        /// falls in a range, and the closing boundary where the last range ends.
        mutating func frame(_ piece: UnsafeRawBufferPointer, to out: (UnsafeRawBufferPointer) -> Void) {
            guard let parts else { return }
            let start = offset
            offset += piece.count
            for (i, s) in parts.spans.enumerated() where s.end > start && s.start < offset {
                if s.start >= start { parts.writeHead(of: s, to: out) }
                out(UnsafeRawBufferPointer(rebasing: piece[max(s.start - start, 0)..<min(s.end - start, piece.count)]))
                if s.end <= offset && i == parts.spans.count - 1 { parts.writeClosing(to: out) }
            }
        }

        mutating func clip(_ piece: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
            let start = offset
            offset += piece.count
            let from = min(max(span.start - start, 0), piece.count), to = min(max(span.end - start, 0), piece.count)
            return UnsafeRawBufferPointer(rebasing: piece[from..<to])
        }
    }

    /// Several ranges in one body, as nginx writes them: each part after a boundary line, with the response's
    /// Content-Type and its Content-Range, and a closing boundary.
    struct Multipart {
        let spans: [Span]
        let length: Int
        /// Twenty digits from the worker's temp-number sequence, as nginx takes its boundaries from its temp
        /// files' numbers.
        let boundary: String
        /// A part's head up to its range.
        private let partHead: String

        init(_ spans: [Span], of length: Int, contentType: String?, _ r: RequestContext) {
            self.spans = spans
            self.length = length
            r.service.tempFileSerial &+= 1
            let n = String(r.service.tempFileSerial)
            boundary = String(repeating: "0", count: max(0, 20 - n.utf8.count)) + n
            partHead = "\r\n--\(boundary)\r\n" + (contentType.map { "Content-Type: \($0)\r\n" } ?? "") + "Content-Range: bytes "
        }

        var contentType: String { "multipart/byteranges; boundary=\(boundary)" }

        private func rangeLine(_ s: Span) -> String { "\(s.start)-\(s.end - 1)/\(length)\r\n\r\n" }
        private var closing: String { "\r\n--\(boundary)--\r\n" }

        /// The whole multipart body's length.
        var bodyLength: Int {
            spans.reduce(closing.utf8.count) { $0 + partHead.utf8.count + rangeLine($1).utf8.count + $1.count }
        }

        /// The parts of `body` (the whole response body) to `out`.
        func write(_ body: UnsafeRawBufferPointer, to out: (UnsafeRawBufferPointer) -> Void) {
            for s in spans {
                writeHead(of: s, to: out)
                out(UnsafeRawBufferPointer(rebasing: body[s.start..<s.end]))
            }
            writeClosing(to: out)
        }

        func writeHead(of s: Span, to out: (UnsafeRawBufferPointer) -> Void) { Multipart.text(partHead + rangeLine(s), to: out) }
        func writeClosing(to out: (UnsafeRawBufferPointer) -> Void) { Multipart.text(closing, to: out) }

        private static func text(_ s: String, to out: (UnsafeRawBufferPointer) -> Void) {
            var s = s
            s.withUTF8 { out(UnsafeRawBufferPointer($0)) }
        }
    }
}

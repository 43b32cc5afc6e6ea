/// What reading part of a head found: not enough bytes yet, nginx's refusal, or the part.
enum Scan<Part> {
    case incomplete
    case failed(status: Int, reason: String)
    case done(Part)
}

/// Where the parts of a request line lie in the buffer, read by nginx 1.22's rules: a method of upper-case
/// letters, "_" and "-"; one or more spaces between the parts; an origin-form target or an absolute form with
/// any scheme, a host of letters, digits, "." and "-" (or an IP literal) and a numeric port; no control byte in
/// the target; "HTTP/" and a version whose major part is 1 (505 for more) and whose minor part has at most
/// three digits; trailing spaces; CRLF or a bare LF. A line without a version is HTTP/0.9.
struct RequestLine {
    var method: Range<Int>
    /// The target as sent: from its "/" (or from the "?" of an absolute form without a path) to its end.
    var target: Range<Int>
    /// Where the path ends: at the first "?" or "#", else at the end of the target.
    var pathEnd: Int
    /// After a "?" that comes before any "#", up to the "#" or the end.
    var query: Range<Int>?
    /// The path holds "%", "/." or "//": nginx decodes and resolves it before routing.
    var pathIsComplex = false
    /// The path holds "%".
    var pathHasEscapes = false
    /// No byte of the target is past ASCII (else it must be checked for UTF-8).
    var isASCII = true
    /// An absolute form's host and port.
    var host: Range<Int>?
    /// 0.9 until a version is read.
    var major = 0, minor = 9
    /// Just past the line's LF.
    var end = 0

    var isHTTP09: Bool { major == 0 }

    static let SP: UInt8 = 0x20, CR: UInt8 = 0x0D, LF: UInt8 = 0x0A
    static let slash = UInt8(ascii: "/"), question = UInt8(ascii: "?"), hash = UInt8(ascii: "#"), colon = UInt8(ascii: ":")
    static let invalidRequest = "client sent invalid request"

    static func scan(_ buf: UnsafeRawBufferPointer, from start: Int) -> Scan<RequestLine> {
        let n = buf.count
        var p = start
        while p < n && isMethodByte(buf[p]) { p += 1 }
        guard p < n else { return .incomplete }
        guard p > start, buf[p] == SP else { return .failed(status: 400, reason: "client sent invalid method") }
        var line = RequestLine(method: start..<p, target: p..<p, pathEnd: p)
        while p < n && buf[p] == SP { p += 1 }
        guard p < n else { return .incomplete }
        if buf[p] != slash {
            switch scanAuthority(buf, from: p) {
            case .incomplete: return .incomplete
            case .failed(let status, let reason): return .failed(status: status, reason: reason)
            case .done(let host):
                line.host = host
                p = host.upperBound
            }
        }

        let targetStart = p
        var previous: UInt8 = 0
        var inPath = true
        var queryStart: Int?, queryEnd: Int?
        while p < n {
            let c = buf[p]
            if c == SP || c == CR || c == LF { break }
            if c < SP || c == 0x7F { return .failed(status: 400, reason: invalidRequest) }
            if c >= 0x80 { line.isASCII = false }
            if inPath {
                switch c {
                case question, hash:
                    line.pathEnd = p
                    if c == question { queryStart = p + 1 }
                    inPath = false
                case URIPath.percent:
                    line.pathIsComplex = true
                    line.pathHasEscapes = true
                case URIPath.dot, slash:
                    if previous == slash { line.pathIsComplex = true }
                default:
                    break
                }
            } else if c == hash && queryStart != nil && queryEnd == nil {
                queryEnd = p
            }
            previous = c
            p += 1
        }
        guard p < n else { return .incomplete }
        line.target = targetStart..<p
        if inPath { line.pathEnd = p }
        if let queryStart { line.query = queryStart..<(queryEnd ?? p) }

        // The version, after one or more spaces; none at all is HTTP/0.9.
        while p < n && buf[p] == SP { p += 1 }
        guard p < n else { return .incomplete }
        if buf[p] != CR && buf[p] != LF {
            for expected in "HTTP/".utf8 {
                guard p < n else { return .incomplete }
                guard buf[p] == expected else { return .failed(status: 400, reason: invalidRequest) }
                p += 1
            }
            guard p < n else { return .incomplete }
            guard buf[p] >= UInt8(ascii: "1"), buf[p] <= UInt8(ascii: "9") else { return .failed(status: 400, reason: invalidRequest) }
            while p < n, let d = digit(buf[p]) {
                line.major = line.major * 10 + d
                // Refused as soon as it shows, as nginx does: "HTTP/2.0" gets 505 before its line ends.
                if line.major > 1 { return .failed(status: 505, reason: "client sent invalid version") }
                p += 1
            }
            guard p < n else { return .incomplete }
            guard buf[p] == URIPath.dot else { return .failed(status: 400, reason: invalidRequest) }
            p += 1
            guard p < n else { return .incomplete }
            guard digit(buf[p]) != nil else { return .failed(status: 400, reason: invalidRequest) }
            line.minor = 0
            while p < n, let d = digit(buf[p]) {
                if line.minor > 99 { return .failed(status: 400, reason: invalidRequest) }
                line.minor = line.minor * 10 + d
                p += 1
            }
            while p < n && buf[p] == SP { p += 1 }
            guard p < n else { return .incomplete }
        }
        if buf[p] == CR {
            guard p + 1 < n else { return .incomplete }
            guard buf[p + 1] == LF else { return .failed(status: 400, reason: invalidRequest) }
            p += 1
        }
        guard buf[p] == LF else { return .failed(status: 400, reason: invalidRequest) }
        line.end = p + 1
        return .done(line)
    }

    /// nginx's method bytes: upper-case letters, "_" and "-".
    @inline(__always) static func isMethodByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }

    @inline(__always) static func digit(_ c: UInt8) -> Int? {
        c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") ? Int(c - UInt8(ascii: "0")) : nil
    }

    @inline(__always) static func isLetter(_ c: UInt8) -> Bool {
        let l = c | 0x20
        return l >= UInt8(ascii: "a") && l <= UInt8(ascii: "z")
    }

    /// An absolute form's `scheme://host[:port]`, up to the "/", "?" or space after it: the range of the host and
    /// port, whose end is where the rest of the target starts. They are checked with the Host header's rules once
    /// the whole line is read, as nginx does.
    static func scanAuthority(_ buf: UnsafeRawBufferPointer, from start: Int) -> Scan<Range<Int>> {
        let n = buf.count
        var p = start
        guard isLetter(buf[p]) else { return .failed(status: 400, reason: invalidRequest) }
        p += 1
        while p < n, isLetter(buf[p]) || digit(buf[p]) != nil || buf[p] == UInt8(ascii: "+") || buf[p] == UInt8(ascii: "-")
                || buf[p] == URIPath.dot {
            p += 1
        }
        for expected in [colon, slash, slash] {
            guard p < n else { return .incomplete }
            guard buf[p] == expected else { return .failed(status: 400, reason: invalidRequest) }
            p += 1
        }
        guard p < n else { return .incomplete }
        let hostStart = p
        if buf[p] == UInt8(ascii: "[") {
            p += 1
            while p < n && buf[p] != UInt8(ascii: "]") {
                guard HostName.isLiteralByte(buf[p]) else { return .failed(status: 400, reason: invalidRequest) }
                p += 1
            }
            guard p < n else { return .incomplete }
            p += 1
        } else {
            while p < n, isLetter(buf[p]) || digit(buf[p]) != nil || buf[p] == URIPath.dot || buf[p] == UInt8(ascii: "-") { p += 1 }
        }
        guard p < n else { return .incomplete }
        if buf[p] == colon {
            p += 1
            while p < n && digit(buf[p]) != nil { p += 1 }
            guard p < n else { return .incomplete }
        }
        guard buf[p] == slash || buf[p] == question || buf[p] == SP else { return .failed(status: 400, reason: invalidRequest) }
        return .done(hostStart..<p)
    }
}

/// A request's URI as strings: as sent, the path nginx routes by, and the query.
struct Target {
    let raw: String
    let path: String
    let query: String?

    /// nil when nginx refuses the path, or when the target or its decoded path is not UTF-8.
    init?(_ buf: UnsafeRawBufferPointer, _ line: RequestLine, mergeSlashes: Bool) {
        let t = line.target
        if !line.isASCII {
            guard String(validating: UnsafeRawBufferPointer(rebasing: buf[t]), as: UTF8.self) != nil else { return nil }
        }
        // Cut at "?" and "#", which are ASCII: the parts of a UTF-8 target are UTF-8.
        query = line.query.map { RequestParser.string(buf, $0.lowerBound, $0.upperBound) }
        if line.pathEnd == t.lowerBound {
            // An absolute form without a path: nginx routes by "/" and sends "/" and the query upstream.
            path = "/"
            raw = query.map { "/?" + $0 } ?? "/"
            return
        }
        raw = RequestParser.string(buf, t.lowerBound, t.upperBound)
        if line.pathIsComplex {
            guard let p = URIPath.normalised(UnsafeRawBufferPointer(rebasing: buf[t.lowerBound..<line.pathEnd]), mergeSlashes: mergeSlashes) else {
                return nil
            }
            path = p
        } else {
            path = line.pathEnd == t.upperBound ? raw : RequestParser.string(buf, t.lowerBound, line.pathEnd)
        }
    }
}

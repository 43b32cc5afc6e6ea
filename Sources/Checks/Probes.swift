import Config
import HTTP
import ShmTable

/// What a probe reply means so far.
public enum Verdict: Equatable, Sendable {
    case needMore
    case up
    /// The reason code for the slot, and the log text (the reference module's wording where it has one).
    case down(FailureReason, String)
}

/// The bytes each check type sends and how its reply is judged, as pure functions.
public enum Probes {
    /// `GET / HTTP/1.0\r\n\r\n` unless `check_http_send` says otherwise.
    public static let defaultHTTPRequest = Array("GET / HTTP/1.0\r\n\r\n".utf8)

    /// The 116-byte TLS 1.2 ClientHello of the reference module, time field zero.
    public static let sslHello: [UInt8] = {
        var b: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x6f, 0x01, 0x00, 0x00, 0x6b, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00]
        b += Array("NGX_HTTP_CHECK_SSL_HELLO".utf8) + [0x0a, 0x0a, 0x0a, 0x0a]
        b += [0x00, 0x00, 0x1a, 0xc0, 0x2b, 0xc0, 0x2f, 0xcc, 0xa9, 0xcc, 0xa8, 0xc0, 0x0a, 0xc0, 0x09, 0xc0, 0x13, 0xc0, 0x14,
              0x00, 0x33, 0x00, 0x39, 0x00, 0x2f, 0x00, 0x35, 0x00, 0x0a]
        b += [0x01, 0x00, 0x00, 0x28]
        b += [0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x17, 0x00, 0x18, 0x00, 0x19]
        b += [0x00, 0x0d, 0x00, 0x18, 0x00, 0x16, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x02, 0x01, 0x04, 0x03, 0x05, 0x03,
              0x06, 0x03, 0x02, 0x03, 0x05, 0x02, 0x04, 0x02, 0x02, 0x02]
        return b
    }()

    public static let ajpCPing: [UInt8] = [0x12, 0x34, 0x00, 0x01, 0x0a]
    static let ajpCPong: [UInt8] = [0x41, 0x42, 0x00, 0x01, 0x09]

    public static let defaultFastCGIParams = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/"), ("SCRIPT_FILENAME", "index.php")]

    /// What to send for a peer's check.
    public static func payload(for c: CheckSettings) -> [UInt8] {
        if c.type == .tcp { return [] }
        if !c.httpSend.isEmpty { return c.httpSend }
        switch c.type {
        case .http, .https: return defaultHTTPRequest
        case .ssl_hello: return sslHello
        case .ajp: return ajpCPing
        case .fastcgi: return fastCGIRequest(c.fastcgiParams ?? defaultFastCGIParams)
        case .mysql, .tcp: return []
        }
    }

    /// BEGIN_REQUEST, PARAMS, empty PARAMS and a valid empty STDIN (the reference leaves 8 bytes uninitialised).
    public static func fastCGIRequest(_ params: [(String, String)]) -> [UInt8] { FastCGI.request(params: params) }

    /// How much of a response body `check_http_expect_body` reads; a longer body is down.
    public static let bodyLimit = 65536

    /// Judges the bytes received so far; `eof` is true once the peer closed (or sent more than a check reads).
    /// With `match` (check_http_expect_body/header), an http(s) response that passes its status must also
    /// pass those, on the whole response.
    public static func evaluate(_ type: CheckType, _ reply: [UInt8], eof: Bool, expect: ExpectAlive, expectSet: Bool, peer: String,
                                match: CheckSettings? = nil) -> Verdict {
        var v: Verdict
        switch type {
        case .tcp: v = .up
        case .http, .https:
            v = http(reply, expect: expect, peer: peer)
            if v == .up, let match, match.matchesResponse { v = response(reply, eof: eof, match, peer: peer) }
        case .ssl_hello:
            if reply.count < 47 { v = .needMore } else if reply[0] == 0x16 && reply[5] == 0x02 { v = .up } else {
                v = .down(.badSSLHello, "check protocol ssl_hello error with peer: \(peer) ")
            }
        case .mysql:
            if reply.count < 5 { v = .needMore } else if reply[3] == 0x00 { v = .up } else {
                v = .down(.badMysqlGreeting, "check protocol mysql error with peer: \(peer) ")
            }
        case .ajp:
            if reply.count < 5 { v = .needMore } else if Array(reply[0..<5]) == ajpCPong { v = .up } else {
                v = .down(.badAJPReply, "check protocol ajp error with peer: \(peer) ")
            }
        case .fastcgi: v = fastCGI(reply, eof: eof, expect: expect, expectSet: expectSet, peer: peer)
        }
        if v == .needMore && eof { return .down(.closed, "peer closed connection before a full reply, peer: \(peer) ") }
        return v
    }

    /// The reference's status-line grammar, quirks included: spaces inside the code are skipped,
    /// `403.1` is accepted, `2000` is not.
    static func http(_ r: [UInt8], expect: ExpectAlive, peer: String) -> Verdict {
        switch statusLine(r) {
        case .needMore: return .needMore
        case .bad: return .down(.protocolError, "http parse status line error with peer: \(peer) ")
        case .code(let code):
            return alive(code, expect) ? .up : .down(.badStatus, "check protocol http error with peer: \(peer) (status \(code))")
        }
    }

    enum StatusLine: Equatable { case needMore, bad, code(Int) }

    private static let statusPrefix = Array("HTTP/".utf8)

    static func statusLine(_ r: [UInt8]) -> StatusLine {
        for (k, c) in statusPrefix.enumerated() {
            if k >= r.count { return .needMore }
            if r[k] != c { return .bad }
        }
        var i = 5
        func at(_ k: Int) -> UInt8? { k < r.count ? r[k] : nil }
        guard let m = at(i) else { return .needMore }
        guard m >= 0x31 && m <= 0x39 else { return .bad }
        i += 1
        while let c = at(i), c >= 0x30 && c <= 0x39 { i += 1 }
        guard let dot = at(i) else { return .needMore }
        guard dot == UInt8(ascii: ".") else { return .bad }
        i += 1
        guard let m1 = at(i) else { return .needMore }
        guard m1 >= 0x30 && m1 <= 0x39 else { return .bad }
        while let c = at(i), c >= 0x30 && c <= 0x39 { i += 1 }
        guard let sp = at(i) else { return .needMore }
        guard sp == 0x20 else { return .bad }
        var code = 0, digits = 0
        while digits < 3 {
            guard let c = at(i) else { return .needMore }
            if c == 0x20 { i += 1; continue }
            guard c >= 0x30 && c <= 0x39 else { return .bad }
            code = code * 10 + Int(c - 0x30)
            digits += 1
            i += 1
        }
        guard let after = at(i) else { return .needMore }
        guard after == 0x20 || after == UInt8(ascii: ".") || after == 0x0D || after == 0x0A else { return .bad }
        while let c = at(i), c != 0x0D && c != 0x0A { i += 1 }
        guard let end = at(i) else { return .needMore }
        if end == 0x0D {
            guard let lf = at(i + 1) else { return .needMore }
            guard lf == 0x0A else { return .bad }
        }
        return .code(code)
    }

    /// The headers and body of a response whose status passed: each check_http_expect_header must find its
    /// header and value, check_http_expect_body its text in the body (read whole, up to `bodyLimit`). A reply
    /// still incomplete is `.needMore`, which `evaluate` judges as closed once the peer has closed.
    static func response(_ r: [UInt8], eof: Bool, _ c: CheckSettings, peer: String) -> Verdict {
        let parsed = r.withUnsafeBytes { ResponseParser.parse($0) }
        let head: ResponseHead, consumed: Int
        switch parsed {
        case .incomplete: return .needMore
        case .invalid: return .down(.protocolError, "http parse response header error with peer: \(peer) ")
        case .complete(let h, let n): (head, consumed) = (h, n)
        }
        let fields = r.withUnsafeBytes { head.headers(in: $0) }
        for h in c.expectHeaders {
            let values = fields.filter { $0.name.lowercased() == h.name }.map(\.value)
            guard values.contains(where: { h.value.matches($0) }) else {
                return .down(.headerMismatch, "check header mismatch (\(h.name)) with peer: \(peer) ")
            }
        }
        guard let expected = c.expectBody else { return .up }
        let tooLarge = Verdict.down(.bodyTooLarge, "check body too large with peer: \(peer) ")
        var body: [UInt8] = []
        if !head.hasBody {
            body = []
        } else if head.chunked {
            var decoder = ChunkedDecoder()
            let event = r[consumed...].withUnsafeBytes { buf in decoder.feed(buf) { body += buf[$0] } }
            switch event {
            case .end: break
            case .error: return .down(.protocolError, "check invalid chunked body with peer: \(peer) ")
            case .data:
                return body.count > bodyLimit || r.count > bodyLimit + consumed ? tooLarge : .needMore
            }
        } else if let length = head.contentLength {
            guard length <= bodyLimit else { return tooLarge }
            guard r.count - consumed >= length else { return .needMore }
            body = Array(r[consumed..<(consumed + length)])
        } else {
            // Framed by the close: what has come is the body once the peer closes.
            guard eof else { return r.count - consumed > bodyLimit ? tooLarge : .needMore }
            guard r.count - consumed <= bodyLimit else { return tooLarge }
            body = Array(r[consumed...])
        }
        guard body.count <= bodyLimit else { return tooLarge }
        return expected.matches(String(decoding: body, as: UTF8.self)) ? .up
            : .down(.bodyMismatch, "check body mismatch with peer: \(peer) ")
    }

    /// The status of a reply whose status line is whole (0 otherwise): what the detail views call the last status.
    public static func statusCode(_ r: [UInt8]) -> Int {
        if case .code(let code) = statusLine(r) { return code }
        return 0
    }

    /// Status classes; codes outside 200–599 are never alive in the reference.
    static func alive(_ code: Int, _ expect: ExpectAlive) -> Bool {
        switch code {
        case 200...299: expect.contains(.http2xx)
        case 300...399: expect.contains(.http3xx)
        case 400...499: expect.contains(.http4xx)
        case 500...599: expect.contains(.http5xx)
        default: false
        }
    }

    /// FastCGI: only the first record counts, with the reference's status-header prefix quirk.
    static func fastCGI(_ r: [UInt8], eof: Bool, expect: ExpectAlive, expectSet: Bool, peer: String) -> Verdict {
        guard r.count >= 8 else { return .needMore }
        let err = { (m: String) in Verdict.down(.badFastCGIReply, "\(m), peer: \(peer) ") }
        guard r[0] == 1 else { return err("upstream sent unsupported FastCGI protocol version: \(r[0])") }
        let type = r[1]
        guard type == 6 || type == 7 || type == 3 else { return err("upstream sent invalid FastCGI record type: \(type)") }
        guard r[2] == 0 else { return err("upstream sent unexpected FastCGI request id high byte: \(r[2])") }
        guard r[3] == 1 else { return err("upstream sent unexpected FastCGI request id low byte: \(r[3])") }
        if type == 3 { return err("check fastcgi sent unexpected FastCGI record: 3") }
        if type == 7 { return err("fastcgi check error") }
        let len = Int(r[4]) << 8 | Int(r[5])
        guard len > 0 else { return err("check fastcgi prematurely closed FastCGI stdout") }
        // The reference needs more bytes than the record's content: padding or a following record.
        guard r.count > 8 + len else { return eof ? err("check fastcgi prematurely closed FastCGI stdout") : .needMore }
        let content = r[8..<(8 + len)]
        var status: Int?
        for rawLine in content.split(separator: 0x0A, omittingEmptySubsequences: true) {
            var line = rawLine
            if line.last == 0x0D { line = line.dropLast() }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            guard !name.isEmpty, "status".hasPrefix(name) else { continue }
            var value = line[(colon + 1)...].drop(while: { $0 == 0x20 })
            var code = 0
            for k in 0..<3 {
                guard let c = value.first, c >= 0x30 && c <= 0x39, !(k == 0 && c == 0x30) else {
                    return err("check fastcgi invalid status header")
                }
                code = code * 10 + Int(c - 0x30)
                value = value.dropFirst()
            }
            status = code
            break
        }
        guard expectSet, let code = status else { return .up }
        return alive(code, expect) ? .up : .down(.badStatus, "check protocol fastcgi error with peer: \(peer) (status \(code))")
    }
}

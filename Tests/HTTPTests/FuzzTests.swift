import Foundation
import FuzzSupport
import XCTest
@testable import HTTP

/// In-process, deterministic mutation fuzzing of the request parser, the chunked decoder and the response
/// parser. Each iteration derives its own PRNG from the seed and its index, so a failure names everything
/// needed to replay it. `VIGIL_FUZZ_ITERATIONS` sets the count (default 3000; a benchmark can ask for
/// millions) and `VIGIL_FUZZ_SEED` the seed.
final class FuzzTests: XCTestCase {

    static let CR: UInt8 = 0x0D, LF: UInt8 = 0x0A, SP: UInt8 = 0x20, HT: UInt8 = 0x09

    static let requestCorpus: [[UInt8]] = {
        var many = "GET /many HTTP/1.1\r\nHost: many.example\r\n"
        for k in 0..<30 { many += "X-Header-\(k): value-\(k)\r\n" }
        many += "Cookie: a=1; b=2; c=3\r\n\r\n"
        let texts = [
            "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "GET /index.html?lang=en&x=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\n"
                + "Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET /old HTTP/1.0\r\nConnection: keep-alive\r\nHost: a\r\n\r\n",
            "POST /submit HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"hello\"}",
            "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
            "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
            "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: v\r\n\r\n"
                + "GET /after HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http://example.com:8080/path?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            "GET https://secure.example/ HTTP/1.1\r\nHost: secure.example\r\nProxy-Connection: keep-alive\r\n\r\n",
            "OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n",
            many,
            "\r\n\r\nGET /lead HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /lf HTTP/1.1\nHost: h\nX: y\n\n",
            "HEAD /h HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "DELETE /d HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-WebSocket-Version: 13\r\n\r\n",
            "GET /caf%C3%A9/\u{e9}t\u{e9}?q=%20 HTTP/1.1\r\nHost: h\r\n\r\n",
            "PATCH /p HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + String(repeating: "t0K", count: 70)
                + "\r\nContent-Length: 2\r\n\r\n{}",
        ]
        return texts.map { Array($0.utf8) }
    }()

    static let chunkedCorpus: [[UInt8]] = ChunkedDecoderTests.validBodies.map { Array($0.body.utf8) } + [
        "3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        "10\r\n0123456789abcdef\r\n0\r\nA: 1\r\nB: 2\r\n\r\nXX",
    ].map { Array($0.utf8) }

    static let responseCorpus: [[UInt8]] = [
        "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\n\r\n",
        "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 301 Moved Permanently\nLocation: http://x/\nContent-Length: 0\n\n",
    ].map { Array($0.utf8) }

    static let interesting: [UInt8] = Array("\r\n \t:0123456789,;-/?.#@[]\\\"aAzZ".utf8) + [0x00, 0x7F, 0x80, 0xC3, 0xFF]

    static let headerLines: [[UInt8]] = [
        "Transfer-Encoding: chunked\r\n", "Content-Length: 0\r\n", "Content-Length: 7\r\n", "Content-Length: -1\r\n",
        "Host: x\r\n", "Host: \r\n", " folded\r\n", "\tfolded\r\n", "Connection: close\r\n", "Connection: keep-alive\r\n",
        "Transfer-Encoding: gzip\r\n", "Transfer-Encoding : chunked\r\n", "X: a\rb\r\n", "Expect: 100-continue\r\n",
        "Content-Length: 99999999999999999999\r\n", "\r\n", "\n", "0\r\n\r\n",
    ].map { Array($0.utf8) }

    // MARK: Mutations

    static func lineStarts(_ b: [UInt8]) -> [Int] {
        var starts = [0]
        for (k, c) in b.enumerated() where c == LF && k + 1 <= b.count { starts.append(k + 1) }
        return starts
    }

    static func mutate(_ input: [UInt8], corpus: [[UInt8]], rng: inout SplitMix64) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + rng.below(4)) {
            let n = b.count
            switch rng.below(14) {
            case 0 where n > 0: // flip a bit
                b[rng.below(n)] ^= UInt8(1) << UInt8(rng.below(8))
            case 1 where n > 0: // replace a byte with an interesting one
                b[rng.below(n)] = rng.pick(interesting)
            case 2: // insert an interesting byte
                b.insert(rng.pick(interesting), at: rng.below(n + 1))
            case 12: // insert a UTF-8 sequence that lowercases to ASCII or combines with the previous byte
                b.insert(contentsOf: rng.pick([[0xCC, 0x81], [0xE2, 0x84, 0xAA], [0xC5, 0xBF], [0xEF, 0xBF, 0xBD], [0xC3]]), at: rng.below(n + 1))
            case 3: // insert a line break
                b.insert(contentsOf: rng.pick([[CR, LF], [LF], [CR], [CR, LF, CR, LF], [LF, SP]]), at: rng.below(n + 1))
            case 4 where n > 0: // delete a few bytes
                let at = rng.below(n)
                b.removeSubrange(at..<min(n, at + 1 + rng.below(8)))
            case 5: // duplicate a header line
                let starts = lineStarts(b)
                let s = rng.pick(starts)
                if let lf = b[s...].firstIndex(of: LF) { b.insert(contentsOf: b[s...lf], at: lf + 1) }
            case 6: // splice: our prefix, another entry's suffix
                let other = rng.pick(corpus)
                b = Array(b[0..<rng.below(n + 1)]) + Array(other[rng.below(other.count + 1)...])
            case 7 where n > 0: // truncate
                b.removeSubrange(rng.below(n)...)
            case 8: // insert a header line at a line start
                b.insert(contentsOf: rng.pick(headerLines), at: rng.pick(lineStarts(b)))
            case 9 where n > 0: // flip the case of a letter
                let at = rng.below(n)
                if (0x41...0x5A).contains(b[at]) || (0x61...0x7A).contains(b[at]) { b[at] ^= 0x20 }
            case 10 where n > 0: // repeat a range (long lines, repeated tokens)
                let at = rng.below(n)
                let piece = b[at..<min(n, at + 1 + rng.below(16))]
                let times = rng.chance(10) ? 600 : 1 + rng.below(4)
                b.insert(contentsOf: Array(repeating: Array(piece), count: times).joined(), at: at)
            case 11: // swap a digit run for another number
                if let at = b.indices.filter({ (0x30...0x39).contains(b[$0]) }).randomElement(using: &rng) {
                    var end = at
                    while end < b.count && (0x30...0x39).contains(b[end]) { end += 1 }
                    let number = rng.pick(["0", "1", "00", "7", "15", "ffff", "18446744073709551616", "-1", "0x1", "1 1", "999999999999999999"])
                    b.replaceSubrange(at..<end, with: Array(number.utf8))
                }
            default: // splice two whole entries (pipelining)
                b += rng.pick(corpus)
            }
        }
        return b
    }

    // MARK: Invariants

    static func isToken(_ c: UInt8) -> Bool { RequestParser.isToken(c) }

    static func obsFold(_ b: [UInt8], upTo end: Int) -> Bool {
        guard end >= 2 else { return false }
        for p in 0..<(end - 1) where b[p] == LF && (b[p + 1] == SP || b[p + 1] == HT) { return true }
        return false
    }

    /// Problems with the request parser's answer for `b`, or none.
    static func checkRequest(_ b: [UInt8], rules: RequestRules, rng: inout SplitMix64, depth: Int = 0) -> [String] {
        var problems: [String] = []
        let r = parseRequest(b, rules: rules)
        switch r {
        case .incomplete:
            break
        case .failure(let status, let reason):
            if ![400, 405, 414, 494, 501, 505].contains(status) { problems.append("unexpected status \(status) (\(reason))") }
        case .complete(let head, let consumed):
            if consumed <= 0 || consumed > b.count { problems.append("consumed \(consumed) outside 1...\(b.count)"); return problems }
            if b[consumed - 1] != LF { problems.append("consumed does not end after an LF") }
            if head.chunked && head.contentLength != nil { problems.append("both chunked and Content-Length") }
            if head.chunked && !head.isHTTP11 { problems.append("chunked in HTTP/1.0") }
            if head.versionMajor != 1 { problems.append("version \(head.versionMajor)") }
            if obsFold(b, upTo: consumed) { problems.append("accepted an obs-fold line") }
            var hosts = 0, tes = 0
            var lengths = Set<Int?>()
            for (name, value) in head.headers {
                if name.isEmpty || !name.utf8.allSatisfy(isToken) { problems.append("header name \"\(name)\" is not a token") }
                if value.utf8.contains(0) || value.utf8.contains(CR) || value.utf8.contains(LF) { problems.append("NUL/CR/LF in \(name) value") }
                if value.first == " " || value.last == " " { problems.append("untrimmed \(name) value") }
                switch name.lowercased() {
                case "host": hosts += 1
                case "transfer-encoding": tes += 1
                case "content-length": lengths.insert(Int(value))
                default: break
                }
            }
            if hosts > 1 { problems.append("\(hosts) Host headers") }
            if tes > 1 { problems.append("\(tes) Transfer-Encoding headers") }
            if lengths.count > 1 { problems.append("differing Content-Length values \(lengths)") }
            if let only = lengths.first, head.contentLength != only { problems.append("contentLength \(String(describing: head.contentLength)) vs header \(String(describing: only))") }
            if head.chunked != (tes == 1) { problems.append("chunked=\(head.chunked) with \(tes) Transfer-Encoding headers") }
            if head.isHTTP11 && hosts == 0 { problems.append("HTTP/1.1 without Host") }
            if head.isHTTP11 && head.host == nil { problems.append("HTTP/1.1 with a nil host") }
            if head.target.utf8.first != UInt8(ascii: "/") { problems.append("target \(head.target)") }
            if head.path.utf8.first != UInt8(ascii: "/") || head.path.contains("/../") || head.path.hasSuffix("/..")
                || head.path.contains("/./") || head.path.contains("//") {
                problems.append("path \(head.path) is not normalised")
            }
            if let host = head.host, host.utf8.contains(where: { $0 == UInt8(ascii: "/") || $0 <= SP }) { problems.append("host \(host)") }
            if head.chunked, let te = head.header("transfer-encoding"), Array(te.utf8).map({ $0 | 0x20 }) != Array("chunked".utf8) {
                problems.append("chunked from Transfer-Encoding \(te)")
            }

            // Re-parsing exactly the consumed prefix gives the same result.
            let again = parseRequest(Array(b[0..<consumed]), rules: rules)
            if describe(again) != describe(r) { problems.append("re-parse of consumed prefix: \(describe(again)) vs \(describe(r))") }

            // What follows (a body, the next request) must not upset anything.
            if head.chunked {
                problems += checkChunked(b, from: consumed, rng: &rng)
            } else if depth == 0, let len = head.contentLength, consumed + len < b.count {
                problems += checkRequest(Array(b[(consumed + len)...]), rules: rules, rng: &rng, depth: 1).map { "next request: " + $0 }
            } else if depth == 0, head.contentLength == nil, consumed < b.count {
                problems += checkRequest(Array(b[consumed...]), rules: rules, rng: &rng, depth: 1).map { "next request: " + $0 }
            }
        }

        // The same bytes in two calls: the prefix is incomplete or already gives the same answer.
        let k = rng.below(b.count + 1)
        let early = parseRequest(Array(b[0..<k]), rules: rules)
        switch (early, r) {
        case (.incomplete, _):
            break
        case (.complete, _):
            if describe(early) != describe(r) { problems.append("prefix of \(k) bytes: \(describe(early)) vs whole: \(describe(r))") }
        case (.failure(let s1, _), .failure(let s2, _)) where s1 == s2:
            break
        default:
            problems.append("prefix of \(k) bytes: \(describe(early)) vs whole: \(describe(r))")
        }
        return problems
    }

    /// Decodes `b[from...]` fed whole, then cut at a random point into two reads, then (sometimes) byte by
    /// byte; every range must lie inside its buffer and every way of feeding must agree.
    static func checkChunked(_ b: [UInt8], from: Int, rng: inout SplitMix64) -> [String] {
        var problems: [String] = []
        func run(_ cuts: [Int]) -> (data: [UInt8], end: String) {
            var decoder = ChunkedDecoder(maxTrailerBytes: 64)
            var data: [UInt8] = []
            let bounds = [from] + cuts + [b.count]
            for p in 0..<(bounds.count - 1) {
                let piece = Array(b[bounds[p]..<bounds[p + 1]])
                let event = piece.withUnsafeBytes { buf in
                    decoder.feed(buf, from: 0) { range in
                        if range.lowerBound < 0 || range.upperBound > buf.count || range.isEmpty {
                            problems.append("data range \(range) outside buffer of \(buf.count)")
                        } else {
                            data += buf[range]
                        }
                    }
                }
                switch event {
                case .data(let r):
                    if r != piece.count..<piece.count { problems.append("stopped at \(r) of \(piece.count) without end or error") }
                case .end(let consumed):
                    if consumed <= 0 || consumed > piece.count { problems.append("end consumed \(consumed) outside 1...\(piece.count)") }
                    return (data, "end(\(bounds[p] + consumed))")
                case .error:
                    return (data, "error")
                }
            }
            return (data, "need more")
        }
        let whole = run([])
        let n = b.count - from
        if n > 1 {
            let cut = from + 1 + rng.below(n - 1)
            let split = run([cut])
            if split.data != whole.data || split.end != whole.end {
                problems.append("split at \(cut): \(split.end) \"\(escaped(split.data))\" vs whole: \(whole.end) \"\(escaped(whole.data))\"")
            }
            if rng.chance(10) {
                let bytewise = run(Array((from + 1)..<b.count))
                if bytewise.data != whole.data || bytewise.end != whole.end {
                    problems.append("byte by byte: \(bytewise.end) vs whole: \(whole.end)")
                }
            }
        }
        return problems
    }

    static func checkResponse(_ b: [UInt8], rng: inout SplitMix64) -> [String] {
        var problems: [String] = []
        let r = parseResponse(b, maxHead: 512)
        if case .complete(let head, let consumed) = r {
            if consumed <= 0 || consumed > b.count { problems.append("consumed \(consumed) outside 1...\(b.count)"); return problems }
            if b[consumed - 1] != LF { problems.append("consumed does not end after an LF") }
            if head.chunked && head.contentLength != nil { problems.append("both chunked and Content-Length") }
            if !(100...999).contains(head.status) { problems.append("status \(head.status)") }
            if obsFold(b, upTo: consumed) { problems.append("accepted an obs-fold line") }
            for (name, value) in b.withUnsafeBytes({ head.headers(in: $0) })
            where value.utf8.contains(0) || value.utf8.contains(CR) || value.utf8.contains(LF) {
                problems.append("NUL/CR/LF in \(name) value")
            }
            let again = parseResponse(Array(b[0..<consumed]), maxHead: 512)
            if describe(again) != describe(r) { problems.append("re-parse of consumed prefix: \(describe(again)) vs \(describe(r))") }
        }
        let k = rng.below(b.count + 1)
        let early = parseResponse(Array(b[0..<k]), maxHead: 512)
        switch (early, r) {
        case (.incomplete, _), (.invalid, .invalid):
            break
        case (.complete, _):
            if describe(early) != describe(r) { problems.append("prefix of \(k) bytes: \(describe(early)) vs whole: \(describe(r))") }
        default:
            problems.append("prefix of \(k) bytes: \(describe(early)) vs whole: \(describe(r))")
        }
        return problems
    }

    // MARK: Driver


    static var iterations: Int { FuzzEnvironment.iterations(default: 3000) }

    static var seed: UInt64 { FuzzEnvironment.seed(default: 0x5EED_F00D) }

    /// One iteration: a mutated request, a mutated chunked body, a mutated response.
    static func runCase(_ iteration: Int, seed: UInt64, progress: FuzzProgress) {
        var rng = SplitMix64(seed: seed ^ (UInt64(iteration) &* 0xD1B5_4A32_D192_ED03))
        let context = "seed \(seed) iteration \(iteration)"

        let request = mutate(rng.pick(requestCorpus), corpus: requestCorpus, rng: &rng)
        let rules = rng.chance(25) ? RequestRules(maxLineLength: 24 + rng.below(100), maxHeadLength: 64 + rng.below(400))
                                    : RequestRules()
        progress.start(request)
        switch parseRequest(request, rules: rules) {
        case .incomplete: progress.count("incomplete")
        case .complete: progress.count("complete")
        case .failure(let status, _): progress.count("\(status)")
        }
        for p in checkRequest(request, rules: rules, rng: &rng) {
            progress.fail("\(context) request \"\(escaped(request))\" rules \(rules.maxLineLength)/\(rules.maxHeadLength): \(p)")
        }

        let body = mutate(rng.pick(chunkedCorpus), corpus: chunkedCorpus, rng: &rng)
        progress.start(body)
        for p in checkChunked(body, from: 0, rng: &rng) { progress.fail("\(context) chunked \"\(escaped(body))\": \(p)") }

        let response = mutate(rng.pick(responseCorpus), corpus: responseCorpus, rng: &rng)
        progress.start(response)
        for p in checkResponse(response, rng: &rng) { progress.fail("\(context) response \"\(escaped(response))\": \(p)") }
        progress.finish()
    }

    func testMutationFuzz() {
        let seed = Self.seed
        _ = FuzzProgress.runTest("HTTP fuzz", iterations: Self.iterations, seed: seed, show: { "\"\(escaped($0))\"" },
                                 summary: { "requests: " + $0.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") },
                                 { Self.runCase($0, seed: seed, progress: $1) })
    }

    /// The mutator itself is deterministic: the same seed gives the same cases.
    func testMutatorIsDeterministic() {
        for iteration in 0..<50 {
            var a = SplitMix64(seed: 42 ^ UInt64(iteration)), b = SplitMix64(seed: 42 ^ UInt64(iteration))
            XCTAssertEqual(Self.mutate(Self.requestCorpus[iteration % Self.requestCorpus.count], corpus: Self.requestCorpus, rng: &a),
                           Self.mutate(Self.requestCorpus[iteration % Self.requestCorpus.count], corpus: Self.requestCorpus, rng: &b))
        }
    }

    /// Every corpus entry is itself valid, so mutations start from interesting, deep states.
    func testCorpusIsValid() {
        for entry in Self.requestCorpus {
            guard case .complete = parseRequest(entry) else { return XCTFail("corpus entry \"\(escaped(entry))\": \(describe(parseRequest(entry)))") }
        }
        for entry in Self.chunkedCorpus {
            guard case .end = decodeChunked(entry).end else { return XCTFail("chunked corpus entry \"\(escaped(entry))\"") }
        }
        for entry in Self.responseCorpus {
            guard case .complete = parseResponse(entry) else { return XCTFail("response corpus entry \"\(escaped(entry))\"") }
        }
    }
}

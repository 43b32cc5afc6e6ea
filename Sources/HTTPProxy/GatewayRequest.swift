import Config
import Core
import HTTP
import HTTPServer
import Script

/// What a `fastcgi_pass` (`scgi_pass`, `uwsgi_pass`) location needs per request, prepared once per worker.
final class GatewayRoute {
    let keepConn: Bool
    /// fastcgi_catch_stderr's strings.
    let catchStderr: [[UInt8]]
    let modifier1: UInt8, modifier2: UInt8
    let params: GatewayParams
    /// With the location's cache on, for a request whose response may be stored: nginx's params that keep the
    /// client's validators and ranges from the application (and send a revalidation's own), unless the
    /// configuration gives those names.
    let cachingParams: GatewayParams?

    init(_ s: GatewaySettings, encoding: ParamEncoding, caching: Bool = false) {
        params = GatewayParams(s.params, encoding: encoding)
        cachingParams = caching ? GatewayParams(s.params + GatewayRoute.cacheParams.filter { c in !s.params.contains { $0.name == c.name } },
                                                encoding: encoding) : nil
        keepConn = s.keepConn
        catchStderr = s.catchStderr.map { Array($0.utf8) }
        modifier1 = UInt8(s.modifier1)
        modifier2 = UInt8(s.modifier2)
    }

    private static let cacheParams = [
        GatewayParam(name: "HTTP_IF_MODIFIED_SINCE", value: ProxyHeaders.resolved("$upstream_cache_last_modified"), ifNotEmpty: true),
        GatewayParam(name: "HTTP_IF_UNMODIFIED_SINCE", value: Template(""), ifNotEmpty: true),
        GatewayParam(name: "HTTP_IF_NONE_MATCH", value: ProxyHeaders.resolved("$upstream_cache_etag"), ifNotEmpty: true),
        GatewayParam(name: "HTTP_IF_MATCH", value: Template(""), ifNotEmpty: true),
        GatewayParam(name: "HTTP_RANGE", value: Template(""), ifNotEmpty: true),
        GatewayParam(name: "HTTP_IF_RANGE", value: Template(""), ifNotEmpty: true),
    ]
}

/// A location's params, compiled when the worker starts into the bytes their encoding makes of them: a run
/// of literal pairs is one copy, a pair with a variable value is its bytes up to the value (the value's length
/// left 0), then the value rendered in place and its length patched. And the client headers they replace.
final class GatewayParams {
    struct Step {
        enum Value { case none, variable(Variable), template(Template) }
        /// The encoded bytes this step copies (in `encoded`).
        let bytes: Range<Int>
        let value: Value
        let nameLength: Int
        let ifNotEmpty: Bool
    }

    let encoding: ParamEncoding
    let steps: [Step]
    let encoded: [UInt8]
    /// The client headers a `*_param HTTP_*` replaces, as their HTTP_ names' tails lowercased ("x_blah").
    private let replacedHeaders: [[UInt8]]

    init(_ params: [GatewayParam], encoding: ParamEncoding) {
        self.encoding = encoding
        let out = OutputQueue()
        var steps: [Step] = []
        var literalRun: Int?
        for p in params {
            let name = Array(p.name.utf8)
            if let literal = p.value.literal {
                if p.ifNotEmpty && literal.isEmpty { continue }
                if literalRun == nil { literalRun = out.count }
                name.withUnsafeBytes { n in encoding.pair(nameLength: n.count, into: out, { out.append(n) }, value: { out.append(literal) }) }
                continue
            }
            if let run = literalRun { steps.append(Step(bytes: run..<out.count, value: .none, nameLength: 0, ifNotEmpty: false)) }
            literalRun = nil
            let start = out.count
            name.withUnsafeBytes { n in encoding.open(nameLength: n.count, into: out) { out.append(n) } }
            let value: Step.Value = p.value.soleVariable.map { .variable($0) } ?? .template(p.value)
            steps.append(Step(bytes: start..<out.count, value: value, nameLength: name.count, ifNotEmpty: p.ifNotEmpty))
        }
        if let run = literalRun { steps.append(Step(bytes: run..<out.count, value: .none, nameLength: 0, ifNotEmpty: false)) }
        self.steps = steps
        encoded = out.bytes
        replacedHeaders = params.compactMap { p in
            p.name.hasPrefix("HTTP_") ? Array(p.name.dropFirst(5).lowercased().utf8) : nil
        }
    }

    /// Whether the client header `name` is sent as HTTP_NAME: not when a param gives that name.
    func passes(_ name: UnsafeRawBufferPointer) -> Bool {
        replacedHeaders.allSatisfy { r in
            r.count != name.count || !zip(r, name).allSatisfy { $0 == ($1 == 0x2D ? 0x5F : ($1 >= 0x41 && $1 <= 0x5A ? $1 + 0x20 : $1)) }
        }
    }
}

/// How each gateway protocol writes a name-value pair: FastCGI's two lengths before both, uwsgi's 16-bit
/// little-endian length before each, SCGI's NUL after each.
enum ParamEncoding {
    case fastcgi, scgi, uwsgi

    init?(_ proto: UpstreamProtocol) {
        switch proto {
        case .fastcgi: self = .fastcgi
        case .scgi: self = .scgi
        case .uwsgi: self = .uwsgi
        case .http: return nil
        }
    }

    /// A pair's bytes up to its value, the name (`nameLength` bytes) written by `writeName`, the value's
    /// length as 0 (see `finish`).
    @inline(__always) func open(nameLength: Int, into out: OutputQueue, _ writeName: () -> Void) {
        switch self {
        case .fastcgi:
            GatewayRequest.fastcgiLength(nameLength, into: out)
            GatewayRequest.byte(0, into: out)
            writeName()
        case .uwsgi:
            GatewayRequest.uint16(nameLength, into: out)
            writeName()
            GatewayRequest.uint16(0, into: out)
        case .scgi:
            writeName()
            GatewayRequest.byte(0, into: out)
        }
    }

    /// Ends a pair whose `open` began at `start` and whose value of `n` bytes follows it: the value's length
    /// patched in (FastCGI's sits after the name's length; past 127 it takes three more bytes, opened in place).
    @inline(__always) func finish(from start: Int, nameLength: Int, value n: Int, into out: OutputQueue) {
        switch self {
        case .fastcgi:
            let slot = start + (nameLength > 127 ? 4 : 1)
            if n <= 127 { return out.overwrite(at: slot, UInt8(n)) }
            out.open(3, at: slot + 1)
            var (bytes, count) = FastCGI.length(n)
            withUnsafeBytes(of: &bytes) { out.overwrite(at: slot, UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
        case .uwsgi:
            var b = (UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8))
            withUnsafeBytes(of: &b) { out.overwrite(at: out.count - n - 2, $0) }
        case .scgi:
            GatewayRequest.byte(0, into: out)
        }
    }

    /// A whole pair: its name written by `writeName`, its value by `writeValue`.
    @inline(__always) func pair(nameLength: Int, into out: OutputQueue, _ writeName: () -> Void, value writeValue: () -> Void) {
        let start = out.count
        open(nameLength: nameLength, into: out, writeName)
        let from = out.count
        writeValue()
        finish(from: start, nameLength: nameLength, value: out.count - from, into: out)
    }
}

/// The gateway protocols' request bytes written into an output queue.
enum GatewayRequest {
    static let beginKeep = FastCGI.beginRequestRecord(keepConn: true)
    static let beginClose = FastCGI.beginRequestRecord(keepConn: false)
    /// STDIN records of the body are at most this long (the rest of 64 kB a record allows is not needed).
    static let piece = 32768

    @inline(__always) static func fastcgiHeader(_ type: UInt8, _ n: Int, padding: Int = 0, into out: OutputQueue) {
        var h = FastCGI.header(type, length: n, padding: padding)
        withUnsafeBytes(of: &h) { out.append($0) }
    }

    static func stdinHeader(_ n: Int, into out: OutputQueue) { fastcgiHeader(FastCGI.stdin, n, into: out) }

    /// Body bytes as STDIN records.
    static func stdin(_ bytes: UnsafeRawBufferPointer, into out: OutputQueue) {
        var i = 0
        while i < bytes.count {
            let n = min(piece, bytes.count - i)
            fastcgiHeader(FastCGI.stdin, n, into: out)
            out.append(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + n)]))
            i += n
        }
    }

    /// The empty STDIN record: the body has ended.
    static func endStdin(into out: OutputQueue) { fastcgiHeader(FastCGI.stdin, 0, into: out) }

    @inline(__always) static func byte(_ b: UInt8, into out: OutputQueue) {
        var b = b
        withUnsafeBytes(of: &b) { out.append($0) }
    }

    @inline(__always) static func uint16(_ n: Int, into out: OutputQueue) {
        var b = (UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8))
        withUnsafeBytes(of: &b) { out.append($0) }
    }

    @inline(__always) static func fastcgiLength(_ n: Int, into out: OutputQueue) {
        var (bytes, count) = FastCGI.length(n)
        withUnsafeBytes(of: &bytes) { out.append(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
    }

    /// A header name's byte as its HTTP_ parameter has it: uppercase, `-` as `_`.
    @inline(__always) static func paramByte(_ b: UInt8) -> UInt8 {
        b == 0x2D ? 0x5F : (b >= 0x61 && b <= 0x7A ? b - 0x20 : b)
    }

    static let zeros: UnsafeRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: 8)
        return UnsafeRawPointer(p)
    }()
}

extension ProxySession {
    /// The request in the gateway's protocol; false when it cannot be made (logged; the request is a 500).
    /// FastCGI: BEGIN_REQUEST, PARAMS records, and for a body in memory its STDIN records and the empty one
    /// that ends them. SCGI: a netstring of CONTENT_LENGTH and the params, then the body. uwsgi: its four-byte
    /// header and the params, then the body.
    func buildGatewayRequest() -> Bool {
        let out = outgoing
        out.clear()
        let passBody = conf.passRequestBody
        switch proto {
        case .fastcgi:
            out.append(gateway?.keepConn == true ? GatewayRequest.beginKeep : GatewayRequest.beginClose)
            let start = out.count
            GatewayRequest.fastcgiHeader(FastCGI.params, 0, into: out)
            appendParams(out)
            closeFastCGIParams(out, from: start)
            GatewayRequest.fastcgiHeader(FastCGI.params, 0, into: out)
            guard case .inline = bodySource else { return true }
            if passBody { request.body.bytes.withUnsafeBytes { GatewayRequest.stdin($0, into: out) } }
            GatewayRequest.endStdin(into: out)
        case .scgi:
            // The netstring's length comes first: the params are written aside, then copied after it.
            let params = proxy.paramScratch
            params.clear()
            let length: Int
            switch bodySource {
            case .inline: length = passBody ? request.body.bytes.count : 0
            case .file(let file): length = file.size
            case .stream: length = request.head.contentLength ?? 0
            }
            params.append("CONTENT_LENGTH")
            GatewayRequest.byte(0, into: params)
            params.append(length)
            GatewayRequest.byte(0, into: params)
            appendParams(params)
            out.append(params.count)
            out.append(":")
            params.withUnsent { out.append($0) }
            out.append(",")
            params.clear()
            if case .inline = bodySource, passBody { out.append(request.body.bytes) }
        case .uwsgi:
            GatewayRequest.uint16(0, into: out)
            GatewayRequest.uint16(0, into: out)
            appendParams(out)
            let size = out.count - 4
            guard size <= 65535 else {
                request.log.error("uwsgi request is too big: \(size)\(request.logContext)")
                return false
            }
            var h = (gateway?.modifier1 ?? 0, UInt8(truncatingIfNeeded: size), UInt8(truncatingIfNeeded: size >> 8), gateway?.modifier2 ?? 0)
            withUnsafeBytes(of: &h) { out.overwrite(at: 0, $0) }
            if case .inline = bodySource, passBody { out.append(request.body.bytes) }
        case .http:
            preconditionFailure("an HTTP upstream's request is buildRequest's")
        }
        return true
    }

    /// The params as the gateway's settings give them (one with `if_not_empty` left out when empty), then the
    /// client's headers as HTTP_* unless a param gave that name; a header the client repeated goes once, its
    /// values joined as nginx 1.23 joins them (Cookie's with "; ", others' with ", ").
    private func appendParams(_ out: OutputQueue) {
        guard let gateway else { return }
        let params = cacheable ? gateway.cachingParams ?? gateway.params : gateway.params
        let encoding = params.encoding
        let request = self.request
        // Read in place: a copy of each step retained and released its parts.
        params.encoded.withUnsafeBytes { encoded in
            params.steps.withUnsafeBufferPointer { steps in
                for i in steps.indices {
                    let start = out.count
                    out.append(UnsafeRawBufferPointer(rebasing: encoded[steps[i].bytes]))
                    let from = out.count
                    switch steps[i].value {
                    case .none: continue
                    case .variable(let v): _ = request.appendValue(v, to: out)
                    case .template(let t): t.render(request, into: out)
                    }
                    let n = out.count - from
                    if n == 0 && steps[i].ifNotEmpty {
                        out.truncate(to: start)
                    } else {
                        encoding.finish(from: start, nameLength: steps[i].nameLength, value: n, into: out)
                    }
                }
            }
        }
        guard conf.passRequestHeaders else { return }
        let fields = request.head.fields
        request.head.block.withUnsafeBytes { bytes in
            func same(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
                a.count == b.count && zip(bytes[a], bytes[b]).allSatisfy { $0 | 0x20 == $1 | 0x20 }
            }
            for (i, f) in fields.enumerated() {
                let name = UnsafeRawBufferPointer(rebasing: bytes[f.name])
                if !params.passes(name) { continue }
                // A repeated header went with its first.
                if fields[..<i].contains(where: { same($0.name, f.name) }) { continue }
                let separator = RequestParser.matches(name, lowercase: "cookie") ? "; " : ", "
                encoding.pair(nameLength: 5 + name.count, into: out, {
                    out.append("HTTP_")
                    _ = out.append(upTo: name.count) { p in
                        for k in 0..<name.count { p.storeBytes(of: GatewayRequest.paramByte(name[k]), toByteOffset: k, as: UInt8.self) }
                        return name.count
                    }
                }, value: {
                    out.append(UnsafeRawBufferPointer(rebasing: bytes[f.value]))
                    for g in fields[(i + 1)...] where same(g.name, f.name) {
                        out.append(separator)
                        out.append(UnsafeRawBufferPointer(rebasing: bytes[g.value]))
                    }
                })
            }
        }
    }

    /// Writes the PARAMS record's length into its header at `start`, padded to eight bytes; params longer than a
    /// record holds are split over several.
    private func closeFastCGIParams(_ out: OutputQueue, from start: Int) {
        let content = out.count - start - FastCGI.headerSize
        if content <= FastCGI.maxContent {
            let padding = (8 - content % 8) % 8
            var h = FastCGI.header(FastCGI.params, length: content, padding: padding)
            withUnsafeBytes(of: &h) { out.overwrite(at: start, $0) }
            out.append(UnsafeRawBufferPointer(start: GatewayRequest.zeros, count: padding))
            return
        }
        let pairs = Array(out.bytes[(start + FastCGI.headerSize)...])
        out.truncate(to: start)
        // The stream's own end record is dropped: the caller writes it.
        out.append(Array(FastCGI.stream(FastCGI.params, pairs).dropLast(FastCGI.headerSize)))
    }
}

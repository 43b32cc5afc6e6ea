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

    init(_ s: GatewaySettings, caching: Bool = false) {
        params = GatewayParams(s.params)
        cachingParams = caching ? GatewayParams(s.params + GatewayRoute.cacheParams.filter { c in !s.params.contains { $0.name == c.name } }) : nil
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

/// A location's params, and the client headers they replace. Names and literal values lie in one array of
/// bytes, read in place for every request: an array per param retained and released each of them.
final class GatewayParams {
    struct Param {
        enum Value {
            case literal(Range<Int>)
            case variable(Variable)
            case template(Template)
        }
        let name: Range<Int>
        let value: Value
        let ifNotEmpty: Bool
    }

    let list: [Param]
    /// The names and literal values the list's ranges point into.
    let text: [UInt8]
    /// The client headers a `*_param HTTP_*` replaces, as their HTTP_ names' tails lowercased ("x_blah").
    private let replacedHeaders: [[UInt8]]

    init(_ params: [GatewayParam]) {
        var text: [UInt8] = []
        func add(_ s: String) -> Range<Int> {
            let start = text.count
            text.append(contentsOf: s.utf8)
            return start..<text.count
        }
        list = params.map { p in
            let name = add(p.name)
            let value: Param.Value
            if let literal = p.value.literal { value = .literal(add(literal)) }
            else if let v = p.value.soleVariable { value = .variable(v) }
            else { value = .template(p.value) }
            return Param(name: name, value: value, ifNotEmpty: p.ifNotEmpty)
        }
        self.text = text
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

    @inline(__always) func open(name: Int, value: Int, into out: OutputQueue) {
        switch self {
        case .fastcgi:
            GatewayRequest.fastcgiLength(name, into: out)
            GatewayRequest.fastcgiLength(value, into: out)
        case .uwsgi: GatewayRequest.uint16(name, into: out)
        case .scgi: break
        }
    }

    @inline(__always) func between(value: Int, into out: OutputQueue) {
        switch self {
        case .uwsgi: GatewayRequest.uint16(value, into: out)
        case .scgi: GatewayRequest.byte(0, into: out)
        case .fastcgi: break
        }
    }

    @inline(__always) func close(into out: OutputQueue) {
        if self == .scgi { GatewayRequest.byte(0, into: out) }
    }

    /// A pair whose value `value` renders straight into `out`: written as `open`, `between` and `close` write
    /// one of known length, with a value length of 0 that is patched once the value is there (a FastCGI length
    /// past 127 takes three more bytes, opened in place); nothing when `ifNotEmpty` and it rendered empty.
    @inline(__always) func pair(name: UnsafeRawBufferPointer, ifNotEmpty: Bool, into out: OutputQueue, _ value: () -> Void) {
        let start = out.count
        open(name: name.count, value: 0, into: out)
        // FastCGI's value length is the last byte `open` wrote.
        let fastcgiSlot = out.count - 1
        out.append(name)
        between(value: 0, into: out)
        let from = out.count
        value()
        let n = out.count - from
        if n == 0 && ifNotEmpty { return out.truncate(to: start) }
        switch self {
        case .fastcgi:
            if n > 127 { out.open(3, at: fastcgiSlot + 1) }
            var (bytes, count) = FastCGI.length(n)
            withUnsafeBytes(of: &bytes) { out.overwrite(at: fastcgiSlot, UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
        case .uwsgi:
            var b = (UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8))
            withUnsafeBytes(of: &b) { out.overwrite(at: from - 2, $0) }
        case .scgi: break
        }
        close(into: out)
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
            appendParams(out, .fastcgi)
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
            appendParams(params, .scgi)
            out.append(params.count)
            out.append(":")
            params.withUnsent { out.append($0) }
            out.append(",")
            params.clear()
            if case .inline = bodySource, passBody { out.append(request.body.bytes) }
        case .uwsgi:
            GatewayRequest.uint16(0, into: out)
            GatewayRequest.uint16(0, into: out)
            appendParams(out, .uwsgi)
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
    private func appendParams(_ out: OutputQueue, _ encoding: ParamEncoding) {
        let params = cacheable ? gateway?.cachingParams ?? gateway?.params : gateway?.params
        if let params {
            let request = self.request
            // Read in place: a copy of each param retained and released its parts.
            params.text.withUnsafeBytes { text in
                params.list.withUnsafeBufferPointer { list in
                    for i in list.indices {
                        let name = UnsafeRawBufferPointer(rebasing: text[list[i].name])
                        switch list[i].value {
                        case .literal(let range):
                            if list[i].ifNotEmpty && range.isEmpty { continue }
                            encoding.open(name: name.count, value: range.count, into: out)
                            out.append(name)
                            encoding.between(value: range.count, into: out)
                            out.append(UnsafeRawBufferPointer(rebasing: text[range]))
                            encoding.close(into: out)
                        case .variable(let v):
                            encoding.pair(name: name, ifNotEmpty: list[i].ifNotEmpty, into: out) { _ = request.appendValue(v, to: out) }
                        case .template(let t):
                            encoding.pair(name: name, ifNotEmpty: list[i].ifNotEmpty, into: out) { t.render(request, into: out) }
                        }
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
                if let params, !params.passes(name) { continue }
                // A repeated header went with its first.
                if fields[..<i].contains(where: { same($0.name, f.name) }) { continue }
                let separator = RequestParser.matches(name, lowercase: "cookie") ? "; " : ", "
                var length = f.value.count
                for g in fields[(i + 1)...] where same(g.name, f.name) { length += 2 + g.value.count }
                encoding.open(name: 5 + name.count, value: length, into: out)
                out.append("HTTP_")
                _ = out.append(upTo: name.count) { p in
                    for k in 0..<name.count { p.storeBytes(of: GatewayRequest.paramByte(name[k]), toByteOffset: k, as: UInt8.self) }
                    return name.count
                }
                encoding.between(value: length, into: out)
                out.append(UnsafeRawBufferPointer(rebasing: bytes[f.value]))
                if length > f.value.count {
                    for g in fields[(i + 1)...] where same(g.name, f.name) {
                        out.append(separator)
                        out.append(UnsafeRawBufferPointer(rebasing: bytes[g.value]))
                    }
                }
                encoding.close(into: out)
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

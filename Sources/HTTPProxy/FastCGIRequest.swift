import Config
import Core
import HTTP
import HTTPServer

/// What a `fastcgi_pass` location needs per request, prepared once per worker.
final class FastCGIRoute {
    let keepConn: Bool
    /// fastcgi_catch_stderr's strings.
    let catchStderr: [[UInt8]]
    /// The client headers a `fastcgi_param HTTP_*` replaces, as their HTTP_ names' tails lowercased ("x_blah").
    let replacedHeaders: [[UInt8]]

    init(_ s: FastCGISettings) {
        keepConn = s.keepConn
        catchStderr = s.catchStderr.map { Array($0.utf8) }
        replacedHeaders = s.params.compactMap { p in
            p.name.hasPrefix("HTTP_") ? Array(p.name.dropFirst(5).lowercased().utf8) : nil
        }
    }

    /// Whether the client header `name` is sent as HTTP_NAME: not when a fastcgi_param gives that name.
    func passes(_ name: UnsafeRawBufferPointer) -> Bool {
        replacedHeaders.allSatisfy { r in
            r.count != name.count || !zip(r, name).allSatisfy { $0 == ($1 == 0x2D ? 0x5F : ($1 >= 0x41 && $1 <= 0x5A ? $1 + 0x20 : $1)) }
        }
    }
}

/// FastCGI's request records written into an output queue.
enum FastCGIRequest {
    static let beginKeep = FastCGI.beginRequestRecord(keepConn: true)
    static let beginClose = FastCGI.beginRequestRecord(keepConn: false)
    /// STDIN records of the body are at most this long (the rest of 64 kB a record allows is not needed).
    static let piece = 32768

    @inline(__always) static func header(_ type: UInt8, _ n: Int, padding: Int = 0, into out: OutputQueue) {
        var h = FastCGI.header(type, length: n, padding: padding)
        withUnsafeBytes(of: &h) { out.append($0) }
    }

    static func stdinHeader(_ n: Int, into out: OutputQueue) { header(FastCGI.stdin, n, into: out) }

    /// Body bytes as STDIN records.
    static func stdin(_ bytes: UnsafeRawBufferPointer, into out: OutputQueue) {
        var i = 0
        while i < bytes.count {
            let n = min(piece, bytes.count - i)
            header(FastCGI.stdin, n, into: out)
            out.append(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + n)]))
            i += n
        }
    }

    /// The empty STDIN record: the body has ended.
    static func endStdin(into out: OutputQueue) { header(FastCGI.stdin, 0, into: out) }

    /// A name-value pair's length: one byte up to 127, else four with the top bit set.
    @inline(__always) static func length(_ n: Int, into out: OutputQueue) {
        if n <= 127 {
            var b = UInt8(n)
            withUnsafeBytes(of: &b) { out.append($0) }
        } else {
            var b = (UInt8(truncatingIfNeeded: n >> 24) | 0x80, UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8),
                     UInt8(truncatingIfNeeded: n))
            withUnsafeBytes(of: &b) { out.append($0) }
        }
    }

    /// A header name's byte as its HTTP_ parameter has it: uppercase, `-` as `_`.
    @inline(__always) static func paramByte(_ b: UInt8) -> UInt8 {
        b == 0x2D ? 0x5F : (b >= 0x61 && b <= 0x7A ? b - 0x20 : b)
    }
}

extension ProxySession {
    /// BEGIN_REQUEST, the params (fastcgi_param's, then the client's headers as HTTP_*), and, for a body in
    /// memory, its STDIN records and the empty one that ends them.
    func buildFastCGIRequest() {
        let out = outgoing
        out.clear()
        out.append(fastcgi?.keepConn == true ? FastCGIRequest.beginKeep : FastCGIRequest.beginClose)
        let paramsStart = out.count
        FastCGIRequest.header(FastCGI.params, 0, into: out)
        for p in settings.fastcgi.params {
            let value = p.value.render(request)
            if p.ifNotEmpty && value.isEmpty { continue }
            FastCGIRequest.length(p.name.utf8.count, into: out)
            FastCGIRequest.length(value.utf8.count, into: out)
            out.append(p.name)
            out.append(value)
        }
        if conf.passRequestHeaders { appendHeaderParams(out) }
        closeParams(out, from: paramsStart)
        FastCGIRequest.header(FastCGI.params, 0, into: out)
        guard case .inline = bodySource else { return }
        if conf.passRequestBody { request.body.bytes.withUnsafeBytes { FastCGIRequest.stdin($0, into: out) } }
        FastCGIRequest.endStdin(into: out)
    }

    /// The client's headers as HTTP_* params; a header the client repeated goes once, its values joined as
    /// nginx 1.23 joins them (Cookie's with "; ", others' with ", ").
    private func appendHeaderParams(_ out: OutputQueue) {
        let fields = request.head.fields
        let route = fastcgi
        request.head.block.withUnsafeBytes { bytes in
            func same(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
                a.count == b.count && zip(bytes[a], bytes[b]).allSatisfy { $0 | 0x20 == $1 | 0x20 }
            }
            for (i, f) in fields.enumerated() {
                let name = UnsafeRawBufferPointer(rebasing: bytes[f.name])
                if let route, !route.passes(name) { continue }
                // A repeated header went with its first.
                if fields[..<i].contains(where: { same($0.name, f.name) }) { continue }
                let separator = RequestParser.matches(name, lowercase: "cookie") ? "; " : ", "
                var length = f.value.count
                for g in fields[(i + 1)...] where same(g.name, f.name) { length += 2 + g.value.count }
                FastCGIRequest.length(5 + name.count, into: out)
                FastCGIRequest.length(length, into: out)
                out.append("HTTP_")
                _ = out.append(upTo: name.count) { p in
                    for k in 0..<name.count { p.storeBytes(of: FastCGIRequest.paramByte(name[k]), toByteOffset: k, as: UInt8.self) }
                    return name.count
                }
                out.append(UnsafeRawBufferPointer(rebasing: bytes[f.value]))
                guard length > f.value.count else { continue }
                for g in fields[(i + 1)...] where same(g.name, f.name) {
                    out.append(separator)
                    out.append(UnsafeRawBufferPointer(rebasing: bytes[g.value]))
                }
            }
        }
    }

    /// Writes the PARAMS record's length into its header at `start`, padded to eight bytes; params longer than a
    /// record holds are split over several.
    private func closeParams(_ out: OutputQueue, from start: Int) {
        let content = out.count - start - FastCGI.headerSize
        if content <= FastCGI.maxContent {
            let padding = (8 - content % 8) % 8
            var h = FastCGI.header(FastCGI.params, length: content, padding: padding)
            withUnsafeBytes(of: &h) { out.overwrite(at: start, $0) }
            out.append(UnsafeRawBufferPointer(start: FastCGIRequest.zeros, count: padding))
            return
        }
        let pairs = Array(out.bytes[(start + FastCGI.headerSize)...])
        out.truncate(to: start)
        // The stream's own end record is dropped: the caller writes it.
        out.append(Array(FastCGI.stream(FastCGI.params, pairs).dropLast(FastCGI.headerSize)))
    }
}

extension FastCGIRequest {
    static let zeros: UnsafeRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: 8)
        return UnsafeRawPointer(p)
    }()
}

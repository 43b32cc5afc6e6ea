#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP
import HTTPServer
import Script

/// Where the request body comes from: inside `outgoing` with the head, a temporary file read as it is sent,
/// or the client as it sends it (`proxy_request_buffering off`).
enum BodySource { case inline, file(BodyFile), stream }

/// How the pieces of a body that is not inline go: as they are, as chunks (a chunked body streamed to an
/// HTTP upstream), or as FastCGI STDIN records; the last two end with a mark of their own.
enum RequestBodyFraming { case plain, chunked, fastcgi }

/// The request as it goes upstream: nginx's head (HTTP/1.0 or proxy_http_version, Host $proxy_host,
/// Connection close, proxy_set_header values, the client's end-to-end headers) and the body from its source.
extension ProxySession: BodyConsumer {
    /// Writes the request head (and an inline body) into `outgoing`.
    func buildRequest() {
        let passBody = conf.passRequestBody
        let out = outgoing
        out.clear()
        out.append(upstreamMethod ?? conf.method?.render(request) ?? request.method)
        out.append(" ")
        out.append(upstreamURI)
        out.append(" HTTP/")
        out.append(conf.httpVersion.rawValue)
        out.append("\r\n")
        // Elements read in place: binding a (name, value) tuple per header retained and released both strings.
        headers.set.withUnsafeBufferPointer { set in
            for i in set.indices {
                let value = set[i].1.render(request)
                if !value.isEmpty { out.header(set[i].0, value) }
            }
        }
        if conf.passRequestHeaders {
            // The head's fields read directly: a method called on `request.head` copies the whole head.
            let fields = request.head.fields
            request.head.block.withUnsafeBytes { bytes in
                for f in fields {
                    let name = UnsafeRawBufferPointer(rebasing: bytes[f.name])
                    if !headers.skips(name) { out.header(name, UnsafeRawBufferPointer(rebasing: bytes[f.value])) }
                }
            }
        }
        switch bodySource {
        case .inline:
            if let t = conf.setBody {
                let body = t.render(request)
                out.header("Content-Length", body.utf8.count)
                out.append("\r\n")
                out.append(body)
                return
            }
            let size = passBody ? request.body.bytes.count : 0
            // As nginx: a Content-Length goes whenever the request came with a body's framing, even "0".
            if request.head.contentLength != nil || request.head.chunked || size > 0 { out.header("Content-Length", size) }
            out.append("\r\n")
            if passBody { out.append(request.body.bytes) }
        case .file(let file):
            out.header("Content-Length", file.size)
            out.append("\r\n")
        case .stream:
            if bodyFraming == .chunked { out.header("Transfer-Encoding", "chunked") } else { out.header("Content-Length", request.head.contentLength ?? 0) }
            out.append("\r\n")
        }
    }

    /// The URI as nginx sends it: the target as the client sent it while nothing changed the URI; else the
    /// decoded URI, escaped again when it came escaped or was changed, with its arguments; a URI in proxy_pass
    /// takes the place of the part of the URI the location matched (only prefix and exact locations may give
    /// proxy_pass a URI), unless a rewrite and `break` left the location with a URI it was not chosen by: that
    /// goes whole.
    private var upstreamURI: String {
        if let dynamicURI { return dynamicURI }
        let changed = request.uriChanged
        var prefix = "", path = Substring(request.uri)
        if let passURI = pass.uri, let loc = request.location, request.validLocation {
            prefix = passURI
            path = Substring(request.uri.utf8.dropFirst(loc.pattern.utf8.count))
        } else if !changed {
            return request.head.target
        }
        let args = request.args.flatMap { $0.isEmpty ? nil : "?" + $0 } ?? ""
        return prefix + (request.head.pathWasEscaped || changed ? URIText.escaped(path, .uri) : String(path)) + args
    }

    /// Before an attempt: the request goes again from its first byte.
    func rewindRequest() {
        switch bodySource {
        case .inline:
            outgoing.rewind()
        case .file:
            outgoing.clear()
            outgoing.append(requestHead)
            bodySent = 0
            lastChunkQueued = false
        case .stream where bodySent == 0:
            // Nothing of the body is gone yet (canResend): the head goes again, and the last chunk with it.
            outgoing.clear()
            outgoing.append(requestHead)
            lastChunkQueued = false
        case .stream:
            outgoing.rewind()
        }
        bodyReadFailed = false
    }

    /// Whether the request can go again from its first byte: not once streamed body bytes are gone.
    var canResend: Bool {
        if case .stream = bodySource { return bodySent == 0 }
        return true
    }

    /// Refills `outgoing` with the next piece of a body that is not inline (a streamed one is appended to what
    /// is queued); false when nothing is queued.
    private func refill() -> Bool {
        switch bodySource {
        case .inline:
            return false
        case .file(let file):
            guard bodySent < file.size else {
                guard bodyFraming == .fastcgi && !lastChunkQueued else { return false }
                outgoing.clear()
                GatewayRequest.endStdin(into: outgoing)
                lastChunkQueued = true
                return true
            }
            outgoing.clear()
            // A FastCGI record holds less than 64 kB: the piece goes in one, its header first.
            let piece = min(bodyFraming == .fastcgi ? 32768 : 65536, file.size - bodySent)
            if bodyFraming == .fastcgi { GatewayRequest.stdinHeader(piece, into: outgoing) }
            let n = outgoing.append(upTo: piece) { file.read(at: bodySent, count: piece, into: $0) }
            guard n == piece || (n > 0 && bodyFraming != .fastcgi) else {
                bodyReadFailed = true
                return false
            }
            bodySent += n
            return true
        case .stream:
            if outgoing.isEmpty { outgoing.clear() }
            if !request.body.bytes.isEmpty {
                let count = request.body.bytes.count
                switch bodyFraming {
                case .plain: outgoing.append(request.body.bytes)
                case .chunked:
                    ChunkedEncoder.open(count, into: outgoing)
                    outgoing.append(request.body.bytes)
                    ChunkedEncoder.close(into: outgoing)
                case .fastcgi: request.body.bytes.withUnsafeBytes { GatewayRequest.stdin($0, into: outgoing) }
                }
                bodySent += count
                request.body.bytes.removeAll(keepingCapacity: true)
                request.bodyConsumed()
            }
            if clientBodyEnded && bodyFraming != .plain && !lastChunkQueued {
                if bodyFraming == .chunked { ChunkedEncoder.end(into: outgoing) } else { GatewayRequest.endStdin(into: outgoing) }
                lastChunkQueued = true
            }
            return !outgoing.isEmpty
        }
    }

    /// Whether the whole body has been handed to the upstream.
    private var bodyComplete: Bool {
        switch bodySource {
        case .inline: return true
        case .file(let file): return bodySent >= file.size && (bodyFraming != .fastcgi || lastChunkQueued)
        case .stream: return clientBodyEnded && request.body.bytes.isEmpty
        }
    }

    func sendRequest() {
        // The part of a streamed body that came with the client's head goes out with the request's head, in one
        // write, as nginx sends it.
        if case .stream = bodySource, bodySent == 0 { _ = refill() }
        while !outgoing.isEmpty || refill() {
            let pending = outgoing.count
            defer { sentToUpstream += pending - outgoing.count }
            switch outgoing.flush(to: fd, tls: tls) {
            case .drained: continue
            case .wouldBlock, .limited:
                // A request too big for one send: let its last, short segment go without waiting for an
                // ACK (Nagle). A request that fits one send, the usual case, never needs the system call.
                if !noDelay {
                    var one: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    noDelay = true
                }
                return
            case .failed:
                failed(.error, "send() failed (\(Errno.text(errno))) while sending request to upstream")
                return
            }
        }
        if bodyReadFailed {
            return failed(.error, "pread() of the request body's temporary file failed while sending request to upstream")
        }
        // The rest of a streamed body is still on its way from the client (client_body_timeout runs meanwhile).
        guard bodyComplete else { return disarm() }
        phase = .readingHead
        arm(conf.readTimeout, .readingHead)
        // Its edge may have come while we were still connecting or sending; over TLS the handshake may also
        // have read past its own records, so look at once.
        if readReady || tls != nil { readResponse() }
    }

    /// The client sent more of a streamed body: send it unless a send is already waiting on the socket.
    func bodyArrived() {
        if phase == .sending && outgoing.isEmpty { sendRequest() }
    }

    func bodyEnded() {
        clientBodyEnded = true
        bodyArrived()
    }
}

/// `Host $proxy_host` and `Connection close` (nginx's defaults) overridden by `proxy_set_header`, and the
/// client headers that are not passed on: hop-by-hop ones, framing, and those set here.
struct ProxyHeaders {
    /// Names with their values compiled once.
    let set: [(String, Template)]
    private let skipped: [String]

    /// `caching`: the location's cache is on, and nginx's headers for it come before the configured ones: the
    /// client's validators and ranges are not passed (the cache stores whole responses), and a revalidation
    /// sends the stale response's own.
    init(_ configured: [HeaderSetting], caching: Bool = false) {
        var set: [(String, Template)] = [("Host", ProxyHeaders.proxyHost), ("Connection", ProxyHeaders.close)]
        if caching { set += ProxyHeaders.cacheHeaders }
        for h in configured {
            if let i = set.firstIndex(where: { $0.0.lowercased() == h.name.lowercased() }) { set[i] = (h.name, h.value) } else { set.append((h.name, h.value)) }
        }
        self.set = set
        skipped = set.map { $0.0.lowercased() } + ["keep-alive", "te", "upgrade", "proxy-connection",
                                                   "transfer-encoding", "content-length", "expect"]
    }

    /// nginx's defaults: `Host $proxy_host` and `Connection close`.
    private static let proxyHost = resolved("$proxy_host")
    private static let close = Template("close")
    private static let cacheHeaders: [(String, Template)] = [
        ("If-Modified-Since", resolved("$upstream_cache_last_modified")), ("If-Unmodified-Since", Template("")),
        ("If-None-Match", resolved("$upstream_cache_etag")), ("If-Match", Template("")), ("Range", Template("")), ("If-Range", Template("")),
    ]
    /// A template of built-in variables only, resolved once.
    static func resolved(_ text: String) -> Template {
        let t = Template(text)
        t.resolve(VariableTable())
        return t
    }

    /// A handful of names, compared in place: cheaper than lowercasing each client header for a set lookup.
    func skips(_ name: UnsafeRawBufferPointer) -> Bool { skipped.contains { RequestParser.equalsIgnoringASCIICase(name, $0) } }
}

extension ProxyHeaders {
    /// The WWW-Authenticate fields of an upstream's 401 that an error page answers: nginx keeps them (all of
    /// them since 1.23) on whatever the page answers.
    static func authenticate(_ fields: [HeaderField], in head: ByteBuffer) -> [(name: String, value: String)] {
        head.withReadable { buf in
            fields.filter { RequestParser.matches(buf[$0.name], lowercase: "www-authenticate") }
                .map { ("WWW-Authenticate", String(decoding: buf[$0.value], as: UTF8.self)) }
        }
    }
}

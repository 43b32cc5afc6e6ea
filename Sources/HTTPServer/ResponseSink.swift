import Config
import Core
import Gzip
import HTTP

/// How a request's response is going out: its body's framing, its deflate stream, whether it is complete.
public struct ResponseState {
    var framing = BodyFraming.length
    var gzip: GzipStream?
    var complete = false
    /// The content's Last-Modified, for `expires modified`.
    public var lastModified: Int?
    /// What the headers filter decided before the handler's fields were written: the Expires and Cache-Control
    /// it writes (a proxied response's own are then not passed), and the fields `add_header` replaces.
    var expires: (expires: String, cacheControl: String)?
    public internal(set) var replaced = ReplacedFields()
    /// add_trailer has trailers for this response: its body goes in chunks, whose end carries them.
    var trailers = false
    /// The charset filter recodes the body.
    var recoder: CharsetRecoder?
    /// The range of a streamed body that goes out (proxy_force_ranges), or its ranges as multipart parts.
    var window: RangeFilter.Window?
    /// The handler serves byte ranges of a 200 (nginx's `allow_ranges`).
    var allowsRanges = false
    /// The range filter's field, written after the headers filter's: Accept-Ranges, or a Content-Range.
    var rangeField: String?
    /// The status the headers filter adds for, when not the response's: nginx's range filter turns a 200 into
    /// a 416 after `add_header` and `expires` were added for the 200, and they stay.
    var addedHeadersStatus: Int?
    /// The gzip filter compresses the body: an ETag add_header sets is weakened too.
    var weakETag = false
    /// gzip_static found a `.gz` it did not send: `Vary: Accept-Encoding` with gzip_vary.
    var gzipVary = false
}

/// What the range filter made of a streamed response.
public enum StreamedRange {
    case whole
    /// A 206 of this many bytes.
    case partial(Int)
    /// A 206 of several ranges: this many bytes of multipart body, of this Content-Type.
    case multipart(Int, contentType: String)
    case unsatisfiable
}

/// Fields of a handler's that nginx's headers filter replaces rather than adds to.
public struct ReplacedFields: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let etag = ReplacedFields(rawValue: 1)
    public static let lastModified = ReplacedFields(rawValue: 2)
    /// Expires and Cache-Control, by `expires`.
    public static let caching = ReplacedFields(rawValue: 4)
    /// Content-Length, by chunks that end in add_trailer's trailers.
    public static let contentLength = ReplacedFields(rawValue: 8)

    /// Whether the field `name` (any case) is one of these.
    public func contains(field name: String) -> Bool {
        guard !isEmpty else { return false }
        switch name.lowercased() {
        case "etag": return contains(.etag)
        case "last-modified": return contains(.lastModified)
        case "expires", "cache-control": return contains(.caching)
        case "content-length": return contains(.contentLength)
        default: return false
        }
    }
}

/// The response side of a request: heads and bodies go through nginx's filters (the header filter's Server
/// and Date, the headers filter's `add_header` and `expires`, gzip) to the request's transport, which puts
/// them on the wire in its protocol's form. Content handlers write here and nowhere else; a cache would tee
/// here.
public struct ResponseSink {
    let r: RequestContext

    init(_ r: RequestContext) { self.r = r }

    /// A whole response, head and body at once (return, error pages, static files, status pages). A body
    /// known whole is compressed whole when gzip applies, and keeps a Content-Length; `encoding` is the
    /// Content-Encoding of a body that comes compressed (gzip_static). A handler that allows ranges has them cut
    /// here, from the body as it goes out.
    /// The Content-Type an X-Accel-Redirect carried stands in for the handler's, unless `ownType` (nginx's
    /// built-in pages are always text/html).
    public func respond(status: Int, contentType handlerType: String?, body plain: [UInt8], extra handlerFields: [(String, String)] = [],
                        encoding precompressed: String? = nil, omitLengthForHead: Bool = false, ownType: Bool = false) {
        r.status = status
        let finalStatus = r.statusOverride ?? status
        // As nginx's header filter: a 204 goes without Content-Type and Content-Length.
        let noContent = finalStatus == 204
        var contentType = noContent ? nil : (ownType ? handlerType : r.carriedContentType ?? handlerType)
            .map { CharsetFilter.contentType(r, $0, status: finalStatus, encoded: precompressed != nil) }
        let isHead = r.head.method == "HEAD"
        var body = plain
        if var recoder = r.response.recoder {
            // As nginx: a recoding that changes the length leaves none to take ranges of.
            if recoder.changesLength { r.response.allowsRanges = false }
            body = body.withUnsafeBytes { recoder.recode($0) }
            r.response.recoder = nil
        }
        var encoding = precompressed, extra = handlerFields
        let compressible = GzipFilter.eligible(r, status: finalStatus, contentType: contentType,
                                               contentLength: body.count, encoded: precompressed != nil)
        if compressible, GzipFilter.accepted(r) {
            if isHead {
                encoding = "gzip"
            } else if let packed = GzipFilter.compressed(body, r) {
                body = packed
                encoding = "gzip"
            }
        }
        let gzipped = encoding != precompressed
        if gzipped {
            r.response.allowsRanges = false
            r.response.weakETag = true
            if let i = extra.firstIndex(where: { $0.0 == "ETag" }) {
                if let weak = GzipFilter.weakened(extra[i].1) { extra[i].1 = weak } else { extra.remove(at: i) }
            }
        }
        let vary = (compressible || r.response.gzipVary) && r.settings.gzip.vary
        var status = status, length = body.count
        var ranged: RangeFilter.Span?, multipart: RangeFilter.Multipart?
        if r.response.allowsRanges && finalStatus == 200,
           let plan = RangeFilter.plan(r, length: body.count, etag: extra.first { $0.0 == "ETag" }?.1,
                                       lastModified: r.response.lastModified, single: false) {
            switch plan {
            case .whole:
                r.response.rangeField = "Accept-Ranges: bytes"
            case .partial(let spans):
                if spans.count == 1 {
                    ranged = spans[0]
                    partial(spans[0], of: body.count)
                    length = spans[0].count
                } else {
                    let parts = RangeFilter.Multipart(spans, of: body.count, contentType: contentType, r)
                    contentType = parts.contentType
                    length = parts.bodyLength
                    multipart = parts
                }
                // A 206 in place of an error page's 200 (`error_page … =200`).
                r.statusOverride = nil
                status = 206
            case .unsatisfiable:
                unsatisfiable(body.count)
                return r.service.pipeline.respondError(r, 416)
            }
        }
        sendHead(status: status, framing: .length) { w in
            if let contentType { w.header("Content-Type", contentType) }
            if !(isHead && (omitLengthForHead || gzipped)) && status != 304 && !noContent && !r.response.replaced.contains(.contentLength) {
                w.header("Content-Length", length)
            }
            if let encoding { w.header("Content-Encoding", encoding) }
            if vary { w.header("Vary", "Accept-Encoding") }
            for (name, value) in extra where !r.response.replaced.contains(field: name) { w.header(name, value) }
        }
        if !isHead && length > 0 {
            let t = r.transport
            body.withUnsafeBytes { all in
                if let parts = multipart {
                    parts.write(all) { t.queueBody($0) }
                } else {
                    t.queueBody(ranged.map { UnsafeRawBufferPointer(rebasing: all[$0.start..<$0.end]) } ?? all)
                }
            }
            r.bodyBytesSent = length
        }
        end()
    }

    /// A response head: the status (an error page's, if one is being served), the header filter's fields, the
    /// handler's `fields`, the framing's, the headers filter's. `upstreamSent` names the Server and Date an
    /// upstream's reply carries and proxy_pass_header passes through; `reason`, its status line's phrase.
    public func sendHead(status original: Int, reason: String? = nil, framing requested: BodyFraming,
                         upstreamSent: (server: Bool, date: Bool) = (false, false), _ fields: (OutputQueue) -> Void) {
        let r = self.r
        let status = r.statusOverride ?? original
        r.status = status
        let addedStatus = r.response.addedHeadersStatus ?? status
        HeadersFilter.prepare(r, status: addedStatus)
        var framing = requested
        r.response.trailers = carriesTrailers(status: addedStatus)
        if r.response.trailers && framing == .length {
            framing = .chunked
            r.response.replaced.insert(.contentLength)
        }
        r.response.framing = framing
        r.headerBytesSent = r.transport.writeHead(status: status, reason: r.statusOverride == nil ? reason : nil, framing: framing, { w in
            HeaderFilter.write(r, upstreamSent: upstreamSent, into: w)
            fields(w)
        }, { w in
            HeadersFilter.write(r, status: addedStatus, into: w)
            if let f = r.response.rangeField {
                w.append(f)
                w.append("\r\n")
            }
        })
    }

    /// Whether add_trailer has trailers for a response with this status, and the response can carry them: a
    /// body in HTTP/1.1 chunks (nginx's rule; not for HEAD, 204, 304).
    public func carriesTrailers(status: Int) -> Bool {
        guard !r.settings.headers.addTrailers.isEmpty, r.transport.framesUnknownLength, r.head.method != "HEAD",
              status >= 200, status != 204, status != 304 else { return false }
        let normal = HeadersFilter.takesAddedHeaders(status)
        return r.settings.headers.addTrailers.contains { $0.always || normal }
    }

    /// The Content-Type a streamed response goes out with, by the charset filter (which may recode its body),
    /// for the type an upstream sent; nil when the filter leaves it as it came, and the upstream's bytes go out.
    public func contentType(_ type: UnsafeRawBufferPointer, status: Int, encoded: Bool) -> String? {
        CharsetFilter.contentType(r, type, status: status, encoded: encoded)
    }

    /// Whether the charset filter recodes the body, and whether that changes its length (its Content-Length
    /// cannot be passed on then).
    public var recodes: (body: Bool, length: Bool) { (r.response.recoder != nil, r.response.recoder?.changesLength ?? false) }

    /// The range filter on a streamed 200 of `length` bytes whose handler allows one range (proxy_force_ranges;
    /// `etag` and `lastModified` are its own, for If-Range). `.partial` gives the 206's Content-Length: the sink
    /// then passes only that range of the body on. For `.unsatisfiable` the caller answers 416 with
    /// respondError, which then carries nginx's Content-Range.
    /// `contentType` given: several ranges in order are answered as multipart parts of that type (a cached
    /// response, nginx's allow_ranges without single_range).
    public func range(length: Int, etag: @autoclosure () -> String?, lastModified: @autoclosure () -> Int?,
                      multipartOf contentType: String?? = nil) -> StreamedRange {
        switch RangeFilter.plan(r, length: length, etag: etag(), lastModified: lastModified(), single: contentType == nil) {
        case nil: return .whole
        case .whole:
            r.response.rangeField = "Accept-Ranges: bytes"
            return .whole
        case .partial(let spans) where spans.count > 1:
            // A streamed body passes once: its ranges must come in order, else it goes whole.
            guard zip(spans, spans.dropFirst()).allSatisfy({ $0.end <= $1.start }), let contentType else {
                r.response.rangeField = "Accept-Ranges: bytes"
                return .whole
            }
            let parts = RangeFilter.Multipart(spans, of: length, contentType: contentType, r)
            r.response.window = RangeFilter.Window(parts: parts)
            r.statusOverride = nil
            return .multipart(parts.bodyLength, contentType: parts.contentType)
        case .partial(let spans):
            partial(spans[0], of: length)
            r.response.window = RangeFilter.Window(span: spans[0])
            r.statusOverride = nil
            return .partial(spans[0].count)
        case .unsatisfiable:
            r.response.recoder = nil
            unsatisfiable(length)
            return .unsatisfiable
        }
    }

    /// A 206 of one range: its Content-Range.
    private func partial(_ span: RangeFilter.Span, of length: Int) {
        r.response.rangeField = "Content-Range: bytes \(span.start)-\(span.end - 1)/\(length)"
    }

    /// A 416's Content-Range, and the headers filter's fields for the 200 it was (nginx's order of filters).
    private func unsatisfiable(_ length: Int) {
        r.response.rangeField = "Content-Range: bytes */\(length)"
        r.response.addedHeadersStatus = 200
    }

    /// Compresses the rest of a streamed body (gzip's decision was made on its head): false when no deflate
    /// stream could be had.
    public func startGzip(length: Int?) -> Bool {
        // A HEAD is answered as its GET would be compressed, with nothing to compress.
        guard r.head.method != "HEAD" else {
            r.response.weakETag = true
            return true
        }
        return GzipFilter.start(r, length: length)
    }

    /// A piece of a streamed body: compressed when the response is, then framed by the transport. Deflate hands
    /// out its output in small, uneven pieces: they go out once 16 kB has gathered, or with the end. `last`:
    /// the body ends with this piece. `flush` false: only queued, the caller flushes (a proxy sends what one read
    /// brought, and the end's framing with it, in one write). False when the client is backed up (wait for the
    /// transport's onDrain).
    public func sendBody(_ whole: UnsafeRawBufferPointer, last: Bool = false, flush: Bool = true) -> Bool {
        // The range first, then the recoding, as nginx's filters run.
        if r.response.window?.parts != nil {
            var framed: [UInt8] = []
            r.response.window!.frame(whole) { framed += $0 }
            return framed.withUnsafeBytes { sendRecoded($0, last: last, flush: flush) }
        }
        let raw = r.response.window?.clip(whole) ?? whole
        guard r.response.recoder == nil else {
            let recoded = r.response.recoder!.recode(raw)
            return recoded.withUnsafeBytes { sendRecoded($0, last: last, flush: flush) }
        }
        return sendRecoded(raw, last: last, flush: flush)
    }

    private func sendRecoded(_ bytes: UnsafeRawBufferPointer, last: Bool, flush: Bool) -> Bool {
        let t = r.transport
        guard r.response.gzip != nil else {
            r.bodyBytesSent += bytes.count
            t.queueBody(bytes)
            return !flush || t.flushBody()
        }
        GzipFilter.compress(r, bytes, finish: last) { piece in
            r.bodyBytesSent += piece.count
            t.queueBody(piece)
        }
        return t.queuedBytes < 16384 || !flush || t.flushBody()
    }

    /// Upstream chunks passed on as they came (the head's framing was `.chunksPassedThrough`).
    public func sendChunks(_ bytes: UnsafeRawBufferPointer, flush: Bool = true) -> Bool {
        r.bodyBytesSent += bytes.count
        r.transport.queueBody(bytes)
        return !flush || r.transport.flushBody()
    }

    /// The end of a streamed body: the rest of the gzip stream and the framing's end go out with whatever is
    /// still queued, and the request ends once all of it is on the wire.
    public func finish() {
        let r = self.r
        if r.response.gzip != nil {
            let t = r.transport
            GzipFilter.compress(r, UnsafeRawBufferPointer(start: nil, count: 0), finish: true) { piece in
                r.bodyBytesSent += piece.count
                t.queueBody(piece)
            }
            GzipFilter.release(r)
        }
        end()
    }

    /// The whole response is queued: the transport ends the body's framing and finishes the request when it
    /// is on the wire.
    private func end() {
        r.response.complete = true
        r.transport.endResponse(framing: r.response.framing)
    }
}

import Config
import Core
import Gzip
import HTTP

/// How a request's response is going out: its body's framing, its deflate stream, whether it is complete.
struct ResponseState {
    var framing = BodyFraming.length
    var gzip: GzipStream?
    var complete = false
}

/// The response side of a request: heads and bodies go through nginx's filters (the header filter's Server
/// and Date, the headers filter's `add_header` and `expires`, gzip) to the request's transport, which puts
/// them on the wire in its protocol's form. Content handlers write here and nowhere else; a cache would tee
/// here.
public struct ResponseSink {
    unowned(unsafe) let r: RequestContext

    init(_ r: RequestContext) { self.r = r }

    /// A whole response, head and body at once (return, error pages, static files, status pages). A body
    /// known whole is compressed whole when gzip applies, and keeps a Content-Length.
    /// The Content-Type an X-Accel-Redirect carried stands in for the handler's, unless `ownType` (nginx's
    /// built-in pages are always text/html).
    public func respond(status: Int, contentType handlerType: String?, body plain: [UInt8], extra: [(String, String)] = [],
                        omitLengthForHead: Bool = false, ownType: Bool = false) {
        r.status = status
        let contentType = ownType ? handlerType : r.carriedContentType ?? handlerType
        let isHead = r.head.method == "HEAD"
        var body = plain
        var encoding: String?
        let compressible = GzipFilter.eligible(r, status: r.statusOverride ?? status, contentType: contentType,
                                               contentLength: body.count, encoded: false)
        if compressible, GzipFilter.accepted(r), let packed = GzipFilter.compressed(body, r) {
            body = packed
            encoding = "gzip"
        }
        let vary = compressible && r.settings.gzip.vary
        sendHead(status: status, framing: .length) { w in
            if let contentType { w.header("Content-Type", CharsetFilter.labelled(r, status: r.statusOverride ?? status, contentType: contentType)) }
            if !(isHead && omitLengthForHead) && status != 304 { w.header("Content-Length", body.count) }
            if let encoding { w.header("Content-Encoding", encoding) }
            if vary { w.header("Vary", "Accept-Encoding") }
            for (name, value) in extra { w.header(name, value) }
        }
        if !isHead && !body.isEmpty {
            body.withUnsafeBytes { r.transport.queueBody($0) }
            r.bodyBytesSent = body.count
        }
        end()
    }

    /// A response head: the status (an error page's, if one is being served), the header filter's fields, the
    /// handler's `fields`, the framing's, the headers filter's. `upstreamSent` names the Server and Date an
    /// upstream's reply carries and proxy_pass_header passes through; `reason`, its status line's phrase.
    public func sendHead(status original: Int, reason: String? = nil, framing: BodyFraming,
                         upstreamSent: (server: Bool, date: Bool) = (false, false), _ fields: (OutputQueue) -> Void) {
        let r = self.r
        let status = r.statusOverride ?? original
        r.status = status
        r.response.framing = framing
        r.headerBytesSent = r.transport.writeHead(status: status, reason: r.statusOverride == nil ? reason : nil, framing: framing, { w in
            HeaderFilter.write(r, upstreamSent: upstreamSent, into: w)
            fields(w)
        }, { w in
            HeadersFilter.write(r, status: status, into: w)
        })
    }

    /// Compresses the rest of a streamed body (gzip's decision was made on its head): false when no deflate
    /// stream could be had.
    public func startGzip(length: Int?) -> Bool { GzipFilter.start(r, length: length) }

    /// A piece of a streamed body: compressed when the response is, then framed by the transport. Deflate hands
    /// out its output in small, uneven pieces: they go out once 16 kB has gathered, or with the end. `last`:
    /// the body ends with this piece. False when the client is backed up (wait for the transport's onDrain).
    public func sendBody(_ bytes: UnsafeRawBufferPointer, last: Bool = false) -> Bool {
        let t = r.transport
        guard r.response.gzip != nil else {
            r.bodyBytesSent += bytes.count
            t.queueBody(bytes)
            return t.flushBody()
        }
        GzipFilter.compress(r, bytes, finish: last) { piece in
            r.bodyBytesSent += piece.count
            t.queueBody(piece)
        }
        return t.queuedBytes < 16384 || t.flushBody()
    }

    /// Upstream chunks passed on as they came (the head's framing was `.chunksPassedThrough`).
    public func sendChunks(_ bytes: UnsafeRawBufferPointer) -> Bool {
        r.bodyBytesSent += bytes.count
        r.transport.queueBody(bytes)
        return r.transport.flushBody()
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

#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP
import HTTPServer
import Script

/// The upstream's HTTP/1 response read and relayed to the request's sink: the head parsed and turned into
/// the client's (headers filtered, Location and Refresh rewritten, gzip decided), the body decoded from the
/// upstream's framing (or its chunks passed on as they are), with back-pressure from the client.
extension ProxySession {
    func readResponse() {
        readReady = false
        while phase == .readingHead || phase == .relaying {
            if paused { return }
            // FastCGI's records land in a buffer of their own; their STDOUT goes on to `response`.
            let input = records ?? response
            let n = input.receive(from: fd, tls: tls, limit: phase == .readingHead && records == nil ? max(65536, conf.bufferSize) : 65536,
                                  file: replaying)
            if n > 0 {
                received += n
                if records != nil && !unframe() { return }
                if phase == .readingHead { parseHead() } else { relay() }
                // A short read emptied the socket: the next bytes, or the close, bring a new edge. Not so
                // over TLS, where a short read ends a record and more may wait: read on to EAGAIN.
                if input.drained && tls == nil && !hungUp && !paused {
                    if phase == .relaying { armBodyReadTimeout() }
                    return
                }
                continue
            }
            if n == -2 { if phase == .readingHead { failed(.invalidHeader, "upstream sent too big header while reading response header from upstream") }; return }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                // As in nginx, proxy_read_timeout bounds the whole head but only the wait between two reads of the body.
                if phase == .relaying { armBodyReadTimeout() }
                return
            }
            // EOF or error.
            if phase == .readingHead {
                let msg = n == 0 ? "upstream prematurely closed connection while reading response header from upstream"
                    : "recv() failed (\(Errno.text(errno))) while reading response header from upstream"
                failed(response.isEmpty ? .error : .invalidHeader, msg)
            } else if records != nil {
                // Without fastcgi_keep_conn the application may close instead of ending the request.
                if fastcgiBodyComplete() == false && (gateway?.keepConn == true || (bodyRemaining ?? 0) > 0) {
                    proxy.log.error("upstream prematurely closed connection while reading upstream, client: \(request.client.address), upstream: \"\(upstreamText)\"")
                    finish(abortClient: true)
                } else {
                    finish()
                }
            } else if bodyRemaining == nil && decoder == nil {
                finish()   // close-delimited body ends here
            } else {
                proxy.log.error("upstream prematurely closed connection while reading upstream, client: \(request.client.address), upstream: \"\(peer?.address.description ?? "")\"")
                finish(abortClient: true)
            }
            return
        }
    }

    func parseHead() {
        // The whole head must fit in proxy_buffer_size, as in nginx. A cached head is stored as HTTP's.
        let result = response.withReadable { buf in
            switch replaying ? .http : proto {
            case .http: return ResponseParser.parse(buf, maxHead: conf.bufferSize, fields: &proxy.responseFields)
            case .fastcgi: return ResponseParser.parseCGI(buf, maxHead: conf.bufferSize, fields: &proxy.responseFields)
            // As nginx's scgi and uwsgi modules: a status line when the application sends one, else a CGI head.
            case .scgi, .uwsgi: return ResponseParser.parseStatusOrCGI(buf, maxHead: conf.bufferSize, fields: &proxy.responseFields)
            }
        }
        switch result {
        case .incomplete:
            if records != nil, let cut = fastcgiHeadCut() { failed(.invalidHeader, cut + " while reading response header from upstream") }
            return
        case .invalid(let reason):
            failed(.invalidHeader, "\(reason) while reading response header from upstream")
        case .complete(let h, let consumed):
            if !replaying && retry.retriesStatus(h.status), canRetry(.status(h.status)) {
                failed(.status(h.status), nil)
                return
            }
            // The refresh of a stale cached response: its 304, or a status `*_cache_use_stale` names.
            if let stale = cached, !replaying, h.status == 304, request.cacheValidators != nil {
                let fields = response.withReadable { ProxyCache.strings(proxy.responseFields, $0) }
                endAttempt(h)
                return revalidated(stale, fields: fields)
            }
            if staleAllowed(after: .status(h.status)) {
                endAttempt(h)
                _ = servesStale(after: .status(h.status))
                return
            }
            // proxy_intercept_errors: an upstream error that has an error_page is answered with that page.
            if h.status >= 300, conf.interceptErrors, !request.inErrorPage,
               settings.core.errorPages.contains(where: { $0.codes.contains(h.status) }) {
                // As nginx, an intercepted 401 keeps the upstream's challenge.
                if h.status == 401 { request.carriedHeaders += ProxyHeaders.authenticate(proxy.responseFields, in: response) }
                if cacheDigest != nil { cacheIntercepted(h.status, fields: response.withReadable { ProxyCache.strings(proxy.responseFields, $0) }) }
                endAttempt(h)
                request.service.pipeline.respondError(request, h.status)
                return
            }
            if let target = response.withReadable({ accelHeaders($0, headLength: consumed) }) {
                endAttempt(h)
                // The next handler takes the request (and this session's place): this one stays until it returns.
                withExtendedLifetime(self) { request.service.pipeline.accelRedirect(request, to: target) }
                return
            }
            head = h
            // The header lines are copied before they are consumed.
            guard response.withReadable({ startRelay(h, fields: proxy.responseFields, parsed: $0, headLength: consumed) }) else { return }
            response.consume(consumed)
            // A 101 answers a request that asked to upgrade: the connection becomes a tunnel. Any other 101
            // has no body and ends the connection, as in nginx.
            if h.status == 101 && request.header("upgrade") != nil { return startTunnel() }
            armBodyReadTimeout()
            relay()
        }
    }

    /// The upstream's response is not relayed (an error page or an X-Accel-Redirect answers instead): the
    /// attempt is recorded, and its connection goes.
    private func endAttempt(_ h: ResponseHead) {
        request.upstreamAttempts.updateLast { $0.status = h.status }
        recordAttempt(status: nil)
        if let p = peer { balancer.finished(p, failed: false, now: loop.now) }
        phase = .done
        closeUpstream()
    }

    /// The X-Accel-* headers nginx acts on, unless proxy_ignore_headers names them: X-Accel-Limit-Rate sets
    /// the response's rate; X-Accel-Redirect's URI is returned, and the headers nginx hands on to the response
    /// served there are kept (Content-Type, Set-Cookie, Content-Disposition, Cache-Control, Expires,
    /// Accept-Ranges), with the head itself when a template reads `$upstream_http_*`.
    private func accelHeaders(_ parsed: UnsafeRawBufferPointer, headLength: Int) -> String? {
        let ignored = conf.ignoreHeaders, fields = proxy.responseFields
        var redirect: String?
        for f in fields {
            let name = parsed[f.name]
            if !ignored.contains(.xAccelRedirect) && ProxyHeaders.named(name, "x-accel-redirect") {
                redirect = String(decoding: parsed[f.value], as: UTF8.self)
            } else if !ignored.contains(.xAccelLimitRate) && ProxyHeaders.named(name, "x-accel-limit-rate"),
                      let rate = Int(String(decoding: parsed[f.value], as: UTF8.self)), rate >= 0 {
                request.limitRate = rate
            }
        }
        guard let redirect, !redirect.isEmpty else { return nil }
        for f in fields where ProxyHeaders.carriedOnRedirect.contains(where: { ProxyHeaders.named(parsed[f.name], $0) }) {
            request.carriedHeaders.append((String(decoding: parsed[f.name], as: UTF8.self), String(decoding: parsed[f.value], as: UTF8.self)))
        }
        if request.service.config.http?.readsUpstreamHeaders == true { request.upstreamHead = (Array(parsed[0..<headLength]), fields) }
        return redirect
    }

    /// Sets up the body's framing and sends the client's response head, its header lines (`fields`) copied
    /// from the upstream's bytes (`parsed`) as they are. False when the range filter answered 416 instead.
    private func startRelay(_ h: ResponseHead, fields: [HeaderField], parsed: UnsafeRawBufferPointer, headLength: Int) -> Bool {
        phase = .relaying
        if request.service.config.http?.readsUpstreamHeaders == true { request.upstreamHead = (Array(parsed[0..<headLength]), fields) }
        let now = loop.nowUs
        request.upstreamAttempts.updateLast {
            $0.status = h.status
            $0.headerUs = now - startedUs
            $0.headLength = headLength
        }
        let isHead = request.method == "HEAD"
        let transport = request.transport
        // A body of unknown length is chunked when the client can take that; otherwise the connection's close
        // ends it. An upstream's chunks pass through as they came when both sides speak them.
        let canChunk = transport.framesUnknownLength
        var framing = BodyFraming.length
        if replaying {
        } else if cacheDigest != nil {
            startCaching(h, fields: fields, parsed: parsed)
        } else if h.status == 200, h.hasBody, !isHead {
            startStoring()
        }
        // A HEAD the cache sent as a GET (proxy_cache_convert_head): the body is read, into the cache, not sent.
        discardsBody = isHead && upstreamMethod != nil && !replaying
        if !h.hasBody || (isHead && !discardsBody) {
            bodyRemaining = 0
        } else if h.chunked {
            decoder = ChunkedDecoder()
            // Chunks that end in add_trailer's trailers are our own; a stored body is the chunks' data.
            passChunked = transport.passesChunks && !request.sink.carriesTrailers(status: h.status) && stored == nil && !isHead
            if !isHead { framing = passChunked ? .chunksPassedThrough : canChunk ? .chunked : .close }
        } else if let len = h.contentLength {
            bodyRemaining = len
        } else if !isHead {
            framing = canChunk ? .chunked : .close   // delimited by the upstream's close
        }
        // gzip, decided on the upstream's head: the body is then decoded from the upstream's framing,
        // compressed, and sent in pieces of our own (to a client that cannot take those: until the close).
        // As nginx, one Content-Type goes to the client: the upstream's last.
        var contentType: Range<Int>?, encoded = false
        for f in fields {
            if RequestParser.matches(parsed[f.name], lowercase: "content-type") { contentType = f.value }
            if RequestParser.matches(parsed[f.name], lowercase: "content-encoding") && !parsed[f.value].isEmpty { encoded = true }
        }
        let compressible = contentType.map {
            GzipFilter.eligible(request, status: h.status, contentType: UnsafeRawBufferPointer(rebasing: parsed[$0]),
                                contentLength: h.contentLength, encoded: encoded)
        } ?? false
        let sink = request.sink
        // nil: the upstream's Content-Type goes out as its bytes.
        let typeSent = contentType.flatMap { sink.contentType(UnsafeRawBufferPointer(rebasing: parsed[$0]), status: h.status, encoded: encoded) }
        let recodes = sink.recodes
        // Chunks of the upstream's pass through only as they came.
        if recodes.body { passChunked = false }
        let encodes = compressible && h.hasBody && GzipFilter.accepted(request)
        let gzipping = encodes && !isHead && sink.startGzip(length: h.contentLength)
        // A HEAD gets the head its GET would: encoded, without the upstream's length, and nothing to compress.
        let headEncoded = encodes && isHead
        let newLength = gzipping || recodes.length
        if !isHead && (newLength || recodes.body && framing == .chunksPassedThrough) {
            passChunked = false
            framing = canChunk ? .chunked : .close
        }
        // proxy_force_ranges: a 200 of known length, neither compressed nor recoded to another length, answers
        // one range (nginx's allow_ranges and single_range); the upstream's Accept-Ranges is not passed then, nor
        // when the body is compressed.
        var status = h.status, reason: String? = h.reason, rangedLength: Int?, multipartType: String?
        // A cached response, or one being stored, answers ranges, as nginx's.
        let forceRanges = conf.forceRanges || replaying || (stored != nil && cacheDigest != nil)
        if forceRanges && !newLength && !h.chunked, let length = h.contentLength, (request.statusOverride ?? h.status) == 200 {
            // A response from the cache, or being stored in it, answers several ranges too, as nginx's.
            let multipart: String?? = replaying || stored != nil && cacheDigest != nil ? .some(typeSent ?? contentType.map { String(decoding: parsed[$0], as: UTF8.self) }) : nil
            switch sink.range(length: length, etag: lastField("etag", fields, parsed),
                              lastModified: lastField("last-modified", fields, parsed).flatMap(Clock.parseHTTPDate), multipartOf: multipart) {
            case .whole: break
            case .partial(let n):
                rangedLength = n
                status = 206
                reason = nil
            case .multipart(let n, let type):
                rangedLength = n
                multipartType = type
                status = 206
                reason = nil
            case .unsatisfiable:
                endAttempt(h)
                request.service.pipeline.respondError(request, 416)
                return false
            }
        }
        let dropsAcceptRanges = forceRanges || gzipping
        let vary = compressible && settings.gzip.vary
        let hidden = conf.hideHeaders, passed = conf.passHeaders
        let editsCookies = !conf.cookieDomains.isEmpty || !conf.cookiePaths.isEmpty || !conf.cookieFlags.isEmpty
        // A gateway application's Server and Date go to the client, as nginx's gateway modules pass them.
        let cgi = proto != .http
        func relayed(_ name: String) -> Bool {
            (cgi || passed.contains(name)) && fields.contains { ProxyHeaders.named(parsed[$0.name], name) }
        }
        let upstreamSent = (server: relayed("server"), date: relayed("date"))
        // `expires modified` counts from the upstream's Last-Modified, and a stored file takes it as its time.
        let needsLastModified: Bool
        switch settings.headers.expires {
        case .modified, .variable: needsLastModified = true
        default: needsLastModified = stored != nil
        }
        if needsLastModified { request.response.lastModified = lastField("last-modified", fields, parsed).flatMap(Clock.parseHTTPDate) }
        sink.sendHead(status: status, reason: reason, framing: framing, upstreamSent: upstreamSent) { w in
            // Decided by the headers filter by now: the fields of the upstream's that expires or add_header replace.
            let replaced = request.response.replaced
            for f in fields where ProxyHeaders.passes(parsed[f.name], hidden: hidden, passed: passed, cgi: cgi)
                && (replaced.isEmpty || !replaced.contains(field: String(decoding: parsed[f.name], as: UTF8.self)))
                && !((newLength || headEncoded || rangedLength != nil) && RequestParser.matches(parsed[f.name], lowercase: "content-length"))
                && !(dropsAcceptRanges && RequestParser.matches(parsed[f.name], lowercase: "accept-ranges"))
                && !(rangedLength != nil && RequestParser.matches(parsed[f.name], lowercase: "content-range"))
                && !(RequestParser.matches(parsed[f.name], lowercase: "content-type") && f.value != contentType) {
                let name = UnsafeRawBufferPointer(rebasing: parsed[f.name])
                let isLocation = RequestParser.matches(parsed[f.name], lowercase: "location")
                if f.value == contentType, var type = multipartType ?? typeSent {
                    type.withUTF8 { w.header(name, UnsafeRawBufferPointer($0)) }
                } else if isLocation || RequestParser.matches(parsed[f.name], lowercase: "refresh") {
                    let value = String(decoding: parsed[f.value], as: UTF8.self)
                    // A Location rewritten to a path is made absolute, as for nginx's own redirects.
                    var text = redirected(value, isLocation: isLocation).map { isLocation ? request.service.pipeline.absolute(request, $0) : $0 } ?? value
                    text.withUTF8 { w.header(name, UnsafeRawBufferPointer($0)) }
                } else if (gzipping || headEncoded) && RequestParser.matches(parsed[f.name], lowercase: "etag") {
                    if var weak = GzipFilter.weakened(String(decoding: parsed[f.value], as: UTF8.self)) {
                        weak.withUTF8 { w.header(name, UnsafeRawBufferPointer($0)) }
                    }
                } else if editsCookies && RequestParser.matches(parsed[f.name], lowercase: "set-cookie"),
                          var edited = CookieEditor.edit(String(decoding: parsed[f.value], as: UTF8.self), conf, request) {
                    edited.withUTF8 { w.header(name, UnsafeRawBufferPointer($0)) }
                } else {
                    w.header(name, UnsafeRawBufferPointer(rebasing: parsed[f.value]))
                }
            }
            if let multipartType, contentType == nil { w.header("Content-Type", multipartType) }
            if let rangedLength, !request.response.replaced.contains(.contentLength) { w.header("Content-Length", rangedLength) }
            if gzipping || headEncoded { w.header("Content-Encoding", "gzip") }
            if vary { w.header("Vary", "Accept-Encoding") }
        }
        return true
    }

    /// proxy_redirect on a Location, or on the URL after "url=" in a Refresh: the first rule that matches there
    /// rewrites it (a prefix rule the prefix, a regex the whole URL); nil when none does.
    private func redirected(_ value: String, isLocation: Bool) -> String? {
        guard let start = isLocation ? value.utf8.startIndex : ProxyRedirects.urlStart(inRefresh: value) else { return nil }
        for rule in conf.redirects {
            guard let (end, replacement) = ProxyRedirects.match(rule, value[start...], request) else { continue }
            var v = value
            v.replaceSubrange(start..<end, with: replacement)
            return v
        }
        return nil
    }

    /// Re-armed after each read of the body (nginx: the timeout runs only between two successive reads).
    /// While reading is paused for a backed-up client it does not run: the client's send_timeout does.
    private func armBodyReadTimeout() {
        arm(conf.readTimeout, .readingBody)
    }

    /// Moves response bytes to the client; pauses reading the upstream while the client is backed up.
    private func relay() {
        guard phase == .relaying else { return }
        if response.isEmpty {
            if records != nil ? fastcgiBodyComplete() == true : bodyRemaining == 0 { finish() }
            return
        }
        let sink = request.sink
        var done = false
        var keepGoing = true
        let discards = discardsBody
        if var d = decoder {
            let pass = passChunked
            let event = response.withReadable { buf -> ChunkedDecoder.Event in
                d.feed(buf) { range in
                    stored?.write(UnsafeRawBufferPointer(rebasing: buf[range]))
                    if !pass && !discards { keepGoing = sink.sendBody(UnsafeRawBufferPointer(rebasing: buf[range]), flush: false) && keepGoing }
                }
            }
            decoder = d
            var consumed = response.readable
            switch event {
            case .end(let c): consumed = c; done = true
            case .error:
                proxy.log.error("upstream sent invalid chunked response while reading upstream, client: \(request.client.address)")
                finish(abortClient: true)
                return
            case .data: break
            }
            if pass {
                response.withReadable { keepGoing = sink.sendChunks(UnsafeRawBufferPointer(rebasing: $0[0..<consumed]), flush: false) }
            }
            response.consume(consumed)
        } else if let remaining = bodyRemaining {
            let take = min(remaining, response.readable)
            response.withReadable {
                stored?.write(UnsafeRawBufferPointer(rebasing: $0[0..<take]))
                if !discards { keepGoing = sink.sendBody(UnsafeRawBufferPointer(rebasing: $0[0..<take]), last: take == remaining && records == nil, flush: false) }
            }
            response.consume(take)
            bodyRemaining = remaining - take
            done = bodyRemaining == 0
        } else {
            response.withReadable {
                stored?.write($0)
                if !discards { keepGoing = sink.sendBody($0, flush: false) }
            }
            response.consume(response.readable)
        }
        if phase == .done { return }   // the client went away while the body was being written
        if records != nil {
            guard let complete = fastcgiBodyComplete() else { return }
            done = complete
        }
        // What this read brought goes out in one write: with the end's framing when the body ended (finish).
        if done { finish(); return }
        keepGoing = request.transport.flushBody() && keepGoing
        if phase == .done { return }
        if !keepGoing {
            paused = true
            disarm()
            request.transport.onDrain = { [weak self] in self?.resume() }
        }
    }

    /// proxy_store: the file this 200's body goes to, at `$request_filename` or the directive's path.
    private func startStoring() {
        let path: String
        switch conf.store {
        case .off: return
        case .requestFilename: path = request.value(.requestFilename) ?? ""
        case .path(let t): path = t.render(request)
        }
        guard path.hasPrefix("/") else { return }
        stored = StoredResponse(at: path, access: conf.storeAccess, log: request.log)
    }

    /// The value of the upstream's last field `name`.
    private func lastField(_ name: StaticString, _ fields: [HeaderField], _ parsed: UnsafeRawBufferPointer) -> String? {
        fields.last { RequestParser.matches(parsed[$0.name], lowercase: name) }.map { String(decoding: parsed[$0.value], as: UTF8.self) }
    }

    private func resume() {
        guard paused, phase == .relaying else { return }
        paused = false
        request.transport.onDrain = nil
        readResponse()
    }
}

extension ProxyHeaders {
    /// The upstream headers an X-Accel-Redirect keeps for the response served after it, as nginx's.
    static let carriedOnRedirect = ["content-type", "set-cookie", "content-disposition", "cache-control", "expires", "accept-ranges"]

    /// Whether an upstream header goes to the client: not hop-by-hop or nginx's own (unless proxy_pass_header
    /// names it), and not named by proxy_hide_header.
    @inline(__always) static func passes(_ name: Slice<UnsafeRawBufferPointer>, hidden: [String], passed: [String], cgi: Bool = false) -> Bool {
        if hidden.contains(where: { named(name, $0) }) { return false }
        guard cgi ? dropsFromCGIResponse(name) : dropsFromResponse(name) else { return true }
        return passed.contains(where: { named(name, $0) })
    }

    /// A header name compared with a lowercase one from the configuration, in place.
    static func named(_ name: Slice<UnsafeRawBufferPointer>, _ lower: String) -> Bool {
        guard name.count == lower.utf8.count else { return false }
        var i = name.startIndex
        for c in lower.utf8 {
            let b = name[i]
            if (b | (b >= 0x41 && b <= 0x5A ? 0x20 : 0)) != c { return false }
            i += 1
        }
        return true
    }

    /// A CGI application's headers nginx does not pass on: Status (the status line has it), the X-Accel-*
    /// headers it would act on, and hop-by-hop ones.
    @inline(__always) static func dropsFromCGIResponse(_ b: Slice<UnsafeRawBufferPointer>) -> Bool {
        switch b.count {
        case 4, 5: return false
        case 6: return RequestParser.matches(b, lowercase: "status")
        default: return dropsFromResponse(b)
        }
    }

    /// Upstream response headers nginx does not pass on: hop-by-hop ones (but Upgrade, which a 101 needs),
    /// those it sets itself (Server, Date), X-Pad and the five X-Accel-* headers it would act on (others,
    /// X-Accel-Info say, go through).
    /// Compared in place, without lowercasing a copy of each name.
    @inline(__always) static func dropsFromResponse(_ b: Slice<UnsafeRawBufferPointer>) -> Bool {
        switch b.count {
        case 4: return RequestParser.matches(b, lowercase: "date")
        case 5: return RequestParser.matches(b, lowercase: "x-pad")
        case 6: return RequestParser.matches(b, lowercase: "server")
        case 10: return RequestParser.matches(b, lowercase: "connection") || RequestParser.matches(b, lowercase: "keep-alive")
        case 15: return RequestParser.matches(b, lowercase: "x-accel-expires") || RequestParser.matches(b, lowercase: "x-accel-charset")
        case 16: return RequestParser.matches(b, lowercase: "proxy-connection") || RequestParser.matches(b, lowercase: "x-accel-redirect")
        case 17: return RequestParser.matches(b, lowercase: "transfer-encoding") || RequestParser.matches(b, lowercase: "x-accel-buffering")
        case 18: return RequestParser.matches(b, lowercase: "x-accel-limit-rate")
        default: return false
        }
    }
}

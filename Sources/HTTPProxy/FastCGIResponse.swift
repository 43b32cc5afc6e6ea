import Core
import HTTP

/// A FastCGI application's records read back: STDOUT's content becomes the CGI response (head and body) in
/// `response`, where the HTTP path parses and relays it; STDERR is logged as nginx logs it; END_REQUEST ends
/// the body and, with fastcgi_keep_conn, frees the connection for the next request.
extension ProxySession {
    /// Decodes the records read so far. False when they were invalid or fastcgi_catch_stderr caught one: the
    /// attempt has failed then.
    func unframe() -> Bool {
        guard let records else { return true }
        var failure: String?, caught = false, content = 0
        let used = records.withReadable { buf -> Int in
            var i = 0
            while !requestEnded, failure == nil, !caught, let event = recordDecoder.next(buf, &i) {
                switch event {
                case .stdout(let r):
                    response.append(UnsafeRawBufferPointer(rebasing: buf[r]))
                    content += r.count
                case .stderr(let r):
                    let text = UnsafeRawBufferPointer(rebasing: buf[r])
                    logStderr(text)
                    if phase == .readingHead, let route = gateway, route.catchStderr.contains(where: { Self.contains(text, $0) }) {
                        caught = true
                    }
                case .stdoutClosed: stdoutClosed = true
                case .endRequest: requestEnded = true
                case .invalid(let message): failure = message
                }
            }
            return i
        }
        records.consume(used)
        framing += used - content
        if let failure {
            if phase == .readingHead {
                failed(.invalidHeader, failure + " while reading response header from upstream")
            } else {
                request.log.error("\(failure) while reading upstream\(request.logContext), upstream: \"\(upstreamText)\"")
                finish(abortClient: true)
            }
            return false
        }
        if caught {
            failed(.invalidHeader, nil)
            return false
        }
        return true
    }

    /// nginx's line for a piece of STDERR: its trailing newlines, dots and spaces dropped, at most what one of
    /// its log lines holds.
    private func logStderr(_ text: UnsafeRawBufferPointer) {
        let message = FastCGI.trimmedStderr(UnsafeRawBufferPointer(rebasing: text.prefix(2048)))
        let doing = phase == .readingHead ? "reading response header from upstream" : "reading upstream"
        request.log.error("FastCGI sent in stderr: \"\(message)\" while \(doing)\(request.logContext), upstream: \"\(upstreamText)\"")
    }

    private static func contains(_ text: UnsafeRawBufferPointer, _ pattern: [UInt8]) -> Bool {
        guard !pattern.isEmpty, text.count >= pattern.count else { return pattern.isEmpty }
        for start in 0...(text.count - pattern.count) where text[start] == pattern[0] {
            if pattern.indices.allSatisfy({ text[start + $0] == pattern[$0] }) { return true }
        }
        return false
    }

    /// The head is not complete yet: an error when the application can send no more of it.
    func fastcgiHeadCut() -> String? {
        if stdoutClosed { return "upstream prematurely closed FastCGI stdout" }
        if requestEnded { return "upstream sent unexpected FastCGI record: \(FastCGI.endRequest)" }
        return nil
    }

    /// Whether the body has all been relayed: the application ended the request (without fastcgi_keep_conn
    /// its close ends it too, readResponse). Not yet at its closed stdout, where nginx may stop reading: an
    /// application still writing its END_REQUEST would be cut off mid-write. Bytes past a Content-Length are
    /// dropped and keep the connection from being reused, as nginx's; nil when the request ended short of the
    /// Content-Length: the client's response was aborted.
    func fastcgiBodyComplete() -> Bool? {
        if bodyRemaining == 0 && !response.isEmpty {
            request.log.warn("upstream sent more data than specified in \"Content-Length\" header while reading upstream\(request.logContext), upstream: \"\(upstreamText)\"")
            response.consume(response.readable)
            hungUp = true
            return true
        }
        guard requestEnded else { return false }
        if let rest = bodyRemaining, rest > 0 {
            request.log.error("upstream prematurely closed FastCGI request while reading upstream\(request.logContext), upstream: \"\(upstreamText)\"")
            finish(abortClient: true)
            return nil
        }
        return true
    }
}

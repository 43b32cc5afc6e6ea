import Config
import Core

/// Where a request body goes while it streams in (a proxied request with `proxy_request_buffering off`):
/// told when bytes arrived in `RequestBody.bytes` and when the body ended.
public protocol BodyConsumer: AnyObject {
    func bodyArrived()
    func bodyEnded()
}

/// A content handler's work in flight for a request (a proxied request's upstream session): the connection
/// stops it when the client goes away or the request fails.
public protocol ActiveHandler: AnyObject {
    func abort()
    var isFinished: Bool { get }
}

/// The request body as it is read, whatever the protocol's framing: bounded by client_max_body_size, kept
/// in memory up to client_body_buffer_size and in a temporary file past it, or handed to a consumer as it
/// comes. The connection decodes its framing and feeds it here.
public struct RequestBody {
    /// Bytes received and not yet handed on: the whole body when it fits in memory, else what the file or a
    /// streaming consumer has not taken yet.
    public var bytes: [UInt8] = []
    /// The body past client_body_buffer_size.
    public internal(set) var file: BodyFile?
    /// Bytes received so far.
    public internal(set) var received = 0
    /// Not read yet: the location may take it as it streams in.
    public internal(set) var pending = false
    /// All of it has been received.
    public internal(set) var complete = false
    /// Reading paused while a streaming consumer holds 64 kB it has not sent on.
    var paused = false
    /// What runs when the whole body is in.
    var afterBody: (() -> Void)?
    weak var consumer: BodyConsumer?

    /// How much a streaming consumer may have waiting before reading pauses.
    static let streamWindow = 65536
}

/// What the connection does after feeding a batch of body bytes.
public enum BodyStep {
    /// Read on (arm client_body_timeout if bytes came).
    case read
    /// Stop reading until the consumer takes what is waiting.
    case pause
    /// The whole body is in: call `bodyFinished()`.
    case finished
    /// The body cannot be taken: answer with this status and close.
    case failed(Int)
}

extension RequestContext {
    /// Starts reading the whole body; `then` runs when it is in (nil: the pipeline's phases).
    public func readBody(then: (() -> Void)?) {
        body.pending = false
        body.afterBody = then
        transport.readBody(self)
    }

    /// Starts reading the body as it comes, each batch handed to `consumer`.
    public func streamBody(to consumer: BodyConsumer) {
        body.pending = false
        body.consumer = consumer
        transport.readBody(self)
    }

    /// A piece of the body, its framing removed.
    func receiveBody(_ piece: UnsafeRawBufferPointer) {
        body.bytes.append(contentsOf: piece)
        body.received += piece.count
    }

    /// After a batch of pieces: the limit, the consumer or the temporary file, and whether the body is done.
    /// `announced`: what a chunked body's sizes add up to so far, which nginx holds against the limit before the
    /// data comes.
    func bodyProgress(complete: Bool, announced: Int?) -> BodyStep {
        let limit = settings.core.clientMaxBodySize
        if let announced, limit > 0 && announced > limit {
            log.error("client intended to send too large chunked body: \(announced) bytes\(logContext)")
            return .failed(413)
        }
        if let consumer = body.consumer {
            if complete { return .finished }
            consumer.bodyArrived()
            return body.bytes.count >= RequestBody.streamWindow ? .pause : .read
        }
        let inFile = body.file != nil || body.bytes.count > settings.core.clientBodyBufferSize || complete && bodyInFileOnly
        if inFile && !spillBody() { return .failed(500) }
        return complete ? .finished : .read
    }

    /// The whole body is in: the streaming consumer hears of its end, or what waited for it runs.
    func bodyFinished() {
        body.complete = true
        if let consumer = body.consumer {
            body.consumer = nil
            consumer.bodyEnded()
        } else if let k = body.afterBody {
            body.afterBody = nil
            k()
        } else {
            service.pipeline.dispatch(self)
        }
    }

    /// The consumer took what had gathered: reading resumes if it had paused.
    public func bodyConsumed() {
        guard body.paused else { return }
        body.paused = false
        transport.resumeBody()
    }

    /// Stops feeding anyone: the request was answered or failed.
    func dropBodyReaders() {
        body.consumer = nil
        body.afterBody = nil
    }

    /// client_body_in_file_only takes a body read whole for a proxied request: the one content handler here
    /// that reads bodies (nginx makes no file for a body it discards), unless the body streams to the upstream.
    var bodyInFileOnly: Bool {
        guard settings.core.clientBodyInFileOnly != .off, case .proxy = content else { return false }
        return service.proxyHandler?.streamsBody(self) == false
    }

    /// A body that does not fit client_body_buffer_size goes on to a temporary file (nginx warns about it, and
    /// only notes it where client_body_in_file_only asks for the file).
    func spillBody() -> Bool {
        if body.file == nil {
            let keep = bodyInFileOnly ? settings.core.clientBodyInFileOnly : .off
            switch BodyFile.create(in: settings.core.clientBodyTempPath, keep: keep, service: service) {
            case .success(let f):
                body.file = f
                log.log(keep == .off ? .warn : .notice, "a client request body is buffered to a temporary file \(f.path)\(logContext)")
            case .failure(let message):
                log.log(.crit, "\(message)\(logContext)")
                return false
            }
        }
        if let e = body.file!.append(body.bytes) {
            service.log.log(.crit, "write() \"\(body.file!.path)\" failed (\(Errno.text(e))), client: \(client.address)")
            return false
        }
        body.bytes.removeAll(keepingCapacity: true)
        return true
    }
}

import Config
import Core
import Event
import HTTP

/// nginx's subrequest: a request the server makes to one of its own locations for `parent`, through the same
/// phases (from the server's rewrite script on, as an internal GET without a body, skipping the access phase),
/// whose response is kept rather than sent: its status and head. It shares the parent's connection, request
/// head (`$request_uri`, `$http_*`) and variables. Its end is reported on the next turn of the loop, once the
/// handler that answered it has returned. auth_request is its first user.
public final class Subrequest: ClientlessTransport {
    public unowned(unsafe) let parent: RequestContext
    /// The subrequest itself, held until the parent lets go of this.
    public private(set) var request: RequestContext!
    /// The response's status (an error page's if one answered), 0 before its head.
    public private(set) var status = 0
    /// The response head as it would have been sent: status line and header lines.
    public private(set) var head: [UInt8] = []
    private var done: ((Subrequest) -> Void)?
    private var report: Timer?
    private var ended = false
    public var onDrain: (() -> Void)?

    private init(parent: RequestContext, done: @escaping (Subrequest) -> Void) {
        self.parent = parent
        self.done = done
    }

    /// Starts a subrequest of `uri`; `done` runs when its response has ended, unless `cancel` came first.
    static func start(_ parent: RequestContext, uri: String, done: @escaping (Subrequest) -> Void) -> Subrequest {
        let s = Subrequest(parent: parent, done: done)
        var head = parent.head
        // As nginx's auth_request, an empty body: the parent's is not read for it.
        head.contentLength = nil
        head.chunked = false
        head.expectContinue = false
        let service = parent.service
        let r = RequestContext(head: head, server: parent.server, location: nil, service: service, transport: s,
                               requestLength: 0, parent: parent)
        r.method = "GET"
        r.uri = uri
        r.args = nil
        r.isInternal = true
        r.relocate(service.router.location(in: parent.server, path: uri))
        s.request = r
        service.pipeline.dispatch(r)
        return s
    }

    /// A report still due would find this gone.
    deinit { report?.cancel() }

    /// The parent no longer waits (its client went away): the subrequest's handler stops, and nothing it
    /// answers on its way out is reported.
    func cancel() {
        done = nil
        report?.cancel()
        ended = true
        request.stopHandler()
    }

    /// The next turn of the loop: the response has ended, or a `return 444` in it closes the client's
    /// connection, as nginx terminates the main request then.
    private func end(closing: Bool) {
        guard !ended else { return }
        ended = true
        report = parent.service.loop.schedule(after: 0) { [unowned(unsafe) self] in
            self.request.stopHandler()
            if closing { return self.parent.transport.abort() }
            self.done?(self)
        }
    }

    public var client: ClientInfo { parent.client }

    public func writeHead(status: Int, reason: String?, framing: BodyFraming, _ leading: (OutputQueue) -> Void,
                          _ trailing: (OutputQueue) -> Void) -> Int {
        let out = OutputQueue()
        out.statusLine(status, reason: reason)
        leading(out)
        trailing(out)
        self.status = status
        head = out.bytes
        request.sentHead = head
        return head.count
    }

    public func endResponse(framing: BodyFraming) { end(closing: false) }
    /// A `return 444`, or an upstream that broke after the head (the head is all that is kept).
    public func abort() { end(closing: status == 0) }
    public func isServing(_ r: RequestContext) -> Bool { r === request && !ended }
}

/// A transport with no client behind it (a subrequest, a background request): no body is kept (their users
/// want the head, or nothing), none is read, and there is no connection to keep alive or to tunnel.
public protocol ClientlessTransport: RequestTransport {}

extension ClientlessTransport {
    public func queueBody(_ bytes: UnsafeRawBufferPointer) {}
    public func flushBody() -> Bool { true }
    public var queuedBytes: Int { 0 }
    public var framesUnknownLength: Bool { true }
    public var passesChunks: Bool { true }
    public func disableKeepAlive() {}
    public func bodyArrivedWhole(within room: Int) -> Bool { true }
    public func readBody(_ r: RequestContext) { r.bodyFinished() }
    public func resumeBody() {}
    public func abandonBody() {}
    public func becomeTunnel(_ handler: TunnelEventHandler, unsent: (UnsafeRawBufferPointer) -> Void,
                             received: (UnsafeRawBufferPointer) -> Void) -> TunnelEnd? { nil }
}

import Core
import Event
import HTTP

/// A request of the server's own, a copy of a client's whose response goes nowhere (nginx's background clone
/// subrequest): the upstream cache refreshes a stale response with one (`*_cache_background_update`) while the
/// client is answered from the stale file. It goes straight to the handler it is given, and lives until its
/// response has ended, whatever became of the client's connection meanwhile.
public final class BackgroundRequest: ClientlessTransport {
    /// The background requests under way in this worker: each is held here until it ends.
    private nonisolated(unsafe) static var running: [ObjectIdentifier: BackgroundRequest] = [:]

    public let client: ClientInfo
    private var request: RequestContext!
    private let loop: EventLoop
    private var ended = false
    public var onDrain: (() -> Void)?

    private init(client: ClientInfo, loop: EventLoop) {
        self.client = client
        self.loop = loop
    }

    public static func start(from parent: RequestContext, handler: RequestHandler) {
        let b = BackgroundRequest(client: parent.client, loop: parent.service.loop)
        let r = parent.clone(on: b)
        r.isBackground = true
        b.request = r
        running[ObjectIdentifier(b)] = b
        handler.handle(r)
    }

    /// On the next turn of the loop, once the handler has returned: its session stops and this goes.
    private func end() {
        guard !ended else { return }
        ended = true
        _ = loop.schedule(after: 0) { [self] in
            request.stopHandler()
            request = nil
            BackgroundRequest.running[ObjectIdentifier(self)] = nil
        }
    }

    public func writeHead(status: Int, reason: String?, framing: BodyFraming, _ leading: (OutputQueue) -> Void,
                          _ trailing: (OutputQueue) -> Void) -> Int { 0 }
    public func endResponse(framing: BodyFraming) { end() }
    public func abort() { end() }
    public func isServing(_ r: RequestContext) -> Bool { r === request && !ended }
}

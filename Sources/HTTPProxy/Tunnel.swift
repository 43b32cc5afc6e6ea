#if canImport(Glibc)
import Glibc
#endif
import Core
import Event
import HTTPServer
import Upstream

/// A connection upgraded by the upstream's 101 Switching Protocols (WebSocket and the like): from then on
/// bytes pass both ways, as they come, between the client and the upstream, as nginx proxies an upgraded
/// connection. Each direction holds at most one buffer; a side that cannot take more stops the other from
/// being read. It ends when a side closes and what it sent has been passed on, on an error, or after
/// proxy_read_timeout without traffic (proxy_send_timeout and send_timeout while a side does not take bytes).
final class Tunnel: TunnelEventHandler {
    /// One direction: what was read from its source and not yet written to its destination.
    private struct Flow {
        let buffer: ByteBuffer
        var sourceClosed = false
        var destinationBlocked = false
    }

    private unowned let session: ProxySession
    /// Set by `attach`, once the tunnel exists to take the connection's events.
    private var client: TunnelEnd!
    private let upstream: UpstreamConnection
    private var toClient: Flow
    private var toUpstream: Flow
    private var ended = false

    /// nginx gives each direction one proxy_buffer_size buffer; a larger one moves bulk traffic in fewer calls.
    static let bufferSize = 65536

    init(session: ProxySession, upstream: UpstreamConnection) {
        self.session = session
        self.upstream = upstream
        toClient = Flow(buffer: ByteBuffer(capacity: Tunnel.bufferSize))
        toUpstream = Flow(buffer: ByteBuffer(capacity: Tunnel.bufferSize))
    }

    /// The client's connection becomes the tunnel's: what is left of the 101 head and the bytes the upstream
    /// sent after it go to the client first, the bytes the client sent after its request head to the upstream.
    /// False when the client's protocol cannot carry a tunnel.
    func attach(upstreamSent: ByteBuffer) -> Bool {
        let head = toClient.buffer, early = toUpstream.buffer
        guard let end = session.request.transport.becomeTunnel(self, unsent: { head.append($0) }, received: { early.append($0) }) else {
            return false
        }
        client = end
        // Counted here: the pump counts only what it reads itself.
        session.request.bodyBytesSent += upstreamSent.readable
        session.request.requestLength += early.readable
        session.tunneled(received: 0, sent: early.readable)
        upstreamSent.withReadable { head.append($0) }
        upstreamSent.consume(upstreamSent.readable)
        client.setReading(true)
        pump()
        return true
    }

    func clientEvent(_ events: UInt32) {
        if events & Events.writable != 0 { toClient.destinationBlocked = false }
        pump()
    }

    func upstreamEvent(_ events: UInt32) {
        if events & Events.writable != 0 { toUpstream.destinationBlocked = false }
        pump()
    }

    func timedOut() {
        let message = toClient.destinationBlocked ? "client timed out (110: Connection timed out)"
            : "upstream timed out (110: Connection timed out)"
        session.request.log.error("\(message) while proxying upgraded connection\(session.request.logContext)")
        end()
    }

    /// Moves what both sides have, until neither can go on.
    private func pump() {
        guard !ended else { return }
        var failed = false
        let request = session.request
        let fromClient = move(&toUpstream, from: client.fd, client.secureStream, to: upstream.fd, upstream.tls, failed: &failed)
        request.requestLength += fromClient
        let fromUpstream = move(&toClient, from: upstream.fd, upstream.tls, to: client.fd, client.secureStream, failed: &failed)
        request.bodyBytesSent += fromUpstream
        session.tunneled(received: fromUpstream, sent: fromClient)
        if failed
            || toClient.sourceClosed && toClient.buffer.isEmpty
            || toUpstream.sourceClosed && toUpstream.buffer.isEmpty {
            return end()
        }
        // The client's socket is level-triggered: reading stops while its bytes have nowhere to go, writing is
        // watched only while the client is behind. The upstream's is edge-triggered and always watched.
        client.setReading(!toUpstream.sourceClosed && toUpstream.buffer.readable < Tunnel.bufferSize)
        client.setWriting(toClient.destinationBlocked)
        let settings = request.settings
        let timeout = toClient.destinationBlocked ? settings.core.sendTimeout
            : toUpstream.destinationBlocked ? settings.proxy.sendTimeout : settings.proxy.readTimeout
        upstream.arm(after: timeout)
    }

    /// Reads from the source while there is room and writes to the destination while it takes bytes; returns
    /// how many bytes were read.
    private func move(_ flow: inout Flow, from src: Int32, _ srcTLS: SecureStream?, to dst: Int32, _ dstTLS: SecureStream?,
                      failed: inout Bool) -> Int {
        var read = 0
        while true {
            if !flow.buffer.isEmpty && !flow.destinationBlocked {
                let n = flow.buffer.withReadable { b in
                    dstTLS.map { $0.write(b.baseAddress!, count: b.count) } ?? send(dst, b.baseAddress!, b.count, Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    flow.buffer.consume(n)
                    continue
                }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    flow.destinationBlocked = true
                } else {
                    failed = true
                    return read
                }
            }
            guard !flow.sourceClosed, flow.buffer.readable < Tunnel.bufferSize else { return read }
            let n = flow.buffer.receive(from: src, tls: srcTLS, limit: Tunnel.bufferSize)
            if n > 0 {
                read += n
                continue
            }
            if n == -2 { return read }
            if n == 0 {
                flow.sourceClosed = true
                return read
            }
            if errno == EINTR { continue }
            if errno != EAGAIN && errno != EWOULDBLOCK { failed = true }
            return read
        }
    }

    /// Both connections go: the session records the attempt and ends the request, whose log line is written
    /// once, now.
    private func end() {
        guard !ended else { return }
        ended = true
        session.tunnelEnded()
    }
}

/// nginx's HTTP/2 module, per level. `enabled` is nginx 1.25's `http2 on|off` (server level); `listen … http2`
/// turns it on for every server on that address whatever this says, as in nginx.
public struct HTTP2Settings: Sendable {
    @Setting public var enabled = false
    @Setting public var maxConcurrentStreams = 128
    /// `http2_chunk_size`: the largest DATA frame a response body is cut into.
    @Setting public var chunkSize = 8192
    /// `http2_body_preread_size`: each stream's initial window, what a client may send of a body unasked.
    @Setting public var bodyPrereadSize = 65536
    /// `http2_recv_buffer_size` (http level): how much is read from a connection at once.
    @Setting public var recvBufferSize = 256 * 1024

    public init() {}

    mutating func merge(_ p: HTTP2Settings) {
        $enabled.inherit(p.$enabled)
        $maxConcurrentStreams.inherit(p.$maxConcurrentStreams)
        $chunkSize.inherit(p.$chunkSize)
        $bodyPrereadSize.inherit(p.$bodyPrereadSize)
        $recvBufferSize.inherit(p.$recvBufferSize)
    }
}

import Core

/// HTTP/1's head writing: `Name: value\r\n` lines, written in place.
extension OutputQueue {
    public func header(_ name: String, _ value: String) {
        append(name)
        append(": ")
        append(value)
        append("\r\n")
    }

    /// A field from bytes as they came (a client's header passed upstream, an upstream's passed on).
    public func header(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        append(name)
        append(": ")
        append(value)
        append("\r\n")
    }

    public func header(_ name: String, _ value: Int) {
        append(name)
        append(": ")
        append(value)
        append("\r\n")
    }

    /// The status line of an HTTP/1.1 response, `HTTP/1.1 200 OK\r\n`.
    /// The status line; `reason` is an upstream's phrase, passed on as nginx passes it.
    public func statusLine(_ code: Int, reason: String? = nil) {
        if let reason, !reason.isEmpty, reason != Status.reason(code) {
            append("HTTP/1.1 ")
            append(code)
            append(" ")
            append(reason)
        } else {
            append(Status.line(code))
        }
        append("\r\n")
    }
}

/// Chunked transfer coding (RFC 9112 §7.1) written around a body's pieces.
public enum ChunkedEncoder {
    /// The size line that goes before a piece of `count` bytes (never 0: that is the last chunk).
    public static func open(_ count: Int, into out: OutputQueue) {
        out.appendHex(count)
        out.append("\r\n")
    }

    /// What follows a piece's bytes.
    public static func close(into out: OutputQueue) { out.append("\r\n") }

    /// One whole chunk.
    public static func chunk(_ bytes: UnsafeRawBufferPointer, into out: OutputQueue) {
        guard bytes.count > 0 else { return }
        open(bytes.count, into: out)
        out.append(bytes)
        close(into: out)
    }

    /// The last, empty chunk with no trailer.
    public static func end(into out: OutputQueue) { out.append("0\r\n\r\n") }
}

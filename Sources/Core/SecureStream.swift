/// A stream layered over a socket (TLS) that answers as recv and send do: bytes moved, 0 at the end of
/// the stream, -1 with errno set (EAGAIN whichever direction it waits for). Buffers read and write through
/// it when a connection has one, so plain and secured connections share one code path.
public protocol SecureStream: AnyObject {
    func read(into p: UnsafeMutableRawPointer, count: Int) -> Int
    func write(_ p: UnsafeRawPointer, count: Int) -> Int
    /// Bytes it holds that epoll cannot report (decrypted, or read ahead from the socket).
    var hasPending: Bool { get }
}

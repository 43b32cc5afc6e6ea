import Config

/// A listening socket opened by the master and inherited by every worker.
public struct ListeningSocket {
    public let fd: Int32
    public let listen: Listen
    public init(fd: Int32, listen: Listen) { self.fd = fd; self.listen = listen }
}

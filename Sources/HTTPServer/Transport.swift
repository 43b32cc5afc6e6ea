#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP
import TLS

/// The client as the connection knows it: the address (`$remote_addr`, allow/deny, ip_hash), the address
/// it came in on, its TLS stream and its place in the worker's count of connections. A connection type is one
/// (HTTP/1's is a subclass): no object of its own per connection.
public class ClientInfo {
    /// The connection's socket.
    public final let fd: Int32
    /// The socket's peer (`$realip_remote_addr`, `$realip_remote_port`; a port of 0 is none).
    public let peerAddress: String
    public let peerPort: UInt16
    public let peerIsIPv6: Bool
    /// The address realip found for the request being served, nil between requests: as nginx swaps the
    /// connection's address for the request's life, every reader of the client's address sees it, the
    /// connection's own log lines too.
    public internal(set) var realAddress: RealAddress?
    /// The PROXY protocol header the connection began with, when it named addresses.
    public internal(set) var proxyProtocol: ProxyProtocolHeader?
    /// The `listen` the connection was accepted on.
    public let listen: Listen
    /// `$connection`: the connection's serial number in this worker.
    public let serial: Int
    public internal(set) var tls: TLSStream?
    /// Requests the connection has answered before the current one (`$connection_requests` is this + 1).
    public internal(set) var requestsServed = 0
    /// When it was accepted, on the loop's clock in ms (`keepalive_time`, `$connection_time`).
    public let openedAt: UInt64

    public init(fd: Int32, address: String, port: UInt16, isIPv6: Bool, listen: Listen, serial: Int, openedAt: UInt64) {
        self.openedAt = openedAt
        self.fd = fd
        peerAddress = address
        peerPort = port
        peerIsIPv6 = isIPv6
        self.listen = listen
        self.serial = serial
    }

    /// `$remote_addr`: "unix:" for a unix-domain client.
    public var address: String { realAddress?.text ?? peerAddress }
    /// `$remote_port` (0: none, as for a unix-domain client or an address realip found without a port).
    public var port: UInt16 { realAddress?.port ?? peerPort }

    /// The address as its 4 or 16 bytes, none for a unix-domain client; made when asked for: an idle connection
    /// holds no array for it.
    public var addressBytes: [UInt8] {
        if let real = realAddress { return real.bytes }
        if peerAddress == "unix:" { return [] }
        var bytes = [UInt8](repeating: 0, count: peerIsIPv6 ? 16 : 4)
        _ = bytes.withUnsafeMutableBytes { inet_pton(peerIsIPv6 ? AF_INET6 : AF_INET, peerAddress, $0.baseAddress) }
        return bytes
    }

    /// `$binary_remote_addr`'s bytes, made on the stack: the address's 4 or 16 bytes, "unix:" for a
    /// unix-domain client (as nginx).
    public func withAddressBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if address == "unix:" { return StaticString("unix:").withUTF8Buffer { body(UnsafeRawBufferPointer($0)) } }
        // realip's address is already bytes; the peer's is parsed on the stack.
        if let real = realAddress { return real.bytes.withUnsafeBytes(body) }
        return withUnsafeTemporaryAllocation(byteCount: 16, alignment: 4) { buf in
            _ = inet_pton(peerIsIPv6 ? AF_INET6 : AF_INET, peerAddress, buf.baseAddress)
            return body(UnsafeRawBufferPointer(rebasing: buf[0..<(peerIsIPv6 ? 16 : 4)]))
        }
    }

    public var isSecure: Bool { tls != nil }

    /// The address the client reached (`$server_addr`): the listen address, or for a wildcard one the
    /// socket's own, asked of the kernel once.
    public final lazy var localAddress: String = {
        let host = listen.address.host
        guard host == "0.0.0.0" || host == "::" else { return host }
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        guard rc == 0 else { return host }
        return ClientInfo.describe(&ss).0
    }()

    /// `localAddress` as a URL's host (an IPv6 address in brackets).
    public var localAddressForURL: String {
        let a = localAddress
        return a.contains(":") && !a.hasPrefix("unix:") ? "[\(a)]" : a
    }

    /// A socket address's printable host, port and family (accept4()'s or getsockname()'s).
    static func describe(_ ss: inout sockaddr_storage) -> (String, UInt16, Bool) {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
            withUnsafePointer(to: &ss) {
                // A unix-domain client: nginx's $remote_addr is "unix:".
                if Int32($0.pointee.ss_family) == AF_UNIX { return ("unix:", 0, false) }
                if Int32($0.pointee.ss_family) == AF_INET6 {
                    return $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                        var a = p.pointee.sin6_addr
                        inet_ntop(AF_INET6, &a, buf.baseAddress, 64)
                        return (String(cString: buf.baseAddress!), UInt16(bigEndian: p.pointee.sin6_port), true)
                    }
                }
                return $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    var a = p.pointee.sin_addr
                    inet_ntop(AF_INET, &a, buf.baseAddress, 64)
                    return (String(cString: buf.baseAddress!), UInt16(bigEndian: p.pointee.sin_port), false)
                }
            }
        }
    }
}

/// How a response's body is delimited on the wire.
public enum BodyFraming {
    /// Content-Length (or no body).
    case length
    /// Pieces of unknown total length: HTTP/1.1 chunks (a protocol with its own framing needs none).
    case chunked
    /// An upstream's HTTP/1.1 chunks passed on as they came (only where `passesChunks`).
    case chunksPassedThrough
    /// Until the connection closes (HTTP/1.0 clients of a body of unknown length).
    case close
}

/// A client connection handed over to a byte tunnel (an upgraded connection): its socket and TLS stream,
/// and which readiness its owner should watch for.
public protocol TunnelEnd: AnyObject {
    var fd: Int32 { get }
    var secureStream: SecureStream? { get }
    func setReading(_ on: Bool)
    func setWriting(_ on: Bool)
}

/// Who takes a tunnelled connection's readiness events.
public protocol TunnelEventHandler: AnyObject {
    func clientEvent(_ events: UInt32)
}

/// What the request pipeline asks of the connection a request came on: HTTP/1 now, an HTTP/2 stream next.
/// The pipeline decides the response (status, fields, body bytes, through its filters); the transport puts it
/// on the wire in its protocol's form and reads the request body in its protocol's framing.
public protocol RequestTransport: AnyObject {
    var client: ClientInfo { get }

    /// Queues a response head: the status line (or its protocol's equal), `leading` fields, the framing's own
    /// fields, `trailing` fields, and whatever the protocol adds (HTTP/1's Connection). Returns its size.
    /// Fields are written in HTTP/1's field syntax (`Name: value` lines, HTTP's head writing): HTTP/1 writes
    /// them straight into its output; a protocol that encodes fields otherwise converts the lines.
    func writeHead(status: Int, reason: String?, framing: BodyFraming, _ leading: (OutputQueue) -> Void, _ trailing: (OutputQueue) -> Void) -> Int
    /// Queues body bytes, framed as the head said.
    func queueBody(_ bytes: UnsafeRawBufferPointer)
    /// Writes what is queued; false when the client is backed up (produce no more until `onDrain`).
    func flushBody() -> Bool
    var queuedBytes: Int { get }
    /// Whether a body of unknown length can be delimited without closing the connection (HTTP/1.1 chunks,
    /// unless chunked_transfer_encoding is off).
    var framesUnknownLength: Bool { get }
    /// Whether an upstream's chunks can pass through as they are (HTTP/1.1 framing on both sides).
    var passesChunks: Bool { get }
    /// The response is queued: the framing's end goes out with it, and the request ends once it is on the wire.
    func endResponse(framing: BodyFraming)
    /// Called when queued bytes have gone out after `flushBody` returned false.
    var onDrain: (() -> Void)? { get set }
    /// The connection is not kept alive after this response (an error, a body of unknown length).
    func disableKeepAlive()
    /// Drops the connection at once (444, an upstream that broke mid-body).
    func abort()

    /// Whether a body follows the head: HTTP/1 says so by its Content-Length or chunking, HTTP/2 by a HEADERS
    /// frame without END_STREAM (nginx reads to END_STREAM even after `content-length: 0`).
    func bodyFollows(_ head: RequestHead) -> Bool
    /// Takes what the client has already sent of a body that fits `room` bytes; whether all of it is in. nginx
    /// reads such a body whole even where it would stream it.
    func bodyArrivedWhole(within room: Int) -> Bool
    /// Starts (or goes on) reading the request body into `r.body`.
    func readBody(_ r: RequestContext)
    /// Reading the body resumes after a streaming consumer took what had gathered.
    func resumeBody()
    /// The request is answered without its body being read: the connection will not be reused.
    func abandonBody()
    /// Whether `r` is the request the connection is still serving (a handler's late callback checks).
    func isServing(_ r: RequestContext) -> Bool

    /// After a 101 response head: the connection's events go to `handler` from now on, until the response
    /// ends. What of the head the client has not taken yet goes to `unsent`, then the bytes the client sent
    /// after its request head to `received`. nil when the protocol cannot carry a tunnel.
    func becomeTunnel(_ handler: TunnelEventHandler, unsent: (UnsafeRawBufferPointer) -> Void,
                      received: (UnsafeRawBufferPointer) -> Void) -> TunnelEnd?
}

extension RequestTransport {
    public func bodyFollows(_ head: RequestHead) -> Bool { head.hasBody }
}

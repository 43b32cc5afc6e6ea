import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A syslog server for tests: a datagram socket on 127.0.0.1 (UDP, on a free port) or at a unix path, whose
/// datagrams are read as text.
public final class SyslogServer {
    private var fd: Int32
    /// The UDP port (0 for a unix socket).
    public let port: UInt16

    /// On 127.0.0.1, a port the kernel chooses.
    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard fd >= 0, bound else { throw HTTPClientError("syslog server: UDP bind failed (\(errno))") }
        self.fd = fd
        port = UInt16(bigEndian: addr.sin_port)
    }

    /// At `path`, writable by anyone: workers send as `user`, as they would to /dev/log.
    public init(unixPath path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard fd >= 0, bound, chmod(path, 0o666) == 0 else { throw HTTPClientError("syslog server: bind to \(path) failed (\(errno))") }
        self.fd = fd
        port = 0
    }

    deinit { close() }

    /// Stops listening: a UDP port with nothing behind it any more, or a unix socket nobody reads.
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// The datagrams that arrive within `timeout` seconds, returning as soon as there are `count`.
    public func receive(_ count: Int = .max, timeout: TimeInterval) -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        while out.count < count {
            let left = Int32(deadline.timeIntervalSinceNow * 1000)
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard left > 0, poll(&p, 1, left) == 1 else { break }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { break }
            out.append(String(decoding: buf[0..<n], as: UTF8.self))
        }
        return out
    }

    /// The host name as nginx writes it in syslog's header: gethostname(), lowercased.
    public static var hostname: String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        return String(cString: buf).lowercased()
    }
}

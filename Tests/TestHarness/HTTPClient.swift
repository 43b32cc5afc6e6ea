import Foundation
import XCTest

/// A parsed HTTP/1.x response, exactly as it came off the wire.
public struct HTTPResponse {
    public let statusLine: String
    public let status: Int
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]
    /// The head as received, without the final CRLFCRLF.
    public let rawHead: String

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The first value of a header (names compared case-insensitively).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public func headerCount(_ name: String) -> Int {
        headers.filter { $0.name.lowercased() == name.lowercased() }.count
    }
}

public struct HTTPClientError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A raw-socket HTTP/1.x client connection to 127.0.0.1: keep-alive, pipelining, arbitrary bytes,
/// and responses read exactly (Content-Length, chunked, or to EOF). Every read is bounded by `timeout`.
public final class HTTPConnection {
    public let fd: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    public init(port: UInt16, timeout: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPClientError("socket() failed") }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            throw HTTPClientError("connect() to 127.0.0.1:\(port) failed (\(errno))")
        }
    }

    deinit { close() }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    public func send(_ s: String) throws { try send(Array(s.utf8)) }

    public func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw HTTPClientError("send() failed after \(sent) of \(bytes.count) bytes (\(errno))") }
            sent += n
        }
    }

    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// This end's port, which a proxy can pass on (`$remote_port`).
    public var localPort: UInt16 {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: addr.sin_port)
    }

    /// Reads more bytes into the buffer; false on EOF, reset or timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer += chunk[0..<n]
                return true
            }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }

    private func indexOf(_ needle: [UInt8], from: Int = 0) -> Int? {
        guard buffer.count >= needle.count + from else { return nil }
        var i = from
        while i + needle.count <= buffer.count {
            if buffer[i] == needle[0] && Array(buffer[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }

    private func take(_ n: Int) -> [UInt8] {
        let out = Array(buffer[0..<n])
        buffer.removeFirst(n)
        return out
    }

    /// Reads one complete response. `method` decides whether a body follows (none for HEAD).
    public func readResponse(method: String = "GET") throws -> HTTPResponse {
        let crlf2: [UInt8] = [13, 10, 13, 10]
        var end = indexOf(crlf2)
        while end == nil {
            guard fill() else {
                throw HTTPClientError("connection closed or timed out before a complete response head (have \(buffer.count) bytes: \(String(decoding: buffer.prefix(200), as: UTF8.self).debugDescription))")
            }
            end = indexOf(crlf2)
        }
        let headBytes = take(end!)
        buffer.removeFirst(4)
        let rawHead = String(decoding: headBytes, as: UTF8.self)
        let lines = rawHead.components(separatedBy: "\r\n")
        let statusLine = lines[0]
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw HTTPClientError("bad status line \(statusLine.debugDescription)")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw HTTPClientError("bad header line \(line.debugDescription)") }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let response = { (body: [UInt8]) in HTTPResponse(statusLine: statusLine, status: status, headers: headers, body: body, rawHead: rawHead) }
        let lower = Dictionary(headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { a, _ in a })
        if method == "HEAD" || status == 204 || status == 304 || (100..<200).contains(status) { return response([]) }
        if lower["transfer-encoding"]?.lowercased() == "chunked" {
            return response(try readChunked())
        }
        if let cl = lower["content-length"] {
            guard let n = Int(cl) else { throw HTTPClientError("bad Content-Length \(cl)") }
            while buffer.count < n {
                guard fill() else { throw HTTPClientError("connection closed or timed out after \(buffer.count) of \(n) body bytes") }
            }
            return response(take(n))
        }
        // Close-delimited.
        while fill() {}
        return response(take(buffer.count))
    }

    private func readChunked() throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            var lineEnd = indexOf([13, 10])
            while lineEnd == nil {
                guard fill() else { throw HTTPClientError("EOF in chunk size") }
                lineEnd = indexOf([13, 10])
            }
            let line = String(decoding: take(lineEnd!), as: UTF8.self)
            buffer.removeFirst(2)
            guard let size = Int(line.split(separator: ";")[0], radix: 16) else { throw HTTPClientError("bad chunk size \(line)") }
            if size == 0 {
                // Trailer section: lines until an empty one.
                while true {
                    var e = indexOf([13, 10])
                    while e == nil {
                        guard fill() else { throw HTTPClientError("EOF in trailer") }
                        e = indexOf([13, 10])
                    }
                    let t = take(e!)
                    buffer.removeFirst(2)
                    if t.isEmpty { return body }
                }
            }
            while buffer.count < size + 2 {
                guard fill() else { throw HTTPClientError("EOF in chunk data") }
            }
            body += take(size)
            buffer.removeFirst(2)
        }
    }

    /// Everything still to come until the peer closes (or the read times out).
    public func readToEOF() -> [UInt8] {
        while fill() {}
        return take(buffer.count)
    }

    /// True when the peer has closed the connection (EOF or reset) with no further bytes, within `timeout` seconds.
    public func peerClosed(within timeout: Int = 3) -> Bool {
        guard buffer.isEmpty else { return false }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(timeout * 1000)) > 0 else { return false }
        var b: UInt8 = 0
        let n = recv(fd, &b, 1, Int32(MSG_PEEK))
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }

    /// True when nothing arrives and the connection is still open after `ms` milliseconds.
    public func stillOpen(after ms: Int32 = 200) -> Bool {
        guard buffer.isEmpty else { return false }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, ms) == 0
    }
}

/// One request on a fresh connection; returns the response.
public func httpExchange(_ port: UInt16, _ raw: String, method: String = "GET") throws -> HTTPResponse {
    let c = try HTTPConnection(port: port)
    try c.send(raw)
    return try c.readResponse(method: method)
}

/// `GET path HTTP/1.1` with Host and any extra header lines.
public func getRequest(_ path: String, host: String = "localhost", headers: [String] = [], method: String = "GET", version: String = "1.1") -> String {
    var s = "\(method) \(path) HTTP/\(version)\r\nHost: \(host)\r\n"
    for h in headers { s += h + "\r\n" }
    return s + "\r\n"
}

/// True when `pattern` (NSRegularExpression) matches the whole of `s`.
public func fullMatch(_ s: String, _ pattern: String) -> Bool {
    guard let re = try? NSRegularExpression(pattern: "^(?:" + pattern + ")$", options: [.dotMatchesLineSeparators]) else { return false }
    return re.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
}

/// A throwaway backend inside the test process that records the raw requests the proxy sends
/// (Vigil's own backends can only `return`, so they cannot show what body arrived).
/// It reads a head and a Content-Length body, answers `200 ok`, and closes.
public final class CaptureServer: @unchecked Sendable {
    public let port: UInt16
    private let fd: Int32
    private let lock = NSLock()
    private var captured: [[UInt8]] = []
    private var thread: Thread?

    public init() throws {
        guard let s = loopbackSocket(listening: 16) else { throw HTTPClientError("capture server: bind/listen failed") }
        (fd, port) = s
        let t = Thread { self.acceptLoop() }
        thread = t
        t.start()
    }

    public var requests: [[UInt8]] {
        lock.lock(); defer { lock.unlock() }
        return captured
    }

    private func acceptLoop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return   // listening socket shut down
            }
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var data: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            var expected: Int?
            while expected == nil || data.count < expected! {
                let n = chunk.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                data += chunk[0..<n]
                if expected == nil, let headEnd = CaptureServer.find([13, 10, 13, 10], in: data) {
                    let head = String(decoding: data[0..<headEnd], as: UTF8.self).lowercased()
                    var length = 0
                    for line in head.components(separatedBy: "\r\n") where line.hasPrefix("content-length:") {
                        length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                    }
                    expected = headEnd + 4 + length
                }
            }
            lock.lock()
            captured.append(data)
            lock.unlock()
            let reply = Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".utf8)
            _ = reply.withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            Glibc.close(c)
        }
    }

    public static func find(_ needle: [UInt8], in data: [UInt8]) -> Int? {
        guard data.count >= needle.count else { return nil }
        for i in 0...(data.count - needle.count) where data[i] == needle[0] && Array(data[i..<(i + needle.count)]) == needle { return i }
        return nil
    }

    public func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}

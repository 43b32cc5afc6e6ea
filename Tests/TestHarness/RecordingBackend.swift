import Foundation

/// A backend on 127.0.0.1 that records the exact bytes of every request a proxy sends it, answers each with
/// a fixed `200 ok` and closes. It reads a request to its end by its own framing (Content-Length or chunked),
/// or until the proxy pauses, so that a proxy is never cut off while it still sends. Requests are filed under
/// the value of one header (`keyHeader`), which the proxy under test sets from the client connection.
public final class RecordingBackend: @unchecked Sendable {
    public let port: UInt16
    private let fd: Int32
    private let keyHeader: String
    private let lock = NSLock()
    private var recorded: [String: [[UInt8]]] = [:]
    private var stopped = false
    private let threads = DispatchGroup()
    private static let reply = Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".utf8)

    public init(keyHeader: String) throws {
        guard let s = loopbackSocket(listening: 128) else { throw HTTPClientError("recording backend: bind/listen failed") }
        (fd, port) = s
        self.keyHeader = keyHeader.lowercased()
        threads.enter()
        Thread { self.acceptLoop() }.start()
    }

    /// The requests filed under `key`, in the order they were complete.
    public func requests(_ key: String) -> [[UInt8]] {
        lock.lock(); defer { lock.unlock() }
        return recorded[key] ?? []
    }

    private var isStopped: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopped
    }

    private func acceptLoop() {
        defer { threads.leave() }
        while !isStopped {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { continue }
            threads.enter()
            Thread { self.serve(c) }.start()
        }
    }

    private func serve(_ c: Int32) {
        defer {
            close(c)
            threads.leave()
        }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        // A proxy that stops sending for 300 ms has sent all it will.
        while !isStopped && !RecordingBackend.isComplete(data) {
            var pfd = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 300) > 0 else { break }
            let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        guard !data.isEmpty else { return }
        let key = ProxiedRequest(data).header(keyHeader) ?? ""
        lock.lock()
        recorded[key, default: []].append(data)
        lock.unlock()
        _ = RecordingBackend.reply.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Whether `data` holds a whole request: its head and the body its own framing announces.
    static func isComplete(_ data: [UInt8]) -> Bool {
        let request = ProxiedRequest(data)
        guard let bodyStart = request.bodyStart else { return false }
        if let te = request.header("transfer-encoding"), te.lowercased() == "chunked" {
            return CaptureServer.find(Array("0\r\n\r\n".utf8), in: Array(data[bodyStart...])) != nil
        }
        let length = request.header("content-length").flatMap { Int($0) } ?? 0
        return data.count - bodyStart >= length
    }

    /// Closes the listener and waits (bounded) for the connections' threads.
    public func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
        _ = threads.wait(timeout: .now() + 3)
        close(fd)
    }
}

/// A request as a proxy sent it: the request line, the header fields in order, and the bytes after the head.
public struct ProxiedRequest {
    public let requestLine: String
    public let headers: [(name: String, value: String)]
    /// Where the body starts; nil when the head is not complete.
    public let bodyStart: Int?
    public let body: [UInt8]

    public init(_ data: [UInt8]) {
        let end = CaptureServer.find([13, 10, 13, 10], in: data)
        bodyStart = end.map { $0 + 4 }
        body = bodyStart.map { Array(data[$0...]) } ?? []
        // Latin-1, so that every byte a proxy sent shows as itself.
        let lines = String(data[..<(end ?? data.count)].map { Character(Unicode.Scalar($0)) }).components(separatedBy: "\r\n")
        requestLine = lines.first ?? ""
        headers = lines.dropFirst().map { line in
            guard let colon = line.firstIndex(of: ":") else { return (line, "") }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: CharacterSet(charactersIn: " ")))
        }
    }

    /// The first value of a header, its name compared without case.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// What a client saw after sending raw bytes: each response's status in order (0 for an HTTP/0.9 answer, a
/// body without a status line), and whether the server closed the connection or left it open.
public struct RawExchange {
    public var statuses: [Int] = []
    public var closed = false

    /// Sends `bytes` on `c` in one write and reads until the server closes, until `idleMs` pass without bytes
    /// after a complete response, or until `waitMs` pass without any response; then closes `c`.
    public static func run(_ c: HTTPConnection, _ bytes: [UInt8], waitMs: Int32 = 1500, idleMs: Int32 = 300) throws -> RawExchange {
        defer { c.close() }
        var exchange = RawExchange()
        try c.send(bytes)
        var received: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let complete = RawExchange.statuses(in: received)
            var pfd = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, complete.isEmpty ? waitMs : idleMs) > 0 else { break }
            let n = buf.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 {
                exchange.closed = true
                break
            }
            received += buf[0..<n]
        }
        exchange.statuses = RawExchange.statuses(in: received, atEOF: exchange.closed)
        return exchange
    }

    /// The statuses of the complete responses in `data` (a body without Content-Length runs to the end).
    static func statuses(in data: [UInt8], atEOF: Bool = false) -> [Int] {
        var out: [Int] = []
        var at = 0
        while at < data.count {
            let rest = Array(data[at...])
            guard rest.starts(with: Array("HTTP/".utf8)) else {
                // No status line: an HTTP/0.9 answer, the body alone.
                if atEOF || !out.isEmpty { out.append(0) }
                break
            }
            guard let end = CaptureServer.find([13, 10, 13, 10], in: rest) else { break }
            let head = String(decoding: rest[..<end], as: UTF8.self).lowercased()
            let parts = head.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, let status = Int(parts[1]) else { break }
            var length = 0
            for line in head.components(separatedBy: "\r\n") where line.hasPrefix("content-length:") {
                length = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) ?? 0
            }
            let bodyless = status < 200 || status == 204 || status == 304
            guard bodyless || end + 4 + length <= rest.count else { break }
            out.append(status)
            at += end + 4 + (bodyless ? 0 : length)
        }
        return out
    }
}

import Foundation

/// A TCP peer on 127.0.0.1 that misbehaves in one chosen way, one thread per connection, so that a proxy or a
/// health checker can be pointed at it. `stop()` ends every connection it holds.
public final class RawServer: @unchecked Sendable {
    public enum Behaviour {
        /// Sends these bytes as soon as the connection is accepted, without reading anything, and closes
        /// (a peer that speaks first, such as MySQL, or one that answers garbage).
        case reply([UInt8])
        /// Reads the request head, sends these bytes, and closes.
        case answer([UInt8])
        /// Reads a binary request of `length` bytes (an AJP CPING), sends these bytes, and closes.
        case answerBinary(length: Int, [UInt8])
        /// Accepts, reads whatever comes, and never answers.
        case silent
        /// Reads the request head, sends `prefix` at once, then `bytes` one at a time, `everyMs` apart, and closes.
        case drip(prefix: [UInt8], bytes: [UInt8], everyMs: Int)
        /// Reads the request head, sends `prefix`, then `filler` over and over until the peer goes away.
        case flood(prefix: [UInt8], filler: [UInt8])
        /// A keep-alive backend: answers each request head with these bytes `afterMs` later, until the peer closes.
        case keepAlive([UInt8], afterMs: Int)
        /// A FastCGI application: reads a request up to its empty STDIN record, sends these bytes, and closes.
        case fastCGI([UInt8])
        /// An SCGI application: reads a request's netstring and `body` more bytes, sends what `answer` makes of
        /// the request, and closes.
        case scgi(body: Int, answer: @Sendable ([UInt8]) -> [UInt8])
    }

    public let port: UInt16
    private let fd: Int32
    private let behaviour: Behaviour
    private let lock = NSLock()
    private var stopped = false
    private var open = 0
    private var acceptedCount = 0
    private let threads = DispatchGroup()

    public init(_ behaviour: Behaviour) throws {
        self.behaviour = behaviour
        guard let s = loopbackSocket(listening: 64) else { throw HTTPClientError("raw server: bind/listen failed") }
        (fd, port) = s
        threads.enter()
        Thread { self.acceptLoop() }.start()
    }

    /// Connections still open on this side (each ends when the peer closes it or the behaviour is done).
    public var openConnections: Int {
        lock.lock(); defer { lock.unlock() }
        return open
    }

    /// Connections accepted since the start.
    public var accepted: Int {
        lock.lock(); defer { lock.unlock() }
        return acceptedCount
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
            lock.lock()
            open += 1
            acceptedCount += 1
            lock.unlock()
            threads.enter()
            Thread { self.serve(c) }.start()
        }
    }

    private func serve(_ c: Int32) {
        defer {
            close(c)
            lock.lock()
            open -= 1
            lock.unlock()
            threads.leave()
        }
        // Short send timeouts so that a blocked send notices `stop()`.
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        switch behaviour {
        case .reply(let bytes):
            _ = sendAll(c, bytes)
        case .answer(let bytes):
            if readHead(c) { _ = sendAll(c, bytes) }
        case .answerBinary(let length, let bytes):
            var got = 0
            while got < length, let more = readSome(c) { got += more.count }
            if got >= length { _ = sendAll(c, bytes) }
        case .silent:
            while readSome(c) != nil {}
        case .drip(let prefix, let bytes, let ms):
            guard readHead(c), sendAll(c, prefix) else { return }
            for b in bytes {
                guard sendAll(c, [b]) else { return }
                usleep(useconds_t(ms * 1000))
            }
        case .flood(let prefix, let filler):
            guard readHead(c), sendAll(c, prefix) else { return }
            while sendAll(c, filler) {}
        case .fastCGI(let bytes):
            var data: [UInt8] = []
            let deadline = Date().addingTimeInterval(5)
            while CaptureServer.find([1, 5, 0, 1, 0, 0, 0, 0], in: data) == nil {
                guard Date() < deadline, let more = readSome(c) else { return }
                data += more
            }
            _ = sendAll(c, bytes)
        case .scgi(let body, let answer):
            var data: [UInt8] = []
            let deadline = Date().addingTimeInterval(5)
            func complete() -> Bool {
                guard let colon = data.firstIndex(of: UInt8(ascii: ":")), let n = Int(String(decoding: data[..<colon], as: UTF8.self)) else { return false }
                return data.count >= colon + 1 + n + 1 + body
            }
            while !complete() {
                guard Date() < deadline, let more = readSome(c) else { return }
                data += more
            }
            _ = sendAll(c, answer(data))
        case .keepAlive(let bytes, let ms):
            var data: [UInt8] = []
            while let more = readSome(c) {
                data += more
                guard let end = CaptureServer.find([13, 10, 13, 10], in: data) else { continue }
                data.removeSubrange(..<(end + 4))
                usleep(useconds_t(ms * 1000))
                guard sendAll(c, bytes) else { return }
            }
        }
    }

    /// Waits up to 100 ms for input: the bytes read (possibly none), or nil on EOF, error or `stop()`.
    private func readSome(_ c: Int32) -> [UInt8]? {
        guard !isStopped else { return nil }
        var pfd = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 100) > 0 else { return [] }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
        return n > 0 ? Array(buf[0..<n]) : nil
    }

    /// Reads until the end of a request head (CRLFCRLF), for at most 5 s.
    private func readHead(_ c: Int32) -> Bool {
        var data: [UInt8] = []
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            guard let more = readSome(c) else { return false }
            data += more
            if CaptureServer.find([13, 10, 13, 10], in: data) != nil { return true }
        }
        return false
    }

    /// False once the peer has gone away or the server is stopped.
    private func sendAll(_ c: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            guard !isStopped else { return false }
            let n = bytes.withUnsafeBytes { send(c, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            return false
        }
        return true
    }

    /// Closes the listener and every connection, and waits (bounded) for their threads.
    public func stop() {
        lock.lock()
        let first = !stopped
        stopped = true
        lock.unlock()
        guard first else { return }
        _ = threads.wait(timeout: .now() + 3)
        close(fd)
    }
}

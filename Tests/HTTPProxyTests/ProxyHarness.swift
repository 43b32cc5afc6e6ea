import Foundation
import XCTest
import CShim
import Config
import Core
import Event
@testable import HTTPProxy
@testable import HTTPServer
import ShmTable
import TLS
#if canImport(Glibc)
import Glibc
#endif

/// Drives the proxy in process, as a worker does, on one thread: an `EventLoop` turned with `runOnce`, an
/// `HTTPService` and `ProxyHandler` built from a parsed configuration (as WorkerProcess builds them), client
/// connections that are socketpairs whose server end is an `H1Connection` (as ConnectionSet makes them),
/// and upstream servers that are real loopback listeners answered from the same loop.
///
/// Everything it made is closed when the test ends, and the test fails if a descriptor is left open.
final class ProxyHarness {
    private static var serial = 0

    let test: XCTestCase
    private(set) var loop: EventLoop!
    let log = ErrorLog()
    let directory: String
    var logPath: String { directory + "/error.log" }
    private(set) var config: Configuration!
    private(set) var service: HTTPService!
    private(set) var proxy: ProxyHandler!
    private var segment: Segment?
    private var backends: [Backend] = []
    private var clients: [TestClient] = []
    private var reserved: [Int32] = []
    private let descriptorsBefore: Set<String>
    private var clientSerial = 0
    /// This harness's number in the process: its shared segment's name.
    private let number: Int

    init(_ test: XCTestCase) throws {
        self.test = test
        descriptorsBefore = ProxyHarness.openDescriptors()
        ProxyHarness.serial += 1
        number = ProxyHarness.serial
        var template = Array((NSTemporaryDirectory() + "/vigil-proxytests.XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw NSError(domain: "mkdtemp", code: Int(errno))
        }
        directory = String(cString: p)
        loop = try EventLoop()
        try log.open([ErrorLogTarget(path: directory + "/error.log", level: .info)])
        test.addTeardownBlock { [self] in self.tearDown() }
    }

    /// This process's open descriptors, each as "fd -> what it is". The runtime's own timerfds (libdispatch
    /// makes them lazily; Vigil has none) are left out, and so is the descriptor of the listing itself.
    static func openDescriptors() -> Set<String> {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        var out: Set<String> = []
        for fd in fds {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd),
                  target != "anon_inode:[timerfd]" else { continue }
            out.insert("\(fd) -> \(target)")
        }
        return out
    }

    // MARK: configuration

    /// Parses `http` (the inside of an `http {}` block; access logs off) and builds the worker's HTTP service
    /// and proxy handler on it, as WorkerProcess does.
    func load(_ http: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = "events {}\nhttp {\naccess_log off;\n\(http)\n}\n"
        do {
            config = try Configuration.parse(text: text, file: directory + "/vigil.conf", prefix: directory)
        } catch {
            XCTFail("the configuration did not load: \(error)\n\(text)", file: file, line: line)
            throw error
        }
        let name = "/vigil-unit-proxy-\(getpid())-\(number)"
        segment = try Segment.create(name: name, size: 1 << 20, generation: 1, masterPid: getpid(), checksum: 0, peers: [])
        test.addTeardownBlock { shm_unlink(name) }
        service = HTTPService(config: config, loop: loop, log: log, counters: SharedCounters(), tls: try TLSBundle(config: config),
                              segment: segment!, accessLogs: try RequestLogFiles(config: config, log: log))
        proxy = ProxyHandler(service: service)
        // As the worker's ConnectionSet hears each client connection close.
        service.connectionClosed = { [unowned self] c in self.closedConnections.insert(ObjectIdentifier(c)) }
    }

    /// Client connections the service reported closed.
    private(set) var closedConnections: Set<ObjectIdentifier> = []

    /// The error log's text so far.
    var errorLog: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    // MARK: upstream servers

    /// A loopback listener that answers each complete request it reads with `respond` (which may also do
    /// nothing, or close).
    func backend(_ respond: @escaping (BackendRequest, BackendConnection) -> Void = { _, _ in }) throws -> Backend {
        let b = try Backend(loop: loop, respond: respond)
        backends.append(b)
        return b
    }

    /// A loopback port that refuses connections: bound, never listening, held until the test ends.
    func refusingPort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
            XCTAssertEqual(bind(fd, p, len), 0)
            XCTAssertEqual(getsockname(fd, p, &len), 0)
        } }
        reserved.append(fd)
        return UInt16(bigEndian: sa.sin_port)
    }

    // MARK: clients

    /// A client connection: a socketpair whose server end is an H1Connection registered with the loop, as the
    /// worker's ConnectionSet makes one for an accepted socket. The client appears as 127.0.0.1.
    /// `tcp`: a real loopback TCP connection instead (accepted as the worker's Acceptor accepts).
    func client(tcp: Bool = false) throws -> TestClient {
        clientSerial += 1
        let server: Int32, client: Int32
        var peer = sockaddr_storage()
        if tcp {
            let listener = try Socket.listen(host: "127.0.0.1", port: 0, isIPv6: false, backlog: 1, reusePort: false, ipv6Only: false)
            defer { Glibc.close(listener) }
            var sa = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
            client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(client, $0, len) } }
            guard rc == 0 else { Glibc.close(client); throw SystemError("connect()") }
            _ = vigil_set_nonblock(client)
            var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            server = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { vigil_accept4(listener, $0, &peerLength) }
            }
            guard server >= 0 else { Glibc.close(client); throw SystemError("accept4()") }
        } else {
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
                throw SystemError("socketpair()")
            }
            (server, client) = (fds[0], fds[1])
            withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    p.pointee.sin_family = sa_family_t(AF_INET)
                    p.pointee.sin_port = UInt16(50000 + clientSerial).bigEndian
                    p.pointee.sin_addr.s_addr = inet_addr("127.0.0.1")
                }
            }
        }
        let listen = config.http!.servers[0].listens[0]
        // As ConnectionSet.accept: the loop's registration is what holds the connection while it is open.
        let connection = H1Connection(fd: server, peer: peer, listen: listen, service: service, serial: clientSerial)
        try loop.register(fd: server, events: Events.readable | Events.readHangup, handler: connection)
        connection.start()
        let c = try TestClient(fd: client, connection: connection, loop: loop)
        clients.append(c)
        return c
    }

    // MARK: driving the loop

    /// Turns the loop until `condition` holds or `seconds` pass; false (and a test failure) on timeout.
    @discardableResult
    func run(until condition: () -> Bool, timeout seconds: Double = 5, _ what: @autoclosure () -> String = "the condition",
             file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() >= deadline {
                XCTFail("timed out after \(seconds) s waiting for \(what())\nerror log:\n\(errorLog)", file: file, line: line)
                return false
            }
            loop.runOnce(waitingAtMost: 20)
        }
        return true
    }

    /// Turns the loop for `ms` milliseconds whatever happens (to see that nothing more does).
    func run(forMs ms: Int) {
        let deadline = Date().addingTimeInterval(Double(ms) / 1000)
        while Date() < deadline { loop.runOnce(waitingAtMost: 10) }
    }

    /// Sends `request` on a new client connection and waits for one whole response.
    func exchange(_ request: String, head: Bool = false, timeout: Double = 5,
                  file: StaticString = #filePath, line: UInt = #line) throws -> HTTPResponse {
        let c = try client()
        c.send(request)
        return try c.response(in: self, head: head, timeout: timeout, file: file, line: line)
    }

    // MARK: the end

    private func tearDown() {
        for c in clients { c.close() }
        clients.removeAll()
        for b in backends { b.close() }
        backends.removeAll()
        // Idle upstream connections hear their backend close and leave the keepalive pool.
        if loop != nil { for _ in 0..<5 { loop.runOnce(waitingAtMost: 5) } }
        for fd in reserved { close(fd) }
        reserved.removeAll()
        weak let weakProxy = proxy, weakService = service, weakSegment = segment, weakLoop = loop
        proxy = nil
        service = nil
        segment = nil
        config = nil
        loop = nil
        let survivors = [weakProxy.map { _ in "ProxyHandler" }, weakService.map { _ in "HTTPService" },
                         weakSegment.map { _ in "Segment" }, weakLoop.map { _ in "EventLoop" }].compactMap { $0 }
        try? log.open([])   // closes the error log's file (ErrorLog has no close of its own)
        try? FileManager.default.removeItem(atPath: directory)
        let leaked = ProxyHarness.openDescriptors().subtracting(descriptorsBefore)
        XCTAssertEqual(leaked, [], "descriptors left open when the test ended: the proxy, the service or the harness leaked them"
                       + (survivors.isEmpty ? "" : "; still alive: " + survivors.joined(separator: ", ")))
    }
}

// MARK: - the client side

/// The test's end of a client connection: what it sends, and everything the proxy wrote back.
final class TestClient: EventHandler {
    let fd: Int32
    /// The server end; not held here (the loop holds it while it is open, as in the worker), so a test can
    /// see it freed once closed.
    private(set) weak var connection: H1Connection?
    private unowned let loop: EventLoop
    private(set) var received: [UInt8] = []
    /// The proxy closed (or half-closed) the connection.
    private(set) var sawEOF = false
    /// Bytes of `received` already taken by `response`.
    private var taken = 0
    private var closed = false

    init(fd: Int32, connection: H1Connection, loop: EventLoop) throws {
        self.fd = fd
        self.connection = connection
        self.loop = loop
        try loop.register(fd: fd, events: Events.readable | Events.readHangup, handler: self)
    }

    func send(_ s: String) { send(Array(s.utf8)) }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n > 0 { off += n; continue }
            if n < 0 && errno == EAGAIN { loop.runOnce(waitingAtMost: 5); continue }
            XCTFail("client send failed: \(String(cString: strerror(errno)))")
            return
        }
    }

    func handleEvent(_ events: UInt32) {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { received += buf[0..<n]; continue }
            if n == 0 || (errno != EAGAIN && errno != EINTR) {
                sawEOF = true
                loop.unregister(fd: fd)
            }
            return
        }
    }

    /// The next whole response on this connection (in order, for keep-alive), waiting for it.
    func response(in h: ProxyHarness, head: Bool = false, timeout: Double = 5,
                  file: StaticString = #filePath, line: UInt = #line) throws -> HTTPResponse {
        var parsed: (HTTPResponse, Int)?
        h.run(until: {
            parsed = HTTPResponse.parse(Array(received[taken...]), head: head, eof: sawEOF)
            return parsed != nil || (sawEOF && taken == received.count)
        }, timeout: timeout, "a response", file: file, line: line)
        guard let (r, n) = parsed else {
            throw NSError(domain: "TestClient", code: 1, userInfo: [NSLocalizedDescriptionKey:
                "no complete response; received: \(String(decoding: received[taken...], as: UTF8.self))"])
        }
        taken += n
        return r
    }

    /// Bytes received after the responses taken so far.
    var pending: [UInt8] { Array(received[taken...]) }

    /// The client goes away: its end of the socket is closed, as a browser that gives up closes it; the
    /// proxy has to notice by itself.
    func hangUp() {
        guard !hungUp else { return }
        hungUp = true
        if !sawEOF { loop.unregister(fd: fd) }
        Glibc.close(fd)
    }
    private var hungUp = false

    /// The end of the test: the client's end is closed and so is the server's.
    func close() {
        guard !closed else { return }
        closed = true
        hangUp()
        connection?.close()
    }
}

/// A response as the client read it off the wire.
struct HTTPResponse {
    let statusLine: String
    let status: Int
    let headers: [(name: String, value: String)]
    /// The body as the client must understand it (chunks decoded).
    let body: [UInt8]
    /// The body bytes as they were on the wire (chunk framing included).
    let wireBody: [UInt8]
    /// Delimited by the connection's close (no Content-Length, not chunked).
    let closeDelimited: Bool

    var text: String { String(decoding: body, as: UTF8.self) }

    func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
    func headers(_ name: String) -> [String] { headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value) }
    var headerNames: [String] { headers.map(\.name) }

    /// One response from the front of `bytes`, and how many bytes it took; nil while incomplete.
    static func parse(_ bytes: [UInt8], head isHead: Bool, eof: Bool) -> (HTTPResponse, Int)? {
        guard let end = find(bytes, "\r\n\r\n") else { return nil }
        let lines = String(decoding: bytes[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusLine = lines[0]
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        var headers: [(String, String)] = []
        for l in lines.dropFirst() {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers.append((String(l[..<colon]), l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let bodyStart = end + 4
        func value(_ n: String) -> String? { headers.first { $0.0.lowercased() == n }?.1 }
        func make(_ body: [UInt8], _ wire: [UInt8], close: Bool) -> HTTPResponse {
            HTTPResponse(statusLine: statusLine, status: status, headers: headers, body: body, wireBody: wire, closeDelimited: close)
        }
        if isHead || status == 204 || status == 304 || (100..<200).contains(status) {
            return (make([], [], close: false), bodyStart)
        }
        if value("transfer-encoding")?.lowercased() == "chunked" {
            var i = bodyStart
            var body: [UInt8] = []
            while true {
                guard let lineEnd = find(bytes, "\r\n", from: i) else { return nil }
                let sizeText = String(decoding: bytes[i..<lineEnd], as: UTF8.self).split(separator: ";")[0]
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
                i = lineEnd + 2
                if size == 0 {
                    // Trailer fields, then the empty line.
                    while true {
                        guard let e = find(bytes, "\r\n", from: i) else { return nil }
                        let empty = e == i
                        i = e + 2
                        if empty { break }
                    }
                    return (make(body, Array(bytes[bodyStart..<i]), close: false), i)
                }
                guard bytes.count >= i + size + 2 else { return nil }
                body += bytes[i..<(i + size)]
                i += size + 2
            }
        }
        if let len = value("content-length").flatMap({ Int($0) }) {
            guard bytes.count >= bodyStart + len else { return nil }
            let body = Array(bytes[bodyStart..<(bodyStart + len)])
            return (make(body, body, close: false), bodyStart + len)
        }
        guard eof else { return nil }
        let body = Array(bytes[bodyStart...])
        return (make(body, body, close: true), bytes.count)
    }

    static func find(_ bytes: [UInt8], _ s: String, from start: Int = 0) -> Int? {
        let needle = Array(s.utf8)
        guard bytes.count >= needle.count, start <= bytes.count - needle.count else { return nil }
        for i in start...(bytes.count - needle.count) where bytes[i] == needle[0] {
            if Array(bytes[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}

// MARK: - the upstream side

/// A request an upstream server read.
struct BackendRequest {
    let head: String
    let method: String
    let target: String
    let version: String
    let headers: [(name: String, value: String)]
    let body: [UInt8]

    func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
    func headers(_ name: String) -> [String] { headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value) }
    var headerNames: [String] { headers.map { $0.name.lowercased() } }
}

/// A loopback upstream server answered from the test's event loop: it accepts, reads requests (head and
/// Content-Length body) and hands each to its `respond`, which answers through the connection.
final class Backend: EventHandler {
    let fd: Int32
    let port: UInt16
    private unowned let loop: EventLoop
    var respond: (BackendRequest, BackendConnection) -> Void
    private(set) var accepted = 0
    private(set) var requests: [BackendRequest] = []
    private(set) var connections: [BackendConnection] = []
    private var closed = false

    init(loop: EventLoop, respond: @escaping (BackendRequest, BackendConnection) -> Void) throws {
        self.loop = loop
        self.respond = respond
        let listener = try Socket.listen(host: "127.0.0.1", port: 0, isIPv6: false, backlog: 64, reusePort: false, ipv6Only: false)
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        fd = listener
        port = UInt16(bigEndian: sa.sin_port)
        try loop.register(fd: fd, events: Events.readable, handler: self)
    }

    /// `127.0.0.1:port`, as a `server` line and `$upstream_addr` write it.
    var address: String { "127.0.0.1:\(port)" }

    func handleEvent(_ events: UInt32) {
        while true {
            let c = vigil_accept4(fd, nil, nil)   // non-blocking, close-on-exec
            guard c >= 0 else { return }
            accepted += 1
            let conn = BackendConnection(fd: c, backend: self, loop: loop)
            connections.append(conn)
            do { try loop.register(fd: c, events: Events.readable | Events.readHangup, handler: conn) } catch {
                XCTFail("\(error)")
                conn.close()
            }
        }
    }

    fileprivate func received(_ r: BackendRequest, on c: BackendConnection) {
        requests.append(r)
        respond(r, c)
    }

    func close() {
        guard !closed else { return }
        closed = true
        for c in connections { c.close() }
        loop.unregister(fd: fd)
        Glibc.close(fd)
    }

    /// A whole HTTP/1.1 response with a Content-Length.
    static func response(_ status: Int = 200, reason: String = "OK", headers: [(String, String)] = [], body: String = "",
                         version: String = "HTTP/1.1") -> String {
        var s = "\(version) \(status) \(reason)\r\n"
        for (n, v) in headers { s += "\(n): \(v)\r\n" }
        s += "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        return s
    }
}

/// One connection accepted by a Backend.
final class BackendConnection: EventHandler {
    let fd: Int32
    private unowned let backend: Backend
    private unowned let loop: EventLoop
    private var buffer: [UInt8] = []
    private(set) var isClosed = false
    /// The proxy closed its end.
    private(set) var peerClosed = false

    init(fd: Int32, backend: Backend, loop: EventLoop) {
        self.fd = fd
        self.backend = backend
        self.loop = loop
    }

    func handleEvent(_ events: UInt32) {
        guard !isClosed else { return }
        if events & Events.writable != 0 { flush() }
        if isClosed { return }
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { buffer += buf[0..<n]; continue }
            if n == 0 || (errno != EAGAIN && errno != EINTR) { peerClosed = true }
            break
        }
        while !isClosed, let r = takeRequest() { backend.received(r, on: self) }
        if peerClosed && !isClosed { close() }
    }

    private func takeRequest() -> BackendRequest? {
        guard let end = HTTPResponse.find(buffer, "\r\n\r\n") else { return nil }
        let head = String(decoding: buffer[0..<end], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let first = lines[0].split(separator: " ").map(String.init)
        guard first.count == 3 else { return nil }
        var headers: [(String, String)] = []
        for l in lines.dropFirst() {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers.append((String(l[..<colon]), l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        guard buffer.count >= end + 4 + length else { return nil }
        let body = Array(buffer[(end + 4)..<(end + 4 + length)])
        buffer.removeFirst(end + 4 + length)
        return BackendRequest(head: head + "\r\n\r\n", method: first[0], target: first[1], version: first[2], headers: headers, body: body)
    }

    func send(_ s: String) { send(Array(s.utf8)) }

    /// Bytes the socket had no room for yet: they go when it becomes writable (the proxy reads only when the
    /// loop turns, so the backend never blocks).
    private var unsent: [UInt8] = []
    /// Close once everything queued is sent.
    private var closeAfterSending = false

    func send(_ bytes: [UInt8]) {
        guard !isClosed else { return }
        unsent += bytes
        flush()
    }

    /// Sends what is queued, then closes the connection.
    func send(_ s: String, thenClose: Bool) {
        send(s)
        if thenClose { closeWhenSent() }
    }

    func closeWhenSent() {
        closeAfterSending = true
        if unsent.isEmpty { close() }
    }

    private func flush() {
        while !unsent.isEmpty {
            let n = unsent.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { unsent.removeFirst(n); continue }
            if n < 0 && errno == EAGAIN {
                try? loop.modify(fd: fd, events: Events.readable | Events.readHangup | Events.writable)
                return
            }
            unsent.removeAll()   // the proxy went away
        }
        try? loop.modify(fd: fd, events: Events.readable | Events.readHangup)
        if closeAfterSending { close() }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.unregister(fd: fd)
        Glibc.close(fd)
    }
}

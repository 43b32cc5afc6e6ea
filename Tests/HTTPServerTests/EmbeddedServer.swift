#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import Config
import Core
import Event
import HTTP
@testable import HTTPServer
import ShmTable
import TLS

/// A worker's HTTP side run in process: one configuration, one `HTTPService` on its own `EventLoop`, and
/// client connections made of socket pairs, the server end an `H1Connection` as the worker's connection set
/// makes them. Nothing runs on another thread: a test writes request bytes to the client end and turns the
/// loop (`runOnce`) until what it waits for has arrived, within a deadline.
final class EmbeddedServer {
    let config: Configuration
    let loop: EventLoop
    let log: ErrorLog
    let counters: SharedCounters
    let segment: Segment
    let tls: TLSBundle
    let service: HTTPService
    /// The error log file (every level down to info), for assertions on what was logged.
    let errorLogPath: String
    /// Every connection the service reported closed, by serial.
    private(set) var closedSerials: [Int] = []
    private var clients: [TestClient] = []
    private var serial = 0
    private var shutDown = false

    private static var segmentCount = 0

    /// `http` is the body of the `http {}` block; `access_log off` comes first so that nothing writes to
    /// the default logs/access.log (a location may still turn its own log on).
    init(http: String, test: XCTestCase, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = "events {}\nhttp {\naccess_log off;\n\(http)\n}\n"
        do {
            config = try Configuration.parse(text: text, file: "/tmp/vigil-unit/vigil.conf", prefix: "/tmp/vigil-unit")
        } catch {
            XCTFail("configuration did not load: \(error)\n\(text)", file: file, line: line)
            throw error
        }
        tls = try TLSBundle(config: config)
        EmbeddedServer.segmentCount += 1
        let name = "/vigil-unit-httpserver-\(getpid())-\(EmbeddedServer.segmentCount)"
        segment = try Segment.create(name: name, size: 1 << 16, generation: 1, masterPid: getpid(), checksum: 0, peers: [])
        counters = SharedCounters()
        log = ErrorLog()
        errorLogPath = NSTemporaryDirectory() + "vigil-unit-httpserver-\(getpid())-\(EmbeddedServer.segmentCount).log"
        unlink(errorLogPath)
        try log.open([ErrorLogTarget(path: errorLogPath, level: .info)])
        loop = try EventLoop()
        service = HTTPService(config: config, loop: loop, log: log, counters: counters, tls: tls, segment: segment,
                              accessLogs: try RequestLogFiles(config: config, log: log))
        service.connectionClosed = { [unowned self] c in
            self.closedSerials.append((c as? ClientInfo)?.serial ?? -1)
            self.counters.add(.active, -1)
        }
        let path = errorLogPath
        // Teardown blocks run last-added first: the server shuts down (if the test still holds it) before the
        // files go. A server the test let go of has shut down in its deinit.
        test.addTeardownBlock {
            shm_unlink(name)
            unlink(path)
        }
        test.addTeardownBlock { [weak self] in self?.shutdown() }
    }

    deinit { shutdown() }

    /// The `listen` of the configuration for `port` (the first address when nil).
    func listen(port: UInt16? = nil) -> Listen {
        let all = config.listenAddresses
        if let port, let l = all.first(where: { $0.address.port == port }) { return l }
        precondition(!all.isEmpty, "the configuration listens nowhere")
        return all[0]
    }

    /// A new client connection, accepted as the worker's ConnectionSet accepts one. The peer address is
    /// a unix-domain one (`unix:`) unless `peer` names an IPv4 address, which the connection then believes
    /// it came from (for allow/deny and $remote_addr).
    func connect(port: UInt16? = nil, peer: String? = nil) throws -> TestClient {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        var ss = sockaddr_storage()
        if let peer {
            withUnsafeMutablePointer(to: &ss) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    p.pointee.sin_family = sa_family_t(AF_INET)
                    p.pointee.sin_port = UInt16(40000).bigEndian
                    _ = inet_pton(AF_INET, peer, &p.pointee.sin_addr)
                }
            }
        } else {
            ss.ss_family = sa_family_t(AF_UNIX)
        }
        serial += 1
        counters.add(.accepted)
        counters.add(.handled)
        let c = H1Connection(fd: fds[0], peer: ss, listen: listen(port: port), service: service, serial: serial)
        try loop.register(fd: fds[0], events: Events.readable | Events.readHangup, handler: c)
        counters.add(.active)
        c.start()
        let client = TestClient(fd: fds[1], connection: c, server: self)
        clients.append(client)
        return client
    }

    func isClosed(serial: Int) -> Bool { closedSerials.contains(serial) }

    /// One turn of the loop.
    func turn(_ ms: UInt64 = 10) { loop.runOnce(waitingAtMost: ms) }

    /// Turns the loop until `condition` holds or `timeout` passes; whether it held.
    @discardableResult
    func run(timeout: TimeInterval = 3, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            for c in clients { c.drain() }
            if condition() { return true }
            if Date() >= deadline { return false }
            turn()
        }
    }

    /// The error log so far.
    var errorLog: String { (try? String(contentsOfFile: errorLogPath, encoding: .utf8)) ?? "" }

    /// Closes what is still open: connections first (they hold the service unowned, and their timers hold
    /// them), then the clients' ends.
    func shutdown() {
        guard !shutDown else { return }
        shutDown = true
        // Not heard any more: this may run in deinit, where the closure's reference to self is gone.
        service.connectionClosed = nil
        for c in clients where !isClosed(serial: c.serial) { c.connection?.close() }
        for c in clients { c.closeClientEnd() }
        clients.removeAll()
        try? log.open([])   // closes the log file's descriptor (the file stays for `errorLog` until teardown)
    }
}

/// The client end of a connection: bytes written as a client writes them, bytes read as they arrive.
final class TestClient {
    let fd: Int32
    /// Weak, as the worker's connection set drops a connection once it closes: while open, the loop holds it
    /// (its fd's handler); once closed, nothing should.
    private(set) weak var connection: H1Connection?
    let serial: Int
    unowned let server: EmbeddedServer
    /// Received and not yet taken by `readResponse`.
    private(set) var received: [UInt8] = []
    /// The server's end has shut down its writing (closed, or a lingering close's half-close).
    private(set) var sawEOF = false
    private var open = true

    init(fd: Int32, connection: H1Connection, server: EmbeddedServer) {
        self.fd = fd
        self.connection = connection
        serial = connection.serial
        self.server = server
    }

    /// The connection has closed on the server's side (not only half-closed).
    var serverClosed: Bool { server.isClosed(serial: serial) }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// Writes all of `bytes`, turning the loop while the socket buffer is full.
    func send(_ bytes: [UInt8]) {
        var at = 0
        let deadline = Date().addingTimeInterval(3)
        while at < bytes.count {
            let n = bytes[at...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { at += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) && Date() < deadline {
                server.turn(1)
                drain()
                continue
            }
            XCTFail("send failed after \(at) of \(bytes.count) bytes: errno \(errno)")
            return
        }
    }

    /// Reads whatever has arrived.
    func drain() {
        guard open, !sawEOF else { return }
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { received += buf[0..<n]; continue }
            if n == 0 { sawEOF = true; return }
            if errno == EINTR { continue }
            if errno != EAGAIN { sawEOF = true }   // ECONNRESET: as good as closed for a client
            return
        }
    }

    /// The next response on the wire (`forHead`: the request was HEAD, no body follows); nil if none came
    /// whole within `timeout`.
    func readResponse(forHead: Bool = false, timeout: TimeInterval = 3) -> WireResponse? {
        var result: WireResponse?
        server.run(timeout: timeout) {
            switch WireResponse.parse(received, atEOF: sawEOF, forHead: forHead) {
            case .complete(let r, let consumed):
                received.removeFirst(consumed)
                result = r
                return true
            case .incomplete:
                return sawEOF
            }
        }
        return result
    }

    /// Everything until the server's end shuts down (nil if it did not within `timeout`).
    func readToEOF(timeout: TimeInterval = 3) -> [UInt8]? {
        guard server.run(timeout: timeout, until: { sawEOF }) else { return nil }
        defer { received.removeAll() }
        return received
    }

    /// Turns the loop until exactly `count` bytes have arrived (or `timeout`); takes and returns them.
    func read(count: Int, timeout: TimeInterval = 3) -> [UInt8] {
        server.run(timeout: timeout) { received.count >= count || sawEOF }
        let n = min(count, received.count)
        defer { received.removeFirst(n) }
        return Array(received[0..<n])
    }

    /// Turns the loop until the server has closed the connection.
    @discardableResult
    func waitServerClosed(timeout: TimeInterval = 3) -> Bool { server.run(timeout: timeout) { serverClosed } }

    /// Turns the loop for `ms` and tells whether the connection is still open with nothing sent.
    func staysOpenAndQuiet(for ms: Int) -> Bool {
        let until = Date().addingTimeInterval(Double(ms) / 1000)
        server.run(timeout: Double(ms) / 1000 + 1) { Date() >= until }
        return !sawEOF && !serverClosed && received.isEmpty
    }

    func closeClientEnd() {
        guard open else { return }
        open = false
        Glibc.close(fd)
    }
}

/// A response as a client parses it off the wire.
struct WireResponse {
    let statusLine: String
    let headers: [(name: String, value: String)]
    /// The head as it came, status line to the blank line.
    let rawHead: String
    /// The body as it came (chunk framing included).
    let rawBody: [UInt8]
    /// The body without its framing.
    let body: [UInt8]

    var status: Int { Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0 }
    var text: String { String(decoding: body, as: UTF8.self) }
    var headerNames: [String] { headers.map(\.name) }

    func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
    func headers(named name: String) -> [String] { headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value) }

    enum Parse {
        case complete(WireResponse, consumed: Int)
        case incomplete
    }

    static func parse(_ buf: [UInt8], atEOF: Bool, forHead: Bool) -> Parse {
        guard let headEnd = find([13, 10, 13, 10], in: buf, from: 0) else { return .incomplete }
        let rawHead = String(decoding: buf[0..<headEnd + 4], as: UTF8.self)
        var lines = String(decoding: buf[0..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        var headers: [(name: String, value: String)] = []
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers.append((String(l[..<colon]), l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let start = headEnd + 4
        func make(_ raw: ArraySlice<UInt8>, _ body: [UInt8], _ consumed: Int) -> Parse {
            .complete(WireResponse(statusLine: statusLine, headers: headers, rawHead: rawHead, rawBody: Array(raw), body: body), consumed: consumed)
        }
        let code = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
        if forHead || (100..<200).contains(code) || code == 204 || code == 304 { return make([], [], start) }
        let te = headers.first { $0.name.lowercased() == "transfer-encoding" }?.value.lowercased()
        if te == "chunked" {
            var at = start
            var body: [UInt8] = []
            while true {
                guard let lineEnd = find([13, 10], in: buf, from: at) else { return .incomplete }
                let sizeText = String(decoding: buf[at..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return .incomplete }
                at = lineEnd + 2
                if size == 0 {
                    // No trailers from Vigil: the blank line ends the body.
                    guard buf.count >= at + 2 else { return .incomplete }
                    return make(buf[start..<at + 2], body, at + 2)
                }
                guard buf.count >= at + size + 2 else { return .incomplete }
                body += buf[at..<at + size]
                at += size + 2
            }
        }
        if let cl = headers.first(where: { $0.name.lowercased() == "content-length" }).flatMap({ Int($0.value) }) {
            guard buf.count >= start + cl else { return .incomplete }
            return make(buf[start..<start + cl], Array(buf[start..<start + cl]), start + cl)
        }
        // Delimited by the close.
        guard atEOF else { return .incomplete }
        return make(buf[start...], Array(buf[start...]), buf.count)
    }

    static func find(_ needle: [UInt8], in buf: [UInt8], from: Int) -> Int? {
        guard buf.count >= needle.count else { return nil }
        var i = from
        while i + needle.count <= buf.count {
            if buf[i] == needle[0] && Array(buf[i..<i + needle.count]) == needle { return i }
            i += 1
        }
        return nil
    }
}

/// nginx's page for `title` ("404 Not Found"), with this build's server token.
func nginxPage(_ title: String, tokens: String = Version.serverToken) -> String {
    "<html>\r\n<head><title>\(title)</title></head>\r\n<body>\r\n<center><h1>\(title)</h1></center>\r\n<hr><center>\(tokens)</center>\r\n</body>\r\n</html>\r\n"
}

/// A request head: `GET path HTTP/1.1` with Host and `headers`.
func get(_ path: String, host: String = "localhost", _ headers: [String] = []) -> String {
    "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n"
}

/// A per-test temporary directory, removed at teardown.
func makeTempDir(_ test: XCTestCase) throws -> String {
    var template = Array((NSTemporaryDirectory() + "vigil-httpserver.XXXXXX").utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw POSIXError(.init(rawValue: errno) ?? .EIO)
    }
    let path = String(cString: p)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// A content handler of the test's own in place of `proxy_pass` (HTTPProxy attaches the real one as
/// `service.proxyHandler`): a `proxy_pass` location's requests go to `respond`, which answers through the
/// request's sink as a handler streaming a body of unknown length does.
final class ScriptedHandler: RequestHandler {
    var respond: (RequestContext) -> Void
    private(set) var handled: [String] = []

    init(_ respond: @escaping (RequestContext) -> Void) { self.respond = respond }

    func handle(_ r: RequestContext) {
        handled.append(r.uri)
        respond(r)
    }

    func streamsBody(_ r: RequestContext) -> Bool { false }

    /// Sends `pieces` as a streamed body: chunked for an HTTP/1.1 client (unless chunked_transfer_encoding
    /// is off), else delimited by the close.
    static func stream(_ r: RequestContext, _ pieces: [String], contentType: String = "text/plain", gzip: Bool = false) {
        let framing: BodyFraming = r.transport.framesUnknownLength ? .chunked : .close
        let compress = gzip && GzipFilter.eligible(r, status: 200, contentType: contentType, contentLength: nil, encoded: false)
            && GzipFilter.accepted(r) && r.sink.startGzip(length: nil)
        r.sink.sendHead(status: 200, framing: framing) { w in
            w.header("Content-Type", contentType)
            if compress { w.header("Content-Encoding", "gzip") }
        }
        for p in pieces { _ = Array(p.utf8).withUnsafeBytes { r.sink.sendBody($0) } }
        r.sink.finish()
    }
}

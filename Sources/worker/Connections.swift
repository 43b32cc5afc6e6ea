#if canImport(Glibc)
import Glibc
#endif
import Config
import Event

/// The worker's client connections, so that shutdown can close idle ones and count the rest.
final class ConnectionSet {
    unowned let worker: WorkerProcess
    private var open: [Int32: ClientConnection] = [:]

    init(worker: WorkerProcess) { self.worker = worker }

    var count: Int { open.count }

    func accept(fd: Int32, peer: sockaddr_storage, listening: ListeningSocket) {
        if open.count >= worker.config.workerConnections {
            worker.log.alert("\(worker.config.workerConnections) worker_connections are not enough")
            close(fd)
            return
        }
        let c = ClientConnection(fd: fd, listening: listening, set: self)
        do {
            try worker.loop.register(fd: fd, events: Events.readable | Events.readHangup, handler: c)
        } catch {
            worker.log.alert("\(error)")
            close(fd)
            return
        }
        open[fd] = c
        c.armTimeout()
    }

    func closed(_ c: ClientConnection) {
        open[c.fd] = nil
        worker.stopIfDrained()
    }

    func closeIdle() { for c in open.values where c.isIdle { c.finish() } }
    func closeAll() { for c in open.values { c.finish() } }
}

/// A client connection: reads one request head and answers it from the matching server and location.
final class ClientConnection: EventHandler {
    let fd: Int32
    let listening: ListeningSocket
    unowned let set: ConnectionSet
    private var buffer: [UInt8] = []
    private var timer: Timer?
    private var done = false

    init(fd: Int32, listening: ListeningSocket, set: ConnectionSet) {
        self.fd = fd
        self.listening = listening
        self.set = set
    }

    var isIdle: Bool { buffer.isEmpty }

    func armTimeout() {
        let ms = UInt64(set.worker.config.http?.settings.clientHeaderTimeout ?? 60_000)
        timer = set.worker.loop.schedule(after: ms) { [weak self] in self?.finish() }
    }

    func handleEvent(_ events: UInt32) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !done {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                if let end = Request.headEnd(buffer) {
                    respond(to: Request.parse(Array(buffer[0..<end])))
                    return
                }
                if buffer.count > 32 * 1024 { respond(to: nil); return }
                continue
            }
            if n == 0 || (errno != EAGAIN && errno != EINTR) { finish() }
            return
        }
    }

    private func respond(to request: Request?) {
        let response = Router(config: set.worker.config, worker: set.worker).response(for: request, port: listening.listen.address.port)
        var bytes = Array(response.utf8)
        var off = 0
        // Small responses: the socket buffer takes them whole.
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            off += n
        }
        finish()
    }

    func finish() {
        guard !done else { return }
        done = true
        timer?.cancel()
        set.worker.loop.unregister(fd: fd)
        close(fd)
        set.closed(self)
    }
}

/// The request line and headers of one request (enough for routing; the full parser lives in Sources/HTTP).
struct Request {
    var method: String
    var uri: String
    var host: String?

    static func headEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 3..<b.count where b[i] == 0x0A && (b[i - 1] == 0x0A || (b[i - 1] == 0x0D && b[i - 2] == 0x0A)) {
            return i + 1
        }
        return nil
    }

    static func parse(_ head: [UInt8]) -> Request? {
        let text = String(decoding: head, as: UTF8.self)
        // "\r\n" is one Character in Swift, so split on both forms.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        let parts = lines[0].split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return nil }
        var r = Request(method: String(parts[0]), uri: String(parts[1]), host: nil)
        for line in lines.dropFirst() {
            if let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == "host" {
                r.host = String(line[line.index(after: colon)...].trimmingPrefix(while: { $0 == " " }))
            }
        }
        return r
    }
}

extension Substring {
    func trimmingPrefix(while pred: (Character) -> Bool) -> Substring { drop(while: pred) }
}

/// Picks the server block and location for a request and produces the response bytes.
struct Router {
    let config: Configuration
    unowned let worker: WorkerProcess

    func response(for request: Request?, port: UInt16) -> String {
        guard let request else { return Router.plain(400, "Bad Request") }
        guard let http = config.http else { return Router.plain(404, "Not Found") }
        let servers = http.servers.filter { $0.listens.contains { $0.address.port == port } }
        let host = request.host.map { String($0.split(separator: ":").first ?? "").lowercased() }
        let server = servers.first { s in host.map { s.serverNames.contains($0) } ?? false }
            ?? servers.first { $0.listens.contains { $0.defaultServer } } ?? servers.first
        guard let server else { return Router.plain(404, "Not Found") }
        let path = String(request.uri.split(separator: "?", maxSplits: 1).first ?? "")
        let loc = Router.match(server.locations, path: path)
        if let ret = loc?.returnAction ?? server.returnAction {
            return Router.returnResponse(ret)
        }
        return Router.plain(404, "Not Found")
    }

    static func match(_ locations: [Location], path: String) -> Location? {
        if let exact = locations.first(where: { $0.match == .exact && $0.pattern == path }) { return exact }
        var best: Location?
        for l in locations where (l.match == .prefix || l.match == .preferentialPrefix) && path.hasPrefix(l.pattern) {
            if best == nil || l.pattern.count > best!.pattern.count { best = l }
        }
        if let b = best, let inner = match(b.locations, path: path) { return inner }
        return best
    }

    static func returnResponse(_ r: ReturnAction) -> String {
        if [301, 302, 303, 307, 308].contains(r.code), let url = r.text {
            return "HTTP/1.1 \(r.code) \(reason(r.code))\r\nServer: vigil\r\nLocation: \(url)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        let body = r.text ?? ""
        return "HTTP/1.1 \(r.code) \(reason(r.code))\r\nServer: vigil\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    static func plain(_ code: Int, _ text: String) -> String {
        let body = "<html>\r\n<head><title>\(code) \(text)</title></head>\r\n<body>\r\n<center><h1>\(code) \(text)</h1></center>\r\n<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n"
        return "HTTP/1.1 \(code) \(text)\r\nServer: vigil\r\nContent-Type: text/html\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    static func reason(_ code: Int) -> String {
        switch code {
        case 200: "OK"; case 201: "Created"; case 204: "No Content"
        case 301: "Moved Permanently"; case 302: "Moved Temporarily"; case 303: "See Other"
        case 307: "Temporary Redirect"; case 308: "Permanent Redirect"
        case 400: "Bad Request"; case 403: "Forbidden"; case 404: "Not Found"; case 405: "Not Allowed"
        case 500: "Internal Server Error"; case 502: "Bad Gateway"; case 503: "Service Temporarily Unavailable"
        case 504: "Gateway Time-out"
        default: ""
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Config
import HTTP

/// `root` / `alias` / `index`: small static files, read whole (the request path's large bodies are proxied).
struct StaticFiles {
    let connection: ClientConnection
    let request: RequestContext
    static let maxFileSize = 16 << 20

    func serve() {
        let method = request.method
        guard method == "GET" || method == "HEAD" else { connection.respondError(405); return }
        let path = request.uri
        guard !path.contains("/../"), !path.hasSuffix("/.."), !path.contains("\0") else { connection.respondError(400); return }
        var file: String
        if let alias = request.location?.alias, let loc = request.location {
            file = alias + path.dropFirst(min(loc.pattern.count, path.count))
        } else {
            let root = connection.worker.config.fullPath(request.settings.root ?? "html")
            file = root + path
        }
        if file.hasSuffix("/") {
            let indexes = request.settings.index ?? ["index.html"]
            guard let found = indexes.map({ file + $0 }).first(where: { access($0, F_OK) == 0 }) else {
                connection.worker.log.error("directory index of \"\(file)\" is forbidden, client: \(connection.remoteAddress)")
                connection.respondError(access(file, F_OK) == 0 ? 403 : 404)
                return
            }
            file = found
        }
        var st = stat()
        guard stat(file, &st) == 0 else {
            connection.worker.log.error("open() \"\(file)\" failed (\(errno): \(String(cString: strerror(errno)))), client: \(connection.remoteAddress), request: \"\(request.head.requestLine)\"")
            connection.respondError(errno == EACCES ? 403 : 404)
            return
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            connection.respondError(301, location: path + "/")
            return
        }
        guard Int(st.st_size) <= StaticFiles.maxFileSize, let bytes = try? readWhole(file) else {
            connection.respondError(500)
            return
        }
        connection.respond(status: 200, contentType: connection.contentType(for: request), body: bytes)
    }

    private func readWhole(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StaticFileError() }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw StaticFileError() }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    struct StaticFileError: Error {}
}

#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import HTTP

/// `root` / `alias` / `index`: small static files, read whole (the request path's large bodies are proxied).
enum StaticFiles {
    static let maxFileSize = 16 << 20

    /// The file a URI names (nginx's URI to path): under `root`, or with the location's prefix replaced by its
    /// `alias`; a regex location's alias is the file itself, unless try_files chose a URI to add to it.
    static func filePath(_ uri: String, _ r: RequestContext, addingToAlias: Bool? = nil) -> String {
        guard let alias = r.location?.alias else { return r.settings.core.root + uri }
        guard let prefix = alias.replacedPrefix else { return addingToAlias ?? r.uriAddsToAlias ? alias.path + uri : alias.path }
        guard uri.utf8.starts(with: prefix.utf8) else { return alias.path + uri }
        return alias.path + String(decoding: uri.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
    }

    /// No ".." segment and no NUL: a URI a rewrite made may name no file above the root.
    static func isSafe(_ uri: String) -> Bool { !uri.contains("/../") && !uri.hasSuffix("/..") && !uri.contains("\0") }

    static func serve(_ request: RequestContext) {
        let pipeline = request.service.pipeline!
        let method = request.method
        guard method == "GET" || method == "HEAD" else { pipeline.respondError(request, 405); return }
        let path = request.uri
        guard isSafe(path) else { pipeline.respondError(request, 400); return }
        let file = filePath(path, request)
        // The index module found nothing to redirect to: as nginx's content phase.
        if file.hasSuffix("/") {
            request.log.error("directory index of \"\(file)\" is forbidden\(request.logContext)")
            return pipeline.respondError(request, 403)
        }
        // Opened first, as nginx does (non-blocking: a FIFO must not hang the worker): a file the workers' user
        // may not read is 403, whatever stat() would say.
        let fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            let status = e == EACCES ? 403 : e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG ? 404 : 500
            if status != 404 || request.settings.core.logNotFound {
                request.log.error("open() \"\(file)\" failed (\(Errno.text(e))), client: \(request.client.address), request: \"\(request.head.requestLine)\"")
            }
            pipeline.respondError(request, status)
            return
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            request.log.log(.crit, "fstat() \"\(file)\" failed (\(Errno.text(errno)))")
            pipeline.respondError(request, 500)
            return
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            pipeline.redirectAddingSlash(request, to: path + "/")
            return
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            request.log.log(.crit, "\"\(file)\" is not a regular file, client: \(request.client.address), request: \"\(request.head.requestLine)\"")
            pipeline.respondError(request, 404)
            return
        }
        // Last-Modified and (etag on, the default) an ETag of mtime and size, as nginx makes them; a request
        // that already has this version gets 304.
        let mtime = Int(st.st_mtim.tv_sec), size = Int(st.st_size)
        request.response.lastModified = mtime
        let lastModified = Clock.httpDate(at: mtime)
        var validators = [("Last-Modified", lastModified)]
        let etag = "\"\(String(mtime, radix: 16))-\(String(size, radix: 16))\""
        if request.settings.core.etag { validators.append(("ETag", etag)) }
        let type = pipeline.contentType(for: request, path: file)
        switch Conditional.evaluate(request, lastModified: mtime, etag: request.settings.core.etag ? etag : nil) {
        case .full: break
        case .notModified: return request.sink.respond(status: 304, contentType: nil, body: [], extra: validators)
        case .preconditionFailed: return pipeline.respondError(request, 412)
        }
        guard let bytes = try? FileBytes.read(fd: fd, size: size, maxSize: StaticFiles.maxFileSize) else {
            pipeline.respondError(request, 500)
            return
        }
        request.sink.respond(status: 200, contentType: type, body: bytes, extra: validators)
    }
}

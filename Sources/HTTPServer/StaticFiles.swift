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
        if request.settings.gzip.staticFiles != .off && servedPrecompressed(request, file) { return }
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
        switch opened(fd, file, request) {
        case .file(let st):
            request.response.allowsRanges = true
            send(fd, st, type: pipeline.contentType(for: request, path: file), encoding: nil, request)
        case .directory: pipeline.redirectAddingSlash(request, to: path + "/")
        case .answered: break
        }
    }

    /// gzip_static: the file's `.gz` beside it, sent as it is (Content-Encoding: gzip, the `.gz`'s own
    /// Last-Modified and ETag, the file's type, no ranges) to a client that accepts gzip by gzip_http_version,
    /// Accept-Encoding, gzip_proxied and gzip_disable, or to any client with `always`. False when it is not
    /// sent: then the file itself is, with `Vary: Accept-Encoding` if a `.gz` was there and gzip_vary is on.
    private static func servedPrecompressed(_ request: RequestContext, _ file: String) -> Bool {
        let always = request.settings.gzip.staticFiles == .always
        let accepted = always || GzipFilter.accepted(request)
        // As nginx: without gzip_vary there is nothing to learn from a .gz this client will not get.
        guard accepted || request.settings.gzip.vary else { return false }
        let path = file + ".gz"
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e != ENOENT && e != ENOTDIR && e != ENAMETOOLONG {
                request.service.log.log(e == EACCES || e == ELOOP || e == EMLINK ? .error : .crit,
                                        "open() \"\(path)\" failed (\(Errno.text(e)))\(request.logContext)")
            }
            return false
        }
        defer { close(fd) }
        if !always { request.response.gzipVary = true }
        guard accepted else { return false }
        switch opened(fd, path, request) {
        case .file(let st):
            send(fd, st, type: request.service.pipeline.contentType(for: request, path: file), encoding: "gzip", request)
            return true
        case .directory: return false
        case .answered: return true
        }
    }

    private enum Opened {
        case file(stat)
        case directory
        /// With 500 (fstat failed) or 404 (not a regular file).
        case answered
    }

    /// What an opened path is: a regular file (its stat), a directory, or anything else, which is 404 with
    /// nginx's [crit].
    private static func opened(_ fd: Int32, _ file: String, _ request: RequestContext) -> Opened {
        let pipeline = request.service.pipeline!
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            request.log.log(.crit, "fstat() \"\(file)\" failed (\(Errno.text(errno)))")
            pipeline.respondError(request, 500)
            return .answered
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { return .directory }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            request.log.log(.crit, "\"\(file)\" is not a regular file, client: \(request.client.address), request: \"\(request.head.requestLine)\"")
            pipeline.respondError(request, 404)
            return .answered
        }
        return .file(st)
    }

    /// A regular file's 200, read whole: Last-Modified and (etag on, the default) an ETag of mtime and size, as
    /// nginx makes them; a request that already has this version gets 304, a failed precondition 412.
    private static func send(_ fd: Int32, _ st: stat, type: String, encoding: String?, _ request: RequestContext) {
        let pipeline = request.service.pipeline!
        let mtime = Int(st.st_mtim.tv_sec), size = Int(st.st_size)
        request.response.lastModified = mtime
        var validators = [("Last-Modified", Clock.httpDate(at: mtime))]
        let etag = "\"\(String(mtime, radix: 16))-\(String(size, radix: 16))\""
        if request.settings.core.etag { validators.append(("ETag", etag)) }
        switch Conditional.evaluate(request, lastModified: mtime, etag: request.settings.core.etag ? etag : nil) {
        case .full: break
        case .notModified: return request.sink.respond(status: 304, contentType: nil, body: [], extra: validators)
        case .preconditionFailed: return pipeline.respondError(request, 412)
        }
        guard let bytes = try? FileBytes.read(fd: fd, size: size, maxSize: StaticFiles.maxFileSize) else {
            pipeline.respondError(request, 500)
            return
        }
        request.sink.respond(status: 200, contentType: type, body: bytes, extra: validators, encoding: encoding)
    }
}

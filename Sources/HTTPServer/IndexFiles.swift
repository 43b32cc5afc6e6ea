#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// nginx's index module: a URI ending in `/` is internally redirected to the first `index` name that exists
/// in its directory (a name starting with `/` is taken as it is, untested), so the index file is served from
/// the location its own URI chooses.
enum IndexFiles {
    enum Outcome {
        /// Nothing to redirect to: the content phase goes on (a directory listing is forbidden).
        case declined
        case redirect(String)
        case status(Int)
    }

    static func run(_ r: RequestContext) -> Outcome {
        guard r.uri.hasSuffix("/"), r.method == "GET" || r.method == "HEAD" || r.method == "POST" else { return .declined }
        let directory = StaticFiles.filePath(r.uri, r)
        var directoryTested = false
        for template in r.settings.core.index {
            let name = template.render(r)
            if name.hasPrefix("/") { return .redirect(name) }
            let path = directory + name
            var st = stat()
            if stat(path, &st) == 0 { return .redirect(r.uri + name) }
            let e = errno
            switch e {
            case ENOTDIR, ENAMETOOLONG, EACCES:
                return failure(path, e, r)
            case ENOENT:
                // Once: a directory that is not there is 404 rather than a list of missing index files.
                if !directoryTested, let outcome = testDirectory(directory, r) { return outcome }
                directoryTested = true
            default:
                r.log.log(.crit, "stat() \"\(path)\" failed (\(Errno.text(e)))\(r.logContext)")
                return .status(500)
            }
        }
        return .declined
    }

    /// nil when the directory is there (or cannot be searched: then its index files were), else the answer.
    private static func testDirectory(_ directory: String, _ r: RequestContext) -> Outcome? {
        var st = stat()
        if stat(directory, &st) == 0 {
            if st.st_mode & S_IFMT == S_IFDIR { return nil }
            r.log.alert("\"\(directory)\" is not a directory\(r.logContext)")
            return .status(500)
        }
        let e = errno
        if e == EACCES { return nil }
        if e == ENOENT { return failure(directory, e, r) }
        r.log.log(.crit, "stat() \"\(directory)\" failed (\(Errno.text(e)))\(r.logContext)")
        return .status(500)
    }

    private static func failure(_ path: String, _ e: Int32, _ r: RequestContext) -> Outcome {
        if e == EACCES {
            r.log.error("\"\(path)\" is forbidden (\(Errno.text(e)))\(r.logContext)")
            return .status(403)
        }
        if r.settings.core.logNotFound { r.log.error("\"\(path)\" is not found (\(Errno.text(e)))\(r.logContext)") }
        return .status(404)
    }
}

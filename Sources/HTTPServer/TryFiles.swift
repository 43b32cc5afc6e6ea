#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// `try_files` (nginx's precontent phase): the first candidate that exists as what it asks for (a directory
/// when it ended in `/`, else anything else) becomes the request's URI, and the location's content handler
/// serves it; when none does, the fallback decides.
enum TryFilesPhase {
    enum Outcome {
        case found
        case redirect(String)
        case status(Int)
    }

    static func run(_ tf: TryFiles, _ r: RequestContext) -> Outcome {
        for candidate in tf.candidates {
            let name = candidate.name.render(r)
            let path = StaticFiles.filePath(name, r, addingToAlias: true)
            var st = stat()
            guard stat(path, &st) == 0 else {
                let e = errno
                if e != ENOENT && e != ENOTDIR && e != ENAMETOOLONG {
                    r.log.log(.crit, "stat() \"\(path)\" failed (\(Errno.text(e)))\(r.logContext)")
                }
                continue
            }
            guard ((st.st_mode & S_IFMT) == S_IFDIR) == candidate.isDirectory else { continue }
            use(name, isDirectory: candidate.isDirectory, r)
            return .found
        }
        switch tf.fallback {
        case .status(let code): return .status(code)
        case .uri(let t): return .redirect(t.render(r))
        }
    }

    /// The URI the content handler serves: the candidate, under the same alias.
    private static func use(_ name: String, isDirectory: Bool, _ r: RequestContext) {
        if let alias = r.location?.alias {
            if let prefix = alias.replacedPrefix {
                r.uri = name.utf8.starts(with: prefix.utf8) ? name : prefix + name
            } else if !isDirectory {
                r.uri = name
                r.uriAddsToAlias = true
            }
        } else {
            r.uri = name
        }
        // The location stays: nothing is routed again.
        r.rewritten = false
    }
}

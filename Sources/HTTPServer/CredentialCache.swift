#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Core

/// The `Authorization` headers auth_basic let in, remembered by each worker so that a client sending the same
/// header again (a browser sends it with every request) is not checked against the file again: a `$apr1$` entry
/// costs 1,002 MD5 digests, crypt's schemes more (Apache's mod_authn_socache does the same). An entry keeps the
/// SHA-256 of the header, never the password, and the identity of the password file that matched it; a request
/// finds its entry only if one stat() of the file (nginx reads the file on every request) still sees that
/// identity, so an edited, replaced, renamed or chmod'ed file is read again at once. Refusals are never
/// remembered: each goes through the file and logs its line as nginx does.
struct CredentialCache {
    /// The SHA-256 of an `Authorization` header's value.
    struct HeaderDigest: Equatable {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

        init(_ value: UnsafeRawBufferPointer) {
            withUnsafeMutableBytes(of: &words) { vigil_sha256(value.baseAddress, value.count, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        }

        static func == (a: Self, b: Self) -> Bool {
            a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
        }
    }

    private struct Entry {
        let header: HeaderDigest
        let path: String
        let file: FileIdentity
    }

    /// Enough for the users of a site's admin pages; past it the oldest entry makes room.
    static let capacity = 64
    private var entries: [Entry] = []
    private var oldest = 0
    /// The last stat() of a password file and the loop iteration it was made in (the worker's clock, which
    /// moves between iterations): the requests of one iteration are served at one moment as far as an edit of
    /// the file can tell, so they share it.
    private var lastLook: (path: String, iteration: UInt64, file: FileIdentity)?

    /// The identity of the password file at `path` in the loop iteration whose clock reads `iteration`.
    mutating func identity(of path: String, iteration: UInt64) -> FileIdentity? {
        if let last = lastLook, last.iteration == iteration, last.path == path { return last.file }
        guard let file = FileIdentity(path: path) else { return nil }
        lastLook = (path, iteration, file)
        return file
    }

    func admits(_ header: HeaderDigest, path: String, file: FileIdentity) -> Bool {
        entries.contains { $0.header == header && $0.file == file && $0.path == path }
    }

    mutating func remember(_ header: HeaderDigest, path: String, file: FileIdentity) {
        let entry = Entry(header: header, path: path, file: file)
        if let same = entries.firstIndex(where: { $0.header == header && $0.path == path }) {
            entries[same] = entry
        } else if entries.count < Self.capacity {
            entries.append(entry)
        } else {
            entries[oldest] = entry
            oldest = (oldest + 1) % Self.capacity
        }
    }
}

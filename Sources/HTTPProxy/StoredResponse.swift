#if canImport(Glibc)
import Glibc
#endif
import Core

/// proxy_store (and the upstream cache): a proxied body written, as it is relayed, to a temporary file beside
/// its destination, then renamed there once the whole body has come (with the upstream's Last-Modified as its
/// time for proxy_store, the directories on the way made as needed). Dropped unfinished, the temporary file goes
/// with it, as nginx leaves no temporary file behind.
final class StoredResponse {
    private let destination: String
    private let temporary: String
    private let access: mode_t
    private let log: ErrorLog
    private var fd: Int32
    private var failed = false
    private var committed = false
    /// Bytes written so far.
    private(set) var written = 0

    private nonisolated(unsafe) static var sequence = 0

    /// nil when the file cannot be made (logged at crit, as nginx's open() failures).
    init?(at destination: String, access: UInt32, log: ErrorLog) {
        self.destination = destination
        self.access = mode_t(access)
        self.log = log
        StoredResponse.sequence += 1
        temporary = "\(destination).\(getpid()).\(StoredResponse.sequence).tmp"
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 && errno == ENOENT {
            // As nginx's ngx_create_full_path: the directories, with x where the files get r.
            StoredResponse.makeDirectories(for: destination, mode: self.access | (self.access & 0o444) >> 2)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        }
        guard fd >= 0 else {
            log.log(.crit, "open() \"\(temporary)\" failed (\(Errno.text(errno)))")
            return nil
        }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporary) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) {
        guard !failed, bytes.count > 0 else { return }
        let e = writeAll(fd, bytes)
        written += bytes.count
        guard e == 0 else {
            log.log(.crit, "write() \"\(temporary)\" failed (\(Errno.text(e)))")
            failed = true
            return
        }
    }

    /// The whole body came: the file takes its place (and its mode and time); false if it could not.
    @discardableResult
    func commit(lastModified: Int?) -> Bool {
        guard !failed else { return false }
        fchmod(fd, access)
        if let lastModified {
            var times = [timespec(tv_sec: lastModified, tv_nsec: 0), timespec(tv_sec: lastModified, tv_nsec: 0)]
            futimens(fd, &times)
        }
        close(fd)
        fd = -1
        committed = rename(temporary, destination) == 0
        guard committed else {
            log.log(.crit, "rename() \"\(temporary)\" to \"\(destination)\" failed (\(Errno.text(errno)))")
            return false
        }
        return true
    }

    private static func makeDirectories(for path: String, mode: mode_t) {
        var prefix = ""
        for part in path.split(separator: "/", omittingEmptySubsequences: false).dropLast() where !part.isEmpty {
            prefix += "/" + part
            _ = mkdir(prefix, mode)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Log files as nginx keeps them: opened for appending (created 0644), by the master while it is root, so that
/// workers inherit descriptors to files they could not open themselves.
public enum LogFile {
    public static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OpenFailure(path: path, errno: errno) }
        return fd
    }

    /// For a reopen (USR1): the master creates the file anew if logrotate moved it, as root, and gives it to the
    /// workers' user, who reopen it next, as nginx does. Only regular files: never chown /dev/null or a terminal
    /// (a log symlinked to /dev/stdout). The failure worded as nginx's, or nil.
    public static func handOver(_ path: String, to uid: uid_t) -> String? {
        let fd: Int32
        do { fd = try open(path) } catch { return "\(error)" }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "fstat() \"\(path)\" failed (\(Errno.text(errno)))" }
        guard st.st_mode & S_IFMT == S_IFREG else { return nil }
        if st.st_uid != uid && fchown(fd, uid, gid_t.max) != 0 {
            return "chown(\"\(path)\", \(uid)) failed (\(Errno.text(errno)))"
        }
        let ownerRW = S_IRUSR | S_IWUSR
        if st.st_mode & ownerRW != ownerRW && fchmod(fd, (st.st_mode & 0o7777) | ownerRW) != 0 {
            return "chmod() \"\(path)\" failed (\(Errno.text(errno)))"
        }
        return nil
    }
}

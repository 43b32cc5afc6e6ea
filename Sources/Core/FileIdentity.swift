#if canImport(Glibc)
import Glibc
#endif

/// A file as stat() sees it: device, inode, size, mtime and ctime. Any change to its content or mode moves its
/// ctime, and a file renamed over it has another inode: one stat() tells whether a file read before is still
/// the same (auth_basic's remembered credentials, a state file the checker follows).
public struct FileIdentity: Equatable, Sendable {
    public let device: UInt64, inode: UInt64, size: Int64
    public let modified: timespec, changed: timespec

    public init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        modified = st.st_mtim
        changed = st.st_ctim
    }

    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        self.init(st)
    }

    public init?(fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        self.init(st)
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size
            && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
            && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
    }
}

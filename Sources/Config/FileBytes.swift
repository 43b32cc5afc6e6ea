#if canImport(Glibc)
import Glibc
#endif
import Core

/// A whole file read into memory (configuration files, included files, the check state file), refusing
/// directories and files past `maxSize`.
public enum FileBytes {
    public static let maxSize = 64 << 20

    public struct Failure: Error {
        public let errno: Int32
        /// `2: No such file or directory`.
        public var text: String { Errno.text(errno) }
    }

    /// `read`, with the failure as a value.
    public static func contents(_ path: String, maxSize: Int = maxSize) -> Result<[UInt8], Failure> {
        do { return .success(try read(path, maxSize: maxSize)) } catch { return .failure(error as? Failure ?? Failure(errno: EIO)) }
    }

    public static func read(_ path: String, maxSize: Int = maxSize) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure(errno: errno) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw Failure(errno: EISDIR) }
        return try read(fd: fd, size: Int(st.st_size), maxSize: maxSize)
    }

    /// The rest of an open file of `size` bytes (its fstat size), up to its end.
    public static func read(fd: Int32, size: Int, maxSize: Int) throws -> [UInt8] {
        if size > maxSize { throw Failure(errno: EFBIG) }
        var out = [UInt8]()
        out.reserveCapacity(size)
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    /// Replaces the file at `path` with `bytes` whole: they are written to a temporary file beside it, renamed
    /// over it, so that no reader sees half. The errno of a failure, or nil.
    public static func replace(_ path: String, with bytes: [UInt8]) -> Int32? {
        let temporary = path + ".vigil-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return errno }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let e = errno
        close(fd)
        guard written == bytes.count else { unlink(temporary); return written < 0 ? e : EIO }
        guard rename(temporary, path) == 0 else { let e = errno; unlink(temporary); return e }
        return nil
    }
}

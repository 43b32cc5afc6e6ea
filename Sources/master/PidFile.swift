#if canImport(Glibc)
import Glibc
#endif
import Core
import Worker

/// The pid file: written by the master, read by `vigil -s` and `shmdump`, removed on exit.
enum PidFile {
    static func write(_ path: String, pid: Int32) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OpenFailure(path: path, errno: errno) }
        writeAll(fd, "\(pid)\n")
        close(fd)
    }

    enum ReadError: Error, CustomStringConvertible {
        case open(String, Int32)
        case invalid(String, String)
        var description: String {
            switch self {
            case .open(let p, let e): "open() \"\(p)\" failed (\(Errno.text(e)))"
            case .invalid(let p, let text): "invalid PID number \"\(text)\" in \"\(p)\""
            }
        }
    }

    static func read(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError.open(path, errno) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        let text = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
        let trimmed = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == " " }).first.map(String.init) ?? ""
        guard let pid = Int32(trimmed), pid > 0 else { throw ReadError.invalid(path, trimmed) }
        return pid
    }

    /// Removes the file only if it still names `pid` (a newer master may have replaced it).
    static func remove(_ path: String, ifPid pid: Int32) {
        if (try? read(path)) == pid { unlink(path) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Whether a segment's master is still running: the pid exists, is not a zombie (a master killed with
/// SIGKILL stays one until its parent reaps it), and is a `vigil` (pids get reused).
public enum MasterLiveness {
    public static func isRunning(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(close, offsetBy: 2)...].first
        if state == "Z" || state == "X" { return false }
        let name = stat[stat.index(after: stat.firstIndex(of: "(")!)..<close]
        return name == "vigil"
    }

    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }
}

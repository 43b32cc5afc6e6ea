#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// nginx's open_log_file_cache in one worker: the access logs whose paths come from variables stay open once a
/// path has been used `min_uses` times, and are looked at again after `valid` seconds (a file moved or
/// removed is opened anew by its name, a file in place keeps its descriptor, even in a directory that moved
/// meanwhile). At most `max` paths are remembered: a new one pushes out the least recently used, and up to two
/// more not used for `inactive` seconds.
final class LogFileCache {
    private struct Entry {
        /// -1 while the path has been used fewer than min_uses times.
        var fd: Int32
        var uses = 1
        /// When the file was opened, or last found in place.
        var checked: Int
        var accessed: Int
        var identity: FileIdentity
    }

    private struct FileIdentity: Equatable {
        let device: UInt64
        let inode: UInt64
        init(_ st: stat) { device = UInt64(st.st_dev); inode = UInt64(st.st_ino) }
        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            self.init(st)
        }
    }

    private let setting: LogFileCacheSetting
    private var entries: [String: Entry] = [:]
    /// The paths, least recently used first.
    private var order: [String] = []

    init(_ setting: LogFileCacheSetting) { self.setting = setting }

    deinit { for e in entries.values where e.fd >= 0 { close(e.fd) } }

    enum Failure { case open(Int32), write(Int32) }

    /// Writes `line` to the file at `path`, `now` in seconds. A failed open writes nothing and forgets the path.
    func write(_ line: String, to path: String, now: Int) -> Failure? {
        var entry: Entry
        if var found = entries[path] {
            found.uses += 1
            order.removeAll { $0 == path }
            order.append(path)
            let stale = now - found.checked >= setting.valid
            if found.fd < 0 || stale && FileIdentity(path: path) != found.identity {
                if found.fd >= 0 { close(found.fd) }
                guard let (fd, identity) = LogFileCache.open(path) else {
                    let e = errno
                    forget(path)
                    return .open(e)
                }
                found.fd = fd
                found.identity = identity
                found.checked = now
            } else if stale {
                found.checked = now
            }
            entry = found
        } else {
            guard let (fd, identity) = LogFileCache.open(path) else { return .open(errno) }
            if entries.count >= setting.max { expire(now: now) }
            entry = Entry(fd: fd, checked: now, accessed: now, identity: identity)
            order.append(path)
        }
        entry.accessed = now
        let failed = writeAll(entry.fd, line)
        if entry.uses < setting.minUses {
            close(entry.fd)
            entry.fd = -1
        }
        entries[path] = entry
        return failed == 0 ? nil : .write(failed)
    }

    private static func open(_ path: String) -> (Int32, FileIdentity)? {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        var st = stat()
        fstat(fd, &st)
        return (fd, FileIdentity(st))
    }

    /// The least recently used path goes, and up to two more not used for `inactive` seconds.
    private func expire(now: Int) {
        for i in 0..<3 {
            guard let path = order.first, let e = entries[path] else { return }
            if i > 0 && now - e.accessed <= setting.inactive { return }
            forget(path)
        }
    }

    private func forget(_ path: String) {
        if let e = entries.removeValue(forKey: path), e.fd >= 0 { close(e.fd) }
        order.removeAll { $0 == path }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// What workers write once they run as `user`, made ready by the master while it is root, as nginx does:
/// client body temp directories created and owned by that user, and, on USR1, log files the master has
/// reopened given to that user so that workers can reopen them too.
enum WorkerFiles {
    /// Creates each missing temp directory (0700, the last component only, as nginx) and gives it to the workers'
    /// user; a directory that cannot be made stops the start or reload. nginx's wording.
    static func makeTempDirectories(_ config: Configuration) throws {
        for path in config.clientBodyTempPaths + config.cacheZones.map(\.path) {
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("mkdir() \"\(path)\"") }
            var st = stat()
            guard stat(path, &st) == 0 else { throw SystemError("stat() \"\(path)\"") }
            guard let user = config.workerUser else { continue }
            if st.st_uid != user.uid && chown(path, user.uid, gid_t.max) != 0 { throw SystemError("chown(\"\(path)\", \(user.uid))") }
            let ownerRWX = S_IRWXU
            if st.st_mode & ownerRWX != ownerRWX && chmod(path, (st.st_mode & 0o7777) | ownerRWX) != 0 { throw SystemError("chmod() \"\(path)\"") }
        }
    }

    /// After the master's own reopen: every error and access log of the running configurations, created if
    /// logrotate moved it and owned by the workers' user. Failures are [alert]s; the workers keep their old files.
    static func handOverLogs(_ configs: [Configuration], errorLogPaths: [String], log: ErrorLog) {
        var done = Set<String>()
        for config in configs {
            guard let user = config.workerUser else { continue }
            for path in errorLogPaths + config.accessLogPaths + config.requestErrorLogPaths where done.insert(path).inserted {
                if let failure = LogFile.handOver(path, to: user.uid) { log.alert(failure) }
            }
        }
    }
}

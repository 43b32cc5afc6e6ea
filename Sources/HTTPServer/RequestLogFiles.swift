#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// The files requests log to: access logs, shared by every location that names the same path, and the error
/// logs of http, server and location levels. The master opens them all, while it is root, before it forks
/// workers (so a path that cannot be opened stops a start or reload, as in nginx); a worker reopens them on
/// USR1, after the master has given the files to the workers' user. A syslog server is no file: each worker
/// connects to it when it sends its first line.
public final class RequestLogFiles {
    private var fds: [String: Int32] = [:]
    private let formats: [String: LogFormat]
    /// By LogSettings.errorLogSet.
    let errorLogs: [ErrorLog]
    let log: ErrorLog

    public init(config: Configuration, log: ErrorLog) throws {
        self.log = log
        formats = config.http?.logFormats ?? [:]
        errorLogs = config.requestErrorLogs.map { _ in ErrorLog(failuresTo: log) }
        do {
            for path in config.accessLogPaths { fds[path] = try LogFile.open(path) }
            for (log, targets) in zip(errorLogs, config.requestErrorLogs) { try log.open(targets) }
        } catch {
            close()
            throw error
        }
    }

    /// The line being made, kept from one request to the next: logging a request allocates no buffer.
    private var line = ""
    /// The syslog servers of access logs, by their text, each connected by this process on its first line.
    private var syslogPeers: [String: SyslogPeer] = [:]

    /// The request's lines, one per `access_log` of its location (unless its `if=` is empty or "0"): to a file
    /// with a newline, to syslog as one datagram after syslog's header.
    func write(_ r: RequestContext) {
        for target in r.settings.log.accessLogs {
            if let c = target.condition {
                let v = c.render(r)
                if v.isEmpty || v == "0" { continue }
            }
            guard let format = formats[target.format] else { continue }
            line.removeAll(keepingCapacity: true)
            if let syslog = target.syslog {
                let peer = syslogPeer(target.path, syslog)
                peer.appendHeader(to: &line, severity: syslog.severity)
                format.template.appendLogLine(r, escape: format.escape, to: &line)
                if let failure = peer.send(&line) { syslogFailed(failure, r) }
                continue
            }
            format.template.appendLogLine(r, escape: format.escape, to: &line)
            line += "\n"
            if let t = target.pathTemplate {
                writeOpening(t.render(r), line, r)
                continue
            }
            guard let fd = fds[target.path] else { continue }
            let e = writeAll(fd, line)
            if e != 0 { writeFailed(target.path, errno: e, context: r.logContext) }
        }
    }

    private func syslogPeer(_ text: String, _ target: SyslogTarget) -> SyslogPeer {
        if let peer = syslogPeers[text] { return peer }
        let peer = SyslogPeer(target)
        syslogPeers[text] = peer
        return peer
    }

    /// nginx's two lines for a line syslog did not take (here at most once a minute per server): the socket's
    /// failure in the main error log, and `send() to syslog failed` in the request's.
    private func syslogFailed(_ failure: SystemError, _ r: RequestContext) {
        if let level = SyslogPeer.level(of: failure) { log.log(level, "\(failure)") }
        r.log.warn("send() to syslog failed while logging request\(r.logContext)")
    }

    /// A line for a path made of variables, as nginx writes it: the request's root must exist (so that a request
    /// cannot make files appear for any name), then the file is opened, written and closed, or, with
    /// open_log_file_cache, written through the cache's descriptor.
    private func writeOpening(_ path: String, _ line: String, _ r: RequestContext) {
        let root = r.location?.alias?.path ?? r.settings.core.root
        var st = stat()
        let failure = stat(root, &st) != 0 ? errno : st.st_mode & S_IFMT != S_IFDIR ? ENOTDIR : 0
        guard failure == 0 else {
            log.error("testing \"\(root)\" existence failed (\(Errno.text(failure)))\(r.logContext)")
            return
        }
        if let setting = r.settings.log.openLogFileCache {
            let cache = caches[setting.id] ?? LogFileCache(setting)
            caches[setting.id] = cache
            switch cache.write(line, to: path, now: Int(r.service.loop.now / 1000)) {
            case .open(let e)?: log.log(.crit, "open() \"\(path)\" failed (\(Errno.text(e)))\(r.logContext)")
            case .write(let e)?: writeFailed(path, errno: e, context: r.logContext)
            case nil: break
            }
            return
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            log.log(.crit, "open() \"\(path)\" failed (\(Errno.text(errno)))\(r.logContext)")
            return
        }
        defer { Glibc.close(fd) }
        let e = writeAll(fd, line)
        if e != 0 { writeFailed(path, errno: e, context: r.logContext) }
    }

    /// open_log_file_cache's caches in this worker, by their ids.
    private var caches: [Int: LogFileCache] = [:]

    /// A file that cannot be reopened keeps its old descriptor.
    func reopen() {
        for (path, old) in fds {
            do {
                fds[path] = try LogFile.open(path)
                Glibc.close(old)
            } catch {
                log.alert("\(error)")
            }
        }
        for e in errorLogs { e.reopen() }
    }

    /// The master's copies, once no worker of their configuration is left.
    public func close() {
        for fd in fds.values { Glibc.close(fd) }
        fds.removeAll()
        syslogPeers.removeAll()
        for e in errorLogs { try? e.open([]) }
    }

    /// When each file's last write failure was logged.
    private var failureLogged: [String: time_t] = [:]

    /// A line that could not be written (ENOSPC on a full disk) is lost; the failure is logged as nginx does, at
    /// [alert] and at most once a minute per file, so that a full disk, which often holds the error log too,
    /// does not cost one more error line per request.
    func writeFailed(_ path: String, errno e: Int32, context: @autoclosure () -> String) {
        let now = time(nil)
        if let last = failureLogged[path], now - last < 60 { return }
        failureLogged[path] = now
        log.alert("write() to \"\(path)\" failed (\(Errno.text(e))) while logging request\(context())")
    }
}

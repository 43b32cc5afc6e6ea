#if canImport(Glibc)
import Glibc
#endif

/// `syslog:server=…[,facility=…][,severity=…][,tag=…][,nohostname]` of `error_log` and `access_log`, read when
/// the configuration loads (a host name resolved then, as nginx does).
public struct SyslogTarget: Sendable {
    public let server: SocketAddress
    /// 0 (kern) to 23 (local7, nginx's default).
    public let facility: Int
    /// 0 (emerg) to 7 (debug): an access log's lines go at this one (nginx's default: 6, info), an error log's at
    /// each line's level.
    public let severity: Int
    public let tag: String
    public let nohostname: Bool

    public init(server: SocketAddress, facility: Int, severity: Int, tag: String, nohostname: Bool) {
        self.server = server
        self.facility = facility
        self.severity = severity
        self.tag = tag
        self.nohostname = nohostname
    }
}

/// One process's datagram socket to a syslog server. As nginx's, it is made when the process sends its first
/// line (so a worker connects as `user`; one that inherits the master's socket keeps it), never blocks, and a
/// line that cannot be sent is lost: a failed send closes the socket so that the next line connects anew (a
/// restarted daemon, a unix socket made again). Used by one thread at a time (the error log's mutex, or the
/// worker's loop).
public final class SyslogPeer {
    public let target: SyslogTarget
    private var fd: Int32 = -1
    /// The header for `second` and `severity`, made again when either changes (an access log's severity never
    /// does: a line costs one append).
    private var header = ""
    private var second: time_t = -1
    private var severity = -1
    /// When a failure was last reported.
    private var reported: time_t = 0

    /// As nginx's: gethostname(), lowercased.
    static let hostname: String = {
        var buf = [CChar](repeating: 0, count: Int(HOST_NAME_MAX) + 1)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        return String(cString: buf).lowercased()
    }()

    public init(_ target: SyslogTarget) { self.target = target }
    deinit { close() }

    /// nginx's header (ngx_syslog_add_header): `<PRI>Nov  3 14:25:01 hostname tag: `, without the hostname for
    /// `nohostname`; PRI is facility × 8 + severity.
    public func appendHeader(to line: inout String, severity: Int) {
        let now = time(nil)
        if now != second || severity != self.severity {
            header = "<\(target.facility * 8 + severity)>\(Clock.syslogTime())\(target.nohostname ? "" : " " + SyslogPeer.hostname) \(target.tag): "
            second = now
            self.severity = severity
        }
        line += header
    }

    /// Sends `message` as one datagram. A failure is returned only when it is to be reported, at most once a
    /// minute: a syslog server that is down must not cost a line in the error log per request.
    public func send(_ message: inout String) -> SystemError? {
        let failure: SystemError
        if let f = fd < 0 ? connect() : nil {
            failure = f
        } else {
            let n = message.withUTF8 { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n >= 0 { return nil }
            failure = SystemError("send()")
            // A full socket buffer (a unix socket's reader behind) drops the line but keeps the socket.
            if failure.errno != EAGAIN { close() }
        }
        let now = time(nil)
        guard now - reported >= 60 else { return nil }
        reported = now
        return failure
    }

    /// nginx's level for a failure in the main error log: [error] for a server that is not there
    /// (ngx_connection_error's list), [alert] for anything else, none for a full socket buffer.
    public static func level(of failure: SystemError) -> LogLevel? {
        switch failure.errno {
        case EAGAIN: nil
        case ECONNREFUSED, ECONNRESET, EPIPE, ENOTCONN, ETIMEDOUT, ENETDOWN, ENETUNREACH, EHOSTDOWN, EHOSTUNREACH:
            failure.call == "send()" ? .error : .alert
        default: .alert
        }
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    private func connect() -> SystemError? {
        let s = socket(target.server.family, Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return SystemError("socket()") }
        guard target.server.withSockaddr({ Glibc.connect(s, $0, $1) }) == 0 else {
            let failure = SystemError("connect()")
            Glibc.close(s)
            return failure
        }
        fd = s
        return nil
    }
}

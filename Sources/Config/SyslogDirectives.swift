import Core

/// The `syslog:` target of `error_log` and `access_log`, read as nginx's ngx_syslog_process_conf reads it, with
/// its messages.
extension Directives {
    static let syslogFacilities = ["kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news", "uucp", "clock",
                                   "authpriv", "ftp", "ntp", "audit", "alert", "cron", "local0", "local1", "local2",
                                   "local3", "local4", "local5", "local6", "local7"]
    /// nginx.conf's words for the levels (`error`, `warn`), not syslog's (`err`, `warning`).
    static let syslogSeverities = ["emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"]

    /// `syslog:server=addr[:port][,facility=f][,severity=s][,tag=t][,nohostname]`: parameters in any order, each
    /// once; facility local7, severity info and tag "nginx" by default (nginx's, kept for the tools that
    /// filter on them).
    static func syslogTarget(_ call: Call, _ word: String) throws -> SyslogTarget {
        var server: SocketAddress?, facility: Int?, severity: Int?, tag: String?, nohostname = false
        for p in word.dropFirst("syslog:".count).split(separator: ",", omittingEmptySubsequences: false) {
            let name = p.prefix(while: { $0 != "=" }), value = String(p.dropFirst(name.count + 1))
            func once<T>(_ v: T?) throws {
                if v != nil { throw call.error("duplicate syslog \"\(name)\"") }
            }
            switch p.contains("=") ? name + "=" : p {
            case "server=":
                try once(server)
                server = try syslogServer(call, value)
            case "facility=":
                try once(facility)
                guard let f = syslogFacilities.firstIndex(of: value) else { throw call.error("unknown syslog facility \"\(value)\"") }
                facility = f
            case "severity=":
                try once(severity)
                guard let s = syslogSeverities.firstIndex(of: value) else { throw call.error("unknown syslog severity \"\(value)\"") }
                severity = s
            case "tag=":
                try once(tag)
                // RFC 3164: at most 32 alphanumeric characters; nginx allows "_" too.
                if value.utf8.count > 32 { throw call.error("syslog tag length exceeds 32") }
                guard value.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }) else {
                    throw call.error("syslog \"tag\" only allows alphanumeric characters and underscore")
                }
                tag = value
            case "nohostname":
                nohostname = true
            default:
                throw call.error("unknown syslog parameter \"\(p)\"")
            }
        }
        guard let server else { throw call.error("no syslog server specified") }
        return SyslogTarget(server: server, facility: facility ?? 23, severity: severity ?? 6, tag: tag ?? "nginx", nohostname: nohostname)
    }

    /// An address (a host name resolved now, its first address taken, as nginx does; port 514 by default) or
    /// `unix:/path`, a datagram socket.
    private static func syslogServer(_ call: Call, _ text: String) throws -> SocketAddress {
        if text.lowercased().hasPrefix("unix:") {
            let path = text.dropFirst(5)
            if path.isEmpty { throw call.error("no path in the unix domain socket in syslog server \"\(text)\"") }
            guard let a = SocketAddress(host: "unix:" + path, port: 0, isIPv6: false) else {
                throw call.error("too long path in the unix domain socket in syslog server \"\(text)\"")
            }
            return a
        }
        let a = try resolveAddress(call, text, defaultPort: 514, noHost: "no host", in: "syslog server")[0]
        guard let address = SocketAddress(host: a.host, port: a.port, isIPv6: a.isIPv6) else {
            throw call.error("host not found in syslog server \"\(text)\"")
        }
        return address
    }
}

import CShim
import Core
import Config
import HTTP
import ShmTable

/// `check_status`: the reference module's page, byte for byte, minus its bugs: the JSON stays valid
/// under a status filter and with any upstream name, the DOCTYPE's public identifier has its closing quote,
/// and names are escaped in HTML.
struct CheckStatusPage {
    let service: HTTPService
    let request: RequestContext

    /// The content handler: the page, or an admin state change, as the request asks.
    static func serve(_ r: RequestContext) {
        let page = CheckStatusPage(service: r.service, request: r).render()
        r.sink.respond(status: page.status, contentType: page.contentType, body: page.body, omitLengthForHead: true)
    }

    struct Page {
        let status: Int
        let contentType: String?
        let body: [UInt8]
    }

    struct Row {
        let index: Int
        let upstream: String
        let name: String
        let down: Bool
        let rise: UInt32
        let fall: UInt32
        let type: String
        let port: Int
        /// The slot's whole state, for `detail=1` and Prometheus.
        var state = PeerState(down: false)
        var admin = AdminState.ready
    }

    /// What `detail=1` adds to a row, from the slot: nil where there is nothing to show yet.
    struct Detail {
        /// The last check's round trip in milliseconds, three decimals ("0.213").
        let lastRTTms: String?
        let lastError: String?
        let checks: UInt32
        let failures: UInt32
        let lastChangeSeconds: UInt64?
        /// Unix time at which a down peer went down.
        let downSince: Int64?
        let admin: String

        init(_ r: Row, nowMs: UInt64, wallMs: Int64) {
            let s = r.state
            lastRTTms = s.checks == 0 ? nil : CheckStatusPage.decimal(UInt64(s.rttUs), places: 3)
            if s.failures == 0 { lastError = nil } else if s.reason == .badStatus && s.lastStatus > 0 { lastError = "status \(s.lastStatus)" } else { lastError = s.reason.text }
            checks = s.checks
            failures = s.failures
            lastChangeSeconds = s.lastChangeMs == 0 ? nil : (nowMs - min(nowMs, s.lastChangeMs)) / 1000
            downSince = s.down && s.lastChangeMs > 0 ? (wallMs - Int64(nowMs - min(nowMs, s.lastChangeMs))) / 1000 : nil
            admin = r.admin.name
        }
    }

    func render() -> Page {
        let method = request.method
        // Writes are opt-in (`check_status_admin on`): a POST that names a peer changes its admin state there, and
        // is refused like any other method everywhere else, as the reference refuses it.
        if method == "POST", request.settings.status.admin, let q = request.head.query,
           ["upstream", "server", "state"].contains(where: { CheckStatusPage.argument($0, in: q) != nil }) {
            return changeAdmin()
        }
        guard method == "GET" || method == "HEAD" else { return Page(status: 405, contentType: "text/html", body: errorBody(405)) }
        var format = request.settings.status.format
        var filter: Bool?   // true: only down, false: only up
        var detail = false
        if let q = request.head.query {
            detail = CheckStatusPage.argument("detail", in: q) == "1"
            if let v = CheckStatusPage.argument("format", in: q) {
                if let f = StatusFormat(rawValue: v) { format = f } else { service.log.error("http upstream check, bad argument: \"\(v)\"") }
            }
            if let v = CheckStatusPage.argument("status", in: q) {
                switch v.lowercased() {
                case "up": filter = false
                case "down": filter = true
                default: service.log.error("http upstream check, bad argument: \"\(v)\"")
                }
            }
        }
        let type = CheckStatusPage.contentType(format)
        if method == "HEAD" { return Page(status: 200, contentType: type, body: []) }
        let peers = service.config.checkedPeers
        // Checked upstreams with `resolve` servers list the peers their names brought, after the configured ones.
        let resolving = service.config.resolvingUpstreams
        guard !peers.isEmpty || resolving.contains(where: { $0.check != nil }) else {
            service.log.error("http upstream check module can not find any check server, make sure you've added the check servers")
            return Page(status: 500, contentType: "text/html", body: errorBody(500))
        }
        var listed = peers.enumerated().map { (slot: $0.offset, upstream: $0.element.upstream, name: $0.element.address.description, check: $0.element.check) }
        for (slot, p) in service.segment.activeDynamicPeers() where p.upstream < resolving.count {
            let u = resolving[p.upstream]
            // A peer from etcd has no line of its own (its `server` is one past them) and says itself whether it is down.
            guard let check = u.check, p.server <= u.servers.count, p.server == u.storeLine ? !p.down : !u.servers[p.server].down else { continue }
            listed.append((slot, u.name, p.name, check))
        }
        var rows: [Row] = []
        for p in listed {
            let slot = service.segment.slot(p.slot)
            let s = slot.read()
            if let f = filter, f != s.down { continue }
            rows.append(Row(index: p.slot, upstream: p.upstream, name: p.name, down: s.down, rise: s.rise,
                            fall: s.fall, type: p.check.type.rawValue, port: p.check.port, state: s, admin: slot.admin))
        }
        let generation = service.segment.generation
        let nowMs = vigil_monotonic_ms(), wallMs = vigil_realtime_ms()
        let details = detail ? rows.map { Detail($0, nowMs: nowMs, wallMs: wallMs) } : nil
        let text: String
        switch format {
        case .csv: text = CheckStatusPage.csv(rows)
        case .json: text = CheckStatusPage.json(rows, generation: generation, details: details)
        case .prometheus:
            let beat = service.segment.checker.heartbeatMs
            text = CheckStatusPage.prometheus(rows, generation: generation, heartbeatAge: beat == 0 ? nil : nowMs - min(nowMs, beat))
        case .html: text = CheckStatusPage.html(rows, generation: generation, details: details)
        }
        return Page(status: 200, contentType: type, body: Array(text.utf8))
    }

    /// `POST ?upstream=NAME&server=ADDR&state=drain|maint|ready` (HAProxy's `set server … state`) where
    /// `check_status_admin` is on: the location's allow/deny already let the client in. The state goes into the
    /// peer's slot, where every worker's balancer reads it, and is carried over reloads.
    private func changeAdmin() -> Page {
        func text(_ status: Int, _ body: String) -> Page { Page(status: status, contentType: "text/plain", body: Array(body.utf8)) }
        let q = request.head.query ?? ""
        guard let upstream = CheckStatusPage.argument("upstream", in: q).map(CheckStatusPage.percentDecoded),
              let server = CheckStatusPage.argument("server", in: q).map(CheckStatusPage.percentDecoded),
              let stateText = CheckStatusPage.argument("state", in: q) else {
            return text(400, "upstream, server and state are required\n")
        }
        guard let state = AdminState(name: stateText.lowercased()) else {
            return text(400, "state must be drain, maint or ready\n")
        }
        let peers = service.config.checkedPeers
        let resolving = service.config.resolvingUpstreams
        // Configured peers, and those a `resolve` name brought (their slots numbered on from the configured ones).
        let matches = peers.indices.filter { peers[$0].upstream == upstream && peers[$0].address.description == server }
            + service.segment.activeDynamicPeers().filter { p in
                p.peer.upstream < resolving.count && resolving[p.peer.upstream].name == upstream && resolving[p.peer.upstream].check != nil
                    && p.peer.name == server
            }.map(\.slot)
        guard !matches.isEmpty else { return text(404, "no checked server \"\(server)\" in upstream \"\(upstream)\"\n") }
        for i in matches {
            let old = service.segment.slot(i).setAdmin(state)
            service.log.notice("server \(server) in upstream \"\(upstream)\" changed from \(old.name) to \(state.name) by client \(request.client.address)")
        }
        return Page(status: 200, contentType: "application/json",
                    body: Array("{\"upstream\": \(JSONText.quoted(upstream)), \"server\": \(JSONText.quoted(server)), \"state\": \"\(state.name)\"}\n".utf8))
    }

    /// `%3A` → `:` (a query value as a client may encode it).
    static func percentDecoded(_ s: String) -> String {
        guard s.contains("%") || s.contains("+") else { return s }
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%"), bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b == UInt8(ascii: "+") ? 0x20 : b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func errorBody(_ code: Int) -> [UInt8] {
        Array((ErrorPages.page(code, serverTokens: Version.serverToken) ?? "").utf8)
    }

    static func contentType(_ format: StatusFormat) -> String {
        switch format {
        case .csv, .prometheus: "text/plain"
        case .json: "application/json"
        case .html: "text/html"
        }
    }

    /// nginx's argument lookup: name case-insensitive, first occurrence, value not decoded.
    static func argument(_ name: String, in query: String) -> String? {
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            guard let eq = pair.firstIndex(of: "=") else { continue }
            if pair[..<eq].lowercased() == name { return String(pair[pair.index(after: eq)...]) }
        }
        return nil
    }

    static func html(_ rows: [Row], generation: UInt64, details: [Detail]? = nil) -> String {
        var s = """
            <!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"
            "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
            <html xmlns="http://www.w3.org/1999/xhtml">
            <head>
              <title>Nginx http upstream check status</title>
            </head>
            <body>
            <h1>Nginx http upstream check status</h1>
            <h2>Check upstream server number: \(rows.count), generation: \(generation)</h2>
            <table style="background-color:white" cellspacing="0"        cellpadding="3" border="1">
              <tr bgcolor="#C0C0C0">
                <th>Index</th>
                <th>Upstream</th>
                <th>Name</th>
                <th>Status</th>
                <th>Rise counts</th>
                <th>Fall counts</th>
                <th>Check type</th>
                <th>Check port</th>

            """
        if details != nil {
            for h in ["Last RTT (ms)", "Last error", "Checks", "Failures", "Last change (s ago)", "Down since", "Admin state"] {
                s += "    <th>\(h)</th>\n"
            }
        }
        s += "  </tr>\n"
        for (k, r) in rows.enumerated() {
            s += r.down ? "  <tr bgcolor=\"#FF0000\">\n" : "  <tr>\n"
            var cells = [String(r.index), CheckStatusPage.htmlEscape(r.upstream), r.name, r.down ? "down" : "up", String(r.rise), String(r.fall), r.type, String(r.port)]
            if let d = details?[k] {
                let change: String = d.lastChangeSeconds.map { String($0) } ?? "-"
                let since: String = d.downSince.map { String($0) } ?? "-"
                cells += [d.lastRTTms ?? "-", CheckStatusPage.htmlEscape(d.lastError ?? "-"), String(d.checks), String(d.failures)]
                cells += [change, since, d.admin]
            }
            for v in cells { s += "    <td>\(v)</td>\n" }
            s += "  </tr>\n"
        }
        return s + "</table>\n</body>\n</html>\n"
    }

    /// The reference prints names raw; a name like `we<ird>` would break the page.
    static func htmlEscape(_ s: String) -> String { HTMLText.escape(s) }

    /// `s` with each character `table` names replaced; nothing is copied when none occurs.
    static func escaped(_ s: String, _ table: [Character: String]) -> String {
        guard s.contains(where: { table[$0] != nil }) else { return s }
        var out = ""
        for c in s {
            if let r = table[c] { out += r } else { out.append(c) }
        }
        return out
    }

    static func csv(_ rows: [Row]) -> String {
        rows.map { "\($0.index),\($0.upstream),\($0.name),\($0.down ? "down" : "up"),\($0.rise),\($0.fall),\($0.type),\($0.port)\n" }.joined()
    }

    static func json(_ rows: [Row], generation: UInt64, details: [Detail]? = nil) -> String {
        var s = "{\"servers\": {\n  \"total\": \(rows.count),\n  \"generation\": \(generation),\n  \"server\": [\n"
        for (i, r) in rows.enumerated() {
            s += "    {\"index\": \(r.index), \"upstream\": \(JSONText.quoted(r.upstream)), \"name\": \"\(r.name)\", \"status\": \"\(r.down ? "down" : "up")\", \"rise\": \(r.rise), \"fall\": \(r.fall), \"type\": \"\(r.type)\", \"port\": \(r.port)"
            if let d = details?[i] {
                let rtt: String = d.lastRTTms ?? "null"
                let error: String = d.lastError.map { JSONText.quoted($0) } ?? "null"
                let change: String = d.lastChangeSeconds.map { String($0) } ?? "null"
                let since: String = d.downSince.map { String($0) } ?? "null"
                s += ", \"last_rtt_ms\": \(rtt), \"last_error\": \(error), \"checks\": \(d.checks), \"failures\": \(d.failures)"
                s += ", \"last_change_s\": \(change), \"down_since\": \(since), \"admin\": \"\(d.admin)\""
            }
            s += "}"
            s += i == rows.count - 1 ? "\n" : ",\n"
        }
        return s + "  ]\n}}\n"
    }

    /// Tengine's `prometheus` format (its metric names), with per-peer check metrics and the checker's heartbeat
    /// age added; label values escaped as the exposition format wants.
    static func prometheus(_ rows: [Row], generation: UInt64, heartbeatAge: UInt64? = nil) -> String {
        let up = rows.filter { !$0.down }.count
        func family(_ name: String, _ help: String, _ type: String) -> String { "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        func labels(_ r: Row, status: Bool = true) -> String {
            "index=\"\(r.index)\",upstream=\"\(labelEscape(r.upstream))\",name=\"\(labelEscape(r.name))\","
                + (status ? "status=\"\(r.down ? "down" : "up")\"," : "") + "type=\"\(r.type)\",port=\"\(r.port)\""
        }
        var s = family("nginx_upstream_count_total", "Nginx total number of servers", "gauge") + "nginx_upstream_count_total \(rows.count)\n"
        s += family("nginx_upstream_count_up", "Nginx total number of servers that are UP", "gauge") + "nginx_upstream_count_up \(up)\n"
        s += family("nginx_upstream_count_down", "Nginx total number of servers that are DOWN", "gauge") + "nginx_upstream_count_down \(rows.count - up)\n"
        s += family("nginx_upstream_count_generation", "Nginx generation", "gauge") + "nginx_upstream_count_generation \(generation)\n"
        func perPeer(_ name: String, _ help: String, _ type: String, status: Bool = false, extraLabel: (Row) -> String = { _ in "" },
                     _ value: (Row) -> String) {
            s += family(name, help, type)
            for r in rows { s += "\(name){\(labels(r, status: status))\(extraLabel(r))} \(value(r))\n" }
        }
        perPeer("nginx_upstream_server_rise", "Nginx rise counter", "counter", status: true) { String($0.rise) }
        perPeer("nginx_upstream_server_fall", "Nginx fall counter", "counter", status: true) { String($0.fall) }
        perPeer("nginx_upstream_server_active", "Nginx active 1 for UP / 0 for DOWN", "gauge") { $0.down ? "0" : "1" }
        perPeer("nginx_upstream_server_check_duration_seconds", "Duration of the last check", "gauge") { decimal(UInt64($0.state.rttUs), places: 6) }
        perPeer("nginx_upstream_server_checks_total", "Checks made", "counter") { String($0.state.checks) }
        perPeer("nginx_upstream_server_failures_total", "Checks that failed", "counter") { String($0.state.failures) }
        perPeer("nginx_upstream_server_state_changes_total", "Up/down flips", "counter") { String($0.state.stateChanges) }
        perPeer("nginx_upstream_server_admin_state", "Operator state: 0 ready, 1 drain, 2 maint", "gauge",
                extraLabel: { ",state=\"\($0.admin.name)\"" }) { String($0.admin.rawValue) }
        if let heartbeatAge {
            s += family("nginx_upstream_checker_heartbeat_age_seconds", "Time since the checker's last heartbeat", "gauge")
            s += "nginx_upstream_checker_heartbeat_age_seconds \(decimal(heartbeatAge, places: 3))\n"
        }
        return s
    }

    /// The exposition format's label escapes: backslash, double quote, newline.
    static func labelEscape(_ s: String) -> String { escaped(s, labelEscapes) }
    static let labelEscapes: [Character: String] = ["\\": "\\\\", "\"": "\\\"", "\n": "\\n"]

    /// `units` in thousandths (places 3) or millionths (places 6) as a decimal: 213 → "0.213".
    static func decimal(_ units: UInt64, places: Int) -> String {
        var scale: UInt64 = 1
        for _ in 0..<places { scale *= 10 }
        let fraction = String(units % scale)
        return "\(units / scale)." + String(repeating: "0", count: places - fraction.count) + fraction
    }
}

import Config
import HTTP
import ShmTable

/// `check_status`: the reference module's page, byte for byte (check-module.md §6), minus its bugs:
/// the JSON stays valid under a status filter and with any upstream name, the DOCTYPE's public identifier
/// has its closing quote, and names are escaped in HTML.
struct StatusPage {
    let worker: WorkerProcess
    let request: RequestContext

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
    }

    func render() -> Page {
        let method = request.method
        guard method == "GET" || method == "HEAD" else { return Page(status: 405, contentType: "text/html", body: errorBody(405)) }
        var format = request.settings.checkStatusFormat ?? "html"
        var filter: Bool?   // true: only down, false: only up
        if let q = request.head.query {
            if let v = StatusPage.argument("format", in: q) {
                if ["html", "csv", "json", "prometheus"].contains(v) { format = v } else { worker.log.error("http upstream check, bad argument: \"\(v)\"") }
            }
            if let v = StatusPage.argument("status", in: q) {
                switch v.lowercased() {
                case "up": filter = false
                case "down": filter = true
                default: worker.log.error("http upstream check, bad argument: \"\(v)\"")
                }
            }
        }
        let type = StatusPage.contentType(format)
        if method == "HEAD" { return Page(status: 200, contentType: type, body: []) }
        let peers = worker.config.checkedPeers
        guard !peers.isEmpty else {
            worker.log.error("http upstream check module can not find any check server, make sure you've added the check servers")
            return Page(status: 500, contentType: "text/html", body: errorBody(500))
        }
        var rows: [Row] = []
        for (i, p) in peers.enumerated() {
            let s = worker.segment.slot(i).read()
            if let f = filter, f != s.down { continue }
            rows.append(Row(index: i, upstream: p.upstream, name: p.address.description, down: s.down, rise: s.rise,
                            fall: s.fall, type: p.check.type.rawValue, port: p.check.port))
        }
        let generation = worker.segment.generation
        let text: String
        switch format {
        case "csv": text = StatusPage.csv(rows)
        case "json": text = StatusPage.json(rows, generation: generation)
        case "prometheus": text = StatusPage.prometheus(rows, generation: generation)
        default: text = StatusPage.html(rows, generation: generation)
        }
        return Page(status: 200, contentType: type, body: Array(text.utf8))
    }

    private func errorBody(_ code: Int) -> [UInt8] {
        Array((Status.errorPage(code, serverTokens: "vigil/\(vigilVersionString)") ?? "").utf8)
    }

    static func contentType(_ format: String) -> String {
        switch format {
        case "csv", "prometheus": "text/plain"
        case "json": "application/json"
        default: "text/html"
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

    static func html(_ rows: [Row], generation: UInt64) -> String {
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
              </tr>

            """
        for r in rows {
            s += r.down ? "  <tr bgcolor=\"#FF0000\">\n" : "  <tr>\n"
            for v in [String(r.index), StatusPage.htmlEscape(r.upstream), r.name, r.down ? "down" : "up", String(r.rise), String(r.fall), r.type, String(r.port)] {
                s += "    <td>\(v)</td>\n"
            }
            s += "  </tr>\n"
        }
        return s + "</table>\n</body>\n</html>\n"
    }

    /// The reference prints names raw; a name like `we<ird>` would break the page.
    static func htmlEscape(_ s: String) -> String {
        guard s.contains(where: { "&<>\"".contains($0) }) else { return s }
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    static func csv(_ rows: [Row]) -> String {
        rows.map { "\($0.index),\($0.upstream),\($0.name),\($0.down ? "down" : "up"),\($0.rise),\($0.fall),\($0.type),\($0.port)\n" }.joined()
    }

    static func json(_ rows: [Row], generation: UInt64) -> String {
        var s = "{\"servers\": {\n  \"total\": \(rows.count),\n  \"generation\": \(generation),\n  \"server\": [\n"
        for (i, r) in rows.enumerated() {
            s += "    {\"index\": \(r.index), \"upstream\": \(JSONText.quoted(r.upstream)), \"name\": \"\(r.name)\", \"status\": \"\(r.down ? "down" : "up")\", \"rise\": \(r.rise), \"fall\": \(r.fall), \"type\": \"\(r.type)\", \"port\": \(r.port)}"
            s += i == rows.count - 1 ? "\n" : ",\n"
        }
        return s + "  ]\n}}\n"
    }

    /// Tengine's `prometheus` format.
    static func prometheus(_ rows: [Row], generation: UInt64) -> String {
        let up = rows.filter { !$0.down }.count
        var s = "# HELP nginx_upstream_count_total Nginx total number of servers\n# TYPE nginx_upstream_count_total gauge\nnginx_upstream_count_total \(rows.count)\n"
        s += "# HELP nginx_upstream_count_up Nginx total number of servers that are UP\n# TYPE nginx_upstream_count_up gauge\nnginx_upstream_count_up \(up)\n"
        s += "# HELP nginx_upstream_count_down Nginx total number of servers that are DOWN\n# TYPE nginx_upstream_count_down gauge\nnginx_upstream_count_down \(rows.count - up)\n"
        s += "# HELP nginx_upstream_count_generation Nginx generation\n# TYPE nginx_upstream_count_generation gauge\nnginx_upstream_count_generation \(generation)\n"
        s += "# HELP nginx_upstream_server_rise Nginx rise counter\n# TYPE nginx_upstream_server_rise counter\n"
        for r in rows {
            s += "nginx_upstream_server_rise{index=\"\(r.index)\",upstream=\"\(r.upstream)\",name=\"\(r.name)\",status=\"\(r.down ? "down" : "up")\",type=\"\(r.type)\",port=\"\(r.port)\"} \(r.rise)\n"
        }
        s += "# HELP nginx_upstream_server_fall Nginx fall counter\n# TYPE nginx_upstream_server_fall counter\n"
        for r in rows {
            s += "nginx_upstream_server_fall{index=\"\(r.index)\",upstream=\"\(r.upstream)\",name=\"\(r.name)\",status=\"\(r.down ? "down" : "up")\",type=\"\(r.type)\",port=\"\(r.port)\"} \(r.fall)\n"
        }
        s += "# HELP nginx_upstream_server_active Nginx active 1 for UP / 0 for DOWN\n# TYPE nginx_upstream_server_active gauge\n"
        for r in rows {
            s += "nginx_upstream_server_active{index=\"\(r.index)\",upstream=\"\(r.upstream)\",name=\"\(r.name)\",type=\"\(r.type)\",port=\"\(r.port)\"} \(r.down ? 0 : 1)\n"
        }
        return s
    }
}

import Config
import Script

/// The names of the servers that listen on one address, looked up as nginx does: an exact name, then the
/// most specific leading wildcard (`*.example.com`; `.example.com` is both `example.com` and
/// `*.example.com`), then the most specific trailing wildcard (`www.example.*`), then the regexes in the order
/// they were written. The first server to claim a name keeps it. A server without `server_name` has the name
/// "", which is what a request without a Host looks for.
struct ServerNames {
    private var exact: [String: Server] = [:]
    /// `*.example.com` as ".example.com", longest first.
    private var leading: [(suffix: String, server: Server)] = []
    /// `www.example.*` as "www.example.", longest first.
    private var trailing: [(prefix: String, server: Server)] = []
    private var regexes: [(regex: Regex, server: Server)] = []

    init(_ servers: [Server]) {
        for s in servers {
            for name in s.serverNames.isEmpty && s.serverNameRegexes.isEmpty ? [""] : s.serverNames {
                if name.hasPrefix("*.") {
                    leading.append((String(name.dropFirst()), s))
                } else if name.hasPrefix(".") {
                    leading.append((name, s))
                    if exact[String(name.dropFirst())] == nil { exact[String(name.dropFirst())] = s }
                } else if name.hasSuffix(".*") {
                    trailing.append((String(name.dropLast()), s))
                } else if exact[name] == nil {
                    exact[name] = s
                }
            }
            regexes += s.serverNameRegexes.map { ($0, s) }
        }
        // Stable sorts: of two equally specific names the first written wins.
        leading = leading.enumerated().sorted { ($0.element.suffix.utf8.count, -$0.offset) > ($1.element.suffix.utf8.count, -$1.offset) }.map(\.element)
        trailing = trailing.enumerated().sorted { ($0.element.prefix.utf8.count, -$0.offset) > ($1.element.prefix.utf8.count, -$1.offset) }.map(\.element)
    }

    var hasRegexes: Bool { !regexes.isEmpty }

    /// The server named by `host` (lowercased, without port or trailing dot), with the match of a regex name;
    /// nil when no name matches.
    func find(_ host: String) -> (server: Server, match: (Regex, Captures)?)? {
        if let s = exact[host] { return (s, nil) }
        if let w = leading.first(where: { host.utf8.count > $0.suffix.utf8.count && host.hasSuffix($0.suffix) }) { return (w.server, nil) }
        if let w = trailing.first(where: { host.utf8.count > $0.prefix.utf8.count && host.hasPrefix($0.prefix) }) { return (w.server, nil) }
        for (re, s) in regexes {
            if let m = re.match(host) { return (s, (re, m)) }
        }
        return nil
    }
}

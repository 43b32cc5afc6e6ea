import Config
import Script

/// The names of the servers that listen on one address, looked up as nginx does: an exact name, then the
/// most specific leading wildcard (`*.example.com`; `.example.com` is both `example.com` and
/// `*.example.com`), then the most specific trailing wildcard (`www.example.*`), then the regexes in the order
/// they were written. The first server to claim a name keeps it. A server without `server_name` has the name
/// "", which is what a request without a Host looks for.
struct ServerNames {
    private var exact: [String: Server] = [:]
    private var wildcards = WildcardNames<Server>()
    private var regexes: [(regex: Regex, server: Server)] = []

    init(_ servers: [Server]) {
        for s in servers {
            for name in s.serverNames.isEmpty && s.serverNameRegexes.isEmpty ? [""] : s.serverNames {
                var exactName = Substring(name)
                if WildcardNames<Server>.isWildcard(name) {
                    wildcards.add(name, s)
                    guard name.hasPrefix(".") else { continue }
                    exactName = exactName.dropFirst()
                }
                if exact[String(exactName)] == nil { exact[String(exactName)] = s }
            }
            regexes += s.serverNameRegexes.map { ($0, s) }
        }
    }

    var hasRegexes: Bool { !regexes.isEmpty }

    /// The server named by `host` (lowercased, without port or trailing dot), with the match of a regex name;
    /// nil when no name matches.
    func find(_ host: String) -> (server: Server, match: (Regex, Captures)?)? {
        if let s = exact[host] { return (s, nil) }
        if let s = wildcards.find(host) { return (s, nil) }
        for (re, s) in regexes {
            if let m = re.match(host) { return (s, (re, m)) }
        }
        return nil
    }
}

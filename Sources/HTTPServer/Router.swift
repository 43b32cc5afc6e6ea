import Config
import HTTP
import Script

/// Picks the server block (by listening address and Host) and the location (nginx's order:
/// exact, longest prefix, `^~` stops its level's regexes, regexes in order — nested ones first — else the prefix).
public final class Router {
    struct ServerChoice {
        let servers: [Server]
        let defaultServer: Server
    }

    private var byAddress: [ListenAddress: ServerChoice] = [:]

    init(config: Configuration) {
        guard let http = config.http else { return }
        var groups: [ListenAddress: [Server]] = [:]
        var order: [ListenAddress] = []
        for s in http.servers {
            for l in s.listens where !(groups[l.address]?.contains { $0 === s } ?? false) {
                if groups[l.address] == nil { order.append(l.address) }
                groups[l.address, default: []].append(s)
            }
        }
        for addr in order {
            let servers = groups[addr]!
            let def = servers.first { $0.listens.contains { $0.address == addr && $0.defaultServer } } ?? servers[0]
            byAddress[addr] = ServerChoice(servers: servers, defaultServer: def)
        }
    }

    public func server(for address: ListenAddress, host: String?) -> Server? { route(address, host: host)?.server }

    /// The server for a Host (nginx's order: exact name, `*.`/`.` wildcards, `.*` wildcards, regexes in order,
    /// else the default server), with the match of a regex name, whose groups the request's variables take.
    public func route(_ address: ListenAddress, host: String?) -> (server: Server, match: (Regex, Captures)?)? {
        guard let choice = byAddress[address] else { return nil }
        // One server without regex names on the address takes every Host: nothing to compare.
        if choice.servers.count == 1 && choice.defaultServer.serverNameRegexes.isEmpty { return (choice.defaultServer, nil) }
        guard let h = host.map(HostName.serverName), !h.isEmpty else { return (choice.defaultServer, nil) }
        if let exact = choice.servers.first(where: { $0.serverNames.contains(h) }) { return (exact, nil) }
        // "*.example.com" and ".example.com" (the latter matches example.com itself too).
        for s in choice.servers {
            if s.serverNames.contains(where: { Wildcard.matches(h, $0) }) { return (s, nil) }
        }
        for s in choice.servers {
            for re in s.serverNameRegexes {
                if let m = re.match(h) { return (s, (re, m)) }
            }
        }
        return (choice.defaultServer, nil)
    }

    /// The location for `path`, and for a regex location the match: its groups are the request's `$1`…`$9`
    /// and named variables, as in nginx.
    public func location(in server: Server, path: String) -> (location: Location?, match: (Regex, Captures)?) {
        var matched: Location?, captures: (Regex, Captures)?
        _ = find(server.locations, path: path, matched: &matched, captures: &captures)
        return (matched, captures)
    }

    /// As nginx's: an exact match ends the search; otherwise the longest prefix is
    /// remembered and its nested locations searched; then, unless the prefix matched at *this* level is
    /// `^~`, this level's regexes in order (a match ends the search, after its own nested locations).
    /// Returns true when the search ended (exact or regex match).
    private func find(_ locs: [Location], path: String, matched: inout Location?, captures: inout (Regex, Captures)?) -> Bool {
        if let exact = locs.first(where: { $0.match == .exact && $0.pattern == path }) {
            matched = exact
            return true
        }
        var best: Location?
        // Bytes, as nginx compares them (String.hasPrefix walks characters).
        for l in locs where (l.match == .prefix || l.match == .preferentialPrefix) && path.utf8.starts(with: l.pattern.utf8) {
            if best == nil || l.pattern.utf8.count > best!.pattern.utf8.count { best = l }
        }
        if let b = best {
            matched = b
            if find(b.locations, path: path, matched: &matched, captures: &captures) { return true }
            if b.match == .preferentialPrefix { return false }
        }
        for l in locs {
            guard let r = l.regex else { continue }
            // Only an expression with groups makes captures (a match allocates nothing, a capture list does).
            if r.captureCount == 0 {
                guard r.matches(path) else { continue }
            } else {
                guard let m = r.match(path) else { continue }
                captures = (r, m)
            }
            matched = l
            _ = find(l.locations, path: path, matched: &matched, captures: &captures)
            return true
        }
        return false
    }
}

import Config
import HTTP
import Script

/// Picks the server block (by listening address and Host) and the location (nginx's order:
/// exact, longest prefix, `^~` stops its level's regexes, regexes in order — nested ones first — else the prefix).
public final class Router {
    struct ServerChoice {
        let servers: [Server]
        let defaultServer: Server
        let names: ServerNames
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
            byAddress[addr] = ServerChoice(servers: servers, defaultServer: def, names: ServerNames(servers))
        }
    }

    /// The default server of an address: what a connection reads request heads with before a Host is known.
    public func defaultServer(for address: ListenAddress) -> Server? { byAddress[address]?.defaultServer }

    /// The server for a Host (nil: the request has none, which is the name "") by its names, else the default
    /// server, with the match of a regex name, whose groups the request's variables take.
    public func route(_ address: ListenAddress, host: String?) -> (server: Server, match: (Regex, Captures)?)? {
        guard let choice = byAddress[address] else { return nil }
        // One server without regex names on the address takes every Host: nothing to compare.
        if choice.servers.count == 1 && !choice.names.hasRegexes { return (choice.defaultServer, nil) }
        return choice.names.find(host.map(HostName.serverName) ?? "") ?? (choice.defaultServer, nil)
    }

    /// The location for `path`, and whether nginx answers with a 301 to that location's name instead: `path` is
    /// a proxy_pass location's name without its final slash and no location is named `path` itself.
    public func location(in server: Server, path: String) -> (location: Location?, addsSlash: Bool) {
        var matched: Location?
        var addsSlash = false
        _ = find(server.locations, path: path, matched: &matched, addsSlash: &addsSlash)
        return (matched, addsSlash)
    }

    /// As nginx's: an exact match ends the search; otherwise the longest prefix is
    /// remembered and its nested locations searched; then, unless the prefix matched at *this* level is
    /// `^~`, this level's regexes in order (a match ends the search, after its own nested locations).
    /// Returns true when the search ended (exact or regex match, or a slash to add).
    private func find(_ locs: [Location], path: String, matched: inout Location?, addsSlash: inout Bool) -> Bool {
        if let exact = locs.first(where: { $0.match == .exact && $0.pattern == path }) {
            matched = exact
            return true
        }
        var best: Location?
        // Bytes, as nginx compares them (String.hasPrefix walks characters).
        for l in locs where (l.match == .prefix || l.match == .preferentialPrefix) && path.utf8.starts(with: l.pattern.utf8) {
            if best == nil || l.pattern.utf8.count > best!.pattern.utf8.count { best = l }
        }
        if best?.pattern.utf8.count != path.utf8.count, let slashed = locs.first(where: { Router.isPath($0, slashed: path) }) {
            matched = slashed
            addsSlash = true
            return true
        }
        if let b = best {
            matched = b
            if find(b.locations, path: path, matched: &matched, addsSlash: &addsSlash) { return true }
            if b.match == .preferentialPrefix { return false }
        }
        for l in locs {
            if let r = l.regex, r.matches(path) {
                matched = l
                _ = find(l.locations, path: path, matched: &matched, addsSlash: &addsSlash)
                return true
            }
        }
        return false
    }

    /// A location named `path` and a slash, whose requests go to proxy_pass.
    private static func isPath(_ l: Location, slashed path: String) -> Bool {
        guard l.match != .named, l.regex == nil, case .proxy = l.content else { return false }
        return l.pattern.utf8.count == path.utf8.count + 1 && l.pattern.utf8.last == UInt8(ascii: "/") && l.pattern.utf8.starts(with: path.utf8)
    }
}

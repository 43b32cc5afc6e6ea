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
    /// Addresses some `listen … http2` names: HTTP/2 for all their servers, as nginx ORs listen options.
    private var http2Addresses: Set<ListenAddress> = []

    init(config: Configuration) {
        guard let http = config.http else { return }
        var groups: [ListenAddress: [Server]] = [:]
        var order: [ListenAddress] = []
        for s in http.servers {
            for l in s.listens where l.http2 { http2Addresses.insert(l.address) }
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

    /// Whether `server` speaks HTTP/2 on `address`: `listen … http2` there, or its own `http2 on`.
    public func speaksHTTP2(_ address: ListenAddress, _ server: Server) -> Bool {
        http2Addresses.contains(address) || server.settings.http2.enabled
    }

    /// The server for a Host (nil: the request has none, which is the name "") by its names, else the default
    /// server, with the match of a regex name, whose groups the request's variables take.
    public func route(_ address: ListenAddress, host: String?) -> (server: Server, match: (Regex, Captures)?)? {
        guard let choice = byAddress[address] else { return nil }
        // One server without regex names on the address takes every Host: nothing to compare.
        if choice.servers.count == 1 && !choice.names.hasRegexes { return (choice.defaultServer, nil) }
        return choice.names.find(host.map(HostName.serverName) ?? "") ?? (choice.defaultServer, nil)
    }

    /// Whether `name` finds a server by its names rather than falling to the default (nginx keeps an SNI
    /// name only then, and refuses other Hosts on that connection when their server verifies clients).
    public func namesServer(_ address: ListenAddress, _ name: String) -> Bool {
        guard let choice = byAddress[address], choice.servers.count > 1 || choice.names.hasRegexes else { return false }
        return choice.names.find(HostName.serverName(name)) != nil
    }

    /// The location for `path`: for a regex location with the match, whose groups are the request's `$1`…`$9`
    /// and named variables, as in nginx; `addsSlash` when nginx answers with a 301 to that location's name
    /// instead (`path` is a proxy_pass location's name without its final slash and no location is named `path`).
    public func location(in server: Server, path: String) -> LocationChoice {
        var choice = LocationChoice()
        _ = find(server.locations, path: path, &choice)
        return choice
    }

    /// As nginx's: an exact match ends the search; otherwise the longest prefix is
    /// remembered and its nested locations searched; then, unless the prefix matched at *this* level is
    /// `^~`, this level's regexes in order (a match ends the search, after its own nested locations).
    /// Returns true when the search ended (exact or regex match, or a slash to add).
    private func find(_ locs: [Location], path: String, _ choice: inout LocationChoice) -> Bool {
        if let exact = locs.first(where: { $0.match == .exact && $0.pattern == path }) {
            choice.location = exact
            return true
        }
        var best: Location?
        // Bytes, as nginx compares them (String.hasPrefix walks characters).
        for l in locs where (l.match == .prefix || l.match == .preferentialPrefix) && path.utf8.starts(with: l.pattern.utf8) {
            if best == nil || l.pattern.utf8.count > best!.pattern.utf8.count { best = l }
        }
        if best?.pattern.utf8.count != path.utf8.count, let slashed = locs.first(where: { Router.isPath($0, slashed: path) }) {
            choice.location = slashed
            choice.addsSlash = true
            return true
        }
        if let b = best {
            choice.location = b
            if find(b.locations, path: path, &choice) { return true }
            if b.match == .preferentialPrefix { return false }
        }
        for l in locs {
            guard let r = l.regex else { continue }
            // Only an expression with groups makes captures (a match allocates nothing, a capture list does).
            if r.captureCount == 0 {
                guard r.matches(path) else { continue }
            } else {
                guard let m = r.match(path) else { continue }
                choice.match = (r, m)
            }
            choice.location = l
            _ = find(l.locations, path: path, &choice)
            return true
        }
        return false
    }

    /// A location named `path` and a slash, whose requests go to proxy_pass.
    private static func isPath(_ l: Location, slashed path: String) -> Bool {
        guard l.match != .named, l.regex == nil, case .proxy = l.content else { return false }
        return l.pattern.utf8.count == path.utf8.count + 1 && l.pattern.utf8.last == UInt8(ascii: "/") && l.pattern.utf8.starts(with: path.utf8)
    }
}

/// The location a path chose, with the match of a regex location's expression, or the 301 nginx answers instead.
public struct LocationChoice {
    public var location: Location?
    public var match: (Regex, Captures)?
    public var addsSlash = false

    public init(location: Location? = nil) { self.location = location }
}

#if canImport(Glibc)
import Glibc
#endif

/// A server of an upstream's `state` file (NGINX Plus's): what the upstream API lists, adds, changes and
/// removes, kept in the file as the `server` line nginx's configuration would have, with its API id after it in
/// a comment, so the file can also be read or edited by hand.
public struct StateServer: Equatable, Sendable {
    public var id: Int
    /// A numeric address and port.
    public var address: PeerAddress
    public var weight = 1
    public var maxFails = 1
    /// Milliseconds.
    public var failTimeout = 10_000
    /// 0: no limit.
    public var maxConns = 0
    public var backup = false
    public var down = false

    public init(id: Int, address: PeerAddress) {
        self.id = id
        self.address = address
    }

    public var line: String {
        "server \(address) weight=\(weight) max_fails=\(maxFails) fail_timeout=\(failTimeout)ms"
            + (maxConns > 0 ? " max_conns=\(maxConns)" : "") + (backup ? " backup" : "")
            + (down ? " down" : "") + "; # id=\(id)"
    }

    /// `ADDRESS:PORT` or `[IPv6]:PORT`, numeric (the API takes no names: nothing would re-resolve them).
    public static func address(_ text: String) -> PeerAddress? {
        guard let hp = Resolver.splitHostPort(text), let port = hp.port.flatMap(Values.port), port > 0, Resolver.isNumeric(hp.host) else { return nil }
        return PeerAddress(host: hp.host, port: port, isIPv6: hp.host.contains(":"))
    }
}

public enum StateFile {
    /// The servers of a state file's text; a line that is not one is an error naming it (a file edited by hand).
    public static func parse(_ text: String) -> Result<[StateServer], StateFileError> {
        var servers: [StateServer] = []
        // Ids seen, and the next one for a line without: a file of ten thousand servers is read in one pass, by
        // bytes (splitting the text by Characters cost more than the rest).
        var ids = Set<Int>()
        var nextID = 0
        let space = { (b: UInt8) in b == 0x20 || b == 0x09 || b == 0x0D }
        for (n, raw) in text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            var line = raw
            var id: Int?
            if let hash = line.firstIndex(of: UInt8(ascii: "#")) {
                let comment = line[line.index(after: hash)...].drop(while: space)
                if comment.starts(with: "id=".utf8) { id = Int(String(decoding: comment.dropFirst(3), as: UTF8.self)) }
                line = line[..<hash]
            }
            var words = line.split(whereSeparator: space).map { String(decoding: $0, as: UTF8.self) }
            guard !words.isEmpty else { continue }
            guard words[0] == "server", words.count >= 2, words[words.count - 1].hasSuffix(";") else { return .failure(.init(line: n + 1)) }
            words[words.count - 1].removeLast()
            if words.last == "" { words.removeLast() }
            guard words.count >= 2, let address = StateServer.address(words[1]) else { return .failure(.init(line: n + 1)) }
            var s = StateServer(id: id ?? nextID, address: address)
            for a in words.dropFirst(2) {
                if a.hasPrefix("weight="), let v = Values.plainNumber(a.dropFirst(7)), v > 0 { s.weight = v }
                else if a.hasPrefix("max_fails="), let v = Values.plainNumber(a.dropFirst(10)) { s.maxFails = v }
                else if a.hasPrefix("fail_timeout="), let v = Values.msec(String(a.dropFirst(13))) { s.failTimeout = v }
                else if a.hasPrefix("max_conns="), let v = Values.plainNumber(a.dropFirst(10)) { s.maxConns = v }
                else if a == "backup" { s.backup = true }
                else if a == "down" { s.down = true }
                else { return .failure(.init(line: n + 1)) }
            }
            guard ids.insert(s.id).inserted else { return .failure(.init(line: n + 1)) }
            nextID = max(nextID, s.id + 1)
            servers.append(s)
        }
        return .success(servers)
    }

    public static func render(_ servers: [StateServer]) -> String {
        servers.map { $0.line + "\n" }.joined()
    }

    /// The file's text: empty when there is none yet (a new upstream starts with no servers).
    public static func read(_ path: String) -> Result<String, FileBytes.Failure> {
        switch FileBytes.contents(path, maxSize: 16 << 20) {
        case .success(let bytes): return .success(String(decoding: bytes, as: UTF8.self))
        case .failure(let e): return e.errno == ENOENT ? .success("") : .failure(e)
        }
    }

    /// Writes `servers` whole (FileBytes.replace: no reader sees half); the errno of a failure, or nil.
    public static func write(_ servers: [StateServer], to path: String) -> Int32? {
        FileBytes.replace(path, with: Array(render(servers).utf8))
    }
}

public struct StateFileError: Error, Equatable, CustomStringConvertible {
    public let line: Int
    public var description: String { "invalid server line at line \(line)" }
}

import Core

/// What nginx-upsync-module keeps in a key-value store for an upstream: one key per server under the upstream's
/// prefix, named `ADDRESS:PORT`, whose value is JSON with the server's parameters (`{"weight":1,"max_fails":2,
/// "fail_timeout":10,"down":0}`; any of them may be left out, and an empty value means all defaults, upsync's).
public struct UpsyncPeer: Equatable, Sendable {
    /// As the key names it: `127.0.0.1:8080` or `[::1]:8080`.
    public let name: String
    public let host: String
    public let port: UInt16
    public let isIPv6: Bool
    public var weight = 1
    public var maxFails = 2
    /// Seconds.
    public var failTimeout = 10
    public var down = false
    public var backup = false

    /// The server a key and its value describe, or why they describe none (for the log line).
    public static func parse(key: String, value: [UInt8]) -> Result<UpsyncPeer, UpsyncError> {
        let name = String(key.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
        guard var peer = UpsyncPeer(name: name) else { return .failure(.badKey(key)) }
        guard value.contains(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) else { return .success(peer) }
        guard let json = JSONValue.parse(value), case .object = json else { return .failure(.notJSON(key)) }
        func whole(_ field: String, _ range: ClosedRange<Int>) -> Result<Int?, UpsyncError> {
            guard let v = json[field] else { return .success(nil) }
            // upsync writes its numbers bare, but a string of digits is what many tools put there.
            guard let n = v.integer ?? v.string.flatMap({ Int($0) }), range.contains(n) else { return .failure(.badField(key, field)) }
            return .success(n)
        }
        do {
            if let n = try whole("weight", 1...1_000_000).get() { peer.weight = n }
            if let n = try whole("max_fails", 0...1_000_000).get() { peer.maxFails = n }
            if let n = try whole("fail_timeout", 0...31_536_000).get() { peer.failTimeout = n }
            if let n = try whole("down", 0...1).get() { peer.down = n == 1 }
            if let n = try whole("backup", 0...1).get() { peer.backup = n == 1 }
        } catch {
            return .failure(error)
        }
        return .success(peer)
    }

    /// `ADDRESS:PORT` with a numeric IPv4 address, or `[IPv6]:PORT`.
    public init?(name: String) {
        let host: Substring, portText: Substring
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]"), name[name.index(after: close)...].hasPrefix(":") else { return nil }
            host = name[name.index(after: name.startIndex)..<close]
            portText = name[name.index(close, offsetBy: 2)...]
        } else {
            guard let colon = name.lastIndex(of: ":") else { return nil }
            host = name[..<colon]
            portText = name[name.index(after: colon)...]
        }
        guard let port = UInt16(portText), port > 0 else { return nil }
        let isIPv6 = name.hasPrefix("[")
        guard let bytes = IPAddress.bytes(String(host)), bytes.count == (isIPv6 ? 16 : 4) else { return nil }
        self.name = name
        self.host = String(host)
        self.port = port
        self.isIPv6 = isIPv6
    }

    /// The line nginx-upsync-module dumps for the server: an `upstream` block can `include` the dump, so a
    /// restart without the store serves the last set it had.
    public var serverLine: String {
        "server \(name) weight=\(weight) max_fails=\(maxFails) fail_timeout=\(failTimeout)s" + (down ? " down" : "") + (backup ? " backup" : "") + ";"
    }
}

public enum UpsyncError: Error, Equatable, CustomStringConvertible {
    case badKey(String)
    case notJSON(String)
    case badField(String, String)

    public var description: String {
        switch self {
        case .badKey(let k): return "key \"\(k)\" is not ADDRESS:PORT"
        case .notJSON(let k): return "value of \"\(k)\" is not a JSON object"
        case .badField(let k, let f): return "value of \"\(k)\" has an invalid \"\(f)\""
        }
    }
}

/// etcd's v3 API through its JSON gateway (etcd 3.4's `/v3/kv/range` and `/v3/watch` over HTTP/1.1): the
/// request bodies, and the replies read into keys, values and revisions. Keys and values travel in base64.
public enum EtcdV3 {
    public struct KeyValue: Equatable, Sendable {
        public let key: String
        public let value: [UInt8]
    }

    public enum Change: Equatable, Sendable {
        case put(KeyValue)
        case delete(key: String)
    }

    /// Every key under `prefix`: the range [prefix, prefix with its last byte plus one).
    public static func rangeBody(prefix: String) -> String {
        #"{"key":"\#(base64(prefix))","range_end":"\#(base64(rangeEnd(prefix)))"}"#
    }

    /// A watch of the keys under `prefix` from `revision` on.
    public static func watchBody(prefix: String, from revision: Int) -> String {
        #"{"create_request":{"key":"\#(base64(prefix))","range_end":"\#(base64(rangeEnd(prefix)))","start_revision":"\#(revision)"}}"#
    }

    /// A range reply: its keys and values, and the store's revision they are from.
    public static func rangeReply(_ body: [UInt8]) -> (pairs: [KeyValue], revision: Int)? {
        guard let doc = JSONValue.parse(body), let revision = revision(doc["header"]) else { return nil }
        var pairs: [KeyValue] = []
        for kv in doc["kvs"]?.array ?? [] {
            guard let pair = keyValue(kv) else { return nil }
            pairs.append(pair)
        }
        return (pairs, revision)
    }

    public enum WatchMessage: Equatable, Sendable {
        case created
        /// Changes up to `revision`, in order.
        case changes([Change], revision: Int)
        /// The watch ended on the server's side (compacted past its revision, or canceled): start over.
        case ended(String)
    }

    /// One message of a watch stream (the gateway writes one JSON document a line).
    public static func watchMessage(_ line: [UInt8]) -> WatchMessage? {
        guard let doc = JSONValue.parse(line) else { return nil }
        if let error = doc["error"] { return .ended(error["message"]?.string ?? "error") }
        guard let result = doc["result"] else { return nil }
        if let compacted = result["compact_revision"], let n = number(compacted), n > 0 { return .ended("compacted at revision \(n)") }
        if result["canceled"]?.bool == true { return .ended(result["cancel_reason"]?.string ?? "canceled") }
        guard let events = result["events"]?.array else {
            return result["created"]?.bool == true ? .created : .changes([], revision: revision(result["header"]) ?? 0)
        }
        var changes: [Change] = []
        for event in events {
            guard let kv = event["kv"] else { return nil }
            if event["type"]?.string == "DELETE" {
                guard let key = kv["key"]?.string.flatMap(decoded) else { return nil }
                changes.append(.delete(key: key))
            } else {
                guard let pair = keyValue(kv) else { return nil }
                changes.append(.put(pair))
            }
        }
        guard let rev = revision(result["header"]) else { return nil }
        return .changes(changes, revision: rev)
    }

    // The gateway writes 64-bit numbers as strings.
    private static func number(_ v: JSONValue?) -> Int? { v?.integer ?? v?.string.flatMap { Int($0) } }
    private static func revision(_ header: JSONValue?) -> Int? { number(header?["revision"]) }

    private static func keyValue(_ kv: JSONValue) -> KeyValue? {
        guard let key = kv["key"]?.string.flatMap(decoded) else { return nil }
        // A value left empty is not in the reply at all.
        guard let value = kv["value"].map({ $0.string.flatMap { Base64.decode($0) } }) ?? [] else { return nil }
        return KeyValue(key: key, value: value)
    }

    private static func decoded(_ text: String) -> String? {
        Base64.decode(text).flatMap { String(validating: $0, as: UTF8.self) }
    }

    private static func base64(_ bytes: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        Base64.encode(bytes, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func base64(_ text: String) -> String { base64(text.utf8) }

    /// etcd's prefix range end: the prefix with its last byte that is not 0xFF incremented, the rest cut.
    static func rangeEnd(_ prefix: String) -> [UInt8] {
        var end = Array(prefix.utf8)
        while let last = end.last {
            if last < 0xFF { end[end.count - 1] = last + 1; return end }
            end.removeLast()
        }
        return [0]
    }
}

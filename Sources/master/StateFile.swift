#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import ShmTable

/// `check_state_file` (HAProxy's server-state-file): each checked peer's verdict and admin state, written by
/// the master every interval and at stop (a temporary file renamed over the old one, so a reader never sees
/// half a file), read at start so that a restarted Vigil neither sends traffic to a peer that was down nor
/// holds back one that was up. A peer resumes only when its upstream, address and check settings are the
/// ones it was saved with (SegmentPlan.key). The file ends with a line that says so: without it the file
/// was cut short and is not used.
enum StateFile {
    static let header = "# vigil check state 1"
    static let trailer = "# end"

    struct Saved: Equatable {
        var down: Bool
        var admin: AdminState
    }

    /// One line per peer: the hash of its identity, then what it resumes with, then names for a reader.
    static func render(peers: [CheckedPeer], segment: Segment) -> String {
        var out = header + "\n"
        for (i, p) in peers.enumerated() where i < segment.peerCount {
            let slot = segment.slot(i)
            let s = slot.read()
            out += "\(identity(key: SegmentPlan.key(p))) \(s.down ? "down" : "up") \(slot.admin.name) \(p.upstream) \(p.address)\n"
        }
        return out + trailer + "\n"
    }

    /// FNV-1a of a peer's SegmentPlan.key, in hex: the key holds the check's request bytes, which a line cannot.
    static func identity(key: String) -> String {
        let hex = String(SegmentPlan.fnv1a(key), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The saved states by identity, or why the file cannot be used (then nothing is resumed).
    static func parse(_ text: String) -> Result<[String: Saved], ParseFailure> {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == Substring(header) else { return .failure(ParseFailure("it is not a vigil check state file")) }
        guard lines.count >= 2, lines.dropLast().last == Substring(trailer), lines.last == "" else {
            return .failure(ParseFailure("it is truncated"))
        }
        var saved: [String: Saved] = [:]
        for (n, line) in lines.dropFirst().dropLast(2).enumerated() {
            let f = line.split(separator: " ", maxSplits: 4)
            guard f.count == 5, f[0].count == 16, f[0].allSatisfy(\.isHexDigit), f[1] == "up" || f[1] == "down",
                  let admin = AdminState(name: String(f[2])) else {
                return .failure(ParseFailure("line \(n + 2) is not a peer's state"))
            }
            saved[String(f[0])] = Saved(down: f[1] == "down", admin: admin)
        }
        return .success(saved)
    }

    struct ParseFailure: Error { let reason: String; init(_ r: String) { reason = r } }

    /// Reads the file at start; a missing, truncated or garbage one gives a warning and an empty table.
    static func load(_ path: String, warn: (String) -> Void) -> [String: Saved] {
        let bytes: [UInt8]
        switch FileBytes.contents(path) {
        case .success(let b): bytes = b
        case .failure(let f):
            if f.errno != ENOENT { warn("open() \"\(path)\" failed (\(f.text)), peers start from default_down") }
            return [:]
        }
        switch parse(String(decoding: bytes, as: UTF8.self)) {
        case .success(let saved): return saved
        case .failure(let f):
            warn("check state file \"\(path)\" is not used: \(f.reason), peers start from default_down")
            return [:]
        }
    }

    /// Writes `text` to `path` through a temporary file and rename(); nil, or the failure to log.
    static func save(_ text: String, to path: String) -> String? {
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return "open() \"\(temp)\" failed (\(Errno.text(errno)))" }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                close(fd)
                unlink(temp)
                return "write() \"\(temp)\" failed (\(Errno.text(e)))"
            }
            bytes = bytes.dropFirst(n)
        }
        close(fd)
        guard rename(temp, path) == 0 else {
            let e = errno
            unlink(temp)
            return "rename() \"\(temp)\" to \"\(path)\" failed (\(Errno.text(e)))"
        }
        return nil
    }
}

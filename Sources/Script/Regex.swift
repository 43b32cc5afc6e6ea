import CPCRE2

/// A PCRE2 regular expression, as nginx compiles them (`location ~`, `rewrite`, `if (… ~ …)`, `map`,
/// `server_name ~`): compiled and JIT-compiled once, when the configuration loads. Matching is for one
/// thread at a time (a worker's loop): the match data is the expression's own.
/// Unchecked Sendable: compiled while the configuration loads; afterwards only one thread (a worker's loop)
/// matches with it, through its own match data.
public final class Regex: @unchecked Sendable {
    private let code: OpaquePointer
    private let matchData: OpaquePointer
    /// Numbered groups ($1…$9 in nginx).
    public let captureCount: Int
    /// Named groups, `(?<name>…)`: nginx turns them into variables.
    public let names: [(name: String, group: Int)]
    public let pattern: String
    /// The configuration variable each named group sets when the expression matches in a script.
    public var bindings: [(group: Int, variable: Int)] = []

    public struct CompileError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Fails with nginx's wording: `pcre2_compile() failed: missing closing parenthesis in "(a" at ""`.
    public init(_ pattern: String, caseless: Bool = false) throws {
        self.pattern = pattern
        var err: Int32 = 0
        var offset = 0
        let bytes = Array(pattern.utf8)
        guard let c = bytes.withUnsafeBufferPointer({
            pcre2_compile_8($0.baseAddress, $0.count, caseless ? VIGIL_PCRE2_CASELESS : 0, &err, &offset, nil)
        }) else {
            var buf = [UInt8](repeating: 0, count: 256)
            _ = pcre2_get_error_message_8(err, &buf, buf.count)
            let message = String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self)
            let rest = String(decoding: bytes[min(offset, bytes.count)...], as: UTF8.self)
            throw CompileError(description: "pcre2_compile() failed: \(message) in \"\(pattern)\" at \"\(rest)\"")
        }
        code = c
        _ = pcre2_jit_compile_8(c, VIGIL_PCRE2_JIT_COMPLETE)   // where JIT is unavailable, the interpreter runs
        var count: UInt32 = 0
        pcre2_pattern_info_8(c, VIGIL_PCRE2_INFO_CAPTURECOUNT, &count)
        captureCount = Int(count)
        var nameCount: UInt32 = 0, entrySize: UInt32 = 0
        var table: UnsafePointer<UInt8>?
        pcre2_pattern_info_8(c, VIGIL_PCRE2_INFO_NAMECOUNT, &nameCount)
        pcre2_pattern_info_8(c, VIGIL_PCRE2_INFO_NAMEENTRYSIZE, &entrySize)
        pcre2_pattern_info_8(c, VIGIL_PCRE2_INFO_NAMETABLE, &table)
        var names: [(String, Int)] = []
        if let table {
            for i in 0..<Int(nameCount) {
                let entry = table + i * Int(entrySize)
                let group = Int(entry[0]) << 8 | Int(entry[1])
                names.append((String(cString: entry + 2), group))
            }
        }
        self.names = names
        matchData = pcre2_match_data_create_from_pattern_8(c, nil)
    }

    deinit {
        pcre2_match_data_free_8(matchData)
        pcre2_code_free_8(code)
    }

    /// Whether `subject` matches anywhere (nginx's regexes are not anchored unless they say so).
    public func matches(_ subject: String) -> Bool {
        var s = subject
        return s.withUTF8 { pcre2_match_8(code, $0.baseAddress, $0.count, 0, 0, matchData, nil) >= 0 }
    }

    /// The match and its groups, or nil.
    public func match(_ subject: String) -> Captures? {
        var s = subject
        let rc = s.withUTF8 { pcre2_match_8(code, $0.baseAddress, $0.count, 0, 0, matchData, nil) }
        guard rc >= 0 else { return nil }
        let ov = pcre2_get_ovector_pointer_8(matchData)!
        var m = Captures(subject: s, groups: captureCount + 1)
        for g in 0...captureCount {
            // PCRE2_SIZE is size_t, which Swift sees as Int: PCRE2_UNSET (all ones) reads as -1.
            let a = ov[2 * g]
            if a >= 0 && (g == 0 || g < Int(rc)) { m.set(g, a, ov[2 * g + 1]) }
        }
        return m
    }
}

/// The groups of one match: `$0` (the whole match) to `$n`, as substrings of the subject. Groups 0…9 (all
/// nginx's `$n` reach) are kept inline, so a match allocates nothing; only named groups past 9 need an array.
public struct Captures {
    let subject: String
    let count: Int
    /// Start and end offsets of each group, -1 for one that took no part.
    private var first = InlineArray<20, Int32>(repeating: -1)
    private var more: [Int32] = []

    init(subject: String, groups: Int) {
        self.subject = subject
        self.count = groups
        if groups > 10 { more = Array(repeating: -1, count: 2 * (groups - 10)) }
    }

    /// Offset `k` of the flat list start0, end0, start1, end1, …
    private subscript(k: Int) -> Int32 {
        get { k < 20 ? first[k] : more[k - 20] }
        set { if k < 20 { first[k] = newValue } else { more[k - 20] = newValue } }
    }

    mutating func set(_ g: Int, _ start: Int, _ end: Int) {
        self[2 * g] = Int32(start)
        self[2 * g + 1] = Int32(end)
    }

    public func group(_ i: Int) -> String? {
        guard i >= 0 && i < count else { return nil }
        let a = Int(self[2 * i]), b = Int(self[2 * i + 1])
        guard a >= 0 else { return nil }
        let u = subject.utf8
        return String(decoding: u[u.index(u.startIndex, offsetBy: a)..<u.index(u.startIndex, offsetBy: b)], as: UTF8.self)
    }
}

/// `split_clients string $variable { 0.5% value; … * value; }`: the string's MurmurHash2 (nginx's) picks a part,
/// each part's share of the 32-bit hash space as its percentage, `*` the rest.
public final class SplitClients: ComputedVariable {
    public let source: Template
    /// (upper bound of the hash, value); a bound of 0 is `*`.
    private var parts: [(bound: UInt32, value: String)] = []
    private var hundredths: UInt64 = 0, last: UInt64 = 0
    public var volatile: Bool { false }

    public init(source: Template) { self.source = source }

    public enum AddError: Error { case invalidPercent, overHundred }

    /// One line, `12.5% value` or `* value`, in order.
    public func add(_ percent: String, value: String) throws(AddError) {
        if percent == "*" {
            hundredths = 10_000
            parts.append((0, value))
            return
        }
        guard percent.hasSuffix("%"), let share = SplitClients.hundredths(percent.dropLast()), share > 0 else { throw .invalidPercent }
        hundredths += share
        guard hundredths <= 10_000 else { throw .overHundred }
        last += share * 0xffff_ffff / 10_000
        parts.append((UInt32(last), value))
    }

    public func evaluate(_ ctx: ScriptContext) -> String {
        let hash = SplitClients.murmurHash2(Array(source.render(ctx).utf8))
        for p in parts where hash < p.bound || p.bound == 0 { return p.value }
        return ""
    }

    /// nginx's ngx_atofp with two places: "12.5" is 1250; more than two places is an error.
    static func hundredths(_ s: Substring) -> UInt64? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = UInt64(parts[0]) else { return nil }
        var fraction: UInt64 = 0
        if parts.count == 2 {
            guard (1...2).contains(parts[1].count), let f = UInt64(parts[1]) else { return nil }
            fraction = parts[1].count == 1 ? f * 10 : f
        }
        return whole * 100 + fraction
    }

    /// nginx's ngx_murmur_hash2 (MurmurHash2, seeded with the length).
    public static func murmurHash2(_ data: [UInt8]) -> UInt32 {
        let m: UInt32 = 0x5bd1_e995
        var h = UInt32(truncatingIfNeeded: data.count)
        var i = 0
        while data.count - i >= 4 {
            var k = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
            k &*= m
            k ^= k >> 24
            k &*= m
            h &*= m
            h ^= k
            i += 4
        }
        let rest = data.count - i
        if rest == 3 { h ^= UInt32(data[i + 2]) << 16 }
        if rest >= 2 { h ^= UInt32(data[i + 1]) << 8 }
        if rest >= 1 {
            h ^= UInt32(data[i])
            h &*= m
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return h
    }
}

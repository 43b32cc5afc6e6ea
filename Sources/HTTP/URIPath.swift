/// A request path as nginx reads it for routing and `$uri` (Core's URIText escapes one again).
public enum URIPath {
    static let slash = UInt8(ascii: "/"), dot = UInt8(ascii: "."), percent = UInt8(ascii: "%")

    /// The path with %-escapes decoded, "." and ".." segments resolved and, with `mergeSlashes`, runs of "/"
    /// made one; nil where nginx answers 400 (a ".." above the root, "%00", a malformed or cut escape) and,
    /// Vigil's own rule, where the result is not UTF-8 (a URI is text from here on, and an overlong form such as
    /// "%C0%AE" for "." must not reach routing or a backend as something else). `raw` is the path alone, before
    /// any "?" or "#". A decoded "/" or "." counts as one; a decoded "%", "#" or "?" is data.
    public static func normalised(_ raw: UnsafeRawBufferPointer, mergeSlashes: Bool) -> String? {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(raw.count, 1)) { out -> String? in
            guard let count = normalise(raw, mergeSlashes: mergeSlashes, into: out) else { return nil }
            return String(validating: UnsafeBufferPointer(rebasing: out[..<count]), as: UTF8.self)
        }
    }

    /// Where the reader is in the path it writes: inside a segment, just after a "/", after "/." or after "/..".
    private enum Position { case segment, slash, dot, dotDot }

    /// Writes the normal form of `raw` (which starts with "/") into `out`, which is at least as long; returns its
    /// length, or nil for a path nginx refuses.
    static func normalise(_ raw: UnsafeRawBufferPointer, mergeSlashes: Bool, into out: UnsafeMutableBufferPointer<UInt8>) -> Int? {
        var count = 0
        var at = Position.segment
        var i = 0
        while i < raw.count {
            var c = raw[i]
            i += 1
            if c == percent {
                guard i + 1 < raw.count, let high = hexValue(raw[i]), let low = hexValue(raw[i + 1]) else { return nil }
                i += 2
                c = high << 4 | low
                if c == 0 { return nil }
                if c == percent || c == UInt8(ascii: "#") || c == UInt8(ascii: "?") {
                    out[count] = c
                    count += 1
                    at = .segment
                    continue
                }
            }
            switch (at, c) {
            case (.segment, slash):
                out[count] = c
                count += 1
                at = .slash
            case (.slash, slash):
                if !mergeSlashes {
                    out[count] = c
                    count += 1
                }
            case (.dot, slash):
                count -= 1   // "/./" is "/"
                at = .slash
            case (.dotDot, slash):
                guard let parent = parentEnd(out, count) else { return nil }
                count = parent
                at = .slash
            case (.slash, dot), (.dot, dot):
                out[count] = c
                count += 1
                at = at == .slash ? .dot : .dotDot
            default:
                out[count] = c
                count += 1
                at = .segment
            }
        }
        switch at {
        case .dot: return count - 1
        case .dotDot: return parentEnd(out, count)
        case .segment, .slash: return count
        }
    }

    /// For a written path ending in "/..": the length that keeps it up to the "/" before the segment ".." leaves;
    /// nil when there is no such segment (".." above the root).
    private static func parentEnd(_ out: UnsafeMutableBufferPointer<UInt8>, _ count: Int) -> Int? {
        var k = count - 4
        while k >= 0 {
            if out[k] == slash { return k + 1 }
            k -= 1
        }
        return nil
    }

    @inline(__always) static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    /// A URI an upstream names for an internal redirect (X-Accel-Redirect), as nginx takes it: split at its first
    /// "?", the path %-decoded (an escape that is not one stays as it is); nil where nginx refuses it as unsafe:
    /// empty, starting with "?", a ".." segment before or after decoding, or a NUL.
    public static func redirectTarget(_ value: String) -> (path: String, args: String?)? {
        let bytes = Array(value.utf8)
        guard let first = bytes.first, first != UInt8(ascii: "?") else { return nil }
        let q = bytes.firstIndex(of: UInt8(ascii: "?"))
        var path = Array(bytes[..<(q ?? bytes.count)])
        guard isSafe(path) else { return nil }
        if path.contains(percent) {
            path = decodedLeniently(path)
            guard isSafe(path) else { return nil }
        }
        return (String(decoding: path, as: UTF8.self), q.map { String(decoding: bytes[($0 + 1)...], as: UTF8.self) })
    }

    /// No NUL and no ".." segment: not first ("..", "../") and not after a "/" ("/../", a final "/..").
    private static func isSafe(_ p: [UInt8]) -> Bool {
        if p.contains(0) { return false }
        func dotDotSegment(at i: Int) -> Bool {
            i + 1 < p.count && p[i] == dot && p[i + 1] == dot && (i + 2 == p.count || p[i + 2] == slash)
        }
        if dotDotSegment(at: 0) { return false }
        return !p.indices.contains { p[$0] == slash && dotDotSegment(at: $0 + 1) }
    }

    private static func decodedLeniently(_ p: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(p.count)
        var i = 0
        while i < p.count {
            if p[i] == percent, i + 2 < p.count, let high = hexValue(p[i + 1]), let low = hexValue(p[i + 2]) {
                out.append(high << 4 | low)
                i += 3
            } else {
                out.append(p[i])
                i += 1
            }
        }
        return out
    }
}

/// FastCGI's record layer (one request per connection, id 1, as nginx): the request's records written into a
/// caller's bytes, and a streaming decoder of the application's records. Pure: no sockets, fuzzable.
public enum FastCGI {
    public static let beginRequest: UInt8 = 1
    public static let endRequest: UInt8 = 3
    public static let params: UInt8 = 4
    public static let stdin: UInt8 = 5
    public static let stdout: UInt8 = 6
    public static let stderr: UInt8 = 7
    /// The most a record's content may hold.
    public static let maxContent = 65535
    public static let headerSize = 8

    /// A record header for `length` content bytes followed by `padding` zeros.
    @inline(__always) public static func header(_ type: UInt8, length: Int, padding: Int = 0) -> (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) {
        (1, type, 0, 1, UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length), UInt8(padding), 0)
    }

    /// BEGIN_REQUEST for the responder role; `keepConn` asks the application to keep the connection after it.
    public static func beginRequestRecord(keepConn: Bool) -> [UInt8] {
        [1, beginRequest, 0, 1, 0, 8, 0, 0, 0, 1, keepConn ? 1 : 0, 0, 0, 0, 0, 0]
    }

    /// Appends a name-value pair (lengths, name, value) to `out`.
    public static func appendPair(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        appendLength(name.count, to: &out)
        appendLength(value.count, to: &out)
        out.append(contentsOf: name)
        out.append(contentsOf: value)
    }

    public static func appendLength(_ n: Int, to out: inout [UInt8]) {
        var (bytes, count) = length(n)
        withUnsafeBytes(of: &bytes) { out.append(contentsOf: $0.prefix(count)) }
    }

    /// A name-value pair's length as FastCGI writes it: one byte up to 127, else four with the top bit set.
    @inline(__always) public static func length(_ n: Int) -> (bytes: (UInt8, UInt8, UInt8, UInt8), count: Int) {
        n <= 127 ? ((UInt8(n), 0, 0, 0), 1)
            : ((UInt8(truncatingIfNeeded: n >> 24) | 0x80, UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8),
                UInt8(truncatingIfNeeded: n)), 4)
    }

    /// `content` as records of `type`, each padded to a multiple of eight bytes, then the empty record that ends
    /// the stream.
    public static func stream(_ type: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < content.count {
            let n = min(maxContent - 7, content.count - i)
            let pad = (8 - n % 8) % 8
            let h = header(type, length: n, padding: pad)
            out += [h.0, h.1, h.2, h.3, h.4, h.5, h.6, h.7]
            out += content[i..<(i + n)]
            out += [UInt8](repeating: 0, count: pad)
            i += n
        }
        out += [1, type, 0, 1, 0, 0, 0, 0]
        return out
    }

    /// A whole request without a body: BEGIN_REQUEST, the params, and an empty STDIN (the check module's probe).
    public static func request(params: [(String, String)], keepConn: Bool = false) -> [UInt8] {
        var pairs: [UInt8] = []
        for (k, v) in params {
            var k = k, v = v
            k.withUTF8 { kb in v.withUTF8 { vb in appendPair(UnsafeRawBufferPointer(kb), UnsafeRawBufferPointer(vb), to: &pairs) } }
        }
        // No params still go as an empty PARAMS record before the one that ends them, as the check module sends.
        let empty: [UInt8] = pairs.isEmpty ? [1, FastCGI.params, 0, 1, 0, 0, 0, 0] : []
        return beginRequestRecord(keepConn: keepConn) + empty + stream(FastCGI.params, pairs) + stream(stdin, [])
    }

    /// The application's records, as they arrive in any pieces.
    public struct Decoder: Sendable {
        public enum Event: Equatable, Sendable {
            /// Content of a STDOUT or STDERR record (a range of the buffer given).
            case stdout(Range<Int>)
            case stderr(Range<Int>)
            /// The empty STDOUT record that closes the stream.
            case stdoutClosed
            /// END_REQUEST, its content and padding read.
            case endRequest
            /// What is wrong, in nginx's words.
            case invalid(String)
        }

        private var header: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0)
        private var headerRead = 0
        private var type: UInt8 = 0
        private var content = 0
        private var padding = 0

        public init() {}

        /// The next event from `buf` starting at `i` (advanced past what it used); nil when `buf` is used up.
        public mutating func next(_ buf: UnsafeRawBufferPointer, _ i: inout Int) -> Event? {
            while i < buf.count {
                // A whole header in the buffer is checked at once; one split across reads, byte by byte.
                if headerRead == 0 && buf.count - i >= FastCGI.headerSize {
                    if let problem = FastCGI.checkHeader(buf[i], buf[i + 1], buf[i + 2], buf[i + 3]) { return .invalid(problem) }
                    type = buf[i + 1]
                    content = Int(buf[i + 4]) << 8 | Int(buf[i + 5])
                    padding = Int(buf[i + 6])
                    i += FastCGI.headerSize
                    headerRead = FastCGI.headerSize
                    if type == FastCGI.stdout && content == 0 { return .stdoutClosed }
                    continue
                }
                if headerRead < FastCGI.headerSize {
                    let b = buf[i]
                    i += 1
                    switch headerRead {
                    case 0: if let problem = FastCGI.checkHeader(b, FastCGI.stdout, 0, 1) { return .invalid(problem) }
                    case 1:
                        if let problem = FastCGI.checkHeader(1, b, 0, 1) { return .invalid(problem) }
                        type = b
                    case 2: if let problem = FastCGI.checkHeader(1, FastCGI.stdout, b, 1) { return .invalid(problem) }
                    case 3: if let problem = FastCGI.checkHeader(1, FastCGI.stdout, 0, b) { return .invalid(problem) }
                    case 4: content = Int(b) << 8
                    case 5: content |= Int(b)
                    case 6: padding = Int(b)
                    default: break
                    }
                    headerRead += 1
                    if headerRead == FastCGI.headerSize && type == FastCGI.stdout && content == 0 {
                        return .stdoutClosed
                    }
                    continue
                }
                if content > 0 {
                    let n = min(content, buf.count - i)
                    let range = i..<(i + n)
                    i += n
                    content -= n
                    if type == FastCGI.stdout { return .stdout(range) }
                    if type == FastCGI.stderr { return .stderr(range) }
                    continue
                }
                if padding > 0 {
                    let n = min(padding, buf.count - i)
                    i += n
                    padding -= n
                    if padding > 0 { return nil }
                }
                headerRead = 0
                if type == FastCGI.endRequest { return .endRequest }
            }
            // A record with no content and no padding ends with its header.
            if headerRead == FastCGI.headerSize && content == 0 && padding == 0 {
                headerRead = 0
                if type == FastCGI.endRequest { return .endRequest }
            }
            return nil
        }
    }

    /// What is wrong with a record header's version, type and request id, in nginx's words (checked in that order).
    static func checkHeader(_ version: UInt8, _ type: UInt8, _ idHigh: UInt8, _ idLow: UInt8) -> String? {
        if version != 1 { return "upstream sent unsupported FastCGI protocol version: \(version)" }
        if type != stdout && type != stderr && type != endRequest { return "upstream sent invalid FastCGI record type: \(type)" }
        if idHigh != 0 { return "upstream sent unexpected FastCGI request id high byte: \(idHigh)" }
        if idLow != 1 { return "upstream sent unexpected FastCGI request id low byte: \(idLow)" }
        return nil
    }

    /// A stderr message as nginx logs it: trailing newlines, dots and spaces dropped.
    public static func trimmedStderr(_ bytes: UnsafeRawBufferPointer) -> String {
        var end = bytes.count
        while end > 1, [0x0A, 0x0D, 0x2E, 0x20].contains(bytes[end - 1]) { end -= 1 }
        return String(decoding: bytes[0..<end], as: UTF8.self)
    }
}

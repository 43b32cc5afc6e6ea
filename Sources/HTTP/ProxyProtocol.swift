#if canImport(Glibc)
import Glibc
#endif

/// What a PROXY protocol header says about the connection: the client's and the proxy's address and port, as
/// `$proxy_protocol_addr`, `$proxy_protocol_port`, `$proxy_protocol_server_addr` and `_port` show them (v1's
/// addresses as written, v2's printed by inet_ntop), and v2's TLVs after the addresses.
public final class ProxyProtocolHeader {
    public let sourceAddress: String
    public let sourcePort: UInt16
    public let destinationAddress: String
    public let destinationPort: UInt16
    public let tlvs: [UInt8]

    public init(sourceAddress: String, sourcePort: UInt16, destinationAddress: String, destinationPort: UInt16, tlvs: [UInt8] = []) {
        self.sourceAddress = sourceAddress
        self.sourcePort = sourcePort
        self.destinationAddress = destinationAddress
        self.destinationPort = destinationPort
        self.tlvs = tlvs
    }
}

/// nginx's reading of the PROXY protocol (ngx_proxy_protocol.c), v1 and v2, on the bytes a connection has
/// received so far. Where nginx judges the bytes of one read, this waits for more while they are still the
/// start of a valid header, so that a header split across segments is not "broken"; on whole headers the
/// verdicts and messages are nginx's.
public enum ProxyProtocol {
    public enum Result {
        /// Valid so far: wait for more bytes.
        case incomplete
        /// The header takes `length` bytes; nil when it carries no addresses (v1 UNKNOWN, v2 LOCAL, or a family
        /// or transport nginx does not read).
        case complete(length: Int, header: ProxyProtocolHeader?)
        /// The connection is to be closed, after logging `message` (nginx logs nothing for some).
        case invalid(message: String?)
    }

    /// The longest v1 header ("PROXY TCP6 " with two full IPv6 addresses and ports).
    public static let v1MaxLength = 107

    static let v2Signature: StaticString = "\r\n\r\n\0\r\nQUIT\n"

    /// Parses the header at the start of `bytes`; a v2 header longer than `limit` bytes is "too large" (nginx's
    /// limit is the buffer it read into).
    public static func parse(_ bytes: UnsafeRawBufferPointer, limit: Int) -> Result {
        switch startsWith(bytes, 0, v2Signature) {
        case true?: return parseV2(bytes, limit: limit)
        case nil: return .incomplete
        case false?: return parseV1(bytes)
        }
    }

    /// true: `literal` is at `at`; nil: the bytes end before it does, matching so far; false: it is not.
    private static func startsWith(_ b: UnsafeRawBufferPointer, _ at: Int, _ literal: StaticString) -> Bool? {
        literal.withUTF8Buffer { l in
            for (i, c) in l.enumerated() {
                if at + i >= b.count { return nil }
                if b[at + i] != c { return false }
            }
            return true
        }
    }

    private static func parseV1(_ b: UnsafeRawBufferPointer) -> Result {
        let broken = Result.invalid(message: "broken header: \"\(String(decoding: b, as: UTF8.self))\"")
        let result = v1(b)
        switch result {
        case .invalid: return broken
        case .incomplete: return b.count >= v1MaxLength ? broken : .incomplete
        case .complete: return result
        }
    }

    /// Where a v1 field stopped being read: the bytes ended (wait for more), or it is not what nginx takes.
    private enum Stop: Error { case ended, bad }

    /// ngx_proxy_protocol_read's v1 half, where running out of bytes is `.incomplete`; `.invalid` is a broken
    /// header (the message is the caller's).
    private static func v1(_ b: UnsafeRawBufferPointer) -> Result {
        do throws(Stop) {
            try expect(b, 0, "PROXY ")
            var p = 6
            if startsWith(b, p, "UNKNOWN") == true {
                // Whatever follows, up to the line's end, is skipped.
                p += 7
                while p + 1 < b.count {
                    if b[p] == 0x0D && b[p + 1] == 0x0A { return .complete(length: p + 2, header: nil) }
                    p += 1
                }
                return .incomplete
            }
            // "UNKNOWN" may still be on its way.
            if startsWith(b, p, "UNKNOWN") == nil && startsWith(b, p, "TCP") == false { return .incomplete }
            try expect(b, p, "TCP")
            guard p + 4 < b.count else { throw .ended }
            guard b[p + 3] == UInt8(ascii: "4") || b[p + 3] == UInt8(ascii: "6"), b[p + 4] == 0x20 else { throw .bad }
            let (src, afterSrc) = try address(b, from: p + 5)
            let (dst, afterDst) = try address(b, from: afterSrc)
            let (srcPort, afterSrcPort) = try port(b, from: afterDst, until: 0x20)
            let (dstPort, end) = try port(b, from: afterSrcPort, until: 0x0D)
            guard end < b.count else { throw .ended }
            guard b[end] == 0x0A else { throw .bad }
            let header = ProxyProtocolHeader(sourceAddress: src, sourcePort: srcPort, destinationAddress: dst, destinationPort: dstPort)
            return .complete(length: end + 1, header: header)
        } catch .ended {
            return .incomplete
        } catch {
            return .invalid(message: nil)
        }
    }

    private static func expect(_ b: UnsafeRawBufferPointer, _ at: Int, _ literal: StaticString) throws(Stop) {
        switch startsWith(b, at, literal) {
        case true?: return
        case nil: throw .ended
        case false?: throw .bad
        }
    }

    /// An address up to the next space: hex digits, ':' and '.' only, as nginx checks it.
    private static func address(_ b: UnsafeRawBufferPointer, from start: Int) throws(Stop) -> (String, Int) {
        var p = start
        while p < b.count {
            let c = b[p]
            if c == 0x20 { return (String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<p]), as: UTF8.self), p + 1) }
            let hex = (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x66)
            guard hex || c == UInt8(ascii: ":") || c == UInt8(ascii: ".") else { throw .bad }
            p += 1
        }
        throw .ended
    }

    /// A port up to `separator`: nginx's ngx_atoi (digits only, at least one), at most 65535.
    private static func port(_ b: UnsafeRawBufferPointer, from start: Int, until separator: UInt8) throws(Stop) -> (UInt16, Int) {
        var p = start
        var n = 0
        while p < b.count {
            let c = b[p]
            if c == separator {
                guard p > start else { throw .bad }
                return (UInt16(n), p + 1)
            }
            guard c >= 0x30 && c <= 0x39 else { throw .bad }
            n = n * 10 + Int(c - 0x30)
            guard n <= 65535 else { throw .bad }
            p += 1
        }
        throw .ended
    }

    /// `$proxy_protocol_tlv_NAME` (nginx 1.23.2's): a v2 TLV's value by its name (`alpn`, `authority`,
    /// `unique_id`, `ssl`, `netns`) or type (`0x…`), and with `ssl_` the SSL TLV's own (`ssl_version`,
    /// `ssl_cn`, `ssl_cipher`, `ssl_sig_alg`, `ssl_key_alg`, `ssl_0x…`, and `ssl_verify` as a number). nil when
    /// there is none, or the TLVs are broken.
    public static func tlv(_ name: Substring, in tlvs: [UInt8]) -> [UInt8]? {
        var name = name
        var tlvs = tlvs[...]
        var names: KeyValuePairs<Substring, UInt8> = ["alpn": 0x01, "authority": 0x02, "unique_id": 0x05, "ssl": 0x20, "netns": 0x30]
        if name.hasPrefix("ssl_") {
            // The SSL TLV: a client byte and a 32-bit verify result, then TLVs of its own.
            guard let ssl = lookup(0x20, in: tlvs), ssl.count >= 5 else { return nil }
            name = name.dropFirst(4)
            if name == "verify" {
                let i = ssl.startIndex
                return Array(String(UInt32(ssl[i + 1]) << 24 | UInt32(ssl[i + 2]) << 16 | UInt32(ssl[i + 3]) << 8 | UInt32(ssl[i + 4])).utf8)
            }
            tlvs = ssl.dropFirst(5)
            names = ["version": 0x21, "cn": 0x22, "cipher": 0x23, "sig_alg": 0x24, "key_alg": 0x25]
        }
        let type: UInt8?
        if name.hasPrefix("0x") {
            type = UInt8(name.dropFirst(2), radix: 16)
        } else {
            type = names.first { $0.key == name }?.value
        }
        return type.flatMap { lookup($0, in: tlvs) }.map(Array.init)
    }

    /// The first TLV of `type`: a type byte, a 16-bit length, the value.
    private static func lookup(_ type: UInt8, in tlvs: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        var p = tlvs.startIndex
        while p < tlvs.endIndex {
            guard tlvs.endIndex - p >= 3 else { return nil }
            let length = Int(tlvs[p + 1]) << 8 | Int(tlvs[p + 2])
            guard tlvs.endIndex - (p + 3) >= length else { return nil }
            if tlvs[p] == type { return tlvs[(p + 3)..<(p + 3 + length)] }
            p += 3 + length
        }
        return nil
    }

    /// ngx_proxy_protocol_v2_read: the 16-byte header, then the addresses of its family and the TLVs after them.
    private static func parseV2(_ b: UnsafeRawBufferPointer, limit: Int) -> Result {
        guard b.count >= 16 else { return .incomplete }
        let version = b[12] >> 4
        guard version == 2 else { return .invalid(message: "unknown PROXY protocol version: \(version)") }
        let length = 16 + (Int(b[14]) << 8 | Int(b[15]))
        guard length <= limit else { return .invalid(message: "header is too large") }
        guard b.count >= length else { return .incomplete }
        // Only the PROXY command over a stream transport has addresses nginx reads.
        guard b[12] & 0x0F == 1, b[13] & 0x0F == 1 else { return .complete(length: length, header: nil) }
        let family: Int32, size: Int
        switch b[13] >> 4 {
        case 1: (family, size) = (AF_INET, 4)
        case 2: (family, size) = (AF_INET6, 16)
        default: return .complete(length: length, header: nil)
        }
        let ports = 16 + 2 * size
        // An address block shorter than its family's: nginx closes without a word.
        guard ports + 4 <= length else { return .invalid(message: nil) }
        func text(_ at: Int) -> String {
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
                inet_ntop(family, b.baseAddress! + at, buf.baseAddress, 64)
                return String(cString: buf.baseAddress!)
            }
        }
        func port(_ at: Int) -> UInt16 { UInt16(b[at]) << 8 | UInt16(b[at + 1]) }
        let header = ProxyProtocolHeader(sourceAddress: text(16), sourcePort: port(ports), destinationAddress: text(16 + size),
                                         destinationPort: port(ports + 2), tlvs: Array(b[(ports + 4)..<length]))
        return .complete(length: length, header: header)
    }
}

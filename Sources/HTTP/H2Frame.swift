import Core

/// HTTP/2's framing (RFC 9113 §4, §6): the constants, the 9-byte frame header, the fields of fixed-size
/// payloads, and the writers of the frames a server sends. Pure: no I/O, no state.
public enum H2 {
    /// The client connection preface (§3.4).
    public static let preface: StaticString = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    public static let prefaceLength = preface.utf8CodeUnitCount
    public static let frameHeaderLength = 9
    /// Every window starts here until SETTINGS say otherwise (§6.9.2), and may not grow past `maxWindow`.
    public static let defaultWindow = 65535
    public static let maxWindow = Int(Int32.max)
    /// SETTINGS_MAX_FRAME_SIZE's default and its upper bound (§6.5.2).
    public static let defaultMaxFrameSize = 16384
    public static let largestFrameSize = 16_777_215
    /// A stream's weight without a priority of its own (RFC 7540 §5.3.5).
    public static let defaultWeight = 16
}

/// A frame's type: a struct, not an enum, since unknown types must be read (and ignored, §5.5).
public struct H2FrameType: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let data = H2FrameType(rawValue: 0)
    public static let headers = H2FrameType(rawValue: 1)
    public static let priority = H2FrameType(rawValue: 2)
    public static let rstStream = H2FrameType(rawValue: 3)
    public static let settings = H2FrameType(rawValue: 4)
    public static let pushPromise = H2FrameType(rawValue: 5)
    public static let ping = H2FrameType(rawValue: 6)
    public static let goAway = H2FrameType(rawValue: 7)
    public static let windowUpdate = H2FrameType(rawValue: 8)
    public static let continuation = H2FrameType(rawValue: 9)
}

/// Frame flags; ACK shares END_STREAM's bit (on SETTINGS and PING).
public enum H2Flag {
    public static let endStream: UInt8 = 0x1
    public static let ack: UInt8 = 0x1
    public static let endHeaders: UInt8 = 0x4
    public static let padded: UInt8 = 0x8
    public static let priority: UInt8 = 0x20
}

/// The error codes of RST_STREAM and GOAWAY (§7); unknown codes are kept as they came.
public struct H2ErrorCode: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let noError = H2ErrorCode(rawValue: 0)
    public static let protocolError = H2ErrorCode(rawValue: 1)
    public static let internalError = H2ErrorCode(rawValue: 2)
    public static let flowControlError = H2ErrorCode(rawValue: 3)
    public static let settingsTimeout = H2ErrorCode(rawValue: 4)
    public static let streamClosed = H2ErrorCode(rawValue: 5)
    public static let frameSizeError = H2ErrorCode(rawValue: 6)
    public static let refusedStream = H2ErrorCode(rawValue: 7)
    public static let cancel = H2ErrorCode(rawValue: 8)
    public static let compressionError = H2ErrorCode(rawValue: 9)
    public static let connectError = H2ErrorCode(rawValue: 10)
    public static let enhanceYourCalm = H2ErrorCode(rawValue: 11)
    public static let inadequateSecurity = H2ErrorCode(rawValue: 12)
    public static let http11Required = H2ErrorCode(rawValue: 13)

    /// The name a log line gives the code.
    public var name: String {
        switch rawValue {
        case 0: "NO_ERROR"
        case 1: "PROTOCOL_ERROR"
        case 2: "INTERNAL_ERROR"
        case 3: "FLOW_CONTROL_ERROR"
        case 4: "SETTINGS_TIMEOUT"
        case 5: "STREAM_CLOSED"
        case 6: "FRAME_SIZE_ERROR"
        case 7: "REFUSED_STREAM"
        case 8: "CANCEL"
        case 9: "COMPRESSION_ERROR"
        case 10: "CONNECT_ERROR"
        case 11: "ENHANCE_YOUR_CALM"
        case 12: "INADEQUATE_SECURITY"
        case 13: "HTTP_1_1_REQUIRED"
        default: "unknown error code \(rawValue)"
        }
    }
}

/// What ends a connection (a connection error, §5.4.1): the GOAWAY code and the log line's reason.
public struct H2Violation: Error, Equatable {
    public let code: H2ErrorCode
    public let reason: String
    public init(_ code: H2ErrorCode, _ reason: String) {
        self.code = code
        self.reason = reason
    }
}

/// The 9 bytes before every payload (§4.1).
public struct H2FrameHeader: Equatable, Sendable {
    public var length: Int
    public var type: H2FrameType
    public var flags: UInt8
    /// The reserved bit cleared.
    public var streamID: UInt32

    public init(length: Int, type: H2FrameType, flags: UInt8 = 0, streamID: UInt32 = 0) {
        self.length = length
        self.type = type
        self.flags = flags
        self.streamID = streamID
    }

    /// Reads the header at `p` (9 bytes).
    public init(_ p: UnsafeRawPointer) {
        length = Int(p.load(fromByteOffset: 0, as: UInt8.self)) << 16 | Int(p.load(fromByteOffset: 1, as: UInt8.self)) << 8
            | Int(p.load(fromByteOffset: 2, as: UInt8.self))
        type = H2FrameType(rawValue: p.load(fromByteOffset: 3, as: UInt8.self))
        flags = p.load(fromByteOffset: 4, as: UInt8.self)
        streamID = H2Wire.uint32(p + 5) & 0x7FFF_FFFF
    }

    @inline(__always) public func has(_ flag: UInt8) -> Bool { flags & flag != 0 }

    /// The 9 bytes, on the stack.
    @inline(__always) func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var b: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &b) { p in
            p[0] = UInt8(truncatingIfNeeded: length >> 16)
            p[1] = UInt8(truncatingIfNeeded: length >> 8)
            p[2] = UInt8(truncatingIfNeeded: length)
            p[3] = type.rawValue
            p[4] = flags
            H2Wire.store(streamID, p.baseAddress! + 5)
            return body(UnsafeRawBufferPointer(rebasing: p[..<H2.frameHeaderLength]))
        }
    }
}

/// Big-endian loads and stores.
enum H2Wire {
    @inline(__always) static func uint32(_ p: UnsafeRawPointer) -> UInt32 {
        UInt32(p.load(as: UInt8.self)) << 24 | UInt32(p.load(fromByteOffset: 1, as: UInt8.self)) << 16
            | UInt32(p.load(fromByteOffset: 2, as: UInt8.self)) << 8 | UInt32(p.load(fromByteOffset: 3, as: UInt8.self))
    }

    @inline(__always) static func uint16(_ p: UnsafeRawPointer) -> UInt16 {
        UInt16(p.load(as: UInt8.self)) << 8 | UInt16(p.load(fromByteOffset: 1, as: UInt8.self))
    }

    @inline(__always) static func store(_ v: UInt32, _ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: UInt8(truncatingIfNeeded: v >> 24), as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: v >> 16), toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: v >> 8), toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: 3, as: UInt8.self)
    }
}

/// A priority (RFC 7540 §6.3): the stream depended on, whether exclusively, and the weight 1...256.
public struct H2Priority: Equatable, Sendable {
    public var dependency: UInt32
    public var exclusive: Bool
    public var weight: Int

    public init(dependency: UInt32, exclusive: Bool = false, weight: Int = H2.defaultWeight) {
        self.dependency = dependency
        self.exclusive = exclusive
        self.weight = weight
    }

    /// The 5 bytes of a PRIORITY payload or a HEADERS frame's priority fields.
    public init(_ p: UnsafeRawPointer) {
        let word = H2Wire.uint32(p)
        dependency = word & 0x7FFF_FFFF
        exclusive = word & 0x8000_0000 != 0
        weight = Int(p.load(fromByteOffset: 4, as: UInt8.self)) + 1
    }
}

/// The payloads of fixed size, read once the reader has checked their lengths.
public enum H2Payload {
    /// RST_STREAM's error code.
    public static func errorCode(_ p: UnsafeRawBufferPointer) -> H2ErrorCode { H2ErrorCode(rawValue: H2Wire.uint32(p.baseAddress!)) }

    /// WINDOW_UPDATE's increment (the reserved bit cleared).
    public static func windowIncrement(_ p: UnsafeRawBufferPointer) -> Int { Int(H2Wire.uint32(p.baseAddress!) & 0x7FFF_FFFF) }
}

/// Writers of the frames a server sends, appended to an output queue; nothing is allocated beyond its storage.
public enum H2FrameWriter {
    @inline(__always) public static func appendHeader(_ h: H2FrameHeader, to out: OutputQueue) {
        h.withBytes { out.append($0) }
    }

    /// SETTINGS with the given (identifier, value) pairs.
    public static func appendSettings(_ settings: [(H2SettingID, UInt32)], to out: OutputQueue) {
        appendHeader(H2FrameHeader(length: 6 * settings.count, type: .settings), to: out)
        for (id, value) in settings {
            var b: UInt64 = 0
            withUnsafeMutableBytes(of: &b) { p in
                p[0] = UInt8(id.rawValue >> 8)
                p[1] = UInt8(truncatingIfNeeded: id.rawValue)
                H2Wire.store(value, p.baseAddress! + 2)
                out.append(UnsafeRawBufferPointer(rebasing: p[..<6]))
            }
        }
    }

    public static func appendSettingsAck(to out: OutputQueue) {
        appendHeader(H2FrameHeader(length: 0, type: .settings, flags: H2Flag.ack), to: out)
    }

    /// PING with ACK, echoing the 8 opaque bytes.
    public static func appendPingAck(_ opaque: UnsafeRawBufferPointer, to out: OutputQueue) {
        appendHeader(H2FrameHeader(length: 8, type: .ping, flags: H2Flag.ack), to: out)
        out.append(opaque)
    }

    public static func appendWindowUpdate(stream: UInt32, increment: Int, to out: OutputQueue) {
        appendHeader(H2FrameHeader(length: 4, type: .windowUpdate, streamID: stream), to: out)
        appendWord(UInt32(increment), to: out)
    }

    public static func appendRstStream(stream: UInt32, code: H2ErrorCode, to out: OutputQueue) {
        appendHeader(H2FrameHeader(length: 4, type: .rstStream, streamID: stream), to: out)
        appendWord(code.rawValue, to: out)
    }

    public static func appendGoAway(lastStream: UInt32, code: H2ErrorCode, to out: OutputQueue) {
        appendHeader(H2FrameHeader(length: 8, type: .goAway), to: out)
        appendWord(lastStream, to: out)
        appendWord(code.rawValue, to: out)
    }

    /// A header block as HEADERS and as many CONTINUATION frames as `maxFrameSize` needs.
    public static func appendHeaders(stream: UInt32, block: UnsafeRawBufferPointer, endStream: Bool, maxFrameSize: Int, to out: OutputQueue) {
        var offset = 0
        var type = H2FrameType.headers
        repeat {
            let n = min(maxFrameSize, block.count - offset)
            let last = offset + n == block.count
            var flags: UInt8 = last ? H2Flag.endHeaders : 0
            if type == .headers && endStream { flags |= H2Flag.endStream }
            appendHeader(H2FrameHeader(length: n, type: type, flags: flags, streamID: stream), to: out)
            out.append(UnsafeRawBufferPointer(rebasing: block[offset..<offset + n]))
            offset += n
            type = .continuation
        } while offset < block.count
    }

    @inline(__always) static func appendWord(_ v: UInt32, to out: OutputQueue) {
        var w: UInt32 = 0
        withUnsafeMutableBytes(of: &w) { p in
            H2Wire.store(v, p.baseAddress!)
            out.append(UnsafeRawBufferPointer(p))
        }
    }
}

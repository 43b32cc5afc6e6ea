/// A SETTINGS parameter's identifier (RFC 9113 §6.5.2); unknown ones are ignored.
public struct H2SettingID: RawRepresentable, Equatable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let headerTableSize = H2SettingID(rawValue: 1)
    public static let enablePush = H2SettingID(rawValue: 2)
    public static let maxConcurrentStreams = H2SettingID(rawValue: 3)
    public static let initialWindowSize = H2SettingID(rawValue: 4)
    public static let maxFrameSize = H2SettingID(rawValue: 5)
    public static let maxHeaderListSize = H2SettingID(rawValue: 6)
}

/// The peer's settings that govern what we send: the window new streams start with and the largest frame (its
/// HPACK table size goes to the encoder as a `Change`).
public struct H2PeerSettings: Equatable, Sendable {
    public var initialWindowSize = H2.defaultWindow
    public var maxFrameSize = H2.defaultMaxFrameSize

    public init() {}

    /// What one SETTINGS frame changed that the connection must act on.
    public struct Change: Equatable, Sendable {
        /// Added to the send window of every open stream (§6.9.2); may be negative.
        public var windowDelta = 0
        /// The last SETTINGS_HEADER_TABLE_SIZE in the frame, if any.
        public var headerTableSize: Int?
    }

    /// Applies a SETTINGS payload (its length already checked to be a multiple of 6), validating each value
    /// as §6.5.2 (and nginx) says: a window past 2^31-1 is a FLOW_CONTROL_ERROR, a frame size outside
    /// 16384...16777215 or ENABLE_PUSH other than 0 or 1 a PROTOCOL_ERROR. Nothing is applied if one is bad.
    public mutating func apply(_ payload: UnsafeRawBufferPointer) throws(H2Violation) -> Change {
        var next = Pending(self)
        try next.take(payload)
        return next.apply(to: &self)
    }

    /// A SETTINGS frame's values as its entries come (it may span reads), applied at its end.
    public struct Pending: Sendable {
        private var next: H2PeerSettings
        private var headerTableSize: Int?

        public init(_ current: H2PeerSettings) { next = current }

        /// Validates and notes whole entries (a multiple of six bytes); a bad value throws, nothing applied.
        public mutating func take(_ entries: UnsafeRawBufferPointer) throws(H2Violation) {
            var offset = 0
            while offset + 6 <= entries.count {
                let id = H2SettingID(rawValue: H2Wire.uint16(entries.baseAddress! + offset))
                let value = Int(H2Wire.uint32(entries.baseAddress! + offset + 2))
                offset += 6
                switch id {
                case .initialWindowSize:
                    guard value <= H2.maxWindow else {
                        throw H2Violation(.flowControlError, "client sent SETTINGS frame with incorrect INITIAL_WINDOW_SIZE value \(value)")
                    }
                    next.initialWindowSize = value
                case .maxFrameSize:
                    guard value >= H2.defaultMaxFrameSize && value <= H2.largestFrameSize else {
                        throw H2Violation(.protocolError, "client sent SETTINGS frame with incorrect MAX_FRAME_SIZE value \(value)")
                    }
                    next.maxFrameSize = value
                case .enablePush:
                    guard value <= 1 else {
                        throw H2Violation(.protocolError, "client sent SETTINGS frame with incorrect ENABLE_PUSH value \(value)")
                    }
                case .headerTableSize:
                    headerTableSize = value
                default:
                    break
                }
            }
        }

        /// The frame ended: its values become `settings`'; what the connection must act on.
        public func apply(to settings: inout H2PeerSettings) -> Change {
            let change = Change(windowDelta: next.initialWindowSize - settings.initialWindowSize, headerTableSize: headerTableSize)
            settings = next
            return change
        }
    }
}

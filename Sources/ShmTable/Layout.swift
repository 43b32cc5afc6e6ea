/// The shared segment's fixed, pointer-free layout. Every offset is from the segment's start;
/// integers are little-endian (the only byte order Vigil runs on), so `shmdump` can read any segment it finds.
///
///     0    header line 1 (written once by the master before fork)
///     64   header line 2: the checker lock (pid + heartbeat), written by workers
///     128  peer slots, 64 bytes each, cache-line aligned: the configured peers', then room for peers added
///          at run time (v4; DynamicPeers.swift)
///     ...  string table: upstream names and server addresses, u16 length + bytes
///     ...  the upstreams that resolve names: their names' offsets (u32 each), then, 64-aligned, a record per
///          dynamic slot
///     ...  past check_shm_size, 64-aligned: the zone area, a 64-byte record per peer of an upstream with `zone`
public enum Layout {
    public static let magic: [UInt8] = Array("VIGILSHM".utf8)
    public static let version: UInt32 = 4
    public static let headerSize = 128
    public static let slotSize = 64
    /// A zone record has a cache line of its own: workers write the counters of different peers at once.
    public static let zoneRecordSize = 64

    // Header line 1.
    static let magicOffset = 0
    static let versionOffset = 8
    static let headerSizeOffset = 12
    static let segmentSizeOffset = 16
    static let generationOffset = 24
    static let masterPidOffset = 32
    static let peerCountOffset = 36
    static let peerCapacityOffset = 40
    static let slotSizeOffset = 44
    static let stringTableOffset = 48
    static let stringTableSizeOffset = 52
    static let checksumOffset = 56
    // Header line 2: the checker lock and timestamps.
    static let checkerPidOffset = 64
    static let checkerHeartbeatOffset = 72
    static let createdAtOffset = 80
    static let zoneOffsetOffset = 88    // u32: where the zone area starts (v3)
    static let zoneRecordsOffset = 92   // u32: its records
    static let dynamicCapacityOffset = 96       // u32: slots for peers added at run time (v4)
    static let dynamicRecordsOffset = 100       // u32: where their records start
    static let membershipOffset = 104           // atomic u64: bumped when dynamic peers come or go
    static let dynamicUsedOffset = 112          // atomic u32: records ever used
    static let dynamicUpstreamsOffset = 116     // u32: the resolving upstreams' name offsets (u32 each)
    static let dynamicUpstreamCountOffset = 120 // u32: how many
    static let namesResolvedOffset = 124        // atomic u32: 1 once every `resolve` name had its first answer

    // Peer slot fields (v2: counters narrowed to make room for the control word and the last status).
    static let stateOffset = 0          // atomic u64: flags + seqlock sequence
    static let riseOffset = 8           // u32 consecutive successes
    static let fallOffset = 12          // u32 consecutive failures
    static let lastCheckOffset = 16     // u64 monotonic ms of the last verdict (0: never)
    static let lastChangeOffset = 24    // u64 monotonic ms of the last up/down flip (0: never)
    static let checksOffset = 32        // u32 total checks
    static let failuresOffset = 36      // u32 total failures
    static let changesOffset = 40       // u16 up/down flips
    static let reasonOffset = 42        // u16: FailureReason of the last failure (low 6 bits), last HTTP status (high 10)
    static let rttOffset = 44           // u32 µs of the last check
    static let upstreamNameOffset = 48  // u32 offset into the segment
    static let serverNameOffset = 52    // u32 offset into the segment
    static let controlOffset = 56       // atomic u32 that workers write: AdminState (bits 0-1), re-check request (bit 2)
    static let typeOffset = 60          // u8 CheckType code
    static let portOffset = 62          // u16 `port=` value (0: the server's own)

    /// Bytes needed for `peers` slots whose names need `stringBytes` in the string table.
    public static func bytesNeeded(peers: Int, stringBytes: Int) -> Int {
        headerSize + peers * slotSize + stringBytes
    }

    /// Where the zone area starts in a segment whose check table has `size` bytes (check_shm_size).
    public static func zoneOffset(checkSize size: Int) -> Int { (size + zoneRecordSize - 1) / zoneRecordSize * zoneRecordSize }

    /// Segment name for one generation of one master: `/vigil.<pid>.<generation>`.
    public static func segmentName(masterPid: Int32, generation: UInt64) -> String {
        "/vigil.\(masterPid).\(generation)"
    }

    /// Parses a segment name (with or without the leading slash) back into its master pid and generation.
    public static func parseSegmentName(_ name: String) -> (pid: Int32, generation: UInt64)? {
        let n = name.hasPrefix("/") ? name.dropFirst() : Substring(name)
        let parts = n.split(separator: ".")
        guard parts.count == 3, parts[0] == "vigil", let pid = Int32(parts[1]), let gen = UInt64(parts[2]) else { return nil }
        return (pid, gen)
    }
}

/// State word bits. The sequence lives above the flags so that one store publishes flags and ends a write.
public enum StateBits {
    public static let down: UInt64 = 1
    /// Set once the peer has had at least one check result.
    public static let checked: UInt64 = 2
    /// A peer the table had never seen (no state carried over or restored) whose first round of probes has not
    /// decided yet: the checker probes it back to back, and a request that finds no live peer waits for it.
    public static let firstRound: UInt64 = 4
    public static let sequenceShift: UInt64 = 16
    public static let sequenceOne: UInt64 = 1 << 16
    public static let flagsMask: UInt64 = sequenceOne - 1
}

/// An operator's state for a peer (HAProxy's `set server … state`): `drain` takes no new connections except
/// sticky ones, `maint` no traffic at all; checks go on either way.
public enum AdminState: UInt32, CaseIterable, Sendable {
    case ready = 0, drain = 1, maint = 2
    public var name: String { "\(self)" }
    public init?(name: String) {
        guard let a = AdminState.allCases.first(where: { $0.name == name }) else { return nil }
        self = a
    }
}

/// Why the last check failed; stored as one byte in the slot.
public enum FailureReason: UInt8, CaseIterable, Sendable {
    case none = 0
    case connectRefused, connectFailed, timedOut, sendFailed, recvFailed, closed, badStatus, protocolError
    case badMysqlGreeting, badSSLHello, badAJPReply, badFastCGIReply
    case sslHandshakeFailed, certificateVerifyFailed
    case bodyMismatch, headerMismatch, bodyTooLarge

    public var text: String {
        switch self {
        case .none: "-"
        case .connectRefused: "connect() failed (111: Connection refused)"
        case .connectFailed: "connect() failed"
        case .timedOut: "timed out"
        case .sendFailed: "send() failed"
        case .recvFailed: "recv() failed"
        case .closed: "peer closed connection"
        case .badStatus: "unexpected status"
        case .protocolError: "protocol error"
        case .badMysqlGreeting: "bad mysql greeting"
        case .badSSLHello: "bad ssl hello"
        case .badAJPReply: "bad ajp cpong"
        case .badFastCGIReply: "bad fastcgi reply"
        case .sslHandshakeFailed: "SSL_do_handshake() failed"
        case .certificateVerifyFailed: "certificate verify failed"
        case .bodyMismatch: "body mismatch"
        case .headerMismatch: "header mismatch"
        case .bodyTooLarge: "body too large"
        }
    }
}

/// What the frame reader hands on: every frame's header as it begins, then its meaning. A false return stops
/// the reading (the connection ended meanwhile).
public protocol H2FrameSink: AnyObject {
    /// Any frame's header, before its payload is read (flood accounting sees every frame here).
    func frameBegins(_ header: H2FrameHeader) -> Bool
    /// A complete frame other than DATA, HEADERS and CONTINUATION, its length and stream identifier checked
    /// as its type requires (PRIORITY, RST_STREAM, PING, GOAWAY, WINDOW_UPDATE, and SETTINGS that is an ACK or
    /// empty).
    func frame(_ header: H2FrameHeader, payload: UnsafeRawBufferPointer) -> Bool
    /// Whole entries (six bytes each) of a SETTINGS frame that has some, as they arrive: a frame may come in
    /// several calls, `last` on the one that ends it (the frame's values apply then, all or none).
    func settings(_ header: H2FrameHeader, entries: UnsafeRawBufferPointer, last: Bool) -> Bool
    /// A HEADERS frame's complete header block (CONTINUATION frames joined, padding removed). `header` is the
    /// HEADERS frame's; `length` counts the payloads of all the block's frames.
    func headerBlock(_ header: H2FrameHeader, priority: H2Priority?, block: UnsafeRawBufferPointer, length: Int) -> Bool
    /// A DATA frame begins: `header.length` counts against flow control, `dataLength` of it is data.
    func dataBegins(_ header: H2FrameHeader, dataLength: Int) -> Bool
    /// Some of the DATA frame's data (a frame may come in several reads).
    func data(_ header: H2FrameHeader, _ bytes: UnsafeRawBufferPointer) -> Bool
    /// The DATA frame's payload is read to its end (padding included).
    func dataEnds(_ header: H2FrameHeader) -> Bool
}

/// The input side of an HTTP/2 server connection, as bytes come (RFC 9113 §3.4, §4, §6): the client preface,
/// frame headers, the payload checks that do not need the connection's state (lengths, stream identifier 0
/// or not, padding), CONTINUATION sequencing, and unknown frame types skipped. DATA is handed on as it
/// arrives, not buffered, and so are SETTINGS entries (at most five bytes of an entry held); other frames are
/// passed in place when a read holds them whole, and only a frame split across reads is held (in storage
/// given back once it is complete), so an idle connection holds none. Frames held are all small (PRIORITY,
/// RST_STREAM, PING, GOAWAY's two words, WINDOW_UPDATE) but HEADERS and CONTINUATION, held to
/// `maxHeaderBlock`.
public struct H2FrameReader {
    private enum State {
        case preface(matched: Int)
        case frameHeader
        /// A payload read whole before it is handled (held in `held` when it spans reads).
        case payload(H2FrameHeader)
        /// A padded DATA frame's pad length byte.
        case dataPadLength(H2FrameHeader)
        case data(H2FrameHeader, remaining: Int, padding: Int)
        /// A SETTINGS frame's entries, `remaining` bytes of them still to come.
        case settings(H2FrameHeader, remaining: Int)
        /// Bytes read and dropped: a skipped frame or DATA padding; `dataEnd`: a DATA frame ends after them.
        case skip(remaining: Int, dataEnd: H2FrameHeader?)
    }

    private var state = State.preface(matched: 0)
    /// A frame header split across reads.
    private var headerBytes: (UInt64, UInt64) = (0, 0)
    private var headerCount = 0
    /// A payload split across reads.
    private var held: [UInt8] = []
    /// A SETTINGS entry split across reads: `entryCount` of its six bytes.
    private var entryBytes: UInt64 = 0
    private var entryCount = 0
    /// A header block whose HEADERS frame lacked END_HEADERS: its stream, HEADERS frame, priority and the
    /// payload lengths so far; `block` holds the fragments.
    private var pendingBlock: (header: H2FrameHeader, priority: H2Priority?, length: Int)?
    private var block: [UInt8] = []
    /// GOAWAY's debug data, read past once its two words are in.
    private var skipAfterPayload = 0
    /// The most a header block may take, compressed (the caller's bound on HEADERS plus CONTINUATION).
    public var maxHeaderBlock: Int

    public init(maxHeaderBlock: Int) { self.maxHeaderBlock = maxHeaderBlock }

    /// The stream whose HEADERS frame, or header block, is not all in yet.
    public var incompleteHeadStream: UInt32? {
        if case .payload(let h) = state, h.type == .headers { return h.streamID }
        return pendingBlock?.header.streamID
    }

    /// Bytes held between reads (a split frame, a SETTINGS entry, or a header block waiting for CONTINUATION):
    /// a read-only view for the tests, as HPACKDecoder's table views are.
    public var heldBytes: Int { held.capacity + block.capacity + entryCount }

    /// Reads `bytes`, handing frames to `sink` as they complete. Stops at the first violation (thrown, the
    /// connection must end with its code) or when the sink says stop (returns false).
    public mutating func read(_ bytes: UnsafeRawBufferPointer, into sink: some H2FrameSink) throws(H2Violation) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        var p = 0
        let n = bytes.count
        while p < n {
            switch state {
            case .preface(let matched):
                let k = min(H2.prefaceLength - matched, n - p)
                let expected = H2.preface.utf8Start + matched
                for i in 0..<k where base.load(fromByteOffset: p + i, as: UInt8.self) != expected[i] {
                    throw H2Violation(.protocolError, "client sent invalid HTTP/2 preface")
                }
                p += k
                state = matched + k == H2.prefaceLength ? .frameHeader : .preface(matched: matched + k)
            case .frameHeader:
                let header: H2FrameHeader
                if headerCount == 0 && n - p >= H2.frameHeaderLength {
                    header = H2FrameHeader(base + p)
                    p += H2.frameHeaderLength
                } else {
                    let k = min(H2.frameHeaderLength - headerCount, n - p)
                    withUnsafeMutableBytes(of: &headerBytes) { $0.baseAddress!.advanced(by: headerCount).copyMemory(from: base + p, byteCount: k) }
                    headerCount += k
                    p += k
                    guard headerCount == H2.frameHeaderLength else { return true }
                    headerCount = 0
                    header = withUnsafeBytes(of: headerBytes) { H2FrameHeader($0.baseAddress!) }
                }
                guard sink.frameBegins(header) else { return false }
                guard try enter(begin(header), sink) else { return false }
            case .payload(let header):
                if held.isEmpty && n - p >= header.length {
                    let payload = UnsafeRawBufferPointer(start: base + p, count: header.length)
                    p += header.length
                    guard try finish(header, payload, sink) else { return false }
                } else {
                    let k = min(header.length - held.count, n - p)
                    held.append(contentsOf: UnsafeRawBufferPointer(start: base + p, count: k))
                    p += k
                    guard held.count == header.length else { return true }
                    let whole = held
                    held = []
                    let done = whole.withUnsafeBytes { payload in Result { () throws(H2Violation) in try finish(header, payload, sink) } }
                    guard try done.get() else { return false }
                }
            case .settings(let header, var remaining):
                if entryCount > 0 {
                    let k = min(6 - entryCount, n - p)
                    withUnsafeMutableBytes(of: &entryBytes) { $0.baseAddress!.advanced(by: entryCount).copyMemory(from: base + p, byteCount: k) }
                    entryCount += k
                    p += k
                    remaining -= k
                    guard entryCount == 6 else {
                        state = .settings(header, remaining: remaining)
                        return true
                    }
                    entryCount = 0
                    if remaining == 0 { state = .frameHeader }
                    let entry = entryBytes
                    guard withUnsafeBytes(of: entry, { sink.settings(header, entries: UnsafeRawBufferPointer(rebasing: $0[..<6]), last: remaining == 0) }) else { return false }
                    if remaining == 0 { continue }
                }
                let whole = min(remaining, n - p) / 6 * 6
                if whole > 0 {
                    remaining -= whole
                    if remaining == 0 { state = .frameHeader }
                    let entries = UnsafeRawBufferPointer(start: base + p, count: whole)
                    p += whole
                    guard sink.settings(header, entries: entries, last: remaining == 0) else { return false }
                    if remaining == 0 { continue }
                }
                // Less than an entry is left in this read: it is held until the rest comes.
                let k = n - p
                withUnsafeMutableBytes(of: &entryBytes) { $0.baseAddress!.copyMemory(from: base + p, byteCount: k) }
                entryCount = k
                p += k
                state = .settings(header, remaining: remaining - k)
            case .dataPadLength(let header):
                let padding = Int(base.load(fromByteOffset: p, as: UInt8.self))
                p += 1
                guard padding < header.length else {
                    throw H2Violation(.protocolError, "client sent padded DATA frame with incorrect length: \(header.length), padding: \(padding)")
                }
                guard try enter(.data(header, remaining: header.length - 1 - padding, padding: padding), sink) else { return false }
            case .data(let header, let remaining, let padding):
                let k = min(remaining, n - p)
                guard sink.data(header, UnsafeRawBufferPointer(start: base + p, count: k)) else { return false }
                p += k
                if k < remaining {
                    state = .data(header, remaining: remaining - k, padding: padding)
                } else if padding > 0 {
                    state = .skip(remaining: padding, dataEnd: header)
                } else {
                    state = .frameHeader
                    guard sink.dataEnds(header) else { return false }
                }
            case .skip(let remaining, let dataEnd):
                let k = min(remaining, n - p)
                p += k
                guard k == remaining else {
                    state = .skip(remaining: remaining - k, dataEnd: dataEnd)
                    return true
                }
                state = .frameHeader
                if let header = dataEnd, !sink.dataEnds(header) { return false }
            }
        }
        return true
    }

    /// Moves to `next`, doing at once what needs no more bytes: a DATA frame begins (and ends, if it has
    /// nothing more to read), a frame without payload is complete, an empty frame to skip is skipped.
    private mutating func enter(_ next: State, _ sink: some H2FrameSink) throws(H2Violation) -> Bool {
        state = next
        switch next {
        case .data(let h, let remaining, let padding):
            guard sink.dataBegins(h, dataLength: remaining) else { return false }
            guard remaining == 0 else { return true }
            if padding > 0 {
                state = .skip(remaining: padding, dataEnd: h)
                return true
            }
            state = .frameHeader
            return sink.dataEnds(h)
        case .payload(let h) where h.length == 0:
            return try finish(h, UnsafeRawBufferPointer(start: nil, count: 0), sink)
        case .skip(0, _):
            state = .frameHeader
        default:
            break
        }
        return true
    }

    /// A payload is read whole: the state moves on (past any GOAWAY debug data), then the frame is handled.
    private mutating func finish(_ h: H2FrameHeader, _ payload: UnsafeRawBufferPointer, _ sink: some H2FrameSink) throws(H2Violation) -> Bool {
        state = skipAfterPayload > 0 ? .skip(remaining: skipAfterPayload, dataEnd: nil) : .frameHeader
        skipAfterPayload = 0
        return try complete(h, payload, sink)
    }

    /// What follows a frame header: the checks its length and stream identifier allow before the payload.
    private mutating func begin(_ h: H2FrameHeader) throws(H2Violation) -> State {
        if let pending = pendingBlock {
            guard h.type == .continuation else {
                throw H2Violation(.protocolError, "client sent inappropriate frame while CONTINUATION was expected")
            }
            guard h.streamID == pending.header.streamID else {
                throw H2Violation(.protocolError, "client sent CONTINUATION frame with incorrect identifier")
            }
            try checkBlockRoom(block.count + h.length)
            return .payload(h)
        }
        switch h.type {
        case .data:
            guard h.streamID != 0 else { throw H2Violation(.protocolError, "client sent DATA frame with incorrect identifier") }
            if h.has(H2Flag.padded) {
                guard h.length > 0 else { throw H2Violation(.frameSizeError, "client sent padded DATA frame with incorrect length: 0") }
                return .dataPadLength(h)
            }
            return .data(h, remaining: h.length, padding: 0)
        case .headers:
            guard h.streamID != 0 else { throw H2Violation(.protocolError, "client sent HEADERS frame with incorrect identifier 0") }
            let fixed = (h.has(H2Flag.padded) ? 1 : 0) + (h.has(H2Flag.priority) ? 5 : 0)
            guard h.length >= fixed else { throw H2Violation(.frameSizeError, "client sent HEADERS frame with incorrect length \(h.length)") }
            guard h.length > fixed else { throw H2Violation(.frameSizeError, "client sent HEADERS frame with empty header block") }
            try checkBlockRoom(h.length - fixed)
        case .priority:
            guard h.length == 5 else { throw H2Violation(.frameSizeError, "client sent PRIORITY frame with incorrect length \(h.length)") }
            guard h.streamID != 0 else { throw H2Violation(.protocolError, "client sent PRIORITY frame with incorrect identifier") }
        case .rstStream:
            guard h.length == 4 else { throw H2Violation(.frameSizeError, "client sent RST_STREAM frame with incorrect length \(h.length)") }
            guard h.streamID != 0 else { throw H2Violation(.protocolError, "client sent RST_STREAM frame with incorrect identifier") }
        case .settings:
            guard h.streamID == 0 else { throw H2Violation(.protocolError, "client sent SETTINGS frame with incorrect identifier") }
            if h.has(H2Flag.ack) {
                guard h.length == 0 else { throw H2Violation(.frameSizeError, "client sent SETTINGS frame with the ACK flag and nonzero length") }
            } else if h.length % 6 != 0 {
                throw H2Violation(.frameSizeError, "client sent SETTINGS frame with incorrect length \(h.length)")
            } else if h.length > 0 {
                // Read as its entries come, never held whole (a frame may be as large as MAX_FRAME_SIZE).
                return .settings(h, remaining: h.length)
            }
        case .pushPromise:
            throw H2Violation(.protocolError, "client sent PUSH_PROMISE frame")
        case .ping:
            guard h.length == 8 else { throw H2Violation(.frameSizeError, "client sent PING frame with incorrect length \(h.length)") }
            guard h.streamID == 0 else { throw H2Violation(.protocolError, "client sent PING frame with incorrect identifier") }
        case .goAway:
            guard h.length >= 8 else { throw H2Violation(.frameSizeError, "client sent GOAWAY frame with incorrect length \(h.length)") }
            guard h.streamID == 0 else { throw H2Violation(.protocolError, "client sent GOAWAY frame with incorrect identifier") }
            // The debug data after the two words is read past, not held.
            skipAfterPayload = h.length - 8
            return .payload(H2FrameHeader(length: 8, type: h.type, flags: h.flags))
        case .windowUpdate:
            guard h.length == 4 else { throw H2Violation(.frameSizeError, "client sent WINDOW_UPDATE frame with incorrect length \(h.length)") }
        case .continuation:
            throw H2Violation(.protocolError, "client sent unexpected CONTINUATION frame")
        default:
            // Unknown types are ignored (§5.5).
            return .skip(remaining: h.length, dataEnd: nil)
        }
        return .payload(h)
    }

    private func checkBlockRoom(_ n: Int) throws(H2Violation) {
        guard n <= maxHeaderBlock else { throw H2Violation(.enhanceYourCalm, "client sent too large header") }
    }

    /// A payload read whole (or, for a zero-length frame, none): handed on by type.
    private mutating func complete(_ h: H2FrameHeader, _ payload: UnsafeRawBufferPointer, _ sink: some H2FrameSink) throws(H2Violation) -> Bool {
        switch h.type {
        case .headers:
            var p = payload
            if h.has(H2Flag.padded) {
                let padding = Int(p[0])
                p = UnsafeRawBufferPointer(rebasing: p[1...])
                guard padding <= p.count - (h.has(H2Flag.priority) ? 5 : 0) else {
                    throw H2Violation(.protocolError, "client sent padded HEADERS frame with incorrect length: \(p.count), padding: \(padding)")
                }
                p = UnsafeRawBufferPointer(rebasing: p[..<(p.count - padding)])
            }
            var priority: H2Priority?
            if h.has(H2Flag.priority) {
                priority = H2Priority(p.baseAddress!)
                p = UnsafeRawBufferPointer(rebasing: p[5...])
            }
            if h.has(H2Flag.endHeaders) { return sink.headerBlock(h, priority: priority, block: p, length: h.length) }
            pendingBlock = (h, priority, h.length)
            block.append(contentsOf: p)
            return true
        case .continuation:
            // `begin` lets a CONTINUATION through only after a HEADERS frame without END_HEADERS.
            let pending = pendingBlock!
            block.append(contentsOf: payload)
            pendingBlock!.length += h.length
            guard h.has(H2Flag.endHeaders) else { return true }
            pendingBlock = nil
            let whole = block
            block = []
            return whole.withUnsafeBytes { sink.headerBlock(pending.header, priority: pending.priority, block: $0, length: pending.length + h.length) }
        default:
            return sink.frame(h, payload: payload)
        }
    }
}

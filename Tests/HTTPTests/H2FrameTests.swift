import FuzzSupport
@testable import HTTP
import Core
import XCTest

/// What a frame reader handed on, one line an event, for the tests to compare.
final class RecordingSink: H2FrameSink {
    var events: [String] = []
    var stopAfter = Int.max

    private func note(_ s: String) -> Bool {
        events.append(s)
        return events.count < stopAfter
    }

    func frameBegins(_ h: H2FrameHeader) -> Bool { true }

    func frame(_ h: H2FrameHeader, payload: UnsafeRawBufferPointer) -> Bool {
        note("frame \(h.type.rawValue) flags \(h.flags) sid \(h.streamID) \(Array(payload))")
    }

    /// SETTINGS entries joined into one event at the frame's end, however the reads cut them.
    private var entries: [UInt8] = []
    var settingsCalls = 0
    func settings(_ h: H2FrameHeader, entries bytes: UnsafeRawBufferPointer, last: Bool) -> Bool {
        settingsCalls += 1
        entries += bytes
        guard last else { return true }
        defer { entries = [] }
        return note("frame \(h.type.rawValue) flags \(h.flags) sid \(h.streamID) \(entries)")
    }

    func headerBlock(_ h: H2FrameHeader, priority: H2Priority?, block: UnsafeRawBufferPointer, length: Int) -> Bool {
        let p = priority.map { " dep \($0.dependency) excl \($0.exclusive) weight \($0.weight)" } ?? ""
        return note("headers sid \(h.streamID) flags \(h.flags)\(p) block \(Array(block)) length \(length)")
    }

    func dataBegins(_ h: H2FrameHeader, dataLength: Int) -> Bool { note("data sid \(h.streamID) length \(h.length) data \(dataLength)") }

    func data(_ h: H2FrameHeader, _ bytes: UnsafeRawBufferPointer) -> Bool { note("bytes \(Array(bytes))") }

    func dataEnds(_ h: H2FrameHeader) -> Bool { note("end sid \(h.streamID) flags \(h.flags)") }
}

/// Feeds `bytes` to `reader`: whether to go on, or the violation.
func feed(_ reader: inout H2FrameReader, _ bytes: [UInt8], _ sink: RecordingSink) -> Result<Bool, H2Violation> {
    bytes.withUnsafeBytes { b in Result { () throws(H2Violation) in try reader.read(b, into: sink) } }
}

/// The tree's shape, read from its nodes for the tests.
extension H2PriorityTree {
    func parentInTree(of id: UInt32) -> UInt32? { nodes.first { $0.id == id }?.parent }
    func weightInTree(of id: UInt32) -> Int? { nodes.first { $0.id == id }?.weight }
    /// The streams depending on `id` directly (0: the root's), in the order they were placed there.
    func childrenInTree(of id: UInt32) -> [UInt32] { nodes.filter { $0.parent == id }.map(\.id) }
}

final class H2FrameTests: XCTestCase {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(_ type: UInt8, _ flags: UInt8, _ sid: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
                UInt8(sid >> 24), UInt8(sid >> 16 & 0xff), UInt8(sid >> 8 & 0xff), UInt8(sid & 0xff)] + payload
    }

    /// Reads `bytes` (after the preface) in pieces of `pieces` bytes; returns the events and the violation, if any.
    func read(_ bytes: [UInt8], pieces: Int = .max, maxBlock: Int = 1 << 20) -> (events: [String], violation: H2Violation?) {
        var reader = H2FrameReader(maxHeaderBlock: maxBlock)
        let sink = RecordingSink()
        let all = H2FrameTests.preface + bytes
        var offset = 0
        while offset < all.count {
            let end = min(all.count, offset + max(1, pieces))
            switch feed(&reader, Array(all[offset..<end]), sink) {
            case .success(let goOn):
                if !goOn { return (sink.events, nil) }
            case .failure(let violation):
                return (sink.events, violation)
            }
            offset = end
        }
        return (sink.events, nil)
    }

    /// The same events whether the bytes come at once, a byte at a time or in pieces of 7.
    func readAlike(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let whole = read(bytes)
        XCTAssertNil(whole.violation, file: file, line: line)
        for n in [1, 7] {
            let split = read(bytes, pieces: n)
            XCTAssertNil(split.violation, file: file, line: line)
            // DATA comes in as many pieces as the reads cut it: compare the bytes joined.
            XCTAssertEqual(joinData(split.events), joinData(whole.events), "pieces of \(n)", file: file, line: line)
        }
        return whole.events
    }

    func joinData(_ events: [String]) -> [String] {
        var out: [String] = []
        var bytes: [String] = []
        for e in events {
            if e.hasPrefix("bytes [") {
                bytes.append(String(e.dropFirst(7).dropLast()))
                continue
            }
            if !bytes.isEmpty { out.append("bytes " + bytes.filter { !$0.isEmpty }.joined(separator: ", ")); bytes = [] }
            out.append(e)
        }
        return out
    }

    // MARK: the frame header and the writers

    func testFrameHeaderRoundTrips() {
        let h = H2FrameHeader(length: 0x01_02_03, type: .headers, flags: 0x25, streamID: 0x7fff_fffe)
        let q = OutputQueue()
        H2FrameWriter.appendHeader(h, to: q)
        XCTAssertEqual(q.bytes, [1, 2, 3, 1, 0x25, 0x7f, 0xff, 0xff, 0xfe])
        XCTAssertEqual(q.bytes.withUnsafeBytes { H2FrameHeader($0.baseAddress!) }, h)
        // The reserved bit is ignored on reading.
        let reserved: [UInt8] = [0, 0, 0, 8, 0, 0x80, 0, 0, 1]
        XCTAssertEqual(reserved.withUnsafeBytes { H2FrameHeader($0.baseAddress!) }.streamID, 1)
    }

    func testWritersMakeTheFramesTheRFCDescribes() {
        let q = OutputQueue()
        H2FrameWriter.appendSettings([(.maxConcurrentStreams, 128), (.initialWindowSize, 65536)], to: q)
        H2FrameWriter.appendSettingsAck(to: q)
        H2FrameWriter.appendWindowUpdate(stream: 3, increment: 0x7fff_0000, to: q)
        H2FrameWriter.appendRstStream(stream: 5, code: .refusedStream, to: q)
        H2FrameWriter.appendGoAway(lastStream: 7, code: .enhanceYourCalm, to: q)
        let f = H2FrameTests.frame
        var expected = f(4, 0, 0, [0, 3, 0, 0, 0, 128, 0, 4, 0, 1, 0, 0])
        expected += f(4, 1, 0, [])
        expected += f(8, 0, 3, [0x7f, 0xff, 0, 0])
        expected += f(3, 0, 5, [0, 0, 0, 7])
        expected += f(7, 0, 0, [0, 0, 0, 7, 0, 0, 0, 11])
        XCTAssertEqual(q.bytes, expected)
    }

    func testAHeaderBlockLargerThanAFrameGoesOnInContinuationFrames() {
        let q = OutputQueue()
        let block = [UInt8](repeating: 0x82, count: 40_000)
        block.withUnsafeBytes { H2FrameWriter.appendHeaders(stream: 1, block: $0, endStream: true, maxFrameSize: 16384, to: q) }
        let events = read(q.bytes).events
        XCTAssertEqual(events.count, 1)
        // The HEADERS frame's flags (END_STREAM) and the length of all three payloads.
        XCTAssertTrue(events[0].hasPrefix("headers sid 1 flags 1 block [130, 130"))
        XCTAssertTrue(events[0].hasSuffix("130] length 40000"))
        // HEADERS without END_HEADERS (END_STREAM only), CONTINUATION, CONTINUATION with END_HEADERS.
        let b = q.bytes
        XCTAssertEqual(Array(b[3...4]), [1, 1])
        XCTAssertEqual(Array(b[(9 + 16384 + 3)...(9 + 16384 + 4)]), [9, 0])
        XCTAssertEqual(Array(b[(2 * (9 + 16384) + 3)...(2 * (9 + 16384) + 4)]), [9, 4])
    }

    // MARK: reading each frame type

    func testTheReaderHandsOnEveryFrameTypeAlikeHoweverTheBytesAreCut() {
        let f = H2FrameTests.frame
        let bytes = f(4, 0, 0, [0, 4, 0, 0, 0, 10]) + f(4, 1, 0, []) + f(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8])
            + f(2, 0, 3, [0x80, 0, 0, 1, 255]) + f(1, 0x25, 3, [0, 0, 0, 1, 15, 0x82, 0x84])
            + f(0, 0, 3, [9, 9, 9]) + f(0, 0x9, 3, [2, 7, 0, 0]) + f(3, 0, 3, [0, 0, 0, 8]) + f(8, 0, 0, [0, 0, 1, 0])
            + f(7, 0, 0, [0, 0, 0, 3, 0, 0, 0, 0, 0x64, 0x65, 0x62, 0x75, 0x67]) + f(0xfa, 0xff, 9, [1, 2, 3])
        XCTAssertEqual(joinData(readAlike(bytes)), [
            "frame 4 flags 0 sid 0 [0, 4, 0, 0, 0, 10]",
            "frame 4 flags 1 sid 0 []",
            "frame 6 flags 0 sid 0 [1, 2, 3, 4, 5, 6, 7, 8]",
            "frame 2 flags 0 sid 3 [128, 0, 0, 1, 255]",
            "headers sid 3 flags 37 dep 1 excl false weight 16 block [130, 132] length 7",
            "data sid 3 length 3 data 3",
            "bytes 9, 9, 9",
            "end sid 3 flags 0",
            // Padded: 2 bytes of padding after one byte of data.
            "data sid 3 length 4 data 1",
            "bytes 7",
            "end sid 3 flags 9",
            "frame 3 flags 0 sid 3 [0, 0, 0, 8]",
            "frame 8 flags 0 sid 0 [0, 0, 1, 0]",
            // GOAWAY's debug data is read past; the unknown type is skipped without a word.
            "frame 7 flags 0 sid 0 [0, 0, 0, 3, 0, 0, 0, 0]",
        ])
    }

    func testEmptyDataFramesBeginAndEndAtOnce() {
        let f = H2FrameTests.frame
        XCTAssertEqual(readAlike(f(0, 1, 1, []) + f(0, 0x9, 1, [0])), [
            "data sid 1 length 0 data 0", "end sid 1 flags 1", "data sid 1 length 1 data 0", "end sid 1 flags 9",
        ])
    }

    func testPaddedHeadersLoseTheirPadding() {
        let f = H2FrameTests.frame
        // PADDED and PRIORITY: pad length 2, exclusive dependency on 0 weight 256, block [0x82], padding.
        XCTAssertEqual(readAlike(f(1, 0x2c, 1, [2, 0x80, 0, 0, 0, 255, 0x82, 0, 0])),
                       ["headers sid 1 flags 44 dep 0 excl true weight 256 block [130] length 9"])
    }

    func testMalformedLengthsAndIdentifiersAreConnectionErrors() {
        let f = H2FrameTests.frame
        let cases: [([UInt8], H2ErrorCode)] = [
            (f(0, 0, 0, [1]), .protocolError),                       // DATA on stream 0
            (f(0, 0x8, 1, []), .frameSizeError),                     // padded DATA without its pad length
            (f(0, 0x8, 1, [3, 0, 0]), .protocolError),               // padding past the payload
            (f(1, 0x4, 0, [0x82]), .protocolError),                  // HEADERS on stream 0
            (f(1, 0x2c, 1, [0, 0, 0, 0]), .frameSizeError),          // shorter than its pad length and priority
            (f(1, 0x24, 1, [0, 0, 0, 0, 1]), .frameSizeError),       // priority and no block
            (f(1, 0xc, 1, [5, 0x82, 0]), .protocolError),            // padding past the block
            (f(2, 0, 1, [0, 0, 0, 0]), .frameSizeError),             // PRIORITY of 4 bytes
            (f(2, 0, 0, [0, 0, 0, 1, 0]), .protocolError),           // PRIORITY on stream 0
            (f(3, 0, 1, [0, 0, 0]), .frameSizeError),                // RST_STREAM of 3 bytes
            (f(3, 0, 0, [0, 0, 0, 0]), .protocolError),              // RST_STREAM on stream 0
            (f(4, 0, 1, []), .protocolError),                        // SETTINGS on a stream
            (f(4, 1, 0, [0, 0, 0, 0, 0, 0]), .frameSizeError),       // SETTINGS ACK with a payload
            (f(4, 0, 0, [0, 1, 0, 0, 0]), .frameSizeError),          // not a multiple of 6
            (f(5, 4, 1, [0, 0, 0, 2, 0x82]), .protocolError),        // PUSH_PROMISE from a client
            (f(6, 0, 0, [1, 2, 3]), .frameSizeError),                // PING of 3 bytes
            (f(6, 0, 1, [1, 2, 3, 4, 5, 6, 7, 8]), .protocolError),  // PING on a stream
            (f(7, 0, 0, [0, 0, 0, 0]), .frameSizeError),             // GOAWAY of 4 bytes
            (f(7, 0, 1, [0, 0, 0, 0, 0, 0, 0, 0]), .protocolError),  // GOAWAY on a stream
            (f(8, 0, 0, [0, 0, 1]), .frameSizeError),                // WINDOW_UPDATE of 3 bytes
            (f(9, 4, 1, [0x82]), .protocolError),                    // CONTINUATION out of the blue
        ]
        for (bytes, code) in cases {
            for pieces in [Int.max, 1] {
                let r = read(bytes, pieces: pieces)
                XCTAssertEqual(r.violation?.code, code, "\(bytes) in pieces of \(pieces): \(r)")
                XCTAssertEqual(r.events, [], "\(bytes)")
            }
        }
    }

    func testAWrongPrefaceIsRefusedAtTheFirstWrongByte() {
        var reader = H2FrameReader(maxHeaderBlock: 100)
        let sink = RecordingSink()
        XCTAssertEqual(feed(&reader, Array("PRI * HTTP/1.1\r\n".utf8), sink), .failure(H2Violation(.protocolError, "client sent invalid HTTP/2 preface")))
    }

    // MARK: CONTINUATION

    func testContinuationFramesJoinTheBlock() {
        let f = H2FrameTests.frame
        let bytes = f(1, 0x1, 1, [0x82]) + f(9, 0, 1, [0x84]) + f(9, 0x4, 1, [0x86, 0x41])
        XCTAssertEqual(readAlike(bytes), ["headers sid 1 flags 1 block [130, 132, 134, 65] length 4"])
    }

    func testAnythingButTheStreamsContinuationBreaksTheSequence() {
        let f = H2FrameTests.frame
        let open = f(1, 0, 1, [0x82])
        for (next, reason) in [(f(9, 4, 3, [0x84]), "client sent CONTINUATION frame with incorrect identifier"),
                               (f(6, 0, 0, [0, 0, 0, 0, 0, 0, 0, 0]), "client sent inappropriate frame while CONTINUATION was expected"),
                               (f(1, 4, 3, [0x82]), "client sent inappropriate frame while CONTINUATION was expected"),
                               (f(0, 0, 1, [1]), "client sent inappropriate frame while CONTINUATION was expected")] {
            let r = read(open + next)
            XCTAssertEqual(r.violation, H2Violation(.protocolError, reason))
            XCTAssertEqual(r.events, [])
        }
    }

    func testTheHeaderBlockIsBoundedBeforeItIsHeld() {
        let f = H2FrameTests.frame
        var bytes = f(1, 0, 1, [UInt8](repeating: 0x82, count: 1000))
        for _ in 0..<100 { bytes += f(9, 0, 1, [UInt8](repeating: 0x82, count: 1000)) }
        var reader = H2FrameReader(maxHeaderBlock: 10_000)
        let sink = RecordingSink()
        XCTAssertEqual(feed(&reader, H2FrameTests.preface + bytes, sink), .failure(H2Violation(.enhanceYourCalm, "client sent too large header")))
        XCTAssertLessThanOrEqual(reader.heldBytes, 2 * 10_000)
        // A single HEADERS frame past the bound is refused at its header, before its payload is read.
        XCTAssertEqual(read(f(1, 4, 1, [UInt8](repeating: 0x82, count: 200)), maxBlock: 100).violation?.code, .enhanceYourCalm)
    }

    func testASplitFrameIsHeldOnlyUntilItIsComplete() {
        let f = H2FrameTests.frame
        var reader = H2FrameReader(maxHeaderBlock: 1 << 20)
        let sink = RecordingSink()
        let bytes = H2FrameTests.preface + f(1, 5, 1, [UInt8](repeating: 0x82, count: 3000))
        XCTAssertEqual(feed(&reader, Array(bytes[..<1000]), sink), .success(true))
        XCTAssertEqual(reader.incompleteHeadStream, 1)
        XCTAssertGreaterThan(reader.heldBytes, 0)
        XCTAssertEqual(feed(&reader, Array(bytes[1000...]), sink), .success(true))
        XCTAssertNil(reader.incompleteHeadStream)
        XCTAssertEqual(reader.heldBytes, 0)
        XCTAssertEqual(sink.events.count, 1)
    }

    func testSettingsAreReadAsTheirEntriesComeNotHeldWhole() {
        // 100,000 entries (600,000 bytes: within the MAX_FRAME_SIZE Vigil advertises) in pieces of 1000 bytes:
        // at most an entry's five bytes are held between pieces.
        var payload: [UInt8] = []
        for i in 0..<100_000 { payload += settings([(4, UInt32(i))]) }
        let bytes = H2FrameTests.preface + H2FrameTests.frame(4, 0, 0, payload) + H2FrameTests.frame(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8])
        var reader = H2FrameReader(maxHeaderBlock: 100)
        let sink = RecordingSink()
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + 1000)
            XCTAssertEqual(feed(&reader, Array(bytes[offset..<end]), sink), .success(true))
            XCTAssertLessThanOrEqual(reader.heldBytes, 5)
            offset = end
        }
        XCTAssertEqual(sink.events, ["frame 4 flags 0 sid 0 \(payload)", "frame 6 flags 0 sid 0 [1, 2, 3, 4, 5, 6, 7, 8]"])
        XCTAssertGreaterThan(sink.settingsCalls, 600)
        // A bad value in a later piece: nothing of the frame was applied.
        var peer = H2PeerSettings()
        var pending = H2PeerSettings.Pending(peer)
        func take(_ bytes: [UInt8]) -> H2Violation? {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
            defer { b.deallocate() }
            b.copyBytes(from: bytes)
            do throws(H2Violation) {
                try pending.take(UnsafeRawBufferPointer(b))
                return nil
            } catch {
                return error
            }
        }
        XCTAssertNil(take(settings([(4, 10), (5, 32768)])))
        XCTAssertEqual(take(settings([(2, 7)]))?.code, .protocolError)
        XCTAssertEqual(peer, H2PeerSettings())
        XCTAssertEqual(pending.apply(to: &peer).windowDelta, 10 - 65535)
    }

    func testASinkThatSaysStopStopsTheReading() {
        let f = H2FrameTests.frame
        var reader = H2FrameReader(maxHeaderBlock: 100)
        let sink = RecordingSink()
        sink.stopAfter = 1
        let bytes = H2FrameTests.preface + f(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]) + f(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(feed(&reader, bytes, sink), .success(false))
        XCTAssertEqual(sink.events.count, 1)
    }

    // MARK: SETTINGS

    func settings(_ pairs: [(UInt16, UInt32)]) -> [UInt8] {
        var out: [UInt8] = []
        for (id, value) in pairs {
            out += [UInt8(id >> 8), UInt8(truncatingIfNeeded: id)]
            out += [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
        }
        return out
    }

    func testSettingsAreValidatedAsRFC9113Says() throws {
        var peer = H2PeerSettings()
        let change = try settings([(4, 100_000), (5, 32768), (1, 0), (2, 1), (0x99, 7)]).withUnsafeBytes {
            (b: UnsafeRawBufferPointer) throws(H2Violation) in try peer.apply(b)
        }
        XCTAssertEqual(change, H2PeerSettings.Change(windowDelta: 100_000 - 65535, headerTableSize: 0))
        XCTAssertEqual(peer.maxFrameSize, 32768)
        XCTAssertEqual(peer.initialWindowSize, 100_000)
        for (pairs, code) in [([(UInt16(4), UInt32(0x8000_0000))], H2ErrorCode.flowControlError), ([(5, 16383)], .protocolError),
                              ([(5, 16_777_216)], .protocolError), ([(2, 2)], .protocolError)] {
            var p = peer
            XCTAssertThrowsError(try settings(pairs).withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(H2Violation) in try p.apply(b) }) {
                XCTAssertEqual(($0 as? H2Violation)?.code, code)
            }
            // Nothing of a refused frame is applied.
            XCTAssertEqual(p, peer)
        }
        // The largest window and frame size are allowed; a smaller window is a negative delta.
        let down = try settings([(4, 0x7fff_ffff), (4, 10), (5, 16_777_215)]).withUnsafeBytes {
            (b: UnsafeRawBufferPointer) throws(H2Violation) in try peer.apply(b)
        }
        XCTAssertEqual(down.windowDelta, 10 - 100_000)
    }

    // MARK: flow control

    func testSendWindowsRefuseToPassTheLargestWindow() {
        var w = H2SendWindow(H2.defaultWindow)
        XCTAssertTrue(w.grow(by: H2.maxWindow - H2.defaultWindow))
        XCTAssertEqual(w.value, H2.maxWindow)
        XCTAssertFalse(w.grow(by: 1))
        XCTAssertEqual(w.value, H2.maxWindow)
        w.take(H2.maxWindow)
        // A SETTINGS change may take it below zero; DATA waits until updates bring it back.
        XCTAssertTrue(w.grow(by: -100))
        XCTAssertEqual(w.value, -100)
        XCTAssertTrue(w.grow(by: H2.maxWindow))
        XCTAssertFalse(w.grow(by: 101))
    }

    func testReceiveWindowsOpenAsTheReaderConsumes() {
        var w = H2ReceiveWindow(65536)
        XCTAssertTrue(w.receive(65536))
        XCTAssertFalse(w.receive(1))
        XCTAssertNil(w.consume(30000))
        XCTAssertEqual(w.consume(3000), 33000)
        XCTAssertEqual(w.available, 33000)
        XCTAssertFalse(w.receive(33001))
        XCTAssertTrue(w.receive(33000))
        // A window of 0 takes nothing.
        var zero = H2ReceiveWindow(0)
        XCTAssertFalse(zero.receive(1))
    }

    func testTheResetAllowanceRefillsAtItsRate() {
        var limit = H2RateLimit(burst: 3, perSecond: 2)
        XCTAssertTrue(limit.take(nowMs: 1000))
        XCTAssertTrue(limit.take(nowMs: 1000))
        XCTAssertTrue(limit.take(nowMs: 1000))
        XCTAssertFalse(limit.take(nowMs: 1400))
        XCTAssertTrue(limit.take(nowMs: 1500))
        XCTAssertFalse(limit.take(nowMs: 1500))
        XCTAssertTrue(limit.take(nowMs: 100_000))
        XCTAssertTrue(limit.take(nowMs: 100_000))
        XCTAssertTrue(limit.take(nowMs: 100_000))
        XCTAssertFalse(limit.take(nowMs: 100_000))
    }

    // MARK: the priority tree

    func testStreamsOpenAtTheRootOrWhereTheirPrioritySaysOrWherePriorityPlacedThem() {
        var tree = H2PriorityTree()
        tree.open(1, priority: nil)
        tree.open(3, priority: H2Priority(dependency: 1, weight: 32))
        XCTAssertEqual(tree.parentInTree(of: 3), 1)
        XCTAssertEqual(tree.weightInTree(of: 3), 32)
        // A PRIORITY frame places an idle stream; its HEADERS without a priority keep that place (nginx).
        tree.prioritize(5, H2Priority(dependency: 3, weight: 100))
        tree.open(5, priority: nil)
        XCTAssertEqual(tree.parentInTree(of: 5), 3)
        XCTAssertEqual(tree.weightInTree(of: 5), 100)
        // A dependency on a stream not in the tree: the root, not exclusively.
        tree.open(7, priority: H2Priority(dependency: 99, exclusive: true, weight: 8))
        XCTAssertEqual(tree.parentInTree(of: 7), 0)
        XCTAssertEqual(tree.childrenInTree(of: 0), [1, 7])
    }

    func testExclusiveDependencyAdoptsTheSiblings() {
        var tree = H2PriorityTree()
        for id: UInt32 in [1, 3, 5] { tree.open(id, priority: nil) }
        tree.open(7, priority: H2Priority(dependency: 0, exclusive: true, weight: 16))
        XCTAssertEqual(tree.childrenInTree(of: 0), [7])
        XCTAssertEqual(Set(tree.childrenInTree(of: 7)), [1, 3, 5])
    }

    func testDependingOnADescendantMovesItUpFirst() {
        // RFC 7540 §5.3.3's example: A with B, C below; D below C. A made to depend on D.
        var tree = H2PriorityTree()
        tree.open(1, priority: nil)                                  // A
        tree.open(3, priority: H2Priority(dependency: 1))            // B
        tree.open(5, priority: H2Priority(dependency: 1))            // C
        tree.open(7, priority: H2Priority(dependency: 5))            // D
        tree.prioritize(1, H2Priority(dependency: 7))
        XCTAssertEqual(tree.parentInTree(of: 7), 0)
        XCTAssertEqual(tree.parentInTree(of: 1), 7)
        XCTAssertEqual(tree.parentInTree(of: 5), 1)
        XCTAssertEqual(tree.parentInTree(of: 3), 1)
        // D made to depend exclusively on C, its descendant: C moves up to D's place (the root) first.
        tree.prioritize(9, H2Priority(dependency: 7))
        tree.prioritize(7, H2Priority(dependency: 5, exclusive: true))
        XCTAssertEqual(tree.parentInTree(of: 5), 0)
        XCTAssertEqual(tree.parentInTree(of: 7), 5)
        XCTAssertEqual(tree.parentInTree(of: 1), 7)
        XCTAssertEqual(tree.parentInTree(of: 9), 7)
        XCTAssertEqual(tree.childrenInTree(of: 0), [5])
    }

    func testAClosedStreamsChildrenShareItsWeight() {
        var tree = H2PriorityTree()
        tree.open(1, priority: H2Priority(dependency: 0, weight: 200))
        tree.open(3, priority: H2Priority(dependency: 1, weight: 30))
        tree.open(5, priority: H2Priority(dependency: 1, weight: 10))
        tree.close(1)
        XCTAssertFalse(tree.nodes.contains { $0.id == 1 })
        XCTAssertEqual(tree.parentInTree(of: 3), 0)
        XCTAssertEqual(tree.weightInTree(of: 3), 150)
        XCTAssertEqual(tree.weightInTree(of: 5), 50)
        tree.close(3)
        tree.close(5)
        XCTAssertTrue(tree.nodes.isEmpty)
    }

    func testIdleNodesAreBounded() {
        var tree = H2PriorityTree()
        for k: UInt32 in 0..<100 { tree.prioritize(2 * k + 1, H2Priority(dependency: k == 0 ? 0 : 2 * k - 1)) }
        XCTAssertEqual(tree.nodes.count, H2PriorityTree.maxIdle)
        XCTAssertEqual(tree.nodes.map(\.id), Array(stride(from: UInt32(200 - 2 * H2PriorityTree.maxIdle + 1), through: 199, by: 2)))
    }

    func testTheQueuePlaceIsNginxs() {
        var tree = H2PriorityTree()
        tree.open(1, priority: H2Priority(dependency: 0, weight: 256))
        tree.open(3, priority: H2Priority(dependency: 0, weight: 1))
        tree.open(5, priority: H2Priority(dependency: 1, weight: 256))
        let one = tree.queuePlace(1)!, three = tree.queuePlace(3)!, five = tree.queuePlace(5)!
        XCTAssertTrue(one.precedes(three))
        XCTAssertTrue(three.precedes(five))
        XCTAssertEqual(five, H2QueuePlace(rank: 2, share: 1))
        // A stream without a node sits at the root with the default weight.
        XCTAssertEqual(tree.queuePlace(11), H2QueuePlace(rank: 1, share: 16.0 / 256))
    }

    // MARK: fuzz

    /// Mutated frame sequences, read whole and cut at random: no trap, no loop, the same verdict and events
    /// however they are cut, and no more held than the header block bound and one frame.
    func testMutatedFramesNeverTrapAndReadAlikeHoweverCut() {
        let f = H2FrameTests.frame
        let corpus: [[UInt8]] = [
            f(4, 0, 0, [0, 4, 0, 0, 0, 10]), f(4, 1, 0, []), f(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]), f(2, 0, 3, [0x80, 0, 0, 1, 255]),
            f(1, 0x2d, 3, [1, 0, 0, 0, 1, 15, 0x82, 0x84, 0]), f(1, 0x1, 5, [0x82]) + f(9, 4, 5, [0x84]), f(0, 0x9, 3, [2, 7, 0, 0]),
            f(3, 0, 3, [0, 0, 0, 8]), f(8, 0, 0, [0, 0, 1, 0]), f(7, 0, 0, [0, 0, 0, 3, 0, 0, 0, 0, 1]), f(0xfa, 0xff, 9, [1, 2, 3]),
            f(0, 1, 1, []),
        ]
        let seed = FuzzEnvironment.seed(default: 2027)
        _ = FuzzProgress.runTest("H2 frame fuzz", iterations: FuzzEnvironment.iterations(default: 8000), seed: seed,
                                 show: { $0.map { String($0, radix: 16) }.joined(separator: " ") },
                                 summary: { $0.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") }) { iteration, progress in
            var rng = SplitMix64(seed: seed ^ (UInt64(iteration) &* 0x9E37_79B9_7F4A_7C15))
            var input: [UInt8] = []
            for _ in 0..<(1 + rng.below(4)) { input += rng.pick(corpus) }
            input = BinaryMutation.mutate(input, corpus: corpus, rng: &rng)
            progress.start(input)
            let whole = self.read(input, maxBlock: 64)
            let cut = self.read(input, pieces: 1 + rng.below(12), maxBlock: 64)
            if whole.violation != cut.violation || self.joinData(whole.events) != self.joinData(cut.events) {
                progress.fail("iteration \(iteration): whole \(whole) cut \(cut)")
            }
            progress.count(whole.violation.map { $0.code.name } ?? "read")
            progress.finish()
        }
    }
}

import FuzzSupport
import XCTest
@testable import HTTP

/// A decoded field as bytes (values can be any bytes), for comparisons.
struct HField: Equatable, CustomStringConvertible {
    var name: [UInt8]
    var value: [UInt8]
    var neverIndexed = false
    var description: String { "\(escaped(name)): \(escaped(value))\(neverIndexed ? " (never indexed)" : "")" }
}

func hf(_ name: String, _ value: String, never: Bool = false) -> HField { HField(name: bytes(name), value: bytes(value), neverIndexed: never) }

/// "8286 8441" and the like: the RFC's hex dumps, spaces and newlines ignored.
func hex(_ s: String) -> [UInt8] {
    let digits = s.unicodeScalars.filter { !$0.properties.isWhitespace }.map { UInt8(String($0), radix: 16)! }
    return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
}

/// Decodes one block: the fields handed over, and the error if it ended in one.
func decodeBlock(_ d: HPACKDecoder, _ block: [UInt8]) -> (fields: [HField], error: HPACKError?) {
    var fields: [HField] = []
    let error = block.withUnsafeBytes { buf -> HPACKError? in
        do throws(HPACKError) {
            try d.decode(buf) { fields.append(HField(name: Array($0.name), value: Array($0.value), neverIndexed: $0.neverIndexed)) }
            return nil
        } catch {
            return error
        }
    }
    return (fields, error)
}

final class HPACKTests: XCTestCase {

    // MARK: Helpers

    func assertDecodes(_ d: HPACKDecoder, _ block: [UInt8], _ expected: [HField], file: StaticString = #filePath, line: UInt = #line) {
        let r = decodeBlock(d, block)
        XCTAssertNil(r.error, "error decoding \(block)", file: file, line: line)
        XCTAssertEqual(r.fields, expected, file: file, line: line)
    }

    func assertFails(_ block: [UInt8], _ expected: HPACKError, decoder: HPACKDecoder = HPACKDecoder(),
                     file: StaticString = #filePath, line: UInt = #line) {
        let r = decodeBlock(decoder, block)
        XCTAssertEqual(r.error, expected, "block \(block) gave \(r.fields)", file: file, line: line)
    }

    /// The dynamic table, newest first.
    func table(_ d: HPACKDecoder) -> [HField] {
        (0..<d.tableCount).map { let e = d.tableEntry($0); return HField(name: e.name, value: e.value) }
    }

    func encodeInteger(_ v: Int, prefixBits: Int, flags: UInt8 = 0) -> [UInt8] {
        var out: [UInt8] = []
        HPACK.appendInteger(v, prefixBits: prefixBits, flags: flags, to: &out)
        return out
    }

    func decodeInteger(_ b: [UInt8], prefixBits: Int) -> (value: Int, consumed: Int)? {
        b.withUnsafeBytes { buf in
            var i = 0
            guard let v = try? HPACK.decodeInteger(buf, &i, prefixBits: prefixBits) else { return nil }
            return (v, i)
        }
    }

    func huffman(_ s: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        s.withUnsafeBytes { HPACKHuffman.encode($0, count: HPACKHuffman.encodedCount($0), to: &out) }
        return out
    }

    func unhuffman(_ s: [UInt8]) -> Result<[UInt8], HPACKError> {
        var out = [UInt8](repeating: 0, count: HPACKHuffman.maxDecodedCount(s.count) + 1)
        return s.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                do throws(HPACKError) {
                    let n = try HPACKHuffman.decode(src, into: dst.baseAddress!)
                    return .success(Array(dst[0..<n]))
                } catch {
                    return .failure(error)
                }
            }
        }
    }

    // MARK: C.1 integers

    func testIntegersOfAppendixC1() {
        XCTAssertEqual(encodeInteger(10, prefixBits: 5), [0x0A])
        XCTAssertEqual(encodeInteger(1337, prefixBits: 5), [0x1F, 0x9A, 0x0A])
        XCTAssertEqual(encodeInteger(42, prefixBits: 8), [0x2A])
        XCTAssertEqual(decodeInteger([0x0A], prefixBits: 5)?.value, 10)
        XCTAssertEqual(decodeInteger([0x1F, 0x9A, 0x0A], prefixBits: 5)?.value, 1337)
        XCTAssertEqual(decodeInteger([0x2A], prefixBits: 8)?.value, 42)
        // The bits above the prefix are not the integer's.
        XCTAssertEqual(decodeInteger([0xE0 | 0x1F, 0x9A, 0x0A], prefixBits: 5)?.value, 1337)
    }

    func testIntegersRoundTripAtTheirEdges() {
        for prefix in 1...8 {
            for v in [0, 1, (1 << prefix) - 2, (1 << prefix) - 1, 1 << prefix, 127, 128, 255, 16383, 16384, 1 << 21, 1 << 28,
                      Int(UInt32.max) - 1, Int(UInt32.max)] {
                let b = encodeInteger(v, prefixBits: prefix, flags: prefix < 8 ? UInt8(0xFF << prefix & 0xFF) : 0)
                let d = decodeInteger(b, prefixBits: prefix)
                XCTAssertEqual(d?.value, v, "prefix \(prefix)")
                XCTAssertEqual(d?.consumed, b.count, "prefix \(prefix)")
            }
        }
    }

    // MARK: Huffman

    func testHuffmanStringsOfAppendixC() {
        let pairs = [("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"), ("no-cache", "a8eb 1064 9cbf"),
                     ("custom-key", "25a8 49e9 5ba9 7d7f"), ("custom-value", "25a8 49e9 5bb8 e8b4 bf"), ("302", "6402"),
                     ("private", "aec3 771a 4b"), ("Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"),
                     ("https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"), ("gzip", "9bd9 ab"),
                     ("foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                      "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07")]
        for (text, coded) in pairs {
            XCTAssertEqual(huffman(bytes(text)), hex(coded), text)
            XCTAssertEqual(try? unhuffman(hex(coded)).get(), bytes(text), text)
        }
    }

    func testHuffmanRoundTripsEveryByte() {
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(try? unhuffman(huffman(all)).get(), all)
        for b in all { XCTAssertEqual(try? unhuffman(huffman([b, b, b])).get(), [b, b, b], "byte \(b)") }
        var rng = SplitMix64(seed: 7)
        for _ in 0..<300 {
            let s = (0..<rng.below(80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            XCTAssertEqual(try? unhuffman(huffman(s)).get(), s)
        }
        XCTAssertEqual(try? unhuffman([]).get(), [])
    }

    func testHuffmanPaddingOfSevenBitsIsAccepted() {
        // 'a' is 00011: five of them are 25 bits, so 7 bits of padding.
        XCTAssertEqual(huffman(bytes("aaaaa")).count, 4)
        XCTAssertEqual(try? unhuffman(huffman(bytes("aaaaa"))).get(), bytes("aaaaa"))
    }

    // MARK: C.2 literal fields

    func testLiteralWithIndexingOfC21() {
        let d = HPACKDecoder()
        assertDecodes(d, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"), [hf("custom-key", "custom-header")])
        XCTAssertEqual(table(d), [hf("custom-key", "custom-header")])
        XCTAssertEqual(d.tableSize, 55)
    }

    func testLiteralWithoutIndexingOfC22() {
        let d = HPACKDecoder()
        assertDecodes(d, hex("040c 2f73 616d 706c 652f 7061 7468"), [hf(":path", "/sample/path")])
        XCTAssertEqual(d.tableCount, 0)
        XCTAssertEqual(d.storageBytes, 0)
    }

    func testLiteralNeverIndexedOfC23() {
        let d = HPACKDecoder()
        assertDecodes(d, hex("1008 7061 7373 776f 7264 0673 6563 7265 74"), [hf("password", "secret", never: true)])
        XCTAssertEqual(d.tableCount, 0)
    }

    func testIndexedFieldOfC24() {
        let d = HPACKDecoder()
        assertDecodes(d, hex("82"), [hf(":method", "GET")])
        XCTAssertEqual(d.tableCount, 0)
    }

    // MARK: C.3 - C.6 sequences on one decoder

    struct Step {
        var block: String
        var fields: [HField]
        var table: [HField]
        var size: Int
    }

    func runSequence(_ steps: [Step], tableSize: Int, file: StaticString = #filePath, line: UInt = #line) {
        let d = HPACKDecoder(maxTableSize: tableSize)
        for (k, step) in steps.enumerated() {
            let r = decodeBlock(d, hex(step.block))
            XCTAssertNil(r.error, "step \(k)", file: file, line: line)
            XCTAssertEqual(r.fields, step.fields, "step \(k)", file: file, line: line)
            XCTAssertEqual(table(d), step.table, "step \(k)", file: file, line: line)
            XCTAssertEqual(d.tableSize, step.size, "step \(k)", file: file, line: line)
        }
    }

    static let requests: [[HField]] = [
        [hf(":method", "GET"), hf(":scheme", "http"), hf(":path", "/"), hf(":authority", "www.example.com")],
        [hf(":method", "GET"), hf(":scheme", "http"), hf(":path", "/"), hf(":authority", "www.example.com"), hf("cache-control", "no-cache")],
        [hf(":method", "GET"), hf(":scheme", "https"), hf(":path", "/index.html"), hf(":authority", "www.example.com"),
         hf("custom-key", "custom-value")],
    ]
    static let requestTables: [[HField]] = [
        [hf(":authority", "www.example.com")],
        [hf("cache-control", "no-cache"), hf(":authority", "www.example.com")],
        [hf("custom-key", "custom-value"), hf("cache-control", "no-cache"), hf(":authority", "www.example.com")],
    ]

    func testRequestsWithoutHuffmanOfC3() {
        runSequence([
            Step(block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", fields: Self.requests[0], table: Self.requestTables[0], size: 57),
            Step(block: "8286 84be 5808 6e6f 2d63 6163 6865", fields: Self.requests[1], table: Self.requestTables[1], size: 110),
            Step(block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65", fields: Self.requests[2],
                 table: Self.requestTables[2], size: 164),
        ], tableSize: 4096)
    }

    static let c4Blocks = ["8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", "8286 84be 5886 a8eb 1064 9cbf",
                           "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"]

    func testRequestsWithHuffmanOfC4() {
        runSequence((0..<3).map { Step(block: Self.c4Blocks[$0], fields: Self.requests[$0], table: Self.requestTables[$0],
                                       size: [57, 110, 164][$0]) }, tableSize: 4096)
    }

    static let responses: [[HField]] = [
        [hf(":status", "302"), hf("cache-control", "private"), hf("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
         hf("location", "https://www.example.com")],
        [hf(":status", "307"), hf("cache-control", "private"), hf("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
         hf("location", "https://www.example.com")],
        [hf(":status", "200"), hf("cache-control", "private"), hf("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
         hf("location", "https://www.example.com"), hf("content-encoding", "gzip"),
         hf("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")],
    ]
    static let responseTables: [[HField]] = [
        [hf("location", "https://www.example.com"), hf("date", "Mon, 21 Oct 2013 20:13:21 GMT"), hf("cache-control", "private"),
         hf(":status", "302")],
        [hf(":status", "307"), hf("location", "https://www.example.com"), hf("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
         hf("cache-control", "private")],
        [hf("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"), hf("content-encoding", "gzip"),
         hf("date", "Mon, 21 Oct 2013 20:13:22 GMT")],
    ]

    func testResponsesWithoutHuffmanAndEvictionOfC5() {
        let blocks = [
            """
            4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
            2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d
            """,
            "4803 3330 37c1 c0bf",
            """
            88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
            54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
            5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31
            """,
        ]
        runSequence((0..<3).map { Step(block: blocks[$0], fields: Self.responses[$0], table: Self.responseTables[$0],
                                       size: [222, 222, 215][$0]) }, tableSize: 256)
    }

    static let c6Blocks = [
        """
        4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
        2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3
        """,
        "4883 640e ffc1 c0bf",
        """
        88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
        77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
        9587 3160 65c0 03ed 4ee5 b106 3d50 07
        """,
    ]

    func testResponsesWithHuffmanAndEvictionOfC6() {
        runSequence((0..<3).map { Step(block: Self.c6Blocks[$0], fields: Self.responses[$0], table: Self.responseTables[$0],
                                       size: [222, 222, 215][$0]) }, tableSize: 256)
    }

    // MARK: Dynamic table

    func testNoTableStorageUntilTheFirstInsert() {
        let d = HPACKDecoder()
        XCTAssertEqual(d.storageBytes, 0)
        // Static references, raw literals without indexing and never indexed: nothing allocated.
        assertDecodes(d, hex("8286 8404 0c2f 7361 6d70 6c65 2f70 6174 6810 0870 6173 7377 6f72 6406 7365 6372 6574"),
                      [hf(":method", "GET"), hf(":scheme", "http"), hf(":path", "/"), hf(":path", "/sample/path"),
                       hf("password", "secret", never: true)])
        XCTAssertEqual(d.storageBytes, 0)
        // A Huffman-coded literal without indexing needs the scratch buffer only.
        assertDecodes(d, hex("0186 a8eb 1064 9cbf"), [hf(":authority", "no-cache")])
        XCTAssertEqual(d.tableStorageBytes, 0)
        XCTAssertGreaterThan(d.storageBytes, 0)
        d.releaseScratch()
        XCTAssertEqual(d.storageBytes, 0)
        // The first insert allocates the table.
        assertDecodes(d, hex("4186 a8eb 1064 9cbf"), [hf(":authority", "no-cache")])
        XCTAssertGreaterThan(d.tableStorageBytes, 0)
        XCTAssertLessThanOrEqual(d.tableStorageBytes, 512)
    }

    func testSizeUpdateToZeroGivesTheStorageBack() {
        let d = HPACKDecoder()
        assertDecodes(d, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"), [hf("custom-key", "custom-header")])
        XCTAssertGreaterThan(d.tableStorageBytes, 0)
        assertDecodes(d, [0x20, 0x82], [hf(":method", "GET")])
        XCTAssertEqual(d.tableCount, 0)
        XCTAssertEqual(d.tableSize, 0)
        XCTAssertEqual(d.tableMaxSize, 0)
        XCTAssertEqual(d.tableStorageBytes, 0)
        // And the table can grow back when the peer raises it again.
        assertDecodes(d, [0x3F, 0xE1, 0x1F, 0x40, 0x01, 0x61, 0x01, 0x62], [hf("a", "b")])
        XCTAssertEqual(d.tableMaxSize, 4096)
        XCTAssertEqual(table(d), [hf("a", "b")])
    }

    func testStorageStaysWithinTheTableSize() {
        // Many inserts of varied sizes through a small table: storage never exceeds what the table allows.
        let d = HPACKDecoder(maxTableSize: 512)
        var rng = SplitMix64(seed: 3)
        for k in 0..<2000 {
            var block: [UInt8] = [0x40]
            let name = bytes("n\(k % 17)"), value = [UInt8](repeating: UInt8(97 + k % 26), count: rng.below(300))
            block += encodeInteger(name.count, prefixBits: 7) + name + encodeInteger(value.count, prefixBits: 7) + value
            assertDecodes(d, block, [HField(name: name, value: value)])
            XCTAssertLessThanOrEqual(d.tableSize, 512)
            XCTAssertEqual(table(d).first, HField(name: name, value: value))
            // Bytes: at most the table size; entry records: at most 512 / 32 = 16, in a ring of 16.
            XCTAssertLessThanOrEqual(d.tableStorageBytes, 512 + 16 * 12)
        }
    }

    func testStorageIsStableOnceWarm() {
        // The C.4 sequence over and over on one decoder: the table fills and evicts, and once its storage and
        // the scratch buffer have grown to what the traffic needs, decoding allocates no more.
        let d = HPACKDecoder()
        let blocks = Self.c4Blocks.map { hex($0) }
        var warm = 0
        for round in 0..<400 {
            for (k, block) in blocks.enumerated() { assertDecodes(d, block, Self.requests[k]) }
            if round == 199 { warm = d.storageBytes }
        }
        XCTAssertEqual(d.storageBytes, warm)
        XCTAssertLessThanOrEqual(d.tableSize, 4096)
    }

    func testEntryLargerThanTheTableEmptiesIt() {
        let d = HPACKDecoder(maxTableSize: 256)
        assertDecodes(d, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"), [hf("custom-key", "custom-header")])
        XCTAssertEqual(d.tableCount, 1)
        let value = [UInt8](repeating: 0x78, count: 250)
        let block: [UInt8] = [0x40, 0x01, 0x61] + encodeInteger(250, prefixBits: 7) + value
        assertDecodes(d, block, [HField(name: bytes("a"), value: value)])
        XCTAssertEqual(d.tableCount, 0)
        XCTAssertEqual(d.tableSize, 0)
        assertFails([0xBE], .indexOutOfRange, decoder: d)
    }

    func testEntryExactlyTheTableSizeFits() {
        let d = HPACKDecoder(maxTableSize: 256)
        let value = [UInt8](repeating: 0x78, count: 256 - 32 - 1)
        assertDecodes(d, [0x40, 0x01, 0x61] + encodeInteger(value.count, prefixBits: 7) + value, [HField(name: bytes("a"), value: value)])
        XCTAssertEqual(d.tableSize, 256)
        assertDecodes(d, [0xBE], [HField(name: bytes("a"), value: value)])
    }

    func testNameOfAnEntryTheInsertEvicts() {
        // §4.4: the new entry's name comes from the entry its insertion evicts.
        let d = HPACKDecoder(maxTableSize: 100)
        assertDecodes(d, [0x40, 0x04] + bytes("name") + [0x04] + bytes("aaaa"), [hf("name", "aaaa")])
        let value = [UInt8](repeating: 0x62, count: 60)
        assertDecodes(d, [0x7E] + encodeInteger(60, prefixBits: 7) + value, [HField(name: bytes("name"), value: value)])
        XCTAssertEqual(table(d), [HField(name: bytes("name"), value: value)])
    }

    func testEmptyNameAndValueAreEntries() {
        let d = HPACKDecoder()
        assertDecodes(d, [0x40, 0x00, 0x00, 0xBE], [hf("", ""), hf("", "")])
        XCTAssertEqual(d.tableSize, 32)
    }

    // MARK: Hardening

    func testIndexZeroIsAnError() {
        assertFails([0x80], .zeroIndex)
    }

    func testIndexPastTheTablesIsAnError() {
        assertFails([0xBE], .indexOutOfRange)
        assertFails([0xFF, 0x80, 0x01], .indexOutOfRange)
        // A literal's name index too.
        assertFails([0x7F, 0x00, 0x01, 0x61], .indexOutOfRange)
        let d = HPACKDecoder()
        assertDecodes(d, [0x40, 0x01, 0x61, 0x01, 0x62, 0xBE], [hf("a", "b"), hf("a", "b")])
        assertFails([0xBF], .indexOutOfRange, decoder: d)
    }

    func testIntegerOverflowIsAnError() {
        // Past 32 bits.
        assertFails([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], .integerOverflow)
        assertFails([0x3F] + [0xFF, 0xFF, 0xFF, 0xFF, 0x1F], .integerOverflow)
        // More continuation bytes than 32 bits need, even when they add nothing.
        assertFails([0xFF, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], .integerOverflow)
        assertFails([0x0F] + [UInt8](repeating: 0x80, count: 1000) + [0x00], .integerOverflow)
        // A string length past 32 bits.
        assertFails([0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], .integerOverflow)
        // 2^32 - 1 itself is an integer (here an index past the tables).
        XCTAssertEqual(encodeInteger(Int(UInt32.max), prefixBits: 7, flags: 0x80).count, 6)
        assertFails(encodeInteger(Int(UInt32.max), prefixBits: 7, flags: 0x80), .indexOutOfRange)
    }

    func testBlockEndingInsideARepresentationIsAnError() {
        assertFails([0xFF], .truncated)
        assertFails([0xFF, 0x80], .truncated)
        assertFails([0x40], .truncated)
        assertFails([0x40, 0x01, 0x61], .truncated)
        assertFails([0x04], .truncated)
        assertFails([0x3F], .truncated)
    }

    func testStringLengthPastTheBlockIsAnError() {
        assertFails([0x40, 0x05, 0x61, 0x62], .stringPastBlock)
        assertFails([0x04, 0x03, 0x61, 0x62], .stringPastBlock)
        assertFails([0x00, 0x01, 0x61, 0x85, 0xFF], .stringPastBlock)
    }

    func testHuffmanPaddingLongerThanSevenBitsIsAnError() {
        // Eight 'a's are exactly five bytes; a sixth of ones is eight bits of padding.
        let coded = huffman(bytes("aaaaaaaa")) + [0xFF]
        XCTAssertEqual(coded.count, 6)
        assertFails([0x00, 0x01, 0x61, 0x80 | 6] + coded, .huffmanPaddingTooLong)
        // 'a' then 11 ones.
        assertFails([0x00, 0x82, 0x1F, 0xFF, 0x00], .huffmanPaddingTooLong)
        XCTAssertEqual(unhuffman([0xFF, 0xFF]), .failure(.huffmanPaddingTooLong))
    }

    func testHuffmanPaddingNotOnesIsAnError() {
        // 'a' (00011) then 000.
        assertFails([0x00, 0x01, 0x61, 0x81, 0x18], .huffmanPaddingInvalid)
        // 'a' then 110: ones, but cut by a zero.
        assertFails([0x00, 0x01, 0x61, 0x81, 0x1E], .huffmanPaddingInvalid)
        XCTAssertEqual(unhuffman([0x00]), .failure(.huffmanPaddingInvalid))
    }

    func testHuffmanEOSInAStringIsAnError() {
        // EOS is thirty ones.
        assertFails([0x00, 0x01, 0x61, 0x84, 0xFF, 0xFF, 0xFF, 0xFF], .huffmanEOS)
        // After a symbol, in the middle of a string.
        assertFails([0x00, 0x01, 0x61, 0x85, 0x1F, 0xFF, 0xFF, 0xFF, 0xFC], .huffmanEOS)
        XCTAssertEqual(unhuffman([0x1F, 0xFF, 0xFF, 0xFF, 0xFC, 0x00]), .failure(.huffmanEOS))
    }

    func testSizeUpdatePastTheLimitIsAnError() {
        assertFails(encodeInteger(4097, prefixBits: 5, flags: 0x20) + [0x82], .tableSizeUpdateTooLarge)
        let d = HPACKDecoder(maxTableSize: 100)
        assertFails(encodeInteger(101, prefixBits: 5, flags: 0x20), .tableSizeUpdateTooLarge, decoder: d)
        let ok = HPACKDecoder(maxTableSize: 100)
        assertDecodes(ok, encodeInteger(100, prefixBits: 5, flags: 0x20) + [0x82], [hf(":method", "GET")])
        XCTAssertEqual(ok.tableMaxSize, 100)
    }

    func testSizeUpdateAfterAFieldIsAnError() {
        assertFails([0x82, 0x20], .tableSizeUpdateAfterField)
        assertFails([0x82, 0x3F, 0xE1, 0x1F], .tableSizeUpdateAfterField)
        // Two at the start are fine (§4.2: the smallest, then the final size).
        let d = HPACKDecoder()
        assertDecodes(d, [0x20, 0x3F, 0xE1, 0x1F, 0x82], [hf(":method", "GET")])
        // And each block has its own start.
        assertDecodes(d, [0x20, 0x82], [hf(":method", "GET")])
    }

    func testLoweredLimitRequiresASizeUpdate() {
        let d = HPACKDecoder()
        assertDecodes(d, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"), [hf("custom-key", "custom-header")])
        d.setMaxTableSizeLimit(40)
        // The table is shrunk at once (the entry of 55 is gone) ...
        XCTAssertEqual(d.tableCount, 0)
        XCTAssertEqual(d.tableMaxSize, 40)
        // ... and the next block must start with an update that fits.
        assertFails([0x82], .tableSizeUpdateMissing, decoder: d)
        let e = HPACKDecoder()
        e.setMaxTableSizeLimit(40)
        assertFails([], .tableSizeUpdateMissing, decoder: e)
        assertFails([0x3F, 0x0A], .tableSizeUpdateTooLarge, decoder: e)
        let f = HPACKDecoder()
        f.setMaxTableSizeLimit(40)
        assertDecodes(f, [0x3F, 0x09, 0x82], [hf(":method", "GET")])
        XCTAssertEqual(f.tableMaxSize, 40)
        assertDecodes(f, [0x82], [hf(":method", "GET")])
        // Raising the limit needs no update.
        let g = HPACKDecoder()
        g.setMaxTableSizeLimit(8192)
        assertDecodes(g, [0x82], [hf(":method", "GET")])
        XCTAssertEqual(g.tableMaxSize, 4096)
        assertDecodes(g, encodeInteger(8192, prefixBits: 5, flags: 0x20), [])
        XCTAssertEqual(g.tableMaxSize, 8192)
    }

    func testHeaderListSizeLimitIsReportedAfterTheWholeBlock() {
        // Each field 'a: b' counts 34; the limit 100 allows two. The third and fourth are decoded (the
        // fourth indexed, so the table must hold it) but not handed over.
        let d = HPACKDecoder(maxHeaderListSize: 100)
        let field: [UInt8] = [0x00, 0x01, 0x61, 0x01, 0x62]
        let indexed: [UInt8] = [0x40, 0x01, 0x63, 0x01, 0x64]
        let r = decodeBlock(d, field + field + field + indexed)
        XCTAssertEqual(r.error, .headerListTooLarge)
        XCTAssertEqual(r.fields, [hf("a", "b"), hf("a", "b")])
        XCTAssertEqual(table(d), [hf("c", "d")])
        // The connection goes on in step: the next block can reference the entry.
        assertDecodes(d, [0xBE], [hf("c", "d")])
        // Exactly at the limit is fine.
        let e = HPACKDecoder(maxHeaderListSize: 68)
        assertDecodes(e, field + field, [hf("a", "b"), hf("a", "b")])
        XCTAssertEqual(decodeBlock(e, field + field + field).error, .headerListTooLarge)
        // A compression error later in the block wins: the connection has to go anyway.
        XCTAssertEqual(decodeBlock(HPACKDecoder(maxHeaderListSize: 40), field + field + [0x80]).error, .zeroIndex)
    }

    func testHPACKBombIsStoppedByTheHeaderListLimit() {
        // One entry of about 4 kB, then 16,000 one-byte references to it: 64 MB of fields from 16 kB.
        let d = HPACKDecoder(maxHeaderListSize: 65536)
        let value = [UInt8](repeating: 0x41, count: 4000)
        var block: [UInt8] = [0x40, 0x01, 0x78] + encodeInteger(value.count, prefixBits: 7) + value
        block += [UInt8](repeating: 0xBE, count: 16000)
        var handed = 0, handedBytes = 0
        let error: HPACKError? = block.withUnsafeBytes { buf in
            do throws(HPACKError) {
                try d.decode(buf) { handed += 1; handedBytes += $0.name.count + $0.value.count }
                return nil
            } catch {
                return error
            }
        }
        XCTAssertEqual(error, .headerListTooLarge)
        XCTAssertEqual(handed, 65536 / (4000 + 1 + 32))
        XCTAssertLessThanOrEqual(handedBytes, 65536)
        XCTAssertEqual(d.tableCount, 1)
    }

    func testNeverIndexedIsReportedPerField() {
        let d = HPACKDecoder()
        assertDecodes(d, [0x10, 0x01, 0x61, 0x01, 0x62, 0x00, 0x01, 0x61, 0x01, 0x62, 0x1F, 0x08, 0x01, 0x78, 0x40, 0x01, 0x61, 0x01, 0x62],
                      [hf("a", "b", never: true), hf("a", "b"), hf("authorization", "x", never: true), hf("a", "b")])
    }

    // MARK: Encoder

    func encoded(_ body: (inout [UInt8]) -> Void) -> [UInt8] {
        var out: [UInt8] = []
        body(&out)
        return out
    }

    func field(_ name: String, _ value: String, sensitive: Bool = false) -> [UInt8] {
        encoded { out in
            bytes(name).withUnsafeBytes { n in bytes(value).withUnsafeBytes { v in HPACKEncoder.appendField(name: n, value: v, sensitive: sensitive, to: &out) } }
        }
    }

    func testStatusFromTheStaticTable() {
        for (status, byte) in [(200, 0x88), (204, 0x89), (206, 0x8A), (304, 0x8B), (400, 0x8C), (404, 0x8D), (500, 0x8E)] {
            XCTAssertEqual(encoded { HPACKEncoder.appendStatus(status, to: &$0) }, [UInt8(byte)], "\(status)")
        }
    }

    func testOtherStatusIsALiteralWithTheStaticName() {
        // "302" Huffman-coded is two bytes (C.6).
        XCTAssertEqual(encoded { HPACKEncoder.appendStatus(302, to: &$0) }, [0x08, 0x82, 0x64, 0x02])
        for status in [100, 101, 201, 301, 307, 403, 418, 502, 503, 599, 999] {
            let block = encoded { HPACKEncoder.appendStatus(status, to: &$0) }
            XCTAssertEqual(block.first, 0x08)
            XCTAssertEqual(decodeBlock(HPACKDecoder(), block).fields, [hf(":status", String(status))])
        }
    }

    func testFieldBytes() {
        // Not in the static table, and Huffman no shorter: a raw literal name and value.
        XCTAssertEqual(field("x", "y"), [0x00, 0x01, 0x78, 0x01, 0x79])
        XCTAssertEqual(field("x", "y", sensitive: true), [0x10, 0x01, 0x78, 0x01, 0x79])
        // A static name, index below 15, and a Huffman-coded value (C.4).
        XCTAssertEqual(field(":authority", "www.example.com"), hex("018c f1e3 c2e5 f23a 6ba0 ab90 f4ff"))
        // A static index past the 4-bit prefix: www-authenticate is 61.
        XCTAssertEqual(field("www-authenticate", "y"), [0x0F, 0x2E, 0x01, 0x79])
        // An index of 15 and more takes a second byte: content-length is 28.
        XCTAssertEqual(field("content-length", "0"), [0x0F, 0x0D, 0x01, 0x30])
        // The first of a name the table has twice.
        XCTAssertEqual(field(":path", "/"), [0x04, 0x01, 0x2F])
        // A Huffman-coded name.
        XCTAssertEqual(field("custom-key", ""), hex("0088 25a8 49e9 5ba9 7d7f 00"))
        // Bytes that code badly stay raw.
        XCTAssertEqual(field("x", "\u{1}\u{2}"), [0x00, 0x01, 0x78, 0x02, 0x01, 0x02])
    }

    func testStaticNameIndex() {
        for index in 1...HPACK.staticCount {
            let name = HPACK.staticEntry(index).name
            let first = (1...index).first { HPACK.staticEntry($0).name.equals(name) }!
            XCTAssertEqual(HPACK.staticNameIndex(name), first)
        }
        XCTAssertEqual(bytes("x-unknown").withUnsafeBytes { HPACK.staticNameIndex($0) }, 0)
        XCTAssertEqual(bytes("").withUnsafeBytes { HPACK.staticNameIndex($0) }, 0)
        XCTAssertEqual(bytes(String(repeating: "a", count: 100)).withUnsafeBytes { HPACK.staticNameIndex($0) }, 0)
    }

    func testSizeUpdateOnlyWhenOwed() {
        var e = HPACKEncoder()
        XCTAssertEqual(encoded { e.beginBlock(into: &$0) }, [])
        e.peerTableSizeChanged(to: 8192)
        XCTAssertEqual(encoded { e.beginBlock(into: &$0) }, [])
        e.peerTableSizeChanged(to: 1024)
        XCTAssertEqual(encoded { e.beginBlock(into: &$0) }, [0x20])
        XCTAssertEqual(encoded { e.beginBlock(into: &$0) }, [])
        e.peerTableSizeChanged(to: 0)
        XCTAssertEqual(encoded { e.beginBlock(into: &$0) }, [])
        XCTAssertEqual(encoded { HPACKEncoder.appendTableSizeUpdate(1337, to: &$0) }, [0x3F, 0x9A, 0x0A])
    }

    func testEncoderRoundTripsThroughTheDecoder() {
        var rng = SplitMix64(seed: 11)
        let d = HPACKDecoder()
        for _ in 0..<300 {
            let fields = HPACKTests.randomFields(&rng)
            var block: [UInt8] = []
            HPACKEncoder.appendStatus(rng.pick([200, 302, 404, 503]), to: &block)
            for f in fields {
                f.name.withUnsafeBytes { n in f.value.withUnsafeBytes { v in HPACKEncoder.appendField(name: n, value: v, sensitive: f.neverIndexed, to: &block) } }
            }
            let r = decodeBlock(d, block)
            XCTAssertNil(r.error)
            XCTAssertEqual(Array(r.fields.dropFirst()), fields)
        }
        XCTAssertEqual(d.tableStorageBytes, 0, "the encoder never indexes")
    }

    // MARK: Random header lists

    static let commonNames = [":status", ":path", ":authority", "content-type", "cache-control", "cookie", "set-cookie", "user-agent",
                              "accept", "accept-encoding", "authorization", "date", "etag", "x-request-id", "x-forwarded-for",
                              "content-length", "location", "vary", "server", "via"]
    static let commonValues = ["", "0", "200", "text/html; charset=utf-8", "no-cache", "gzip, deflate, br", "/", "/index.html",
                               "Mon, 21 Oct 2013 20:13:21 GMT", "max-age=3600", "session=abcdef0123456789", "*/*"]

    /// A header list: common and random names (lowercase tokens), repeated and random values, long values,
    /// values of bytes that Huffman-code badly, some fields sensitive.
    static func randomFields(_ rng: inout SplitMix64, maxCount: Int = 16) -> [HField] {
        (0..<rng.below(maxCount + 1)).map { _ in
            let name: [UInt8]
            switch rng.below(4) {
            case 0, 1: name = bytes(rng.pick(commonNames))
            case 2: name = bytes("x-custom-\(rng.below(12))")
            default: name = (0..<(1 + rng.below(30))).map { _ in rng.pick(Array("abcdefghijklmnopqrstuvwxyz0123456789-_".utf8)) }
            }
            let value: [UInt8]
            switch rng.below(10) {
            case 0, 1, 2: value = bytes(rng.pick(commonValues))
            case 3, 4: value = (0..<rng.below(60)).map { _ in UInt8(0x20 + rng.below(95)) }
            case 5: value = (0..<(100 + rng.below(3000))).map { _ in UInt8(0x21 + rng.below(94)) }
            case 6: value = (0..<rng.below(40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 7: value = (0..<rng.below(40)).map { _ in UInt8(0x80 + rng.below(128)) }
            default: value = bytes("value-\(rng.below(50))")
            }
            return HField(name: name, value: value, neverIndexed: rng.chance(10))
        }
    }
}

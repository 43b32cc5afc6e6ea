import CNGHTTP2
import FuzzSupport
import XCTest
@testable import HTTP

/// The HPACK codec checked against nghttp2's (Debian's libnghttp2, linked by the tests only), an independent one:
/// what its deflater writes our decoder reads, field for field and with the same dynamic table; what our
/// encoder writes its inflater reads; and mutated blocks are accepted or refused by both alike. In the
/// HPACKTests class (an extension), so `swift test --filter HPACKTests` runs them.
extension HPACKTests {

    /// nghttp2's deflater on `fields` (NGHTTP2_NV_FLAG_NO_INDEX where a field is `neverIndexed`).
    static func nghttp2Deflate(_ deflater: OpaquePointer, _ fields: [HField]) -> [UInt8] {
        // The names and values in one buffer that stays put while nghttp2 reads it (a byte more: never empty).
        var storage = fields.reduce(into: [UInt8]()) { $0 += $1.name + $1.value } + [0]
        return storage.withUnsafeMutableBufferPointer { buf -> [UInt8] in
            var at = 0
            let nva = fields.map { f -> nghttp2_nv in
                let nv = nghttp2_nv(name: buf.baseAddress! + at, value: buf.baseAddress! + at + f.name.count, namelen: f.name.count,
                                    valuelen: f.value.count,
                                    flags: UInt8(f.neverIndexed ? NGHTTP2_NV_FLAG_NO_INDEX.rawValue : NGHTTP2_NV_FLAG_NONE.rawValue))
                at += f.name.count + f.value.count
                return nv
            }
            let bound = nghttp2_hd_deflate_bound(deflater, nva, nva.count)
            var out = [UInt8](repeating: 0, count: bound)
            let n = nghttp2_hd_deflate_hd(deflater, &out, bound, nva, nva.count)
            precondition(n >= 0, "nghttp2_hd_deflate_hd: \(n)")
            return Array(out[0..<n])
        }
    }

    /// nghttp2's inflater on one whole block: its fields, or nil where it refuses the block.
    static func nghttp2Inflate(_ inflater: OpaquePointer, _ block: [UInt8]) -> [HField]? {
        var fields: [HField] = []
        let input = block + [0]
        let ok = input.withUnsafeBufferPointer { buf -> Bool in
            var p = buf.baseAddress!, left = block.count
            while true {
                var nv = nghttp2_nv()
                var flags: Int32 = 0
                let n = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, p, left, 1)
                if n < 0 { return false }
                p += n
                left -= n
                if flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) != 0 {
                    fields.append(HField(name: Array(UnsafeBufferPointer(start: nv.name, count: nv.namelen)),
                                         value: Array(UnsafeBufferPointer(start: nv.value, count: nv.valuelen)),
                                         neverIndexed: nv.flags & UInt8(NGHTTP2_NV_FLAG_NO_INDEX.rawValue) != 0))
                }
                if flags & Int32(NGHTTP2_HD_INFLATE_FINAL.rawValue) != 0 {
                    nghttp2_hd_inflate_end_headers(inflater)
                    return true
                }
                if flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) == 0 && left == 0 { return false }
            }
        }
        return ok ? fields : nil
    }

    static func newDeflater(_ maxTableSize: Int) -> OpaquePointer {
        var d: OpaquePointer?
        precondition(nghttp2_hd_deflate_new(&d, maxTableSize) == 0)
        return d!
    }

    static func newInflater() -> OpaquePointer {
        var i: OpaquePointer?
        precondition(nghttp2_hd_inflate_new(&i) == 0)
        return i!
    }

    /// The deflater's dynamic table, newest first.
    static func nghttp2Table(_ deflater: OpaquePointer) -> [HField] {
        (62..<(nghttp2_hd_deflate_get_num_table_entries(deflater) + 1)).map { idx in
            let nv = nghttp2_hd_deflate_get_table_entry(deflater, idx)!.pointee
            return HField(name: Array(UnsafeBufferPointer(start: nv.name, count: nv.namelen)),
                          value: Array(UnsafeBufferPointer(start: nv.value, count: nv.valuelen)))
        }
    }

    /// 40 connections of 60 header lists each (2,400 blocks): nghttp2 deflates, both decoders read. Some
    /// connections use a small table from the start; now and then the table size setting changes between
    /// blocks (a size update at the next block's start). Fields, the never-indexed flag, the table's entries
    /// and its size must agree.
    func testDecodesWhatNghttp2Deflates() {
        var rng = SplitMix64(seed: 2024)
        var blocks = 0, fields = 0, sizeUpdates = 0, evictions = 0, neverIndexed = 0
        for connection in 0..<40 {
            let deflater = Self.newDeflater(rng.pick([4096, 4096, 1024, 256, 100]))
            let inflater = Self.newInflater()
            defer { nghttp2_hd_deflate_del(deflater); nghttp2_hd_inflate_del(inflater) }
            let d = HPACKDecoder(maxHeaderListSize: Int.max)
            for k in 0..<60 {
                if rng.chance(8) {
                    let size = rng.pick([0, 64, 256, 1000, 2048, 4096])
                    // As when our SETTINGS_HEADER_TABLE_SIZE is acknowledged: the peer's encoder and both decoders learn it.
                    XCTAssertEqual(nghttp2_hd_deflate_change_table_size(deflater, size), 0)
                    XCTAssertEqual(nghttp2_hd_inflate_change_table_size(inflater, size), 0)
                    d.setMaxTableSizeLimit(size)
                }
                let list = Self.randomFields(&rng)
                let block = Self.nghttp2Deflate(deflater, list)
                if block.first.map({ $0 & 0xE0 == 0x20 }) == true { sizeUpdates += 1 }
                let countBefore = d.tableCount
                let ours = decodeBlock(d, block)
                let context = "connection \(connection), block \(k): \(block.count) bytes"
                XCTAssertNil(ours.error, context)
                XCTAssertEqual(ours.fields.map { [$0.name, $0.value] }, list.map { [$0.name, $0.value] }, context)
                for (o, l) in zip(ours.fields, list) where l.neverIndexed { XCTAssertTrue(o.neverIndexed, context) }
                XCTAssertEqual(ours.fields, Self.nghttp2Inflate(inflater, block), context)
                XCTAssertEqual(table(d), Self.nghttp2Table(deflater), context)
                XCTAssertEqual(d.tableSize, nghttp2_hd_deflate_get_dynamic_table_size(deflater), context)
                XCTAssertEqual(d.tableMaxSize, nghttp2_hd_deflate_get_max_dynamic_table_size(deflater), context)
                if ours.error != nil || table(d) != Self.nghttp2Table(deflater) { return }
                blocks += 1
                fields += list.count
                neverIndexed += ours.fields.filter(\.neverIndexed).count
                if d.tableCount < countBefore { evictions += 1 }
            }
        }
        print("nghttp2 -> HPACKDecoder: \(blocks) blocks, \(fields) fields, \(sizeUpdates) blocks starting with a size update, "
              + "\(evictions) blocks shrinking the table, \(neverIndexed) never-indexed fields")
        XCTAssertEqual(blocks, 2400)
        XCTAssertGreaterThan(sizeUpdates, 50)
        XCTAssertGreaterThan(evictions, 50)
    }

    /// 30 connections of 60 responses each: our encoder writes, nghttp2 inflates; the peer lowers and raises
    /// its table size setting now and then. The fields (sensitive ones never indexed) must come out as put in,
    /// and nghttp2's table must stay empty.
    func testNghttp2InflatesWhatWeEncode() {
        var rng = SplitMix64(seed: 99)
        var blocks = 0
        for connection in 0..<30 {
            let inflater = Self.newInflater()
            defer { nghttp2_hd_inflate_del(inflater) }
            var encoder = HPACKEncoder()
            let d = HPACKDecoder(maxHeaderListSize: Int.max)
            for k in 0..<60 {
                if rng.chance(8) {
                    let size = rng.pick([0, 100, 512, 4096, 65536])
                    XCTAssertEqual(nghttp2_hd_inflate_change_table_size(inflater, size), 0)
                    encoder.peerTableSizeChanged(to: size)
                }
                let status = rng.pick([200, 204, 206, 304, 400, 404, 500, 101, 301, 302, 403, 502, 503, 599])
                let list = Self.randomFields(&rng).filter { !$0.name.starts(with: [0x3A]) }
                var block: [UInt8] = []
                encoder.beginBlock(into: &block)
                HPACKEncoder.appendStatus(status, to: &block)
                for f in list {
                    f.name.withUnsafeBytes { n in
                        f.value.withUnsafeBytes { v in HPACKEncoder.appendField(name: n, value: v, sensitive: f.neverIndexed, to: &block) }
                    }
                }
                let expected = [hf(":status", String(status))] + list
                let context = "connection \(connection), block \(k)"
                XCTAssertEqual(Self.nghttp2Inflate(inflater, block), expected, context)
                XCTAssertEqual(nghttp2_hd_inflate_get_num_table_entries(inflater), 61, context)
                XCTAssertEqual(decodeBlock(d, block).fields, expected, context)
                blocks += 1
            }
        }
        XCTAssertEqual(blocks, 1800)
    }

    /// nghttp2 holds us to the size update we owe after it lowers its setting: without it the block is refused.
    func testNghttp2RequiresTheSizeUpdateWeOwe() {
        let inflater = Self.newInflater()
        defer { nghttp2_hd_inflate_del(inflater) }
        XCTAssertEqual(nghttp2_hd_inflate_change_table_size(inflater, 0), 0)
        XCTAssertNil(Self.nghttp2Inflate(inflater, [0x88]))
        let again = Self.newInflater()
        defer { nghttp2_hd_inflate_del(again) }
        XCTAssertEqual(nghttp2_hd_inflate_change_table_size(again, 0), 0)
        var encoder = HPACKEncoder()
        encoder.peerTableSizeChanged(to: 0)
        var block: [UInt8] = []
        encoder.beginBlock(into: &block)
        HPACKEncoder.appendStatus(200, to: &block)
        XCTAssertEqual(block, [0x20, 0x88])
        XCTAssertEqual(Self.nghttp2Inflate(again, block), [hf(":status", "200")])
    }

    // MARK: Fuzz

    static let fuzzCorpus: [[UInt8]] = {
        var corpus = (c4Blocks + c6Blocks).map { hex($0) }
        corpus += ["8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", "8286 84be 5808 6e6f 2d63 6163 6865",
                   "1008 7061 7373 776f 7264 0673 6563 7265 74", "3fe1 1f82 20"].map { hex($0) }
        // nghttp2's blocks: the first of a connection (which a fresh decoder reads) and later ones (whose
        // references into the table another block filled make index errors).
        var rng = SplitMix64(seed: 5)
        for _ in 0..<4 {
            let deflater = newDeflater(4096)
            defer { nghttp2_hd_deflate_del(deflater) }
            for _ in 0..<4 { corpus.append(nghttp2Deflate(deflater, randomFields(&rng, maxCount: 8))) }
        }
        return corpus
    }()

    /// Mutated blocks (after an unmutated one that fills the table) at our decoder and at nghttp2's inflater:
    /// no trap, no loop, both accept or both refuse, the same fields where they accept; the table within its
    /// limit and its storage within the table's size; with a small header list limit, no more handed over
    /// than the limit and the same fields up to it. `VIGIL_FUZZ_ITERATIONS` / `VIGIL_FUZZ_SEED` as elsewhere.
    func testMutationFuzzAgainstNghttp2() {
        let seed = FuzzEnvironment.seed(default: 41)
        let corpus = Self.fuzzCorpus
        // The unmutated first block: one a fresh decoder reads (the later blocks of a connection refer to entries it lacks).
        let starts = corpus.filter { decodeBlock(HPACKDecoder(), $0).error == nil }
        _ = FuzzProgress.runTest("HPACK fuzz", iterations: FuzzEnvironment.iterations(default: 4000), seed: seed,
                                 show: { $0.map { String($0, radix: 16) }.joined(separator: " ") },
                                 summary: { $0.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") }) { iteration, progress in
            var rng = SplitMix64(seed: seed ^ (UInt64(iteration) &* 0xD1B5_4A32_D192_ED03))
            var first = rng.pick(starts)
            let block = BinaryMutation.mutate(rng.pick(corpus), corpus: corpus, rng: &rng)
            progress.start(block)
            let limit = rng.pick([4096, 4096, 256, 0])
            let ours = HPACKDecoder(maxHeaderListSize: Int.max)
            let small = HPACKDecoder(maxHeaderListSize: 300)
            let inflater = HPACKTests.newInflater()
            defer { nghttp2_hd_inflate_del(inflater) }
            if limit != 4096 {
                // Our SETTINGS_HEADER_TABLE_SIZE acknowledged before the first block, which starts with the update.
                nghttp2_hd_inflate_change_table_size(inflater, limit)
                ours.setMaxTableSizeLimit(limit)
                small.setMaxTableSizeLimit(limit)
                var update: [UInt8] = []
                HPACKEncoder.appendTableSizeUpdate(limit, to: &update)
                first = update + first
            }
            let firstOurs = decodeBlock(ours, first), firstTheirs = Self.nghttp2Inflate(inflater, first)
            _ = decodeBlock(small, first)
            if (firstOurs.error == nil) != (firstTheirs != nil) {
                progress.fail("iteration \(iteration): first block: ours \(String(describing: firstOurs.error)), nghttp2 \(firstTheirs == nil ? "refused" : "accepted")")
            }
            // After an error nghttp2's inflater refuses everything; ours must not be used either.
            if firstOurs.error != nil || firstTheirs == nil {
                progress.count("first block refused")
                progress.finish()
                return
            }
            let r = decodeBlock(ours, block), theirs = Self.nghttp2Inflate(inflater, block)
            let outcome: String
            switch (r.error, theirs) {
            case (nil, let t?):
                outcome = "accepted"
                if r.fields != t { progress.fail("iteration \(iteration): fields differ: \(r.fields) vs nghttp2 \(t)") }
            case (let e?, nil):
                outcome = "\(e)"
            case (let e?, .some):
                outcome = "only ours refused"
                progress.fail("iteration \(iteration): ours refused (\(e)), nghttp2 accepted \(block.map { String($0, radix: 16) })")
            case (nil, nil):
                outcome = "only nghttp2 refused"
                progress.fail("iteration \(iteration): nghttp2 refused, ours accepted \(block.map { String($0, radix: 16) })")
            }
            if ours.tableSize > ours.tableMaxSize || ours.tableMaxSize > limit {
                progress.fail("iteration \(iteration): table \(ours.tableSize) of \(ours.tableMaxSize), limit \(limit)")
            }
            if ours.tableStorageBytes > limit + (limit / 32) * 12 {
                progress.fail("iteration \(iteration): table storage \(ours.tableStorageBytes) for a limit of \(limit)")
            }
            // The small list limit: what it hands over is a prefix of the whole, within the limit.
            let s = decodeBlock(small, block)
            let handed = s.fields.reduce(0) { $0 + $1.name.count + $1.value.count + 32 }
            if handed > 300 { progress.fail("iteration \(iteration): \(handed) bytes handed over past a limit of 300") }
            if r.error == nil {
                let whole = r.fields.reduce(0) { $0 + $1.name.count + $1.value.count + 32 }
                if s.fields != Array(r.fields.prefix(s.fields.count)) || (s.error == nil) != (whole <= 300)
                    || (s.error != nil && s.error != .headerListTooLarge) {
                    progress.fail("iteration \(iteration): with the list limit \(String(describing: s.error)), \(s.fields.count) fields of \(r.fields.count)")
                }
            }
            progress.count(outcome)
            progress.finish()
        }
    }
}

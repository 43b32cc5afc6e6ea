import FuzzSupport
import XCTest
@testable import DNS

/// Replies built byte by byte as servers send them: compression, CNAME chains, truncation, errors, and
/// the ways a reply can lie about its own lengths.
final class MessageTests: XCTestCase {
    /// A reply to `Query.encode(id:name:type:)`: the query's header and question, then `answers` (each
    /// owner name written as a pointer to the question's name at offset 12 unless given).
    static func reply(id: UInt16 = 0x1234, name: String = "svc.test", type: RecordType = .a, flags: UInt16 = 0x8180,
                      answers: [[UInt8]]) -> [UInt8] {
        var b = Query.encode(id: id, name: name, type: type)
        b[2] = UInt8(flags >> 8); b[3] = UInt8(flags & 0xFF)
        b[6] = UInt8(answers.count >> 8); b[7] = UInt8(answers.count & 0xFF)
        for a in answers { b += a }
        return b
    }

    static func record(owner: [UInt8] = [0xC0, 12], type: UInt16, ttl: UInt32 = 300, rdata: [UInt8]) -> [UInt8] {
        owner + [UInt8(type >> 8), UInt8(type & 0xFF), 0, 1,
                 UInt8(ttl >> 24), UInt8(ttl >> 16 & 0xFF), UInt8(ttl >> 8 & 0xFF), UInt8(ttl & 0xFF),
                 UInt8(rdata.count >> 8), UInt8(rdata.count & 0xFF)] + rdata
    }

    func testQueryEncoding() {
        XCTAssertEqual(Query.encode(id: 0xABCD, name: "a.bc", type: .aaaa),
                       [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 2, 0x62, 0x63, 0, 0, 28, 0, 1])
        XCTAssertTrue(Query.isValidName("svc.test"))
        XCTAssertTrue(Query.isValidName("svc.test."))
        XCTAssertFalse(Query.isValidName(""))
        XCTAssertFalse(Query.isValidName("a..b"))
        XCTAssertFalse(Query.isValidName(String(repeating: "x", count: 64) + ".test"))
        // No limit on the whole name, as in nginx: a name past 255 bytes is asked like any other.
        XCTAssertTrue(Query.isValidName(Array(repeating: "abcdefg", count: 40).joined(separator: ".")))
    }

    /// nginx's http_resolver.t "long name": a CNAME to four labels of 63 bytes (257 bytes on the wire).
    func testLongNames() throws {
        let label = [UInt8](repeating: UInt8(ascii: "a"), count: 63)
        let long = Self.record(type: 5, rdata: (0..<4).flatMap { _ in [63] + label } + [0])
        let name = Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".")
        XCTAssertEqual(try Reply.parse(Self.reply(answers: [long]), id: 0x1234, name: "svc.test", type: .a).outcome,
                       .answered(addresses: [], ttl: 300, cname: name))
        XCTAssertTrue(Query.isValidName(name))
        let asked = Query.encode(id: 7, name: name, type: .a)
        XCTAssertEqual(asked.count, 12 + 257 + 4)
    }

    func testAddressesAndTheLowestTTL() throws {
        let bytes = Self.reply(answers: [Self.record(type: 1, ttl: 60, rdata: [10, 0, 0, 1]),
                                         Self.record(type: 1, ttl: 30, rdata: [10, 0, 0, 2])])
        let r = try Reply.parse(bytes, id: 0x1234, name: "SVC.test.", type: .a)
        XCTAssertEqual(r.outcome, .answered(addresses: [ResolvedAddress(host: "10.0.0.1", isIPv6: false),
                                                        ResolvedAddress(host: "10.0.0.2", isIPv6: false)], ttl: 30, cname: nil))
    }

    /// SRV records: priority, weight, port and the target (plain or compressed), the lowest TTL; records of
    /// other types in an SRV answer are skipped, and an rdata too short for its fixed part is malformed.
    func testServiceRecords() throws {
        let name = "_http._tcp.app.test"
        func srv(_ priority: UInt16, _ weight: UInt16, _ port: UInt16, _ target: [UInt8], ttl: UInt32 = 300) -> [UInt8] {
            Self.record(type: 33, ttl: ttl, rdata: [UInt8(priority >> 8), UInt8(priority & 0xFF), UInt8(weight >> 8), UInt8(weight & 0xFF),
                                                    UInt8(port >> 8), UInt8(port & 0xFF)] + target)
        }
        let plain: [UInt8] = [2, 0x62, 0x31, 4] + Array("test".utf8) + [0]        // b1.test
        let compressed: [UInt8] = [2, 0x62, 0x32, 0xC0, 12 + 11]                     // b2. + "app.test" of the question
        let bytes = Self.reply(name: name, type: .srv, answers: [srv(10, 5, 8080, plain, ttl: 60), srv(20, 0, 8081, compressed, ttl: 30),
                                                                   Self.record(type: 1, rdata: [10, 0, 0, 1])])
        XCTAssertEqual(try Reply.parse(bytes, id: 0x1234, name: name, type: .srv).outcome,
                       .services([ServiceRecord(priority: 10, weight: 5, port: 8080, target: "b1.test"),
                                  ServiceRecord(priority: 20, weight: 0, port: 8081, target: "b2.app.test")], ttl: 30))
        XCTAssertEqual(try Reply.parse(Self.reply(name: name, type: .srv, answers: []), id: 0x1234, name: name, type: .srv).outcome,
                       .services([], ttl: 0))
        XCTAssertThrowsError(try Reply.parse(Self.reply(name: name, type: .srv, answers: [Self.record(type: 33, rdata: [0, 1, 0, 1, 0])]),
                                             id: 0x1234, name: name, type: .srv))
    }

    func testIPv6Text() throws {
        func text(_ groups: [UInt16]) -> String { Reply.ipv6Text(groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }) }
        XCTAssertEqual(text([0, 0, 0, 0, 0, 0, 0, 1]), "::1")
        XCTAssertEqual(text([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), "2001:db8::1")
        XCTAssertEqual(text([0xfe80, 0, 0, 0, 0, 0, 0, 0]), "fe80::")
        XCTAssertEqual(text([1, 0, 0, 1, 0, 0, 0, 1]), "1:0:0:1::1")
        XCTAssertEqual(text([1, 0, 2, 3, 4, 5, 6, 7]), "1:0:2:3:4:5:6:7")
        let bytes = Self.reply(type: .aaaa, answers: [Self.record(type: 28, rdata: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [5])])
        XCTAssertEqual(try Reply.parse(bytes, id: 0x1234, name: "svc.test", type: .aaaa).outcome,
                       .answered(addresses: [ResolvedAddress(host: "2001:db8::5", isIPv6: true)], ttl: 300, cname: nil))
    }

    func testCNAMEChains() throws {
        // svc.test CNAME real.test (target compressed against "test" of the question), then real.test's A.
        let target: [UInt8] = [4] + Array("real".utf8) + [0xC0, 16]
        let cname = Self.record(type: 5, ttl: 100, rdata: target)
        // 12 header bytes, the question (10 + 4), the CNAME record's 12 bytes before its rdata: real.test is at 38.
        let withAddress = Self.reply(answers: [cname, Self.record(owner: [0xC0, 38], type: 1, ttl: 50, rdata: [10, 1, 1, 1])])
        XCTAssertEqual(try Reply.parse(withAddress, id: 0x1234, name: "svc.test", type: .a).outcome,
                       .answered(addresses: [ResolvedAddress(host: "10.1.1.1", isIPv6: false)], ttl: 50, cname: nil))
        // Only the CNAME: the caller asks again for the target.
        XCTAssertEqual(try Reply.parse(Self.reply(answers: [cname]), id: 0x1234, name: "svc.test", type: .a).outcome,
                       .answered(addresses: [], ttl: 100, cname: "real.test"))
        // An address for a name outside the chain is not taken.
        let stray = Self.record(owner: [5] + Array("other".utf8) + [0xC0, 16], type: 1, rdata: [6, 6, 6, 6])
        XCTAssertEqual(try Reply.parse(Self.reply(answers: [stray]), id: 0x1234, name: "svc.test", type: .a).outcome,
                       .answered(addresses: [], ttl: 0, cname: nil))
    }

    func testFlagsAndCodes() throws {
        XCTAssertEqual(try Reply.parse(Self.reply(flags: 0x8183, answers: []), id: 0x1234, name: "svc.test", type: .a).outcome, .failed(3))
        XCTAssertEqual(try Reply.parse(Self.reply(flags: 0x8182, answers: []), id: 0x1234, name: "svc.test", type: .a).outcome, .failed(2))
        XCTAssertEqual(try Reply.parse(Self.reply(flags: 0x8780, answers: []), id: 0x1234, name: "svc.test", type: .a).outcome, .truncated)
        XCTAssertEqual(ResolveError.hostNotFound.description, "3: Host not found")
        XCTAssertEqual(ResolveError.timedOut.description, "110: Operation timed out")
    }

    func testRepliesToSomethingElseAreNotOurs() {
        let good = Self.reply(answers: [Self.record(type: 1, rdata: [1, 2, 3, 4])])
        XCTAssertThrowsError(try Reply.parse(good, id: 0x9999, name: "svc.test", type: .a)) { XCTAssertEqual($0 as? Reply.ParseError, .notOurs) }
        XCTAssertThrowsError(try Reply.parse(good, id: 0x1234, name: "other.test", type: .a)) { XCTAssertEqual($0 as? Reply.ParseError, .notOurs) }
        XCTAssertThrowsError(try Reply.parse(good, id: 0x1234, name: "svc.test", type: .aaaa)) { XCTAssertEqual($0 as? Reply.ParseError, .notOurs) }
        var query = good
        query[2] = 0x01   // QR clear: a query, not a reply
        XCTAssertThrowsError(try Reply.parse(query, id: 0x1234, name: "svc.test", type: .a)) { XCTAssertEqual($0 as? Reply.ParseError, .notOurs) }
    }

    func testLyingLengthsAndPointersAreMalformed() {
        func malformed(_ b: [UInt8], _ why: String) {
            XCTAssertThrowsError(try Reply.parse(b, id: 0x1234, name: "svc.test", type: .a), why) {
                XCTAssertEqual($0 as? Reply.ParseError, .malformed, why)
            }
        }
        let good = Self.reply(answers: [Self.record(type: 1, rdata: [1, 2, 3, 4])])
        malformed(Array(good.dropLast(2)), "rdata cut short")
        malformed(Self.reply(answers: [Self.record(type: 1, rdata: [1, 2, 3])]), "an A record of 3 bytes")
        malformed(Self.reply(answers: [Self.record(owner: [0xC0, 200], type: 1, rdata: [1, 2, 3, 4])]), "a pointer forwards")
        let selfPointer = good.count
        malformed(Self.reply(answers: [Self.record(owner: [0xC0, UInt8(selfPointer)], type: 1, rdata: [1, 2, 3, 4])]), "a pointer to itself")
        malformed(Self.reply(answers: [Self.record(owner: [0x80, 1], type: 1, rdata: [1, 2, 3, 4])]), "reserved label type")
        // Each pointer points backwards, yet "abc" and a pointer back to it loop: the label count ends it.
        let ownerAt = UInt8(Self.reply(answers: []).count)
        malformed(Self.reply(answers: [Self.record(owner: [3, 0x61, 0x62, 0x63, 0xC0, ownerAt], type: 1, rdata: [1, 2, 3, 4])]),
                  "a loop of backward pointers")
        var counts = good
        counts[7] = 9
        malformed(counts, "more answers than the message holds")
        malformed(Array(good.prefix(11)), "shorter than a header")
    }

    /// Mutated replies never crash or hang the parser, and whatever parses as an answer holds only
    /// well-formed addresses.
    func testMutationFuzz() {
        let iterations = FuzzEnvironment.iterations(default: 3000), seed = FuzzEnvironment.seed(default: 0xD45_0F0F)
        let target: [UInt8] = [4] + Array("real".utf8) + [0xC0, 16]
        let corpus: [[UInt8]] = [
            Self.reply(answers: [Self.record(type: 1, rdata: [10, 0, 0, 1]), Self.record(type: 1, rdata: [10, 0, 0, 2])]),
            Self.reply(type: .aaaa, answers: [Self.record(type: 28, rdata: Array(repeating: 0, count: 15) + [1])]),
            Self.reply(answers: [Self.record(type: 5, rdata: target), Self.record(owner: [0xC0, 38], type: 1, rdata: [10, 1, 1, 1])]),
            Self.reply(flags: 0x8183, answers: []),
            Self.reply(flags: 0x8780, answers: [Self.record(type: 1, rdata: [1, 1, 1, 1])]),
            Self.reply(type: .srv, answers: [Self.record(type: 33, rdata: [0, 10, 0, 5, 0x1F, 0x90] + target),
                                             Self.record(type: 33, rdata: [0, 20, 0, 0, 0x1F, 0x91, 1, 0x62, 0xC0, 12])]),
        ]
        _ = FuzzProgress.runTest(
            "DNS reply fuzz", iterations: iterations, seed: seed, show: { $0.map { String(format: "%02x", $0) }.joined() },
            summary: { $0.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") }) { k, progress in
            var rng = SplitMix64(seed: seed ^ (UInt64(k) &* 0xD1B5_4A32_D192_ED03))
            let base = rng.pick(corpus)
            let bytes = BinaryMutation.mutate(base, corpus: corpus, rng: &rng)
            progress.start(bytes)
            let type: RecordType = rng.pick([RecordType.a, .aaaa, .srv])
            do {
                let r = try Reply.parse(bytes, id: 0x1234, name: "svc.test", type: type)
                switch r.outcome {
                case .answered(let addresses, _, _):
                    progress.count(addresses.isEmpty ? "empty" : "addresses")
                    for a in addresses where a.isIPv6 != (type == .aaaa) || a.host.isEmpty {
                        progress.fail("seed \(seed) iteration \(k): address \(a) for a \(type) query")
                    }
                case .services(let records, _):
                    progress.count(records.isEmpty ? "empty" : "services")
                    if type != .srv { progress.fail("seed \(seed) iteration \(k): SRV records for a \(type) query") }
                case .truncated: progress.count("truncated")
                case .failed: progress.count("failed")
                }
            } catch {
                progress.count("\(error)")
            }
            progress.finish()
        }
    }
}

import Foundation
import FuzzSupport
import XCTest
@testable import Checks
@testable import Config

/// In-process, deterministic mutation fuzzing of every probe-reply parser, seeded with replies captured from
/// the real servers (CapturedReplies.swift). Each iteration derives its own PRNG from the seed and its index,
/// so a failure names everything needed to replay it. `VIGIL_FUZZ_ITERATIONS` sets the count (default 3000;
/// Benchmarks/fuzz asks for millions) and `VIGIL_FUZZ_SEED` the seed. The invariants are those of
/// ProbeRobustnessTests.
final class ProbeFuzzTests: XCTestCase {
    static let iterations = FuzzEnvironment.iterations(default: 3000)
    static let seed = FuzzEnvironment.seed(default: 0x9B0B_E5EE)

    static let corpus: [(CheckType, [UInt8])] = [
        (.http, CapturedReplies.nginx200), (.http, CapturedReplies.nginx404),
        (.ssl_hello, CapturedReplies.sslHello),
        (.mysql, CapturedReplies.mariadbGreeting),
        (.ajp, Probes.ajpCPong),
        (.fastcgi, CapturedReplies.phpFPM200), (.fastcgi, CapturedReplies.phpFPMMissingScript),
        (.tcp, []),
    ]

    static func runCase(_ iteration: Int, seed: UInt64, progress: FuzzProgress) {
        var rng = SplitMix64(seed: seed ^ (UInt64(iteration) &* 0xD1B5_4A32_D192_ED03))
        let (own, capture) = rng.pick(corpus)
        // Mostly each parser on its own protocol's replies; sometimes on another's.
        let type = rng.chance(80) ? own : rng.pick(CheckType.allCases)
        let reply = BinaryMutation.mutate(capture, corpus: corpus.map(\.1), rng: &rng)
        progress.start(reply)
        let verdict = Probes.evaluate(type, reply, eof: true, expect: CheckSettings().effectiveExpectAlive, expectSet: false, peer: testPeer)
        switch verdict {
        case .up: progress.count("\(type) up")
        case .down(let reason, _): progress.count("\(type) \(reason)")
        case .needMore: progress.count("\(type) need more")
        }
        for p in ProbeRobustnessTests.problems(type, reply, &rng) { progress.fail("seed \(seed) iteration \(iteration): \(p)") }
        progress.finish()
    }

    func testMutationFuzz() {
        let iterations = Self.iterations, seed = Self.seed
        guard let progress = FuzzProgress.runTest(
            "Probe fuzz", iterations: iterations, seed: seed, show: hexString,
            summary: { $0.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") },
            { Self.runCase($0, seed: seed, progress: $1) }) else { return }
        // The mutations must keep reaching both verdicts of the deep parsers, not only their first-byte checks.
        for type in [CheckType.http, .ssl_hello, .mysql, .fastcgi] where iterations >= 1000 {
            XCTAssertGreaterThan(progress.outcomes["\(type) up"] ?? 0, 0, "no mutated \(type) reply was judged up")
        }
    }

    /// The captures themselves are what the real servers said when they were healthy (or, for the
    /// missing script and the 404, what a broken application says).
    func testCapturesGetTheVerdictsOfTheLiveServers() {
        let expect = CheckSettings().effectiveExpectAlive
        func verdict(_ t: CheckType, _ r: [UInt8]) -> Verdict { Probes.evaluate(t, r, eof: true, expect: expect, expectSet: false, peer: testPeer) }
        XCTAssertEqual(verdict(.http, CapturedReplies.nginx200), .up)
        XCTAssertNotEqual(verdict(.http, CapturedReplies.nginx404), .up)
        XCTAssertEqual(verdict(.ssl_hello, CapturedReplies.sslHello), .up)
        XCTAssertEqual(verdict(.mysql, CapturedReplies.mariadbGreeting), .up)
        XCTAssertEqual(verdict(.fastcgi, CapturedReplies.phpFPM200), .up)
        XCTAssertNotEqual(verdict(.fastcgi, CapturedReplies.phpFPMMissingScript), .up)
    }
}

import Foundation
import XCTest

/// What the in-process fuzzers share: a seeded generator and the progress record their watchdogs read.

/// SplitMix64: small, fast, and the same sequence on every platform for a given seed.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n (n > 0); the modulo bias is irrelevant for fuzzing.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    public mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    public mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
}

/// Shared between a fuzzing thread and its watchdog: cases done, the case in progress, failures, outcomes.
public final class FuzzProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private var current: [UInt8] = []
    public private(set) var failures: [String] = []
    /// How the cases ended, to show the mutations reach deep into the input.
    public private(set) var outcomes: [String: Int] = [:]

    public init() {}
    public func count(_ outcome: String) { lock.lock(); outcomes[outcome, default: 0] += 1; lock.unlock() }
    public var snapshot: (count: Int, current: [UInt8]) { lock.lock(); defer { lock.unlock() }; return (count, current) }
    public func start(_ b: [UInt8]) { lock.lock(); current = b; lock.unlock() }
    public func finish() { lock.lock(); count += 1; lock.unlock() }
    public func fail(_ s: String) { lock.lock(); if failures.count < 20 { failures.append(s) }; lock.unlock() }
}

extension FuzzProgress {
    /// Runs `runCase(0..<iterations)` on a thread with a big stack and watches it: a case takes well under
    /// a millisecond, so `stallSeconds` without progress means the code under test loops. Returns the
    /// stalled iteration and its input, or nil once every case has run.
    public func run(iterations: Int, stallSeconds: Double = 10,
                    _ runCase: @escaping @Sendable (Int) -> Void) -> (iteration: Int, input: [UInt8])? {
        let done = DispatchSemaphore(value: 0)
        let worker = Thread {
            for k in 0..<iterations { runCase(k) }
            done.signal()
        }
        worker.stackSize = 16 << 20
        worker.start()
        var last = -1
        var lastChange = Date()
        while done.wait(timeout: .now() + 0.5) == .timedOut {
            let (count, current) = snapshot
            if count != last {
                last = count
                lastChange = Date()
            } else if Date().timeIntervalSince(lastChange) > stallSeconds {
                return (count, current)
            }
        }
        return nil
    }
}

/// VIGIL_FUZZ_ITERATIONS / VIGIL_FUZZ_SEED, so a benchmark run can go to millions of cases.
public enum FuzzEnvironment {
    public static func iterations(default d: Int) -> Int {
        ProcessInfo.processInfo.environment["VIGIL_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? d
    }
    public static func seed(default d: UInt64) -> UInt64 {
        ProcessInfo.processInfo.environment["VIGIL_FUZZ_SEED"].flatMap { UInt64($0) } ?? d
    }
}

extension FuzzProgress {
    /// A fuzz test from start to verdict: runs `runCase` for `iterations` under the watchdog, fails on a
    /// stall (naming the input, shown by `show`) and on every failure a case recorded, checks that every
    /// case ran, and prints `name`, the timing and `summary` of the outcomes. Returns nil after a stall.
    public static func runTest(_ name: String, iterations: Int, seed: UInt64, show: ([UInt8]) -> String,
                               summary: ([String: Int]) -> String,
                               _ runCase: @escaping @Sendable (Int, FuzzProgress) -> Void,
                               file: StaticString = #filePath, line: UInt = #line) -> FuzzProgress? {
        let progress = FuzzProgress()
        let started = Date()
        if let stall = progress.run(iterations: iterations, { runCase($0, progress) }) {
            XCTFail("no progress for 10 s at iteration \(stall.iteration) (seed \(seed)): the code under test loops on \(show(stall.input))",
                    file: file, line: line)
            return nil
        }
        let elapsed = Date().timeIntervalSince(started)
        print("\(name): \(iterations) iterations, seed \(seed), \(String(format: "%.2f", elapsed)) s; \(summary(progress.outcomes))")
        for failure in progress.failures { XCTFail(failure, file: file, line: line) }
        XCTAssertEqual(progress.snapshot.count, iterations, file: file, line: line)
        return progress
    }
}

/// Mutations for binary protocol replies (length-prefixed records): besides bit and byte changes they
/// rewrite 16-bit fields with edge values, cut at any point, repeat pieces and splice in other entries.
public enum BinaryMutation {
    /// Values that sit on the edges of length, version, type, count and pointer fields.
    static let boundaryBytes: [UInt8] = [0x00, 0x01, 0x02, 0x03, 0x06, 0x07, 0x09, 0x0a, 0x0d, 0x16, 0x20, 0x30, 0x39, 0x7f, 0x80, 0xc0, 0xfe, 0xff]
    static let boundaryWords: [UInt16] = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0x7fff, 0x8000, 0xc00c, 0xfffe, 0xffff]

    public static func mutate(_ input: [UInt8], corpus: [[UInt8]], rng: inout SplitMix64) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + rng.below(4)) {
            let n = b.count
            switch rng.below(9) {
            case 0 where n > 0: b[rng.below(n)] ^= UInt8(1) << UInt8(rng.below(8))
            case 1 where n > 0: b[rng.below(n)] = rng.pick(boundaryBytes)
            case 2 where n > 1:
                let at = rng.below(n - 1), v = rng.pick(boundaryWords)
                b[at] = UInt8(v >> 8)
                b[at + 1] = UInt8(v & 0xff)
            case 3: b.insert(contentsOf: (0..<(1 + rng.below(8))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: rng.below(n + 1))
            case 4 where n > 0:
                let at = rng.below(n)
                b.removeSubrange(at..<min(n, at + 1 + rng.below(16)))
            case 5 where n > 0: b.removeSubrange(rng.below(n)...)
            case 6:
                let other = rng.pick(corpus)
                b = Array(b[0..<rng.below(n + 1)]) + Array(other[rng.below(other.count + 1)...])
            case 7 where n > 0:
                let at = rng.below(n)
                let piece = Array(b[at..<min(n, at + 1 + rng.below(32))])
                b.insert(contentsOf: Array(repeating: piece, count: rng.chance(5) ? 3000 : 1 + rng.below(4)).joined(), at: at)
            default: b += rng.pick(corpus)
            }
        }
        return b
    }
}

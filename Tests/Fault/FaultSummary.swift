import Foundation
import TestHarness
import XCTest

/// Every fault test records what it measured; when the test bundle finishes, the suite prints one table
/// (scenario, numbers, result) and writes it to `.build/fault-summary.md`.
class FaultTestCase: XCTestCase {
    override class func setUp() {
        super.setUp()
        FaultSummary.shared.register()
    }

    /// The scenario this test plays and what it measured, for the summary table.
    func record(_ scenario: String, _ measured: String) {
        FaultSummary.shared.note(test: name, scenario: scenario, measured: measured)
        print("fault: \(scenario): \(measured)")
    }
}

final class FaultSummary: NSObject, XCTestObservation, @unchecked Sendable {
    static let shared = FaultSummary()

    struct Row {
        var scenario: String
        var measured: String
        var result = "running"
        var seconds = 0.0
    }

    private let lock = NSLock()
    private var registered = false
    private var rows: [(test: String, row: Row)] = []

    func register() {
        lock.lock(); defer { lock.unlock() }
        guard !registered else { return }
        registered = true
        XCTestObservationCenter.shared.addTestObserver(self)
    }

    func note(test: String, scenario: String, measured: String) {
        lock.lock(); defer { lock.unlock() }
        if let i = rows.firstIndex(where: { $0.test == test }) {
            rows[i].row.scenario = scenario
            rows[i].row.measured = measured
        } else {
            rows.append((test, Row(scenario: scenario, measured: measured)))
        }
    }

    func testCaseDidFinish(_ testCase: XCTestCase) {
        guard testCase is FaultTestCase, let run = testCase.testRun else { return }
        let result = run.hasBeenSkipped ? "skipped" : run.hasSucceeded ? "pass" : "FAIL"
        lock.lock(); defer { lock.unlock() }
        if rows.firstIndex(where: { $0.test == testCase.name }) == nil {
            rows.append((testCase.name, Row(scenario: testCase.name, measured: "")))
        }
        let i = rows.firstIndex { $0.test == testCase.name }!
        rows[i].row.result = result
        rows[i].row.seconds = run.totalDuration
    }

    func testBundleDidFinish(_ testBundle: Bundle) {
        lock.lock()
        let table = Self.markdown(rows.map(\.row))
        lock.unlock()
        print("\nFault suite summary\n\n" + table)
        let dir = Binaries.packageRoot + "/.build"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? ("# Fault suite summary\n\n" + table).write(toFile: dir + "/fault-summary.md", atomically: true, encoding: .utf8)
    }

    static func markdown(_ rows: [Row]) -> String {
        var out = "| scenario | measured | result | s |\n|---|---|---|---|\n"
        for r in rows {
            out += "| \(r.scenario) | \(r.measured.replacingOccurrences(of: "|", with: "/")) | \(r.result) | \(String(format: "%.1f", r.seconds)) |\n"
        }
        let failed = rows.filter { $0.result == "FAIL" }.count
        return out + "\n\(rows.count) scenarios, \(failed) failed, \(String(format: "%.1f", rows.map(\.seconds).reduce(0, +))) s\n"
    }
}

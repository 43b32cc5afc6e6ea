import Foundation
import XCTest
import Core
import Event
import TestHarness
@testable import Etcd

/// The watcher on an event loop against Debian's real etcd: the first read, changes as they are committed,
/// values that are not upsync's, etcd going away (the set stays) and coming back (read whole again).
final class EtcdWatcherTests: XCTestCase {
    private var etcd: EtcdPeer!
    private var loop: EventLoop!
    private var log: ErrorLog!
    private var logPath = ""
    private var sets: [[UpsyncPeer]] = []
    private var watcher: EtcdWatcher!

    override func setUpWithError() throws {
        etcd = try EtcdPeer()
        loop = try EventLoop()
        log = ErrorLog()
        logPath = NSTemporaryDirectory() + "vigil-etcd-watch-\(getpid()).log"
        unlink(logPath)
        try log.open([ErrorLogTarget(path: logPath, level: .info)])
    }

    override func tearDown() {
        watcher?.stop()
        etcd?.cleanup()
        unlink(logPath)
    }

    private func startWatcher(retryMs: UInt64 = 200) {
        watcher = EtcdWatcher(loop: loop, address: SocketAddress(host: "127.0.0.1", port: etcd.clientPort, isIPv6: false)!,
                              authority: etcd.authority, prefix: "/upstreams/web/", timeoutMs: 3000, retryMs: retryMs, log: log,
                              upstream: "web") { [unowned self] in self.sets.append($0) }
        watcher.start()
    }

    /// Runs the loop until the last set handed on has these names, or fails after `seconds`.
    private func waitForSet(_ names: [String], seconds: Double = 5, _ line: UInt = #line) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if sets.last?.map(\.name) == names { return }
            loop.runOnce(waitingAtMost: 50)
        }
        XCTFail("the set is \(sets.last?.map(\.name) ?? []), not \(names)", line: line)
    }

    private func runLoop(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline { loop.runOnce(waitingAtMost: 50) }
    }

    private var logText: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func testFollowsThePrefixAsEtcdCommits() throws {
        etcd.put("/upstreams/web/127.0.0.1:8081", #"{"weight":2,"max_fails":3,"fail_timeout":5}"#)
        etcd.put("/upstreams/other/127.0.0.1:9999", "")
        startWatcher()
        waitForSet(["127.0.0.1:8081"])
        XCTAssertEqual(sets.last?.first.map { [$0.weight, $0.maxFails, $0.failTimeout] }, [2, 3, 5])

        let started = Date()
        etcd.put("/upstreams/web/127.0.0.1:8082", "")
        waitForSet(["127.0.0.1:8081", "127.0.0.1:8082"])
        XCTAssertLessThan(Date().timeIntervalSince(started), 2.0, "a watch, not a poll")

        // A value that is not upsync's JSON is logged and changes nothing: the key keeps what it held.
        let count = sets.count
        etcd.put("/upstreams/web/127.0.0.1:8081", "weight=9")
        etcd.put("/upstreams/web/not-an-address", "{}")
        etcd.put("/upstreams/web/127.0.0.1:8082", #"{"down":1}"#)
        waitForSet(["127.0.0.1:8081", "127.0.0.1:8082"])
        let deadline = Date().addingTimeInterval(5)
        while sets.last?.last?.down != true && Date() < deadline { loop.runOnce(waitingAtMost: 50) }
        XCTAssertEqual(sets.last?.map(\.down), [false, true])
        XCTAssertEqual(sets.last?.first?.weight, 2)
        XCTAssertGreaterThan(sets.count, count)
        XCTAssertTrue(logText.contains(#"upsync: value of "/upstreams/web/127.0.0.1:8081" is not a JSON object, ignored, upstream "web""#), logText)
        XCTAssertTrue(logText.contains(#"upsync: key "/upstreams/web/not-an-address" is not ADDRESS:PORT, ignored"#), logText)

        etcd.delete("/upstreams/web/127.0.0.1:8081")
        waitForSet(["127.0.0.1:8082"])
    }

    func testKeepsItsServersWhileEtcdIsAwayAndReadsAllAgainOnItsReturn() throws {
        etcd.put("/upstreams/web/127.0.0.1:8081", "")
        startWatcher()
        waitForSet(["127.0.0.1:8081"])
        let before = sets.count
        etcd.stop()
        runLoop(seconds: 1.5)
        XCTAssertEqual(sets.count, before, "etcd going away changes nothing")
        XCTAssertEqual(logText.components(separatedBy: "[error]").count - 1, 1, "one line for a run of failures:\n\(logText)")
        XCTAssertTrue(logText.contains("keeping its 1 servers"), logText)

        try etcd.start()
        // Changed while the watcher could not see it: the read on its return finds it.
        etcd.put("/upstreams/web/127.0.0.1:8083", "")
        waitForSet(["127.0.0.1:8081", "127.0.0.1:8083"], seconds: 10)
        XCTAssertTrue(logText.contains("upsync: etcd at \(etcd.authority) answers again"), logText)
    }
}

import Foundation
import TestHarness
import XCTest

/// The master/worker model on the real binary: daemon start, pid file, shm segment, reload, stop. Killed
/// processes (workers, the checker, the master) are in FaultTests.
final class ProcessModelTests: XCTestCase {
    var vigil: Vigil!
    var port: UInt16 = 0
    var backendPort: UInt16 = 0

    func makeConfig(workers: Int = 3, extraUpstreamServer: String = "", extraDirective: String = "") -> String {
        Vigil.config(workers: workers, http: """
            upstream app {
                server 127.0.0.1:\(backendPort);
                server 127.0.0.1:\(freePort()) backup;
                \(extraUpstreamServer)
                check interval=1000 rise=2 fall=2 timeout=500 type=tcp;
            }
            \(extraDirective)
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://app; }
                location /status { check_status; }
            }
            server {
                listen 127.0.0.1:\(backendPort);
                location / { return 200 "backend says hi\\n"; }
            }
            """)
    }

    override func setUpWithError() throws {
        port = freePort()
        backendPort = freePort()
        vigil = try Vigil(config: "")
        try vigil.write(config: makeConfig())
    }

    override func tearDown() { vigil.cleanup() }

    /// EPOLLEXCLUSIVE wakes the worker that registered the listener first; without re-queueing (as nginx
    /// reorders its accept events) nearly every connection of a burst went to one of two workers.
    func testConnectionsSpreadOverWorkers() throws {
        try vigil.write(config: Vigil.config(workers: 2, http: """
            server { listen 127.0.0.1:\(port); location / { return 200 "$pid"; } }
            """))
        let master = try vigil.start()
        XCTAssertEqual(vigil.waitForWorkers(master, count: 2).count, 2)
        // One connection at a time, each answered (so accepted) before the next opens, all kept open.
        var connections: [HTTPConnection] = []
        defer { connections.forEach { $0.close() } }
        var perWorker: [String: Int] = [:]
        for _ in 0..<128 {
            let c = try HTTPConnection(port: port)
            connections.append(c)
            try c.send(getRequest("/"))
            perWorker[try c.readResponse().text, default: 0] += 1
        }
        XCTAssertEqual(perWorker.count, 2, "\(perWorker)")
        XCTAssertGreaterThanOrEqual(perWorker.values.min() ?? 0, 32, "at least a quarter each: \(perWorker)")
    }

    /// Only the checker worker runs a second thread, and only when there are peers to probe: a thread shares the
    /// descriptor table, which makes every socket system call of the worker take a reference to its file.
    func testCheckerThreadOnlyWhenThereArePeersToProbe() throws {
        func threads(_ pid: Int32) -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count) ?? 0
        }
        func workersOnceElected(_ master: Int32) -> [Int32] {
            waitFor(5) { vigil.checkerPid() != nil }
            return vigil.waitForWorkers(master, count: 2)
        }
        try vigil.write(config: makeConfig(workers: 2))
        var master = try vigil.start()
        var workers = workersOnceElected(master)
        XCTAssertEqual(workers.map(threads).sorted(), [1, 2], "the checker worker probes on a thread of its own")
        XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
        waitFor(5) { !processAlive(master) }

        try vigil.write(config: Vigil.config(workers: 2, http: """
            upstream app { server 127.0.0.1:\(backendPort); }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://app; } }
            """))
        master = try vigil.start()
        workers = workersOnceElected(master)
        XCTAssertEqual(workers.map(threads), [1, 1], "nothing to probe: no thread")
        // The lock is still held, and its heartbeat kept (every 250 ms), by the elected worker's loop.
        usleep(1_000_000)
        let age = try XCTUnwrap(vigil.shmdumpJSON()["checker_heartbeat_age_ms"] as? Int)
        XCTAssertLessThan(age, 750)
    }

    func testStartCreatesPidFileWorkersAndSegment() throws {
        let master = try vigil.start()
        XCTAssertTrue(processAlive(master))
        let workers = vigil.waitForWorkers(master, count: 3)
        XCTAssertEqual(workers.count, 3, "expected 3 worker processes")
        XCTAssertEqual(shmSegments(ofMaster: master), ["vigil.\(master).1"])
        let attrs = try FileManager.default.attributesOfItem(atPath: "/dev/shm/vigil.\(master).1")
        XCTAssertEqual(attrs[.size] as? Int, 1 << 20)
        // The listener is ready when the parent has exited.
        XCTAssertTrue(canConnect(port))
        let r = try XCTUnwrap(httpGet(backendPort, "/"))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "backend says hi\n")
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
        XCTAssertFalse(vigil.errorLog().contains("[emerg]"), vigil.errorLog())
    }

    func testShmdumpTableAndJSON() throws {
        let master = try vigil.start()
        let workers = vigil.waitForWorkers(master, count: 3)
        // Wait for a checker to be elected.
        var json: [String: Any] = [:]
        waitFor(5) {
            let r = vigil.shmdump(["--json"])
            guard r.status == 0, let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return false }
            json = obj
            return !(obj["checker_pid"] is NSNull)
        }
        XCTAssertEqual(json["generation"] as? Int, 1)
        XCTAssertEqual(json["master_pid"] as? Int, Int(master))
        XCTAssertEqual(json["peer_count"] as? Int, 2)
        XCTAssertGreaterThanOrEqual(json["peer_capacity"] as? Int ?? 0, 10_000)
        let checker = try XCTUnwrap(json["checker_pid"] as? Int)
        XCTAssertTrue(workers.contains(Int32(checker)), "checker \(checker) is not one of the workers \(workers)")
        let peers = try XCTUnwrap(json["peers"] as? [[String: Any]])
        XCTAssertEqual(peers.map { $0["server"] as? String }, ["127.0.0.1:\(backendPort)", peers[1]["server"] as? String])
        XCTAssertEqual(peers[0]["upstream"] as? String, "app")
        XCTAssertEqual(peers[0]["type"] as? String, "tcp")
        XCTAssertNotNil(peers[0]["state"] as? String)

        let table = vigil.shmdump()
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.hasPrefix("segment /vigil.\(master).1  generation 1  master \(master)  checker \(checker)"), table.stdout)
        XCTAssertTrue(table.stdout.contains("app       127.0.0.1:\(backendPort)"), table.stdout)
        XCTAssertTrue(table.stdout.contains("peers 2 of capacity"), table.stdout)
    }

    func testShmdumpWatchRedraws() throws {
        _ = try vigil.start()
        // --watch runs until interrupted: give it about 2.5 s, then count the frames it drew.
        let r = runCommand(Binaries.path("shmdump"), ["-p", vigil.prefix, "-c", vigil.confPath, "--watch"], timeout: 2.5)
        let frames = r.stdout.components(separatedBy: "\u{1B}[H\u{1B}[2J").filter { $0.hasPrefix("segment /vigil.") }
        XCTAssertGreaterThanOrEqual(frames.count, 2, r.stdout)
        XCTAssertLessThanOrEqual(frames.count, 4, "one frame a second")
    }

    func testShmdumpErrors() throws {
        let none = vigil.shmdump()
        XCTAssertEqual(none.status, 1)
        XCTAssertEqual(none.stderr, "shmdump: no running vigil: open() \"\(vigil.pidPath)\" failed (2: No such file or directory)\n")
        // A segment that is not Vigil's, and one that is truncated.
        let name = "vigil-test-garbage-\(getpid())"
        try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: "/dev/shm/" + name))
        defer { unlink("/dev/shm/" + name) }
        let bad = vigil.shmdump(["--segment", name])
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderr, "shmdump: segment \"/\(name)\" is not a vigil segment (bad magic)\n")
        var header = Data("VIGILSHM".utf8)
        header.append(contentsOf: [2, 0, 0, 0, 128, 0, 0, 0])   // layout version 2, header size 128
        header.append(contentsOf: withUnsafeBytes(of: UInt64(1 << 20).littleEndian) { Array($0) })
        header.append(Data(repeating: 0, count: 200 - header.count))
        try header.write(to: URL(fileURLWithPath: "/dev/shm/" + name))
        let truncated = vigil.shmdump(["--segment", name])
        XCTAssertEqual(truncated.status, 1)
        XCTAssertTrue(truncated.stderr.contains("is truncated"), truncated.stderr)
        header.replaceSubrange(8..<12, with: [9, 0, 0, 0])
        try header.write(to: URL(fileURLWithPath: "/dev/shm/" + name))
        let version = vigil.shmdump(["--segment", name])
        XCTAssertEqual(version.status, 1)
        XCTAssertTrue(version.stderr.contains("has layout version 9"), version.stderr)
    }

    func testReloadKeepsMasterReplacesWorkersAndBumpsGeneration() throws {
        let master = try vigil.start()
        let before = vigil.waitForWorkers(master, count: 3)
        XCTAssertEqual(before.count, 3)
        try vigil.write(config: makeConfig(extraUpstreamServer: "server 127.0.0.1:\(freePort());"))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        var after: [Int32] = []
        waitFor(10) {
            after = childPids(of: master)
            return after.count == 3 && Set(after).isDisjoint(with: before)
        }
        XCTAssertEqual(after.count, 3)
        XCTAssertTrue(Set(after).isDisjoint(with: before), "workers were not replaced: \(before) -> \(after)")
        XCTAssertTrue(processAlive(master))
        XCTAssertEqual(vigil.masterPid(), master)
        XCTAssertTrue(waitFor(5) { shmSegments(ofMaster: master) == ["vigil.\(master).2"] }, "\(shmSegments(ofMaster: master))")
        let dump = vigil.shmdump(["--json"])
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(obj["generation"] as? Int, 2)
        XCTAssertEqual(obj["peer_count"] as? Int, 3)
        XCTAssertTrue(canConnect(port))
        XCTAssertTrue(vigil.errorLog().contains("reconfiguring"))
    }

    func testBadReloadKeepsEverythingRunning() throws {
        let master = try vigil.start()
        let before = vigil.waitForWorkers(master, count: 3)
        try vigil.write(config: makeConfig(extraDirective: "this_is_not_a_directive;"))
        // Like nginx, `-s reload` parses the configuration first and refuses to signal a broken one.
        let refused = vigil.vigil(["-s", "reload"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.hasPrefix("vigil: [emerg] unknown directive \"this_is_not_a_directive\" in \(vigil.confPath):"), refused.stderr)
        // A HUP from elsewhere (kill, systemd) reaches the master, which logs the error and changes nothing.
        XCTAssertEqual(kill(master, SIGHUP), 0)
        XCTAssertTrue(waitFor(5) { self.vigil.errorLog().contains("[emerg]") && self.vigil.errorLog().contains("unknown directive \"this_is_not_a_directive\"") }, vigil.errorLog())
        usleep(300_000)
        XCTAssertEqual(childPids(of: master), before)
        XCTAssertEqual(shmSegments(ofMaster: master), ["vigil.\(master).1"])
        XCTAssertEqual(try XCTUnwrap(httpGet(backendPort, "/")).status, 200)
        // A good reload afterwards moves to generation 2, not 3: failed parses do not consume generations.
        try vigil.write(config: makeConfig())
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(10) { shmSegments(ofMaster: master) == ["vigil.\(master).2"] }, "\(shmSegments(ofMaster: master))")
    }

    func testStopRemovesPidFileSegmentAndReleasesPort() throws {
        let master = try vigil.start()
        _ = vigil.waitForWorkers(master, count: 3)
        let stop = vigil.vigil(["-s", "stop"])
        XCTAssertEqual(stop.status, 0, stop.stderr)
        XCTAssertTrue(waitFor(5) { !processAlive(master) }, "master still running")
        XCTAssertFalse(FileManager.default.fileExists(atPath: vigil.pidPath))
        XCTAssertEqual(shmSegments(ofMaster: master), [])
        XCTAssertFalse(canConnect(port))
        XCTAssertTrue(vigil.errorLog().contains("exit"))
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }

    func testQuitIsGraceful() throws {
        let master = try vigil.start()
        _ = vigil.waitForWorkers(master, count: 3)
        XCTAssertEqual(vigil.vigil(["-s", "quit"]).status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(master) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: vigil.pidPath))
        XCTAssertEqual(shmSegments(ofMaster: master), [])
        XCTAssertTrue(vigil.errorLog().contains("gracefully shutting down"))
    }

    func testReopenCreatesNewLogFile() throws {
        let master = try vigil.start()
        _ = vigil.waitForWorkers(master, count: 3)
        let rotated = vigil.errorLogPath + ".1"
        try FileManager.default.moveItem(atPath: vigil.errorLogPath, toPath: rotated)
        XCTAssertEqual(vigil.vigil(["-s", "reopen"]).status, 0)
        XCTAssertTrue(waitFor(5) { FileManager.default.fileExists(atPath: self.vigil.errorLogPath) })
        XCTAssertTrue(try String(contentsOfFile: rotated, encoding: .utf8).contains("start worker process"))
    }

    func testPortInUse() throws {
        let master = try vigil.start()
        _ = vigil.waitForWorkers(master, count: 3)
        let second = try Vigil(config: makeConfig())
        defer { second.cleanup() }
        let r = second.vigil([])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("vigil: [emerg] bind() to 127.0.0.1:\(port) failed (98: Address already in use)"), r.stderr)
        XCTAssertNil(second.masterPid())
    }

    func testForegroundWithDaemonOff() throws {
        try vigil.write(config: makeConfig(workers: 2))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Binaries.path("vigil"))
        p.arguments = ["-p", vigil.prefix, "-c", vigil.confPath, "-g", "daemon off;"]
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitFor(5) { self.vigil.masterPid() == p.processIdentifier })
        XCTAssertEqual(vigil.waitForWorkers(p.processIdentifier, count: 2).count, 2)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: vigil.pidPath))
    }
}

/// Reloads under load lose nothing: keep-alive clients keep getting answers while workers are replaced.
final class ReloadUnderLoadTests: XCTestCase {
    func testNoRequestLostAcrossReloads() throws {
        let port = freePort(), backend = freePort()
        let vigil = try Vigil(config: Vigil.config(workers: 2, http: """
            upstream app { server 127.0.0.1:\(backend); keepalive 8; }
            server { listen 127.0.0.1:\(port); location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
            server { listen 127.0.0.1:\(backend); location / { return 200 "ok"; } }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()

        let load = Load(port: port, keepAlive: 8, seconds: 3.5, body: "ok")
        for _ in 0..<3 {
            usleep(800_000)
            XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        }
        XCTAssertTrue(load.wait())
        XCTAssertEqual(load.failures.map(\.what), [], "requests lost across reloads")
        XCTAssertGreaterThan(load.ok, 500)
    }
}

/// The operations kit in ops/: the systemd unit's commands, run the way systemd runs them.
final class OperationsTests: XCTestCase {
    /// ExecStartPre / ExecStart / ExecReload / ExecStop of ops/vigil.service with this test's paths.
    func testSystemdUnitCommands() throws {
        let unit = try String(contentsOfFile: Binaries.packageRoot + "/ops/vigil.service", encoding: .utf8)
        let vigil = try Vigil(config: Vigil.config(workers: 2, http: "server { listen 127.0.0.1:\(freePort()); return 200; }"))
        defer { vigil.cleanup() }
        func command(_ key: String) -> [String] {
            let line = unit.split(separator: "\n").first { $0.hasPrefix(key + "=") }!.dropFirst(key.count + 1)
            return line.split(separator: " ").map { String($0) }.dropFirst().map {
                $0.replacingOccurrences(of: "/etc/vigil/vigil.conf", with: vigil.confPath)
                  .replacingOccurrences(of: "/etc/vigil", with: vigil.prefix)
            }
        }
        let vigilBinary = Binaries.path("vigil")
        XCTAssertTrue(unit.contains("Type=forking"))
        let pre = runCommand(vigilBinary, command("ExecStartPre"))
        XCTAssertEqual(pre.status, 0, pre.stderr)
        XCTAssertEqual(pre.stderr, "", "-t -q prints nothing when the configuration is fine")
        let start = runCommand(vigilBinary, command("ExecStart"))
        XCTAssertEqual(start.status, 0, start.stderr)
        // Type=forking: when the parent has exited, the pid file names a running master.
        let master = try XCTUnwrap(vigil.masterPid())
        XCTAssertTrue(processAlive(master))
        XCTAssertEqual(vigil.waitForWorkers(master, count: 2).count, 2)
        XCTAssertEqual(runCommand(vigilBinary, command("ExecReload")).status, 0)
        XCTAssertTrue(waitFor(5) { shmSegments(ofMaster: master) == ["vigil.\(master).2"] })
        XCTAssertEqual(runCommand(vigilBinary, command("ExecStop")).status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(master) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: vigil.pidPath))
    }

    func testLogrotateSnippetReopensWithUSR1() throws {
        let snippet = try String(contentsOfFile: Binaries.packageRoot + "/ops/vigil.logrotate", encoding: .utf8)
        XCTAssertTrue(snippet.contains("kill -USR1"))
        XCTAssertTrue(snippet.contains("postrotate"))
    }
}

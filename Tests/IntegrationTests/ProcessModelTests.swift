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
        header.append(contentsOf: [4, 0, 0, 0, 128, 0, 0, 0])   // layout version 4, header size 128
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
    /// ExecStartPre / ExecStart / ExecReload / ExecStop of ops/vigil.service with this test's paths, each run
    /// as the unit runs it: no new privileges and only the capabilities of its bounding set. Starting, serving,
    /// reopening rotated logs, reloading and stopping all work with that set, and the workers are nobody.
    func testSystemdUnitCommands() throws {
        try XCTSkipUnless(geteuid() == 0, "the unit runs its master as root")
        let unit = try String(contentsOfFile: Binaries.packageRoot + "/ops/vigil.service", encoding: .utf8)
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(workers: 2, http: "server { listen 127.0.0.1:\(port); access_log logs/access.log; return 200; }"))
        defer { vigil.cleanup() }
        func value(_ key: String) -> String {
            String(unit.split(separator: "\n").first { $0.hasPrefix(key + "=") }!.dropFirst(key.count + 1))
        }
        func command(_ key: String) -> [String] {
            value(key).split(separator: " ").map { String($0) }.dropFirst().map {
                $0.replacingOccurrences(of: "/etc/vigil/vigil.conf", with: vigil.confPath)
                  .replacingOccurrences(of: "/var/lib/vigil/", with: vigil.prefix + "/")
                  .replacingOccurrences(of: "/var/log/vigil", with: vigil.prefix + "/logs")
            }
        }
        XCTAssertEqual(value("Type"), "forking")
        XCTAssertEqual(value("NoNewPrivileges"), "yes")
        XCTAssertEqual(value("ProtectSystem"), "full")
        XCTAssertEqual(value("PrivateTmp"), "yes")
        let capabilities = value("CapabilityBoundingSet").split(separator: " ").map { $0.dropFirst("CAP_".count).lowercased() }
        let asTheUnit = ["--no-new-privs", "--bounding-set", "-all," + capabilities.map { "+" + $0 }.joined(separator: ","), Binaries.path("vigil")]
        func run(_ key: String) -> RunResult { runCommand("/usr/bin/setpriv", asTheUnit + command(key), cwd: "/") }

        let pre = run("ExecStartPre")
        XCTAssertEqual(pre.status, 0, pre.stderr)
        XCTAssertEqual(pre.stderr, "", "-t -q prints nothing when the configuration is fine")
        let start = run("ExecStart")
        XCTAssertEqual(start.status, 0, start.stderr)
        // Type=forking: when the parent has exited, the pid file names a running master.
        let master = try XCTUnwrap(vigil.masterPid())
        vigil.track(master: master)
        XCTAssertTrue(processAlive(master))
        let workers = vigil.waitForWorkers(master, count: 2)
        XCTAssertEqual(workers.count, 2)
        for w in workers {
            let status = try String(contentsOfFile: "/proc/\(w)/status", encoding: .utf8)
            XCTAssertTrue(status.contains("Uid:\t65534\t65534\t65534\t65534\n"), status)
        }
        XCTAssertEqual(httpGet(port, "/")?.status, 200)

        // logrotate's postrotate, with the unit's capabilities.
        let logs = vigil.prefix + "/logs"
        XCTAssertEqual(rename(logs + "/access.log", logs + "/access.log.1"), 0)
        let reopen = runCommand("/usr/bin/setpriv", asTheUnit + command("ExecReload").dropLast(2) + ["-s", "reopen"], cwd: "/")
        XCTAssertEqual(reopen.status, 0, reopen.stderr)
        XCTAssertTrue(waitFor(5) {
            _ = httpGet(port, "/after-reopen")
            return ((try? String(contentsOfFile: logs + "/access.log", encoding: .utf8)) ?? "").contains("/after-reopen")
        }, vigil.errorLog())

        XCTAssertEqual(run("ExecReload").status, 0)
        XCTAssertTrue(waitFor(5) { shmSegments(ofMaster: master) == ["vigil.\(master).2"] })
        XCTAssertEqual(httpGet(port, "/")?.status, 200)
        XCTAssertEqual(run("ExecStop").status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(master) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: vigil.pidPath))
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }

    /// systemd itself finds nothing to say about the unit (unknown keys and bad values are warnings, so the
    /// output must be empty too).
    func testSystemdAnalyzeVerifiesTheUnit() throws {
        let analyze = "/usr/bin/systemd-analyze"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is not installed")
        let dir = NSTemporaryDirectory() + "vigil-unit-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // systemd checks that the commands exist: point them at the built binary.
        let unit = try String(contentsOfFile: Binaries.packageRoot + "/ops/vigil.service", encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/sbin/vigil", with: Binaries.path("vigil"))
        try unit.write(toFile: dir + "/vigil.service", atomically: true, encoding: .utf8)
        let r = runCommand(analyze, ["verify", dir + "/vigil.service"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr + r.stdout, "")
    }

    /// ops/vigil.logrotate run by logrotate itself, with this test's paths: the logs move aside, the master
    /// creates them anew for the workers (nobody), and the next requests are logged there, none lost.
    func testLogrotateSnippetRotatesWithoutLosingLines() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/sbin/logrotate"), "logrotate is not installed")
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(http: "server { listen 127.0.0.1:\(port); access_log logs/access.log; return 200; }"))
        defer { vigil.cleanup() }
        let logs = vigil.prefix + "/logs"
        let snippet = try String(contentsOfFile: Binaries.packageRoot + "/ops/vigil.logrotate", encoding: .utf8)
            .replacingOccurrences(of: "/var/log/vigil", with: logs)
            .replacingOccurrences(of: "/run/vigil.pid", with: vigil.pidPath)
        try snippet.write(toFile: vigil.prefix + "/logrotate.conf", atomically: true, encoding: .utf8)
        _ = try vigil.start()
        for i in 0..<5 { XCTAssertEqual(httpGet(port, "/before/\(i)")?.status, 200) }
        let r = runCommand("/usr/sbin/logrotate", ["-f", "-s", vigil.prefix + "/logrotate.state", vigil.prefix + "/logrotate.conf"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let rotated = try String(contentsOfFile: logs + "/access.log.1", encoding: .utf8)
        XCTAssertEqual(rotated.split(separator: "\n").count, 5, rotated)
        XCTAssertTrue(waitFor(5) {
            _ = httpGet(port, "/after")
            return ((try? String(contentsOfFile: logs + "/access.log", encoding: .utf8)) ?? "").contains("GET /after")
        }, vigil.errorLog())
        XCTAssertFalse(try String(contentsOfFile: logs + "/access.log.1", encoding: .utf8).contains("/after"))
        if geteuid() == 0 {
            var st = stat()
            XCTAssertEqual(stat(logs + "/access.log", &st), 0)
            XCTAssertEqual(st.st_uid, 65534, "the new log does not belong to the workers")
        }
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }
}

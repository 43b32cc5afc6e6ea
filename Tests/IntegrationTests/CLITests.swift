import Foundation
import TestHarness
import XCTest

/// nginx's command line, run against the real binary: messages, streams and exit codes.
final class CLITests: XCTestCase {
    var vigil: Vigil!

    override func setUpWithError() throws {
        vigil = try Vigil(config: Vigil.config(http: """
            upstream app {
                server 127.0.0.1:\(freePort());
                check interval=1000 rise=1 fall=1 type=tcp;
            }
            server {
                listen 127.0.0.1:\(freePort());
                location / { proxy_pass http://app; }
                location /status { check_status; }
            }
            """))
    }

    override func tearDown() { vigil.cleanup() }

    func testVersionAndHelp() {
        let v = vigil.vigil(["-v"])
        XCTAssertEqual(v.status, 0)
        XCTAssertEqual(v.stderr, "vigil version: vigil/0.1.0\n")
        let h = vigil.vigil(["-h"])
        XCTAssertEqual(h.status, 0)
        XCTAssertTrue(h.stderr.contains("Usage: vigil [-?hvVtTq] [-s signal] [-p prefix]"))
        XCTAssertTrue(h.stderr.contains("-s signal     : send signal to a master process: stop, quit, reopen, reload"))
        let V = vigil.vigil(["-V"])
        XCTAssertEqual(V.status, 0)
        XCTAssertTrue(V.stderr.contains("configure arguments:"))
    }

    func testInvalidOptions() {
        let r = vigil.vigil(["-x"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "vigil: invalid option: \"x\"\n")
        let s = vigil.vigil(["-s", "restart"])
        XCTAssertEqual(s.status, 1)
        XCTAssertEqual(s.stderr, "vigil: invalid option: \"-s restart\"\n")
        let c = runCommand(Binaries.path("vigil"), ["-c"])
        XCTAssertEqual(c.status, 1)
        XCTAssertEqual(c.stderr, "vigil: option \"-c\" requires file name\n")
    }

    func testTestSucceeds() {
        let r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stderr, """
            vigil: the configuration file \(vigil.confPath) syntax is ok
            vigil: configuration file \(vigil.confPath) test is successful

            """)
        let q = vigil.vigil(["-t", "-q"])
        XCTAssertEqual(q.status, 0)
        XCTAssertEqual(q.stderr, "")
        let combined = vigil.vigil(["-tq"])
        XCTAssertEqual(combined.status, 0)
        XCTAssertEqual(combined.stderr, "")
    }

    /// A directive Vigil accepts without acting on it, set to ask for what Vigil does not do, gets nginx's
    /// `[notice]` line at `-t` (with file:line and why) and passes; `-q` leaves only errors.
    func testTestNoticesDirectivesWithoutEffect() throws {
        try vigil.write(config: Vigil.config(http: """
            sendfile on;
            server { listen 127.0.0.1:\(freePort()); }
            """))
        let r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 0)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 3, r.stderr)
        let line = try String(contentsOfFile: vigil.confPath, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("sendfile") }! + 1
        XCTAssertEqual(lines.first, "vigil: [notice] \"sendfile\" has no effect in vigil: static files are read whole (up to 16 MiB) "
                       + "and written after the response head in \(vigil.confPath):\(line)")
        XCTAssertEqual(vigil.vigil(["-t", "-q"]).stderr, "")
    }

    func testTestFailsWithFileAndLine() throws {
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(freePort());
                bogus_directive on;
            }
            """))
        let r = vigil.vigil(["-t"])
        XCTAssertEqual(r.status, 1)
        // Line 11: the skeleton has 8 lines before `http {` contents start at line 10.
        let lines = r.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, r.stderr)
        XCTAssertTrue(lines[0].hasPrefix("vigil: [emerg] unknown directive \"bogus_directive\" in \(vigil.confPath):"), lines[0])
        let lineNo = Int(lines[0].split(separator: ":").last ?? "")
        let expected = try String(contentsOfFile: vigil.confPath, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("bogus_directive") }! + 1
        XCTAssertEqual(lineNo, expected)
        XCTAssertEqual(lines[1], "vigil: configuration file \(vigil.confPath) test failed")
    }

    func testDumpPrintsEveryFile() throws {
        try vigil.write(config: Vigil.config(http: """
            include mime.types;
            server { listen 127.0.0.1:\(freePort()); }
            """))
        let r = vigil.vigil(["-T"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("# configuration file \(vigil.confPath):\n"))
        XCTAssertTrue(r.stdout.contains("# configuration file \(vigil.prefix)/conf/mime.types:\n"))
        XCTAssertTrue(r.stdout.contains("text/html                                        html htm shtml;"))
    }

    /// As nginx, a file included more than once (here, and through another include) is printed once.
    func testDumpPrintsAFileIncludedTwiceOnce() throws {
        try "include \(vigil.prefix)/inner.conf;\n".write(toFile: vigil.prefix + "/outer.conf", atomically: true, encoding: .utf8)
        try "# inner\n".write(toFile: vigil.prefix + "/inner.conf", atomically: true, encoding: .utf8)
        try vigil.write(config: Vigil.config(http: """
            include \(vigil.prefix)/outer.conf;
            include \(vigil.prefix)/outer.conf;
            server { listen 127.0.0.1:\(freePort()); }
            """))
        let r = vigil.vigil(["-T"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "# configuration file \(vigil.prefix)/outer.conf:\n").count, 2, r.stdout)
        XCTAssertEqual(r.stdout.components(separatedBy: "# configuration file \(vigil.prefix)/inner.conf:\n").count, 2, r.stdout)
    }

    func testSignalWithoutMaster() {
        let r = vigil.vigil(["-s", "reload"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "vigil: [error] open() \"\(vigil.pidPath)\" failed (2: No such file or directory)\n")
    }

    func testGlobalDirectives() {
        let ok = vigil.vigil(["-g", "daemon off;", "-t"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let dup = vigil.vigil(["-g", "worker_processes 2;", "-t"])
        XCTAssertEqual(dup.status, 1)
        XCTAssertTrue(dup.stderr.hasPrefix("vigil: [emerg] \"worker_processes\" directive is duplicate in \(vigil.confPath):1\n"), dup.stderr)
        let bad = vigil.vigil(["-g", "daemon off", "-t"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.hasPrefix("vigil: [emerg] unexpected end of parameter, expecting \";\" in command line\n"), bad.stderr)
        let unknown = vigil.vigil(["-g", "frobnicate on;", "-t"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.stderr.hasPrefix("vigil: [emerg] unknown directive \"frobnicate\" in command line\n"), unknown.stderr)
    }

    func testBadInputsFailCleanly() throws {
        // Missing file.
        let missing = runCommand(Binaries.path("vigil"), ["-t", "-c", vigil.prefix + "/nope.conf"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.stderr, """
            vigil: [emerg] open() "\(vigil.prefix)/nope.conf" failed (2: No such file or directory)
            vigil: configuration file \(vigil.prefix)/nope.conf test failed

            """)
        // A directory where the file should be.
        let dir = runCommand(Binaries.path("vigil"), ["-t", "-c", vigil.prefix + "/conf"])
        XCTAssertEqual(dir.status, 1)
        XCTAssertTrue(dir.stderr.contains("failed (21: Is a directory)"), dir.stderr)
        // Missing include.
        try vigil.write(config: Vigil.config(http: "include missing.conf;"))
        let inc = vigil.vigil(["-t"])
        XCTAssertEqual(inc.status, 1)
        XCTAssertTrue(inc.stderr.hasPrefix("vigil: [emerg] open() \"\(vigil.prefix)/conf/missing.conf\" failed (2: No such file or directory) in \(vigil.confPath):"), inc.stderr)
        // Binary garbage.
        var rng = SystemRandomNumberGenerator()
        let garbage = Data((0..<65536).map { _ in UInt8.random(in: 0...255, using: &rng) })
        try garbage.write(to: URL(fileURLWithPath: vigil.confPath))
        let g = vigil.vigil(["-t"])
        XCTAssertEqual(g.status, 1)
        XCTAssertTrue(g.stderr.hasPrefix("vigil: [emerg] "), g.stderr)
        XCTAssertTrue(g.stderr.hasSuffix("vigil: configuration file \(vigil.confPath) test failed\n"), g.stderr)
    }

    func testHugeAndDeepConfigs() throws {
        // 10 MB of comments and harmless directives.
        var big = Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); }")
        let filler = String(repeating: "# " + String(repeating: "x", count: 97) + "\n", count: 100_000)
        big += filler
        try vigil.write(config: big)
        let start = Date()
        let r = vigil.vigil(["-t", "-q"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)

        // 200 nested locations parse; 300 exceed the nesting limit with a clear message.
        func nested(_ depth: Int) -> String {
            var s = "server { listen 127.0.0.1:\(freePort());\n"
            for i in 0..<depth { s += "location /\(String(repeating: "a/", count: i)) {\n" }
            s += "return 200;\n" + String(repeating: "}\n", count: depth) + "}\n"
            return s
        }
        try vigil.write(config: Vigil.config(http: nested(200)))
        let deep = vigil.vigil(["-t", "-q"])
        XCTAssertEqual(deep.status, 0, deep.stderr)
        try vigil.write(config: Vigil.config(http: nested(300)))
        let tooDeep = vigil.vigil(["-t"])
        XCTAssertEqual(tooDeep.status, 1)
        XCTAssertTrue(tooDeep.stderr.contains("too many nested blocks"), tooDeep.stderr)
    }

    /// 1 MiB holds 10,000 checked peers (the reference fits 4,475); 20,000 need a larger check_shm_size.
    func testShmSizing() throws {
        func upstreams(_ peers: Int, shm: String = "") -> String {
            var s = shm + "\nupstream big {\n"
            for i in 0..<peers { s += "server 10.\(i / 65536).\((i / 256) % 256).\(i % 256):80;\n" }
            s += "check interval=1000 type=tcp;\n}\nserver { listen 127.0.0.1:\(freePort()); location / { proxy_pass http://big; } }\n"
            return s
        }
        try vigil.write(config: Vigil.config(http: upstreams(10_000)))
        let fits = vigil.vigil(["-t"])
        XCTAssertEqual(fits.status, 0, fits.stderr)
        try vigil.write(config: Vigil.config(http: upstreams(20_000)))
        let tooSmall = vigil.vigil(["-t"])
        XCTAssertEqual(tooSmall.status, 1)
        XCTAssertTrue(tooSmall.stderr.contains("vigil: [emerg] check_shm_size 1048576 is too small for 20000 checked peers: they need "), tooSmall.stderr)
        XCTAssertTrue(tooSmall.stderr.contains("set \"check_shm_size 2M;\" or more"), tooSmall.stderr)
        try vigil.write(config: Vigil.config(http: upstreams(20_000, shm: "check_shm_size 2M;")))
        XCTAssertEqual(vigil.vigil(["-t"]).status, 0)
    }

    /// As nginx: a `-s reload` refused for a broken configuration says why on stderr and in the error log.
    func testRefusedReloadIsLoggedToo() throws {
        _ = try vigil.start()
        let good = try String(contentsOfFile: vigil.confPath, encoding: .utf8)
        try vigil.write(config: good.replacingOccurrences(of: "events {", with: "bogus_directive on;\nevents {"))
        let r = vigil.vigil(["-s", "reload"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("[emerg] unknown directive \"bogus_directive\""), r.stderr)
        XCTAssertTrue(waitFor(3) { self.vigil.errorLog().contains("[emerg]") }, vigil.errorLog())
        XCTAssertTrue(vigil.errorLog().contains("unknown directive \"bogus_directive\" in \(vigil.confPath):5"), vigil.errorLog())
    }

    func testDemoConfigPasses() {
        // The demo's HTTPS listener needs its certificate, which scripts/run-demo makes the same way.
        XCTAssertEqual(runCommand("/bin/bash", [Binaries.packageRoot + "/scripts/demo-cert"]).status, 0)
        let r = runCommand(Binaries.path("vigil"), ["-t", "-p", Binaries.packageRoot, "-c", "conf/vigil.conf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("test is successful"))
    }
}

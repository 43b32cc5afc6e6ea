import Foundation
import TestHarness
import XCTest

/// What runs as whom: a master started as root keeps root, its workers become `user` (nobody by default)
/// before they handle anything, and what they must write is made theirs.
final class PrivilegeTests: XCTestCase {
    var vigil: Vigil!

    override func setUpWithError() throws {
        try XCTSkipUnless(geteuid() == 0, "the privilege drop needs a master started as root")
    }

    override func tearDown() {
        vigil?.cleanup()
    }

    /// A line of /proc/PID/status ("Uid", "Gid", "Groups", "NoNewPrivs"), its fields.
    func status(_ pid: Int32, _ key: String) -> [String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return [] }
        return line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }

    /// Real, effective, saved and filesystem ids all the same.
    func ids(_ pid: Int32, _ key: String) -> Set<String> { Set(status(pid, key)) }

    /// The master's workers once each has set itself up: a child is listed from its fork, before it drops its
    /// privileges (NoNewPrivs comes after the user change).
    func workers(_ master: Int32, count: Int) -> [Int32] {
        let w = vigil.waitForWorkers(master, count: count)
        XCTAssertEqual(w.count, count, "workers of \(master): \(w)")
        XCTAssertTrue(waitFor(5) { w.allSatisfy { self.status($0, "NoNewPrivs") == ["1"] } }, "workers of \(master) never set up")
        return w
    }

    func testWorkersRunAsNobodyServeWhatTheyMayAndStayUnprivilegedAcrossReload() throws {
        let port = freePort()
        let capture = try CaptureServer()
        defer { capture.stop() }
        vigil = try Vigil(config: "")
        let html = vigil.prefix + "/html"
        try FileManager.default.createDirectory(atPath: html, withIntermediateDirectories: true)
        try "public\n".write(toFile: html + "/public.txt", atomically: false, encoding: .utf8)
        try "root only\n".write(toFile: html + "/secret.txt", atomically: false, encoding: .utf8)
        chmod(html + "/secret.txt", 0o600)
        let socket = vigil.prefix + "/upstream.sock"
        try vigil.write(config: Vigil.config(workers: 2, http: """
            server {
                listen 127.0.0.1:\(port);
                root html;
                client_body_buffer_size 1k;
                location /unix/ { proxy_pass http://unix:\(socket):/; }
                location /upload { proxy_pass http://127.0.0.1:\(capture.port); }
            }
            server { listen unix:\(socket); location / { return 200 "over a unix socket\\n"; } }
            """))
        let master = try vigil.start()
        XCTAssertEqual(ids(master, "Uid"), ["0"], "the master keeps root")
        for w in workers(master, count: 2) {
            XCTAssertEqual(ids(w, "Uid"), ["65534"], "worker \(w) is not nobody")
            XCTAssertEqual(ids(w, "Gid"), ["65534"], "worker \(w) is not in nogroup")
            XCTAssertEqual(status(w, "Groups"), ["65534"], "worker \(w) kept root's supplementary groups")
            XCTAssertEqual(status(w, "NoNewPrivs"), ["1"])
            XCTAssertEqual(status(w, "CapEff"), ["0000000000000000"])
        }

        // Files: what nobody may read is served, a root-only file is not.
        XCTAssertEqual(httpGet(port, "/public.txt")?.body, "public\n")
        XCTAssertEqual(httpGet(port, "/secret.txt")?.status, 403)
        XCTAssertTrue(vigil.errorLog().contains("secret.txt\" failed (13: Permission denied)"), vigil.errorLog())

        // The unix listener is 0666 (as nginx makes it), so a worker running as nobody can proxy to it.
        var st = stat()
        XCTAssertEqual(stat(socket, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o666)
        XCTAssertEqual(httpGet(port, "/unix/x")?.body, "over a unix socket\n")

        // The master made the temp directory and gave it to nobody: a body past client_body_buffer_size goes
        // through a file there, whole.
        let temp = vigil.prefix + "/logs/client_body_temp"
        XCTAssertEqual(stat(temp, &st), 0)
        XCTAssertEqual(st.st_uid, 65534)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        let body = (0..<50_000).map { UInt8(0x61 + $0 % 26) }
        let client = try HTTPConnection(port: port)
        defer { client.close() }
        try client.send(Array("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body)
        XCTAssertEqual(try client.readResponse().status, 200)
        let sent = try XCTUnwrap(capture.requests.last)
        XCTAssertEqual(Array(sent.suffix(body.count)), body)
        XCTAssertTrue(vigil.errorLog().contains("buffered to a temporary file \(temp)/"), vigil.errorLog())

        // A reload forks new workers: unprivileged too.
        let before = Set(childPids(of: master))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(10) { let now = Set(childPids(of: master)); return now.count == 2 && now.isDisjoint(with: before) })
        for w in childPids(of: master) {
            XCTAssertEqual(ids(w, "Uid"), ["65534"])
            XCTAssertEqual(status(w, "NoNewPrivs"), ["1"])
        }
        XCTAssertEqual(httpGet(port, "/secret.txt")?.status, 403)
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
        XCTAssertFalse(vigil.errorLog().contains("[emerg]"), vigil.errorLog())
    }

    /// `user name [group]`: the group defaults to the user's name, as in nginx; the core directives that go
    /// with it apply to the workers.
    func testUserGroupRlimitCoreAndWorkingDirectory() throws {
        let port = freePort()
        vigil = try Vigil(config: "")
        let cores = vigil.prefix + "/cores"
        try FileManager.default.createDirectory(atPath: cores, withIntermediateDirectories: true)
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(port); return 200 ok; }",
                                             main: "user www-data; worker_rlimit_core 10m; working_directory cores;"))
        var master = try vigil.start()
        var w = try XCTUnwrap(workers(master, count: 1).first)
        XCTAssertEqual(ids(w, "Uid"), ["33"])
        XCTAssertEqual(ids(w, "Gid"), ["33"])
        let limits = try String(contentsOfFile: "/proc/\(w)/limits", encoding: .utf8)
        XCTAssertTrue(limits.split(separator: "\n").contains { $0.hasPrefix("Max core file size") && $0.contains("10485760") }, limits)
        // chdir is the last step of a worker's setup.
        XCTAssertTrue(waitFor(5) { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(w)/cwd")) == cores })
        XCTAssertEqual(httpGet(port, "/")?.body, "ok")
        XCTAssertEqual(vigil.vigil(["-s", "stop"]).status, 0)
        XCTAssertTrue(waitFor(5) { !processAlive(master) })

        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(port); return 200 ok; }", main: "user nobody nogroup;"))
        master = try vigil.start()
        w = try XCTUnwrap(workers(master, count: 1).first)
        XCTAssertEqual(ids(w, "Uid"), ["65534"])
        XCTAssertEqual(ids(w, "Gid"), ["65534"])
    }

    /// nginx's errors at -t, with the file and line.
    func testUnknownUserOrGroupFailsTheTest() throws {
        vigil = try Vigil(config: "")
        for (main, message) in [("user nosuchuser;", "getpwnam(\"nosuchuser\") failed"),
                                ("user nobody nosuchgroup;", "getgrnam(\"nosuchgroup\") failed"),
                                // Debian has no group named nobody: nginx fails the same way.
                                ("user nobody;", "getgrnam(\"nobody\") failed")] {
            try vigil.write(config: Vigil.config(http: "", main: main))
            let r = vigil.vigil(["-t"])
            XCTAssertEqual(r.status, 1, main)
            XCTAssertTrue(r.stderr.contains("[emerg] \(message) in \(vigil.confPath):4"), r.stderr)
        }
        try vigil.write(config: Vigil.config(http: "", main: "user www-data; user nobody;"))
        XCTAssertTrue(vigil.vigil(["-t"]).stderr.contains("\"user\" directive is duplicate in \(vigil.confPath):4"))
    }

    /// A master that is not root cannot change anyone's identity: `user` is ignored with nginx's warning, and
    /// the workers run as the master's user.
    func testUserIsIgnoredWithAWarningWithoutRoot() throws {
        let port = freePort()
        vigil = try Vigil(config: "")
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(port); return 200 ok; }", main: "user www-data;"))
        chown(vigil.prefix + "/logs", 65534, 65534)
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.path("vigil"), "-p", vigil.prefix, "-c", vigil.confPath]
        let test = runCommand("/usr/bin/setpriv", asNobody + ["-t"])
        XCTAssertEqual(test.status, 0, test.stderr)
        XCTAssertTrue(test.stderr.contains("[warn] the \"user\" directive makes sense only if the master process runs with super-user privileges, ignored in \(vigil.confPath):4"), test.stderr)
        let start = runCommand("/usr/bin/setpriv", asNobody)
        XCTAssertEqual(start.status, 0, start.stderr)
        let master = try XCTUnwrap(vigil.masterPid())
        vigil.track(master: master)
        XCTAssertEqual(ids(master, "Uid"), ["65534"])
        let w = try XCTUnwrap(workers(master, count: 1).first)
        XCTAssertEqual(ids(w, "Uid"), ["65534"])
        XCTAssertEqual(httpGet(port, "/")?.body, "ok")
    }

    /// logrotate's way: move the logs, USR1. The master creates the files anew and gives them to the workers'
    /// user, who reopen them and write there.
    func testReopenedLogsBelongToTheWorkers() throws {
        let port = freePort()
        vigil = try Vigil(config: "")
        try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(port); access_log logs/access.log; return 200 ok; }"))
        let master = try vigil.start()
        _ = workers(master, count: 1)
        XCTAssertEqual(httpGet(port, "/")?.status, 200)
        let logs = vigil.prefix + "/logs"
        for name in ["access.log", "error.log"] { XCTAssertEqual(rename(logs + "/" + name, logs + "/" + name + ".1"), 0) }
        XCTAssertEqual(vigil.vigil(["-s", "reopen"]).status, 0)
        XCTAssertTrue(waitFor(5) { FileManager.default.fileExists(atPath: logs + "/access.log") })
        var st = stat()
        XCTAssertEqual(stat(logs + "/access.log", &st), 0)
        XCTAssertEqual(st.st_uid, 65534)
        XCTAssertEqual(stat(logs + "/error.log", &st), 0)
        XCTAssertEqual(st.st_uid, 65534)
        // The worker may take a moment to act on the signal: a request until one is logged in the new file.
        XCTAssertTrue(waitFor(5) {
            _ = httpGet(port, "/reopened")
            return ((try? String(contentsOfFile: logs + "/access.log", encoding: .utf8)) ?? "").contains("GET /reopened")
        })
        XCTAssertFalse(((try? String(contentsOfFile: logs + "/access.log.1", encoding: .utf8)) ?? "").contains("/reopened"))
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }
}

import Foundation
import TestHarness
import XCTest

/// nginx's tuning directives Vigil accepts without effect are still checked as nginx checks them, and
/// reset_timedout_connection closes a client that timed out with a RST instead of a FIN.
final class TuningDirectiveTests: XCTestCase {
    func testTuningDirectivesAreCheckedAndAccepted() throws {
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            aio threads; directio 4m; output_buffers 2 32k; sendfile_max_chunk 512k; postpone_output 1460;
            open_file_cache max=1000 inactive=20s; open_file_cache_valid 30s; open_file_cache_min_uses 2;
            open_file_cache_errors on; lingering_close always; lingering_time 30s; lingering_timeout 5s;
            msie_padding off; proxy_max_temp_file_size 0; proxy_temp_file_write_size 64k;
            server { listen 127.0.0.1:\(port); location / { return 200 "ok"; } }
            """))
        defer { vigil.cleanup() }
        let ok = vigil.vigil(["-t"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        for (line, message) in [("directio 4q;", "\"directio\" directive invalid value"),
                                ("open_file_cache inactive=20s;", "\"open_file_cache\" must have the \"max\" parameter"),
                                ("aio sometimes;", "invalid value \"sometimes\""),
                                ("proxy_store_access user:x;", "invalid value \"user:x\""),
                                ("reset_timedout_connection maybe;", "it must be \"on\" or \"off\"")] {
            try vigil.write(config: Vigil.config(http: "\(line)\nserver { listen 127.0.0.1:\(port); }"))
            let t = vigil.vigil(["-t"])
            XCTAssertEqual(t.status, 1, line)
            XCTAssertTrue(t.stderr.contains(message), "\(line): \(t.stderr)")
        }
    }

    func testResetTimedoutConnectionSendsARst() throws {
        let plain = freePort(), resetting = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            client_header_timeout 1s;
            server { listen 127.0.0.1:\(plain); location / { return 200; } }
            server { listen 127.0.0.1:\(resetting); reset_timedout_connection on; location / { return 200; } }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        for (port, reset) in [(plain, false), (resetting, true)] {
            let c = try HTTPConnection(port: port)
            try c.send("GET / HTTP/1.1\r\nHost: x\r\n")   // half a head: client_header_timeout ends it
            var byte: UInt8 = 0
            let n = read(c.fd, &byte, 1)
            let error = errno
            c.close()
            if reset {
                XCTAssertEqual(n, -1, "a RST, not an orderly close")
                XCTAssertEqual(error, ECONNRESET)
            } else {
                XCTAssertEqual(n, 0, "an orderly close")
            }
        }
    }
}

/// `listen`'s socket options reach the listening socket, as `ss` reports them.
final class ListenOptionTests: XCTestCase {
    func testListenSocketOptions() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/ss") || FileManager.default.isExecutableFile(atPath: "/bin/ss"),
                          "iproute2 is not installed (scripts/install-deps installs it)")
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port) rcvbuf=64k sndbuf=32k deferred so_keepalive=30s:10s:3 fastopen=16 backlog=77;
                location / { return 200 "ok"; }
            }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let ss = runCommand("/usr/bin/env", ["ss", "-ltnm", "sport = :\(port)"])
        XCTAssertTrue(ss.stdout.contains(" 77 "), "the backlog: \(ss.stdout)")
        // The kernel doubles what it is given, for its own bookkeeping.
        XCTAssertTrue(ss.stdout.contains("rb131072") && ss.stdout.contains("tb65536"), ss.stdout)
        XCTAssertEqual(httpGet(port, "/")?.body, "ok", "deferred accept still answers a client that sends")
        for (params, message) in [("rcvbuf=lots", "invalid rcvbuf \"lots\""), ("so_keepalive=1:2", "invalid so_keepalive value: \"1:2\""),
                                  ("setfib=1", "invalid parameter \"setfib=1\"")] {
            try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(port) \(params); }"))
            let t = vigil.vigil(["-t"])
            XCTAssertEqual(t.status, 1, params)
            XCTAssertTrue(t.stderr.contains(message), "\(params): \(t.stderr)")
        }
    }
}

/// `error_log` in a server or location: the request's errors go there (and only there), at its level, and a
/// USR1 reopens it after logrotate moved it.
final class LevelErrorLogTests: XCTestCase {
    func testServerAndLocationErrorLogs() throws {
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let site = vigil.prefix + "/logs/site.error.log", quiet = vigil.prefix + "/logs/quiet.error.log"
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                root \(vigil.prefix)/html;
                error_log \(site) info;
                location /quiet/ { error_log \(quiet) crit; }
            }
            """))
        _ = try vigil.start()
        XCTAssertEqual(httpGet(port, "/missing.html")?.status, 404)
        XCTAssertEqual(httpGet(port, "/quiet/missing.html")?.status, 404)
        XCTAssertTrue(waitFor(3) { ((try? String(contentsOfFile: site, encoding: .utf8)) ?? "").contains("missing.html\" failed (2: No such file or directory)") })
        XCTAssertFalse(vigil.errorLog().contains("missing.html"), "the main error_log does not get the server's errors")
        XCTAssertEqual((try? String(contentsOfFile: quiet, encoding: .utf8)) ?? "", "", "an error below the location's level is not logged")
        // logrotate moves the file; USR1 makes a new one the workers write to.
        try FileManager.default.moveItem(atPath: site, toPath: site + ".1")
        XCTAssertEqual(kill(try XCTUnwrap(vigil.masterPid()), SIGUSR1), 0)
        XCTAssertTrue(waitFor(3) { FileManager.default.fileExists(atPath: site) })
        XCTAssertEqual(httpGet(port, "/again.html")?.status, 404)
        XCTAssertTrue(waitFor(3) { ((try? String(contentsOfFile: site, encoding: .utf8)) ?? "").contains("again.html") })
    }
}

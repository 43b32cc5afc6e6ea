import Core
import XCTest
@testable import Config
#if canImport(Glibc)
import Glibc
#endif

/// `syslog:` targets of error_log and access_log as nginx's ngx_syslog_process_conf reads them: defaults,
/// every parameter in any order, the address forms, where the targets go in the model (never among the files
/// the master opens), and the edge cases of nginx's checks.
final class SyslogDirectiveTests: XCTestCase {
    func testDefaultsAreNginxs() throws {
        let conf = try XCTUnwrap(assertLoads("error_log syslog:server=127.0.0.1;\nevents {}\n"))
        let target = try XCTUnwrap(conf.errorLogs.first)
        XCTAssertEqual(target.path, "syslog:server=127.0.0.1", "the text as written, never a path under the prefix")
        XCTAssertEqual(target.level, .error)
        XCTAssertFalse(target.isFile)
        let s = try XCTUnwrap(target.syslog)
        XCTAssertEqual(s.server.family, AF_INET)
        XCTAssertEqual([s.facility, s.severity], [23, 6], "local7, info")
        XCTAssertEqual(s.tag, "nginx")
        XCTAssertFalse(s.nohostname)
    }

    func testEveryParameterInAnyOrder() throws {
        let conf = try XCTUnwrap(assertLoads("""
            error_log syslog:nohostname,tag=Edge_32,severity=debug,facility=kern,server=[::1]:600 info;
            events {}
            http {
                log_format f $uri;
                error_log syslog:server=unix:/dev/log,facility=local0;
                access_log syslog:server=127.0.0.1:5514,severity=emerg,facility=authpriv f if=$arg_log;
                access_log logs/a.log f;
            }
            """))
        let main = try XCTUnwrap(conf.errorLogs.first?.syslog)
        XCTAssertEqual(main.server.family, AF_INET6)
        XCTAssertEqual([main.facility, main.severity], [0, 7])
        XCTAssertEqual(main.tag, "Edge_32")
        XCTAssertTrue(main.nohostname)
        XCTAssertEqual(conf.errorLogs.first?.level, .info)

        let http = try XCTUnwrap(conf.http?.settings.log)
        XCTAssertEqual(http.errorLogs.first?.syslog?.server.family, AF_UNIX)
        XCTAssertEqual(http.errorLogs.first?.syslog?.facility, 16)
        let access = try XCTUnwrap(http.accessLogs.first)
        XCTAssertEqual(access.path, "syslog:server=127.0.0.1:5514,severity=emerg,facility=authpriv")
        XCTAssertEqual(access.format, "f")
        XCTAssertEqual(access.condition?.text, "$arg_log")
        XCTAssertEqual([access.syslog?.facility, access.syslog?.severity], [10, 0])
        XCTAssertEqual(conf.accessLogPaths, ["/prefix/logs/a.log"], "the master opens files only")
        XCTAssertEqual(conf.requestErrorLogPaths, [])
    }

    /// nginx's checks at their edges: 32 characters of letters, digits and "_" make a tag (an empty one too),
    /// a parameter's prefix alone is no parameter, and a unix path must fit sun_path.
    func testEdgesOfNginxsChecks() throws {
        XCTAssertNotNil(assertLoads("error_log syslog:server=127.0.0.1,tag=\(String(repeating: "A_9", count: 10))xy;\nevents {}\n"))
        XCTAssertNotNil(assertLoads("error_log syslog:server=127.0.0.1,tag=;\nevents {}\n"))
        XCTAssertNotNil(assertLoads("error_log syslog:server=127.0.0.1,nohostname,nohostname;\nevents {}\n"))
        assertError("error_log syslog:server=127.0.0.1,tag=é;\nevents {}\n",
                    #"syslog "tag" only allows alphanumeric characters and underscore"#, line: 1)
        assertError("error_log syslog:server=127.0.0.1,facility;\nevents {}\n", #"unknown syslog parameter "facility""#, line: 1)
        assertError("error_log syslog:server=127.0.0.1,severity=warn,severity=warn;\nevents {}\n", #"duplicate syslog "severity""#, line: 1)
        assertError("error_log syslog:server=127.0.0.1,facility=user,facility=user;\nevents {}\n", #"duplicate syslog "facility""#, line: 1)
        assertError("error_log syslog:;\nevents {}\n", #"unknown syslog parameter """#, line: 1)
        let long = "unix:/" + String(repeating: "d", count: 107)
        assertError("error_log syslog:server=\(long);\nevents {}\n",
                    "too long path in the unix domain socket in syslog server \"\(long)\"", line: 1)
        assertError("error_log syslog:server=:514;\nevents {}\n", #"no host in syslog server ":514""#, line: 1)
        assertError(inHTTP("access_log syslog:server=127.0.0.1 combined gzip;"), "logs to syslog cannot be buffered", line: 3)
        assertError(inHTTP("access_log syslog:server=127.0.0.1 combined bogus=1;"), #"invalid parameter "bogus=1""#, line: 3)
    }
}

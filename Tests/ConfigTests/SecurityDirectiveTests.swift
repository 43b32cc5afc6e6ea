import XCTest
@testable import Config
#if canImport(Glibc)
import Glibc
#endif

/// `user`, `working_directory`, `worker_rlimit_core`, `check_status_admin`, and what the master prepares for
/// unprivileged workers. The tests run as root (as the suite does), where `user` is resolved.
final class SecurityDirectiveTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(geteuid() == 0, "`user` is resolved only when the master is root")
    }

    func testUserDefaultsToNobodyInNogroup() throws {
        let conf = try XCTUnwrap(assertLoads("events {}\n"))
        XCTAssertEqual(conf.workerUser, WorkerUser(name: "nobody", uid: 65534, gid: 65534))
    }

    func testUserWithAndWithoutGroup() throws {
        XCTAssertEqual(assertLoads("user www-data;\nevents {}\n")?.workerUser, WorkerUser(name: "www-data", uid: 33, gid: 33))
        XCTAssertEqual(assertLoads("user www-data nogroup;\nevents {}\n")?.workerUser, WorkerUser(name: "www-data", uid: 33, gid: 65534))
        XCTAssertEqual(assertLoads("events {}\n", globalDirectives: "user root;")?.workerUser, WorkerUser(name: "root", uid: 0, gid: 0))
    }

    func testUserErrorsAreNginxs() {
        assertError("events {}\nuser nosuchuser;\n", #"getpwnam("nosuchuser") failed"#, line: 2)
        assertError("user nobody nosuchgroup;\nevents {}\n", #"getgrnam("nosuchgroup") failed"#, line: 1)
        assertError("user nobody;\nevents {}\n", #"getgrnam("nobody") failed"#, line: 1)
        assertError("user a;\nuser b;\nevents {}\n", #"getpwnam("a") failed"#, line: 1)
        assertError("user www-data;\nuser nobody nogroup;\nevents {}\n", #""user" directive is duplicate"#, line: 2)
        assertError("user a b c;\nevents {}\n", #"invalid number of arguments in "user" directive"#, line: 1)
        assertError("events {}\nhttp { user nobody; }\n", #""user" directive is not allowed here"#, line: 2)
    }

    func testWorkingDirectoryAndCoreLimit() throws {
        let conf = try XCTUnwrap(assertLoads("working_directory cores;\nworker_rlimit_core 500m;\nevents {}\n"))
        XCTAssertEqual(conf.workingDirectory, "/prefix/cores")
        XCTAssertEqual(conf.workerRlimitCore, 500 << 20)
        assertError("worker_rlimit_core 5x;\nevents {}\n", #""worker_rlimit_core" directive invalid value"#, line: 1)
        assertError("working_directory a;\nworking_directory b;\nevents {}\n", #""working_directory" directive is duplicate"#, line: 2)
        let defaults = try XCTUnwrap(assertLoads("events {}\n"))
        XCTAssertNil(defaults.workingDirectory)
        XCTAssertNil(defaults.workerRlimitCore)
    }

    /// Every level's access logs and temp directory, absolute and each once, for the master to open and make.
    func testFilesTheMasterPreparesForWorkers() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            client_body_temp_path body;
            server { listen 80; access_log logs/a.log; location /x { access_log /var/log/b.log; access_log logs/a.log; }
                     location /y { access_log off; client_body_temp_path /tmp/other; } }
            server { listen 81; }
            """)))
        XCTAssertEqual(conf.accessLogPaths, ["/prefix/logs/access.log", "/prefix/logs/a.log", "/var/log/b.log"])
        XCTAssertEqual(conf.clientBodyTempPaths, ["/prefix/body", "/tmp/other"])
    }

    func testStatusPageIsReadOnlyUnlessItsLocationSaysSo() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("""
            check_status_admin on;
            server { listen 80; location /a { check_status; } location /b { check_status; check_status_admin off; } }
            """)))
        let locations = try XCTUnwrap(conf.http?.servers.first?.locations)
        XCTAssertEqual(locations.map(\.settings.status.admin), [true, false])
        XCTAssertEqual(assertLoads(inHTTP("server { listen 80; location / { check_status; } }"))?.http?.servers.first?.locations.first?.settings.status.admin,
                       false)
        assertError(inHTTP("check_status_admin yes;"), #"invalid value "yes" in "check_status_admin" directive, it must be "on" or "off""#, line: 3)
    }

    /// Writes open to every client are a warning at the status location, with its file and line; a `deny`
    /// anywhere in its rules silences it (`allow` alone lets everyone in).
    func testOpenAdminPageWarns() throws {
        let open = try XCTUnwrap(assertLoads(inHTTP("""
            server { listen 80;
                location /status { check_status; check_status_admin on; }
                location /allow-only { check_status; check_status_admin on; allow 10.0.0.0/8; }
                location /closed { check_status; check_status_admin on; allow 127.0.0.1; deny all; }
                location /read-only { check_status; }
            }
            """)))
        XCTAssertEqual(open.warnings.map(\.description), [4, 5].map {
            "\"check_status_admin\" is on and no \"deny\" limits who may use it: any client can change peer states in \(confPath):\($0)"
        })
        XCTAssertEqual(open.warnings.map(\.level), [.warn, .warn])
        let inherited = try XCTUnwrap(assertLoads(inHTTP("deny all; check_status_admin on; server { listen 80; location /s { check_status; } }")))
        XCTAssertEqual(inherited.warnings, [])
    }
}

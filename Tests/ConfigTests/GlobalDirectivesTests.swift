import XCTest
@testable import Config

/// `-g` directives: parsed before the file, errors are located `in command line` (no line number),
/// and single-valued main directives set there count as already set for the file.
final class GlobalDirectivesTests: XCTestCase {
    private func gError(_ g: String, conf: String = "events {}\n",
                        file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        expectError(conf, globalDirectives: g, file: file, line: line)
    }

    func testAccepted() throws {
        let conf = try XCTUnwrap(assertLoads("events {}\n", globalDirectives: "daemon off; master_process on;"))
        XCTAssertFalse(conf.daemon)
        XCTAssertTrue(conf.masterProcess)
        let defaults = try XCTUnwrap(assertLoads("events {}\n"))
        XCTAssertTrue(defaults.daemon)
        XCTAssertTrue(defaults.masterProcess)
        // The command line is not a configuration file: `-T` does not print it.
        XCTAssertFalse(conf.dump().contains("command line"))
        XCTAssertEqual(conf.dump(), "# configuration file \(confPath):\nevents {}\n\n")
    }

    func testSingleProcessModeIsRefused() {
        XCTAssertEqual(gError("master_process off;")?.description,
                       #""master_process off" is not supported by vigil, which always runs a master and workers in command line"#)
    }

    func testEmptyParameterStringIsIgnored() {
        XCTAssertNotNil(assertLoads("events {}\n", globalDirectives: ""))
    }

    func testMissingSemicolon() {
        let e = gError("daemon off")
        XCTAssertEqual(e?.description, #"unexpected end of parameter, expecting ";" in command line"#)
        XCTAssertEqual(e?.file, "command line")
        XCTAssertEqual(e?.level, .emerg)
        XCTAssertEqual(gError("daemon off; pid x")?.description, #"unexpected end of parameter, expecting ";" in command line"#)
    }

    func testUnknownDirective() {
        XCTAssertEqual(gError("frobnicate on;")?.description, #"unknown directive "frobnicate" in command line"#)
    }

    func testDirectiveNotAllowedInMain() {
        XCTAssertEqual(gError("listen 80;")?.description, #""listen" directive is not allowed here in command line"#)
    }

    func testBlockDirective() {
        XCTAssertEqual(gError("events {}")?.description, "block directives are not supported in -g option in command line")
    }

    func testStrayTokens() {
        XCTAssertEqual(gError("}")?.description, #"unexpected "}" in command line"#)
        XCTAssertEqual(gError(";")?.description, #"unexpected ";" in command line"#)
        XCTAssertEqual(gError("daemon \"off\"x;")?.description, #"unexpected "x" in command line"#)
    }

    func testHandlerErrors() {
        XCTAssertEqual(gError("daemon maybe;")?.description,
                       #"invalid value "maybe" in "daemon" directive, it must be "on" or "off" in command line"#)
        XCTAssertEqual(gError("daemon;")?.description, #"invalid number of arguments in "daemon" directive in command line"#)
        XCTAssertEqual(gError("daemon off; daemon off;")?.description, #""daemon" directive is duplicate in command line"#)
    }

    func testDaemonInBothCommandLineAndFile() {
        // nginx applies -g first, so the file's directive is the duplicate, located in the file.
        assertError("daemon on;\nevents {}\n", #""daemon" directive is duplicate"#, line: 1, globalDirectives: "daemon off;")
        assertError("events {}\n\nmaster_process on;\n", #""master_process" directive is duplicate"#, line: 3,
                    globalDirectives: "master_process on;")
        assertError("worker_processes 2;\nevents {}\n", #""worker_processes" directive is duplicate"#, line: 1,
                    globalDirectives: "worker_processes 2;")
        assertError("events {}\npid /run/a.pid;\n", #""pid" directive is duplicate"#, line: 2, globalDirectives: "pid /run/b.pid;")
    }

    func testCommandLineValuesApply() throws {
        let conf = try XCTUnwrap(assertLoads("events {}\n", globalDirectives: "worker_processes 3; pid run/v.pid; env TZ;"))
        XCTAssertEqual(conf.workerProcesses, 3)
        XCTAssertEqual(conf.pidPath, "/prefix/run/v.pid")
        XCTAssertEqual(conf.env, ["TZ"])
    }

    func testErrorsInTheFileStillNameTheFile() {
        assertError("events {}\nbogus;\n", #"unknown directive "bogus""#, line: 2, globalDirectives: "daemon off;")
    }
}

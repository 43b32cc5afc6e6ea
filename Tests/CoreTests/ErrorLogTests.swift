import XCTest
import CShim
@testable import Core
#if canImport(Glibc)
import Glibc
#endif

/// The error log on real files: nginx's line format, the level filter, reopening after logrotate moved the
/// file, and a failed open.
final class ErrorLogTests: XCTestCase {
    private var linePrefix: String { "[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}" }

    func testLinesAtOrAboveTheLevelInNginxsFormat() throws {
        let dir = try temporaryDirectory(self)
        let path = dir + "/error.log"
        let log = ErrorLog()
        try log.open([ErrorLogTarget(path: path, level: .warn)])
        XCTAssertNotNil(log.firstFileDescriptor)
        XCTAssertFalse(log.writesToStderr)
        XCTAssertTrue(log.enabled(.error))
        XCTAssertTrue(log.enabled(.warn))
        XCTAssertFalse(log.enabled(.notice))
        XCTAssertFalse(log.enabled(.info))

        log.error("connect() failed (111: Connection refused) while connecting to upstream")
        var evaluated = false
        log.info({ evaluated = true; return "not written" }())
        XCTAssertFalse(evaluated, "a message below the level is never made")
        log.warn("a warning")
        log.debug("not written either")

        let lines = contents(path).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(lines.count, 3, contents(path))   // two lines and the final newline's empty tail
        let ids = "\(getpid())#\(vigil_gettid())"
        XCTAssertTrue(fullyMatches(lines[0], linePrefix + " \\[error\\] " + ids
                                   + ": connect\\(\\) failed \\(111: Connection refused\\) while connecting to upstream"), lines[0])
        XCTAssertTrue(fullyMatches(lines[1], linePrefix + " \\[warn\\] " + ids + ": a warning"), lines[1])
        XCTAssertEqual(lines[2], "")
        XCTAssertFalse(contents(path).contains("not written"))
    }

    func testAppendsToAnExistingFile() throws {
        let dir = try temporaryDirectory(self)
        let path = dir + "/error.log"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("old line\n".utf8)))
        let log = ErrorLog()
        try log.open([ErrorLogTarget(path: path, level: .error)])
        log.alert("new line")
        let text = contents(path)
        XCTAssertTrue(text.hasPrefix("old line\n"), text)
        XCTAssertTrue(text.hasSuffix(": new line\n"), text)
    }

    func testReopenAfterTheFileWasMovedWritesToANewFile() throws {
        let dir = try temporaryDirectory(self)
        let path = dir + "/error.log", rotated = dir + "/error.log.1"
        let log = ErrorLog()
        try log.open([ErrorLogTarget(path: path, level: .warn)])
        log.error("before rotation")
        XCTAssertEqual(rename(path, rotated), 0)
        log.error("after the move, before reopen")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        log.reopen()
        log.error("after reopen")
        log.info("below the level")

        let old = contents(rotated), new = contents(path)
        XCTAssertTrue(old.contains(": before rotation\n"), old)
        XCTAssertTrue(old.contains(": after the move, before reopen\n"), "the open descriptor follows the moved file")
        XCTAssertFalse(old.contains("after reopen"))
        XCTAssertTrue(fullyMatches(new, linePrefix + " \\[error\\] [0-9]+#[0-9]+: after reopen\n"), new)
    }

    func testAFailedOpenIsWordedLikeNginxAndKeepsTheOldSinks() throws {
        let dir = try temporaryDirectory(self)
        let path = dir + "/error.log", missing = dir + "/no/such/dir/error.log"
        let log = ErrorLog()
        try log.open([ErrorLogTarget(path: path, level: .error)])
        XCTAssertThrowsError(try log.open([ErrorLogTarget(path: dir + "/other.log", level: .error),
                                            ErrorLogTarget(path: missing, level: .error)])) { e in
            XCTAssertEqual("\(e)", "open() \"\(missing)\" failed (2: No such file or directory)")
            XCTAssertEqual((e as? OpenFailure)?.errno, ENOENT)
        }
        log.error("still here")
        XCTAssertTrue(contents(path).hasSuffix(": still here\n"), "the sinks before the failed open still write")
        XCTAssertFalse(contents(dir + "/other.log").contains("still here"), "the half-opened set was dropped")
    }

    func testStderrTargetAndTwoSinksAtDifferentLevels() throws {
        let dir = try temporaryDirectory(self)
        let quiet = dir + "/quiet.log", chatty = dir + "/chatty.log"
        let log = ErrorLog()
        try log.open([ErrorLogTarget(path: quiet, level: .crit), ErrorLogTarget(path: chatty, level: .info)])
        log.error("an error")
        log.emerg("an emergency")
        XCTAssertFalse(contents(quiet).contains("an error"))
        XCTAssertTrue(contents(quiet).contains("[emerg]"))
        XCTAssertTrue(contents(chatty).contains("[error]"))
        XCTAssertTrue(contents(chatty).contains("[emerg]"))
        XCTAssertTrue(log.enabled(.info), "enabled if any sink takes the level")

        let both = ErrorLog()
        try both.open([ErrorLogTarget(path: "stderr", level: .error)])
        XCTAssertTrue(both.writesToStderr)
        XCTAssertNil(both.firstFileDescriptor, "stderr is not a file target")
    }

    func testWriteAllReportsTheErrno() throws {
        let dir = try temporaryDirectory(self)
        let fd = open(dir + "/w", O_WRONLY | O_CREAT, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(writeAll(fd, "abc"), 0)
        close(fd)
        XCTAssertEqual(contents(dir + "/w"), "abc")
        XCTAssertEqual(writeAll(fd, "lost"), EBADF)
    }
}

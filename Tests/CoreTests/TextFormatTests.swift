import XCTest
@testable import Core
#if canImport(Glibc)
import Glibc
#endif

/// The text Core makes for logs and headers: errno wording, time formats, JSON escaping, log levels.
final class TextFormatTests: XCTestCase {
    func testErrnoTextIsNginxsWording() {
        XCTAssertEqual(Errno.text(ECONNREFUSED), "111: Connection refused")
        XCTAssertEqual(Errno.text(ENOENT), "2: No such file or directory")
        XCTAssertEqual(Errno.text(ETIMEDOUT), "110: Connection timed out")
    }

    func testSystemErrorAndOpenFailureDescriptions() {
        XCTAssertEqual(SystemError("connect()", errno: ECONNREFUSED).description, "connect() failed (111: Connection refused)")
        XCTAssertEqual(SystemError("bind() to 127.0.0.1:80", errno: EADDRINUSE).description,
                       "bind() to 127.0.0.1:80 failed (98: Address already in use)")
        XCTAssertEqual(OpenFailure(path: "/etc/x.conf", errno: EACCES).description,
                       "open() \"/etc/x.conf\" failed (13: Permission denied)")
    }

    func testSystemErrorTakesErrnoOfTheFailedCall() {
        XCTAssertEqual(close(-1), -1)
        let e = SystemError("close()")
        XCTAssertEqual(e.errno, EBADF)
        XCTAssertEqual(e.description, "close() failed (9: Bad file descriptor)")
    }

    func testHTTPDateOfFixedMoments() {
        XCTAssertEqual(Clock.httpDate(at: 0), "Thu, 01 Jan 1970 00:00:00 GMT")
        XCTAssertEqual(Clock.httpDate(at: 784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT", "RFC 9110's example")
        XCTAssertEqual(Clock.httpDate(at: 1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT")
        XCTAssertEqual(Clock.httpDate(at: 951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT", "a leap day")
        XCTAssertEqual(Clock.httpDate(at: 2_147_483_647 + 1), "Tue, 19 Jan 2038 03:14:08 GMT", "past 32-bit time_t")
    }

    /// The three forms HTTP allows, the inverse of httpDate(at:) across leap years and past 2038; anything else nil.
    func testParseHTTPDate() {
        XCTAssertEqual(Clock.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784_111_777)
        XCTAssertEqual(Clock.parseHTTPDate("Sunday, 06-Nov-94 08:49:37 GMT"), 784_111_777)
        XCTAssertEqual(Clock.parseHTTPDate("Sun Nov  6 08:49:37 1994"), 784_111_777)
        for t in [0, 68_169_600, 951_782_400, 1_700_000_000, 2_147_483_648, 6_517_520_543] {
            XCTAssertEqual(Clock.parseHTTPDate(Clock.httpDate(at: t)), t, Clock.httpDate(at: t))
        }
        for bad in ["", "yesterday", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                    "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1969 08:49:37 GMT"] {
            XCTAssertNil(Clock.parseHTTPDate(bad), bad)
        }
    }

    func testHTTPDateOfNowIsTodaysDate() {
        let before = time(nil)
        let now = Clock.httpDate()
        let after = time(nil)
        XCTAssertTrue([Clock.httpDate(at: Int(before)), Clock.httpDate(at: Int(after))].contains(now), now)
        XCTAssertTrue(fullyMatches(now, "(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"), now)
    }

    func testDurationsAndMsec() {
        XCTAssertEqual(Clock.seconds(fromMicroseconds: 0), "0.000")
        XCTAssertEqual(Clock.seconds(fromMicroseconds: 999), "0.000", "below a millisecond")
        XCTAssertEqual(Clock.seconds(fromMicroseconds: 12_345), "0.012")
        XCTAssertEqual(Clock.seconds(fromMicroseconds: 1_500_000), "1.500")
        XCTAssertEqual(Clock.seconds(fromMicroseconds: 61_234_567), "61.234")
        XCTAssertEqual(Clock.msec(1_700_000_000_123), "1700000000.123")
        XCTAssertEqual(Clock.msec(5), "0.005")
        XCTAssertEqual(Clock.msec(1_000), "1.000")
    }

    func testLocalTimeFormats() {
        XCTAssertTrue(fullyMatches(Clock.errorLogTime(), "[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"), Clock.errorLogTime())
        XCTAssertTrue(fullyMatches(Clock.timeLocal(), "[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}"), Clock.timeLocal())
        XCTAssertTrue(fullyMatches(Clock.iso8601(), "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}"), Clock.iso8601())
    }

    func testLeftPadded() {
        XCTAssertEqual("7".leftPadded(3), "007")
        XCTAssertEqual("123".leftPadded(3), "123")
        XCTAssertEqual("12345".leftPadded(3), "12345")
        XCTAssertEqual("".leftPadded(2), "00")
    }

    func testURIEscapingAsNginxDoes() {
        XCTAssertEqual(URIText.escaped("/a b/c?d#e%f", .uri), "/a%20b/c%3Fd%23e%25f")
        XCTAssertEqual(URIText.escaped("/\"<>\\^`{|}\u{7F}\u{1}", .uri), "/%22%3C%3E%5C%5E%60%7B%7C%7D%7F%01")
        XCTAssertEqual(URIText.escaped("/caf\u{e9}", .uri), "/caf%C3%A9")
        XCTAssertEqual(URIText.escaped("/a-._~!$&'()*+,;=:@[]", .uri), "/a-._~!$&'()*+,;=:@[]")
        XCTAssertEqual(URIText.escaped("/a-._~!$&'()*+,;=:@[]", .args), "/a-._~!$%26'()*%2B,%3B=:@[]")
        XCTAssertEqual(URIText.escaped("/% ?", .args), "/%25%20%3F")
        XCTAssertEqual(URIText.escaped("a-._~/ b", .component), "a-._~%2F%20b")
    }

    func testJSONEscaping() {
        XCTAssertEqual(JSONText.escape("plain text"), "plain text")
        XCTAssertEqual(JSONText.escape("a\"b\\c"), "a\\\"b\\\\c")
        XCTAssertEqual(JSONText.escape("l1\nl2\r\tx"), "l1\\nl2\\r\\tx")
        XCTAssertEqual(JSONText.escape("\u{0}\u{1}\u{1b}\u{1f}\u{8}\u{c}"), "\\u0000\\u0001\\u001B\\u001F\\b\\f")
        XCTAssertEqual(JSONText.escape("é€😀/"), "é€😀/", "non-ASCII and / stay as they are")
        XCTAssertEqual(JSONText.quoted("say \"hi\""), "\"say \\\"hi\\\"\"")
        XCTAssertEqual(JSONText.quoted(""), "\"\"")
    }

    func testLogLevelsOrderAndNames() {
        XCTAssertLessThan(LogLevel.emerg, LogLevel.error)
        XCTAssertLessThan(LogLevel.error, LogLevel.warn)
        XCTAssertLessThan(LogLevel.info, LogLevel.debug)
        for l in LogLevel.allCases { XCTAssertEqual(LogLevel(name: l.name), l) }
        XCTAssertNil(LogLevel(name: "verbose"))
        XCTAssertEqual(LogLevel(name: "crit"), .crit)
    }

    func testVersionStrings() {
        XCTAssertEqual(Version.serverToken, "vigil/" + Version.number)
        XCTAssertEqual(Version.serverName, "vigil")
    }
}

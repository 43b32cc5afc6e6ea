import XCTest
import CShim
@testable import Core
#if canImport(Glibc)
import Glibc
#endif

/// The error log's syslog targets against a UDP socket of the test's own: nginx's datagram for each level, and
/// what a server that is not there costs (one report a minute, the line, and nothing else).
final class SyslogTests: XCTestCase {
    /// A bound UDP socket on 127.0.0.1 and its port; reads wait at most a second.
    private func udpSocket(port: UInt16 = 0) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw NSError(domain: "bind", code: Int(errno)) }
        addTeardownBlock { close(fd) }
        return (fd, UInt16(bigEndian: addr.sin_port))
    }

    private func datagram(_ fd: Int32) -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n < 0 ? nil : String(decoding: buf[0..<n], as: UTF8.self)
    }

    private func target(_ port: UInt16, level: LogLevel, facility: Int = 23, nohostname: Bool = false) -> ErrorLogTarget {
        let s = SyslogTarget(server: SocketAddress(host: "127.0.0.1", port: port, isIPv6: false)!, facility: facility, severity: 6,
                             tag: "nginx", nohostname: nohostname)
        return ErrorLogTarget(path: "syslog:server=127.0.0.1:\(port)", level: level, syslog: s)
    }

    func testEachLineGoesAtItsLevelAfterNginxsHeader() throws {
        let dir = try temporaryDirectory(self)
        let server = try udpSocket()
        let log = ErrorLog()
        try log.open([target(server.port, level: .warn), ErrorLogTarget(path: dir + "/error.log", level: .info)])
        XCTAssertEqual(log.filePaths, [dir + "/error.log"], "a syslog server is no file to hand over")
        XCTAssertEqual(log.firstFileDescriptor.map { $0 > 2 }, true)

        log.error("an error")
        log.info("below the server's level")
        log.emerg("an emergency")
        let file = contents(dir + "/error.log").split(separator: "\n").map(String.init)
        XCTAssertEqual(file.count, 3)
        let host = NSRegularExpression.escapedPattern(for: SyslogPeer.hostname)
        let time = "[A-Z][a-z]{2} [ 1-3][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}"
        // local7 (23 × 8) plus the level's severity: error is 3, emerg 0; the error log's line without its newline.
        let first = try XCTUnwrap(datagram(server.fd))
        XCTAssertTrue(fullyMatches(first, "<187>" + time + " " + host + " nginx: " + NSRegularExpression.escapedPattern(for: file[0])), first)
        let second = try XCTUnwrap(datagram(server.fd))
        XCTAssertTrue(fullyMatches(second, "<184>" + time + " " + host + " nginx: " + NSRegularExpression.escapedPattern(for: file[2])), second)
        XCTAssertTrue(fullyMatches(Clock.syslogTime(), time))
    }

    /// A port nobody listens on: the first line goes out, the ICMP answer makes the next send fail, which is
    /// reported once, in the main log, and closes the socket; the line after connects again and arrives once a
    /// server is back.
    func testAFailedSendIsReportedOnceAndTheNextLineConnectsAgain() throws {
        let dir = try temporaryDirectory(self)
        let main = ErrorLog()
        try main.open([ErrorLogTarget(path: dir + "/error.log", level: .info)])
        let gone = try udpSocket()
        close(gone.fd)
        let log = ErrorLog(failuresTo: main)
        try log.open([target(gone.port, level: .info, facility: 1, nohostname: true)])
        for i in 0..<20 { log.error("line \(i)") }
        let text = contents(dir + "/error.log")
        XCTAssertEqual(text.components(separatedBy: "] ").count - 1, 1, text)
        XCTAssertTrue(text.contains(" [error] \(getpid())#\(vigil_gettid()): send() failed (111: Connection refused)\n"), text)

        let back = try udpSocket(port: gone.port)
        // Whatever the last of the 20 did, the second of these goes out on a fresh socket.
        log.error("after the server came back")
        log.error("after the server came back")
        let line = try XCTUnwrap(datagram(back.fd))
        XCTAssertTrue(line.hasPrefix("<11>"), line)
        XCTAssertTrue(line.hasSuffix(": after the server came back"), line)
        XCTAssertTrue(fullyMatches(String(line.prefix(27)), "<11>[A-Z][a-z]{2} [ 1-3][0-9] [0-9:]{8} nginx: "), "nohostname: the tag follows the time")
    }

    func testAUnixSocketThatIsNotThereIsAnAlertOnce() throws {
        let dir = try temporaryDirectory(self)
        let peer = SyslogPeer(SyslogTarget(server: SocketAddress(host: "unix:" + dir + "/none.sock", port: 0, isIPv6: false)!,
                                           facility: 23, severity: 6, tag: "nginx", nohostname: false))
        var line = "x"
        let failure = try XCTUnwrap(peer.send(&line))
        XCTAssertEqual("\(failure)", "connect() failed (2: No such file or directory)")
        XCTAssertEqual(SyslogPeer.level(of: failure), .alert)
        XCTAssertNil(peer.send(&line), "reported at most once a minute")
        XCTAssertNil(SyslogPeer.level(of: SystemError("send()", errno: EAGAIN)), "a full buffer loses the line silently, as in nginx")
        XCTAssertEqual(SyslogPeer.level(of: SystemError("send()", errno: ECONNREFUSED)), .error)
    }
}

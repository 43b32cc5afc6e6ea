import XCTest
@testable import Checks
@testable import Config
import ShmTable

/// ssl_hello, mysql and ajp replies, the reference module's conformance vectors P2-P11.
/// P1 and P10 (bytes sent) are in ProbeTests.swift. P12-P16 need sockets or several workers (IntegrationTests).
final class OtherProbeTests: XCTestCase {
    // MARK: ssl_hello

    /// A TLS 1.2 ServerHello as a server would send it: record header + 61-byte handshake.
    let serverHello: [UInt8] = hex("16 03 03 00 3d 02 00 00 39 03 03")
        + [UInt8](repeating: 0x5a, count: 32) + hex("00 c0 2f 00 00 11 ff 01 00 01 00 00 0b 00 04 03 00 01 02 00 23 00 00")

    func testP2ServerHelloIsUp() {
        XCTAssertEqual(serverHello.count, 66)
        XCTAssertEqual(judge(.ssl_hello, serverHello), .up)
        XCTAssertEqual(judge(.ssl_hello, serverHello, eof: true), .up)
        // Followed by Certificate etc.: still only the first bytes count.
        XCTAssertEqual(judge(.ssl_hello, serverHello + hex("16 03 03 0b 00 0b") + [UInt8](repeating: 1, count: 100)), .up)
    }

    /// nothing is judged before 47 bytes (the LP64 size of the reference's packed structure).
    func testSSLHelloWaitsFor47Bytes() {
        for k in 0..<47 {
            XCTAssertEqual(judge(.ssl_hello, Array(serverHello[0..<k])), .needMore, "prefix \(k)")
        }
        XCTAssertEqual(judge(.ssl_hello, Array(serverHello[0..<47])), .up)
    }

    func testP3AlertThenClose() {
        let alert = hex("15 03 03 00 02 02 28")
        XCTAssertEqual(judge(.ssl_hello, alert), .needMore)
        assertDown(judge(.ssl_hello, alert, eof: true), .closed, "a silent F, not a protocol error")
    }

    func testP4NotAServerHello() {
        var reply = serverHello
        reply[5] = 0x0b
        let message = "check protocol ssl_hello error with peer: \(testPeer) "
        assertDown(judge(.ssl_hello, reply), .badSSLHello, message: message)
        assertDown(judge(.ssl_hello, reply, eof: true), .badSSLHello, message: message)
        // Byte 0 other than handshake (an alert padded to 47 bytes, or HTTP) is the same protocol error.
        var alert = serverHello
        alert[0] = 0x15
        assertDown(judge(.ssl_hello, alert), .badSSLHello, message: message)
        assertDown(judge(.ssl_hello, bytes("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")), .badSSLHello)
    }

    func testP5FortySixBytesThenClose() {
        let short = Array(serverHello[0..<46])
        XCTAssertEqual(judge(.ssl_hello, short), .needMore)
        assertDown(judge(.ssl_hello, short, eof: true), .closed)
    }

    func testP6OnlyBytes0And5Matter() {
        var blob = [UInt8](repeating: 0, count: 47)
        blob[0] = 0x16
        blob[5] = 0x02
        XCTAssertEqual(judge(.ssl_hello, blob), .up)
        XCTAssertEqual(judge(.ssl_hello, blob, eof: true), .up)
        blob = [UInt8](repeating: 0xee, count: 47)
        blob[0] = 0x16
        blob[5] = 0x02
        XCTAssertEqual(judge(.ssl_hello, blob), .up)
    }

    // MARK: mysql

    /// A MySQL 5.7 initial handshake: length 0x4a, sequence 0, protocol 10, "5.7.…".
    let greeting: [UInt8] = hex("4a 00 00 00 0a 35 2e 37 2e 33 33 00 08 00 00 00") + [UInt8](repeating: 0x41, count: 62)

    func testP7GreetingIsUp() {
        XCTAssertEqual(judge(.mysql, greeting), .up)
        XCTAssertEqual(judge(.mysql, greeting, eof: true), .up)
        XCTAssertEqual(judge(.mysql, Array(greeting[0..<5])), .up, "5 bytes are enough")
        for k in 0..<5 { XCTAssertEqual(judge(.mysql, Array(greeting[0..<k])), .needMore, "prefix \(k)") }
    }

    /// P8: an ERR packet ("Host is not allowed to connect", 1130) has sequence 0 too, so it counts as alive.
    /// Reference behaviour reproduced (observed); the spec lists it as a limitation, not a Vigil decision.
    func testP8ErrPacketWithSequenceZeroIsUp() {
        let err = hex("44 00 00 00 ff 6a 04") + bytes("Host '10.0.0.9' is not allowed to connect to this MySQL server")
        XCTAssertEqual(judge(.mysql, err), .up)
        XCTAssertEqual(judge(.mysql, err, eof: true), .up)
        // "Too many connections" (1040) likewise.
        XCTAssertEqual(judge(.mysql, hex("17 00 00 00 ff 10 04") + bytes("Too many connections")), .up)
    }

    func testP9SequenceOneIsDown() {
        var reply = greeting
        reply[3] = 0x01
        let message = "check protocol mysql error with peer: \(testPeer) "
        assertDown(judge(.mysql, reply), .badMysqlGreeting, message: message)
        assertDown(judge(.mysql, reply, eof: true), .badMysqlGreeting, message: message)
        // 4 bytes then close.
        let four = Array(greeting[0..<4])
        XCTAssertEqual(judge(.mysql, four), .needMore)
        assertDown(judge(.mysql, four, eof: true), .closed)
        assertDown(judge(.mysql, [], eof: true), .closed)
    }

    /// the protocol version byte is not checked; only byte 3 matters.
    func testMySQLOnlySequenceByteMatters() {
        XCTAssertEqual(judge(.mysql, hex("00 00 00 00 00")), .up)
        XCTAssertEqual(judge(.mysql, hex("ff ff ff 00 ff")), .up)
        XCTAssertEqual(judge(.mysql, hex("4a 00 00 ff 0a")).reason, .badMysqlGreeting)
    }

    // MARK: ajp

    let cpong = hex("41 42 00 01 09")

    func testP11CPongIsUp() {
        XCTAssertEqual(judge(.ajp, cpong), .up)
        XCTAssertEqual(judge(.ajp, cpong, eof: true), .up)
        XCTAssertEqual(judge(.ajp, cpong + hex("41 42 00 01 09 00 ff")), .up, "trailing bytes are ignored")
    }

    func testP11WrongCPongIsDown() {
        let message = "check protocol ajp error with peer: \(testPeer) "
        assertDown(judge(.ajp, hex("41 42 00 02 09")), .badAJPReply, message: message)
        assertDown(judge(.ajp, hex("41 42 00 02 09"), eof: true), .badAJPReply, message: message)
        assertDown(judge(.ajp, hex("12 34 00 01 0a")), .badAJPReply, message: message, "an echoed CPING")
        assertDown(judge(.ajp, hex("41 42 00 01 08 09")), .badAJPReply)
    }

    func testP11FourBytesThenClose() {
        for k in 0..<5 {
            XCTAssertEqual(judge(.ajp, Array(cpong[0..<k])), .needMore, "prefix \(k)")
            assertDown(judge(.ajp, Array(cpong[0..<k]), eof: true), .closed, "prefix \(k) + EOF")
        }
        // Nothing is judged before 5 bytes, even when the first byte is already wrong.
        XCTAssertEqual(judge(.ajp, hex("00 00 00 00")), .needMore)
    }

    // MARK: tcp

    /// the tcp verdict is the engine's peek; once it has connected, evaluate has nothing to add.
    func testTCPIsUpWhateverTheBytes() {
        for eof in [false, true] {
            XCTAssertEqual(judge(.tcp, [], eof: eof), .up)
            XCTAssertEqual(judge(.tcp, bytes("garbage"), eof: eof), .up)
        }
    }
}

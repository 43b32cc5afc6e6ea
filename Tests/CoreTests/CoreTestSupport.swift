import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A connected pair of unix stream sockets, closed when the test ends. `nonBlocking` applies to both ends.
func socketPair(_ test: XCTestCase, nonBlocking: Bool = true, file: StaticString = #filePath, line: UInt = #line) -> (a: Int32, b: Int32) {
    var fds: [Int32] = [-1, -1]
    XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds), 0,
                   "socketpair: \(String(cString: strerror(errno)))", file: file, line: line)
    if nonBlocking {
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    }
    let (a, b) = (fds[0], fds[1])
    test.addTeardownBlock {
        close(a)
        close(b)
    }
    return (a, b)
}

/// Writes all of `bytes` to a blocking or non-blocking socket that has room for them.
func sendAll(_ fd: Int32, _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else {
            XCTFail("send failed: \(String(cString: strerror(errno)))", file: file, line: line)
            return
        }
        off += n
    }
}

func sendAll(_ fd: Int32, _ s: String, file: StaticString = #filePath, line: UInt = #line) {
    sendAll(fd, Array(s.utf8), file: file, line: line)
}

/// Everything readable on a non-blocking socket right now (stops at EAGAIN or EOF).
func drain(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return out }
        out += buf[0..<n]
    }
}

/// A fresh directory under the system temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    var template = Array((NSTemporaryDirectory() + "/vigil-coretests.XXXXXX").utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw NSError(domain: "mkdtemp", code: Int(errno))
    }
    let path = String(cString: p)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

func contents(_ path: String) -> String {
    (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}

/// Whether `s` matches the regular expression `pattern` as a whole.
func fullyMatches(_ s: String, _ pattern: String) -> Bool {
    s.range(of: "^" + pattern + "$", options: .regularExpression) != nil
}

import XCTest
import Foundation
@testable import Config
#if canImport(Glibc)
import Glibc
#endif

/// The file name every in-memory configuration pretends to be; errors end in `in /conf/vigil.conf:<line>`.
let confPath = "/conf/vigil.conf"

/// Parses `text` as the file `confPath` (prefix `/prefix`).
func parseConf(_ text: String, globalDirectives: String? = nil) throws -> Configuration {
    try Configuration.parse(text: text, file: confPath, prefix: "/prefix", globalDirectives: globalDirectives)
}

/// `events {}` on line 1, `http {` on line 2, then `body` starting on line 3, then `}`.
/// So line N of `body` is line N + 2 of the file.
func inHTTP(_ body: String) -> String {
    "events {}\nhttp {\n" + body + "\n}\n"
}

/// An `http {}` with one upstream `u` (lines 3-5 hold `upstream u {`, one server, then `body`):
/// line N of `body` is line N + 4 of the file.
func inUpstream(_ body: String) -> String {
    inHTTP("upstream u {\nserver 127.0.0.1:9000;\n" + body + "\n}")
}

/// Expects the parse to fail; returns the error.
@discardableResult
func expectError(_ text: String, globalDirectives: String? = nil,
                 file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
    do {
        _ = try parseConf(text, globalDirectives: globalDirectives)
        XCTFail("the configuration was accepted; expected an error", file: file, line: line)
    } catch let e as ConfigError {
        return e
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
    return nil
}

/// Expects exactly `<message> in /conf/vigil.conf:<confLine>` at `level`.
func assertError(_ text: String, _ message: String, line confLine: Int, level: ConfigError.Level = .emerg,
                 hint: String? = nil, globalDirectives: String? = nil,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard let e = expectError(text, globalDirectives: globalDirectives, file: file, line: line) else { return }
    var expected = "\(message) in \(confPath):\(confLine)"
    if let hint { expected += ", \(hint)" }
    XCTAssertEqual(e.description, expected, file: file, line: line)
    XCTAssertEqual(e.message, message, file: file, line: line)
    XCTAssertEqual(e.file, confPath, file: file, line: line)
    XCTAssertEqual(e.line, confLine, file: file, line: line)
    XCTAssertEqual(e.level, level, file: file, line: line)
    XCTAssertEqual(e.hint, hint, file: file, line: line)
}

/// Expects the configuration to load, failing the test with the error text otherwise.
func assertLoads(_ text: String, globalDirectives: String? = nil,
                 file: StaticString = #filePath, line: UInt = #line) -> Configuration? {
    do {
        return try parseConf(text, globalDirectives: globalDirectives)
    } catch {
        XCTFail("expected the configuration to load, got: \(error)", file: file, line: line)
        return nil
    }
}

/// The repository root, found from this file's path (Tests/ConfigTests/TestSupport.swift).
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A fresh directory under the system temporary directory, removed when the test finishes.
final class TempDir {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/vigil-configtests.XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw NSError(domain: "TempDir", code: Int(errno))
        }
        // Resolve so that paths in error messages are exactly what the test builds.
        path = URL(fileURLWithPath: String(cString: p)).resolvingSymlinksInPath().path
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func url(_ relative: String) -> String { path + "/" + relative }

    @discardableResult
    func write(_ relative: String, _ text: String) throws -> String {
        try write(relative, bytes: Array(text.utf8))
    }

    @discardableResult
    func write(_ relative: String, bytes: [UInt8]) throws -> String {
        let full = url(relative)
        let dir = (full as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: full, contents: Data(bytes)) else {
            throw NSError(domain: "TempDir", code: 1, userInfo: [NSLocalizedDescriptionKey: "cannot write \(full)"])
        }
        return full
    }

    func mkdir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: url(relative), withIntermediateDirectories: true)
    }

    /// Copies the repository's conf/mime.types beside a configuration in this directory.
    func copyMimeTypes(to relative: String = "mime.types") throws {
        let text = try String(contentsOfFile: repositoryRoot + "/conf/mime.types", encoding: .utf8)
        try write(relative, text)
    }
}

/// Expects `Configuration.load` to fail; returns the error.
@discardableResult
func expectLoadError(file confFile: String, prefix: String, globalDirectives: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
    do {
        _ = try Configuration.load(file: confFile, prefix: prefix, globalDirectives: globalDirectives)
        XCTFail("the configuration was accepted; expected an error", file: file, line: line)
    } catch let e as ConfigError {
        return e
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
    return nil
}

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }
}

func peer(_ host: String, _ port: UInt16) -> PeerAddress {
    PeerAddress(host: host, port: port, isIPv6: host.contains(":"))
}

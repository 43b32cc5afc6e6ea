import Core
import XCTest
import Foundation
@testable import Config
#if canImport(Glibc)
import Glibc
#endif

/// `Configuration.load` against real files: includes, globs, relative paths, unreadable and missing files.
final class IncludeAndFileTests: XCTestCase {
    func testMissingMainFile() throws {
        let dir = try TempDir()
        let e = expectLoadError(file: dir.url("nope.conf"), prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(dir.path)/nope.conf\" failed (2: No such file or directory)")
        XCTAssertNil(e?.file)
        XCTAssertEqual(e?.level, .emerg)
    }

    func testMainFileUnderANonDirectory() throws {
        let dir = try TempDir()
        try dir.write("plain", "x")
        let e = expectLoadError(file: dir.url("plain/vigil.conf"), prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(dir.path)/plain/vigil.conf\" failed (20: Not a directory)")
    }

    func testUnreadableMainFile() throws {
        try XCTSkipIf(geteuid() == 0, "root can read a mode-000 file")
        let dir = try TempDir()
        let path = try dir.write("vigil.conf", "events {}\n")
        XCTAssertEqual(chmod(path, 0), 0)
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(path)\" failed (13: Permission denied)")
    }

    func testUnreadableInclude() throws {
        try XCTSkipIf(geteuid() == 0, "root can read a mode-000 file")
        let dir = try TempDir()
        let inc = try dir.write("secret.conf", "daemon off;\n")
        XCTAssertEqual(chmod(inc, 0), 0)
        let path = try dir.write("vigil.conf", "events {}\ninclude secret.conf;\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(inc)\" failed (13: Permission denied) in \(path):2")
    }

    func testUnopenableIncludeEvenForRoot() throws {
        // A socket cannot be opened for reading by anyone: open() fails with ENXIO.
        let dir = try TempDir()
        let sock = dir.url("sock.conf")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(sock.utf8)
        XCTAssertLessThan(pathBytes.count, MemoryLayout.size(ofValue: addr.sun_path))
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in pathBytes.enumerated() { buf[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(rc, 0)
        let path = try dir.write("vigil.conf", "events {}\ninclude sock.conf;\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(sock)\" failed (6: No such device or address) in \(path):2")
    }

    func testMissingInclude() throws {
        let dir = try TempDir()
        let path = try dir.write("vigil.conf", "events {}\n\nhttp {\n    include missing.conf;\n}\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(dir.path)/missing.conf\" failed (2: No such file or directory) in \(path):4")
        XCTAssertEqual(e?.file, path)
        XCTAssertEqual(e?.line, 4)
    }

    func testMissingAbsoluteInclude() throws {
        let dir = try TempDir()
        let path = try dir.write("vigil.conf", "include \(dir.path)/none/x.conf;\nevents {}\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(dir.path)/none/x.conf\" failed (2: No such file or directory) in \(path):1")
    }

    func testGlobWithNoMatchIsFine() throws {
        let dir = try TempDir()
        try dir.mkdir("conf.d")
        let path = try dir.write("vigil.conf", "include conf.d/*.conf;\nevents {}\nhttp {\n  include sites/*.conf;\n  include nowhere/*;\n}\n")
        let conf = try Configuration.load(file: path, prefix: dir.path)
        XCTAssertNotNil(conf.http)
        XCTAssertEqual(conf.sources.map(\.path), [path])
    }

    func testGlobIncludesInSortedOrder() throws {
        let dir = try TempDir()
        try dir.write("conf.d/b.conf", "upstream b { server 127.0.0.1:2; check interval=1000; }\n")
        try dir.write("conf.d/a.conf", "upstream a { server 127.0.0.1:1; check interval=1000; }\n")
        try dir.write("conf.d/c.txt", "this is not included\n")
        try dir.write("conf.d/10.conf", "upstream ten { server 127.0.0.1:10; check interval=1000; }\n")
        let path = try dir.write("vigil.conf", "events {}\nhttp {\n  include conf.d/*.conf;\n}\n")
        let conf = try Configuration.load(file: path, prefix: dir.path)
        XCTAssertEqual(conf.checkedPeers.map(\.upstream), ["ten", "a", "b"])
        XCTAssertEqual(conf.sources.map(\.path), [path, dir.url("conf.d/10.conf"), dir.url("conf.d/a.conf"), dir.url("conf.d/b.conf")])
        let dump = conf.dump()
        XCTAssertTrue(dump.hasPrefix("# configuration file \(path):\nevents {}\n"), dump)
        XCTAssertTrue(dump.contains("# configuration file \(dir.url("conf.d/a.conf")):\nupstream a"), dump)
    }

    func testRelativeIncludeResolvesAgainstTheConfDirectoryNotThePrefix() throws {
        let dir = try TempDir()
        try dir.mkdir("prefix")
        try dir.write("etc/sub/upstreams.conf", "upstream u {\n    server 127.0.0.1:1;\n    check interval=1000;\n}\ninclude more.conf;\n")
        // Includes inside included files are relative to the main file's directory too (nginx's conf prefix).
        try dir.write("etc/more.conf", "upstream v { server 127.0.0.1:2; check interval=1000; }\n")
        try dir.write("prefix/sub/upstreams.conf", "bogus;\n")
        try dir.write("prefix/more.conf", "bogus;\n")
        let path = try dir.write("etc/vigil.conf", "events {}\nhttp {\n  include sub/upstreams.conf;\n  access_log logs/a.log;\n}\n")
        let conf = try Configuration.load(file: path, prefix: dir.url("prefix"))
        XCTAssertEqual(conf.confPrefix, dir.url("etc"))
        XCTAssertEqual(conf.checkedPeers.map(\.upstream), ["u", "v"])
        // Other paths are relative to the prefix.
        XCTAssertEqual(conf.http?.settings.log.accessLogs.first?.path, dir.url("prefix/logs/a.log"))
        XCTAssertEqual(conf.pidPath, dir.url("prefix/logs/vigil.pid"))
    }

    func testErrorsInsideAnIncludedFileNameThatFile() throws {
        let dir = try TempDir()
        let inc = try dir.write("inc/bad.conf", "# first line\nupstream u {\n    server 127.0.0.1:1;\n    check interval=0;\n}\n")
        let path = try dir.write("vigil.conf", "events {}\nhttp {\n  include inc/bad.conf;\n}\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "invalid parameter \"interval=0\" in \(inc):4")
    }

    func testIncludedFileKeepsTheContext() throws {
        let dir = try TempDir()
        let inc = try dir.write("server.conf", "listen 127.0.0.1:8080;\n")
        let path = try dir.write("vigil.conf", "events {}\ninclude server.conf;\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "\"listen\" directive is not allowed here in \(inc):1")
        // The same file inside server{} is fine.
        try dir.write("vigil.conf", "events {}\nhttp {\n  server {\n    include server.conf;\n  }\n}\n")
        let conf = try Configuration.load(file: path, prefix: dir.path)
        XCTAssertEqual(conf.listenAddresses.map(\.address.description), ["127.0.0.1:8080"])
    }

    func testBlockMayNotSpanFiles() throws {
        let dir = try TempDir()
        let inc = try dir.write("open.conf", "server {\n")
        let path = try dir.write("vigil.conf", "events {}\nhttp {\n  include open.conf;\n  }\n}\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "unexpected end of file, expecting \"}\" in \(inc):2")
    }

    func testIncludeLoopIsStopped() throws {
        let dir = try TempDir()
        let loop = try dir.write("loop.conf", "# includes itself\ninclude loop.conf;\n")
        let path = try dir.write("vigil.conf", "events {}\ninclude loop.conf;\n")
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "include nesting is too deep (an include loop?) in \(loop):2")
    }

    func testMimeTypesInclude() throws {
        let dir = try TempDir()
        try dir.copyMimeTypes()
        let path = try dir.write("vigil.conf", "events {}\nhttp {\n  include mime.types;\n  server { types { text/x-custom cst; } }\n}\n")
        let conf = try Configuration.load(file: path, prefix: dir.path)
        let types = try XCTUnwrap(conf.http?.settings.core.types)
        XCTAssertEqual(types["html"], "text/html")
        XCTAssertEqual(types["png"], "image/png")
        XCTAssertEqual(types["js"], "application/javascript")
        XCTAssertTrue(conf.warnings.isEmpty, "\(conf.warnings)")
        // A server-level types{} replaces the inherited table (nginx merges by replacement).
        XCTAssertEqual(conf.http?.servers.first?.settings.core.types, ["cst": "text/x-custom"])
    }

    // MARK: garbage

    func testBinaryGarbageIsRejectedReadably() throws {
        let dir = try TempDir()
        let path = try dir.write("vigil.conf", bytes: [0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x01, 0x00, 0x20, 0x3B, 0x0A])
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "unknown directive \"\\x7fELF\\x2\\x1\\x1\\x0\" in \(path):1")
    }

    func testNULsWithoutTerminator() throws {
        let dir = try TempDir()
        let path = try dir.write("vigil.conf", bytes: [UInt8](repeating: 0, count: 4096) + [0x0A] + [UInt8](repeating: 0xFF, count: 10))
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "unexpected end of file, expecting \";\" or \"}\" in \(path):2")
    }

    func testRandomGarbageFailsCleanly() throws {
        let dir = try TempDir()
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for round in 0..<20 {
            var bytes = [UInt8]()
            bytes.reserveCapacity(16 << 10)
            for _ in 0..<(16 << 10) {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: state >> 33))
            }
            let path = try dir.write("garbage\(round).conf", bytes: bytes)
            guard let e = expectLoadError(file: path, prefix: dir.path) else { continue }
            XCTAssertEqual(e.file, path)
            XCTAssertGreaterThanOrEqual(e.line, 1)
            XCTAssertTrue(e.description.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F },
                          "not printable: \(e.description.debugDescription)")
        }
    }

    // MARK: size and depth

    func testTenMegabyteConfiguration() throws {
        let dir = try TempDir()
        var text = "events {}\nhttp {\n    upstream big {\n        server 127.0.0.1:9000;\n        check interval=1000;\n    }\n"
        let pad = String(repeating: "x", count: 100)
        var n = 0
        while text.utf8.count < 10 << 20 {
            text += """
                    server {
                        listen 127.0.0.1:\(10000 + n % 50000);
                        server_name s\(n).example.com "alias-\(n)-\(pad)";
                        # \(pad)
                        location / { proxy_pass http://big; proxy_read_timeout 5s; }
                    }

                """
            n += 1
        }
        text += "}\n"
        let path = try dir.write("vigil.conf", text)
        let start = Date()
        let conf = try Configuration.load(file: path, prefix: dir.path)
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(text.utf8.count, 10 << 20)
        XCTAssertEqual(conf.http?.servers.count, n)
        XCTAssertEqual(conf.checkedPeers.count, 1)
        XCTAssertEqual(conf.http?.servers.last?.serverNames.first, "s\(n - 1).example.com")
        XCTAssertEqual(conf.http?.servers.last?.locations.first?.settings.proxy.readTimeout, 5000)
        XCTAssertEqual(conf.sources.first?.text.count, text.utf8.count)
        // Generous (debug build, shared 2-core machine); it only guards against quadratic behaviour.
        XCTAssertLessThan(elapsed, 20, "loading 10 MB took \(elapsed) s")
    }

    func testErrorAtTheEndOfALargeFileHasTheRightLine() throws {
        let dir = try TempDir()
        let lines = 100_000
        let text = "events {}\n" + String(repeating: "# filler line\n", count: lines) + "bogus;\n"
        let path = try dir.write("vigil.conf", text)
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "unknown directive \"bogus\" in \(path):\(lines + 2)")
    }

    /// `location /a { location /a/a { ... } }`, `depth` deep, inside one server; innermost proxies to `u`.
    private func nested(_ depth: Int) -> String {
        var text = "events {}\nhttp {\nproxy_read_timeout 7s;\nupstream u { server 127.0.0.1:1; check interval=1000; }\nserver {\n"
        var pattern = ""
        for _ in 0..<depth {
            pattern += "/a"
            text += "location \(pattern) {\n"
        }
        text += "proxy_pass http://u;\n"
        text += String(repeating: "}\n", count: depth)
        text += "}\n}\n"
        return text
    }

    func testTwoHundredNestedLocations() throws {
        let dir = try TempDir()
        let path = try dir.write("vigil.conf", nested(200))
        let conf = try Configuration.load(file: path, prefix: dir.path)
        var loc = try XCTUnwrap(conf.http?.servers.first?.locations.first)
        var depth = 1
        while let child = loc.locations.first {
            loc = child
            depth += 1
        }
        XCTAssertEqual(depth, 200)
        XCTAssertEqual(loc.pattern, String(repeating: "/a", count: 200))
        XCTAssertEqual(loc.location, SourceLocation(file: path, line: 205))
        // Settings inherit all the way down, and the innermost proxy_pass makes u a checked upstream.
        XCTAssertEqual(loc.settings.proxy.readTimeout, 7000)
        guard case .proxy(let pass) = loc.content, case .upstream("u") = pass.target else { return XCTFail("innermost is not proxy_pass u") }
        XCTAssertEqual(conf.checkedPeers.map(\.upstream), ["u"])
    }

    func testNestingTooDeep() throws {
        let dir = try TempDir()
        let path = try dir.write("vigil.conf", nested(300))
        let e = expectLoadError(file: path, prefix: dir.path)
        // http is depth 1, server 2, so the 255th location (on line 5 + 255) is depth 257.
        XCTAssertEqual(e?.description, "too many nested blocks (more than 256) in \(path):260")
    }

    func testNestedLocationOutsideItsParent() {
        assertError(inHTTP("server {\n  location /a {\n    location /b { }\n  }\n}"), #"location "/b" is outside location "/a""#, line: 5)
    }

    // MARK: the demo

    func testDemoConfiguration() throws {
        let path = repositoryRoot + "/conf/vigil.conf"
        let conf = try Configuration.load(file: path, prefix: repositoryRoot)
        XCTAssertTrue(conf.warnings.isEmpty, "\(conf.warnings)")
        XCTAssertEqual(conf.workerProcesses, 2)
        XCTAssertEqual(conf.workerConnections, 1024)
        XCTAssertEqual(conf.pidPath, repositoryRoot + "/logs/vigil.pid")
        XCTAssertEqual(conf.errorLogs, [ErrorLogTarget(path: repositoryRoot + "/logs/error.log", level: .notice)])
        XCTAssertEqual(conf.checkedPeers.count, 5)
        XCTAssertEqual(conf.checkedPeers.map(\.upstream), ["backend", "backend", "backend", "secure", "php"])
        XCTAssertEqual(conf.checkedPeers.map(\.address), [peer("127.0.0.1", 8081), peer("127.0.0.1", 8082), peer("127.0.0.1", 8089),
                                                           peer("127.0.0.1", 8084), peer("127.0.0.1", 9001)])
        XCTAssertEqual(conf.checkedPeers.map(\.check.type), [.http, .http, .http, .https, .fastcgi])
        let c = try XCTUnwrap(conf.checkedPeers.first?.check)
        XCTAssertEqual(c.type, .http)
        XCTAssertEqual([c.interval, c.rise, c.fall, c.timeout], [1000, 2, 2, 1000])
        XCTAssertEqual(c.httpSend, Array("GET / HTTP/1.0\r\n\r\n".utf8))
        XCTAssertEqual(c.expectAlive, [.http2xx, .http3xx])
        XCTAssertEqual(conf.listenAddresses.map(\.address.description),
                       ["127.0.0.1:8080", "127.0.0.1:8443", "127.0.0.1:8084", "127.0.0.1:8081", "127.0.0.1:8082"])
        XCTAssertEqual(conf.listenAddresses.map(\.ssl), [false, true, true, false, false])
        XCTAssertEqual(conf.http?.settings.ssl.certificates.map(\.path), [repositoryRoot + "/conf/demo.crt"])
        XCTAssertEqual(conf.http?.settings.ssl.sessionCache, .shared(name: "SSL", size: 1 << 20))
        XCTAssertEqual(conf.http?.settings.core.types["html"], "text/html")
        XCTAssertEqual(conf.shmSize, 1_048_576)
        XCTAssertEqual(conf.sources.map(\.path), [path, repositoryRoot + "/conf/mime.types"])
    }
}

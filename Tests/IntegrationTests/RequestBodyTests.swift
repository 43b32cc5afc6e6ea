import Foundation
import TestHarness
import XCTest

/// Request bodies on their way to the upstream: streamed as they arrive with `proxy_request_buffering off`
/// (chunked ones chunked again for HTTP/1.1 upstreams), held back when the upstream does not read, and,
/// buffered, spilled to client_body_temp_path past client_body_buffer_size.
final class RequestBodyTests: XCTestCase {
    /// An upstream the test drives by hand: it accepts one connection and reads what has arrived.
    final class ManualUpstream {
        let listener: Int32
        let port: UInt16
        private(set) var connection: Int32 = -1
        var received: [UInt8] = []

        init() throws {
            guard let s = loopbackSocket(listening: 8) else { throw HTTPClientError("bind/listen failed") }
            (listener, port) = s
        }

        /// Reads until `predicate` holds for everything received, for at most `seconds`.
        func read(for seconds: Double = 5, until predicate: ([UInt8]) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if predicate(received) { return true }
                if connection < 0 {
                    var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                    if poll(&p, 1, 50) > 0 { connection = accept(listener, nil, nil) }
                    continue
                }
                var p = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 50) > 0 else { continue }
                var buf = [UInt8](repeating: 0, count: 65536)
                let n = recv(connection, &buf, buf.count, 0)
                if n <= 0 { return predicate(received) }
                received += buf[0..<n]
            }
            return predicate(received)
        }

        func text() -> String { String(decoding: received, as: UTF8.self) }

        func reply(_ s: String) { _ = Array(s.utf8).withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

        func close() {
            if connection >= 0 { Glibc.close(connection) }
            Glibc.close(listener)
        }
    }

    static func ends(with s: String) -> ([UInt8]) -> Bool { { String(decoding: $0, as: UTF8.self).hasSuffix(s) } }

    /// A Vigil that streams bodies to `up` (HTTP/1.1), with a /guarded/ location whose `if` may answer first.
    func streamingVigil(to up: ManualUpstream) throws -> (Vigil, UInt16) {
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_request_buffering off; proxy_http_version 1.1; proxy_pass http://127.0.0.1:\(up.port); }
                location /guarded/ {
                    proxy_request_buffering off;
                    if ($arg_deny) { return 403; }
                    proxy_pass http://127.0.0.1:\(up.port);
                }
            }
            """))
        _ = try vigil.start()
        return (vigil, port)
    }

    func testUnbufferedBodiesStreamToTheUpstream() throws {
        let up = try ManualUpstream()
        defer { up.close() }
        let (vigil, port) = try streamingVigil(to: up)
        defer { vigil.cleanup() }

        // The rewrite phases run before the body is read: a `return` answers at once, and the connection,
        // with the body unread, closes after the answer.
        let denied = try HTTPConnection(port: port)
        defer { denied.close() }
        try denied.send("POST /guarded/?deny=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
        let refusal = try denied.readResponse()
        XCTAssertEqual(refusal.status, 403)
        XCTAssertEqual(refusal.header("Connection"), "close")
        XCTAssertTrue(denied.peerClosed(), "the connection stayed open with an unread body")

        // Half a body: the upstream has the head and that half while the client still holds the rest.
        let client = try HTTPConnection(port: port)
        defer { client.close() }
        try client.send("POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        XCTAssertTrue(up.read(until: Self.ends(with: "\r\n\r\nhello")), "the upstream got \(up.text().debugDescription)")
        XCTAssertTrue(up.text().hasPrefix("POST /stream HTTP/1.1\r\n"))
        XCTAssertTrue(up.text().contains("Content-Length: 10\r\n"))
        try client.send("world")
        XCTAssertTrue(up.read(until: Self.ends(with: "helloworld")))
        up.reply("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nyes")
        let r = try client.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "yes")
    }

    /// Runs `body` with an upstream the test drives and a Vigil streaming bodies to it, and a client whose
    /// chunked upload's first chunk the upstream already has.
    func withChunkedUploadStarted(_ body: (ManualUpstream, UInt16, HTTPConnection) throws -> Void) throws {
        let up = try ManualUpstream()
        defer { up.close() }
        let (vigil, port) = try streamingVigil(to: up)
        defer { vigil.cleanup() }
        let client = try HTTPConnection(port: port)
        defer { client.close() }
        try client.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        XCTAssertTrue(up.read(until: Self.ends(with: "5\r\nhello\r\n")), "the upstream got \(up.text().debugDescription)")
        try body(up, port, client)
    }

    func testChunkedBodiesStreamChunked() throws {
        try withChunkedUploadStarted { up, _, client in
            XCTAssertTrue(up.text().contains("Transfer-Encoding: chunked\r\n"))
            XCTAssertFalse(up.text().contains("Content-Length"))
            try client.send("3;ext=1\r\nabc\r\n0\r\n\r\n")
            XCTAssertTrue(up.read(until: Self.ends(with: "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")), "the upstream got \(up.text().debugDescription)")
            up.reply("HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            XCTAssertEqual(try client.readResponse().status, 201)
        }
    }

    /// A bad chunk in the middle of a streamed body: the client gets 400, and the upstream's connection, which
    /// has the body's beginning, is closed rather than left waiting.
    func testABadChunkWhileStreamingEndsBothSides() throws {
        try withChunkedUploadStarted { up, port, client in
            try client.send("zz\r\nbad\r\n")
            XCTAssertEqual(try client.readResponse().status, 400)
            XCTAssertTrue(client.peerClosed())
            _ = up.read(for: 3) { _ in false }   // reads until the upstream side sees the close
            var b: UInt8 = 0
            XCTAssertTrue(recv(up.connection, &b, 1, Int32(MSG_DONTWAIT)) == 0, "the upstream connection was left open")
            XCTAssertEqual(httpGet(port, "/guarded/?deny=1")?.status, 403, "the worker carries on")
        }
    }

    /// An upstream that reads nothing: Vigil stops reading the client instead of holding the body.
    func testAStalledUpstreamHoldsTheClientBack() throws {
        let up = try ManualUpstream()
        defer { up.close() }
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                location / { proxy_request_buffering off; client_max_body_size 0; proxy_send_timeout 30s;
                             proxy_pass http://127.0.0.1:\(up.port); }
            }
            """))
        defer { vigil.cleanup() }
        let master = try vigil.start()
        let worker = try XCTUnwrap(vigil.waitForWorkers(master, count: 1).first)
        let before = try XCTUnwrap(rssKB(worker))

        let total = 64 << 20
        let client = try HTTPConnection(port: port)
        defer { client.close() }
        try client.send("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: \(total)\r\n\r\n")
        XCTAssertTrue(up.read { CaptureServer.find([13, 10, 13, 10], in: $0) != nil }, "the upstream did not get the head")
        // Push for up to 3 s without blocking; with back-pressure the kernel's buffers fill and sends stop.
        let flags = fcntl(client.fd, F_GETFL)
        _ = fcntl(client.fd, F_SETFL, flags | O_NONBLOCK)
        let piece = [UInt8](repeating: 0x61, count: 65536)
        var pushed = 0
        let deadline = Date().addingTimeInterval(3)
        while pushed < total && Date() < deadline {
            let n = piece.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { pushed += n } else { usleep(10_000) }
        }
        let after = try XCTUnwrap(rssKB(worker))
        XCTAssertLessThan(pushed, total / 2, "the client could push \(pushed) bytes into a stalled upstream")
        XCTAssertLessThan(after - before, 16 << 10, "the worker grew by \(after - before) kB holding a stalled body")
    }

    func testBuffersBodiesPastTheBufferSizeToATemporaryFile() throws {
        let capture = try CaptureServer()
        defer { capture.stop() }
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let temp = vigil.prefix + "/body-temp"
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                client_body_buffer_size 1k;
                client_body_temp_path \(temp) 1 2;
                client_max_body_size 10m;
                location / { proxy_pass http://127.0.0.1:\(capture.port); }
                location /chunked10/ { proxy_request_buffering off; proxy_pass http://127.0.0.1:\(capture.port); }
            }
            """))
        _ = try vigil.start()
        let body = (0..<100_000).map { UInt8(0x30 + $0 % 10) }
        let client = try HTTPConnection(port: port)
        defer { client.close() }
        try client.send(Array("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body)
        XCTAssertEqual(try client.readResponse().status, 200)
        let sent = try XCTUnwrap(capture.requests.last)
        let headEnd = try XCTUnwrap(CaptureServer.find([13, 10, 13, 10], in: sent))
        XCTAssertEqual(Array(sent[(headEnd + 4)...]), body, "the upstream did not get the body byte for byte")
        XCTAssertTrue(String(decoding: sent[0..<headEnd], as: UTF8.self).contains("Content-Length: 100000"))
        XCTAssertTrue(vigil.errorLog().contains("[warn]"), vigil.errorLog())
        XCTAssertTrue(vigil.errorLog().contains("a client request body is buffered to a temporary file \(temp)/"), vigil.errorLog())
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temp), [], "a temporary body file was left behind")

        // A chunked body for an HTTP/1.0 upstream cannot stream: it is read whole and sent with its length.
        let chunkedClient = try HTTPConnection(port: port)
        defer { chunkedClient.close() }
        try chunkedClient.send("POST /chunked10/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n")
        XCTAssertEqual(try chunkedClient.readResponse().status, 200)
        let second = String(decoding: try XCTUnwrap(capture.requests.last), as: UTF8.self)
        XCTAssertTrue(second.contains("Content-Length: 6\r\n"), second)
        XCTAssertTrue(second.hasSuffix("\r\n\r\nabcdef"), second)
    }

    /// client_body_in_file_only: any body read for the upstream goes to a file whose name is
    /// `$request_body_file`; `on` keeps it, `clean` removes it when the request ends; where the body streams
    /// (proxy_request_buffering off) no file is made. A streamed body that has all arrived with its head is read
    /// whole, so `$request_body` has it, as in nginx.
    func testBodyInFileOnly() throws {
        let capture = try CaptureServer()
        defer { capture.stop() }
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let temp = vigil.prefix + "/body-temp"
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                client_body_temp_path \(temp);
                add_header X-Body-File "$request_body_file";
                add_header X-Body "$request_body";
                location /on { client_body_in_file_only on; proxy_pass http://127.0.0.1:\(capture.port); }
                location /clean { client_body_in_file_only clean; proxy_pass http://127.0.0.1:\(capture.port); }
                location /streamed {
                    client_body_in_file_only on;
                    proxy_request_buffering off;
                    proxy_pass http://127.0.0.1:\(capture.port);
                }
                location /memory { proxy_pass http://127.0.0.1:\(capture.port); }
            }
            """))
        _ = try vigil.start()
        func post(_ path: String, _ body: String) throws -> HTTPResponse {
            try httpExchange(port, "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        }

        let kept = try post("/on", "keep me")
        let keptPath = try XCTUnwrap(kept.header("X-Body-File"))
        XCTAssertTrue(keptPath.hasPrefix(temp + "/"), keptPath)
        XCTAssertNil(kept.header("X-Body"), "a body in a file is not $request_body")
        XCTAssertEqual(try String(contentsOfFile: keptPath, encoding: .utf8), "keep me")
        XCTAssertTrue(String(decoding: try XCTUnwrap(capture.requests.last), as: UTF8.self).hasSuffix("\r\n\r\nkeep me"))
        XCTAssertTrue(vigil.errorLog().contains("[notice]") && vigil.errorLog().contains("a client request body is buffered to a temporary file \(keptPath)"),
                      vigil.errorLog())

        let cleaned = try XCTUnwrap(try post("/clean", "drop me").header("X-Body-File"))
        XCTAssertTrue(waitFor(2) { !FileManager.default.fileExists(atPath: cleaned) }, "\(cleaned) was left behind")
        XCTAssertTrue(String(decoding: try XCTUnwrap(capture.requests.last), as: UTF8.self).hasSuffix("\r\n\r\ndrop me"))

        let streamed = try post("/streamed", "all here")
        XCTAssertNil(streamed.header("X-Body-File"))
        XCTAssertEqual(streamed.header("X-Body"), "all here")
        XCTAssertEqual(try post("/memory", "small").header("X-Body"), "small")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temp), [(keptPath as NSString).lastPathComponent])
    }
}

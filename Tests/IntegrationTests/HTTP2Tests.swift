import Foundation
import TestHarness
import XCTest

/// HTTP/2 on the real binary: curl (`--http2`, `--http2-prior-knowledge`) and nghttp as clients, and Debian's
/// python3-h2 for the frame sequences no well-behaved client sends (floods, a window never opened, a header
/// block too large). Expected statuses and frames are nginx's, checked against nginx 1.25 where 1.22 lacks
/// `http2 on`.
final class HTTP2Tests: TLSTestCase {
    static let python = "/usr/bin/python3"

    /// A raw h2c client on python3-h2: `h2client.py MODE PORT [ARGS]`, printing what it saw, one fact a line.
    static let script = #"""
        import socket, sys, time
        import h2.connection, h2.config, h2.events, h2.exceptions, h2.settings
        from hyperframe.frame import HeadersFrame, ContinuationFrame, RstStreamFrame

        mode, port = sys.argv[1], int(sys.argv[2])
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        c.initiate_connection()
        if mode == "zerowindow":
            c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        s.sendall(c.data_to_send())
        head = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/")]

        def read_for(seconds, take):
            """Hands what arrives to `take` for up to `seconds`; returns whether the server closed (or `take`
            gave up)."""
            end = time.time() + seconds
            s.settimeout(0.2)
            while time.time() < end:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    return True
                if not data or not take(data):
                    return True
            return False

        def drain(seconds):
            """Reads frames for up to `seconds`; returns (events, closed)."""
            got = []
            def take(data):
                try:
                    got.extend(c.receive_data(data))
                except Exception as e:
                    print("protocol", type(e).__name__, e)
                    return False
                try:
                    s.sendall(c.data_to_send())
                except OSError:
                    return False
                return True
            closed = read_for(seconds, take)
            return got, closed

        def goaway(events):
            return [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]

        # Raw frames, for what python3-h2 itself would refuse: `frame` makes one, `frames` reads (type, flags,
        # stream, payload) tuples for up to `seconds`, and whether the server closed.
        import struct
        def frame(t, flags, sid, payload=b""):
            return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + payload
        buf = b""
        def frames(seconds):
            got = []
            def take(d):
                global buf
                buf += d
                while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                    n = int.from_bytes(buf[:3], "big")
                    got.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n]))
                    buf = buf[9 + n:]
                return True
            closed = read_for(seconds, take)
            return got, closed
        simple = bytes([0x82, 0x86, 0x84, 0x41, 9]) + b"localhost"   # GET http://localhost/

        if mode == "rapidreset":
            # HEADERS then RST_STREAM at once, stream after stream (CVE-2023-44487), in batches of 500.
            n, total, closed = 1, int(sys.argv[3]), False
            events = []
            while n < 2 * total and not closed:
                batch = b""
                try:
                    for _ in range(500):
                        c.send_headers(n, head, end_stream=True)
                        c.reset_stream(n)
                        batch += c.data_to_send()
                        n += 2
                except h2.exceptions.ProtocolError:
                    closed = True   # the server's GOAWAY came in with the last read
                    break
                try:
                    s.sendall(batch)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                got, closed = drain(0.01)
                events += got
            more, closed2 = drain(1.0)
            events += more
            g = goaway(events)
            print("streams", n // 2)
            print("goaway", g[0].error_code if g else "none")
        elif mode == "continuation":
            # One HEADERS without END_HEADERS, then CONTINUATION frames without end (CVE-2024-27316's shape).
            block = c.encoder.encode(head)
            frame = HeadersFrame(1, data=block)
            s.sendall(frame.serialize())
            closed, sent = False, 0
            for i in range(20000):
                cf = ContinuationFrame(1, data=c.encoder.encode([("x-pad-%d" % i, "v" * 100)]))
                try:
                    s.sendall(cf.serialize())
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sent += 1
            events, closed2 = drain(2.0)
            g = goaway(events)
            print("continuations", sent)
            print("closed", closed or closed2)
            print("goaway", g[0].error_code if g else "none")
        elif mode in ("ping", "settings", "emptydata"):
            # Frames that ask for work or replies and carry no request: the server must end the connection.
            import struct
            def frame(t, flags, sid, payload=b""):
                return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + payload
            if mode == "emptydata":
                c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"), (":path", "/")])
                s.sendall(c.data_to_send())
                unit = frame(0, 0, 1) * 100
            else:
                unit = (frame(6, 0, 0, b"12345678") if mode == "ping" else frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64")) * 100
            sent, closed = 0, False
            # The replies (PING and SETTINGS ACKs) are never read: they pile up on the server's side.
            try:
                for _ in range(20000):
                    s.sendall(unit)
                    sent += 1
            except OSError:
                closed = True
            print("batches", sent)
            print("closed", closed)
        elif mode == "bigheader":
            c.send_headers(1, head + [("x-big", "v" * int(sys.argv[3]))], end_stream=True)
            s.sendall(c.data_to_send())
            events, closed = drain(2.0)
            g = goaway(events)
            print("goaway", g[0].error_code if g else "none")
            print("closed", closed)
        elif mode == "cancel":
            # A proxied request reset by the client while the upstream is still thinking.
            c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/slow")], end_stream=True)
            s.sendall(c.data_to_send())
            time.sleep(0.5)
            c.reset_stream(1)
            s.sendall(c.data_to_send())
            c.send_headers(3, head, end_stream=True)
            s.sendall(c.data_to_send())
            events, closed = drain(1.0)
            print("other", [dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)])
        elif mode == "emptybody":
            # content-length: 0 on a HEADERS frame without END_STREAM: the body ends with the empty DATA frame.
            c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"), (":path", sys.argv[3]),
                               ("content-length", "0")])
            s.sendall(c.data_to_send())
            events, closed = drain(0.5)
            print("early", [dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)])
            c.send_data(1, b"", end_stream=True)
            s.sendall(c.data_to_send())
            events, closed = drain(1.0)
            print("late", [dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)])
        elif mode == "priority":
            # Stream 1's response fills the connection window, stream 3's waits behind it; the priorities change
            # (or were set by PRIORITY frames before the streams opened) and the windows open: DATA goes in
            # nginx's order (h2_priority.t's cases).
            def get(sid, path):
                c.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", path)], end_stream=True)
                s.sendall(c.data_to_send())
            if sys.argv[3] == "dependency":
                c.prioritize(1, weight=16, depends_on=0)
                c.prioritize(3, weight=16, depends_on=1)
            get(1, "/t1.html")
            drain(0.5)
            get(3, "/t2.html")
            drain(0.5)
            if sys.argv[3] == "weight":
                c.prioritize(1, weight=256)
                c.prioritize(3, weight=1)
            for sid in (1, 3, None):
                c.increment_flow_control_window(2**17, stream_id=sid)
            s.sendall(c.data_to_send())
            events, closed = drain(1.0)
            print("order", " ".join(str(e.stream_id) for e in events if isinstance(e, h2.events.DataReceived)))
        elif mode == "idlerss":
            # Resident memory per idle connection (preface and SETTINGS exchanged): the worker's RSS over a warm
            # baseline, after the connections have been idle long enough to give back what they can.
            pid, n = int(sys.argv[3]), int(sys.argv[4])
            def rss():
                return int([l for l in open("/proc/%d/status" % pid) if l.startswith("VmRSS:")][0].split()[1])
            def idle():
                k = socket.create_connection(("127.0.0.1", port), timeout=5)
                k.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
                k.recv(65536)
                return k
            held = [idle() for _ in range(40)]
            time.sleep(1.5)
            base = rss()
            held += [idle() for _ in range(n)]
            time.sleep(1.5)
            print("perconn", (rss() - base) * 1024 // n)
        elif mode == "lowerwindow":
            # A streamed response: its first DATA comes, then the client lowers SETTINGS_INITIAL_WINDOW_SIZE to 0
            # (the stream's window goes negative, RFC 9113 §6.9.2) while the upstream's end (and, for /rest, more
            # bytes) arrives; then the client opens the stream's window. Frames read raw: python3-h2 itself
            # refuses a window below 0.
            def data(got):
                return b"".join(f[3] for f in got if f[0] == 0 and f[2] == 1).decode() or "-"
            def ended(got):
                return any(f[0] in (0, 1) and f[1] & 1 and f[2] == 1 for f in got)
            path = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", sys.argv[3])]
            s.sendall(frame(4, 1, 0) + frame(1, 5, 1, c.encoder.encode(path)))
            first, closed = frames(0.4)
            s.sendall(frame(4, 0, 0, struct.pack(">HI", 4, 0)))
            held, closed = frames(float(sys.argv[4]))
            print("first", data(first))
            print("held", data(held), ended(held))
            if not ended(held) and not closed:
                s.sendall(frame(8, 0, 1, struct.pack(">I", 1000)))
            rest, closed = frames(1.0)
            print("rest", data(rest), ended(rest))
            print("unparsed", len(buf))
            print("closed", closed)
        elif mode == "refused":
            # A client that never reads: stream 1 held open at window 0 fills http2_max_concurrent_streams 1, then
            # HEADERS after HEADERS, each refused with a RST_STREAM the client leaves unread. Prints the worker's
            # VmRSS growth (kB) and whether the server ended the connection.
            pid = int(sys.argv[3])
            def rss():
                return int([l for l in open("/proc/%d/status" % pid) if l.startswith("VmRSS:")][0].split()[1])
            base = rss()
            block = simple
            s.sendall(frame(4, 0, 0, struct.pack(">HI", 4, 0)) + frame(1, 5, 1, block))
            sid, sent, closed, grew = 3, 0, False, 0
            s.settimeout(10)
            try:
                while sent < 2000000:
                    batch = b"".join(frame(1, 5, sid + 2 * i, block) for i in range(1000))
                    s.sendall(batch)
                    sid += 2000
                    sent += 1000
                    if sent % 50000 == 0:
                        grew = max(grew, rss() - base)
            except OSError:
                closed = True
            grew = max(grew, rss() - base)
            print("sent", sent)
            print("closed", closed)
            print("grew", grew)
        elif mode == "zeroincrement":
            # Stream 1 held open at window 0, then a WINDOW_UPDATE of 0 for it: RST_STREAM PROTOCOL_ERROR
            # (RFC 9113 §6.9), the connection lives on and answers stream 3.
            s.sendall(frame(4, 0, 0, struct.pack(">HI", 4, 0)) + frame(4, 1, 0) + frame(1, 5, 1, simple))
            frames(0.3)
            s.sendall(frame(8, 0, 1, struct.pack(">I", 0)))
            got, closed = frames(0.5)
            print("rst", [(f[2], int.from_bytes(f[3], "big")) for f in got if f[0] == 3])
            print("goaway", [int.from_bytes(f[3][4:8], "big") for f in got if f[0] == 7])
            s.sendall(frame(1, 5, 3, simple))
            got, closed = frames(0.5)
            print("other", [f[2] for f in got if f[0] == 1])
        elif mode == "goawaylast":
            # keepalive_requests 1: stream 1's HEADERS brings GOAWAY naming 1; stream 1 is held open (window 0),
            # stream 3 comes all the same, then a connection error: its GOAWAY names no higher stream than 1.
            s.sendall(frame(4, 0, 0, struct.pack(">HI", 4, 0)) + frame(4, 1, 0) + frame(1, 5, 1, simple))
            got = frames(0.3)[0]
            s.sendall(frame(1, 5, 3, simple))
            got += frames(0.3)[0]
            s.sendall(frame(6, 0, 0, b"1234"))   # PING of 4 bytes: FRAME_SIZE_ERROR
            got += frames(1.0)[0]
            print("goaway", [(int.from_bytes(f[3][:4], "big"), int.from_bytes(f[3][4:8], "big")) for f in got if f[0] == 7])
        elif mode == "zerowindow":
            # SETTINGS_INITIAL_WINDOW_SIZE 0: the response's DATA can never be sent.
            c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/big")], end_stream=True)
            s.sendall(c.data_to_send())
            start = time.time()
            events, closed = drain(float(sys.argv[3]))
            print("status", [dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)])
            print("closed", closed, round(time.time() - start, 1))
        """#

    override func setUpWithError() throws {
        try super.setUpWithError()
        try requireCurl()
        try XCTSkipUnless(runCommand(HTTP2Tests.python, ["-c", "import h2"]).status == 0,
                          "python3-h2 is not installed (scripts/install-deps installs it)")
        try HTTP2Tests.script.write(toFile: scratch + "/h2client.py", atomically: true, encoding: .utf8)
    }

    func h2(_ args: [String], timeout: TimeInterval = 40) -> [String: String] {
        let r = runCommand(HTTP2Tests.python, [scratch + "/h2client.py"] + args, timeout: timeout)
        var facts: [String: String] = ["stderr": r.stderr]
        for line in r.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            facts[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return facts
    }

    /// curl's verdict: status, the protocol it spoke and the body.
    func fetch(_ url: String, _ flags: [String] = []) -> (code: Int, version: String, body: String) {
        let bodyFile = scratch + "/body-" + UUID().uuidString.prefix(8)
        defer { unlink(bodyFile) }
        var args = ["-sS", "--max-time", "8", "-o", bodyFile, "-w", "%{http_code} %{http_version}", "--cacert", pki.caCert]
        if let u = URL(string: url), let host = u.host, host.hasSuffix(".test"), let port = u.port {
            args += ["--resolve", "\(host):\(port):127.0.0.1"]
        }
        let r = runCommand(Tools.curl, args + flags + [url], timeout: 12)
        let parts = r.stdout.split(separator: " ")
        let body = (try? String(contentsOfFile: bodyFile, encoding: .utf8)) ?? ""
        return (Int(parts.first ?? "") ?? 0, parts.count > 1 ? String(parts[1]) : "", body)
    }

    func testPlainAndTLSListenersSpeakHTTP2WhereConfigured() throws {
        let plain = freePort(), tls = freePort(), legacy = freePort(), backend = freePort()
        try startVigil("""
            server {
                listen 127.0.0.1:\(plain);
                http2 on;
                location / { return 200 "$http2 $server_protocol $request"; }
                location /p/ { proxy_pass http://127.0.0.1:\(backend)/; }
            }
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name a.test;
                http2 on;
                \(certs("a-rsa"))
                location / { return 200 "$http2 $server_protocol $ssl_protocol"; }
            }
            server {
                listen 127.0.0.1:\(tls) ssl;
                server_name b.test;
                \(certs("b"))
                location / { return 200 "b $http2 $server_protocol"; }
            }
            server {
                listen 127.0.0.1:\(legacy) ssl http2;
                \(certs("a-rsa"))
                location / { return 200 "legacy $http2"; }
            }
            server {
                listen 127.0.0.1:\(backend);
                location / { return 200 "upstream $request_method $http_host $content_length $http_x_a"; }
            }
            """)
        // h2c by prior knowledge, and HTTP/1.1 on the same port (the preface decides).
        let h2c = fetch("http://127.0.0.1:\(plain)/x?y", ["--http2-prior-knowledge"])
        XCTAssertEqual(h2c.code, 200)
        XCTAssertEqual(h2c.version, "2")
        XCTAssertEqual(h2c.body, "h2c HTTP/2.0 GET /x?y HTTP/2.0")
        let h1 = fetch("http://127.0.0.1:\(plain)/x")
        XCTAssertEqual(h1.version, "1.1")
        XCTAssertEqual(h1.body, " HTTP/1.1 GET /x HTTP/1.1")
        // ALPN: h2 where the server SNI names speaks it, HTTP/1.1 where it does not; `listen … http2` too.
        let a = fetch("https://a.test:\(tls)/", ["--http2"])
        XCTAssertEqual(a.version, "2")
        XCTAssertTrue(a.body.hasPrefix("h2 HTTP/2.0 TLSv1.3"), a.body)
        let b = fetch("https://b.test:\(tls)/", ["--http2"])
        XCTAssertEqual(b.version, "1.1")
        XCTAssertEqual(b.body, "b  HTTP/1.1")
        XCTAssertEqual(fetch("https://a.test:\(legacy)/", ["--http2"]).body, "legacy h2")
        // Proxied over h2, with a 1 MB request body, to an HTTP/1.1 upstream.
        let blob = scratch + "/blob"
        try Data((0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }).write(to: URL(fileURLWithPath: blob))
        let post = fetch("http://127.0.0.1:\(plain)/p/", ["--http2-prior-knowledge", "--data-binary", "@" + blob, "-H", "X-A: 1"])
        XCTAssertEqual(post.body, "upstream POST 127.0.0.1:\(backend) 1000000 1")
        // Many streams at once on one connection: h2load's 200 requests, 20 concurrent, all answered 2xx.
        let load = runCommand("/usr/bin/h2load", ["-n", "200", "-c", "1", "-m", "20", "http://127.0.0.1:\(plain)/"], timeout: 15)
        XCTAssertTrue(load.stdout.contains("200 succeeded"), load.stdout)
        XCTAssertTrue(load.stdout.contains("status codes: 200 2xx"), load.stdout)
    }

    func testRapidResetFloodLeavesOthersServed() throws {
        let port = freePort()
        let (v, master) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                keepalive_requests 100000;
                location / { return 200 "ok"; }
            }
            """)
        let workers = v.waitForWorkers(master, count: 1)
        let flood = DispatchQueue(label: "flood")
        let group = DispatchGroup()
        let result = Handoff<[String: String]>([:])
        flood.async(group: group) { result.value = self.h2(["rapidreset", String(port), "20000"]) }
        // Another client is served within a second while the flood runs.
        usleep(200_000)
        var slowest = 0.0
        for _ in 0..<5 {
            let start = Date()
            let r = fetch("http://127.0.0.1:\(port)/", ["--http2-prior-knowledge"])
            slowest = max(slowest, Date().timeIntervalSince(start))
            XCTAssertEqual(r.body, "ok")
        }
        XCTAssertLessThan(slowest, 1.0)
        group.wait()
        let facts = result.value
        // The reset allowance (nghttp2's answer to CVE-2023-44487, kept: a burst of 1000, then 33 a second) ends
        // the connection with GOAWAY INTERNAL_ERROR long before 20,000 streams.
        XCTAssertEqual(facts["goaway"], "2", "\(facts)")
        XCTAssertLessThan(Int(facts["streams"] ?? "") ?? .max, 3000, "\(facts)")
        XCTAssertEqual(v.waitForWorkers(master, count: 1), workers, "a worker was restarted")
        XCTAssertFalse(v.errorLog().contains("[alert]"), v.errorLog())
    }

    func testContinuationFloodAndOversizedHeadersEndTheConnection() throws {
        let port = freePort()
        try startVigil("""
            large_client_header_buffers 4 8k;
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                location / { return 200 "ok"; }
            }
            """)
        let flood = h2(["continuation", String(port)])
        XCTAssertEqual(flood["closed"], "True", "\(flood)")
        XCTAssertLessThan(Int(flood["continuations"] ?? "") ?? .max, 20000, "\(flood)")
        // PING and SETTINGS floods whose ACKs the client never reads (10,000 unsent frames at most) and an empty
        // DATA flood (nginx's payload accounting) each end the connection long before 2,000,000 frames.
        for mode in ["ping", "settings", "emptydata"] {
            let f = h2([mode, String(port)])
            XCTAssertEqual(f["closed"], "True", "\(mode): \(f)")
            XCTAssertLessThan(Int(f["batches"] ?? "") ?? .max, 20000, "\(mode): \(f)")
        }
        // One field beyond large_client_header_buffers' size: GOAWAY ENHANCE_YOUR_CALM, as nginx.
        let big = h2(["bigheader", String(port), "9000"])
        XCTAssertEqual(big["goaway"], "11", "\(big)")
        XCTAssertEqual(fetch("http://127.0.0.1:\(port)/", ["--http2-prior-knowledge"]).body, "ok")
    }

    func testFramesTheClientLeavesUnreadEndTheConnection() throws {
        let port = freePort()
        let (v, master) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                http2_max_concurrent_streams 1;
                location / { return 200 "ok"; }
            }
            """)
        let worker = try XCTUnwrap(v.waitForWorkers(master, count: 1).first)
        // Each refused stream queues a RST_STREAM: past 10,000 frames unsent the connection ends, as nginx's
        // "http2 flood detected", long before the 2,000,000 HEADERS, and the worker's memory stays bounded.
        let facts = h2(["refused", String(port), String(worker)])
        XCTAssertEqual(facts["closed"], "True", "\(facts)")
        XCTAssertLessThan(Int(facts["sent"] ?? "") ?? .max, 2_000_000, "\(facts)")
        XCTAssertLessThan(Int(facts["grew"] ?? "") ?? .max, 20_000, "\(facts)")
        XCTAssertTrue(waitFor(5) { v.errorLog().contains("http2 flood detected") }, v.errorLog())
        XCTAssertEqual(fetch("http://127.0.0.1:\(port)/", ["--http2-prior-knowledge"]).body, "ok")
    }

    func testAZeroIncrementResetsItsStreamAndGoAwayNeverRaisesTheLastStream() throws {
        let port = freePort()
        let keepalive1 = freePort()
        try Data(count: 200_000).write(to: URL(fileURLWithPath: scratch + "/big"))
        try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                location / { root \(scratch); index big; }
            }
            server {
                listen 127.0.0.1:\(keepalive1);
                http2 on;
                keepalive_requests 1;
                location / { root \(scratch); index big; }
            }
            """)
        let zero = h2(["zeroincrement", String(port)])
        XCTAssertEqual(zero["rst"], "[(1, 1)]", "\(zero)")
        XCTAssertEqual(zero["goaway"], "[]", "\(zero)")
        XCTAssertEqual(zero["other"], "[3]", "\(zero)")
        // The graceful GOAWAY named stream 1; the one the error brings (FRAME_SIZE_ERROR, 6) names 1 again, not 3.
        let last = h2(["goawaylast", String(keepalive1)])
        XCTAssertEqual(last["goaway"], "[(1, 0), (1, 6)]", "\(last)")
    }

    func testAClientThatNeverOpensItsWindowTimesOut() throws {
        let port = freePort()
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                send_timeout 1s;
                location / { root \(scratch); }
            }
            """)
        try Data(count: 200_000).write(to: URL(fileURLWithPath: scratch + "/big"))
        let facts = h2(["zerowindow", String(port), "4"])
        XCTAssertEqual(facts["status"], "['200']", "\(facts)")
        // Closed by send_timeout, not held open for ever.
        XCTAssertTrue(facts["closed"]?.hasPrefix("True") ?? false, "\(facts)")
        XCTAssertTrue(v.errorLog().contains("client timed out (110: Connection timed out) while sending to client"), v.errorLog())
    }

    func testALoweredInitialWindowHoldsBytesButNotTheEnd() throws {
        let port = freePort()
        let head = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".utf8)
        // The end alone after the first chunk (the stream has nothing pending when its window is negative), or
        // three more bytes before it.
        let end = try RawServer(.drip(prefix: head, bytes: Array("0\r\n\r\n".utf8), everyMs: 150))
        let rest = try RawServer(.drip(prefix: head, bytes: Array("3\r\nabc\r\n0\r\n\r\n".utf8), everyMs: 300))
        defer { end.stop(); rest.stop() }
        try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                proxy_buffering off;
                proxy_http_version 1.1;
                location /end { proxy_pass http://127.0.0.1:\(end.port); }
                location /rest { proxy_pass http://127.0.0.1:\(rest.port); }
            }
            """)
        // The empty DATA frame with END_STREAM goes whatever the window (no frame claiming a negative length).
        let e = h2(["lowerwindow", String(port), "/end", "2"])
        XCTAssertEqual(e["first"], "hello", "\(e)")
        XCTAssertEqual(e["held"], "- True", "\(e)")
        XCTAssertEqual(e["closed"], "False", "\(e)")
        XCTAssertEqual(e["unparsed"], "0", "\(e)")
        // Bytes wait for the window, then come with END_STREAM.
        let r = h2(["lowerwindow", String(port), "/rest", "5"])
        XCTAssertEqual(r["first"], "hello", "\(r)")
        XCTAssertEqual(r["held"], "- False", "\(r)")
        XCTAssertEqual(r["rest"], "abc True", "\(r)")
        XCTAssertEqual(r["closed"], "False", "\(r)")
        XCTAssertEqual(r["unparsed"], "0", "\(r)")
        XCTAssertEqual(fetch("http://127.0.0.1:\(port)/end", ["--http2-prior-knowledge"]).body, "hello")
    }

    func testReloadSaysGoAwayAndLetsTheOpenStreamFinish() throws {
        let port = freePort()
        let slow = try RawServer(.keepAlive(Array("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".utf8), afterMs: 1500))
        defer { slow.stop() }
        let (v, master) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                location /slow { proxy_pass http://127.0.0.1:\(slow.port); }
            }
            """)
        // nghttp (python3-h2 4.1 drops a connection's streams once GOAWAY comes) prints the frames it gets.
        let group = DispatchGroup()
        let run = Handoff<RunResult?>(nil)
        DispatchQueue(label: "client").async(group: group) {
            run.value = runCommand("/usr/bin/nghttp", ["-v", "http://127.0.0.1:\(port)/slow"], timeout: 15)
        }
        usleep(500_000)
        XCTAssertEqual(v.vigil(["-s", "reload"]).status, 0)
        group.wait()
        let out = run.value?.stdout ?? ""
        XCTAssertTrue(out.contains("recv GOAWAY frame"), out)
        XCTAssertTrue(out.contains("last_stream_id=1"), out)
        XCTAssertTrue(out.contains(":status: 200"), out)
        XCTAssertTrue(out.contains("slow"), out)
        XCTAssertTrue(processAlive(master))
    }

    func testKeepaliveRequestsEndsAFloodWithGoAway() throws {
        let port = freePort()
        try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                location / { return 200 "ok"; }
            }
            """)
        // keepalive_requests (1000) bounds the streams of one connection: GOAWAY NO_ERROR after the 1000th.
        let facts = h2(["rapidreset", String(port), "5000"])
        XCTAssertEqual(facts["goaway"], "0", "\(facts)")
        XCTAssertLessThanOrEqual(Int(facts["streams"] ?? "") ?? .max, 1500, "\(facts)")
    }

    /// The response as a user compares it across protocols: status, body, and the header fields that are not
    /// the connection's or the framing's, lowercased and sorted.
    func exchange(_ url: String, _ flags: [String]) -> String {
        let headerFile = scratch + "/head-" + UUID().uuidString.prefix(8), bodyFile = headerFile + ".body"
        defer { unlink(headerFile); unlink(bodyFile) }
        let r = runCommand(Tools.curl, ["-sS", "--max-time", "8", "-D", headerFile, "-o", bodyFile] + flags + [url], timeout: 12)
        let head = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
        let lines = head.split(separator: "\r\n").map(String.init)
        let status = lines.first?.split(separator: " ").dropFirst().first.map(String.init) ?? "none: \(r.stderr)"
        let skipped: Set<String> = ["date", "connection", "keep-alive", "transfer-encoding", "content-length"]
        let fields = lines.dropFirst().compactMap { line -> String? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let name = line[..<colon].lowercased()
            return skipped.contains(name) ? nil : name + ":" + line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }.sorted()
        let body = (try? Data(contentsOf: URL(fileURLWithPath: bodyFile))) ?? Data()
        return "\(status)\n\(fields.joined(separator: "\n"))\n\(body.count) bytes, hash \(body.hashValue)"
    }

    func testThePipelineAnswersAlikeOverHTTP1AndHTTP2() throws {
        let port = freePort(), backend = freePort()
        try Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }).write(to: URL(fileURLWithPath: scratch + "/file.bin"))
        try String(repeating: "text to compress ", count: 500).write(toFile: scratch + "/page.html", atomically: true, encoding: .utf8)
        try "custom 404".write(toFile: scratch + "/404.html", atomically: true, encoding: .utf8)
        try startVigil("""
            upstream back { server 127.0.0.1:\(backend); keepalive 4; }
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                root \(scratch);
                gzip on;
                gzip_min_length 100;
                error_page 404 /404.html;
                add_header X-Proto $server_protocol always;
                location /r { rewrite ^/r/(.*)$ /$1 last; }
                location /p/ {
                    proxy_pass http://back/;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                }
                location = /status { check_status csv; }
                location = /stub { stub_status; }
            }
            server {
                listen 127.0.0.1:\(backend);
                location / { add_header X-Up $request_uri; return 200 "from upstream $request_method"; }
            }
            """)
        for (path, flags) in [("/file.bin", []), ("/file.bin", ["-r", "100-199"]), ("/page.html", ["-H", "Accept-Encoding: gzip"]),
                              ("/missing", []), ("/r/page.html", []), ("/p/x?a=1", []), ("/p/post", ["--data-binary", "abc"]),
                              ("/status", [])] {
            let h1 = exchange("http://127.0.0.1:\(port)\(path)", flags)
            let h2 = exchange("http://127.0.0.1:\(port)\(path)", flags + ["--http2-prior-knowledge"])
            XCTAssertEqual(h2.replacingOccurrences(of: "HTTP/2.0", with: "HTTP/1.1"), h1, path)
            XCTAssertTrue(h2.contains("x-proto:HTTP/2.0"), h2)
        }
    }

    func testAClientResetEndsItsUpstreamRequest() throws {
        let port = freePort()
        let slow = try RawServer(.silent)
        defer { slow.stop() }
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                access_log logs/access.log;
                location /slow { proxy_pass http://127.0.0.1:\(slow.port); proxy_read_timeout 30s; }
                location / { return 200 "ok"; }
            }
            """)
        let facts = h2(["cancel", String(port)])
        // The other stream on the connection is answered; the reset one's upstream connection is closed and the
        // request logged as nginx logs a client gone away, 499.
        XCTAssertEqual(facts["other"], "['200']", "\(facts)")
        XCTAssertTrue(waitFor(5) { slow.openConnections == 0 }, "the upstream connection stayed open")
        XCTAssertTrue(waitFor(5) { self.logLines(v, "access.log").contains { $0.contains("\"GET /slow HTTP/2.0\" 499") } },
                      logLines(v, "access.log").joined(separator: "\n"))
    }

    func testAnEmptyBodyEndsAtEndStreamNotAtItsContentLength() throws {
        let port = freePort()
        let app = try RawServer(.fastCGI(FastCGITests.stdout("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok") + FastCGITests.end))
        defer { app.stop() }
        try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                location /buffered { fastcgi_pass 127.0.0.1:\(app.port); }
                location /streamed { fastcgi_pass 127.0.0.1:\(app.port); fastcgi_request_buffering off; }
            }
            """)
        // The application answers once its STDIN ends: buffered or streamed, that is at the empty DATA frame with
        // END_STREAM, as nginx ends it, not at once for the content-length of 0.
        let buffered = h2(["emptybody", String(port), "/buffered"])
        XCTAssertEqual(buffered["early"], "[]", "\(buffered)")
        XCTAssertEqual(buffered["late"], "['200']", "\(buffered)")
        let streamed = h2(["emptybody", String(port), "/streamed"])
        XCTAssertEqual(streamed["early"], "[]", "\(streamed)")
        XCTAssertEqual(streamed["late"], "['200']", "\(streamed)")
        XCTAssertEqual(app.accepted, 2)
    }

    func testDataGoesInNginxsPriorityOrder() throws {
        let port = freePort()
        // Slightly more than the initial window, as h2_priority.t's file.
        try (1...8202).map { String(format: "X%04dXXX", $0) }.joined().write(toFile: scratch + "/t1.html", atomically: true, encoding: .utf8)
        try "SEE-THIS".write(toFile: scratch + "/t2.html", atomically: true, encoding: .utf8)
        try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                root \(scratch);
            }
            """)
        // The heavier stream first, though the lighter one queued first; a parent first, though a PRIORITY frame
        // placed it before its HEADERS came.
        XCTAssertEqual(h2(["priority", String(port), "weight"])["order"], "1 3")
        XCTAssertEqual(h2(["priority", String(port), "dependency"])["order"], "1 3")
    }

    /// An idle connection that has sent no request holds no frame buffer, HPACK table or stream state: what is
    /// resident is the connection object, its socket and TLS-free bookkeeping.
    func testAnIdleConnectionKeepsLittleResident() throws {
        let port = freePort()
        let (v, master) = try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                location / { return 200 "ok"; }
            }
            """)
        let worker = try XCTUnwrap(v.waitForWorkers(master, count: 1).first)
        let facts = h2(["idlerss", String(port), String(worker), "180"])
        // About 6 kB when Vigil ran on nghttp2 (its session and HPACK tables), 14 kB before that.
        let perConnection = try XCTUnwrap(Int(facts["perconn"] ?? ""), "\(facts)")
        XCTAssertLessThan(perConnection, 9000)
    }

    func testLimitRateHoldsAStreamNotTheConnection() throws {
        let port = freePort()
        try Data(count: 60_000).write(to: URL(fileURLWithPath: scratch + "/slow.bin"))
        try startVigil("""
            server {
                listen 127.0.0.1:\(port);
                http2 on;
                root \(scratch);
                location = /slow.bin { limit_rate 20k; }
                location / { return 200 "fast"; }
            }
            """)
        // Two streams on one connection (curl multiplexes --parallel requests): the fast one is not held back
        // by the limited one, which takes about 2 s for 60 kB at 20 kB/s.
        let start = Date()
        let r = runCommand(Tools.curl, ["-sS", "--http2-prior-knowledge", "--parallel", "--max-time", "10",
                                        "-w", "%{url_effective} %{size_download} %{time_total}\n", "-o", "/dev/null", "-o", "/dev/null",
                                        "http://127.0.0.1:\(port)/slow.bin", "http://127.0.0.1:\(port)/"], timeout: 15)
        let elapsed = Date().timeIntervalSince(start)
        let rows = r.stdout.split(separator: "\n").map { $0.split(separator: " ") }
        let slow = try XCTUnwrap(rows.first { $0.first?.hasSuffix("/slow.bin") ?? false }, r.stdout + r.stderr)
        let fast = try XCTUnwrap(rows.first { $0.first?.hasSuffix("/") ?? false }, r.stdout + r.stderr)
        XCTAssertEqual(slow[1], "60000")
        XCTAssertGreaterThan(Double(slow[2]) ?? 0, 1.5)
        XCTAssertLessThan(Double(fast[2]) ?? 99, 1.0)
        XCTAssertLessThan(elapsed, 8)
    }
}

import Foundation
import TestHarness
import XCTest

/// WebSocket through the proxy, with a real client and server (Debian's python3-websockets) and the
/// configuration every app's docs give (`proxy_set_header Upgrade $http_upgrade; Connection
/// $connection_upgrade`): plain and over TLS on either side, an echo after several idle seconds, large messages,
/// the log line, and a tunnel that outlives a reload.
final class WebSocketTests: XCTestCase {
    static let python = "/usr/bin/python3"
    var vigil: Vigil!
    var pki: TestPKI!
    var servers: [Process] = []
    var scratch = ""

    /// A WebSocket echo server (`serve PORT [CERT KEY]`) and a client (`talk URL IDLE_SECONDS [CA]`) that sends a
    /// text, idles, sends another and 200 kB of binary, and prints what came back.
    static let script = """
        import asyncio, os, ssl, sys, websockets

        async def echo(ws, path=None):
            async for message in ws:
                await ws.send(message)

        async def serve(port, cert=None, key=None):
            ctx = None
            if cert:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cert, key)
            async with websockets.serve(echo, "127.0.0.1", int(port), ssl=ctx):
                await asyncio.Future()

        async def talk(url, idle, ca=None):
            ctx = ssl.create_default_context(cafile=ca) if ca else None
            async with websockets.connect(url, ssl=ctx, max_size=None) as ws:
                await ws.send("hello")
                print("1", await ws.recv(), flush=True)
                await asyncio.sleep(float(idle))
                await ws.send("again")
                print("2", await ws.recv(), flush=True)
                blob = os.urandom(204800)
                await ws.send(blob)
                print("3", await ws.recv() == blob, flush=True)

        if sys.argv[1] == "serve":
            asyncio.run(serve(*sys.argv[2:]))
        else:
            asyncio.run(talk(*sys.argv[2:]))
        """

    override func setUpWithError() throws {
        try XCTSkipUnless(runCommand(WebSocketTests.python, ["-c", "import websockets"]).status == 0,
                          "python3-websockets is not installed (scripts/install-deps installs it)")
        scratch = NSTemporaryDirectory() + "vigil-ws-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try WebSocketTests.script.write(toFile: scratch + "/ws.py", atomically: true, encoding: .utf8)
    }

    override func tearDown() {
        for s in servers { stopProcess(s) }
        vigil?.cleanup()
        pki?.remove()
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func startBackend(tls: Bool = false) throws -> UInt16 {
        let port = freePort()
        var args = [scratch + "/ws.py", "serve", String(port)]
        if tls { args += [pki.cert("backend"), pki.key("backend")] }
        servers.append(try spawnProcess(WebSocketTests.python, args, log: scratch + "/backend-\(port).log"))
        XCTAssertTrue(waitFor(10) { canConnect(port) }, "the websocket backend did not start")
        return port
    }

    func talk(_ url: String, idle: Double, ca: String? = nil) -> RunResult {
        runCommand(WebSocketTests.python, [scratch + "/ws.py", "talk", url, String(idle)] + (ca.map { [$0] } ?? []), timeout: 30)
    }

    func testEchoPlainAndOverTLSOnEitherSide() throws {
        pki = try TestPKI()
        let plainBackend = try startBackend(), tlsBackend = try startBackend(tls: true)
        let port = freePort(), tlsPort = freePort()
        vigil = try Vigil(config: Vigil.config(http: """
            map $http_upgrade $connection_upgrade { default upgrade; '' close; }
            log_format ws '$request_uri $status $body_bytes_sent $request_length $upstream_status';
            server {
                listen 127.0.0.1:\(port);
                listen 127.0.0.1:\(tlsPort) ssl;
                ssl_certificate \(pki.cert("a-ec"));
                ssl_certificate_key \(pki.key("a-ec"));
                access_log logs/ws.log ws;
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection $connection_upgrade;
                proxy_read_timeout 10s;
                location /ws { proxy_pass http://127.0.0.1:\(plainBackend); }
                location /wss-upstream {
                    proxy_pass https://127.0.0.1:\(tlsBackend);
                    proxy_ssl_verify on;
                    proxy_ssl_trusted_certificate \(pki.caCert);
                }
            }
            """))
        _ = try vigil.start()
        for (url, ca) in [("ws://127.0.0.1:\(port)/ws", nil), ("wss://localhost:\(tlsPort)/ws", pki.caCert),
                          ("ws://127.0.0.1:\(port)/wss-upstream", nil)] {
            let r = talk(url, idle: 3, ca: ca)
            XCTAssertEqual(r.status, 0, "\(url): \(r.stderr)")
            XCTAssertEqual(r.stdout, "1 hello\n2 again\n3 True\n", url)
        }
        // One line per tunnel, written when it ends: 101, what went each way.
        XCTAssertTrue(waitFor(5) { ((try? String(contentsOfFile: self.vigil.prefix + "/logs/ws.log", encoding: .utf8)) ?? "")
            .split(separator: "\n").count == 3 })
        let lines = try String(contentsOfFile: vigil.prefix + "/logs/ws.log", encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ") }
        for line in lines {
            XCTAssertEqual(line[1], "101", "\(line)")
            XCTAssertGreaterThan(Int(line[2]) ?? 0, 204_800, "the echoed 200 kB were not counted: \(line)")
            XCTAssertGreaterThan(Int(line[3]) ?? 0, 204_800, "the 200 kB sent were not counted: \(line)")
            XCTAssertEqual(line[4], "101")
        }
        // Without Upgrade the same location is plain HTTP: the backend's refusal comes back as it is.
        XCTAssertEqual(httpGet(port, "/ws")?.status, 426)
        XCTAssertFalse(vigil.errorLog().contains("[alert]"), vigil.errorLog())
    }

    /// A graceful reload does not cut an open tunnel: the old worker keeps it until it ends.
    func testTunnelOutlivesAReload() throws {
        let backend = try startBackend()
        let port = freePort()
        vigil = try Vigil(config: Vigil.config(http: """
            server { listen 127.0.0.1:\(port);
                location / { proxy_pass http://127.0.0.1:\(backend); proxy_http_version 1.1;
                             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; } }
            """))
        let master = try vigil.start()
        let client = try spawnProcess(WebSocketTests.python, [scratch + "/ws.py", "talk", "ws://127.0.0.1:\(port)/", "3"],
                                      log: scratch + "/client.log")
        servers.append(client)
        XCTAssertTrue(waitFor(5) { ((try? String(contentsOfFile: self.scratch + "/client.log", encoding: .utf8)) ?? "").contains("1 hello") })
        let before = Set(childPids(of: master))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(10) { !client.isRunning })
        XCTAssertEqual(try String(contentsOfFile: scratch + "/client.log", encoding: .utf8), "1 hello\n2 again\n3 True\n")
        // With its last connection gone, the old worker exits.
        XCTAssertTrue(waitFor(5) { Set(childPids(of: master)).isDisjoint(with: before) })
    }
}

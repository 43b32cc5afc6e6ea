import Foundation
import Glibc
import XCTest
@testable import Config
import Core
import CShim
import Event
@testable import TLS
@testable import Upstream

/// UpstreamConnection over TLS against a TLS server in the same process: a listening socket whose accepted
/// connection a `TLSStream(accepting:)` serves, both sides driven by the test's loop turns. Certificates come
/// from the openssl tool: a CA, a server certificate for a.test (and 127.0.0.1) it signed, and a second CA
/// that signed nothing here.
final class UpstreamTLSTests: XCTestCase {
    static var dir = ""
    static var serverContext: TLSServerContext!
    /// proxy_ssl_verify off; on with the right CA; on with a CA that did not sign the server's certificate.
    static var plainClient: TLSClientContext!
    static var verifyingClient: TLSClientContext!
    static var wrongCAClient: TLSClientContext!
    static var setupError: String?

    override class func setUp() {
        super.setUp()
        dir = NSTemporaryDirectory() + "vigil-upstream-tls-" + UUID().uuidString.prefix(8)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
            for ca in ["ca", "other"] {
                try openssl(["req", "-x509"] + ec + ["-days", "2", "-subj", "/CN=Vigil test \(ca)",
                            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                            "-keyout", "\(dir)/\(ca).key", "-out", "\(dir)/\(ca).crt"])
            }
            try openssl(["req", "-new"] + ec + ["-subj", "/CN=a.test", "-keyout", "\(dir)/a.key", "-out", "\(dir)/a.csr"])
            try "subjectAltName=DNS:a.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                .write(toFile: "\(dir)/a.ext", atomically: true, encoding: .utf8)
            try openssl(["x509", "-req", "-in", "\(dir)/a.csr", "-CA", "\(dir)/ca.crt", "-CAkey", "\(dir)/ca.key", "-CAcreateserial",
                         "-days", "2", "-extfile", "\(dir)/a.ext", "-out", "\(dir)/a.crt"])
            // The contexts as a configuration makes them: a server block with the certificate, proxy_pass https.
            let conf = try Configuration.parse(text: """
                events {}
                http {
                    server { listen 127.0.0.1:1 ssl; server_name a.test; ssl_certificate a.crt; ssl_certificate_key a.key; }
                    server {
                        location /plain { proxy_pass https://127.0.0.1:1; }
                        location /verify { proxy_pass https://127.0.0.1:1; proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.crt; }
                        location /other { proxy_pass https://127.0.0.1:1; proxy_ssl_verify on; proxy_ssl_trusted_certificate other.crt; }
                    }
                }
                """, file: dir + "/vigil.conf", prefix: dir)
            let bundle = try TLSBundle(config: conf)
            let servers = conf.http!.servers
            serverContext = bundle.context(for: servers[0])
            func client(_ pattern: String) -> TLSClientContext? {
                servers[1].locations.first { $0.pattern == pattern }.flatMap { bundle.context(for: $0) }
            }
            plainClient = client("/plain")
            verifyingClient = client("/verify")
            wrongCAClient = client("/other")
        } catch {
            setupError = "\(error)"
        }
    }

    override class func tearDown() {
        serverContext = nil
        plainClient = nil
        verifyingClient = nil
        wrongCAClient = nil
        try? FileManager.default.removeItem(atPath: dir)
        super.tearDown()
    }

    static func openssl(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ConfigError("openssl \(args.joined(separator: " ")) failed") }
    }

    var loop: EventLoop!
    var listener: (fd: Int32, port: UInt16) = (-1, 0)
    var connection: UpstreamConnection!
    var delegate: RecordingDelegate!
    /// The server's side of the one connection a test makes.
    var accepted: Int32 = -1
    var server: TLSStream?
    var serverProgress: TLSStream.Progress?

    override func setUpWithError() throws {
        if let e = Self.setupError { throw XCTSkip("certificates or contexts could not be made: \(e)") }
        XCTAssertNotNil(Self.serverContext)
        XCTAssertNotNil(Self.plainClient)
        XCTAssertTrue(Self.verifyingClient.verify)
        XCTAssertFalse(Self.plainClient.verify)
        loop = try EventLoop()
        listener = listeningSocket()
        connection = UpstreamConnection(loop: loop)
        delegate = RecordingDelegate()
    }

    override func tearDown() {
        connection?.close()
        connection = nil
        server = nil
        if accepted >= 0 { close(accepted) }
        accepted = -1
        if listener.fd >= 0 { close(listener.fd) }
        listener = (-1, 0)
        loop = nil
    }

    /// Connects with `tls` and runs the loop until the connection reports, serving the server's side between
    /// turns: TLS (`tlsServer`) or plain bytes written once accepted.
    func run(_ tls: UpstreamTLSSetup, tlsServer: Bool = true, plainReply: String = "") {
        start(connection, port: listener.port, delegate: delegate, tls: tls)
        XCTAssertTrue(drive(loop, until: { delegate.heardAnything }, between: serveOnce(tls: tlsServer, plainReply: plainReply)),
                      "no word from the connection in 3 s")
        // Let the server finish its side (it reads the client's Finished after the client is done).
        if tlsServer && delegate.failures.isEmpty {
            drive(loop, for: 1, until: { serverProgress == .done || serverProgress == .failed }, between: serveOnce(tls: true, plainReply: ""))
        }
    }

    func serveOnce(tls: Bool, plainReply: String) -> () -> Void {
        return { [self] in
            if accepted < 0 {
                accepted = acceptOne(listener.fd)
                guard accepted >= 0 else { return }
                if tls {
                    server = TLSStream(accepting: accepted, context: Self.serverContext)
                    XCTAssertNotNil(server)
                } else if !plainReply.isEmpty {
                    XCTAssertEqual(plainReply.withCString { write(accepted, $0, strlen($0)) }, plainReply.utf8.count)
                }
            }
            if let s = server, serverProgress != .done, serverProgress != .failed { serverProgress = s.handshake() }
        }
    }

    func testHandshakeCompletesAndSendsServerName() throws {
        run(UpstreamTLSSetup(context: Self.plainClient, serverName: "a.test", session: nil, verification: .upstream(name: "a.test")))
        XCTAssertEqual(delegate.failureTexts, [])
        XCTAssertEqual(delegate.ready.count, 1)
        XCTAssertEqual(connection.state, .ready)
        let tls = try XCTUnwrap(connection.tls, "a TLS connection keeps its stream")
        XCTAssertEqual(tls.protocolName, "TLSv1.3")
        XCTAssertEqual(serverProgress, .done, "the server finished its side")
        XCTAssertEqual(server?.serverName, "a.test", "the server saw the SNI name")

        // Bytes cross both ways through the streams.
        let request = Array("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".utf8)
        XCTAssertEqual(request.withUnsafeBytes { tls.write($0.baseAddress!, count: $0.count) }, request.count)
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 256)
        drive(loop, for: 2, until: { got.count >= request.count }, between: { [self] in
            let n = buf.withUnsafeMutableBytes { server!.read(into: $0.baseAddress!, count: $0.count) }
            if n > 0 { got += buf[0..<n] }
        })
        XCTAssertEqual(got, request)
    }

    func testNoServerNameSendsNoSNI() throws {
        run(UpstreamTLSSetup(context: Self.plainClient, serverName: nil, session: nil, verification: .chain))
        XCTAssertEqual(delegate.ready.count, 1, "\(delegate.failureTexts)")
        XCTAssertEqual(serverProgress, .done)
        XCTAssertNil(server?.serverName)
    }

    func testVerifiedWithTheRightCAAndName() throws {
        run(UpstreamTLSSetup(context: Self.verifyingClient, serverName: "a.test", session: nil, verification: .upstream(name: "a.test")))
        XCTAssertEqual(delegate.failureTexts, [])
        XCTAssertEqual(delegate.ready.count, 1)
        XCTAssertEqual(connection.state, .ready)
    }

    func testVerifiedByIPAddressInTheCertificate() throws {
        run(UpstreamTLSSetup(context: Self.verifyingClient, serverName: nil, session: nil, verification: .upstream(name: "127.0.0.1")))
        XCTAssertEqual(delegate.failureTexts, [])
        XCTAssertEqual(delegate.ready.count, 1)
    }

    func testWrongNameFailsVerification() throws {
        run(UpstreamTLSSetup(context: Self.verifyingClient, serverName: "b.test", session: nil, verification: .upstream(name: "b.test")))
        XCTAssertEqual(delegate.ready.count, 0)
        XCTAssertEqual(delegate.failureTexts, ["verify(upstream SSL certificate does not match \"b.test\")"])
        XCTAssertTrue(delegate.failureTexts.first?.contains("does not match") ?? false)
        XCTAssertNotEqual(connection.state, .ready)
    }

    func testUntrustedCAFailsVerification() throws {
        run(UpstreamTLSSetup(context: Self.wrongCAClient, serverName: "a.test", session: nil, verification: .upstream(name: "a.test")))
        XCTAssertEqual(delegate.ready.count, 0)
        XCTAssertEqual(delegate.failureTexts, ["verify(upstream SSL certificate verify error: (20:unable to get local issuer certificate))"])
    }

    func testUntrustedCAFailsChainVerificationForChecks() throws {
        run(UpstreamTLSSetup(context: Self.wrongCAClient, serverName: "a.test", session: nil, verification: .chain))
        XCTAssertEqual(delegate.ready.count, 0)
        XCTAssertEqual(delegate.failureTexts, ["verify(certificate verify failed (20: unable to get local issuer certificate))"])
    }

    func testContextThatDoesNotVerifyAcceptsAnyName() throws {
        // proxy_ssl_verify off (nginx's default): the certificate is not judged, whatever the name.
        run(UpstreamTLSSetup(context: Self.plainClient, serverName: "b.test", session: nil, verification: .upstream(name: "b.test")))
        XCTAssertEqual(delegate.failureTexts, [])
        XCTAssertEqual(delegate.ready.count, 1)
    }

    func testPlainTextServerFailsTheHandshake() throws {
        run(UpstreamTLSSetup(context: Self.plainClient, serverName: "a.test", session: nil, verification: .upstream(name: "a.test")),
            tlsServer: false, plainReply: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(delegate.ready.count, 0)
        XCTAssertEqual(delegate.failures.count, 1)
        guard case .handshake(let text)? = delegate.failures.first else { return XCTFail("\(delegate.failureTexts)") }
        XCTAssertTrue(text.hasPrefix("SSL_do_handshake() failed"), text)
        XCTAssertEqual(connection.state, .handshaking)
    }

    func testServerThatClosesDuringTheHandshakeFailsIt() throws {
        start(connection, port: listener.port, delegate: delegate,
              tls: UpstreamTLSSetup(context: Self.plainClient, serverName: "a.test", session: nil, verification: .chain))
        XCTAssertTrue(drive(loop, until: { delegate.heardAnything }, between: { [self] in
            if accepted < 0 {
                accepted = acceptOne(listener.fd)
                if accepted >= 0 { shutdown(accepted, Int32(SHUT_WR)) }   // EOF without a word
            }
        }))
        XCTAssertEqual(delegate.ready.count, 0)
        guard case .handshake(let text)? = delegate.failures.first else { return XCTFail("\(delegate.failureTexts)") }
        XCTAssertEqual(text, "peer closed connection in SSL handshake")
    }
}

import Foundation
import XCTest
@testable import Config
@testable import TLS

/// The TLS target on its own: contexts from real PEM files (made with the openssl tool), nginx's messages for
/// files that do not load, a handshake and a round trip between two streams over a non-blocking socketpair,
/// and the shared session cache.
final class TLSContextTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vigil-tls-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                     "-subj", "/CN=a.test", "-addext", "subjectAltName=DNS:a.test", "-keyout", dir + "/a.key", "-out", dir + "/a.crt"])
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                     "-subj", "/CN=b.test", "-keyout", dir + "/b.key", "-out", dir + "/b.crt"])
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    private func openssl(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "openssl \(args.joined(separator: " "))")
    }

    private func load(_ server: String) throws -> (Configuration, TLSBundle) {
        let text = "events {}\nhttp {\n\(server)\n}\n"
        let conf = try Configuration.parse(text: text, file: dir + "/vigil.conf", prefix: dir)
        return (conf, try TLSBundle(config: conf))
    }

    private func bundleError(_ server: String) -> String {
        do { _ = try load(server); return "" } catch { return "\(error)" }
    }

    func testMessagesForFilesThatDoNotLoad() {
        let conf = dir + "/vigil.conf"
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl;\nssl_certificate missing.crt; ssl_certificate_key a.key; }")
            .hasPrefix("cannot load certificate \"\(dir)/missing.crt\": BIO_new_file() failed (SSL: error:"))
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl;\nssl_certificate missing.crt; ssl_certificate_key a.key; }")
            .hasSuffix(" in \(conf):4"))
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl;\nssl_certificate a.crt;\nssl_certificate_key b.key; }")
            .contains("SSL_CTX_use_PrivateKey(\"\(dir)/b.key\") failed (SSL: error:05800074:x509 certificate routines::key values mismatch) in \(conf):5"))
        XCTAssertEqual(bundleError("server { listen 127.0.0.1:1 ssl; }"),
                       "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive in \(conf):3")
        XCTAssertEqual(bundleError("server { listen 127.0.0.1:1 ssl;\nssl_certificate a.crt; }"),
                       "no \"ssl_certificate_key\" is defined for certificate \"\(dir)/a.crt\" in \(conf):4")
        XCTAssertEqual(bundleError("server { location / { proxy_pass https://127.0.0.1:1;\nproxy_ssl_verify on; } }"),
                       "no proxy_ssl_trusted_certificate for proxy_ssl_verify in \(conf):3")
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl; ssl_certificate a.crt; ssl_certificate_key a.key;\nssl_ciphers NOTHING; }")
            .hasPrefix("SSL_CTX_set_cipher_list(\"NOTHING\") failed (SSL: "))
        XCTAssertEqual(bundleError("server { listen 127.0.0.1:1 ssl; ssl_certificate a.crt; ssl_certificate_key a.key; }"), "")
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl; ssl_certificate a.crt; ssl_certificate_key a.key;\nssl_ecdh_curve nocurve; }")
            .hasPrefix("SSL_CTX_set1_curves_list(\"nocurve\") failed"))
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl; ssl_certificate a.crt; ssl_certificate_key a.key;\nssl_dhparam a.crt; }")
            .hasPrefix("PEM_read_bio_Parameters(\"\(dir)/a.crt\") failed"))
    }

    func testPasswordFileDHParamsAndCurves() throws {
        try openssl(["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", dir + "/dh.pem"])
        try openssl(["pkey", "-in", dir + "/a.key", "-aes256", "-passout", "pass:second", "-out", dir + "/enc.key"])
        try "first\nsecond\n".write(toFile: dir + "/pass.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(bundleError("""
            server { listen 127.0.0.1:1 ssl; ssl_certificate a.crt; ssl_certificate_key enc.key; ssl_password_file pass.txt;
                     ssl_dhparam dh.pem; ssl_ecdh_curve X25519:prime256v1; }
            """), "", "the second password opens the key")
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl; ssl_certificate a.crt;\nssl_certificate_key enc.key; }")
            .hasPrefix("cannot load certificate key \"\(dir)/enc.key\": PEM_read_bio_PrivateKey() failed"),
                      "an encrypted key without a password file fails instead of prompting")
    }

    /// A server stream and a client stream over a socketpair, both non-blocking: the handshake and the reads
    /// and writes report "would block" as recv/send do, and bytes cross both ways.
    func testHandshakeAndRoundTripOverNonBlockingSockets() throws {
        let (conf, bundle) = try load("""
            server { listen 127.0.0.1:1 ssl; server_name a.test; ssl_certificate a.crt; ssl_certificate_key a.key; }
            server { location / { proxy_pass https://127.0.0.1:1; } }
            """)
        let serverCtx = try XCTUnwrap(bundle.context(for: conf.http!.servers[0]))
        let clientCtx = try XCTUnwrap(bundle.context(for: conf.http!.servers[1].locations[0]))
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        let server = try XCTUnwrap(TLSStream(accepting: fds[0], context: serverCtx))
        let slot = TLSSessionSlot()
        let client = try XCTUnwrap(TLSStream(connecting: fds[1], context: clientCtx, serverName: "a.test", session: slot))
        var done = (false, false)
        for _ in 0..<20 where !(done.0 && done.1) {
            if !done.1 { if case .done = client.handshake() { done.1 = true } }
            if !done.0 { if case .done = server.handshake() { done.0 = true } }
        }
        XCTAssertTrue(done.0 && done.1, "handshake did not finish")
        XCTAssertEqual(server.protocolName, "TLSv1.3")
        XCTAssertEqual(server.serverName, "a.test")
        XCTAssertFalse(server.sessionReused)
        XCTAssertEqual(client.verifyPeer(name: "a.test")?.hasPrefix("upstream SSL certificate verify error: (18:"), true,
                       "a self-signed certificate does not verify without a trusted CA")

        var buf = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(buf.withUnsafeMutableBytes { server.read(into: $0.baseAddress!, count: $0.count) }, -1)
        XCTAssertEqual(errno, EAGAIN, "nothing sent yet: would block")
        let request = Array("GET / HTTP/1.1\r\n\r\n".utf8)
        XCTAssertEqual(request.withUnsafeBytes { client.write($0.baseAddress!, count: $0.count) }, request.count)
        var got: [UInt8] = []
        for _ in 0..<10 where got.count < request.count {
            let n = buf.withUnsafeMutableBytes { server.read(into: $0.baseAddress!, count: $0.count) }
            if n > 0 { got += buf[0..<n] }
        }
        XCTAssertEqual(got, request)
        // The server's TLS 1.3 tickets reach the client with its next read: the slot then holds a session.
        _ = buf.withUnsafeMutableBytes { client.read(into: $0.baseAddress!, count: $0.count) }
        XCTAssertNotNil(slot.session, "the client kept the session the server issued")
        server.shutdown()
        XCTAssertEqual(buf.withUnsafeMutableBytes { client.read(into: $0.baseAddress!, count: $0.count) }, 0, "close_notify reads as the end")
    }

    func testSharedSessionCacheStoresFindsExpiresAndEvicts() throws {
        let cache = try XCTUnwrap(SharedSessionCache.named("unit-\(UUID().uuidString)", size: 64 * 1024))
        let now = Int64(time(nil))
        let id = [UInt8](repeating: 7, count: 32), der = [UInt8](repeating: 9, count: 150)
        id.withUnsafeBytes { i in der.withUnsafeBytes { cache.store(id: i, der: $0, expires: now + 60) } }
        XCTAssertEqual(id.withUnsafeBytes { cache.lookup(id: $0) }, der)
        id.withUnsafeBytes { cache.remove(id: $0) }
        XCTAssertNil(id.withUnsafeBytes { cache.lookup(id: $0) })
        id.withUnsafeBytes { i in der.withUnsafeBytes { cache.store(id: i, der: $0, expires: now - 1) } }
        XCTAssertNil(id.withUnsafeBytes { cache.lookup(id: $0) }, "an expired session is not found")
        // Far more sessions than slots: every lookup still answers (the newest win), nothing overflows.
        var found = 0
        for k in 0..<2000 {
            var key = [UInt8](repeating: 0, count: 32)
            key[0] = UInt8(k & 0xff); key[1] = UInt8(k >> 8)
            key.withUnsafeBytes { i in der.withUnsafeBytes { cache.store(id: i, der: $0, expires: now + 60) } }
            if key.withUnsafeBytes({ cache.lookup(id: $0) }) == der { found += 1 }
        }
        XCTAssertEqual(found, 2000, "a session just stored is always found")
        let tooBig = [UInt8](repeating: 1, count: SharedSessionCache.derCapacity + 1)
        id.withUnsafeBytes { i in tooBig.withUnsafeBytes { cache.store(id: i, der: $0, expires: now + 60) } }
        XCTAssertNil(id.withUnsafeBytes { cache.lookup(id: $0) }, "a session larger than a slot is not cached")
        XCTAssertTrue(SharedSessionCache.named("unit-same", size: 65536) === SharedSessionCache.named("unit-same", size: 65536),
                      "a reload that names the same cache with the same size keeps it")
    }

    func testTicketKeyFilesRejectHandshakeCRLAndDataCertificates() throws {
        let conf = dir + "/vigil.conf"
        let server = "server { listen 127.0.0.1:1 ssl; ssl_certificate a.crt; ssl_certificate_key a.key;"
        try Data(repeating: 1, count: 48).write(to: URL(fileURLWithPath: dir + "/48.key"))
        try Data(repeating: 2, count: 80).write(to: URL(fileURLWithPath: dir + "/80.key"))
        try Data(repeating: 3, count: 47).write(to: URL(fileURLWithPath: dir + "/47.key"))
        XCTAssertEqual(bundleError("\(server)\nssl_session_ticket_key 48.key; ssl_session_ticket_key 80.key; }"), "")
        XCTAssertEqual(bundleError("\(server)\nssl_session_ticket_key 80.key;\nssl_session_ticket_key 47.key; }"),
                       "\"\(dir)/47.key\" must be 48 or 80 bytes in \(conf):5")
        XCTAssertEqual(bundleError("\(server)\nssl_session_ticket_key gone.key; }"),
                       "open() \"\(dir)/gone.key\" failed (2: No such file or directory) in \(conf):4")

        // A rejecting default server needs no certificate; then every server on its address needs one or rejects.
        XCTAssertEqual(bundleError("server { listen 127.0.0.1:1 ssl; ssl_reject_handshake on; }\nserver { listen 127.0.0.1:1; server_name b; \(server.dropFirst(8)) }"), "")
        XCTAssertEqual(bundleError("server { listen 127.0.0.1:1 ssl; ssl_reject_handshake on; }\nserver { listen 127.0.0.1:1; server_name b; }"),
                       "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive in \(conf):4")

        // proxy_ssl_crl is read with proxy_ssl_verify on only, as nginx does.
        try "not a CRL\n-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".write(toFile: dir + "/bad.crl", atomically: true, encoding: .utf8)
        let proxy = "server { location / { proxy_pass https://127.0.0.1:1; proxy_ssl_trusted_certificate a.crt;"
        XCTAssertEqual(bundleError("\(proxy)\nproxy_ssl_crl bad.crl; } }"), "")
        let crl = bundleError("\(proxy) proxy_ssl_verify on;\nproxy_ssl_crl bad.crl; } }")
        XCTAssertTrue(crl.hasPrefix("X509_LOOKUP_load_file(\"\(dir)/bad.crl\") failed (SSL: error:"), crl)
        XCTAssertTrue(crl.hasSuffix(" in \(conf):4"), crl)

        // PEM text after data:, and a certificate whose chain is corrupt.
        let pem = try String(contentsOfFile: dir + "/a.crt", encoding: .utf8), key = try String(contentsOfFile: dir + "/a.key", encoding: .utf8)
        XCTAssertEqual(bundleError("server { listen 127.0.0.1:1 ssl; ssl_certificate 'data:\(pem)'; ssl_certificate_key 'data:\(key)'; }"), "")
        try (pem + "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").write(toFile: dir + "/broken.crt", atomically: true, encoding: .utf8)
        XCTAssertTrue(bundleError("server { listen 127.0.0.1:1 ssl;\nssl_certificate broken.crt; ssl_certificate_key a.key; }")
            .hasPrefix("cannot load certificate \"\(dir)/broken.crt\": PEM_read_bio_X509() failed (SSL: error:"))
    }

    /// nginx 1.23.2's keys in a shared cache: once the previous key's sessions have expired, the current key
    /// becomes the previous one (decrypting until its own sessions expire) and a new one encrypts.
    func testSharedTicketKeysRotateWithTheSessionTimeout() throws {
        let cache = try XCTUnwrap(SharedSessionCache.named("unit-keys-\(UUID().uuidString)", size: 64 * 1024))
        var local = [UInt8](repeating: 0, count: 2 * TicketKeys.stride)
        func names(at now: Int64) -> (current: [UInt8], previous: [UInt8]) {
            XCTAssertTrue(local.withUnsafeMutableBytes { cache.syncTicketKeys(now: now, lifetime: 2, into: $0.baseAddress!) })
            let n = TicketKeys.nameOffset
            return (Array(local[n..<n + 16]), Array(local[TicketKeys.stride + n..<TicketKeys.stride + n + 16]))
        }
        let first = names(at: 1000)
        XCTAssertEqual(first.current, first.previous, "at first the previous key is the current one")
        XCTAssertNotEqual(first.current, [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(names(at: 1001).current, first.current, "the key stays while the previous one may still be needed")
        let rotated = names(at: 1003)
        XCTAssertNotEqual(rotated.current, first.current)
        XCTAssertEqual(rotated.previous, first.current, "the old key still decrypts")
        // The key made at 1003 was used then, so its sessions live until 1005; the previous one's until 1003.
        let again = names(at: 1004)
        XCTAssertEqual(again.previous, rotated.current, "a key encrypts for at most a session timeout")
        XCTAssertEqual(names(at: 1005).current, again.current)
    }
}

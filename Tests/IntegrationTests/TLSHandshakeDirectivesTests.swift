import Foundation
import TestHarness
import XCTest

/// The handshake-side directives of issue 26 on the real binary, with `openssl s_client`: ssl_reject_handshake,
/// ssl_session_ticket_key (its keys seen in the tickets clients get, rotation by reload, bad files), and
/// ssl_certificate named by variables.
final class TLSHandshakeDirectivesTests: TLSTestCase {
    /// What s_client says when the server ends the handshake with an unrecognized_name alert.
    func rejected(_ r: TLSClientResult) -> Bool { r.output.contains("unrecognized name") && r.httpStatusLines.isEmpty }

    func testRejectHandshakeForTheDefaultServerAndForANamedOne() throws {
        let defaultRejects = freePort(), namedRejects = freePort()
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(defaultRejects) ssl;
                server_name localhost;
                ssl_reject_handshake on;
            }
            server {
                listen 127.0.0.1:\(defaultRejects);
                server_name b.test;
                \(certs("b"))
                location / { return 200 "b $ssl_server_name\\n"; }
            }
            server {
                listen 127.0.0.1:\(namedRejects) ssl;
                server_name a.test;
                \(certs("a-rsa"))
                location / { return 200 "a $ssl_server_name\\n"; }
            }
            server {
                listen 127.0.0.1:\(namedRejects);
                server_name closed.test;
                ssl_reject_handshake on;
            }
            """)
        // The default server has no certificate and rejects: a client without SNI, or with a name no server
        // has, gets the alert; a name routed to a server with a certificate gets that server.
        let unknown = sClient(port: defaultRejects, ["-servername", "unknown.test"])
        XCTAssertTrue(rejected(unknown), "\(unknown)")
        let noName = sClient(port: defaultRejects, ["-noservername"])
        XCTAssertTrue(rejected(noName), "\(noName)")
        let b = sClient(port: defaultRejects, ["-servername", "b.test"], request: "GET / HTTP/1.0\r\nHost: b.test\r\n\r\n")
        XCTAssertEqual(b.subjectCN, "b.test", "\(b)")
        XCTAssertEqual(b.httpStatusLines, ["HTTP/1.1 200 OK"], "\(b)")
        XCTAssertTrue(b.output.contains("b b.test"), "\(b)")

        // Only the named server rejects: the default one and a client without SNI are served.
        let closed = sClient(port: namedRejects, ["-servername", "closed.test"])
        XCTAssertTrue(rejected(closed), "\(closed)")
        XCTAssertEqual(sClient(port: namedRejects, ["-servername", "a.test"]).httpStatusLines, ["HTTP/1.1 200 OK"])
        XCTAssertEqual(sClient(port: namedRejects, ["-noservername"]).httpStatusLines, ["HTTP/1.1 200 OK"])
        XCTAssertTrue(waitFor(3) { self.logLines(v, "error.log").filter { $0.contains("[info]") && $0.contains("handshake rejected while SSL handshaking") }.count == 3 },
                      v.errorLog())
    }

    /// The first 16 bytes of the ticket s_client printed: the name of the key that sealed it.
    func ticketKeyName(_ r: TLSClientResult) -> [UInt8]? {
        let lines = r.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let i = lines.lastIndex(where: { $0.hasPrefix("TLS session ticket:") }), i + 1 < lines.count,
              lines[i + 1].hasPrefix("0000 - ") else { return nil }
        // `0000 - 00 01 02 03 04 05 06 07-08 09 0a 0b 0c 0d 0e 0f   ................`
        let hex = lines[i + 1].dropFirst(7).prefix(47).replacingOccurrences(of: "-", with: " ")
        let bytes = hex.split(separator: " ").compactMap { UInt8($0, radix: 16) }
        return bytes.count == 16 ? bytes : nil
    }

    func testTicketKeysAreTheFilesAndRotateOnReload() throws {
        let tls = freePort()
        let k1 = scratch + "/k1.key", k2 = scratch + "/k2.key", bad = scratch + "/bad.key"
        let name1 = (0..<16).map { UInt8(0xa0 + $0) }, name2 = (0..<16).map { UInt8(0xb0 + $0) }
        try Data(name1 + [UInt8](repeating: 1, count: 32)).write(to: URL(fileURLWithPath: k1))
        try Data(name2 + [UInt8](repeating: 2, count: 64)).write(to: URL(fileURLWithPath: k2))
        try Data([UInt8](repeating: 3, count: 47)).write(to: URL(fileURLWithPath: bad))
        func config(_ keys: [String]) -> String {
            Vigil.config(http: """
                server {
                    listen 127.0.0.1:\(tls) ssl;
                    \(certs("a-rsa"))
                    \(keys.map { "ssl_session_ticket_key \($0);" }.joined(separator: " "))
                    location / { return 200 "ok\\n"; }
                }
                """)
        }
        let v = try Vigil(config: config([k1]))
        vigils.append(v)
        let master = try v.start()
        let workers = v.waitForWorkers(master, count: 1)
        // The 48-byte key (AES-128) seals tickets in TLS 1.2 and 1.3, under its name.
        for proto in ["-tls1_2", "-tls1_3"] {
            let r = sClient(port: tls, [proto, "-sess_out", scratch + "/s" + proto])
            XCTAssertEqual(r.reused, false, "\(r)")
            XCTAssertEqual(ticketKeyName(r), name1, "\(proto): \(r)")
            XCTAssertEqual(sClient(port: tls, [proto, "-sess_in", scratch + "/s" + proto]).reused, true, proto)
        }

        // A new key first and the old one after it: the new one seals, the old tickets still resume and are
        // renewed under the new key (80 bytes: AES-256).
        try v.write(config: config([k2, k1]))
        XCTAssertEqual(v.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(10) { let now = v.waitForWorkers(master, count: 1); return !now.isEmpty && now != workers }, v.errorLog())
        let renewed = sClient(port: tls, ["-tls1_2", "-sess_in", scratch + "/s-tls1_2"])
        XCTAssertEqual(renewed.reused, true, "\(renewed)")
        XCTAssertEqual(ticketKeyName(renewed), name2, "a ticket under the old key is renewed under the new one: \(renewed)")
        XCTAssertEqual(sClient(port: tls, ["-tls1_3", "-sess_in", scratch + "/s-tls1_3"]).reused, true)
        XCTAssertEqual(ticketKeyName(sClient(port: tls, ["-tls1_2", "-sess_out", scratch + "/s2"])), name2)

        // A file of the wrong size: -t names it with its line, and a reload keeps the running keys.
        try v.write(config: config([bad, k2]))
        let t = v.vigil(["-t"])
        XCTAssertEqual(t.status, 1, t.stderr)
        let line = try XCTUnwrap(configLine(v, containing: "ssl_session_ticket_key"))
        XCTAssertTrue(t.stderr.contains("[emerg] \"\(bad)\" must be 48 or 80 bytes in \(v.confPath):\(line)"), t.stderr)
        let before = v.waitForWorkers(master, count: 1)
        XCTAssertEqual(kill(master, SIGHUP), 0)
        XCTAssertTrue(waitFor(5) { v.errorLog().contains("must be 48 or 80 bytes") }, v.errorLog())
        usleep(300_000)
        XCTAssertEqual(childPids(of: master), before, "a failed reload must not replace the workers")
        XCTAssertEqual(sClient(port: tls, ["-tls1_2", "-sess_in", scratch + "/s2"]).reused, true, "the running keys stay")

        // Without the old key, its tickets no longer resume: a full handshake instead.
        try v.write(config: config([k2]))
        XCTAssertEqual(v.vigil(["-s", "reload"]).status, 0)
        XCTAssertTrue(waitFor(10) { let now = v.waitForWorkers(master, count: 1); return !now.isEmpty && now != before }, v.errorLog())
        let dropped = sClient(port: tls, ["-tls1_3", "-sess_in", scratch + "/s-tls1_3"])
        XCTAssertEqual(dropped.reused, false, "\(dropped)")
        XCTAssertEqual(dropped.httpStatusLines, ["HTTP/1.1 200 OK"], "\(dropped)")
    }

    func testCertificateNamedByVariablesFollowsSNIAndRenewedFiles() throws {
        let tls = freePort()
        // The files are read when a handshake names them, by the worker, as `user` (nobody): it must be able to.
        func readable(_ from: String, _ to: String) throws {
            try FileManager.default.copyItem(atPath: from, toPath: to)
            XCTAssertEqual(chmod(to, 0o644), 0)
        }
        for name in ["b", "a-ec", "a-rsa"] {
            try readable(pki.cert(name), scratch + "/" + name + ".crt")
            try readable(pki.key(name), scratch + "/" + name + ".key")
        }
        let site = scratch + "/site"
        try readable(pki.cert("a-rsa"), site + ".crt")
        try readable(pki.key("a-rsa"), site + ".key")
        let (v, _) = try startVigil("""
            map $ssl_server_name $pair {
                b.test      \(scratch)/b;
                site.test   \(site);
                default     \(scratch)/a-ec;
            }
            server {
                listen 127.0.0.1:\(tls) ssl;
                ssl_certificate $pair.crt;
                ssl_certificate_key $pair.key;
                location / { return 200 "ok\\n"; }
            }
            """)
        XCTAssertEqual(sClient(port: tls, ["-servername", "b.test"]).subjectCN, "b.test")
        let none = sClient(port: tls, ["-noservername"])
        XCTAssertEqual(none.subjectCN, "a.test", "\(none)")
        XCTAssertEqual(none.serverKeyBits, 256, "the map's default names the ECDSA pair: \(none)")
        let first = sClient(port: tls, ["-servername", "site.test"])
        XCTAssertEqual(first.serverKeyBits, 2048, "\(first)")
        XCTAssertEqual(first.httpStatusLines, ["HTTP/1.1 200 OK"], "\(first)")
        // The files are replaced (as a renewal does): the next handshake serves the new pair.
        for ext in ["crt", "key"] {
            try readable(scratch + "/b." + ext, site + ".new")
            XCTAssertEqual(rename(site + ".new", site + "." + ext), 0)
        }
        XCTAssertEqual(sClient(port: tls, ["-servername", "site.test"]).subjectCN, "b.test")

        // A name whose files are missing fails that handshake, and says why in the error log.
        try FileManager.default.removeItem(atPath: site + ".crt")
        let gone = sClient(port: tls, ["-servername", "site.test"])
        XCTAssertEqual(gone.httpStatusLines, [], "\(gone)")
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("[error]") && v.errorLog().contains("cannot load certificate \"\(site).crt\": BIO_new_file() failed") },
                      v.errorLog())
        XCTAssertEqual(sClient(port: tls, ["-servername", "b.test"]).httpStatusLines, ["HTTP/1.1 200 OK"], "other names are still served")
    }
}

import Foundation
import TestHarness
import XCTest

/// The upstream side of issue 26 on the real binary: proxy_ssl_crl (CRLs made with `openssl ca` from the test
/// PKI's CA) and proxy_ssl_certificate named by variables. The https backend is a server of the same Vigil.
final class TLSUpstreamCertificateTests: TLSTestCase {
    /// `openssl ca` over the test CA, for its CRLs: `revoking` the named certificates first.
    func makeCRL(_ name: String, revoking: [String] = []) throws -> String {
        let dir = scratch + "/ca-" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "".write(toFile: dir + "/index.txt", atomically: true, encoding: .utf8)
        try """
            [ ca ]
            default_ca = test
            [ test ]
            database = \(dir)/index.txt
            default_md = sha256
            default_crl_days = 1

            """.write(toFile: dir + "/ca.conf", atomically: true, encoding: .utf8)
        let ca = ["-config", dir + "/ca.conf", "-keyfile", pki.key("ca"), "-cert", pki.caCert]
        for cert in revoking {
            let r = runCommand(Tools.openssl, ["ca"] + ca + ["-revoke", pki.cert(cert)], timeout: 30)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let out = scratch + "/" + name + ".crl"
        let r = runCommand(Tools.openssl, ["ca"] + ca + ["-gencrl", "-out", out], timeout: 30)
        XCTAssertEqual(r.status, 0, r.stderr)
        return out
    }

    func testCRLRevokesTheUpstreamCertificateAndACorruptOneIsAConfigError() throws {
        // A port of the backend per location: a failed peer must not make another location's peer look down.
        let backend = freePort(), backend2 = freePort(), backend3 = freePort(), port = freePort()
        let empty = try makeCRL("empty"), revoked = try makeCRL("revoked", revoking: ["backend"])
        let corrupt = scratch + "/corrupt.crl"
        try "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n".write(toFile: corrupt, atomically: true, encoding: .utf8)
        func config(_ revokedCRL: String) -> String {
            Vigil.config(http: """
                proxy_ssl_verify on;
                proxy_ssl_trusted_certificate \(pki.caCert);
                proxy_ssl_name backend.test;
                server {
                    listen 127.0.0.1:\(backend) ssl; listen 127.0.0.1:\(backend2) ssl; listen 127.0.0.1:\(backend3) ssl;
                    \(certs("backend"))
                    location / { return 200 "backend\\n"; }
                }
                server {
                    listen 127.0.0.1:\(port);
                    location /empty { proxy_pass https://127.0.0.1:\(backend); proxy_ssl_crl \(empty); }
                    location /revoked { proxy_pass https://127.0.0.1:\(backend2); proxy_ssl_crl \(revokedCRL); }
                    location /unchecked { proxy_pass https://127.0.0.1:\(backend3); proxy_ssl_verify off; proxy_ssl_crl \(corrupt); }
                }
                """)
        }
        let v = try Vigil(config: config(revoked))
        vigils.append(v)
        let master = try v.start()
        let workers = v.waitForWorkers(master, count: 1)
        XCTAssertEqual(httpGet(port, "/empty")?.status, 200, v.errorLog())
        XCTAssertEqual(httpGet(port, "/revoked")?.status, 502)
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("upstream SSL certificate verify error: (23:certificate revoked) while SSL handshaking to upstream") },
                      v.errorLog())
        XCTAssertEqual(httpGet(port, "/unchecked")?.body, "backend\n", "without proxy_ssl_verify the CRL is not read, as in nginx")

        // A corrupt CRL: -t says so with nginx's words and the directive's line; a reload keeps serving.
        try v.write(config: config(corrupt))
        let t = v.vigil(["-t"])
        XCTAssertEqual(t.status, 1, t.stderr)
        let line = try XCTUnwrap(configLine(v, containing: "location /revoked"))
        XCTAssertTrue(t.stderr.contains("[emerg] X509_LOOKUP_load_file(\"\(corrupt)\") failed (SSL: error:"), t.stderr)
        XCTAssertTrue(t.stderr.contains(" in \(v.confPath):\(line)\n"), t.stderr)
        XCTAssertEqual(kill(master, SIGHUP), 0)
        XCTAssertTrue(waitFor(5) { v.errorLog().contains("X509_LOOKUP_load_file(\"\(corrupt)\") failed") }, v.errorLog())
        usleep(300_000)
        XCTAssertEqual(childPids(of: master), workers, "a failed reload must not replace the workers")
        XCTAssertEqual(httpGet(port, "/empty")?.status, 200)
        XCTAssertEqual(httpGet(port, "/revoked")?.status, 502)
    }

    func testClientCertificateNamedByVariablesPerRequest() throws {
        let backend = freePort(), port = freePort()
        // Read by the worker (as `user`, nobody) when a request names them.
        for name in ["client", "b", "a-rsa"] {
            try FileManager.default.copyItem(atPath: pki.cert(name), toPath: scratch + "/" + name + ".crt")
            try FileManager.default.copyItem(atPath: pki.key(name), toPath: scratch + "/" + name + ".key")
        }
        try FileManager.default.copyItem(atPath: pki.encryptedKey, toPath: scratch + "/enc.key")
        for file in try FileManager.default.contentsOfDirectory(atPath: scratch) { XCTAssertEqual(chmod(scratch + "/" + file, 0o644), 0) }
        let (v, _) = try startVigil("""
            server {
                listen 127.0.0.1:\(backend) ssl;
                \(certs("backend"))
                ssl_verify_client optional;
                ssl_client_certificate \(pki.caCert);
                location / { return 200 "$ssl_client_verify $ssl_client_s_dn\\n"; }
            }
            server {
                listen 127.0.0.1:\(port);
                proxy_ssl_session_reuse off;
                location / {
                    proxy_pass https://127.0.0.1:\(backend);
                    proxy_ssl_certificate \(scratch)/$arg_c.crt;
                    proxy_ssl_certificate_key \(scratch)/$arg_c.key;
                }
                location /none {
                    proxy_pass https://127.0.0.1:\(backend);
                    proxy_ssl_certificate $arg_c;
                    proxy_ssl_certificate_key $arg_c;
                }
                location /encrypted {
                    proxy_pass https://127.0.0.1:\(backend);
                    proxy_ssl_certificate \(scratch)/$arg_c.crt;
                    proxy_ssl_certificate_key \(scratch)/enc.key;
                    proxy_ssl_password_file \(pki.passwordFile);
                }
            }
            """)
        XCTAssertEqual(httpGet(port, "/?c=client")?.body, "SUCCESS CN=client.test\n", v.errorLog())
        XCTAssertEqual(httpGet(port, "/?c=b")?.body, "SUCCESS CN=b.test\n", "each request names its own")
        XCTAssertEqual(httpGet(port, "/?c=client")?.body, "SUCCESS CN=client.test\n", "a pair already loaded")
        XCTAssertEqual(httpGet(port, "/encrypted?c=a-rsa")?.body, "SUCCESS CN=a.test\n", "the key opened with the password file")
        XCTAssertEqual(httpGet(port, "/none")?.body, "NONE \n", "an empty value sends no certificate")
        // A pair that does not load is the request's 500, with nginx's message.
        XCTAssertEqual(httpGet(port, "/?c=missing")?.status, 500)
        XCTAssertTrue(waitFor(3) { v.errorLog().contains("[error]") && v.errorLog().contains("cannot load certificate \"\(scratch)/missing.crt\": BIO_new_file() failed") },
                      v.errorLog())
    }
}

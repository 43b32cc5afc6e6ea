import Foundation
import TestHarness
import XCTest

/// `ssl_verify_client` on the real binary with curl as the client: the test PKI's CA signs `client`
/// (CN=client.test); `other-ca` is a self-signed certificate the server does not trust. Statuses, pages and
/// variable values are those Debian's nginx 1.22 gives with the same configuration.
final class TLSClientCertificateTests: TLSTestCase {
    func testVerifyClientOnOptionalAndOptionalNoCA() throws {
        try requireCurl()
        let on = freePort(), optional = freePort(), noCA = freePort()
        try startVigil("""
            ssl_client_certificate \(pki.caCert);
            server {
                listen 127.0.0.1:\(on) ssl;
                \(certs("a-rsa"))
                ssl_verify_client on;
                location / { return 200 "$ssl_client_verify $ssl_client_s_dn"; }
            }
            server {
                listen 127.0.0.1:\(optional) ssl;
                \(certs("a-rsa"))
                ssl_verify_client optional;
                location / { return 200 "$ssl_client_verify $ssl_client_s_dn|$ssl_client_i_dn"; }
            }
            server {
                listen 127.0.0.1:\(noCA) ssl;
                \(certs("a-rsa"))
                ssl_verify_client optional_no_ca;
                location / { return 200 "$ssl_client_verify $ssl_client_s_dn"; }
            }
            """)
        let signed = ["--cert", pki.cert("client"), "--key", pki.key("client")]
        let untrusted = ["--cert", pki.cert("other-ca"), "--key", pki.key("other-ca")]

        let good = curl("https://a.test:\(on)/", signed)
        XCTAssertEqual(good.code, 200, "\(good)")
        XCTAssertEqual(good.body, "SUCCESS CN=client.test")
        // Without a certificate the handshake succeeds and the request gets nginx's 496 page, as a 400.
        let none = curl("https://a.test:\(on)/")
        XCTAssertEqual(none.code, 400, "\(none)")
        XCTAssertTrue(none.body.contains("<center>No required SSL certificate was sent</center>"), "\(none)")
        let bad = curl("https://a.test:\(on)/", untrusted)
        XCTAssertEqual(bad.code, 400, "\(bad)")
        XCTAssertTrue(bad.body.contains("<center>The SSL certificate error</center>"), "\(bad)")

        // optional: no certificate is fine, an unverifiable one is not.
        XCTAssertEqual(curl("https://a.test:\(optional)/").body, "NONE |")
        XCTAssertEqual(curl("https://a.test:\(optional)/", signed).body, "SUCCESS CN=client.test|CN=Vigil Test CA")
        XCTAssertEqual(curl("https://a.test:\(optional)/", untrusted).code, 400)

        // optional_no_ca: an unknown issuer passes, and the variable says why it did not verify.
        let unknown = curl("https://a.test:\(noCA)/", untrusted)
        XCTAssertEqual(unknown.code, 200, "\(unknown)")
        XCTAssertEqual(unknown.body, "FAILED:self-signed certificate CN=Other Test CA")
    }
}

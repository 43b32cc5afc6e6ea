#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Config
import Core

/// The client's certificate: the check nginx makes before a request is processed, and the `$ssl_client_*`
/// variables (each empty without a certificate, as nginx's).
extension TLSStream {
    /// Why `ssl_verify_client` refuses the request: nginx's 495 ("The SSL certificate error") or 496 ("No
    /// required SSL certificate was sent"), with the line it logs at info; nil when the request may go on.
    public func clientCertificateRefusal(_ mode: VerifyClient) -> (status: Int, message: String)? {
        guard mode != .off else { return nil }
        let rc = SSL_get_verify_result(ssl)
        if rc != Int(X509_V_OK) && !(mode == .optionalNoCA && TLSStream.issuerUnknown(Int32(rc))) {
            forgetSession()
            return (495, "client SSL certificate verify error: (\(rc):\(String(cString: X509_verify_cert_error_string(rc))))")
        }
        if mode == .on {
            guard let cert = SSL_get1_peer_certificate(ssl) else {
                forgetSession()
                return (496, "client sent no required SSL certificate")
            }
            X509_free(cert)
        }
        return nil
    }

    /// nginx's ngx_ssl_verify_error_optional: the errors `optional_no_ca` lets through.
    static func issuerUnknown(_ rc: Int32) -> Bool {
        [X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
         X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE].contains(rc)
    }

    /// A refused client's session must not resume past the check (it would skip the handshake, not the check,
    /// but nginx drops it all the same).
    private func forgetSession() {
        if let session = SSL_get_session(ssl) { _ = SSL_CTX_remove_session(sessionContext, session) }
    }

    private func withPeerCertificate(_ body: (OpaquePointer) -> String) -> String {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return "" }
        defer { X509_free(cert) }
        return body(cert)
    }

    /// What `write` puts into a memory BIO, as text.
    private static func printed(_ write: (OpaquePointer) -> Int32) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard write(bio) > 0 else { OpenSSLError.clear(); return "" }
        var bytes = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
        let n = BIO_read(bio, &bytes, Int32(bytes.count))
        return String(decoding: bytes.prefix(Int(max(0, n))), as: UTF8.self)
    }

    /// `$ssl_ciphers`: the ciphers the client offered, `:`-joined; those OpenSSL does not know as `0x…`.
    public var offeredCiphers: String {
        let width = Int(vigil_SSL_get0_raw_cipherlist(ssl, nil))
        var list: UnsafeMutablePointer<UInt8>?
        let total = Int(vigil_SSL_get0_raw_cipherlist(ssl, &list))
        guard width > 0, total > 0, let list else { return "" }
        return stride(from: 0, to: total - width + 1, by: width).map { i in
            if let c = SSL_CIPHER_find(ssl, list + i) { return String(cString: SSL_CIPHER_get_name(c)) }
            return "0x" + (0..<width).map { let b = list[i + $0]; return (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
        }.joined(separator: ":")
    }

    /// `$ssl_session_id`: the session's id in lower-case hex (empty for a TLS 1.3 ticket-less one).
    public var sessionID: String {
        guard let session = SSL_get_session(ssl) else { return "" }
        var len: UInt32 = 0
        guard let id = SSL_SESSION_get_id(session, &len) else { return "" }
        return UnsafeBufferPointer(start: id, count: Int(len)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// `$ssl_client_verify`: SUCCESS, FAILED:reason or NONE.
    public var clientVerify: String {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return "NONE" }
        X509_free(cert)
        let rc = SSL_get_verify_result(ssl)
        return rc == Int(X509_V_OK) ? "SUCCESS" : "FAILED:" + String(cString: X509_verify_cert_error_string(rc))
    }

    /// `$ssl_client_s_dn` and `$ssl_client_i_dn`: RFC 2253 names.
    public var clientSubject: String {
        withPeerCertificate { cert in TLSStream.printed { X509_NAME_print_ex($0, X509_get_subject_name(cert), 0, VIGIL_XN_FLAG_RFC2253) } }
    }
    public var clientIssuer: String {
        withPeerCertificate { cert in TLSStream.printed { X509_NAME_print_ex($0, X509_get_issuer_name(cert), 0, VIGIL_XN_FLAG_RFC2253) } }
    }
    /// `$ssl_client_s_dn_legacy`, `$ssl_client_i_dn_legacy`: X509_NAME_oneline's `/C=…/CN=…`.
    public var clientSubjectLegacy: String { withPeerCertificate { TLSStream.oneline(X509_get_subject_name($0)) } }
    public var clientIssuerLegacy: String { withPeerCertificate { TLSStream.oneline(X509_get_issuer_name($0)) } }
    private static func oneline(_ name: OpaquePointer?) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        guard X509_NAME_oneline(name, &buf, Int32(buf.count)) != nil else { return "" }
        return String(cString: buf)
    }
    /// `$ssl_client_serial`: upper-case hex, as i2a_ASN1_INTEGER writes it.
    public var clientSerial: String {
        withPeerCertificate { cert in TLSStream.printed { i2a_ASN1_INTEGER($0, X509_get_serialNumber(cert)) } }
    }
    /// `$ssl_client_fingerprint`: the SHA-1 of the DER certificate, lower-case hex.
    public var clientFingerprint: String {
        withPeerCertificate { cert in
            var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var len: UInt32 = 0
            guard X509_digest(cert, EVP_sha1(), &md, &len) == 1 else { return "" }
            return md.prefix(Int(len)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        }
    }
    /// `$ssl_client_raw_cert`: the PEM certificate.
    public var clientRawCertificate: String {
        withPeerCertificate { cert in TLSStream.printed { PEM_write_bio_X509($0, cert) } }
    }
    /// `$ssl_client_cert`: the PEM without its last newline, each line after the first indented by a tab
    /// (the old way of putting it in a header).
    public var clientCertificate: String {
        var pem = clientRawCertificate
        guard !pem.isEmpty else { return "" }
        pem.removeLast()
        return pem.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n\t")
    }
    /// `$ssl_client_escaped_cert`: the PEM escaped as a URI component.
    public var clientEscapedCertificate: String { URIText.escaped(clientRawCertificate, .component) }

    /// `$ssl_client_v_start`, `$ssl_client_v_end`: as ASN1_TIME_print writes them ("Jan  1 00:00:00 2030 GMT").
    public var clientValidFrom: String {
        withPeerCertificate { cert in TLSStream.printed { ASN1_TIME_print($0, X509_get0_notBefore(cert)) } }
    }
    public var clientValidUntil: String {
        withPeerCertificate { cert in TLSStream.printed { ASN1_TIME_print($0, X509_get0_notAfter(cert)) } }
    }
    /// `$ssl_client_v_remain`: whole days left, 0 when less than one is.
    public var clientValidRemain: String {
        withPeerCertificate { cert in
            var days: Int32 = 0, seconds: Int32 = 0
            guard ASN1_TIME_diff(&days, &seconds, nil, X509_get0_notAfter(cert)) == 1 else { return "" }
            return Int(days) * 86400 + Int(seconds) < 86400 ? "0" : String(days)
        }
    }
}

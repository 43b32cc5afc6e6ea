#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Config
import Core

/// The connection's side of a server handshake: the `server` block a client's SNI routes to, the
/// certificates its variables name, and whether that server speaks HTTP/2 (asked after SNI, when the client
/// offers protocols by ALPN).
public protocol TLSServerNameHandler: AnyObject {
    /// The context of the server block `name` routes to (nil: the client sent none, which is the default
    /// server's); nil when that server has none.
    func tlsContext(forServerName name: String?) -> TLSServerContext?
    /// Renders `context`'s variable certificates for this connection and uses them (`use(_:)`); false fails
    /// the handshake, after logging why.
    func tlsUseCertificates(of context: TLSServerContext, on stream: TLSStream) -> Bool
    var tlsOffersHTTP2: Bool { get }
}

/// One TLS connection over a non-blocking socket. The event loop drives it: every call returns at once, and
/// "would block" comes back as recv/send do (-1 with errno EAGAIN), whichever direction OpenSSL waits for,
/// so callers keep their plain-socket code paths and only the system call differs.
public final class TLSStream: SecureStream {
    let ssl: OpaquePointer
    /// Why the last call failed, in nginx's words (`SSL_do_handshake() failed (SSL: …)`).
    public private(set) var failure = ""
    /// What the handshake is waiting for, when `handshake()` answers `.wantRead`/`.wantWrite`.
    public enum Progress { case done, wantRead, wantWrite, failed }

    /// Not retained: the handler (a client connection) owns this stream.
    public unowned(unsafe) var nameHandler: TLSServerNameHandler?
    /// Where an upstream's new session goes (proxy_ssl_session_reuse), set before the handshake.
    public var sessionSlot: TLSSessionSlot?
    /// The context the connection started on: OpenSSL takes sessions and tickets from it, whatever context
    /// SNI chooses later, and there is no call to ask it for that one.
    let sessionContext: OpaquePointer
    /// ssl_reject_handshake refused the name the client sent (or the default server refused the lack of one).
    private var rejected = false

    private init?(context: OpaquePointer, fd: Int32) {
        guard let s = SSL_new(context) else { return nil }
        ssl = s
        sessionContext = context
        guard SSL_set_fd(s, fd) == 1 else { SSL_free(s); return nil }
        SSL_set_ex_data(s, 0, Unmanaged.passUnretained(self).toOpaque())
    }

    /// The server side of an accepted connection.
    public convenience init?(accepting fd: Int32, context: TLSServerContext) {
        self.init(context: context.raw, fd: fd)
        SSL_set_accept_state(ssl)
    }

    /// The client side of a connection to an upstream or a check peer; `serverName` goes into SNI.
    public convenience init?(connecting fd: Int32, context: TLSClientContext, serverName: String?, session: TLSSessionSlot?) {
        self.init(context: context.raw, fd: fd)
        SSL_set_connect_state(ssl)
        if let serverName, !serverName.isEmpty { _ = vigil_SSL_set_tlsext_host_name(ssl, serverName) }
        if let session {
            sessionSlot = session
            if let saved = session.session { SSL_set_session(ssl, saved) }
        }
    }

    /// Marked as shut down before it goes: OpenSSL otherwise takes a connection freed without close_notify
    /// for a broken one and makes its session unresumable (and drops it from the server's cache), which
    /// would defeat resumption for every peer that simply closes (nginx marks it the same way).
    deinit {
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN)
        SSL_free(ssl)
    }

    public func handshake() -> Progress {
        OpenSSLError.clear()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .done }
        let e = SSL_get_error(ssl, rc)
        switch e {
        case VIGIL_SSL_ERROR_WANT_READ: return .wantRead
        case VIGIL_SSL_ERROR_WANT_WRITE: return .wantWrite
        case VIGIL_SSL_ERROR_SYSCALL where errno != 0:
            let err = errno
            failure = "SSL_do_handshake() failed (\(Errno.text(err)))"
        case VIGIL_SSL_ERROR_SYSCALL, VIGIL_SSL_ERROR_ZERO_RETURN:
            failure = "peer closed connection in SSL handshake"
        case _ where rejected:
            OpenSSLError.clear()
            failure = "handshake rejected"
        default:
            failure = "SSL_do_handshake() failed" + OpenSSLError.drain()
        }
        return .failed
    }

    /// recv's contract: bytes read, 0 at the end of the stream (close_notify or a plain close), -1 with
    /// errno set (EAGAIN while a record is incomplete).
    @inline(__always)
    public func read(into p: UnsafeMutableRawPointer, count: Int) -> Int {
        OpenSSLError.clear()
        let rc = SSL_read(ssl, p, Int32(min(count, Int(Int32.max))))
        if rc > 0 { return Int(rc) }
        return failed(rc, "SSL_read()")
    }

    /// send's contract: bytes written (records may go out partially: SSL_MODE_ENABLE_PARTIAL_WRITE), or -1
    /// with errno set. A retry after EAGAIN must offer the same bytes again, as the output queues do.
    @inline(__always)
    public func write(_ p: UnsafeRawPointer, count: Int) -> Int {
        OpenSSLError.clear()
        let rc = SSL_write(ssl, p, Int32(min(count, Int(Int32.max))))
        if rc > 0 { return Int(rc) }
        return failed(rc, "SSL_write()")
    }

    private func failed(_ rc: Int32, _ call: String) -> Int {
        let saved = errno
        switch SSL_get_error(ssl, rc) {
        case VIGIL_SSL_ERROR_WANT_READ, VIGIL_SSL_ERROR_WANT_WRITE:
            errno = EAGAIN
            return -1
        case VIGIL_SSL_ERROR_ZERO_RETURN:
            return 0
        case VIGIL_SSL_ERROR_SYSCALL:
            if saved == 0 { return 0 }
            failure = "\(call) failed (\(Errno.text(saved)))"
            errno = saved
            return -1
        default:
            failure = "\(call) failed" + OpenSSLError.drain()
            errno = EPROTO
            return -1
        }
    }

    /// Whether OpenSSL holds bytes epoll cannot report: decrypted ones of a record read in part, or (with
    /// read-ahead) records already read from the socket.
    public var hasPending: Bool { SSL_has_pending(ssl) == 1 }

    /// Sends close_notify without waiting for the peer's (nginx does the same on a clean close).
    public func shutdown() {
        OpenSSLError.clear()
        if SSL_is_init_finished(ssl) == 1 { _ = SSL_shutdown(ssl) }
        OpenSSLError.clear()
    }

    // MARK: what the connection negotiated ($ssl_* variables)

    public var protocolName: String { String(cString: SSL_get_version(ssl)) }
    public var cipherName: String { SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "" }
    public var serverName: String? { SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) } }
    public var sessionReused: Bool { SSL_session_reused(ssl) == 1 }
    /// `$ssl_curve`: the key exchange group, by OpenSSL's short name (`prime256v1`, `X25519`), or `0x…`
    /// when OpenSSL has no name for it; empty without one (TLS 1.2 with RSA key exchange).
    public var curveName: String {
        let nid = vigil_SSL_get_negotiated_group(ssl)
        return nid == NID_undef ? "" : TLSStream.groupName(nid)
    }
    /// `$ssl_curves`: the groups the client offered, joined with `:`.
    public var offeredCurves: String {
        let n = vigil_SSL_get1_curves(ssl, nil)
        guard n > 0 else { return "" }
        var nids = [Int32](repeating: 0, count: Int(n))
        let got = Int(vigil_SSL_get1_curves(ssl, &nids))
        return nids.prefix(max(0, got)).map(TLSStream.groupName).joined(separator: ":")
    }

    /// nginx's spelling: OBJ_nid2sn, else the group's code point as `0x%04x`.
    static func groupName(_ nid: Int32) -> String {
        if nid & VIGIL_TLSEXT_nid_unknown == 0, let sn = OBJ_nid2sn(nid) { return String(cString: sn) }
        let code = String(nid & 0xFFFF, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 4 - code.count)) + code
    }

    /// A certificate named by variables, for this connection only.
    public func use(_ pair: CertificatePair) throws { try pair.use(onConnection: ssl) }

    /// The upstream certificate check nginx makes after the handshake: the chain (its verify result) and
    /// then the name. nil when both pass; otherwise nginx's message.
    public func verifyPeer(name: String?) -> String? {
        let result = SSL_get_verify_result(ssl)
        if result != Int(X509_V_OK) {
            return "upstream SSL certificate verify error: (\(result):\(String(cString: X509_verify_cert_error_string(result))))"
        }
        guard let cert = SSL_get1_peer_certificate(ssl) else { return "upstream server does not have a certificate" }
        defer { X509_free(cert) }
        guard let name, !name.isEmpty else { return nil }
        let matches = Resolver.isNumericAddress(name) ? X509_check_ip_asc(cert, name, 0) == 1 : X509_check_host(cert, name, name.utf8.count, 0, nil) == 1
        return matches ? nil : "upstream SSL certificate does not match \"\(name)\""
    }

    /// The verify result alone, for checks: `certificate verify failed (20: unable to get local issuer certificate)`.
    public var verifyFailure: String? {
        let result = SSL_get_verify_result(ssl)
        guard result != Int(X509_V_OK) else { return nil }
        return "certificate verify failed (\(result): \(String(cString: X509_verify_cert_error_string(result))))"
    }

    // MARK: callbacks

    static func stream(of ssl: OpaquePointer?) -> TLSStream? {
        guard let ssl, let raw = SSL_get_ex_data(ssl, 0) else { return nil }
        return Unmanaged<TLSStream>.fromOpaque(raw).takeUnretainedValue()
    }

    /// SNI (OpenSSL calls this without a name too): switch to the context of the server block that answers the
    /// name, and end the handshake with nginx's unrecognized_name alert if that server rejects handshakes.
    static let serverNameCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = { ssl, alert, _ in
        let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0).lowercased() }
        guard let ssl, let stream = TLSStream.stream(of: ssl), let handler = stream.nameHandler,
              let ctx = handler.tlsContext(forServerName: name) else { return VIGIL_SSL_TLSEXT_ERR_OK }
        if ctx.rejectsHandshake {
            stream.rejected = true
            alert?.pointee = VIGIL_SSL_AD_UNRECOGNIZED_NAME
            return VIGIL_SSL_TLSEXT_ERR_ALERT_FATAL
        }
        if ctx.raw != SSL_get_SSL_CTX(ssl) {
            SSL_set_SSL_CTX(ssl, ctx.raw)
            // SSL_set_SSL_CTX keeps the first context's verify settings: take the named server's.
            SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx.raw), SSL_CTX_get_verify_callback(ctx.raw))
            SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx.raw))
        }
        return VIGIL_SSL_TLSEXT_ERR_OK
    }

    /// ALPN, as nginx's: `h2` when the client offers it and the server (the one SNI chose) speaks HTTP/2, else
    /// HTTP/1.x; a client offering none of them gets a no_application_protocol alert.
    static let alpnCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
                                             UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?) -> Int32 = { ssl, out, outlen, offered, offeredLength, _ in
        let h2 = TLSStream.stream(of: ssl)?.nameHandler?.tlsOffersHTTP2 ?? false
        let ours = h2 ? alpnWithH2 : alpnHTTP1
        var chosen: UnsafeMutablePointer<UInt8>?
        let rc = ours.withUnsafeBufferPointer { p in
            SSL_select_next_proto(&chosen, outlen, p.baseAddress, UInt32(p.count), offered, offeredLength)
        }
        guard rc == OPENSSL_NPN_NEGOTIATED else { return VIGIL_SSL_TLSEXT_ERR_ALERT_FATAL }
        out?.pointee = UnsafePointer(chosen)
        return VIGIL_SSL_TLSEXT_ERR_OK
    }
    /// Wire-format protocol lists (a length byte before each name), in our order of preference; static, as
    /// OpenSSL points into them after the callback returns.
    private static let alpnWithH2: [UInt8] = Array("\u{2}h2\u{8}http/1.1\u{8}http/1.0\u{8}http/0.9".utf8)
    private static let alpnHTTP1: [UInt8] = Array("\u{8}http/1.1\u{8}http/1.0\u{8}http/0.9".utf8)

    /// The protocol ALPN chose ("h2", "http/1.1"), nil when the client offered none.
    public var alpnProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// An upstream handed us a session (after the handshake in TLS 1.2, with a ticket in TLS 1.3): keep it for
    /// the next connection to the same peer. Returning 1 keeps OpenSSL's reference.
    static let newClientSession: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
        guard let session, let slot = TLSStream.stream(of: ssl)?.sessionSlot else { return 0 }
        slot.replace(session)
        return 1
    }
}

/// The last session an upstream peer gave us (nginx keeps one per peer, too).
public final class TLSSessionSlot {
    fileprivate(set) var session: OpaquePointer?
    public init() {}
    fileprivate func replace(_ s: OpaquePointer) {
        if let old = session { SSL_SESSION_free(old) }
        session = s
    }
    deinit { if let s = session { SSL_SESSION_free(s) } }
}

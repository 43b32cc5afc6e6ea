#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Config
import Core

/// Settings both sides share: the base options, modes, protocol range and cipher list of a context.
enum ContextSetup {
    static func make(_ method: OpaquePointer?, protocols: [String], ciphers: String, at location: SourceLocation) throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(method) else { throw location.error("SSL_CTX_new() failed" + OpenSSLError.drain()) }
        // No renegotiation (a client-driven CPU sink), no compression (CRIME); a peer that closes without
        // close_notify ends the stream instead of raising an error, as nginx treats it.
        SSL_CTX_set_options(ctx, VIGIL_SSL_OP_NO_COMPRESSION | VIGIL_SSL_OP_NO_RENEGOTIATION | VIGIL_SSL_OP_IGNORE_UNEXPECTED_EOF)
        // Partial writes with a buffer that may move between retries (the output queues grow), and buffers
        // released while a connection is idle: an idle keep-alive TLS connection holds no record buffers.
        _ = vigil_SSL_CTX_set_mode(ctx, VIGIL_SSL_MODE_PARTIAL_WRITE)
        // Read what the socket has, not one record header and then its body: one read per request instead
        // of two. What OpenSSL then holds beyond a record is `TLSStream.pending`, which callers check.
        vigil_SSL_CTX_set_read_ahead(ctx, 1)
        let versions: [String: Int32] = ["SSLv3": VIGIL_SSL3_VERSION, "TLSv1": VIGIL_TLS1_VERSION, "TLSv1.1": VIGIL_TLS1_1_VERSION,
                                         "TLSv1.2": VIGIL_TLS1_2_VERSION, "TLSv1.3": VIGIL_TLS1_3_VERSION]
        let chosen = protocols.compactMap { versions[$0] }
        if let lo = chosen.min(), let hi = chosen.max() {
            _ = vigil_SSL_CTX_set_min_proto(ctx, lo)
            _ = vigil_SSL_CTX_set_max_proto(ctx, hi)
        }
        OpenSSLError.clear()
        if SSL_CTX_set_cipher_list(ctx, ciphers) != 1 {
            let e = OpenSSLError.drain()
            SSL_CTX_free(ctx)
            throw location.error("SSL_CTX_set_cipher_list(\"\(ciphers)\") failed" + e)
        }
        return ctx
    }

    /// Loads each static pair into `ctx`, with the directive's file:line on a failure.
    static func useCertificates(_ ctx: OpaquePointer, _ pairs: [(certificate: CertificateSetting, key: CertificateSetting)],
                                passwords: [String]) throws {
        for (cert, key) in pairs {
            do {
                try CertificatePair(certificate: cert.path, key: key.path, passwords: passwords).use(inContext: ctx)
            } catch let f as CertificateFailure {
                throw (f.inKey ? key : cert).location.error(f.description)
            }
        }
    }

    /// nginx's ngx_ssl_crl: revocation lists (and any certificates) of a PEM file join the context's store, and
    /// every certificate of a chain is then checked against them.
    static func useCRL(_ ctx: OpaquePointer, _ crl: PathSetting) throws {
        OpenSSLError.clear()
        guard let store = SSL_CTX_get_cert_store(ctx), let lookup = vigil_X509_STORE_add_file_lookup(store) else {
            throw crl.location.error("X509_STORE_add_lookup() failed" + OpenSSLError.drain())
        }
        guard vigil_X509_LOOKUP_load_file(lookup, crl.path) == 1 else {
            throw crl.location.error("X509_LOOKUP_load_file(\"\(crl.path)\") failed" + OpenSSLError.drain())
        }
        _ = X509_STORE_set_flags(store, VIGIL_X509_V_FLAG_CRL_CHECK_ALL)
        OpenSSLError.clear()
    }

    /// `ssl_dhparam`: parameters for the DHE ciphers.
    static func useDHParameters(_ ctx: OpaquePointer, _ file: PathSetting) throws {
        OpenSSLError.clear()
        guard let bio = BIO_new_file(file.path, "r") else {
            throw file.location.error("BIO_new_file(\"\(file.path)\") failed" + OpenSSLError.drain())
        }
        defer { BIO_free(bio) }
        guard let dh = PEM_read_bio_Parameters(bio, nil) else {
            throw file.location.error("PEM_read_bio_Parameters(\"\(file.path)\") failed" + OpenSSLError.drain())
        }
        guard SSL_CTX_set0_tmp_dh_pkey(ctx, dh) == 1 else {
            EVP_PKEY_free(dh)
            throw file.location.error("SSL_CTX_set0_tmp_dh_pkey(\"\(file.path)\") failed" + OpenSSLError.drain())
        }
    }

    /// `ssl_password_file`: one password a line.
    static func passwords(_ file: PathSetting?) throws -> [String] {
        guard let file else { return [] }
        let bytes: [UInt8]
        switch FileBytes.contents(file.path) {
        case .success(let b): bytes = b
        case .failure(let f): throw file.location.error("open() \"\(file.path)\" failed (\(f.text))")
        }
        let lines = String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        guard !lines.isEmpty else { throw file.location.error("empty file \"\(file.path)\"") }
        return lines.map(String.init)
    }
}

/// A `server` block's TLS: its certificates, protocols, ciphers and session settings.
/// Built once per configuration in the master, before workers are forked, so every worker shares its
/// session-ticket keys and a ticket issued by one worker resumes on another. OpenSSL callbacks find it as
/// its SSL_CTX's ex_data 0.
public final class TLSServerContext {
    public let raw: OpaquePointer
    /// `ssl_reject_handshake on`: a handshake that routes to this server ends with an unrecognized_name alert.
    public let rejectsHandshake: Bool
    /// `ssl_certificate` with variables (in any pair, which makes every pair so, as nginx): the pairs to render
    /// for each handshake, and the pairs they named so far.
    public let variableCertificates: [(certificate: CertificateSetting, key: CertificateSetting)]
    public let certificateCache: CertificateCache?
    /// The session cache and ticket keys of connections that start on this context. OpenSSL consults the
    /// context a connection started on for both, not the one SNI switches it to (nginx's ticket #235), so
    /// the default server's settings decide.
    private(set) var sessionCache: SharedSessionCache?
    private(set) var ticketKeys: TicketKeys?

    init(settings s: SSLSettings, at location: SourceLocation, fullPath: @escaping (String) -> String) throws {
        let certs = s.certificates, keys = s.certificateKeys
        if keys.count < certs.count, let last = certs.last {
            throw last.location.error("no \"ssl_certificate_key\" is defined for certificate \"\(last.path)\"")
        }
        let passwords = try ContextSetup.passwords(s.passwordFile)
        raw = try ContextSetup.make(TLS_server_method(), protocols: s.protocols, ciphers: s.ciphers, at: certs.first?.location ?? location)
        rejectsHandshake = s.rejectHandshake
        let pairs = Array(zip(certs, keys))
        let variable = pairs.contains { $0.template != nil || $1.template != nil }
        variableCertificates = variable ? pairs.map { ($0, $1) } : []
        // From here on a throw still runs deinit, which frees the context.
        certificateCache = variable ? CertificateCache(passwords: passwords, fullPath: fullPath) : nil
        SSL_CTX_set_ex_data(raw, 0, Unmanaged.passUnretained(self).toOpaque())
        if variable {
            SSL_CTX_set_cert_cb(raw, TLSServerContext.certificateCallback, nil)
        } else {
            try ContextSetup.useCertificates(raw, pairs.map { ($0, $1) }, passwords: passwords)
        }
        if s.ecdhCurve != "auto" {
            let curves = s.ecdhCurve
            OpenSSLError.clear()
            guard vigil_SSL_CTX_set1_groups_list(raw, curves) == 1 else {
                throw location.error("SSL_CTX_set1_curves_list(\"\(curves)\") failed" + OpenSSLError.drain())
            }
        }
        if let dh = s.dhParam { try ContextSetup.useDHParameters(raw, dh) }
        // As nginx: the chain sent is the certificate file's, never one OpenSSL builds from the verify store.
        _ = vigil_SSL_CTX_set_mode(raw, VIGIL_SSL_MODE_NO_AUTO_CHAIN)
        if let trusted = s.trustedCertificate {
            OpenSSLError.clear()
            guard SSL_CTX_load_verify_locations(raw, trusted.path, nil) == 1 else {
                throw trusted.location.error("SSL_CTX_load_verify_locations(\"\(trusted.path)\") failed" + OpenSSLError.drain())
            }
            // It may leave errors queued while succeeding (nginx clears them too).
            OpenSSLError.clear()
        }
        try verifyClients(s)
        if s.preferServerCiphers { SSL_CTX_set_options(raw, VIGIL_SSL_OP_CIPHER_SERVER_PREFERENCE) }
        if !s.sessionTickets { SSL_CTX_set_options(raw, VIGIL_SSL_OP_NO_TICKET) }
        _ = SSL_CTX_set_timeout(raw, s.sessionTimeout / 1000)
        // Sessions resume only within the server that issued them: the context id is its certificate list (the
        // names as written, for certificates with variables, as nginx's).
        var sid = Array("vigil".utf8)
        var h: UInt32 = 2_166_136_261
        // A session verified under one CA list must not resume under another (nginx hashes the CA names in).
        let verifyKey = s.verifyClient == .off ? "" : s.verifyClient.rawValue + (s.clientCertificate?.path ?? "")
        for c in certs.map(\.path) + [verifyKey] { for b in c.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 } }
        withUnsafeBytes(of: h.bigEndian) { sid += $0 }
        _ = SSL_CTX_set_session_id_context(raw, sid, UInt32(sid.count))
        switch s.sessionCache {
        case .off:
            _ = vigil_SSL_CTX_set_session_cache_mode(raw, VIGIL_SSL_SESS_CACHE_OFF)
        case .none:
            // nginx's default: clients are told sessions may resume, but none is stored.
            _ = vigil_SSL_CTX_set_session_cache_mode(raw, VIGIL_SSL_SESS_CACHE_SERVER | VIGIL_SSL_SESS_CACHE_NO_INTERNAL)
        case .builtin(let size):
            _ = vigil_SSL_CTX_set_session_cache_mode(raw, VIGIL_SSL_SESS_CACHE_SERVER)
            _ = vigil_SSL_CTX_sess_set_cache_size(raw, size)
        case .shared(let name, let size):
            guard let cache = SharedSessionCache.named(name, size: size) else {
                throw location.error("cannot allocate shared session cache \"\(name)\" (\(Errno.text(errno)))")
            }
            _ = vigil_SSL_CTX_set_session_cache_mode(raw, VIGIL_SSL_SESS_CACHE_SERVER | VIGIL_SSL_SESS_CACHE_NO_INTERNAL)
            sessionCache = cache
            SharedSessionCache.install(on: raw)
        }
        if !s.sessionTicketKeys.isEmpty {
            ticketKeys = try TicketKeys(files: s.sessionTicketKeys)
        } else if s.sessionTickets, let cache = sessionCache {
            ticketKeys = TicketKeys(sharedIn: cache, lifetime: Int64(s.sessionTimeout / 1000))
        }
        if ticketKeys != nil { _ = SSL_CTX_set_tlsext_ticket_key_evp_cb(raw, TLSServerContext.ticketKeyCallback) }
        _ = vigil_SSL_CTX_set_servername_callback(raw, TLSStream.serverNameCallback)
        SSL_CTX_set_alpn_select_cb(raw, TLSStream.alpnCallback, nil)
    }

    /// The context a raw SSL_CTX of this process belongs to.
    static func of(_ ctx: OpaquePointer?) -> TLSServerContext? {
        guard let ctx, let p = SSL_CTX_get_ex_data(ctx, 0) else { return nil }
        return Unmanaged<TLSServerContext>.fromOpaque(p).takeUnretainedValue()
    }

    /// Certificates with variables are named once the client's hello (and its SNI) is in: the connection
    /// renders this context's pairs for itself, as nginx's ngx_http_ssl_certificate.
    static let certificateCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32 = { ssl, _ in
        guard let ssl, let stream = TLSStream.stream(of: ssl), let handler = stream.nameHandler,
              let context = TLSServerContext.of(SSL_get_SSL_CTX(ssl)) else { return 0 }
        return handler.tlsUseCertificates(of: context, on: stream) ? 1 : 0
    }

    static let ticketKeyCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?,
                                                  OpaquePointer?, OpaquePointer?, Int32) -> Int32 = { ssl, name, iv, cipher, mac, enc in
        guard let ssl, let name, let iv, let cipher, let mac,
              let keys = TLSStream.stream(of: ssl).flatMap({ TLSServerContext.of($0.sessionContext)?.ticketKeys }) else { return -1 }
        return keys.crypt(ssl, name, iv, cipher, mac, encrypt: enc == 1)
    }

    /// nginx's ngx_ssl_client_certificate, ngx_ssl_trusted_certificate and ngx_ssl_crl: the handshake
    /// never fails on a bad client certificate (the callback accepts all); the request checks the verify
    /// result afterwards, so that the client gets a 400 page instead of a TLS alert.
    private func verifyClients(_ s: SSLSettings) throws {
        if s.verifyClient != .off {
            if s.clientCertificate == nil && s.verifyClient != .optionalNoCA {
                throw ConfigError("no ssl_client_certificate for ssl_verify_client")
            }
            SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, TLSServerContext.acceptAnyChain)
            SSL_CTX_set_verify_depth(raw, Int32(s.verifyDepth))
        }
        if s.verifyClient != .off, let ca = s.clientCertificate {
            OpenSSLError.clear()
            guard SSL_CTX_load_verify_locations(raw, ca.path, nil) == 1 else {
                throw ca.location.error("SSL_CTX_load_verify_locations(\"\(ca.path)\") failed" + OpenSSLError.drain())
            }
            OpenSSLError.clear()
            // The CA names the server sends in its CertificateRequest, so the client can pick a certificate.
            guard let list = SSL_load_client_CA_file(ca.path) else {
                throw ca.location.error("SSL_load_client_CA_file(\"\(ca.path)\") failed" + OpenSSLError.drain())
            }
            SSL_CTX_set_client_CA_list(raw, list)
        }
        if s.trustedCertificate != nil {
            SSL_CTX_set_verify(raw, SSL_CTX_get_verify_mode(raw), TLSServerContext.acceptAnyChain)
            SSL_CTX_set_verify_depth(raw, Int32(s.verifyDepth))
        }
        if let crl = s.crl { try ContextSetup.useCRL(raw, crl) }
    }

    /// Keeps the handshake going whatever the chain's verdict; SSL_get_verify_result still records it.
    static let acceptAnyChain: @convention(c) (Int32, OpaquePointer?) -> Int32 = { _, _ in 1 }

    deinit {
        SSL_CTX_set_ex_data(raw, 0, nil)
        SSL_CTX_free(raw)
    }
}

/// TLS towards an upstream or a check peer: protocols, ciphers, what to trust and an optional client
/// certificate. Chain verification always runs (OpenSSL records its result even in SSL_VERIFY_NONE
/// mode); whether a failure matters is the caller's setting, checked after the handshake as nginx does.
public final class TLSClientContext {
    public let raw: OpaquePointer
    public let verify: Bool
    public let sessionReuse: Bool
    /// `proxy_ssl_certificate` with variables: the pairs each request named so far (nil without variables).
    public let certificateCache: CertificateCache?

    public init(protocols: [String], ciphers: String, verify: Bool, verifyDepth: Int, trusted: PathSetting?, crl: PathSetting? = nil,
                certificate: CertificateSetting?, key: CertificateSetting?, passwordFile: PathSetting?, sessionReuse: Bool,
                directives prefix: String, at location: SourceLocation, fullPath: @escaping (String) -> String = { $0 }) throws {
        let variable = certificate?.template != nil || key?.template != nil
        // nginx keeps the passwords for certificates with variables; they are read now either way.
        let passwords = certificate == nil ? [] : try ContextSetup.passwords(passwordFile)
        raw = try ContextSetup.make(TLS_client_method(), protocols: protocols, ciphers: ciphers, at: location)
        self.verify = verify
        self.sessionReuse = sessionReuse
        certificateCache = variable ? CertificateCache(passwords: passwords, fullPath: fullPath) : nil
        // From here on a throw still runs deinit, which frees the context.
        if verify && trusted == nil {
            throw location.error("no \(prefix)_ssl_trusted_certificate for \(prefix)_ssl_verify")
        }
        if let trusted {
            OpenSSLError.clear()
            guard SSL_CTX_load_verify_locations(raw, trusted.path, nil) == 1 else {
                throw trusted.location.error("SSL_CTX_load_verify_locations(\"\(trusted.path)\") failed" + OpenSSLError.drain())
            }
        }
        // As nginx: revocation is checked only where the chain is.
        if verify, let crl { try ContextSetup.useCRL(raw, crl) }
        SSL_CTX_set_verify_depth(raw, Int32(verifyDepth))
        if let certificate {
            guard let key else { throw certificate.location.error("no \"\(prefix)_ssl_certificate_key\" is defined for certificate \"\(certificate.path)\"") }
            if !variable { try ContextSetup.useCertificates(raw, [(certificate, key)], passwords: passwords) }
        }
        if sessionReuse {
            // Sessions are kept per peer by the caller (TLSSessionSlot), not in OpenSSL's per-context cache.
            _ = vigil_SSL_CTX_set_session_cache_mode(raw, VIGIL_SSL_SESS_CACHE_CLIENT | VIGIL_SSL_SESS_CACHE_NO_INTERNAL)
            SSL_CTX_sess_set_new_cb(raw, TLSStream.newClientSession)
        } else {
            _ = vigil_SSL_CTX_set_session_cache_mode(raw, VIGIL_SSL_SESS_CACHE_OFF)
        }
    }

    deinit { SSL_CTX_free(raw) }
}

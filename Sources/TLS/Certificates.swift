#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Config

/// Why a certificate or key did not load, in nginx's words (`cannot load certificate "…": BIO_new_file()
/// failed (SSL: …)`), without the file:line a caller adds at load time.
public struct CertificateFailure: Error, CustomStringConvertible {
    public let description: String
    /// The key, not the certificate, is what failed (its directive's line is the one to name).
    var inKey = false
}

/// A certificate, the chain after it in its file, and its private key, read as nginx reads them
/// (ngx_ssl_load_certificate and ngx_ssl_load_certificate_key): from a file, or from the PEM text after
/// `data:`, each password of `ssl_password_file` tried in turn.
public final class CertificatePair {
    let certificate: OpaquePointer
    let chain: [OpaquePointer]
    let key: OpaquePointer
    /// The names it was loaded from, for messages.
    let certificateName: String
    let keyName: String

    init(certificate cert: String, key keyName: String, passwords: [String]) throws {
        OpenSSLError.clear()
        func failed(_ what: String) -> CertificateFailure {
            CertificateFailure(description: "cannot load certificate \"\(cert)\": \(what)" + OpenSSLError.drain())
        }
        let (x509, chain) = try CertificatePair.reading(cert, failed) { bio in
            guard let x509 = PEM_read_bio_X509_AUX(bio, nil, nil, nil) else { throw failed("PEM_read_bio_X509_AUX() failed") }
            // The rest of the file is the chain; only "no start line" ends it, another error is the file's.
            var chain: [OpaquePointer] = []
            while let extra = PEM_read_bio_X509(bio, nil, nil, nil) { chain.append(extra) }
            let last = ERR_peek_last_error()
            guard ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE else {
                X509_free(x509)
                chain.forEach { X509_free($0) }
                throw failed("PEM_read_bio_X509() failed")
            }
            OpenSSLError.clear()
            return (x509, chain)
        }
        var pkey: OpaquePointer?
        do {
            pkey = try CertificatePair.privateKey(keyName, passwords: passwords)
        } catch {
            X509_free(x509)
            chain.forEach { X509_free($0) }
            throw error
        }
        certificate = x509
        self.chain = chain
        key = pkey!
        certificateName = cert
        self.keyName = keyName
    }

    deinit {
        X509_free(certificate)
        chain.forEach { X509_free($0) }
        EVP_PKEY_free(key)
    }

    private static func privateKey(_ name: String, passwords: [String]) throws -> OpaquePointer {
        func failed(_ what: String) -> CertificateFailure {
            CertificateFailure(description: "cannot load certificate key \"\(name)\": \(what)" + OpenSSLError.drain(), inKey: true)
        }
        for password in passwords.isEmpty ? [nil] : passwords.map(Optional.some) {
            OpenSSLError.clear()
            let pkey = try reading(name, failed) { bio -> OpaquePointer? in
                // An encrypted key with no password file fails instead of prompting on the terminal.
                guard let password else { return PEM_read_bio_PrivateKey(bio, nil, noPassword, nil) }
                return password.withCString { PEM_read_bio_PrivateKey(bio, nil, givePassword, UnsafeMutableRawPointer(mutating: $0)) }
            }
            if let pkey { return pkey }
        }
        // The last try's errors are still queued for the message.
        throw failed("PEM_read_bio_PrivateKey() failed")
    }

    /// `body` on a BIO over the file, or over the text after `data:`.
    private static func reading<T>(_ source: String, _ failed: (String) -> CertificateFailure,
                                   _ body: (OpaquePointer) throws -> T) throws -> T {
        guard source.hasPrefix("data:") else {
            guard let bio = BIO_new_file(source, "r") else { throw failed("BIO_new_file() failed") }
            defer { BIO_free(bio) }
            return try body(bio)
        }
        return try Array(source.utf8.dropFirst(5)).withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { throw failed("BIO_new_mem_buf() failed") }
            defer { BIO_free(bio) }
            return try body(bio)
        }
    }

    static let noPassword: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { _, _, _, _ in 0 }
    static let givePassword: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { buf, size, _, user in
        guard let buf, let user else { return 0 }
        let n = min(Int(size), strlen(user.assumingMemoryBound(to: CChar.self)))
        memcpy(buf, user, n)
        return Int32(n)
    }

    /// Into a context, when the configuration loads: each key type a context is given stays (an RSA and an
    /// ECDSA pair side by side), and OpenSSL picks one per client.
    func use(inContext ctx: OpaquePointer) throws {
        guard SSL_CTX_use_certificate(ctx, certificate) == 1 else { throw failed("SSL_CTX_use_certificate") }
        for c in chain where vigil_SSL_CTX_add1_chain_cert(ctx, c) != 1 { throw failed("SSL_CTX_add1_chain_cert") }
        guard SSL_CTX_use_PrivateKey(ctx, key) == 1 else { throw failed("SSL_CTX_use_PrivateKey", key: true) }
    }

    /// Into one connection (certificates with variables): OpenSSL takes its own references.
    func use(onConnection ssl: OpaquePointer) throws {
        OpenSSLError.clear()
        guard SSL_use_certificate(ssl, certificate) == 1 else { throw failed("SSL_use_certificate") }
        for c in chain where vigil_SSL_add1_chain_cert(ssl, c) != 1 { throw failed("SSL_add1_chain_cert") }
        guard SSL_use_PrivateKey(ssl, key) == 1 else { throw failed("SSL_use_PrivateKey", key: true) }
    }

    /// nginx's `SSL_use_certificate("…") failed (SSL: …)`.
    private func failed(_ call: String, key: Bool = false) -> CertificateFailure {
        CertificateFailure(description: "\(call)(\"\(key ? keyName : certificateName)\") failed" + OpenSSLError.drain(), inKey: key)
    }
}

/// Certificates named by variables (`ssl_certificate $ssl_server_name.crt`, `proxy_ssl_certificate $arg_c.crt`),
/// loaded when a connection first names them and kept per worker by their names. nginx 1.22 reads the files for
/// every connection; a kept pair is checked against its files' identity (device, inode, size, mtime) on each
/// use, so a renewed certificate is picked up by the next connection as in nginx, for two `stat` calls instead
/// of parsing a private key per handshake.
public final class CertificateCache {
    private struct Entry {
        let pair: CertificatePair
        let identity: [FileIdentity]
    }
    private struct FileIdentity: Equatable {
        let dev: UInt64, ino: UInt64, size: Int64, mtime: Int, mtimeNsec: Int

        /// nil for `data:` text, and for a file that cannot be stat'ed (loading it then reports why).
        init?(_ name: String) {
            guard !name.hasPrefix("data:") else { return nil }
            var st = stat()
            guard stat(name, &st) == 0 else { return nil }
            dev = UInt64(st.st_dev); ino = UInt64(st.st_ino); size = Int64(st.st_size)
            mtime = st.st_mtim.tv_sec; mtimeNsec = st.st_mtim.tv_nsec
        }
    }

    private let passwords: [String]
    private let fullPath: (String) -> String
    private var kept: [String: Entry] = [:]
    /// Names come from requests: the table stays bounded.
    static let capacity = 256

    init(passwords: [String], fullPath: @escaping (String) -> String) {
        self.passwords = passwords
        self.fullPath = fullPath
    }

    /// The pair a connection's values name (relative names are the configuration directory's, as nginx's
    /// conf_prefix), loading it if it is new or its files changed.
    public func pair(certificate: String, key: String) -> Result<CertificatePair, CertificateFailure> {
        let cert = certificate.hasPrefix("data:") ? certificate : fullPath(certificate)
        let key = key.hasPrefix("data:") ? key : fullPath(key)
        let name = cert + "\n" + key
        let identity = [FileIdentity(cert), FileIdentity(key)].compactMap { $0 }
        if let e = kept[name], e.identity == identity { return .success(e.pair) }
        do {
            let pair = try CertificatePair(certificate: cert, key: key, passwords: passwords)
            if kept.count >= CertificateCache.capacity { kept.removeAll() }
            kept[name] = Entry(pair: pair, identity: identity)
            return .success(pair)
        } catch {
            kept[name] = nil
            return .failure(error as? CertificateFailure ?? CertificateFailure(description: "\(error)"))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Config
import Core

/// Session ticket keys, as nginx keeps them, in one of two ways:
/// - `ssl_session_ticket_key` files: a 48-byte file is a 16-byte key name, an AES-128 key and a 16-byte
///   HMAC-SHA256 key; an 80-byte one a name, a 32-byte HMAC key and an AES-256 key (nginx's layouts, so that one
///   key file serves nginx and Vigil side by side). They are read when the configuration loads, in the master,
///   so every worker shares them; a reload reads them again, which is how they rotate.
/// - with `ssl_session_cache shared:` and no files, in the cache's memory (nginx 1.23.2): every worker and every
///   server using the cache shares them, and they rotate by themselves, a new key every session timeout, the
///   previous one still decrypting for as long as a ticket under it may live.
/// The first key encrypts new tickets; every key decrypts, and a ticket under another than the first is renewed
/// (as is every TLS 1.3 one), as nginx does.
final class TicketKeys {
    /// Each key as `stride` bytes: its expiry (shared keys), name, HMAC key (32, or 16 and zeros), AES key (32,
    /// or 16). The shared cache holds its keys in the same layout.
    private let storage: UnsafeMutableRawBufferPointer
    private let wide: [Bool]
    private let shared: SharedSessionCache?
    /// How long a shared key keeps encrypting: the session timeout, in seconds.
    private let lifetime: Int64
    static let stride = 88
    static let nameOffset = 8, hmacOffset = 24, aesOffset = 56

    private init(count: Int, wide: [Bool], shared: SharedSessionCache?, lifetime: Int64) {
        storage = .allocate(byteCount: count * TicketKeys.stride, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        self.wide = wide
        self.shared = shared
        self.lifetime = lifetime
    }

    /// The current and previous keys of `cache`, copied from it when they may have rotated.
    convenience init(sharedIn cache: SharedSessionCache, lifetime: Int64) {
        self.init(count: 2, wide: [true, true], shared: cache, lifetime: lifetime)
    }

    convenience init(files: [PathSetting]) throws {
        var contents: [[UInt8]] = []
        defer { for i in contents.indices { contents[i].withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } } }
        for file in files { contents.append(try TicketKeys.read(file)) }
        self.init(count: contents.count, wide: contents.map { $0.count == 80 }, shared: nil, lifetime: 0)
        for (i, bytes) in contents.enumerated() {
            let key = key(i)
            // As nginx's ngx_ssl_session_ticket_keys: 48 = name aes[16] hmac[16], 80 = name hmac[32] aes[32].
            bytes.withUnsafeBytes { b in
                memcpy(key + TicketKeys.nameOffset, b.baseAddress!, 16)
                if b.count == 48 {
                    memcpy(key + TicketKeys.aesOffset, b.baseAddress! + 16, 16)
                    memcpy(key + TicketKeys.hmacOffset, b.baseAddress! + 32, 16)
                } else {
                    memcpy(key + TicketKeys.hmacOffset, b.baseAddress! + 16, 64)
                }
            }
        }
    }

    deinit {
        explicit_bzero(storage.baseAddress!, storage.count)
        storage.deallocate()
    }

    /// nginx's checks and messages: `open() "…" failed (2: …)`, `"…" must be 48 or 80 bytes`.
    private static func read(_ file: PathSetting) throws -> [UInt8] {
        let fd = open(file.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw file.location.error("open() \"\(file.path)\" failed (\(Errno.text(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw file.location.error("fstat() \"\(file.path)\" failed (\(Errno.text(errno)))") }
        let size = Int(st.st_size)
        guard size == 48 || size == 80 else { throw file.location.error("\"\(file.path)\" must be 48 or 80 bytes") }
        var bytes = [UInt8](repeating: 0, count: size)
        let n = pread(fd, &bytes, size, 0)
        guard n >= 0 else { throw file.location.error("pread() \"\(file.path)\" failed (\(Errno.text(errno)))") }
        guard n == size else { throw file.location.error("pread() \"\(file.path)\" returned only \(n) bytes instead of \(size)") }
        return bytes
    }

    private func key(_ i: Int) -> UnsafeMutableRawPointer { storage.baseAddress! + i * TicketKeys.stride }
    private func expiry(_ i: Int) -> Int64 { key(i).load(as: Int64.self) }

    /// OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): `encrypt` seals a new ticket under the
    /// first key; otherwise a ticket is opened, answering 0 for a key name it does not have (a full handshake),
    /// 1, or 2 to have the ticket renewed.
    func crypt(_ ssl: OpaquePointer, _ keyName: UnsafeMutablePointer<UInt8>, _ iv: UnsafeMutablePointer<UInt8>,
               _ cipherContext: OpaquePointer, _ mac: OpaquePointer, encrypt: Bool) -> Int32 {
        if let shared {
            // The cache is asked (under its lock) only when the current key's expiry must move on (once a
            // second at most) or the previous key has expired.
            let now = Int64(time(nil))
            if expiry(0) < now + lifetime || expiry(1) < now {
                guard shared.syncTicketKeys(now: now, lifetime: lifetime, into: storage.baseAddress!) else { return -1 }
            }
        }
        let index: Int
        if encrypt {
            index = 0
        } else {
            guard let found = wide.indices.first(where: { memcmp(keyName, key($0) + TicketKeys.nameOffset, 16) == 0 }) else { return 0 }
            index = found
        }
        let wide = self.wide[index]
        let cipher = wide ? EVP_aes_256_cbc() : EVP_aes_128_cbc()
        let hmacKey = (key(index) + TicketKeys.hmacOffset).assumingMemoryBound(to: UInt8.self)
        let aesKey = (key(index) + TicketKeys.aesOffset).assumingMemoryBound(to: UInt8.self)
        guard vigil_ticket_mac_init(mac, hmacKey, wide ? 32 : 16) == 1 else { return -1 }
        if encrypt {
            guard RAND_bytes(iv, EVP_CIPHER_get_iv_length(cipher)) == 1,
                  EVP_EncryptInit_ex(cipherContext, cipher, nil, aesKey, iv) == 1 else { return -1 }
            memcpy(keyName, key(0) + TicketKeys.nameOffset, 16)
            return 1
        }
        guard EVP_DecryptInit_ex(cipherContext, cipher, nil, aesKey, iv) == 1 else { return -1 }
        return index != 0 || SSL_version(ssl) == VIGIL_TLS1_3_VERSION ? 2 : 1
    }
}

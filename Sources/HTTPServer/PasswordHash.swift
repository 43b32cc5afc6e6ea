#if canImport(Glibc)
import Glibc
#endif
import CCrypt
import COpenSSL
import Core

/// nginx's ngx_crypt: what a password of `auth_basic_user_file` must hash to. `$apr1$` (Apache's MD5 crypt),
/// `{PLAIN}`, `{SSHA}` and `{SHA}` are nginx's own; anything else goes to the C library's crypt_r (`$1$`,
/// `$5$`, `$6$`, `$y$`, DES), as nginx hands it on.
enum PasswordHash {
    /// Whether `password` hashes to `stored`, compared whole as nginx's strcmp does; nil when crypt_r failed.
    /// Both are C strings to nginx: the password ends at a NUL byte.
    static func matches(_ password: ArraySlice<UInt8>, _ stored: UnsafeRawBufferPointer) -> Bool? {
        let key = password.prefix { $0 != 0 }
        if begins(stored, "{PLAIN}") { return same(key, stored.dropFirst(7)) }
        var out: [UInt8] = []
        if begins(stored, "$apr1$") {
            apr1(key, salt: stored.dropFirst(6), into: &out)
        } else if begins(stored, "{SSHA}") {
            // base64(SHA1(key salt) salt); a value that does not decode to more than a digest has no salt.
            let decoded = Base64.decode(stored.dropFirst(6)) ?? []
            let salt = decoded.count > 20 ? decoded[20...] : []
            out.append(contentsOf: "{SSHA}".utf8)
            Base64.encode(sha1(key, salt) + salt, into: &out)
        } else if begins(stored, "{SHA}") {
            out.append(contentsOf: "{SHA}".utf8)
            Base64.encode(sha1(key, []), into: &out)
        } else {
            return crypt(key, stored)
        }
        return same(out[...], stored[...])
    }

    private static func begins(_ stored: UnsafeRawBufferPointer, _ scheme: StaticString) -> Bool {
        stored.count >= scheme.utf8CodeUnitCount && memcmp(stored.baseAddress!, scheme.utf8Start, scheme.utf8CodeUnitCount) == 0
    }

    /// The whole-string comparison, in a time that does not depend on where they first differ.
    private static func same(_ a: ArraySlice<UInt8>, _ b: Slice<UnsafeRawBufferPointer>) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }

    /// The C library's crypt_r, with one work area per process: a worker runs its requests on one thread.
    private static func crypt(_ key: ArraySlice<UInt8>, _ stored: UnsafeRawBufferPointer) -> Bool? {
        let setting = Array(stored) + [0], phrase = Array(key) + [0]
        guard let result = phrase.withUnsafeBufferPointer({ p in
            setting.withUnsafeBufferPointer { s in
                crypt_r(UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self),
                        UnsafeRawPointer(s.baseAddress!).assumingMemoryBound(to: CChar.self), cryptArea)
            }
        }) else { return nil }
        return same(setting.dropLast(), UnsafeRawBufferPointer(start: result, count: strlen(result))[...])
    }

    private static let cryptArea: UnsafeMutablePointer<crypt_data> = {
        let p = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        memset(p, 0, MemoryLayout<crypt_data>.size)
        return p
    }()

    /// A message digest, MD5 (apr1 makes 1002 of them a check) or SHA-1, through OpenSSL's low-level calls.
    private struct Digest {
        enum Kind { case md5, sha1 }
        let kind: Kind
        var md5 = MD5_CTX()
        var sha = SHA_CTX()
        /// The last digest.
        var value: [UInt8]

        init(_ kind: Kind) {
            self.kind = kind
            value = [UInt8](repeating: 0, count: kind == .md5 ? 16 : 20)
        }

        mutating func begin() { if kind == .md5 { vigil_md5_init(&md5) } else { vigil_sha1_init(&sha) } }
        mutating func add(_ bytes: some Collection<UInt8>) {
            _ = bytes.withContiguousStorageIfAvailable { update($0.baseAddress, $0.count) }
                ?? Array(bytes).withUnsafeBufferPointer { update($0.baseAddress, $0.count) }
        }
        private mutating func update(_ p: UnsafePointer<UInt8>?, _ n: Int) {
            if kind == .md5 { vigil_md5_update(&md5, p, n) } else { vigil_sha1_update(&sha, p, n) }
        }
        mutating func finish() {
            if kind == .md5 { vigil_md5_final(&md5, &value) } else { vigil_sha1_final(&sha, &value) }
        }
    }

    private static func sha1(_ key: ArraySlice<UInt8>, _ salt: ArraySlice<UInt8>) -> [UInt8] {
        var d = Digest(.sha1)
        d.begin()
        d.add(key)
        d.add(salt)
        d.finish()
        return d.value
    }

    /// Apache's `$apr1$`: Poul-Henning Kamp's MD5 crypt with its own magic, as ngx_crypt_apr1 computes it.
    private static func apr1(_ key: ArraySlice<UInt8>, salt rest: Slice<UnsafeRawBufferPointer>, into out: inout [UInt8]) {
        // The salt: at most 8 characters, up to a "$".
        let salt = ArraySlice(rest.prefix(8).prefix { $0 != UInt8(ascii: "$") })
        let magic = "$apr1$".utf8
        var d = Digest(.md5)
        d.begin()
        d.add(key)
        d.add(salt)
        d.add(key)
        d.finish()
        let alternate = d.value
        d.begin()
        d.add(key)
        d.add(magic)
        d.add(salt)
        var n = key.count
        while n > 0 {
            d.add(alternate.prefix(min(n, 16)))
            n -= 16
        }
        var i = key.count
        while i != 0 {
            d.add(CollectionOfOne(i & 1 != 0 ? 0 : key.first!))
            i >>= 1
        }
        d.finish()
        // Two buffers taking turns: the digest before and the one being made.
        var previous = [UInt8](repeating: 0, count: d.value.count)
        for i in 0..<1000 {
            swap(&previous, &d.value)
            d.begin()
            if i & 1 != 0 { d.add(key) } else { d.add(previous) }
            if i % 3 != 0 { d.add(salt) }
            if i % 7 != 0 { d.add(key) }
            if i & 1 != 0 { d.add(previous) } else { d.add(key) }
            d.finish()
        }
        out.append(contentsOf: magic)
        out.append(contentsOf: salt)
        out.append(UInt8(ascii: "$"))
        let f = d.value.map(UInt32.init)
        for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] { to64(f[a] << 16 | f[b] << 8 | f[c], 4, &out) }
        to64(f[11], 2, &out)
    }

    private static let cryptAlphabet = Array("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// crypt's base64: `count` characters of `v`, the low 6 bits first.
    private static func to64(_ v: UInt32, _ count: Int, _ out: inout [UInt8]) {
        var v = v
        for _ in 0..<count {
            out.append(cryptAlphabet[Int(v & 0x3F)])
            v >>= 6
        }
    }
}

// Debian's OpenSSL 3 (libssl-dev) for the TLS target. OpenSSL spells many calls as function-like macros
// over SSL_ctrl / SSL_CTX_ctrl, which Swift cannot import; these inline wrappers give them real signatures.
#ifndef VIGIL_COPENSSL_SHIM_H
#define VIGIL_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>

// MD5 and SHA-1 without the EVP layer, for auth_basic's `$apr1$` (1002 digests a check) and `{SHA}` (and SHA-256
// for the credentials it remembers): EVP's
// per-digest dispatch costs twice the digest itself there, where nginx calls its own MD5. OpenSSL 3 marks the
// low-level calls deprecated; the wrappers keep them usable without warnings.
#define VIGIL_SUPPRESS_BEGIN _Pragma("clang diagnostic push") _Pragma("clang diagnostic ignored \"-Wdeprecated-declarations\"")
#define VIGIL_SUPPRESS_END _Pragma("clang diagnostic pop")
#include <openssl/md5.h>
#include <openssl/sha.h>
VIGIL_SUPPRESS_BEGIN
static inline void vigil_md5_init(MD5_CTX *c) { MD5_Init(c); }
static inline void vigil_md5_update(MD5_CTX *c, const void *p, size_t n) { MD5_Update(c, p, n); }
static inline void vigil_md5_final(MD5_CTX *c, unsigned char *out) { MD5_Final(out, c); }
static inline void vigil_sha1_init(SHA_CTX *c) { SHA1_Init(c); }
static inline void vigil_sha1_update(SHA_CTX *c, const void *p, size_t n) { SHA1_Update(c, p, n); }
static inline void vigil_sha1_final(SHA_CTX *c, unsigned char *out) { SHA1_Final(out, c); }
// Not OpenSSL's one-shot SHA256(): in OpenSSL 3 it fetches the algorithm through EVP on every call.
static inline void vigil_sha256(const void *p, size_t n, unsigned char *out) {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, p, n);
    SHA256_Final(out, &c);
}
VIGIL_SUPPRESS_END

static inline long vigil_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline int vigil_SSL_CTX_set_min_proto(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_min_proto_version(ctx, v); }
static inline int vigil_SSL_CTX_set_max_proto(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_max_proto_version(ctx, v); }
static inline long vigil_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long m) { return SSL_CTX_set_session_cache_mode(ctx, m); }
static inline long vigil_SSL_CTX_sess_set_cache_size(SSL_CTX *ctx, long n) { return SSL_CTX_sess_set_cache_size(ctx, n); }
static inline int vigil_SSL_CTX_set_servername_callback(SSL_CTX *ctx, int (*cb)(SSL *, int *, void *)) {
    return (int)SSL_CTX_set_tlsext_servername_callback(ctx, cb);
}
static inline int vigil_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
static inline void vigil_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int on) { SSL_CTX_set_read_ahead(ctx, on); }
static inline int vigil_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }
static inline int vigil_SSL_get_negotiated_group(SSL *ssl) { return (int)SSL_get_negotiated_group(ssl); }
static inline int vigil_SSL_get1_curves(SSL *ssl, int *curves) { return (int)SSL_get1_curves(ssl, curves); }
static const int VIGIL_TLSEXT_nid_unknown = TLSEXT_nid_unknown;

// The error constants Swift sees as macros of macros.
static const int VIGIL_SSL_ERROR_SSL = SSL_ERROR_SSL;
static const int VIGIL_SSL_ERROR_WANT_READ = SSL_ERROR_WANT_READ;
static const int VIGIL_SSL_ERROR_WANT_WRITE = SSL_ERROR_WANT_WRITE;
static const int VIGIL_SSL_ERROR_SYSCALL = SSL_ERROR_SYSCALL;
static const int VIGIL_SSL_ERROR_ZERO_RETURN = SSL_ERROR_ZERO_RETURN;
static const uint64_t VIGIL_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;
static const uint64_t VIGIL_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t VIGIL_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t VIGIL_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t VIGIL_SSL_OP_IGNORE_UNEXPECTED_EOF = SSL_OP_IGNORE_UNEXPECTED_EOF;
static const long VIGIL_SSL_MODE_NO_AUTO_CHAIN = SSL_MODE_NO_AUTO_CHAIN;
static const long VIGIL_SSL_MODE_PARTIAL_WRITE = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS;
static const long VIGIL_SSL_SESS_CACHE_OFF = SSL_SESS_CACHE_OFF;
static const long VIGIL_SSL_SESS_CACHE_SERVER = SSL_SESS_CACHE_SERVER;
static const long VIGIL_SSL_SESS_CACHE_CLIENT = SSL_SESS_CACHE_CLIENT;
static const long VIGIL_SSL_SESS_CACHE_NO_INTERNAL = SSL_SESS_CACHE_NO_INTERNAL;
static const int VIGIL_SSL_TLSEXT_ERR_OK = SSL_TLSEXT_ERR_OK;
static const int VIGIL_TLS1_VERSION = TLS1_VERSION;
static const int VIGIL_TLS1_1_VERSION = TLS1_1_VERSION;
static const int VIGIL_TLS1_2_VERSION = TLS1_2_VERSION;
static const int VIGIL_TLS1_3_VERSION = TLS1_3_VERSION;
static const int VIGIL_SSL3_VERSION = SSL3_VERSION;
static const int VIGIL_SSL_FILETYPE_PEM = SSL_FILETYPE_PEM;
static const unsigned long VIGIL_XN_FLAG_RFC2253 = XN_FLAG_RFC2253;
static const unsigned long VIGIL_X509_V_FLAG_CRL_CHECK_ALL = X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
static inline long vigil_SSL_get0_raw_cipherlist(SSL *s, unsigned char **list) { return SSL_get0_raw_cipherlist(s, list); }
static inline X509_LOOKUP *vigil_X509_STORE_add_file_lookup(X509_STORE *store) { return X509_STORE_add_lookup(store, X509_LOOKUP_file()); }
static inline int vigil_X509_LOOKUP_load_file(X509_LOOKUP *l, const char *file) { return X509_LOOKUP_load_file(l, file, X509_FILETYPE_PEM); }

/// A session ticket's HMAC key, with nginx's digest (SHA-256): OSSL_PARAM arrays are awkward from Swift.
static inline int vigil_ticket_mac_init(EVP_MAC_CTX *mac, const unsigned char *key, size_t len) {
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    return EVP_MAC_init(mac, key, len, params);
}
static const int VIGIL_SSL_TLSEXT_ERR_ALERT_FATAL = SSL_TLSEXT_ERR_ALERT_FATAL;
static const int VIGIL_SSL_AD_UNRECOGNIZED_NAME = SSL_AD_UNRECOGNIZED_NAME;
static inline int vigil_SSL_add1_chain_cert(SSL *ssl, X509 *x509) { return (int)SSL_add1_chain_cert(ssl, x509); }
static inline int vigil_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *x509) { return (int)SSL_CTX_add1_chain_cert(ctx, x509); }

#endif
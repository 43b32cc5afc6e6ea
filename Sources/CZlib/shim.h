// Debian's zlib (zlib1g-dev) for gzip responses. deflateInit2 is a macro Swift cannot import.
#ifndef VIGIL_CZLIB_SHIM_H
#define VIGIL_CZLIB_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

// A raw deflate stream (negative window bits): the gzip header and trailer are written by GzipStream, as
// nginx writes them, so that the CRC can be computed faster than zlib's own wrapper does.
static inline int vigil_deflate_init_raw(z_stream *s, int level, int window_bits, int mem_level) {
    return deflateInit2(s, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY);
}

#if defined(__x86_64__)
// CRC-32 (the gzip polynomial, bit-reflected) of n bytes, n >= 64 and a multiple of 16, by carry-less
// multiplication: four 128-bit lanes folded 64 bytes at a time, then into one lane, then a Barrett
// reduction to 32 bits (Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ"; the
// constants are x^(k) mod P for the fold distances, and P and its Barrett quotient). No pre- or
// post-inversion: the caller does zlib's.
__attribute__((target("pclmul,sse4.1")))
static inline uint32_t vigil_crc32_fold(uint32_t crc, const unsigned char *p, size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124);
    const __m128i poly = _mm_set_epi64x(0x1f7011641, 0x1db710641);
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x1 = _mm_loadu_si128((const __m128i *)p), x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32)), x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    p += 64, n -= 64;
#define VIGIL_FOLD(x, k, next) \
    x = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next)
    for (; n >= 64; p += 64, n -= 64) {
        VIGIL_FOLD(x1, k1k2, _mm_loadu_si128((const __m128i *)p));
        VIGIL_FOLD(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        VIGIL_FOLD(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        VIGIL_FOLD(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    VIGIL_FOLD(x1, k3k4, x2);
    VIGIL_FOLD(x1, k3k4, x3);
    VIGIL_FOLD(x1, k3k4, x4);
    for (; n >= 16; p += 16, n -= 16) VIGIL_FOLD(x1, k3k4, _mm_loadu_si128((const __m128i *)p));
#undef VIGIL_FOLD
    // 128 bits to 64 (appending 32 zero bits), then to 32 with a Barrett reduction.
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(k3k4, x1, 0x01), _mm_srli_si128(x1, 8));
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00), _mm_srli_si128(x1, 4));
    __m128i t = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x10), low32);
    t = _mm_xor_si128(_mm_clmulepi64_si128(t, poly, 0x00), x1);
    return (uint32_t)_mm_extract_epi32(t, 1);
}

static inline int vigil_has_pclmul(void) {
    static int known = -1;
    if (known < 0) {
        unsigned a, b, c, d;
        known = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL) && (c & bit_SSE4_1);
    }
    return known;
}
#endif

// zlib's crc32(crc, p, n), with the bulk of a long buffer folded by PCLMULQDQ where the CPU has it
// (zlib 1.2.13's table-driven loop is a tenth of a realistic gzip response's cost).
static inline uint32_t vigil_crc32(uint32_t crc, const unsigned char *p, size_t n) {
#if defined(__x86_64__)
    if (n >= 64 && vigil_has_pclmul()) {
        size_t bulk = n & ~(size_t)15;
        crc = ~vigil_crc32_fold(~crc, p, bulk);
        p += bulk, n -= bulk;
    }
#endif
    return (uint32_t)crc32(crc, p, (uInt)n);
}
#endif

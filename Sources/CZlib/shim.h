// Debian's zlib (zlib1g-dev) for gzip responses. deflateInit2 is a macro Swift cannot import.
#ifndef VIGIL_CZLIB_SHIM_H
#define VIGIL_CZLIB_SHIM_H
#include <zlib.h>

// A gzip (not zlib) stream: window bits 15 + 16 asks deflate for the gzip header and trailer.
static inline int vigil_deflate_init_gzip(z_stream *s, int level, int window_bits, int mem_level) {
    return deflateInit2(s, level, Z_DEFLATED, window_bits + 16, mem_level, Z_DEFAULT_STRATEGY);
}
#endif

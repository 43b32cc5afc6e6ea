// Debian's libnghttp2 (libnghttp2-dev), linked by the tests only: they cross-check the HPACK codec in HTTP
// against nghttp2's. The server's HTTP/2 is Vigil's own.
#ifndef VIGIL_CNGHTTP2_SHIM_H
#define VIGIL_CNGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>
#endif

// Debian's libnghttp2 (libnghttp2-dev): HTTP/2 framing, HPACK and flow control for client connections. Vigil
// drives its session from the worker's event loop through memory (mem_recv/mem_send); no thread, no socket I/O
// inside the library.
#ifndef VIGIL_CNGHTTP2_SHIM_H
#define VIGIL_CNGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>
#endif

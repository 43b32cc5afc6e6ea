// Debian's PCRE2 (libpcre2-dev), the regex library nginx uses: 8-bit code units, so Swift sees the
// pcre2_*_8 functions; the option constants are spelled out for Swift.
#ifndef VIGIL_CPCRE2_SHIM_H
#define VIGIL_CPCRE2_SHIM_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static const uint32_t VIGIL_PCRE2_CASELESS = PCRE2_CASELESS;
static const uint32_t VIGIL_PCRE2_INFO_CAPTURECOUNT = PCRE2_INFO_CAPTURECOUNT;
static const uint32_t VIGIL_PCRE2_INFO_NAMECOUNT = PCRE2_INFO_NAMECOUNT;
static const uint32_t VIGIL_PCRE2_INFO_NAMEENTRYSIZE = PCRE2_INFO_NAMEENTRYSIZE;
static const uint32_t VIGIL_PCRE2_INFO_NAMETABLE = PCRE2_INFO_NAMETABLE;
static const uint32_t VIGIL_PCRE2_JIT_COMPLETE = PCRE2_JIT_COMPLETE;
#endif
